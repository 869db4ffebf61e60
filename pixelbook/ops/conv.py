r"""Depthwise convolution with a point-symmetric kernel, whose backward pass is the same convolution.

With zero padding and :math:`k(x) = k(-x)`, the convolution :math:`u \mapsto k * u` is self-adjoint,
so its vector-Jacobian product is :math:`g \mapsto k * g`: one convolution instead of PyTorch's
generic convolution backward (Chapter 3's STD layer runs it ``2T`` times per step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_dtype, check_finite, check_shape

__all__ = ["self_adjoint_conv2d"]


def _conv(u: torch.Tensor, k4: torch.Tensor) -> torch.Tensor:
    C = u.shape[1]
    return F.conv2d(u, k4.expand(C, 1, *k4.shape[-2:]).to(u.dtype), padding=k4.shape[-1] // 2, groups=C)


class _SelfAdjointConv(torch.autograd.Function):
    """Zero-padded convolution with a point-symmetric kernel is self-adjoint, so its backward pass is
    the same convolution: one conv instead of the generic (slower) convolution backward."""

    @staticmethod
    def forward(ctx, u, k4):
        ctx.save_for_backward(k4)
        return _conv(u, k4)

    @staticmethod
    def backward(ctx, grad):
        (k4,) = ctx.saved_tensors
        return _SelfAdjointConv.apply(grad, k4), None


def self_adjoint_conv2d(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    r"""Per-channel ("depthwise") convolution of ``u`` with a point-symmetric kernel, zero padding.

    Args:
        u: ``(N, C, H, W)`` float maps.
        kernel: ``(1, 1, K, K)`` (one kernel for every channel) or ``(C, 1, K, K)``, ``K`` odd and
            :math:`k(x) = k(-x)`; the caller guarantees the symmetry (it is what makes the backward
            pass below exact; :mod:`pixelbook.std` checks it once per kernel).

    Returns:
        ``(N, C, H, W)``, the same size as ``u``. When ``kernel`` requires a gradient (a learnable
        width) autograd differentiates the plain convolution; otherwise the backward pass is the same
        convolution applied to the incoming gradient.

    Example:
        >>> k = torch.ones(1, 1, 3, 3) / 9
        >>> u = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> torch.allclose(self_adjoint_conv2d(u, k), torch.nn.functional.conv2d(u, k.expand(3, 1, 3, 3), padding=1, groups=3))
        True
    """
    d = check_shape(u, "u", "N C H W")
    check_dtype(u, "u", "float")
    check_finite(u, "u")
    check_shape(kernel, "kernel", "KC 1 K K")
    check_dtype(kernel, "kernel", "float")
    check_finite(kernel, "kernel")
    if kernel.shape[0] not in (1, d["C"][0]):
        raise ValueError(f"`kernel`: expected 1 or C={d['C'][0]} (as in `u`) kernels, got {kernel.shape[0]}")
    if kernel.shape[-1] % 2 == 0:
        raise ValueError(f"`kernel`: expected an odd size K, got {kernel.shape[-1]}")
    return _self_adjoint_conv2d(u, kernel)


def _self_adjoint_conv2d(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """:func:`self_adjoint_conv2d` without the checks, for callers that checked once (STD's loop)."""
    if kernel.requires_grad:  # learnable sigma: let autograd differentiate in the kernel too
        return _conv(u, kernel)
    return _SelfAdjointConv.apply(u, kernel)
