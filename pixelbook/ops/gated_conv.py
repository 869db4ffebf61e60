r"""A convolution evaluated only at the pixels a binary mask selects ("perforated" convolution).

Pixel-wise Attentional Gating [KONG, Ch. 4] decides per pixel whether a layer runs. Written as a
product, :math:`\mathbf Y = \mathbf G \odot \mathrm{conv}(\mathbf X)`, the convolution still runs
everywhere and nothing is saved; the saving needs a convolution that *assembles only the active
pixels* (the "⊘" of [KONG, Fig. 4.2], after PerforatedCNNs). Two implementations, one result:

* ``_gated_conv2d_reference`` — the masked dense path: ``mask * conv2d(x)``. The reference.
* ``_gated_conv2d_sparse`` — gather the :math:`k\times k` neighbourhoods of the active output pixels
  (``P`` rows of ``k·k·C_in`` values), one matrix product with the flattened kernel, scatter the
  ``P × C_out`` results back into a zero tensor. Its cost is proportional to ``P``; its extra
  memory is ``P·k²·C_in`` values (the gathered rows).

Both are differentiable with respect to ``x``, ``weight`` and ``bias`` and give the same values and
gradients (``tests/test_ops_gated_conv.py``). The mask is a constant for the sparse path: a
straight-through gate needs :math:`\partial\mathcal L/\partial\mathbf G = \partial\mathcal L/\partial
\mathbf Y \cdot \mathrm{conv}(\mathbf X)` at *every* pixel, including the skipped ones, so training a
gate needs the dense path and the saving is an inference-time saving.

``benchmarks/bench_gating.py`` times the two side by side; on a 2-core CPU the dense path (oneDNN)
is hard to beat: the sparse path wins only below a density of about 0.2, and a whole PAG bottleneck
run sparsely (its 1×1 reduction and shortcut stay dense) is slower at every density down to 0.1;
see :data:`AUTO_SPARSE_BELOW`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_dtype, check_finite, check_int, check_shape

__all__ = ["gated_conv2d", "AUTO_SPARSE_BELOW"]

#: ``impl="auto"`` takes the sparse path when the mask density is below this value and no gradient
#: flows into the mask. Ours, from ``benchmarks/bench_gating.py`` on the 2-core CPU of this project
#: (64 → 64 channels, 3×3, batch 8 at 64×64 or one 56×56 map): the sparse path is faster only below
#: densities of 0.16–0.25 there (about 7× slower at density 1, 1.2–1.5× faster at 0.1).
AUTO_SPARSE_BELOW = 0.2


def _check_args(x, weight, mask, bias, stride, dilation):
    d = check_shape(x, "x", "N C H W")
    check_dtype(x, "x", "float")
    check_shape(weight, "weight", "O C K K", d)
    check_dtype(weight, "weight", "float")
    check_finite(weight, "weight")
    if weight.dtype != x.dtype:
        raise TypeError(f"`weight`: expected dtype {x.dtype} (as `x`), got {weight.dtype}")
    k = weight.shape[-1]
    if k % 2 == 0:
        raise ValueError(f"`weight`: expected an odd kernel size (same padding), got {k}")
    stride, dilation = check_int(stride, "stride", 1), check_int(dilation, "dilation", 1)
    pad = dilation * (k - 1) // 2
    H, W = x.shape[-2:]
    Ho, Wo = (H + 2 * pad - dilation * (k - 1) - 1) // stride + 1, (W + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    if mask.ndim == 3:
        check_shape(mask, "mask", "N H W", {"N": d["N"]})
        mask = mask[:, None]
    check_shape(mask, "mask", "N 1 H W", {"N": d["N"]})
    if tuple(mask.shape[-2:]) != (Ho, Wo):
        raise ValueError(f"`mask`: expected the output size (H, W)=({Ho}, {Wo}), got {tuple(mask.shape[-2:])}")
    if bias is not None:
        check_shape(bias, "bias", "O", {"O": d["O"]})
        check_dtype(bias, "bias", "float")
    if mask.dtype != torch.bool:
        if bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError("`mask`: expected binary values (0/1 or bool)")
    check_finite(x, "x")
    return mask, stride, dilation, pad


def _gated_conv2d_reference(x, weight, mask, bias=None, stride=1, dilation=1):
    """``mask * conv2d(x, weight, bias)``: every pixel computed, the skipped ones multiplied by 0."""
    pad = dilation * (weight.shape[-1] - 1) // 2
    y = F.conv2d(x, weight, bias, stride=stride, padding=pad, dilation=dilation)
    return y * mask.to(y.dtype)


def _gated_conv2d_sparse(x, weight, mask, bias=None, stride=1, dilation=1):
    """Gather the active pixels' neighbourhoods, one GEMM, scatter back; zeros elsewhere."""
    N, C, H, W = x.shape
    Cout, k = weight.shape[0], weight.shape[-1]
    pad = dilation * (k - 1) // 2
    Ho, Wo = mask.shape[-2:]
    active = mask.reshape(-1) != 0                                        # (N·Ho·Wo,)
    flat = active.nonzero().squeeze(1)                                    # (P,) output pixel ids
    out = x.new_zeros(N * Ho * Wo, Cout)
    if flat.numel() == 0:
        # keep the graph connected so that .backward() gives zero gradients, not None
        out = out + 0 * weight.sum() + (0 * bias.sum() if bias is not None else 0) + 0 * x.sum()
        return out.reshape(N, Ho, Wo, Cout).permute(0, 3, 1, 2).contiguous()
    n, rest = flat // (Ho * Wo), flat % (Ho * Wo)
    i, j = rest // Wo, rest % Wo
    Hp, Wp = H + 2 * pad, W + 2 * pad
    rows = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1).reshape(N * Hp * Wp, C)  # channels last
    base = (n * Hp + i * stride) * Wp + j * stride                        # window's top-left, padded coords
    taps = torch.arange(k, device=x.device) * dilation
    offsets = (taps[:, None] * Wp + taps[None, :]).reshape(-1)            # (k·k,) in (ki, kj) order
    cols = rows[(base[:, None] + offsets[None, :]).reshape(-1)].reshape(flat.numel(), k * k * C)
    kernel = weight.permute(2, 3, 1, 0).reshape(k * k * C, Cout)          # rows in (ki, kj, c) order
    vals = cols @ kernel if bias is None else torch.addmm(bias, cols, kernel)  # (P, Cout)
    out = out.index_copy(0, flat, vals)
    return out.reshape(N, Ho, Wo, Cout).permute(0, 3, 1, 2).contiguous()


def gated_conv2d(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None = None,
                 stride: int = 1, dilation: int = 1, impl: str = "auto") -> torch.Tensor:
    r"""A ``k×k`` convolution computed only where ``mask`` is 1 (zeros elsewhere) [KONG, Eq. 4.2, "⊘"].

    Equals ``mask * conv2d(x, weight, bias, stride, padding=dilation·(k−1)/2, dilation)``: the bias is
    added only at active pixels, the skipped ones are exactly 0.

    Args:
        x: ``(N, C_in, H, W)`` float input.
        weight: ``(C_out, C_in, k, k)`` kernel, ``k`` odd (groups are not supported).
        mask: ``(N, 1, H_out, W_out)`` or ``(N, H_out, W_out)``, bool or 0/1 float, at the output
            resolution (``H_out = ⌊(H − 1)/stride⌋ + 1`` for this "same" padding).
        bias: ``(C_out,)`` or ``None``.
        stride: convolution stride (default 1).
        dilation: dilation rate (default 1); the padding is ``dilation·(k−1)/2``.
        impl: ``"dense"`` (the masked reference), ``"sparse"`` (gather–GEMM–scatter, cost ∝ active
            pixels) or ``"auto"``: sparse when the density is below :data:`AUTO_SPARSE_BELOW` and no
            gradient flows into ``mask``, dense otherwise.

    Returns:
        ``(N, C_out, H_out, W_out)`` tensor on ``x``'s device and dtype.

    Raises:
        ValueError/TypeError naming the argument: shapes, non-binary mask, even kernel, a sparse
        request with a mask that requires grad (the sparse path cannot give the gate a gradient at
        skipped pixels — use ``impl="dense"`` to train a gate).

    Example:
        >>> x, w = torch.randn(1, 4, 8, 8), torch.randn(5, 4, 3, 3)
        >>> m = torch.rand(1, 1, 8, 8) < 0.3
        >>> y = gated_conv2d(x, w, m, impl="sparse")
        >>> torch.allclose(y, gated_conv2d(x, w, m, impl="dense"), atol=1e-5), bool((y[:, :, ~m[0, 0]] == 0).all())
        (True, True)
    """
    check_choice(impl, "impl", ("auto", "dense", "sparse"))
    mask, stride, dilation, _ = _check_args(x, weight, mask, bias, stride, dilation)
    grad_to_mask = mask.requires_grad and torch.is_grad_enabled()
    if impl == "sparse" and grad_to_mask:
        raise ValueError("`mask`: the sparse path treats the mask as a constant; detach it, or use impl='dense' "
                         "to back-propagate into the gate")
    if impl == "auto":
        dense = grad_to_mask or float((mask != 0).float().mean()) >= AUTO_SPARSE_BELOW
        impl = "dense" if dense else "sparse"
    if impl == "dense":
        return _gated_conv2d_reference(x, weight, mask, bias, stride, dilation)
    return _gated_conv2d_sparse(x, weight, mask.detach(), bias, stride, dilation)
