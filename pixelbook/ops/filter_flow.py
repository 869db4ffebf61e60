r"""Filter flow: a different :math:`k\times k` linear filter at every pixel [KONG, Eq. 6.1].

A filter flow maps an image :math:`I_1` to :math:`I_2 = T I_1`, where each row of the matrix
:math:`T` is a small filter centred on its own output pixel [KONG, Eq. 6.1]. Convolution is the
special case in which every row holds the same filter. Predictive Filter Flow [KONG, Eq. 6.2]
predicts the rows with a network, one :math:`k^2`-vector per pixel, so the operator needed is

.. math::
    \mathrm{out}[n, c, y, x] = \sum_{t=0}^{k^2-1} \mathrm{filters}[n, t, y, x]\;
        \mathrm{image}[n, c,\, y + d\,\delta y_t,\, x + d\,\delta x_t],
    \qquad t = (\delta y_t + r)\,k + (\delta x_t + r),\ r = \lfloor k/2 \rfloor,

with tap offsets :math:`\delta y_t, \delta x_t \in [-r, r]` in row-major order (the order of
``torch.nn.functional.unfold``), dilation :math:`d`, zero padding outside the image, and the same
filter for every channel (as the thesis' code does: it unfolds each colour channel and multiplies
by one :math:`k^2`-channel filter map).

Three implementations, one public dispatcher :func:`apply_filter_flow`:

* ``"reference"`` — ``F.unfold`` (the thesis' "im2col" [KONG, §6.3.1]) and a product: short and
  obviously right, but it materialises the ``(N, C·k², H, W)`` column tensor, :math:`k^2` times the
  image, twice in the forward pass and once more in the backward pass; autograd keeps one copy
  alive between them.
* ``"lean"`` — shifted accumulation: for each of the :math:`k^2` taps, one fused in-place
  ``addcmul_`` of a shifted view of the image into the output. Nothing of size :math:`k^2\times`
  the image exists, neither in the forward pass nor for the backward pass: a custom autograd
  function saves only its two inputs and computes both gradients with the same shifted loop.
* ``"triton"`` — a Triton kernel for GPUs: the forward pass and both gradients, each one pass over
  the pixels with fp32 (fp64 for fp64 input) accumulation and no atomics (the image gradient is
  gathered, not scattered). Runs on the CPU under ``TRITON_INTERPRET=1`` (set before this kernel is
  first used), which is how the tests compare it with the other two.

``apply_filter_flow(..., impl="auto")`` picks ``"triton"`` for CUDA tensors when Triton imports and
``"lean"`` otherwise; :func:`which_impl` says which, and the choice is logged at DEBUG level on the
``pixelbook.ops`` logger. ``benchmarks/bench_filter_flow.py`` measures time and peak memory of the
three side by side.
"""

from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_dtype, check_finite, check_int, check_shape

__all__ = ["apply_filter_flow", "expected_flow", "filter_size", "tap_offsets", "which_impl", "IMPLS"]

#: The implementations behind :func:`apply_filter_flow`, besides ``"auto"``.
IMPLS = ("reference", "lean", "triton")

_log = logging.getLogger("pixelbook.ops")


# --------------------------------------------------------------------------------------------------
# Validation and the tap layout


def filter_size(filters: torch.Tensor, name: str = "filters") -> int:
    """The side :math:`k` of per-pixel filters with :math:`k^2` channels, :math:`k` odd.

    Args:
        filters: ``(N, k*k, H, W)`` tensor.
        name: the argument name used in error messages.

    Returns:
        ``k``. Raises ValueError naming ``name`` if the channel count is not the square of an odd
        integer.

    Example:
        >>> pb.ops.filter_size(torch.zeros(1, 25, 8, 8))
        5
    """
    check_shape(filters, name, "N T H W")
    taps = filters.shape[1]
    k = math.isqrt(taps)
    if k * k != taps or k % 2 == 0:
        raise ValueError(f"`{name}`: expected k*k channels with k odd (1, 9, 25, 49, ..., 289), got {taps}")
    return k


def tap_offsets(k: int, dilation: int = 1, *, dtype=torch.float32, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column offsets ``(dy, dx)`` of the :math:`k^2` taps, each a ``(k*k,)`` tensor.

    Tap ``t = (dy + r)·k + (dx + r)`` with ``r = k // 2``, times ``dilation`` (row-major, the order of
    ``F.unfold``).

    Args:
        k: the filter side (odd).
        dilation: the spacing of the taps in pixels.
        dtype: of the returned offsets.
        device: of the returned offsets.

    Example:
        >>> dy, dx = pb.ops.filter_flow.tap_offsets(3)
        >>> dy.tolist(), dx.tolist()
        ([-1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0], [-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0])
    """
    r = k // 2
    steps = torch.arange(-r, r + 1, dtype=dtype, device=device) * dilation
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return dy.reshape(-1), dx.reshape(-1)


def _check_dilation(dilation) -> int:
    return check_int(dilation, "dilation", low=1)


def _check_inputs(image, filters, dilation) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    dims = check_shape(image, "image", "N C H W")
    check_shape(filters, "filters", "N T H W", dims)
    check_dtype(image, "image", "float")
    check_dtype(filters, "filters", "float")
    if filters.device != image.device:
        raise ValueError(f"`filters`: expected a tensor on {image.device} (as `image`), got {filters.device}")
    k = filter_size(filters)
    dilation = _check_dilation(dilation)
    check_finite(image, "image")
    check_finite(filters, "filters")
    dtype = torch.promote_types(image.dtype, filters.dtype)
    return image.to(dtype), filters.to(dtype), k, dilation


# --------------------------------------------------------------------------------------------------
# Reference: unfold ("im2col") and a product


def _apply_filter_flow_reference(image: torch.Tensor, filters: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """Unfold-based filter flow. Memory: two ``(N, C, k², H, W)`` temporaries (k² × the image)."""
    N, C, H, W = image.shape
    k = math.isqrt(filters.shape[1])
    r = k // 2
    cols = F.unfold(image, k, dilation=dilation, padding=r * dilation)  # (N, C*k*k, H*W), zero padded
    cols = cols.view(N, C, k * k, H, W)
    return (cols * filters.unsqueeze(1)).sum(2)  # (N, C, H, W): the same filter for every channel


# --------------------------------------------------------------------------------------------------
# Lean: shifted accumulation with a custom backward


def _tap_regions(k: int, dilation: int, H: int, W: int):
    """For each tap ``t``: the output rows/columns whose sample ``p + offset`` is inside the image,
    and the matching input rows/columns. Taps that fall entirely outside are skipped."""
    r = k // 2
    for t in range(k * k):
        oy, ox = (t // k - r) * dilation, (t % k - r) * dilation
        if abs(oy) >= H or abs(ox) >= W:
            continue
        out_y = slice(max(0, -oy), min(H, H - oy))
        out_x = slice(max(0, -ox), min(W, W - ox))
        in_y = slice(out_y.start + oy, out_y.stop + oy)
        in_x = slice(out_x.start + ox, out_x.stop + ox)
        yield t, out_y, out_x, in_y, in_x


def _lean_forward(image, filters, k, dilation):
    N, C, H, W = image.shape
    out = image.new_zeros(N, C, H, W)
    for t, oy, ox, iy, ix in _tap_regions(k, dilation, H, W):
        # in place, fused: no temporary as large as the image, let alone k² of them
        out[:, :, oy, ox].addcmul_(image[:, :, iy, ix], filters[:, t:t + 1, oy, ox])
    return out


def _lean_grad_image(grad_out, filters, k, dilation):
    # d out[p] / d image[p + o_t] = filters[t, p]: scatter each tap's product back by its offset
    N, C, H, W = grad_out.shape
    grad = grad_out.new_zeros(N, C, H, W)
    for t, oy, ox, iy, ix in _tap_regions(k, dilation, H, W):
        grad[:, :, iy, ix].addcmul_(grad_out[:, :, oy, ox], filters[:, t:t + 1, oy, ox])
    return grad


def _lean_grad_filters(grad_out, image, k, dilation):
    # d out[c, p] / d filters[t, p] = image[c, p + o_t], summed over the channels
    N, C, H, W = grad_out.shape
    grad = grad_out.new_zeros(N, k * k, H, W)
    for t, oy, ox, iy, ix in _tap_regions(k, dilation, H, W):
        grad[:, t, oy, ox] = (grad_out[:, :, oy, ox] * image[:, :, iy, ix]).sum(1)  # temporary: one image
    return grad


class _LeanFilterFlow(torch.autograd.Function):
    """Saves only ``image`` and ``filters``; the backward is the same shifted loop. Its operations
    are ordinary differentiable ones, so double backward works (at reference-like memory)."""

    @staticmethod
    def forward(ctx, image, filters, k, dilation):
        ctx.save_for_backward(image, filters)
        ctx.k, ctx.dilation = k, dilation
        return _lean_forward(image, filters, k, dilation)

    @staticmethod
    def backward(ctx, grad_out):
        image, filters = ctx.saved_tensors
        grad_image = grad_filters = None
        if ctx.needs_input_grad[0]:
            grad_image = _lean_grad_image(grad_out, filters, ctx.k, ctx.dilation)
        if ctx.needs_input_grad[1]:
            grad_filters = _lean_grad_filters(grad_out, image, ctx.k, ctx.dilation)
        return grad_image, grad_filters, None, None


def _apply_filter_flow_lean(image: torch.Tensor, filters: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """Shifted-accumulation filter flow. Extra memory: the output only (forward); the two gradients
    (backward). Time: k² fused in-place ops over the image."""
    k = math.isqrt(filters.shape[1])
    return _LeanFilterFlow.apply(image, filters, k, dilation)


# --------------------------------------------------------------------------------------------------
# Triton


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _apply_filter_flow_triton(image: torch.Tensor, filters: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """Triton filter flow (forward and backward kernels in ``pixelbook/ops/_filter_flow_triton.py``).

    Needs CUDA tensors, or ``TRITON_INTERPRET=1`` set before the kernels are first loaded (then CPU
    tensors run in Triton's interpreter: slow, for tests). Only first derivatives."""
    if not _triton_available():
        raise RuntimeError("impl='triton' needs the `triton` package (it ships with PyTorch's CUDA wheels on Linux)")
    from . import _filter_flow_triton as kernels

    if not (image.is_cuda or kernels.INTERPRETED):
        raise ValueError(f"`image`: impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before the "
                         f"first use of the kernel), got a tensor on {image.device}")
    return kernels.FilterFlowTriton.apply(image, filters, math.isqrt(filters.shape[1]), dilation)


_IMPL_FUNCTIONS = {
    "reference": _apply_filter_flow_reference,
    "lean": _apply_filter_flow_lean,
    "triton": _apply_filter_flow_triton,
}


# --------------------------------------------------------------------------------------------------
# Public API


def which_impl(image: torch.Tensor, impl: str = "auto") -> str:
    """The implementation :func:`apply_filter_flow` uses for ``image`` and ``impl``.

    ``"auto"`` means ``"triton"`` for CUDA tensors when Triton imports, ``"lean"`` otherwise
    (CPU, MPS, no Triton). An explicit name is returned as given.

    Args:
        image: the tensor that would be filtered (only its device matters).
        impl: ``"auto"`` or one of :data:`IMPLS`.

    Example:
        >>> pb.ops.which_impl(torch.zeros(1, 3, 8, 8))
        'lean'
    """
    check_choice(impl, "impl", ("auto",) + IMPLS)
    if impl != "auto":
        return impl
    return "triton" if image.is_cuda and _triton_available() else "lean"


def apply_filter_flow(image: torch.Tensor, filters: torch.Tensor, *, dilation: int = 1,
                      impl: str = "auto") -> torch.Tensor:
    r"""Apply a different :math:`k\times k` filter at every pixel [KONG, Eqs. 6.1-6.2].

    .. math::
        \mathrm{out}[n, c, y, x] = \sum_{t} \mathrm{filters}[n, t, y, x]\;
            \mathrm{image}[n, c,\, y + d\,\delta y_t,\, x + d\,\delta x_t]

    Tap ``t = (dy + r)·k + (dx + r)``, ``r = k // 2``, row-major over ``dy, dx ∈ [-r, r]`` (the order
    of ``F.unfold``); pixels outside the image count as zero (zero padding, as the thesis' code,
    which unfolds a zero-padded image). So an output pixel *reads* the input at ``p + d·(dx, dy)``:
    a one-hot filter at offset ``(dy, dx)`` gives ``out[y, x] = image[y + dy, x + dx]`` and its
    :func:`expected_flow` is ``(dx, dy)``, a backward-warping flow. A spatially constant filter is
    ``F.conv2d`` (cross-correlation) with that kernel, per channel. The same filter is applied to
    every channel. Filters are not normalised here: apply ``softmax(logits, dim=1)`` first for the
    thesis' non-negative, sum-to-one filters (deblurring), or pass free-form ones (JPEG, SR).

    Args:
        image: ``(N, C, H, W)`` float.
        filters: ``(N, k*k, H, W)`` float, ``k`` odd (inferred from the channel count), same
            ``N, H, W`` and device as ``image``. If the dtypes differ both are promoted
            (``torch.promote_types``) and the result has that dtype.
        dilation: ``d >= 1``, the spacing of the taps in pixels (1: a dense ``k × k`` window).
            Default 1, the thesis' filters [KONG, §6.3.1]; mgPFF's levels use it too.
        impl: ``"auto"`` (``"triton"`` on CUDA when available, else ``"lean"``; see
            :func:`which_impl`), ``"reference"`` (unfold; memory ``2·k²×`` the image),
            ``"lean"`` (shifted accumulation; memory ``1×`` the image) or ``"triton"``
            (CUDA, or any device under ``TRITON_INTERPRET=1``; first derivatives only).

    Returns:
        ``(N, C, H, W)`` tensor, differentiable with respect to ``image`` and ``filters``.

    Raises:
        ValueError: naming the argument: wrong rank, mismatched ``N``, ``H``, ``W``, a channel count
            that is not ``k²`` with ``k`` odd, NaN/Inf, different devices, ``dilation < 1``, an
            unknown ``impl``, ``impl="triton"`` for CPU tensors outside the interpreter.
        TypeError: naming the argument: not a tensor, an integer tensor, a non-integer ``dilation``.

    Example:
        >>> image = torch.arange(9.0).view(1, 1, 3, 3)
        >>> shift = torch.zeros(1, 9, 3, 3)
        >>> shift[:, 5] = 1.0  # tap 5 = (dy, dx) = (0, +1): read the right neighbour
        >>> pb.ops.apply_filter_flow(image, shift)[0, 0]
        tensor([[1., 2., 0.],
                [4., 5., 0.],
                [7., 8., 0.]])
    """
    image, filters, k, dilation = _check_inputs(image, filters, dilation)
    name = which_impl(image, impl)
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("apply_filter_flow: impl=%s (asked %s), k=%d, dilation=%d, image %s on %s",
                   name, impl, k, dilation, tuple(image.shape), image.device)
    return _IMPL_FUNCTIONS[name](image, filters, dilation)


def expected_flow(filters: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    r"""The expected displacement of per-pixel filters [KONG, §6.4.2; Eq. 7.6].

    .. math::
        v_x(p) = \sum_t \mathrm{filters}[t, p]\, d\,\delta x_t, \qquad
        v_y(p) = \sum_t \mathrm{filters}[t, p]\, d\,\delta y_t

    For non-negative filters that sum to one (softmax) this is the mean of the offsets the pixel
    reads from, "the optical flow (delta filter) which most closely approximates the predicted
    filter flow" [KONG, §6.4.2]; a one-hot filter at offset ``(dy, dx)`` gives exactly
    ``(dx, dy)·d``. Filters are used as given, not normalised: for free-form filters the result is
    their first moment, which has no such reading.

    Args:
        filters: ``(N, k*k, H, W)`` float, ``k`` odd, taps ordered as in :func:`apply_filter_flow`.
        dilation: ``d >= 1``, as in :func:`apply_filter_flow`.

    Returns:
        ``(N, 2, H, W)`` flow in pixels: channel 0 = x (right), channel 1 = y (down), pointing from
        an output pixel to where it reads the input (backward warping).

    Example:
        >>> one_hot = torch.zeros(1, 25, 4, 4)
        >>> one_hot[:, 2 * 5 + 4] = 1.0  # (dy, dx) = (0, +2)
        >>> pb.ops.expected_flow(one_hot)[0, :, 0, 0].tolist()
        [2.0, 0.0]
    """
    k = filter_size(filters)
    check_dtype(filters, "filters", "float")
    check_finite(filters, "filters")
    dilation = _check_dilation(dilation)
    dy, dx = tap_offsets(k, dilation, dtype=filters.dtype, device=filters.device)
    offsets = torch.stack([dx, dy])  # (2, k*k): x first, then y
    return torch.einsum("nthw,ft->nfhw", filters, offsets)
