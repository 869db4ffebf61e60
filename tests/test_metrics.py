"""Tests of pixelbook.metrics: hand-computed cases, independent references, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_jaccard_index,
)
from torchmetrics.functional.image import structural_similarity_index_measure

from pixelbook.metrics import (
    boundary_f,
    confusion_matrix,
    depth_metrics,
    f_measure,
    fbeta_scores,
    iou_from_confusion,
    mae,
    mean_iou,
    mean_iou_from_confusion,
    normal_metrics,
    pixel_accuracy,
    pixel_accuracy_from_confusion,
    psnr,
    s_measure,
    ssim,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fb(P: float, R: float, b2: float = 0.3) -> float:
    """F-beta written out by hand, 0 when P*R = 0."""
    return 0.0 if P * R == 0 else (1 + b2) * P * R / (b2 * P + R)


# A 2x3 image whose counts are easy to read off:
#   labels  0 1 0      preds  0 1 1
#           1 1 0             1 1 0
# class 0: TP = 2 (corners), FN = 1 (top right predicted 1), FP = 0  -> IoU 2/3
# class 1: TP = 3, FP = 1 (top right), FN = 0                         -> IoU 3/4
PREDS = torch.tensor([[[0, 1, 1], [1, 1, 0]]])
LABELS = torch.tensor([[[0, 1, 0], [1, 1, 0]]])


# --------------------------------------------------------------------------------------------------
class TestConfusionMatrix:
    def test_hand_counted_2x3_rows_are_ground_truth(self):
        cm = confusion_matrix(PREDS, LABELS, num_classes=2)
        assert cm.dtype == torch.int64
        assert cm.tolist() == [[2, 1], [0, 3]]

    def test_accumulates_over_batch_and_batches_add_up(self):
        p = torch.randint(0, 4, (5, 7, 6), generator=gen(1))
        t = torch.randint(0, 4, (5, 7, 6), generator=gen(2))
        whole = confusion_matrix(p, t, 4)
        parts = sum(confusion_matrix(p[i:i + 1], t[i:i + 1], 4) for i in range(5))
        assert torch.equal(whole, parts)
        assert int(whole.sum()) == 5 * 7 * 6

    def test_ignored_pixels_are_not_counted(self):
        labels = LABELS.clone()
        labels[0, 0, 2] = 255  # the one FN of class 0 / FP of class 1
        cm = confusion_matrix(PREDS, labels, 2, ignore_index=255)
        assert cm.tolist() == [[2, 0], [0, 3]]

    def test_equals_torchmetrics_with_ignore_index(self):
        p = torch.randint(0, 5, (3, 9, 8), generator=gen(3))
        t = torch.randint(0, 5, (3, 9, 8), generator=gen(4))
        t[t == 4] = -1  # ignore label; class 4 then appears only in predictions
        ours = confusion_matrix(p, t, 5, ignore_index=-1)
        ref = multiclass_confusion_matrix(p, t, num_classes=5, ignore_index=-1)
        assert torch.equal(ours, ref)

    def test_error_float_preds(self):
        with pytest.raises(TypeError, match="`preds`: expected an integer tensor"):
            confusion_matrix(PREDS.float(), LABELS, 2)

    def test_error_scores_instead_of_indices(self):
        with pytest.raises(ValueError, match=r"`preds`: expected shape \(N, H, W\) of class indices.*argmax"):
            confusion_matrix(torch.rand(1, 2, 2, 3), LABELS, 2)

    def test_error_labels_out_of_range(self):
        with pytest.raises(ValueError, match=r"`labels`: expected labels in \[0, 2\)"):
            confusion_matrix(PREDS, LABELS + 1, 2)

    def test_error_preds_out_of_range(self):
        with pytest.raises(ValueError, match=r"`preds`: expected labels in \[0, 2\)"):
            confusion_matrix(PREDS * 2, LABELS, 2)

    def test_error_shape_mismatch(self):
        with pytest.raises(ValueError, match="`labels`: expected W=3"):
            confusion_matrix(PREDS, LABELS[..., :2], 2)

    def test_error_ignore_index_inside_class_range(self):
        with pytest.raises(ValueError, match=r"`ignore_index`: expected a value outside \[0, 2\)"):
            confusion_matrix(PREDS, LABELS, 2, ignore_index=0)

    def test_error_num_classes_not_int(self):
        with pytest.raises(TypeError, match="`num_classes`: expected an int"):
            confusion_matrix(PREDS, LABELS, 2.0)

    def test_error_empty_batch(self):
        with pytest.raises(ValueError, match="`preds`: expected a non-empty tensor"):
            confusion_matrix(PREDS[:0], LABELS[:0], 2)


class TestIouFromConfusion:
    def test_hand_values(self):
        iou = iou_from_confusion(torch.tensor([[2, 1], [0, 3]]))
        torch.testing.assert_close(iou, torch.tensor([2 / 3, 3 / 4], dtype=torch.float64))

    def test_absent_class_is_nan_and_predicted_only_class_is_zero(self):
        # class 2 never occurs; class 1 is only predicted (one false positive)
        cm = torch.tensor([[3, 1, 0], [0, 0, 0], [0, 0, 0]])
        iou = iou_from_confusion(cm)
        assert iou[0] == 0.75 and iou[1] == 0.0 and torch.isnan(iou[2])

    def test_error_not_square(self):
        with pytest.raises(ValueError, match="`cm`: expected C=2"):
            iou_from_confusion(torch.zeros(2, 3, dtype=torch.long))

    def test_error_negative_counts(self):
        with pytest.raises(ValueError, match="`cm`: expected values >= 0"):
            iou_from_confusion(torch.tensor([[1, -1], [0, 1]]))

    def test_error_bool(self):
        with pytest.raises(TypeError, match="`cm`: expected an integer or float"):
            iou_from_confusion(torch.eye(2, dtype=torch.bool))


class TestMeanIou:
    def test_hand_counted_2x3(self):
        assert mean_iou(PREDS, LABELS, 2) == pytest.approx((2 / 3 + 3 / 4) / 2)

    def test_dataset_wide_not_mean_of_per_image(self):
        # image 1: all class 0, predicted right (IoU0 = 1); image 2: 1 px of class 1 among class-0
        # pixels, missed.  Pooled: class 0 IoU = 7/8, class 1 IoU = 0 -> 7/16.
        # Per image: image 1 has only class 0 -> 1.0; image 2 -> (3/4 + 0)/2 -> mean 0.6875.
        p = torch.zeros(2, 2, 2, dtype=torch.long)
        t = torch.zeros(2, 2, 2, dtype=torch.long)
        t[1, 0, 0] = 1
        assert mean_iou(p, t, 2) == pytest.approx(7 / 16)
        per_image = [mean_iou(p[i:i + 1], t[i:i + 1], 2) for i in range(2)]
        assert per_image == pytest.approx([1.0, 3 / 8])
        assert np.mean(per_image) != pytest.approx(7 / 16)

    def test_equals_torchmetrics_on_random_input(self):
        p = torch.randint(0, 6, (4, 16, 16), generator=gen(5))
        t = torch.randint(0, 6, (4, 16, 16), generator=gen(6))
        ref = multiclass_jaccard_index(p, t, num_classes=6, average="macro")
        assert mean_iou(p, t, 6) == pytest.approx(float(ref), abs=1e-6)

    @settings(max_examples=25, deadline=None)
    @given(seed=st.integers(0, 10_000), num_classes=st.integers(2, 5))
    def test_equals_torchmetrics_with_ignore_index_property(self, seed, num_classes):
        g = gen(seed)
        p = torch.randint(0, num_classes, (2, 6, 5), generator=g)
        t = torch.randint(-1, num_classes, (2, 6, 5), generator=g)  # -1 = ignore
        assume(bool((t >= 0).any()))
        ref = multiclass_jaccard_index(p, t, num_classes=num_classes, average="macro", ignore_index=-1)
        assert mean_iou(p, t, num_classes, ignore_index=-1) == pytest.approx(float(ref), abs=1e-6)

    def test_ignored_pixels_do_not_change_the_score(self):
        p = torch.randint(0, 3, (2, 8, 8), generator=gen(7))
        t = torch.randint(0, 3, (2, 8, 8), generator=gen(8))
        t[:, :2] = 255
        p2 = p.clone()
        p2[:, :2] = (p2[:, :2] + 1) % 3  # change predictions only where ignored
        assert mean_iou(p, t, 3, ignore_index=255) == mean_iou(p2, t, 3, ignore_index=255)

    def test_absent_class_is_skipped_not_counted_as_zero_or_one(self):
        # num_classes=3 but class 2 is absent everywhere -> same as the 2-class score
        assert mean_iou(PREDS, LABELS, 3) == pytest.approx((2 / 3 + 3 / 4) / 2)

    def test_error_everything_ignored(self):
        with pytest.raises(ValueError, match="`labels`: expected at least one pixel not equal to ignore_index"):
            mean_iou(PREDS, torch.full_like(LABELS, 255), 2, ignore_index=255)


class TestMeanIouFromConfusion:
    def test_skips_absent_class(self):
        assert mean_iou_from_confusion(torch.tensor([[3, 1, 0], [0, 0, 0], [0, 0, 0]])) == pytest.approx(0.375)

    def test_error_all_zero(self):
        with pytest.raises(ValueError, match="`cm`: expected at least one counted pixel"):
            mean_iou_from_confusion(torch.zeros(3, 3, dtype=torch.long))


class TestPixelAccuracy:
    def test_hand_counted_2x3(self):
        assert pixel_accuracy(PREDS, LABELS) == pytest.approx(5 / 6)

    def test_ignore_index_excluded(self):
        labels = LABELS.clone()
        labels[0, 0, 2] = 255  # the only wrong pixel
        assert pixel_accuracy(PREDS, labels, ignore_index=255) == 1.0

    def test_equals_torchmetrics_micro_accuracy(self):
        p = torch.randint(0, 4, (3, 10, 10), generator=gen(9))
        t = torch.randint(0, 4, (3, 10, 10), generator=gen(10))
        t[0, :3] = 255
        ref = multiclass_accuracy(p, t, num_classes=4, average="micro", ignore_index=255)
        assert pixel_accuracy(p, t, ignore_index=255) == pytest.approx(float(ref), abs=1e-6)

    def test_from_confusion_agrees(self):
        cm = confusion_matrix(PREDS, LABELS, 2)
        assert pixel_accuracy_from_confusion(cm) == pytest.approx(pixel_accuracy(PREDS, LABELS))

    def test_error_everything_ignored(self):
        with pytest.raises(ValueError, match="`labels`: expected at least one pixel"):
            pixel_accuracy(PREDS, torch.full_like(LABELS, -1), ignore_index=-1)

    def test_error_float_labels(self):
        with pytest.raises(TypeError, match="`labels`: expected an integer tensor"):
            pixel_accuracy(PREDS, LABELS.float())


# --------------------------------------------------------------------------------------------------
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
        with pytest.raises(ValueError, match="`pred_prob`: expected values <= 1"):
            boundary_f(vertical_line(3).float() * 2, vertical_line(3))

    def test_error_nan(self):
        pred = vertical_line(3).float()
        pred[0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="`pred_prob`: expected finite values"):
            boundary_f(pred, vertical_line(3))

    def test_error_non_binary_gt(self):
        with pytest.raises(ValueError, match=r"`gt`: expected a bool mask or values in \{0, 1\}"):
            boundary_f(vertical_line(3).float(), vertical_line(3).long() * 2)

    def test_error_no_boundary_in_batch(self):
        with pytest.raises(ValueError, match="`gt`: expected at least one boundary pixel"):
            boundary_f(torch.rand(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.bool))

    def test_error_shape_mismatch(self):
        with pytest.raises(ValueError, match="`gt`: expected W=8"):
            boundary_f(torch.rand(1, 8, 8), torch.zeros(1, 8, 7, dtype=torch.bool))

    def test_error_negative_tolerance(self):
        with pytest.raises(ValueError, match="`tolerance`: expected a value >= 0"):
            boundary_f(torch.rand(1, 8, 8), vertical_line(3), tolerance=-1)

    def test_error_thresholds_not_increasing(self):
        with pytest.raises(ValueError, match="`thresholds`: expected strictly increasing"):
            boundary_f(torch.rand(1, 8, 8), vertical_line(3), thresholds=[0.5, 0.2])


# --------------------------------------------------------------------------------------------------
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
        with pytest.raises(ValueError, match="`gt`: expected some pixels with gt > 0"):
            depth_metrics(torch.ones(1, 1, 2), torch.zeros(1, 1, 2))

    def test_error_nan(self):
        with pytest.raises(ValueError, match="`gt`: expected finite values"):
            depth_metrics(torch.ones(1, 1, 2), torch.tensor([[[1.0, float("inf")]]]))

    def test_error_integer_depth(self):
        with pytest.raises(TypeError, match="`gt`: expected a floating-point tensor"):
            depth_metrics(torch.ones(1, 1, 2), torch.ones(1, 1, 2, dtype=torch.long))

    def test_error_wrong_rank(self):
        with pytest.raises(ValueError, match=r"`pred`: expected shape \(N, 1, H, W\) or \(N, H, W\)"):
            depth_metrics(torch.ones(4, 4), torch.ones(4, 4))

    def test_error_valid_not_bool(self):
        with pytest.raises(TypeError, match="`valid`: expected a bool mask"):
            depth_metrics(torch.ones(1, 1, 2), torch.ones(1, 1, 2), valid=torch.ones(1, 1, 2))


# --------------------------------------------------------------------------------------------------
def rotated_about_x(angles_deg) -> torch.Tensor:
    """(1, 3, 1, K) unit normals at the given angles from +z, rotating about the x axis."""
    a = torch.tensor(angles_deg, dtype=torch.float64).deg2rad()
    return torch.stack([torch.zeros_like(a), torch.sin(a), torch.cos(a)])[None, :, None, :]


class TestNormalMetrics:
    def test_known_rotations(self):
        gt = rotated_about_x([0.0, 0.0, 0.0, 0.0])
        pred = rotated_about_x([0.0, 10.0, 20.0, 45.0])
        m = normal_metrics(pred, gt)
        assert list(m) == ["mean", "median", "a11", "a22", "a30"] and all(type(v) is float for v in m.values())
        assert m["mean"] == pytest.approx(75 / 4)
        assert m["median"] == pytest.approx(15.0)  # mean of the two middle values, as numpy.median
        assert (m["a11"], m["a22"], m["a30"]) == (0.5, 0.75, 0.75)

    def test_ninety_degrees_and_opposite(self):
        up = rotated_about_x([0.0, 0.0])
        assert normal_metrics(rotated_about_x([90.0, 90.0]), up)["mean"] == pytest.approx(90.0)
        assert normal_metrics(rotated_about_x([180.0, 180.0]), up)["mean"] == pytest.approx(180.0)

    def test_prediction_length_does_not_matter(self):
        gt = rotated_about_x([0.0, 30.0, 60.0])
        pred = rotated_about_x([5.0, 40.0, 50.0])
        assert normal_metrics(pred * torch.tensor([0.1, 7.0, 2.0]).reshape(1, 1, 1, 3), gt) == \
            pytest.approx(normal_metrics(pred, gt))

    def test_tiny_angles_are_accurate(self):
        m = normal_metrics(rotated_about_x([1e-4]).float(), rotated_about_x([0.0]).float())
        assert m["mean"] == pytest.approx(1e-4, rel=0.05)  # acos of a float32 dot product would give ~0.02°

    def test_default_valid_skips_zero_gt_and_explicit_valid(self):
        gt = rotated_about_x([0.0, 0.0])
        gt[..., 1] = 0.0
        pred = rotated_about_x([10.0, 90.0])
        assert normal_metrics(pred, gt)["mean"] == pytest.approx(10.0)
        valid = torch.tensor([[[False, True]]])
        assert normal_metrics(pred, rotated_about_x([0.0, 0.0]), valid=valid)["mean"] == pytest.approx(90.0)

    def test_error_zero_prediction(self):
        with pytest.raises(ValueError, match="`pred`: expected non-zero normal vectors"):
            normal_metrics(torch.zeros(1, 3, 1, 2), rotated_about_x([0.0, 0.0]))

    def test_error_two_channels(self):
        with pytest.raises(ValueError, match=r"`pred`: expected shape \(N, 3, H, W\)"):
            normal_metrics(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 4))

    def test_error_no_valid_pixel(self):
        with pytest.raises(ValueError, match="`gt`: expected some non-zero normals"):
            normal_metrics(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))

    def test_error_nan(self):
        pred = torch.ones(1, 3, 2, 2)
        pred[0, 1, 1, 1] = float("nan")
        with pytest.raises(ValueError, match="`pred`: expected finite values"):
            normal_metrics(pred, torch.ones(1, 3, 2, 2))


# --------------------------------------------------------------------------------------------------
# probs  0.9 0.6 0.2     mask  1 1 0      mean(p) = 2.5/6 -> adaptive threshold 5/6
#        0.1 0.7 0.0           0 0 0
SOD_P = torch.tensor([[[0.9, 0.6, 0.2], [0.1, 0.7, 0.0]]], dtype=torch.float64)
SOD_M = torch.tensor([[[1, 1, 0], [0, 0, 0]]], dtype=torch.bool)
# a second image that misses its only salient pixel
SOD_P2 = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
SOD_M2 = torch.tensor([[[0, 0, 0], [0, 0, 1]]], dtype=torch.bool)


def pysod_fm_curve(p: np.ndarray, m: np.ndarray, beta2: float = 0.3) -> np.ndarray:
    """PySODMetrics' Fmeasure.cal_pr re-derived: uint8 histogram, flipped cumulative sums."""
    q = (p * 255).astype(np.uint8)
    fg, _ = np.histogram(q[m], bins=np.linspace(0, 256, 257))
    bg, _ = np.histogram(q[~m], bins=np.linspace(0, 256, 257))
    tp = np.cumsum(fg[::-1])
    pp = tp + np.cumsum(bg[::-1])
    prec = tp / np.maximum(pp, 1)
    rec = tp / max(m.sum(), 1)
    num = (1 + beta2) * prec * rec
    return np.where(num == 0, 0.0, num / np.where(num == 0, 1, beta2 * prec + rec))


class TestFMeasure:
    def test_formula_and_zero_convention(self):
        assert float(f_measure(0.5, 1.0)) == pytest.approx(1.3 * 0.5 / (0.15 + 1.0))
        assert float(f_measure(0.0, 0.0)) == 0.0
        assert float(f_measure(0.5, 0.5, beta2=1.0)) == pytest.approx(0.5)

    def test_error_beta2(self):
        with pytest.raises(ValueError, match="`beta2`: expected a value > 0"):
            f_measure(0.5, 0.5, beta2=0.0)


class TestFbetaScores:
    THR = [0.0, 0.5, 0.8]

    def test_hand_counted_curve_and_adaptive(self):
        out = fbeta_scores(SOD_P, SOD_M, thresholds=self.THR, return_curves=True)
        # t=0: 2 of 6 predicted are salient; t=.5: 2 of 3; t=.8: 1 of 1 (recall 1/2)
        P, R = [1 / 3, 2 / 3, 1.0], [1.0, 1.0, 0.5]
        torch.testing.assert_close(out["precision"], torch.tensor(P, dtype=torch.float64))
        torch.testing.assert_close(out["recall"], torch.tensor(R, dtype=torch.float64))
        F = [fb(p, r) for p, r in zip(P, R)]
        assert out["max_f"] == pytest.approx(max(F))
        assert out["mean_f"] == pytest.approx(sum(F) / 3)
        # adaptive threshold 2 * 2.5/6 = 0.833 keeps only 0.9: P = 1, R = 1/2 -> 0.65 / 0.8
        assert out["adaptive_f"] == pytest.approx(0.8125)

    def test_average_pr_versus_average_f_hand_counted(self):
        probs, masks = torch.cat([SOD_P, SOD_P2]), torch.cat([SOD_M, SOD_M2])
        P1, R1 = [1 / 3, 2 / 3, 1.0], [1.0, 1.0, 0.5]
        P2, R2 = [1 / 6, 0.0, 0.0], [1.0, 0.0, 0.0]
        f_pr = [fb((a + b) / 2, (c + d) / 2) for a, b, c, d in zip(P1, P2, R1, R2)]
        f_f = [(fb(a, c) + fb(b, d)) / 2 for a, b, c, d in zip(P1, P2, R1, R2)]
        pr = fbeta_scores(probs, masks, thresholds=self.THR, average="pr")
        ff = fbeta_scores(probs, masks, thresholds=self.THR, average="f")
        assert pr["max_f"] == pytest.approx(max(f_pr)) and pr["mean_f"] == pytest.approx(np.mean(f_pr))
        assert ff["max_f"] == pytest.approx(max(f_f)) and ff["mean_f"] == pytest.approx(np.mean(f_f))
        assert pr["mean_f"] != pytest.approx(ff["mean_f"])  # the two conventions differ
        # image 2: threshold min(2 * 1/6, 1) keeps the stray pixel only -> F = 0
        assert pr["adaptive_f"] == pytest.approx((0.8125 + 0.0) / 2)

    def test_perfect_map(self):
        masks = torch.zeros(3, 8, 8, dtype=torch.bool)
        masks[:, 2:5, 3:7] = True
        out = fbeta_scores(masks.float(), masks)
        assert out["max_f"] == 1.0 and out["adaptive_f"] == 1.0
        # mean over 256 thresholds: t = 0 selects all 64 pixels (P = 12/64, R = 1); all others F = 1
        assert out["mean_f"] == pytest.approx((255 + fb(12 / 64, 1.0)) / 256)

    def test_average_f_matches_pysodmetrics_histogram_algorithm(self):
        g = torch.Generator().manual_seed(16)
        masks = torch.rand(4, 12, 10, generator=g) > 0.6
        probs = (0.6 * masks + 0.5 * torch.rand(4, 12, 10, generator=g)).clamp(0, 1).double()
        ours = fbeta_scores(probs, masks, average="f", return_curves=True)
        curve = np.mean([pysod_fm_curve(p, m) for p, m in zip(probs.numpy(), masks.numpy())], axis=0)
        np.testing.assert_allclose(np.sort(ours["f"].numpy()), np.sort(curve), atol=1e-12)
        assert ours["max_f"] == pytest.approx(curve.max()) and ours["mean_f"] == pytest.approx(curve.mean())

    def test_reduction_none_gives_per_image_scores(self):
        probs, masks = torch.cat([SOD_P, SOD_P2]), torch.cat([SOD_M, SOD_M2])
        out = fbeta_scores(probs, masks, thresholds=self.THR, reduction="none")
        assert out["adaptive_f"].shape == (2,)
        torch.testing.assert_close(out["adaptive_f"], torch.tensor([0.8125, 0.0], dtype=torch.float64))
        assert float(out["max_f"][0]) == pytest.approx(0.8125)

    def test_image_without_salient_pixels_scores_zero(self):
        out = fbeta_scores(torch.rand(1, 4, 4, generator=gen(17)), torch.zeros(1, 4, 4, dtype=torch.bool))
        assert out == {"max_f": 0.0, "mean_f": 0.0, "adaptive_f": 0.0}

    def test_masks_as_0_1_integers_equal_bool(self):
        a = fbeta_scores(SOD_P, SOD_M)
        assert fbeta_scores(SOD_P, SOD_M.long()) == a and fbeta_scores(SOD_P, SOD_M.float()) == a

    def test_error_probs_outside_unit_interval(self):
        with pytest.raises(ValueError, match="`probs`: expected values >= 0"):
            fbeta_scores(SOD_P - 0.5, SOD_M)

    def test_error_non_binary_mask(self):
        with pytest.raises(ValueError, match=r"`masks`: expected a bool mask or values in \{0, 1\}"):
            fbeta_scores(SOD_P, SOD_M.long() * 255)

    def test_error_channel_axis(self):
        with pytest.raises(ValueError, match=r"`probs`: expected shape \(N, H, W\)"):
            fbeta_scores(SOD_P[:, None], SOD_M[:, None])

    def test_error_options(self):
        with pytest.raises(ValueError, match="`average`: expected one of"):
            fbeta_scores(SOD_P, SOD_M, average="max")
        with pytest.raises(ValueError, match="`reduction`: expected one of"):
            fbeta_scores(SOD_P, SOD_M, reduction="sum")
        with pytest.raises(ValueError, match="`thresholds`: expected an int >= 2"):
            fbeta_scores(SOD_P, SOD_M, thresholds=1)
        with pytest.raises(ValueError, match="`beta2`: expected a value > 0"):
            fbeta_scores(SOD_P, SOD_M, beta2=-0.3)


class TestMae:
    def test_hand_computed_mean_over_images(self):
        # image 1: |0.9-1| + |0.6-1| + 0.2 + 0.1 + 0.7 + 0 = 1.5 over 6; image 2: 1 + 1 over 6
        probs, masks = torch.cat([SOD_P, SOD_P2]), torch.cat([SOD_M, SOD_M2])
        torch.testing.assert_close(mae(probs, masks, reduction="none"),
                                   torch.tensor([1.5 / 6, 2 / 6], dtype=torch.float64))
        assert mae(probs, masks) == pytest.approx((1.5 / 6 + 2 / 6) / 2)

    def test_perfect_map_is_zero(self):
        assert mae(SOD_M.double(), SOD_M) == 0.0

    def test_error_nan(self):
        p = SOD_P.clone()
        p[0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="`probs`: expected finite values"):
            mae(p, SOD_M)

    def test_error_integer_probs(self):
        with pytest.raises(TypeError, match="`probs`: expected a floating-point tensor"):
            mae(SOD_M.long(), SOD_M)


class TestSMeasure:
    def test_perfect_map_is_one(self):
        masks = torch.zeros(2, 9, 7, dtype=torch.bool)
        masks[0, 2:6, 1:4] = True
        masks[1, 5:, 3:] = True
        assert s_measure(masks.float(), masks) == pytest.approx(1.0, abs=1e-12)

    def test_inverted_map_is_zero_when_every_block_is_mixed(self):
        masks = torch.zeros(1, 5, 5, dtype=torch.bool)
        masks[0, 1:4, 1:4] = True  # centroid (2, 2) -> split after row/col 3 (1-based): all 4 blocks mixed
        assert s_measure(1 - masks.float(), masks) == 0.0

    def test_inverted_map_keeps_uniform_block_score_hand_computed(self):
        # 6x6, object rows/cols 2..3 -> 1-based centroid 3.5 -> MATLAB round 4: blocks 4x4, 4x2, 2x4, 2x2.
        # Object score 0 (fg predicted 0, bg predicted 1). Top-left block (4 fg of 16 px, inverted):
        # x=.75, y=.25, var_x = var_y = 3/15, cov = -3/15 -> 4*.75*.25*(-.2) / ((.5625+.0625)*.4) = -0.6.
        # The three other blocks have uniform gt and prediction -> 1 each (the code's 0/0 case).
        masks = torch.zeros(1, 6, 6, dtype=torch.bool)
        masks[0, 2:4, 2:4] = True
        s_r = (16 * -0.6 + 8 + 8 + 4) / 36
        assert s_measure(1 - masks.float(), masks) == pytest.approx(0.5 * s_r)

    def test_all_background_and_all_foreground_special_cases(self):
        p = torch.tensor([[[0.2, 0.4], [0.0, 0.2]]])
        assert s_measure(p, torch.zeros(1, 2, 2, dtype=torch.bool)) == pytest.approx(1 - 0.2)
        assert s_measure(p, torch.ones(1, 2, 2, dtype=torch.bool)) == pytest.approx(0.2)

    def test_hand_computed_1x4(self):
        # gt 1 1 0 0, pred 1 .5 .5 0.  Object: fg [1, .5] -> mean .75, std (n-1) sqrt(.125);
        # bg (1-p) [.5, 1] -> same -> O = 1.5 / (.5625 + 1 + sqrt(.125)), S_o = O.
        # Centroid col 0.5 -> 1-based 1.5 -> MATLAB round 2 (np.round would give 1, PySODMetrics' drift):
        # blocks [1,.5]|[1,1] and [.5,0]|[0,0],
        # each with constant gt and varying prediction -> 0.  S = 0.5 * S_o.
        p = torch.tensor([[[1.0, 0.5, 0.5, 0.0]]])
        m = torch.tensor([[[True, True, False, False]]])
        s_o = 1.5 / (0.5625 + 1 + math.sqrt(0.125))
        assert s_measure(p, m) == pytest.approx(0.5 * s_o)
        assert s_measure(p, m, alpha=1.0) == pytest.approx(s_o)

    def test_hand_computed_single_foreground_pixel(self):
        # 2x2 gt with one fg pixel predicted 0.5: S_o = .25 * (1/1.25) + .75 * 1 = 0.95 (std of one
        # pixel = 0, as MATLAB); centroid (1, 1) 1-based -> four 1-px blocks, each uniform -> S_r = 1.
        p = torch.tensor([[[0.5, 0.0], [0.0, 0.0]]])
        m = torch.tensor([[[True, False], [False, False]]])
        assert s_measure(p, m) == pytest.approx(0.5 * 0.95 + 0.5 * 1.0)

    def test_reduction_none_and_mean(self):
        masks = torch.zeros(2, 5, 5, dtype=torch.bool)
        masks[:, 1:4, 1:4] = True
        probs = torch.stack([masks[0].float(), 1 - masks[1].float()])
        per_image = s_measure(probs, masks, reduction="none")
        torch.testing.assert_close(per_image, torch.tensor([1.0, 0.0], dtype=torch.float64))
        assert s_measure(probs, masks) == pytest.approx(0.5)

    def test_error_alpha(self):
        with pytest.raises(ValueError, match="`alpha`: expected a value <= 1"):
            s_measure(SOD_P, SOD_M, alpha=1.5)

    def test_error_shape_mismatch(self):
        with pytest.raises(ValueError, match="`masks`: expected H=2"):
            s_measure(SOD_P, SOD_M[:, :1])


# --------------------------------------------------------------------------------------------------
class TestPsnr:
    def test_hand_computed_mean_of_per_image_psnr(self):
        target = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
        pred = torch.tensor([0.1, 0.01], dtype=torch.float64).reshape(2, 1, 1, 1).expand(2, 1, 4, 4)
        # MSE 1e-2 -> 20 dB, 1e-4 -> 40 dB; the mean of per-image PSNR is 30 dB (pooled MSE would give 22.97)
        per_image = psnr(pred, target, reduction="none")
        torch.testing.assert_close(per_image, torch.tensor([20.0, 40.0], dtype=torch.float64))
        assert psnr(pred, target) == pytest.approx(30.0)
        assert psnr(pred * 255, target * 255, data_range=255.0) == pytest.approx(30.0)

    def test_identical_images_are_infinite(self):
        x = torch.rand(1, 3, 8, 8, generator=gen(18))
        assert psnr(x, x) == math.inf

    def test_error_data_range(self):
        with pytest.raises(ValueError, match="`data_range`: expected a value > 0"):
            psnr(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), data_range=0)

    def test_error_shape_mismatch(self):
        with pytest.raises(ValueError, match="`target`: expected C=3"):
            psnr(torch.rand(1, 3, 4, 4), torch.rand(1, 1, 4, 4))


class TestSsim:
    def test_identical_is_one_and_noise_lowers_it_monotonically(self):
        x = torch.rand(2, 3, 24, 24, generator=gen(19))
        noise = torch.randn(2, 3, 24, 24, generator=gen(20))
        assert ssim(x, x) == pytest.approx(1.0)
        scores = [ssim((x + s * noise).clamp(0, 1), x) for s in (0.02, 0.1, 0.3)]
        assert scores[0] > scores[1] > scores[2]

    def test_symmetric_and_equal_to_torchmetrics(self):
        a = torch.rand(2, 1, 16, 16, generator=gen(21))
        b = torch.rand(2, 1, 16, 16, generator=gen(22))
        assert ssim(a, b) == pytest.approx(ssim(b, a))
        ref = structural_similarity_index_measure(a.double(), b.double(), data_range=1.0)
        assert ssim(a, b) == pytest.approx(float(ref))

    def test_error_image_smaller_than_window(self):
        with pytest.raises(ValueError, match="`pred`: expected H and W >= kernel_size=11"):
            ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))

    def test_error_even_kernel(self):
        with pytest.raises(ValueError, match="`kernel_size`: expected an odd int"):
            ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), kernel_size=10)


# --------------------------------------------------------------------------------------------------
class TestDevicesAndGradients:
    @pytest.mark.parametrize("device", DEVICES)
    def test_results_match_cpu_and_inputs_may_require_grad(self, device):
        g = torch.Generator().manual_seed(23)
        masks = torch.rand(2, 16, 16, generator=g) > 0.7
        probs = (0.5 * masks + 0.5 * torch.rand(2, 16, 16, generator=g)).requires_grad_()
        on = dict(probs=probs.to(device), masks=masks.to(device))
        assert fbeta_scores(**on) == pytest.approx(fbeta_scores(probs, masks))
        assert mae(**on) == pytest.approx(mae(probs, masks))
        assert s_measure(**on) == pytest.approx(s_measure(probs, masks))
        assert boundary_f(on["probs"], on["masks"]) == pytest.approx(boundary_f(probs, masks))
        p, t = torch.randint(0, 3, (2, 5, 5), generator=g), torch.randint(0, 3, (2, 5, 5), generator=g)
        assert mean_iou(p.to(device), t.to(device), 3) == mean_iou(p, t, 3)
        depth = torch.rand(2, 1, 5, 5, generator=g) + 0.1
        assert depth_metrics(depth.to(device).requires_grad_(), depth.to(device) * 1.1) == \
            pytest.approx(depth_metrics(depth, depth * 1.1))
        n = torch.randn(2, 3, 4, 4, generator=g)
        assert normal_metrics(n.to(device), n.flip(0).to(device)) == pytest.approx(normal_metrics(n, n.flip(0)))

    def test_error_mixed_devices_named(self):
        if not torch.cuda.is_available():
            pytest.skip("needs CUDA")
        with pytest.raises(ValueError, match="`masks`: expected a tensor on"):
            mae(SOD_P.cuda(), SOD_M)
