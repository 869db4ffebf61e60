"""Chapter 5's ``full`` configuration shrunk to seconds, for ``torchrun`` tests: ``gating_full_tiny:EXPERIMENT``.

The network is still the ResNet-50 with MultiPool (random weights, no download); the data are the fake
NYUv2 files of ``tests/fakes.py`` in the folder ``$GATING_FULL_ROOT``; the sizes are those of
``tests/test_experiment_gating.py``'s ``_tiny_overrides``.
"""

from __future__ import annotations

import os

from test_experiment_gating import _tiny_full

from pixelbook.experiments.gating import GatingExperiment


class TinyFullGating(GatingExperiment):
    def config(self, arm, seed, scale):
        return _tiny_full(super().config(arm, seed, scale), os.environ["GATING_FULL_ROOT"])


EXPERIMENT = TinyFullGating()
