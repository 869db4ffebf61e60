"""Tests of pixelbook.losses.normals."""

import math

import pytest
import torch
import torch.nn.functional as F

from pixelbook import losses as L


class TestNormalLoss:
    def test_value_is_minus_cos_plus_lambda_angle(self):
        theta = 0.3
        pred = torch.tensor([math.sin(theta), 0.0, math.cos(theta)]).view(1, 3, 1, 1)
        gt = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
        assert L.normal_loss(pred, gt, lam=4.0).item() == pytest.approx(-math.cos(theta) + 4 * theta, rel=1e-5)

    def test_angle_gradient_stays_lambda_while_cosine_gradient_vanishes(self):
        # d/dθ of (-cos θ + λ θ) = sin θ + λ; the cosine part alone -> 0 as θ -> 0 (thesis, Fig. 2.3)
        gt = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1)
        for lam, expected in [(0.0, math.sin(0.01)), (4.0, math.sin(0.01) + 4.0)]:
            theta = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
            pred = torch.stack([torch.sin(theta), theta * 0, torch.cos(theta)]).view(1, 3, 1, 1)
            L.normal_loss(pred, gt, lam=lam).backward()
            assert theta.grad.item() == pytest.approx(expected, rel=1e-4)

    def test_perfect_prediction_has_finite_gradient(self):
        n = F.normalize(torch.randn(1, 3, 4, 4), dim=1).requires_grad_()
        L.normal_loss(n, n.detach()).backward()
        assert torch.isfinite(n.grad).all()

    def test_gradcheck_away_from_the_clamp(self):
        torch.manual_seed(0)
        pred = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
        gt = F.normalize(torch.randn(1, 3, 2, 2, dtype=torch.float64), dim=1)
        assert torch.autograd.gradcheck(lambda p: L.normal_loss(p, gt), (pred,))

    def test_wrong_channel_count_is_an_error(self):
        with pytest.raises(ValueError, match=r"`pred`: expected shape \(N, 3, H, W\)"):
            L.normal_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2))
