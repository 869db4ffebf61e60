r"""Every loss of the book, by name: a functional form ``xxx_loss(...)`` and an ``nn.Module`` ``XxxLoss``.

A reader looking for "the RMI loss" finds it here (as ``segmentation_models_pytorch.losses``
gathers its losses). Generic losses are defined in ``losses/<domain>.py``; a loss that *is* a
chapter's method stays defined in the method's module and is re-exported here.

- :mod:`~pixelbook.losses.segmentation`: :func:`segmentation_loss` / :class:`SegmentationLoss`
  (Ch. 1, Eq. 2.1); :func:`affinity_loss` / :class:`AffinityLoss` (Ch. 4's baseline);
  :func:`symmetric_cross_entropy` / :class:`SymmetricCrossEntropy` (Ch. 9's baseline).
- :mod:`~pixelbook.losses.boundary`: :func:`balanced_bce_loss` / :class:`BalancedBCELoss`,
  :func:`boundary_loss` / :class:`BoundaryLoss` (Ch. 1, Eq. 2.2).
- :mod:`~pixelbook.losses.depth`: :func:`log_depth_loss` / :class:`LogDepthLoss` (Ch. 1, Eq. 2.3).
- :mod:`~pixelbook.losses.normals`: :func:`normal_loss` / :class:`NormalLoss` (Ch. 1, Eq. 2.4).
- :mod:`~pixelbook.losses.multitask`: :func:`multitask_loss` / :class:`MultitaskLoss` (Ch. 1), and
  :func:`multitask_terms`, the unweighted terms (a dict of losses, to log them).
- the methods, re-exported (loaded on first access): :func:`~pixelbook.levelset.narrow_band_loss` /
  :class:`~pixelbook.levelset.NarrowBandLoss` (Ch. 2), :func:`~pixelbook.rmi.rmi_loss` /
  :class:`~pixelbook.rmi.RMILoss` (Ch. 4), ``budget_kl_loss`` / ``BudgetKLLoss`` (Ch. 5,
  :mod:`pixelbook.gating`), ``embedding_loss`` / ``EmbeddingLoss`` (Ch. 6, :mod:`pixelbook.meanshift`),
  ``mgpff_loss`` / ``MultigridPFFLoss`` (Ch. 8, :mod:`pixelbook.filterflow`),
  :func:`~pixelbook.cas.cas_loss` / :class:`~pixelbook.cas.CASLoss` (Ch. 9).

Reduction: the thesis writes each loss as a *sum* over pixels; the pixel-wise losses here average
over the valid pixels (``reduction="mean"``) so that loss weights and learning rates do not depend
on the image size. The two differ by a constant factor per batch, which changes nothing but the
step size.
"""

from __future__ import annotations

import importlib

from .boundary import BalancedBCELoss, BoundaryLoss, balanced_bce_loss, boundary_loss
from .depth import DEPTH_GAMMA, LogDepthLoss, log_depth_loss
from .multitask import MultitaskLoss, multitask_loss, multitask_terms
from .normals import NORMAL_LAMBDA, NormalLoss, normal_loss
from .segmentation import (AffinityLoss, SegmentationLoss, SymmetricCrossEntropy, affinity_loss, segmentation_loss,
                           symmetric_cross_entropy)

#: The losses that are a chapter's method, re-exported from the method's module on first access
#: (PEP 562): importing ``pixelbook.losses`` stays light, and a method module may import a generic
#: loss from here without an import cycle.
_METHOD_LOSSES = {
    "narrow_band_loss": "levelset", "NarrowBandLoss": "levelset",
    "rmi_loss": "rmi", "RMILoss": "rmi",
    "cas_loss": "cas", "CASLoss": "cas",
    "budget_kl_loss": "gating", "BudgetKLLoss": "gating",
    "embedding_loss": "meanshift", "EmbeddingLoss": "meanshift",
    "mgpff_loss": "filterflow", "MultigridPFFLoss": "filterflow",
}

__all__ = [
    "segmentation_loss", "SegmentationLoss", "affinity_loss", "AffinityLoss", "symmetric_cross_entropy",
    "SymmetricCrossEntropy", "balanced_bce_loss", "BalancedBCELoss", "boundary_loss", "BoundaryLoss",
    "log_depth_loss", "LogDepthLoss", "normal_loss", "NormalLoss", "multitask_loss", "MultitaskLoss", "multitask_terms",
    *_METHOD_LOSSES, "DEPTH_GAMMA", "NORMAL_LAMBDA",
]


def __getattr__(name):
    if name in _METHOD_LOSSES:
        return getattr(importlib.import_module(f"pixelbook.{_METHOD_LOSSES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_METHOD_LOSSES))
