r"""Depth loss: mixed L2 + L1 on log-depth [Kong thesis, Eq. 2.3]."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_choice, check_dtype, check_finite, check_shape
from ._reduction import _reduce

__all__ = ["log_depth_loss", "DEPTH_GAMMA", "LogDepthLoss"]

DEPTH_GAMMA = 2.0  # [Kong thesis, Eq. 2.3]: "γ = 2"; robust for γ in [1, 5]


def log_depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
                   gamma: float = DEPTH_GAMMA, reduction: str = "mean") -> torch.Tensor:
    r"""Mixed L2 + L1 loss on log-depth [Kong thesis, Eq. 2.3].

    .. math:: \ell_{depth} = \sum_i \big(\log D_i - \log \hat D_i\big)^2
              + \gamma\,\big|\log D_i - \log \hat D_i\big|

    The L2 term punishes large errors quadratically; the L1 term keeps a gradient of constant size
    :math:`\gamma` as the residual goes to zero, so small errors keep shrinking.

    Args:
        pred: ``(N, 1, H, W)`` the network's output, read as the log-depth :math:`\log D`.
        target: ``(N, 1, H, W)`` ground-truth depth :math:`\hat D` (not its log), positive where valid.
        valid: ``(N, 1, H, W)`` or ``(N, H, W)`` bool; default ``target > 0`` (Kinect holes are 0).
        gamma: :math:`\gamma`, weight of the L1 term (thesis: 2).
        reduction: ``"mean"`` over valid pixels, ``"sum"`` or ``"none"``; no valid pixel gives 0
            with a zero gradient.
    """
    d = check_shape(pred, "pred", "N 1 H W")
    check_shape(target, "target", "N 1 H W", d)
    check_dtype(pred, "pred", "float")
    check_dtype(target, "target", "float")
    check_finite(pred, "pred")
    check_finite(target, "target")
    if valid is None:
        valid = target > 0
    elif valid.ndim == 3:
        valid = valid[:, None]
    check_shape(valid, "valid", "N 1 H W", d)
    if bool((target[valid] <= 0).any()):
        raise ValueError("`target`: expected positive depths at valid pixels, got values <= 0")
    r = pred - torch.log(torch.where(valid, target, torch.ones_like(target)))
    return _reduce(r.pow(2) + gamma * r.abs(), valid.to(r.dtype), reduction)


class LogDepthLoss(nn.Module):
    """Module form of :func:`log_depth_loss`; ``forward(pred, target, valid=None)``.

    Example:
        >>> LogDepthLoss()(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).item()
        0.0
    """

    def __init__(self, gamma: float = DEPTH_GAMMA, reduction: str = "mean"):
        super().__init__()
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        self.gamma, self.reduction = gamma, reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return log_depth_loss(pred, target, valid, gamma=self.gamma, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction!r}"
