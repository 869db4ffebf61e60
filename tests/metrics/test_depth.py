"""Tests of pixelbook.metrics.depth."""

import math

import pytest
import torch

from pixelbook.metrics import depth_metrics


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestDepthMetrics:
    PRED = [1.0, 1.2, 1.5, 2.0]  # against gt = 1 everywhere: ratios 1, 1.2, 1.5, 2

    def test_hand_computed_values(self):
        m = depth_metrics(torch.tensor(self.PRED).reshape(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
        assert list(m) == ["abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "d1", "d2", "d3"]
        assert all(type(v) is float for v in m.values())
        err = [d - 1.0 for d in self.PRED]
        assert m["abs_rel"] == pytest.approx(sum(abs(e) for e in err) / 4)  # 0.425
        assert m["sq_rel"] == pytest.approx(sum(e * e for e in err) / 4)  # 0.3225
        assert m["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in err) / 4))
        assert m["rmse_log"] == pytest.approx(math.sqrt(sum(math.log(d) ** 2 for d in self.PRED) / 4))
        assert m["log10"] == pytest.approx(sum(abs(math.log10(d)) for d in self.PRED) / 4)
        # 1.25 -> {1, 1.2}; 1.5625 -> + 1.5; 1.953125 -> 2 still out
        assert (m["d1"], m["d2"], m["d3"]) == (0.5, 0.75, 0.75)

    def test_delta_is_strict_and_symmetric(self):
        # both ratios are exactly 1.25 in binary floating point (1.25/1, 5/4), which is not < 1.25
        pred, gt = torch.tensor([[[1.25, 5.0]]]), torch.tensor([[[1.0, 4.0]]])
        m = depth_metrics(pred, gt)
        assert m["d1"] == 0.0 and m["d2"] == 1.0
        swapped = depth_metrics(gt, pred)  # max(d/d*, d*/d) is symmetric
        assert swapped["d1"] == 0.0 and swapped["d2"] == 1.0

    def test_nchw_and_nhw_agree(self):
        pred = torch.rand(2, 1, 5, 5, generator=gen(14)) + 0.5
        gt = torch.rand(2, 1, 5, 5, generator=gen(15)) + 0.5
        assert depth_metrics(pred, gt) == depth_metrics(pred[:, 0], gt[:, 0])

    def test_default_valid_mask_skips_missing_gt(self):
        pred = torch.tensor([[[2.0, 1.0e6, 1.0]]])
        gt = torch.tensor([[[2.0, 0.0, 1.0]]])  # 0 = missing; the crazy prediction there is ignored
        m = depth_metrics(pred, gt)
        assert m["rmse"] == 0.0 and m["d1"] == 1.0

    def test_explicit_valid_mask(self):
        pred = torch.tensor([[[1.0, 3.0]]])
        gt = torch.ones(1, 1, 2)
        m = depth_metrics(pred, gt, valid=torch.tensor([[[True, False]]]))
        assert m["abs_rel"] == 0.0

    def test_pixel_pooled_not_mean_of_images(self):
        # image 0 has 1 valid pixel (abs rel 1), image 1 has 3 (abs rel 0): pooled 1/4, per-image mean 1/2
        pred = torch.tensor([[[2.0, 1.0, 1.0]], [[1.0, 1.0, 1.0]]])
        gt = torch.tensor([[[1.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]])
        assert depth_metrics(pred, gt)["abs_rel"] == pytest.approx(0.25)

    def test_error_non_positive_prediction(self):
        with pytest.raises(ValueError, match="`pred`: expected positive depths where `valid` is True"):
            depth_metrics(torch.tensor([[[0.0, 1.0]]]), torch.ones(1, 1, 2))

    def test_error_no_valid_pixel(self):
        with pytest.raises(ValueError, match="`valid`: expected at least one valid pixel"):
            depth_metrics(torch.ones(1, 1, 2), torch.ones(1, 1, 2), valid=torch.zeros(1, 1, 2, dtype=torch.bool))

    def test_error_gt_all_missing(self):
        with pytest.raises(ValueError, match="`target`: expected some pixels with target > 0"):
            depth_metrics(torch.ones(1, 1, 2), torch.zeros(1, 1, 2))

    def test_error_nan(self):
        with pytest.raises(ValueError, match="`target`: expected finite values"):
            depth_metrics(torch.ones(1, 1, 2), torch.tensor([[[1.0, float("inf")]]]))

    def test_error_integer_depth(self):
        with pytest.raises(TypeError, match="`target`: expected a floating-point tensor"):
            depth_metrics(torch.ones(1, 1, 2), torch.ones(1, 1, 2, dtype=torch.long))

    def test_error_wrong_rank(self):
        with pytest.raises(ValueError, match=r"`pred`: expected shape \(N, 1, H, W\) or \(N, H, W\)"):
            depth_metrics(torch.ones(4, 4), torch.ones(4, 4))

    def test_error_valid_not_bool(self):
        with pytest.raises(TypeError, match="`valid`: expected a bool mask"):
            depth_metrics(torch.ones(1, 1, 2), torch.ones(1, 1, 2), valid=torch.ones(1, 1, 2))
