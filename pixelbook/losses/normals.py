r"""Surface-normal loss: cosine plus inverse cosine [Kong thesis, Eq. 2.4]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_dtype, check_finite, check_shape
from ._reduction import _mask, _reduce

__all__ = ["normal_loss", "NORMAL_LAMBDA", "NormalLoss"]

NORMAL_LAMBDA = 4.0  # [Kong thesis, Eq. 2.4]: "we set λ = 4 throughout our experiments"
_ACOS_EPS = 1e-6  # ours: d/dx acos(x) = -1/sqrt(1-x^2) is infinite at |x| = 1; clamp keeps it finite


def normal_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
                lam: float = NORMAL_LAMBDA, normalize: bool = True, reduction: str = "mean") -> torch.Tensor:
    r"""Cosine plus inverse-cosine loss for surface normals [Kong thesis, Eq. 2.4].

    .. math:: \ell_{normal} = \sum_i -\mathbf n_i^\top \hat{\mathbf n}_i
              + \lambda \cos^{-1}(\mathbf n_i^\top \hat{\mathbf n}_i)

    In terms of the angle :math:`\theta_i` between prediction and truth this is
    :math:`-\cos\theta_i + \lambda\theta_i`: the cosine term's slope :math:`\sin\theta` vanishes
    as the error goes to zero, the angle term's slope stays :math:`\lambda`.

    Args:
        pred: ``(N, 3, H, W)`` predicted normals; L2-normalised here when ``normalize`` (the
            thesis' "final L2 normalization layer").
        target: ``(N, 3, H, W)`` unit ground-truth normals.
        valid: optional ``(N, H, W)`` bool mask; no valid pixel gives 0 with a zero gradient.
        lam: :math:`\lambda` (thesis: 4).
    """
    d = check_shape(pred, "pred", "N 3 H W")
    check_shape(target, "target", "N 3 H W", d)
    check_dtype(pred, "pred", "float")
    check_dtype(target, "target", "float")
    check_finite(pred, "pred")
    check_finite(target, "target")
    if normalize:
        pred = F.normalize(pred, dim=1, eps=1e-12)
    cos = (pred * target).sum(1).clamp(-1 + _ACOS_EPS, 1 - _ACOS_EPS)
    mask = _mask(valid, cos, d)
    return _reduce(-cos + lam * torch.acos(cos), mask, reduction)


class NormalLoss(nn.Module):
    """Module form of :func:`normal_loss`; ``forward(pred, target, valid=None)``.

    Example:
        >>> n = torch.zeros(1, 3, 2, 2); n[:, 2] = 1
        >>> round(NormalLoss()(n, n).item(), 3)   # -cos 0 + 4 * acos(1 - 1e-6)
        -0.994
    """

    def __init__(self, lam: float = NORMAL_LAMBDA, normalize: bool = True, reduction: str = "mean"):
        super().__init__()
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        self.lam, self.normalize, self.reduction = lam, normalize, reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return normal_loss(pred, target, valid, lam=self.lam, normalize=self.normalize, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, normalize={self.normalize}, reduction={self.reduction!r}"
