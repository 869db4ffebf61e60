r"""Single-image depth metrics [EIGEN14]: relative and RMS errors, δ-accuracies.

[EIGEN14] Eigen, Puhrsch, Fergus, "Depth map prediction from a single image using a multi-scale deep
network", NeurIPS 2014, Sec. 4.
"""

from __future__ import annotations

import torch

from .._checks import check_dtype, check_finite, check_shape
from ._common import _check_nonempty, _check_same_device, _valid_or_default

__all__ = ["depth_metrics"]


def _as_nhw(x, name: str, dims: dict | None) -> tuple[torch.Tensor, dict]:
    if torch.is_tensor(x) and x.ndim == 4:
        dims = check_shape(x, name, "N 1 H W", dims)
        return x[:, 0], dims
    if torch.is_tensor(x) and x.ndim != 3:
        raise ValueError(f"`{name}`: expected shape (N, 1, H, W) or (N, H, W), got {tuple(x.shape)}")
    dims = check_shape(x, name, "N H W", dims)
    return x, dims


@torch.no_grad()
def depth_metrics(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> dict:
    r"""Standard single-image depth metrics [EIGEN14], each a mean over all valid pixels of the batch.

    With :math:`d` the prediction, :math:`d^*` the ground truth and :math:`N` the number of valid pixels
    pooled over all images (thesis note §5):

    - ``abs_rel`` :math:`=\frac1N\sum|d-d^*|/d^*`, ``sq_rel`` :math:`=\frac1N\sum(d-d^*)^2/d^*`,
    - ``rmse`` :math:`=\sqrt{\frac1N\sum(d-d^*)^2}`, ``rmse_log`` :math:`=\sqrt{\frac1N\sum(\ln d-\ln d^*)^2}`,
    - ``log10`` :math:`=\frac1N\sum|\log_{10}d-\log_{10}d^*|`,
    - ``d1, d2, d3``: fraction (in [0, 1]) of pixels with :math:`\max(d/d^*, d^*/d) < 1.25^k`, k = 1, 2, 3.

    Computed in float64. Predictions are not clamped: a non-positive prediction at a valid pixel is an
    error (clamp it yourself, e.g. ``pred.clamp_min(1e-3)``, and say so).

    Args:
        pred: ``(N, 1, H, W)`` or ``(N, H, W)`` float predicted depths, positive where valid.
        target: same shape, float ground-truth depths.
        valid: optional bool ``(N, H, W)`` or ``(N, 1, H, W)`` mask of pixels to score; default ``target > 0``
            (0 marks missing depth, as in NYUv2 / KITTI).

    Returns:
        ``dict(abs_rel, sq_rel, rmse, rmse_log, log10, d1, d2, d3)`` of python floats.

    Raises:
        ValueError / TypeError naming the argument: shapes, dtypes, NaN/Inf, no valid pixel,
        non-positive depths at valid pixels.

    Example:
        >>> import torch
        >>> pred = torch.tensor([[[1.0, 1.2, 1.5, 2.0]]])   # (N, H, W) = (1, 1, 4); ratios 1, 1.2, 1.5, 2
        >>> m = depth_metrics(pred, torch.ones(1, 1, 4))
        >>> m["d1"], m["d2"], m["d3"], round(m["abs_rel"], 4)
        (0.5, 0.75, 0.75, 0.425)
    """
    pred, d = _as_nhw(pred, "pred", None)
    target, d = _as_nhw(target, "target", d)
    _check_same_device(target, "target", pred, "pred")
    check_dtype(pred, "pred", "float")
    check_dtype(target, "target", "float")
    _check_nonempty(pred, "pred")
    check_finite(pred, "pred")
    check_finite(target, "target")
    valid = _valid_or_default(valid, target > 0, "some pixels with target > 0", d, pred)
    dp, dg = pred[valid].double(), target[valid].double()
    if float(dg.min()) <= 0:
        raise ValueError(f"`target`: expected positive depths where `valid` is True, got min {float(dg.min()):.4g}")
    if float(dp.min()) <= 0:
        raise ValueError(
            f"`pred`: expected positive depths where `valid` is True, got min {float(dp.min()):.4g} "
            "(clamp predictions, e.g. pred.clamp_min(1e-3))"
        )
    diff = dp - dg
    ratio = torch.maximum(dp / dg, dg / dp)
    return dict(
        abs_rel=float((diff.abs() / dg).mean()),
        sq_rel=float((diff ** 2 / dg).mean()),
        rmse=float(diff.pow(2).mean().sqrt()),
        rmse_log=float((dp.log() - dg.log()).pow(2).mean().sqrt()),
        log10=float((dp.log10() - dg.log10()).abs().mean()),
        d1=float((ratio < 1.25).double().mean()),
        d2=float((ratio < 1.25 ** 2).double().mean()),
        d3=float((ratio < 1.25 ** 3).double().mean()),
    )
