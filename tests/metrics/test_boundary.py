"""Tests of pixelbook.metrics.boundary against a brute-force reference."""

import numpy as np
import pytest
import torch

from scipy import ndimage

from pixelbook.metrics import boundary_f


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def vertical_line(col: int, size: int = 8, rows=slice(None)) -> torch.Tensor:
    m = torch.zeros(1, size, size, dtype=torch.bool)
    m[0, rows, col] = True
    return m


def brute_force_pr(p: np.ndarray, g: np.ndarray, t: float, tol: float) -> tuple[float, float]:
    """Dataset P and R at threshold t from all pairwise pixel distances (no EDT, no dilation)."""
    cnt_p = sum_p = cnt_r = sum_r = 0
    for pi, gi in zip(p, g):
        e = np.argwhere(pi >= t)
        b = np.argwhere(gi)
        sum_p += len(e)
        sum_r += len(b)
        if len(e) and len(b):
            dist = np.sqrt(((e[:, None, :] - b[None, :, :]) ** 2).sum(-1))
            cnt_p += int((dist.min(1) <= tol).sum())
            cnt_r += int((dist.min(0) <= tol).sum())
    return (cnt_p / sum_p if sum_p else 0.0), (cnt_r / sum_r if sum_r else 0.0)


class TestBoundaryF:
    def test_perfect_prediction_scores_one(self):
        gt = vertical_line(3) | vertical_line(6)
        out = boundary_f(gt.float(), gt)
        assert out == {"ods": 1.0, "ois": 1.0, "ap": 1.0}

    def test_one_pixel_shift_is_within_tolerance_2_but_not_0(self):
        gt, shifted = vertical_line(3), vertical_line(4).float()
        assert boundary_f(shifted, gt, tolerance=2)["ods"] == 1.0
        assert boundary_f(shifted, gt, tolerance=1)["ods"] == 1.0
        assert boundary_f(shifted, gt, tolerance=0)["ods"] == 0.0

    def test_tolerance_is_euclidean(self):
        # a diagonal shift by (1, 1) is sqrt(2) px away: outside tolerance 1, inside 1.5
        gt = torch.zeros(1, 8, 8, dtype=torch.bool)
        gt[0, 3, 3] = True
        pred = torch.zeros(1, 8, 8)
        pred[0, 4, 4] = 1.0
        assert boundary_f(pred, gt, tolerance=1)["ods"] == 0.0
        assert boundary_f(pred, gt, tolerance=1.5)["ods"] == 1.0

    def test_hand_counted_precision_recall(self):
        # gt: an 8 px line (rows 0-7); prediction: rows 0-3 of it plus one stray pixel 4 px away.
        # P = 4/5 at any tolerance < 4.  R: rows 0-3 are hit; rows 4 and 5 lie 1 and 2 px from row 3,
        # so R = 6/8 at tolerance 2 and 4/8 at tolerance 0.
        gt = vertical_line(3)
        pred = vertical_line(3, rows=slice(0, 4)).float()
        pred[0, 0, 7] = 1.0
        for tol, R in ((2, 6 / 8), (0, 4 / 8)):
            out = boundary_f(pred, gt, tolerance=tol, return_curves=True)
            assert out["ods"] == pytest.approx(2 * 0.8 * R / (0.8 + R))
            assert torch.allclose(out["precision"], torch.full((33,), 0.8, dtype=torch.float64))
            assert torch.allclose(out["recall"], torch.full((33,), R, dtype=torch.float64))

    def test_ods_ois_ap_hand_counted_two_images(self):
        # image 0: the 4 gt pixels predicted with p = 0.3;
        # image 1: the 4 gt pixels with p = 0.9 and 4 stray pixels (6 px away) with p = 0.6.
        # thresholds .25/.5/.75 -> dataset P = 8/12, 4/8, 4/4 and R = 8/8, 4/8, 4/8;
        # F = 0.8, 0.5, 2/3 -> ODS = 0.8.  Per-image best thresholds .25 and .75 -> summed counts
        # give P = R = 1 -> OIS = 1.  AP = 0.5 * 1 + 0 * 0.5 + 0.5 * 2/3.
        gt = torch.zeros(2, 8, 8, dtype=torch.bool)
        gt[:, 2:6, 1] = True
        pred = torch.zeros(2, 8, 8)
        pred[0, 2:6, 1] = 0.3
        pred[1, 2:6, 1] = 0.9
        pred[1, 2:6, 7] = 0.6
        out = boundary_f(pred, gt, tolerance=2, thresholds=[0.25, 0.5, 0.75])
        assert out["ods"] == pytest.approx(0.8)
        assert out["ois"] == pytest.approx(1.0)
        assert out["ap"] == pytest.approx(0.5 + 0.5 * 2 / 3)

    @pytest.mark.parametrize("tol", [0, 1, 1.5, 2])
    def test_curves_equal_brute_force_pairwise_matching(self, tol):
        g = torch.Generator().manual_seed(11)
        gt = torch.rand(3, 7, 6, generator=g) > 0.8
        pred = torch.rand(3, 7, 6, generator=g)
        thr = [0.2, 0.5, 0.8, 0.95]
        out = boundary_f(pred, gt, tolerance=tol, thresholds=thr, return_curves=True)
        for k, t in enumerate(thr):
            P, R = brute_force_pr(pred.numpy(), gt.numpy(), t, tol)
            assert float(out["precision"][k]) == pytest.approx(P)
            assert float(out["recall"][k]) == pytest.approx(R)

    def test_recall_by_dilation_equals_recall_by_edt_of_thresholded_prediction(self):
        g = torch.Generator().manual_seed(12)
        gt = torch.rand(2, 20, 20, generator=g) > 0.9
        pred = torch.rand(2, 20, 20, generator=g) ** 4
        out = boundary_f(pred, gt, tolerance=2, thresholds=9, return_curves=True)
        for k, t in enumerate(out["thresholds"].tolist()):
            hit = 0
            for pi, gi in zip(pred.numpy(), gt.numpy()):
                e = pi >= t
                if e.any():
                    hit += int((ndimage.distance_transform_edt(~e)[gi] <= 2).sum())
            assert float(out["recall"][k]) == pytest.approx(hit / int(gt.sum()))

    def test_ois_at_least_ods(self):
        g = torch.Generator().manual_seed(13)
        gt = torch.rand(4, 16, 16, generator=g) > 0.85
        out = boundary_f(torch.rand(4, 16, 16, generator=g), gt)
        assert out["ois"] >= out["ods"] - 1e-12
        assert 0 <= out["ap"] <= 1

    def test_error_probabilities_above_one(self):
        with pytest.raises(ValueError, match="`probs`: expected values <= 1"):
            boundary_f(vertical_line(3).float() * 2, vertical_line(3))

    def test_error_nan(self):
        pred = vertical_line(3).float()
        pred[0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="`probs`: expected finite values"):
            boundary_f(pred, vertical_line(3))

    def test_error_non_binary_gt(self):
        with pytest.raises(ValueError, match=r"`labels`: expected a bool mask or values in \{0, 1\}"):
            boundary_f(vertical_line(3).float(), vertical_line(3).long() * 2)

    def test_error_no_boundary_in_batch(self):
        with pytest.raises(ValueError, match="`labels`: expected at least one boundary pixel"):
            boundary_f(torch.rand(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.bool))

    def test_error_shape_mismatch(self):
        with pytest.raises(ValueError, match="`labels`: expected W=8"):
            boundary_f(torch.rand(1, 8, 8), torch.zeros(1, 8, 7, dtype=torch.bool))

    def test_error_negative_tolerance(self):
        with pytest.raises(ValueError, match=r"`tolerance`: expected a finite number in \[0, inf\)"):
            boundary_f(torch.rand(1, 8, 8), vertical_line(3), tolerance=-1)

    def test_error_thresholds_not_increasing(self):
        with pytest.raises(ValueError, match="`thresholds`: expected strictly increasing"):
            boundary_f(torch.rand(1, 8, 8), vertical_line(3), thresholds=[0.5, 0.2])
