"""Tests of pixelbook.ops.conv: the self-adjoint depthwise convolution and its hand-written backward."""

import torch
import torch.nn.functional as F

from pixelbook.ops import self_adjoint_conv2d

f64 = torch.float64


def _symmetric_kernel(C, K, seed=0):
    k = torch.rand(C, 1, K, K, generator=torch.Generator().manual_seed(seed), dtype=f64)
    return (k + k.flip(-1, -2)) / 2


class TestSelfAdjointConv2d:
    def test_forward_equals_depthwise_conv(self):
        u = torch.randn(2, 3, 9, 7, dtype=f64)
        for k in (_symmetric_kernel(1, 3), _symmetric_kernel(3, 5, seed=1)):
            ref = F.conv2d(u, k.expand(3, 1, *k.shape[-2:]), padding=k.shape[-1] // 2, groups=3)
            torch.testing.assert_close(self_adjoint_conv2d(u, k), ref)

    def test_backward_equals_autograd_of_the_plain_convolution(self):
        k = _symmetric_kernel(3, 5, seed=2)
        u = torch.randn(2, 3, 6, 8, dtype=f64, requires_grad=True)
        g = torch.randn(2, 3, 6, 8, dtype=f64)
        (grad,) = torch.autograd.grad(self_adjoint_conv2d(u, k), u, g)
        (ref,) = torch.autograd.grad(F.conv2d(u, k, padding=2, groups=3), u, g)
        torch.testing.assert_close(grad, ref)
        assert torch.autograd.gradcheck(lambda x: self_adjoint_conv2d(x, k), (u,))

    def test_asymmetric_kernel_would_give_a_different_backward(self):
        # the hand-written backward is exact only for k(x) = k(-x); this pins what "self-adjoint" buys
        k = torch.zeros(1, 1, 3, 3, dtype=f64)
        k[0, 0, 1, 2] = 1.0  # a shift: its adjoint is the opposite shift
        u = torch.randn(1, 1, 5, 5, dtype=f64, requires_grad=True)
        g = torch.randn(1, 1, 5, 5, dtype=f64)
        (grad,) = torch.autograd.grad(self_adjoint_conv2d(u, k), u, g)
        (ref,) = torch.autograd.grad(F.conv2d(u, k, padding=1), u, g)
        assert not torch.allclose(grad, ref)

    def test_learnable_kernel_gets_a_gradient(self):
        k = _symmetric_kernel(1, 3).requires_grad_()
        u = torch.randn(1, 2, 5, 5, dtype=f64)
        self_adjoint_conv2d(u, k).sum().backward()
        assert k.grad is not None and k.grad.abs().sum() > 0
