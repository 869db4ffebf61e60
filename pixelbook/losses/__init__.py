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
- the methods, re-exported: :func:`~pixelbook.levelset.narrow_band_loss` /
  :class:`~pixelbook.levelset.NarrowBandLoss` (Ch. 2), :func:`~pixelbook.rmi.rmi_loss` /
  :class:`~pixelbook.rmi.RMILoss` (Ch. 4), :func:`~pixelbook.cas.cas_loss` /
  :class:`~pixelbook.cas.CASLoss` (Ch. 9).

Reduction: the thesis writes each loss as a *sum* over pixels; the pixel-wise losses here average
over the valid pixels (``reduction="mean"``) so that loss weights and learning rates do not depend
on the image size. The two differ by a constant factor per batch, which changes nothing but the
step size.
"""

from __future__ import annotations

from ..cas import CASLoss, cas_loss
from ..levelset import NarrowBandLoss, narrow_band_loss
from ..rmi import RMILoss, rmi_loss
from .boundary import BalancedBCELoss, BoundaryLoss, balanced_bce_loss, boundary_loss
from .depth import DEPTH_GAMMA, LogDepthLoss, log_depth_loss
from .multitask import MultitaskLoss, multitask_loss, multitask_terms
from .normals import NORMAL_LAMBDA, NormalLoss, normal_loss
from .segmentation import (AffinityLoss, SegmentationLoss, SymmetricCrossEntropy, affinity_loss, segmentation_loss,
                           symmetric_cross_entropy)

__all__ = [
    "segmentation_loss", "SegmentationLoss", "affinity_loss", "AffinityLoss", "symmetric_cross_entropy",
    "SymmetricCrossEntropy", "balanced_bce_loss", "BalancedBCELoss", "boundary_loss", "BoundaryLoss",
    "log_depth_loss", "LogDepthLoss", "normal_loss", "NormalLoss", "multitask_loss", "MultitaskLoss", "multitask_terms",
    "narrow_band_loss", "NarrowBandLoss", "rmi_loss", "RMILoss", "cas_loss", "CASLoss",
    "DEPTH_GAMMA", "NORMAL_LAMBDA",
]
