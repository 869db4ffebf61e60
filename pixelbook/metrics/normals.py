r"""Surface-normal metrics: angular error statistics in degrees, and the fractions within 11.25°, 22.5°, 30°."""

from __future__ import annotations

import torch

from .._checks import check_dtype, check_finite, check_shape
from ._common import _check_nonempty, _check_same_device, _valid_or_default

__all__ = ["normal_metrics"]


@torch.no_grad()
def normal_metrics(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> dict:
    r"""Surface-normal angular errors, pooled over the valid pixels of the batch (thesis note §5).

    Per pixel, with both vectors normalised to unit length, the error is
    :math:`\frac{180}{\pi}\cos^{-1}(\mathrm{clip}(\mathbf n^\top\hat{\mathbf n}, -1, 1))`, evaluated as
    :math:`\operatorname{atan2}(\|\mathbf n\times\hat{\mathbf n}\|, \mathbf n^\top\hat{\mathbf n})` in
    float64 — the same angle, without acos' loss of precision near 0° and 180°.

    Returns ``mean`` and ``median`` (average of the two middle values for an even count, as
    ``numpy.median``) in **degrees**, and ``a11, a22, a30``: the **fractions in [0, 1]** (not percent) of
    pixels with error < 11.25°, < 22.5°, < 30°.

    Args:
        pred: ``(N, 3, H, W)`` float predicted normals (any non-zero length; normalised here).
        target: ``(N, 3, H, W)`` float ground-truth normals (normalised here too; unit vectors are unchanged).
        valid: optional bool ``(N, H, W)`` or ``(N, 1, H, W)`` mask; default: pixels where ``target`` is
            non-zero (a zero vector marks a missing normal, as in NYUv2).

    Returns:
        ``dict(mean, median, a11, a22, a30)`` of python floats.

    Raises:
        ValueError / TypeError naming the argument: shapes, dtypes, NaN/Inf, no valid pixel, a zero
        vector at a valid pixel.

    Example:
        >>> import torch
        >>> up = torch.zeros(1, 3, 2, 2); up[:, 2] = 1.0
        >>> side = torch.zeros(1, 3, 2, 2); side[:, 0] = 3.0   # 90° away, any length
        >>> normal_metrics(side, up)
        {'mean': 90.0, 'median': 90.0, 'a11': 0.0, 'a22': 0.0, 'a30': 0.0}
    """
    d = check_shape(pred, "pred", "N 3 H W")
    check_shape(target, "target", "N 3 H W", d)
    _check_same_device(target, "target", pred, "pred")
    check_dtype(pred, "pred", "float")
    check_dtype(target, "target", "float")
    _check_nonempty(pred, "pred")
    check_finite(pred, "pred")
    check_finite(target, "target")
    p, g = pred.double(), target.double()
    pn, gn = p.norm(dim=1), g.norm(dim=1)
    valid = _valid_or_default(valid, gn > 0, "some non-zero normals", d, pred)
    for norms, name in ((pn, "pred"), (gn, "target")):
        zero = valid & (norms == 0)
        if bool(zero.any()):
            raise ValueError(f"`{name}`: expected non-zero normal vectors where `valid` is True, "
                             f"got {int(zero.sum())} zero vectors")
    p = p.permute(0, 2, 3, 1)[valid] / pn[valid][:, None]
    g = g.permute(0, 2, 3, 1)[valid] / gn[valid][:, None]
    cos = (p * g).sum(1)
    sin = torch.linalg.cross(p, g, dim=1).norm(dim=1)
    ang = torch.rad2deg(torch.atan2(sin, cos))
    n = ang.numel()
    lo = ang.kthvalue((n + 1) // 2).values
    hi = ang.kthvalue(n // 2 + 1).values
    return dict(
        mean=float(ang.mean()),
        median=float((lo + hi) / 2),
        a11=float((ang < 11.25).double().mean()),
        a22=float((ang < 22.5).double().mean()),
        a30=float((ang < 30.0).double().mean()),
    )
