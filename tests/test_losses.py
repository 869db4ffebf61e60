import math

import pytest
import torch
import torch.nn.functional as F

from pixelbook import losses as L


class TestSegmentationLoss:
    def test_uniform_logits_give_log_k(self):
        assert L.segmentation_loss(torch.zeros(2, 5, 3, 3), torch.zeros(2, 3, 3, dtype=torch.long)).item() == pytest.approx(math.log(5))

    def test_hand_computed_pixel(self):
        logits = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)
        expected = -math.log(math.exp(0) / (math.exp(2) + 1))  # label 1
        assert L.segmentation_loss(logits, torch.ones(1, 1, 1, dtype=torch.long)).item() == pytest.approx(expected)

    def test_ignore_index_pixels_count_for_nothing(self):
        logits = torch.randn(1, 3, 2, 2)
        labels = torch.tensor([[[0, 255], [255, 255]]])
        assert L.segmentation_loss(logits, labels).item() == pytest.approx(
            F.cross_entropy(logits[:, :, 0, 0], labels[:, 0, 0]).item())

    def test_all_void_is_zero_not_nan(self):
        logits = torch.randn(1, 3, 2, 2, requires_grad=True)
        loss = L.segmentation_loss(logits, torch.full((1, 2, 2), 255))
        loss.backward()
        assert loss.item() == 0 and torch.all(logits.grad == 0)

    def test_errors_name_the_argument(self):
        with pytest.raises(ValueError, match="`labels`: expected H=4"):
            L.segmentation_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, dtype=torch.long))
        with pytest.raises(ValueError, match=r"`labels`: expected labels in \[0, 3\)"):
            L.segmentation_loss(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 7))
        with pytest.raises(TypeError, match="`labels`: expected an integer tensor"):
            L.segmentation_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2))
        with pytest.raises(ValueError, match="`logits`: expected finite"):
            L.segmentation_loss(torch.full((1, 3, 2, 2), float("nan")), torch.zeros(1, 2, 2, dtype=torch.long))


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
        with pytest.raises(ValueError, match="`targets`: expected values <= 1"):
            L.balanced_bce_loss(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 2.0))


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
        with pytest.raises(ValueError, match="`depth`: expected positive"):
            L.log_depth_loss(torch.zeros(1, 1, 1, 1), -torch.ones(1, 1, 1, 1), valid=torch.ones(1, 1, 1, 1, dtype=torch.bool))


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


class TestMultitaskLoss:
    def _outputs_and_batch(self):
        torch.manual_seed(0)
        out = {"seg": torch.randn(2, 4, 8, 8), "boundary_sides": [torch.randn(2, 1, 8, 8)] * 2,
               "depth": torch.randn(2, 1, 8, 8), "normals": F.normalize(torch.randn(2, 3, 8, 8), dim=1)}
        batch = {"labels": torch.randint(0, 4, (2, 8, 8)), "boundaries": (torch.rand(2, 8, 8) > 0.8).float(),
                 "depth": torch.rand(2, 1, 8, 8) + 1, "normals": F.normalize(torch.randn(2, 3, 8, 8), dim=1)}
        return out, batch

    def test_total_is_weighted_sum_of_logged_terms(self):
        out, batch = self._outputs_and_batch()
        w = {"seg": 2.0, "boundary": 0.5, "depth": 0.0, "normals": 1.0}
        total, logs = L.multitask_loss(out, batch, w)
        assert total.item() == pytest.approx(sum(w[k] * logs[k] for k in logs), rel=1e-5)
        assert set(logs) == {"seg", "boundary", "depth", "normals"}

    def test_gamma_and_lam_reach_the_depth_and_normal_losses(self):
        out, batch = self._outputs_and_batch()
        _, logs = L.multitask_loss(out, batch, {}, gamma=0.0, lam=0.0)
        assert logs["depth"] == pytest.approx(L.log_depth_loss(out["depth"], batch["depth"], gamma=0.0).item())
        assert logs["normals"] == pytest.approx(L.normal_loss(out["normals"], batch["normals"], lam=0.0).item())
        _, default = L.multitask_loss(out, batch, {})
        assert default["depth"] > logs["depth"] and default["normals"] > logs["normals"]

    def test_unknown_task_weight_is_an_error(self):
        out, batch = self._outputs_and_batch()
        with pytest.raises(ValueError, match="`weights`: unknown tasks"):
            L.multitask_loss(out, batch, {"flow": 1.0})
