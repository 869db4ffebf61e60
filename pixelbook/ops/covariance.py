r"""Region vectors and their joint covariance, memory-lean [RMI, Eq. 12].

Every :math:`R\times R` window of a map becomes a :math:`d=R^2` vector (:func:`region_vectors`);
:func:`joint_covariance` gives the :math:`2d\times 2d` covariance of the stacked windows of two maps
(probabilities and labels in Chapter 4) without ever storing the ``2d × n`` vectors for backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_dtype, check_finite, check_int, check_shape

__all__ = ["region_vectors", "joint_covariance"]

#: Bytes of float64 region vectors built at once in the joint covariance (ours, measured): on a CPU
#: a few MiB stay in cache and run ~2x faster than one big block; on a GPU bigger chunks mean
#: fewer kernel launches. Either way the transient memory is bounded whatever the batch.
_CHUNK_BYTES = {"cpu": 4 * 2**20, "other": 64 * 2**20}


def region_vectors(x: torch.Tensor, radius: int = 3) -> torch.Tensor:
    r"""Every valid :math:`R\times R` window of each map as a :math:`d=R^2` vector [RMI, Fig. 1].

    Windows do not cross the border (no padding), so an ``h × w`` map gives
    :math:`n=(h-R+1)(w-R+1)` points; coordinate :math:`k = iR + j` of a point is the pixel at row
    offset ``i`` and column offset ``j`` of its window (row-major), which is what stacking the
    shifted crops ``x[..., i:i+h-R+1, j:j+w-R+1]`` gives. Memory: ``d`` times ``x``.

    Args:
        x: ``(N, C, h, w)`` float maps (probabilities or one-hot labels).
        radius: :math:`R`, the side of the square region (the paper's name is "radius" in code,
            side length in text).

    Returns:
        ``(N, C, d, n)`` tensor.

    Example:
        >>> x = torch.arange(16.).reshape(1, 1, 4, 4)
        >>> region_vectors(x, 2)[0, 0, :, 0]  # the top-left 2x2 window, row-major
        tensor([0., 1., 4., 5.])
    """
    d = check_shape(x, "x", "N C H W")
    check_dtype(x, "x", "float")
    R = check_int(radius, "radius", low=1)
    N, C, h, w = x.shape
    if h < R or w < R:
        raise ValueError(f"`radius`: expected at most min(H, W) = {min(h, w)} of `x`, got {R}")
    del d
    cols = F.unfold(x.reshape(N * C, 1, h, w), kernel_size=R)  # (N*C, d, n), row-major kernel order
    return cols.reshape(N, C, R * R, -1)


class _JointCovariance(torch.autograd.Function):
    """Centred scatter matrix of the stacked region vectors of two map stacks, memory-lean.

    forward(p (B, h, w), y (B, h, w), R) -> S (B, 2d, 2d), S = sum_i (z_i - mean)(z_i - mean)^T
    with z_i = [p-window_i ; y-window_i]. Only p and y are saved for backward. Gradient:
    dL/dz_i = (G + G^T)(z_i - mean) (the mean term cancels because the centred points sum to
    zero), folded back onto the pixels (the adjoint of unfold).
    """

    @staticmethod
    def _centred_vectors(p, y, R):
        # (b, 2d, n): rows 0..d-1 are P's window coordinates, rows d..2d-1 are Y's. Stacking the
        # shifted crops is identical to F.unfold (im2col) and several times faster on a CPU.
        b, h, w = p.shape
        hh, ww = h - R + 1, w - R + 1
        cols = torch.stack([m[:, i:i + hh, j:j + ww] for m in (p, y) for i in range(R) for j in range(R)], 1)
        cols = cols.reshape(b, 2 * R * R, hh * ww)
        cols -= cols.mean(-1, keepdim=True)
        return cols

    @staticmethod
    def _chunks(B, h, w, R, itemsize, device):
        per_map = 2 * R * R * (h - R + 1) * (w - R + 1) * itemsize
        budget = _CHUNK_BYTES["cpu" if device.type == "cpu" else "other"]
        step = max(1, budget // max(per_map, 1))
        return [slice(s, min(B, s + step)) for s in range(0, B, step)]

    @staticmethod
    def forward(ctx, p, y, R):
        B, h, w = p.shape
        out = p.new_empty(B, 2 * R * R, 2 * R * R)
        for sl in _JointCovariance._chunks(B, h, w, R, p.element_size(), p.device):
            cols = _JointCovariance._centred_vectors(p[sl], y[sl], R)
            out[sl] = torch.matmul(cols, cols.mT)
        ctx.save_for_backward(p, y)
        ctx.R = R
        return out

    @staticmethod
    def backward(ctx, grad):
        p, y = ctx.saved_tensors
        R = ctx.R
        d = R * R
        B, h, w = p.shape
        hh, ww = h - R + 1, w - R + 1
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
        grads = [torch.zeros_like(p) if need[0] else None, torch.zeros_like(y) if need[1] else None]
        if not any(need):
            return None, None, None
        gsym = grad + grad.mT
        for sl in _JointCovariance._chunks(B, h, w, R, p.element_size(), p.device):
            cols = _JointCovariance._centred_vectors(p[sl], y[sl], R)
            for which in (0, 1):
                if not need[which]:
                    continue
                # dL/dz_i = (G + G^T)(z_i - mean), then the adjoint of the window extraction:
                # every window coordinate k = (i, j) adds back onto the pixel it was read from.
                g = torch.matmul(gsym[sl, which * d:(which + 1) * d], cols).reshape(-1, d, hh, ww)
                out = grads[which][sl]
                for k in range(d):
                    i, j = divmod(k, R)
                    out[:, i:i + hh, j:j + ww] += g[:, k]
        return grads[0], grads[1], None


def joint_covariance(probs: torch.Tensor, target: torch.Tensor, radius: int = 3,
                     normalize: bool = True) -> torch.Tensor:
    r"""Covariance of the joint region vectors :math:`[P;Y]` of each (image, class) pair [RMI, Eq. 12].

    Rows/columns ``0..d-1`` belong to P and ``d..2d-1`` to Y, so the blocks are
    :math:`\Sigma_P`, :math:`\operatorname{Cov}(P,Y)`, :math:`\operatorname{Cov}(Y,P)`, :math:`\Sigma_Y`.
    Computed in float64 (the result has the dtype float64), memory-lean: the ``2d × n`` region
    vectors are built chunk by chunk and never stored for backward.

    Args:
        probs: ``(N, C, h, w)`` probabilities (usually down-sampled).
        target: ``(N, C, h, w)`` float label maps: one-hot, or fractions after average pooling.
        radius: :math:`R`, :math:`d = R^2`.
        normalize: divide the centred scatter by the number of points :math:`n` (the paper's
            :math:`\mathbb{E}[\cdot]`); ``False`` returns the unnormalised sums the official code uses.

    Returns:
        ``(N, C, 2d, 2d)`` float64 tensor.

    Example:
        >>> S = joint_covariance(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), radius=2)
        >>> S.shape, S.dtype
        (torch.Size([2, 3, 8, 8]), torch.float64)
    """
    dims = check_shape(probs, "probs", "N C H W")
    check_shape(target, "target", "N C H W", dims)
    check_dtype(probs, "probs", "float")
    check_dtype(target, "target", "float")
    check_finite(probs, "probs")
    check_finite(target, "target")
    R = check_int(radius, "radius", low=1)
    N, C, h, w = probs.shape
    if h < R or w < R:
        raise ValueError(f"`radius`: expected at most min(h, w) = {min(h, w)} of the (down-sampled) maps, "
                         f"got {R}; lower `radius` or the down-sampling factor")
    p = probs.to(torch.float64).reshape(N * C, h, w)
    y = target.to(torch.float64).reshape(N * C, h, w)
    S = _JointCovariance.apply(p, y, R)
    if normalize:
        S = S / ((h - R + 1) * (w - R + 1))
    return S.reshape(N, C, 2 * R * R, 2 * R * R)
