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

    def test_total_is_weighted_sum_of_the_terms(self):
        out, batch = self._outputs_and_batch()
        w = {"seg": 2.0, "boundary": 0.5, "depth": 0.0, "normals": 1.0}
        total = L.multitask_loss(out, batch, w)
        terms = L.multitask_terms(out, batch)
        assert torch.is_tensor(total) and total.ndim == 0
        assert list(terms) == ["seg", "boundary", "depth", "normals"]
        assert total.item() == pytest.approx(sum(w[k] * float(terms[k]) for k in terms), rel=1e-6)
        torch.testing.assert_close(terms["seg"], L.segmentation_loss(out["seg"], batch["labels"]))
        torch.testing.assert_close(terms["depth"], L.log_depth_loss(out["depth"], batch["depth"]))

    def test_missing_task_weight_is_one_and_only_present_heads_count(self):
        out, batch = self._outputs_and_batch()
        seg_only = {"seg": out["seg"]}
        torch.testing.assert_close(L.multitask_loss(seg_only, batch), L.segmentation_loss(out["seg"], batch["labels"]))
        torch.testing.assert_close(L.multitask_loss(out, batch, {"seg": 3.0}),
                                   sum((3.0 if k == "seg" else 1.0) * v for k, v in L.multitask_terms(out, batch).items()))

    def test_gamma_and_lam_reach_the_depth_and_normal_losses(self):
        out, batch = self._outputs_and_batch()
        logs = L.multitask_terms(out, batch, gamma=0.0, lam=0.0)
        assert logs["depth"].item() == pytest.approx(L.log_depth_loss(out["depth"], batch["depth"], gamma=0.0).item())
        assert logs["normals"].item() == pytest.approx(L.normal_loss(out["normals"], batch["normals"], lam=0.0).item())
        default = L.multitask_terms(out, batch)
        assert default["depth"] > logs["depth"] and default["normals"] > logs["normals"]
        torch.testing.assert_close(L.multitask_loss(out, batch, gamma=0.0, lam=0.0), sum(logs.values()))

    def test_unknown_task_weight_is_an_error(self):
        out, batch = self._outputs_and_batch()
        with pytest.raises(ValueError, match="`task_weights`: unknown tasks"):
            L.multitask_loss(out, batch, {"flow": 1.0})
        with pytest.raises(ValueError, match="`outputs`: expected at least one"):
            L.multitask_terms({"flow": out["seg"]}, batch)
