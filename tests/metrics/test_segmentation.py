"""Tests of pixelbook.metrics.segmentation: hand-computed cases, torchmetrics as reference, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_jaccard_index,
)

from pixelbook.metrics import (binary_segmentation_scores, confusion_matrix, iou_from_confusion, matched_iou,
                               matched_iou_per_image, mean_iou, mean_iou_from_confusion, pixel_accuracy,
                               pixel_accuracy_from_confusion)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# A 2x3 image whose counts are easy to read off:
#   labels  0 1 0      preds  0 1 1
#           1 1 0             1 1 0
# class 0: TP = 2 (corners), FN = 1 (top right predicted 1), FP = 0  -> IoU 2/3
# class 1: TP = 3, FP = 1 (top right), FN = 0                         -> IoU 3/4
PREDS = torch.tensor([[[0, 1, 1], [1, 1, 0]]])
LABELS = torch.tensor([[[0, 1, 0], [1, 1, 0]]])


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
        with pytest.raises(TypeError, match="`pred`: expected an integer tensor"):
            confusion_matrix(PREDS.float(), LABELS, 2)

    def test_error_scores_instead_of_indices(self):
        with pytest.raises(ValueError, match=r"`pred`: expected shape \(N, H, W\) of class indices.*argmax"):
            confusion_matrix(torch.rand(1, 2, 2, 3), LABELS, 2)

    def test_error_labels_out_of_range(self):
        with pytest.raises(ValueError, match=r"`labels`: expected labels in \[0, 2\)"):
            confusion_matrix(PREDS, LABELS + 1, 2)

    def test_error_preds_out_of_range(self):
        with pytest.raises(ValueError, match=r"`pred`: expected labels in \[0, 2\)"):
            confusion_matrix(PREDS * 2, LABELS, 2)

    def test_error_shape_mismatch(self):
        with pytest.raises(ValueError, match="`labels`: expected W=3"):
            confusion_matrix(PREDS, LABELS[..., :2], 2)

    def test_error_ignore_index_inside_class_range(self):
        with pytest.raises(ValueError, match=r"`ignore_index`: expected a value outside \[0, 2\)"):
            confusion_matrix(PREDS, LABELS, 2, ignore_index=0)

    def test_error_num_classes_not_int(self):
        with pytest.raises(TypeError, match="`num_classes`: expected an integer"):
            confusion_matrix(PREDS, LABELS, 2.0)

    def test_error_empty_batch(self):
        with pytest.raises(ValueError, match="`pred`: expected a non-empty tensor"):
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


class TestMatchedIou:
    def test_relabelled_perfect_prediction_scores_one_and_value_by_hand(self):
        y = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 2]]])
        assert matched_iou_per_image(torch.tensor([[[1, 1, 2, 2], [0, 0, 0, 0]]]), y, 3).tolist() == [1.0]
        # predicting one region everywhere: best match IoU 4/8 for region 2, 0 for the others
        assert matched_iou_per_image(torch.zeros(1, 2, 4, dtype=torch.long), y, 3).tolist() == pytest.approx([0.5 / 3])
        # matched_iou is their mean over images, a python float
        two = torch.cat([torch.tensor([[[1, 1, 2, 2], [0, 0, 0, 0]]]), torch.zeros(1, 2, 4, dtype=torch.long)])
        score = matched_iou(two, torch.cat([y, y]), 3)
        assert isinstance(score, float) and score == pytest.approx((1 + 0.5 / 3) / 2)

    def test_extra_channels_and_errors(self):
        y = torch.tensor([[[0, 1]]])
        assert matched_iou(torch.tensor([[[3, 1]]]), y, 2, num_channels=4) == 1.0
        with pytest.raises(ValueError, match="`num_channels`"):
            matched_iou(torch.tensor([[[0, 1]]]), y, 2, num_channels=1)
        with pytest.raises(ValueError, match="expected values"):
            matched_iou(torch.tensor([[[0, 5]]]), y, 2)
        with pytest.raises(ValueError, match="`labels`: image 1 has no pixel other than ignore_index=255"):
            matched_iou(torch.zeros(2, 1, 2, dtype=torch.long), torch.tensor([[[0, 1]], [[255, 255]]]), 2)


class TestBinarySegmentationScores:
    def test_hand_computed_pooled_and_per_image(self):
        gt = torch.tensor([[[1, 1, 0, 0]], [[0, 0, 0, 0]]], dtype=torch.bool)
        pred = torch.tensor([[[1, 0, 1, 0]], [[0, 0, 0, 0]]], dtype=torch.bool)
        s = binary_segmentation_scores(pred, gt, probs=pred.double() * 0.5)
        # image 0: TP 1, FP 1, FN 1 -> IoU 1/3; image 1: empty and empty -> 1 by convention
        assert s["pooled_iou"] == pytest.approx(1 / 3)
        assert s["mean_iou"] == pytest.approx((1 / 3 + 1) / 2)
        # P = R = 1/2 -> F_beta = 1/2 for any beta
        assert s["fbeta"] == pytest.approx(0.5)
        # |0.5 - 1| + |0 - 1| + |0.5 - 0| = 2 over 4 pixels, then 0 -> mean 0.25
        assert s["mae"] == pytest.approx(0.25)

    def test_empty_set_scores_zero_pooled_and_errors_name_the_argument(self):
        none = torch.zeros(1, 2, 2, dtype=torch.bool)
        assert binary_segmentation_scores(none, none) == {"pooled_iou": 0.0, "mean_iou": 1.0, "fbeta": 0.0}
        with pytest.raises(ValueError, match="`labels`"):
            binary_segmentation_scores(none, torch.full((1, 2, 2), 2))
