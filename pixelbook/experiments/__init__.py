"""Each chapter's ``medium`` (and later ``full``) experiment, defined once: arms, seeds, claims, runs.

A chapter notebook and the command line run the same definition::

    EXP = pb.experiments.get("01_pixel_level_prediction")
    run = EXP.run("multitask", seed=SEED, scale=SCALE, device=DEVICE)   # in the notebook (cached)

    python -m pixelbook.run 01_pixel_level_prediction --scale medium      # make results (resumable)

The results of the command are JSON files under ``results/<chapter>/`` (:mod:`pixelbook.results`);
the notebook loads them and evaluates the claims, which are written in the experiment's module
before it runs. :mod:`pixelbook.experiments.base` has the machinery and says what a chapter
implements; CONTRIBUTING.md ("Evidence: the medium experiment") is the checklist.

Registered experiments (notebook stem -> module of this package):
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import REPLAY_ATOL, REPLAY_RTOL, Arm, Experiment, ReplayOutcome, Run, RunConfig, record_run, replay, result_status

__all__ = ["REGISTRY", "get", "names", "Arm", "Experiment", "RunConfig", "Run", "ReplayOutcome", "record_run",
           "result_status", "replay", "REPLAY_RTOL", "REPLAY_ATOL"]

#: Notebook stem -> the module of :mod:`pixelbook.experiments` that defines ``EXPERIMENT``.
#: A chapter adds its line here when its experiment module exists.
REGISTRY: dict[str, str] = {
    "01_pixel_level_prediction": "multitask",
    "03_soft_threshold_dynamics": "std",
    "02_neural_ode_levelsets": "levelset",
    "09_class_agnostic_segmentation": "cas",
    "04_region_mutual_information": "rmi",
    "08_multigrid_filter_flow": "mgpff",
    "07_predictive_filter_flow": "pff",
    "05_attentional_gating": "gating",
    "06_mean_shift_grouping": "meanshift",
}

__doc__ += "\n".join(f"``{stem}`` -> :mod:`pixelbook.experiments.{mod}`" for stem, mod in REGISTRY.items()) + "\n"

_loaded: dict[str, Experiment] = {}


def names() -> list[str]:
    """The notebook stems that have an experiment, in chapter order."""
    return sorted(REGISTRY)


def _stem(name) -> str:
    """``"01_pixel_level_prediction"`` from that stem, its notebook path (``.py``/``.ipynb``), or ``"1"``/``"01"``."""
    text = str(name).strip()
    stem = Path(text).stem if text.endswith((".py", ".ipynb")) else Path(text).name
    if stem in REGISTRY:
        return stem
    if stem.isdigit():
        matches = [s for s in REGISTRY if s.split("_", 1)[0].isdigit() and int(s.split("_", 1)[0]) == int(stem)]
        if len(matches) == 1:
            return matches[0]
    raise ValueError(f"`chapter`: expected one of {names()} (or its number or notebook path), got {name!r}")


def get(name) -> Experiment:
    """The ``EXPERIMENT`` of a chapter: by notebook stem, notebook path, or chapter number.

    Raises:
        ValueError: no experiment is registered under that name (the message lists those that are).
    """
    stem = _stem(name)
    if stem not in _loaded:
        module = importlib.import_module(f".{REGISTRY[stem]}", __name__)
        exp = getattr(module, "EXPERIMENT", None)
        if not isinstance(exp, Experiment) or exp.chapter != stem:
            raise TypeError(f"pixelbook.experiments.{REGISTRY[stem]}: expected EXPERIMENT, an Experiment with "
                            f"chapter={stem!r}")
        _loaded[stem] = exp
    return _loaded[stem]
