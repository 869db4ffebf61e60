"""Tests of pixelbook.losses.multitask."""

import pytest
import torch
import torch.nn.functional as F

from pixelbook import losses as L


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
