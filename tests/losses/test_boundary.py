"""Tests of pixelbook.losses.boundary."""

import math

import pytest
import torch
import torch.nn.functional as F

from pixelbook import losses as L


class TestBalancedBCE:
    def test_beta_is_fraction_of_negatives(self):
        # one positive, three negatives -> beta = 3/4; logits 0 -> each term is ln 2
        targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
        loss = L.balanced_bce_loss(torch.zeros(1, 1, 2, 2), targets, reduction="sum")
        assert loss.item() == pytest.approx((0.75 * 1 + 0.25 * 3) * math.log(2))

    def test_matches_weighted_bce_formula(self):
        torch.manual_seed(0)
        z, t = torch.randn(2, 1, 5, 5), (torch.rand(2, 5, 5) > 0.8).float()
        beta = 1 - t.flatten(1).mean(1).view(-1, 1, 1)
        w = beta * t + (1 - beta) * (1 - t)
        ref = F.binary_cross_entropy_with_logits(z[:, 0], t, weight=w)
        assert L.balanced_bce_loss(z, t).item() == pytest.approx(ref.item(), rel=1e-5)

    def test_stable_for_huge_logits(self):
        z = torch.tensor([[[1e4, -1e4]]])
        assert torch.isfinite(L.balanced_bce_loss(z, torch.tensor([[[0.0, 1.0]]])))

    def test_deep_supervision_sums_terms(self):
        z, t = torch.randn(1, 1, 3, 3), (torch.rand(1, 3, 3) > 0.5).float()
        assert L.boundary_loss([z, z, z], t).item() == pytest.approx(3 * L.balanced_bce_loss(z, t).item())
        with pytest.raises(ValueError, match="`side_logits`"):
            L.boundary_loss([], t)

    def test_targets_out_of_range_is_an_error(self):
        with pytest.raises(ValueError, match="`labels`: expected values <= 1"):
            L.balanced_bce_loss(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 2.0))
