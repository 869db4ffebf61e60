"""Chapter 2's ``full`` configuration shrunk to seconds, for ``torchrun`` tests: ``levelset_full_tiny:EXPERIMENT``.

The data are the fake saliency folders of ``tests/fakes.py`` (``make_sod_folder``) in ``$LEVELSET_FULL_ROOT``;
the sizes are ``tests/test_experiments_full.py``'s ``tiny_levelset_overrides``.
"""

from __future__ import annotations

import dataclasses
import os

from test_experiments_full import tiny_levelset_overrides

from pixelbook.experiments.levelset import LevelSetExperiment


class TinyFullLevelSet(LevelSetExperiment):
    def config(self, arm, seed, scale):
        cfg = super().config(arm, seed, scale)
        if scale != "full":
            return cfg
        over = tiny_levelset_overrides(os.environ["LEVELSET_FULL_ROOT"])
        sections = {k: {**getattr(cfg, k), **v} for k, v in over.items() if k != "train"}
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **over["train"]), **sections)


EXPERIMENT = TinyFullLevelSet()
