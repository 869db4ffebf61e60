r"""Boundary losses: the class-balanced logistic loss and its deep supervision [Kong thesis, Eq. 2.2; HED]."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_dtype, check_finite, check_range, check_shape
from ._reduction import _mask, _reduce

__all__ = ["balanced_bce_loss", "boundary_loss", "BalancedBCELoss", "BoundaryLoss"]


def balanced_bce_loss(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None,
                      reduction: str = "mean") -> torch.Tensor:
    r"""Class-balanced logistic loss of one boundary map [Kong thesis, Eq. 2.2; HED].

    .. math::
        -\beta \sum_{j \in Y_+} \log P(y_j{=}1) - (1-\beta)\sum_{j\in Y_-}\log P(y_j{=}0),
        \qquad \beta = \frac{|Y_-|}{|Y_- \cup Y_+|}

    :math:`\beta` is computed per image (as in HED), so an image with few boundary pixels weighs
    each of them more. More than 80 % of pixels are non-boundary, hence the balancing.

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, H, W)`` boundary scores before the sigmoid.
        labels: same spatial shape, the boundary ground truth: values in ``{0, 1}`` (bool, int or
            float; float values in [0, 1] are accepted as soft labels).
        valid: optional bool mask of pixels that count.
        reduction: ``"mean"`` over valid pixels, ``"sum"`` or ``"none"``; no valid pixel gives 0
            with a zero gradient.
    """
    if logits.ndim == 4:
        check_shape(logits, "logits", "N 1 H W")
        logits = logits[:, 0]
    d = check_shape(logits, "logits", "N H W")
    check_shape(labels, "labels", "N H W", d)
    check_dtype(logits, "logits", "float")
    check_finite(logits, "logits")
    t = labels.to(logits.dtype)
    check_range(t, "labels", 0.0, 1.0)
    mask = _mask(valid, t, d)
    pos = (t * mask).flatten(1).sum(1)
    total = mask.flatten(1).sum(1).clamp_min(1)
    beta = (1 - pos / total).view(-1, 1, 1)  # |Y-| / |Y|, per image
    # log P(y=1) = logsigmoid(z), log P(y=0) = logsigmoid(-z): stable for any z.
    per_pixel = -(beta * t * F.logsigmoid(logits) + (1 - beta) * (1 - t) * F.logsigmoid(-logits))
    return _reduce(per_pixel, mask, reduction)


def boundary_loss(side_logits: Sequence[torch.Tensor], labels: torch.Tensor,
                  valid: torch.Tensor | None = None) -> torch.Tensor:
    """Deep supervision: the sum of :func:`balanced_bce_loss` over side outputs and the fused one.

    The thesis uses "four prediction branches at macro building blocks in ResNet and a final fusion
    layer", i.e. five terms [Kong thesis, Eq. 2.2, sum over :math:`b \\in \\mathcal{B}`].
    """
    if len(side_logits) == 0:
        raise ValueError("`side_logits`: expected at least one boundary map, got an empty list")
    return sum(balanced_bce_loss(z, labels, valid) for z in side_logits)


class BalancedBCELoss(nn.Module):
    """Module form of :func:`balanced_bce_loss`; ``forward(logits, labels, valid=None)``.

    Example:
        >>> BalancedBCELoss()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4)).shape
        torch.Size([])
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return balanced_bce_loss(logits, labels, valid, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class BoundaryLoss(nn.Module):
    """Module form of :func:`boundary_loss`; ``forward(side_logits, labels, valid=None)``."""

    def forward(self, side_logits: Sequence[torch.Tensor], labels: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        return boundary_loss(side_logits, labels, valid)
