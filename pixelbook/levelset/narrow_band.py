r"""The narrow band :math:`\tanh(\phi/s)`, the narrow-band loss and the scores of a distance map [NODE-LS, §3–4]."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_dtype, check_finite, check_float, check_shape
from ..metrics.segmentation import binary_segmentation_scores
from ..ops._common import _check_masks
from ..ops.sdf import sdf_from_mask  # noqa: F401  (used by the examples)

__all__ = ["narrow_band", "narrow_band_loss", "NarrowBandLoss", "segmentation_scores"]


def narrow_band(phi: torch.Tensor, scale: float = 3.0) -> torch.Tensor:
    r""":math:`\tanh(\phi/s)`: the paper's "narrow band" squashing of a distance map [NODE-LS, §3.2].

    :math:`\partial_\phi\tanh(\phi/s) = (1-\tanh^2(\phi/s))/s` decays like :math:`4e^{-2|\phi|/s}/s`,
    so a loss on squashed maps concentrates its gradient within a few ``s`` of the contour.
    ``scale`` (:math:`s`, pixels) is not given in the paper; 3 px is ours.
    """
    check_float(scale, "scale", low=0.0, low_open=True)
    return torch.tanh(phi / scale)


def narrow_band_loss(pred: torch.Tensor, target: torch.Tensor, scale: float = 3.0,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    r"""MSE between narrow-band maps [NODE-LS, §3.1–3.2]:
    :math:`\frac{1}{\sum v}\sum_x v(x)\big(\tanh(\tilde\phi/s) - \tanh(\phi/s)\big)^2`.

    The paper states "MSE between the target and predicted distance maps" plus a tanh on the
    evolved map; squashing the target too keeps both in the same units (our reading).

    Args:
        pred: ``(N, 1, H, W)`` predicted distance map :math:`\tilde\phi` (pixels).
        target: ``(N, 1, H, W)`` target SDF :math:`\phi`.
        scale: :math:`s`.
        valid: optional ``(N, H, W)`` bool (or 0/1) mask of the pixels that count (the paper's
            padding mask).

    Returns: a scalar tensor. No valid pixel gives 0 (not 0/0) with a zero gradient.

    Example:
        >>> phi = sdf_from_mask(torch.ones(2, 8, 8).triu().bool())
        >>> float(narrow_band_loss(phi, phi))
        0.0
    """
    d = check_shape(pred, "pred", "N 1 H W")
    check_shape(target, "target", "N 1 H W", d)
    check_dtype(pred, "pred", "float")
    check_dtype(target, "target", "float")
    check_finite(pred, "pred")
    check_finite(target, "target")
    err = (narrow_band(pred, scale) - narrow_band(target, scale)) ** 2
    if valid is None:
        return err.mean()
    _check_masks(valid, "valid", d)
    m = valid.to(err.dtype)[:, None]
    return (err * m).sum() / m.sum().clamp_min(1)


class NarrowBandLoss(nn.Module):
    """Module form of :func:`narrow_band_loss`; ``forward(pred, target, valid=None)``.

    Example:
        >>> phi = sdf_from_mask(torch.ones(2, 8, 8).triu().bool())
        >>> float(NarrowBandLoss(scale=3.0)(phi, phi))
        0.0
    """

    def __init__(self, scale: float = 3.0):
        super().__init__()
        self.scale = check_float(scale, "scale", low=0.0, low_open=True)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return narrow_band_loss(pred, target, scale=self.scale, valid=valid)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def segmentation_scores(phi: torch.Tensor, labels: torch.Tensor, scale: float = 3.0,
                        beta2: float = 0.3) -> dict:
    r"""Scores of a predicted distance map against binary ground truth, the segmentation being :math:`\phi>0`.

    Computed by :func:`pixelbook.metrics.binary_segmentation_scores` on :math:`\phi > 0`:

    * ``pooled_iou``: :math:`TP/(TP+FP+FN)` with the counts summed over the whole set, the
      paper's IoU [NODE-LS, §4.2] (PASCAL VOC's definition).
    * ``mean_iou``: the mean of per-image IoUs (an image with empty prediction and mask scores 1).
    * ``fbeta``: :math:`F_\beta = (1+\beta^2)PR/(\beta^2P+R)` of the binary maps with :math:`P,R`
      pooled over the set, :math:`\beta^2=0.3` — what [NODE-LS] calls α-F_β (its printed formula,
      :math:`F_1(1+\beta^2)/\beta^2`, exceeds 1 and cannot be what was computed; see the errata).
    * ``mae``: mean absolute error of the soft map :math:`\tfrac12(1+\tanh(\phi/s))` (not in the
      paper; the usual saliency MAE).

    Args:
        phi: ``(N, 1, H, W)``; labels: ``(N, H, W)`` binary (bool or 0/1); scale: :math:`s` for the soft map.

    Example:
        >>> m = torch.zeros(2, 4, 4, dtype=torch.bool); m[:, :2] = True
        >>> phi = sdf_from_mask(m); phi[1, 0, 2] = 1.0   # image 1: one row too many
        >>> s = segmentation_scores(phi, m)
        >>> round(s["pooled_iou"], 4), round(s["mean_iou"], 4)
        (0.8, 0.8333)
    """
    with torch.no_grad():
        d = check_shape(phi, "phi", "N 1 H W")
        check_finite(phi, "phi")
        _check_masks(labels, "labels", d)
        soft = 0.5 * (1 + narrow_band(phi[:, 0], scale))
        return binary_segmentation_scores(phi[:, 0] > 0, labels, probs=soft, beta2=beta2)
