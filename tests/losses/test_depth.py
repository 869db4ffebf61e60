"""Tests of pixelbook.losses.depth."""

import math

import pytest
import torch

from pixelbook import losses as L


class TestLogDepthLoss:
    def test_equals_mixed_l2_l1_of_log_residual(self):
        pred = torch.log(torch.tensor([2.0, 1.0])).view(1, 1, 1, 2)
        gt = torch.tensor([1.0, 1.0]).view(1, 1, 1, 2)
        r = math.log(2)
        assert L.log_depth_loss(pred, gt, gamma=2.0).item() == pytest.approx((r * r + 2 * r) / 2)

    def test_zero_depth_pixels_are_invalid_by_default(self):
        pred = torch.zeros(1, 1, 1, 2)
        gt = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
        assert L.log_depth_loss(pred, gt).item() == 0

    def test_gradient_does_not_vanish_near_zero_error(self):
        # ours: the L1 term keeps |d loss / d r| >= gamma as r -> 0 (the thesis' argument)
        r = torch.tensor([1e-4], dtype=torch.float64, requires_grad=True)
        L.log_depth_loss(r.view(1, 1, 1, 1), torch.ones(1, 1, 1, 1, dtype=torch.float64), reduction="sum").backward()
        assert r.grad.item() == pytest.approx(2 * 1e-4 + 2.0)

    def test_gradcheck(self):
        pred = torch.randn(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
        gt = torch.rand(1, 1, 3, 3, dtype=torch.float64) + 0.5
        assert torch.autograd.gradcheck(lambda p: L.log_depth_loss(p, gt), (pred,))

    def test_negative_depth_is_an_error(self):
        with pytest.raises(ValueError, match="`target`: expected positive"):
            L.log_depth_loss(torch.zeros(1, 1, 1, 1), -torch.ones(1, 1, 1, 1), valid=torch.ones(1, 1, 1, 1, dtype=torch.bool))
