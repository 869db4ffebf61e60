"""Triton kernels of :func:`pixelbook.ops.apply_filter_flow` (imported on first use only).

Three kernels, each one pass over the pixels, no atomics:

* ``_fwd``: ``out[n, c, p] = Σ_t f[n, t, p] · img[n, c, p + o_t]`` — a program owns a block of
  pixels and a block of channels, loops over the k² taps, loads each filter value once for all its
  channels, and accumulates in registers.
* ``_grad_filters``: ``gf[n, t, p] = Σ_c g[n, c, p] · img[n, c, p + o_t]`` — a program owns a block
  of pixels, loops over taps and channel blocks.
* ``_grad_image``: ``gi[n, c, q] = Σ_t f[n, t, q - o_t] · g[n, c, q - o_t]`` — the transpose written
  as a *gather* (each input pixel collects from the outputs that read it), so no two programs write
  the same address.

Offsets are int64 or pointer steps (``k² · H · W`` passes 2³¹ for a 2720² image at k = 17). Accumulation is in
float32, or float64 for float64 input (so ``gradcheck`` holds). Whether the kernels compile for the
GPU or run in Triton's CPU interpreter is fixed when this module is imported (``TRITON_INTERPRET``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: True when the kernels below run in Triton's interpreter (TRITON_INTERPRET=1 at import).
INTERPRETED = bool(triton.knobs.runtime.interpret) if hasattr(triton, "knobs") else False

# ours: 128 pixels × up to 16 channels keeps the accumulator at ≤ 2048 fp32 registers per program.
_BLOCK_P = 128
_MAX_BLOCK_C = 16


@triton.jit
def _fwd(img_ptr, filt_ptr, out_ptr, C, H, W, HW, DIL,
         K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)        # (P,) output pixels
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)        # (C,) channels
    p_ok = p < HW
    c_ok = c < C
    y = p // W
    x = p % W
    img = img_ptr + n * C * HW + c.to(tl.int64)[:, None] * HW   # (C, 1) channel rows
    filt = filt_ptr + n * (K * K) * HW
    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    R: tl.constexpr = K // 2
    for t in range(K * K):
        yy = y + (t // K - R) * DIL
        xx = x + (t % K - R) * DIL
        inside = p_ok & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        f = tl.load(filt + p, mask=p_ok, other=0.0).to(ACC)                 # (P,) tap t's plane
        filt += HW                                     # pointer steps: no k²·H·W int32 product
        v = tl.load(img + (yy * W + xx)[None, :], mask=c_ok[:, None] & inside[None, :], other=0.0).to(ACC)
        acc += f[None, :] * v
    out = out_ptr + n * C * HW + c.to(tl.int64)[:, None] * HW + p[None, :]
    tl.store(out, acc, mask=c_ok[:, None] & p_ok[None, :])


@triton.jit
def _grad_filters(img_ptr, gout_ptr, gfilt_ptr, C, H, W, HW, DIL,
                  K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    pid_p = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = p < HW
    y = p // W
    x = p % W
    img = img_ptr + n * C * HW
    gout = gout_ptr + n * C * HW
    gfilt = gfilt_ptr + n * (K * K) * HW
    R: tl.constexpr = K // 2
    for t in range(K * K):
        yy = y + (t // K - R) * DIL
        xx = x + (t % K - R) * DIL
        inside = p_ok & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        acc = tl.zeros((BLOCK_P,), dtype=ACC)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            rows = c.to(tl.int64)[:, None] * HW
            c_ok = (c < C)[:, None]
            g = tl.load(gout + rows + p[None, :], mask=c_ok & p_ok[None, :], other=0.0).to(ACC)
            v = tl.load(img + rows + (yy * W + xx)[None, :], mask=c_ok & inside[None, :], other=0.0).to(ACC)
            acc += tl.sum(g * v, axis=0)
        tl.store(gfilt + p, acc, mask=p_ok)
        gfilt += HW


@triton.jit
def _grad_image(filt_ptr, gout_ptr, gimg_ptr, C, H, W, HW, DIL,
                K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    pid_q = tl.program_id(0)
    pid_c = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    q = pid_q * BLOCK_P + tl.arange(0, BLOCK_P)        # (P,) input pixels
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    q_ok = q < HW
    c_ok = c < C
    y = q // W
    x = q % W
    gout = gout_ptr + n * C * HW + c.to(tl.int64)[:, None] * HW
    filt = filt_ptr + n * (K * K) * HW
    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    R: tl.constexpr = K // 2
    for t in range(K * K):
        ys = y - (t // K - R) * DIL                     # the output pixel that read q through tap t
        xs = x - (t % K - R) * DIL
        ok = q_ok & (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
        src = ys * W + xs
        f = tl.load(filt + src, mask=ok, other=0.0).to(ACC)
        filt += HW
        g = tl.load(gout + src[None, :], mask=c_ok[:, None] & ok[None, :], other=0.0).to(ACC)
        acc += f[None, :] * g
    out = gimg_ptr + n * C * HW + c.to(tl.int64)[:, None] * HW + q[None, :]
    tl.store(out, acc, mask=c_ok[:, None] & q_ok[None, :])


def _meta(image: torch.Tensor):
    block_c = min(triton.next_power_of_2(image.shape[1]), _MAX_BLOCK_C)
    acc = tl.float64 if image.dtype == torch.float64 else tl.float32
    return block_c, acc


def forward(image, filters, k, dilation):
    N, C, H, W = image.shape
    out = torch.empty_like(image)
    block_c, acc = _meta(image)
    grid = (triton.cdiv(H * W, _BLOCK_P), triton.cdiv(C, block_c), N)
    _fwd[grid](image, filters, out, C, H, W, H * W, dilation, K=k, BLOCK_C=block_c, BLOCK_P=_BLOCK_P, ACC=acc)
    return out


def grad_image(grad_out, filters, k, dilation):
    N, C, H, W = grad_out.shape
    grad = torch.empty_like(grad_out)
    block_c, acc = _meta(grad_out)
    grid = (triton.cdiv(H * W, _BLOCK_P), triton.cdiv(C, block_c), N)
    _grad_image[grid](filters, grad_out, grad, C, H, W, H * W, dilation, K=k, BLOCK_C=block_c, BLOCK_P=_BLOCK_P, ACC=acc)
    return grad


def grad_filters(grad_out, image, k, dilation):
    N, C, H, W = grad_out.shape
    grad = torch.empty(N, k * k, H, W, dtype=grad_out.dtype, device=grad_out.device)
    block_c, acc = _meta(grad_out)
    grid = (triton.cdiv(H * W, _BLOCK_P), N)
    _grad_filters[grid](image, grad_out, grad, C, H, W, H * W, dilation, K=k, BLOCK_C=block_c, BLOCK_P=_BLOCK_P, ACC=acc)
    return grad


class FilterFlowTriton(torch.autograd.Function):
    """Autograd wrapper: saves the two (contiguous) inputs; first derivatives only."""

    @staticmethod
    def forward(ctx, image, filters, k, dilation):
        image, filters = image.contiguous(), filters.contiguous()
        ctx.save_for_backward(image, filters)
        ctx.k, ctx.dilation = k, dilation
        return forward(image, filters, k, dilation)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        image, filters = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        gi = grad_image(grad_out, filters, ctx.k, ctx.dilation) if ctx.needs_input_grad[0] else None
        gf = grad_filters(grad_out, image, ctx.k, ctx.dilation) if ctx.needs_input_grad[1] else None
        return gi, gf, None, None
