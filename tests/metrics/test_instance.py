"""Tests of the instance metrics: ARI, covering, best IoU, AP at IoU 0.5, average recall."""

from __future__ import annotations

import itertools

import pytest
import torch

import pixelbook.metrics.instance as mi


def _ari_pairs(a: list, b: list) -> float:
    """ARI from the four pair counts, by enumerating all pixel pairs (independent of the contingency table)."""
    tp = fp = fn = tn = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        sa, sb = a[i] == a[j], b[i] == b[j]
        tp += sa and sb
        fp += sa and not sb
        fn += sb and not sa
        tn += not sa and not sb
    den = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    return 1.0 if den == 0 else 2 * (tp * tn - fn * fp) / den


class TestAdjustedRandIndex:
    def test_equals_pair_counting(self):
        g = torch.Generator().manual_seed(0)
        for k in range(20):
            p = torch.randint(0, 1 + k % 4, (1, 5, 6), generator=g)
            t = torch.randint(0, 1 + (k // 4) % 3 + 1, (1, 5, 6), generator=g)
            expected = _ari_pairs(p.flatten().tolist(), t.flatten().tolist())
            assert abs(mi.adjusted_rand_index(p, t) - expected) < 1e-12

    def test_identity_relabelling_and_mean(self):
        t = torch.randint(0, 4, (3, 8, 8), generator=torch.Generator().manual_seed(1))
        assert mi.adjusted_rand_index(t, t) == 1.0
        relabelled = (t * 7 + 3) % 11  # a bijection of ids 0..3
        assert abs(mi.adjusted_rand_index(relabelled, t) - 1.0) < 1e-12
        per = mi.adjusted_rand_index_per_image(torch.zeros_like(t), t)
        assert per.shape == (3,) and float(per.abs().max()) < 1e-12

    def test_valid_pixels_only(self):
        t = torch.tensor([[[0, 0, 1, 1]]])
        p = torch.tensor([[[0, 0, 1, 0]]])
        valid = torch.tensor([[[True, True, True, False]]])
        assert mi.adjusted_rand_index(p, t, valid) == 1.0
        assert mi.adjusted_rand_index(p, t) < 1.0

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`instances`: expected H=4"):
            mi.adjusted_rand_index(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 3, 4, dtype=torch.long))
        with pytest.raises(TypeError, match="`pred`: expected an integer"):
            mi.adjusted_rand_index(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
        with pytest.raises(ValueError, match="`valid`: image 0 has no valid pixel"):
            mi.adjusted_rand_index(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long),
                                   torch.zeros(1, 2, 2, dtype=torch.bool))


class TestCoveringAndBestIoU:
    def test_hand_values(self):
        t = torch.tensor([[[0, 0, 1, 1, 1, 2]]])
        p = torch.tensor([[[5, 5, 5, 5, 9, 9]]])
        # instance 1 (3 px): IoU with {5}: 2/5, with {9}: 1/4 -> 0.4; instance 2 (1 px): 1/2
        ious, areas = mi.best_iou_per_instance(p, t)
        torch.testing.assert_close(ious, torch.tensor([0.4, 0.5], dtype=torch.float64))
        torch.testing.assert_close(areas, torch.tensor([3.0, 1.0], dtype=torch.float64))
        assert abs(mi.segmentation_covering(p, t) - (3 * 0.4 + 1 * 0.5) / 4) < 1e-12
        # with the background as a region (BSDS definition): background 2 px, best IoU 2/4
        assert abs(mi.segmentation_covering(p, t, background=None) - (2 * 0.5 + 3 * 0.4 + 0.5) / 6) < 1e-12

    def test_perfect_and_skipped_images(self):
        t = torch.randint(0, 5, (2, 6, 6), generator=torch.Generator().manual_seed(0))
        assert mi.segmentation_covering(t + 10, t) == 1.0
        empty = torch.zeros(1, 4, 4, dtype=torch.long)
        assert bool(mi.segmentation_covering_per_image(empty, empty).isnan().all())
        with pytest.raises(ValueError, match="`instances`: expected at least one instance"):
            mi.segmentation_covering(empty, empty)
        both = torch.stack([t[0], torch.zeros(6, 6, dtype=torch.long)])  # the empty image is left out
        assert mi.segmentation_covering(both + 1, both) == 1.0


class TestAveragePrecision:
    def _target(self):
        t = torch.zeros(2, 4, 4, dtype=torch.long)
        t[0, :2, :2] = 1
        t[0, 2:, 2:] = 2
        t[1, :, :2] = 1
        return t  # three instances

    def test_hand_computed_ranking(self):
        t = self._target()
        m0 = torch.stack([t[0] == 1, t[0] == 1, torch.zeros(4, 4, dtype=torch.bool)])  # TP, duplicate (FP), miss
        m0[2, 0, 3] = True
        m1 = torch.stack([t[1] == 1])
        scores = [torch.tensor([0.9, 0.8, 0.5]), torch.tensor([0.7])]
        # ranked: TP(0.9), FP(0.8), TP(0.7), FP(0.5); 3 instances
        # recall 1/3 at precision 1, 2/3 at precision 2/3 -> AP = 1/3 * 1 + 1/3 * 2/3
        ap = mi.instance_average_precision([m0, m1], scores, t)
        assert abs(ap - (1 / 3 + 2 / 9)) < 1e-12

    def test_threshold_and_perfect(self):
        t = self._target()
        masks = mi.masks_from_segments(t)
        scores = [torch.rand(len(m)) for m in masks]
        # the background masks are false positives; score them last -> AP 1
        for m, s in zip(masks, scores):
            s[0] = -1.0
        assert mi.instance_average_precision(masks, scores, t) == 1.0
        # instance 1 of image 1 is the 8-px left half; the top half overlaps it with IoU 4/12
        m = [torch.zeros(0, 4, 4, dtype=torch.bool), torch.zeros(1, 4, 4, dtype=torch.bool)]
        m[1][0, :2, :] = True
        s = [torch.zeros(0), torch.ones(1)]
        assert abs(mi.instance_average_precision(m, s, t, iou_threshold=1 / 3) - 1 / 3) < 1e-12
        assert mi.instance_average_precision(m, s, t, iou_threshold=0.5) == 0.0

    def test_bad_input(self):
        t = self._target()
        with pytest.raises(ValueError, match="`proposals`: expected one entry per image"):
            mi.instance_average_precision([torch.zeros(0, 4, 4, dtype=torch.bool)], [torch.zeros(0)], t)
        with pytest.raises(TypeError, match=r"`proposals\[0\]`: expected a bool"):
            mi.instance_average_precision([torch.zeros(1, 4, 4)] * 2, [torch.zeros(1)] * 2, t)
        with pytest.raises(ValueError, match=r"`scores\[0\]`: expected K=1"):
            mi.instance_average_precision([torch.zeros(1, 4, 4, dtype=torch.bool)] * 2, [torch.zeros(2)] * 2, t)
        with pytest.raises(ValueError, match="`instances`: expected at least one instance"):
            mi.instance_average_precision([torch.zeros(1, 4, 4, dtype=torch.bool)], [torch.zeros(1)],
                                          torch.zeros(1, 4, 4, dtype=torch.long))


class TestAverageRecall:
    def test_thresholds_and_top_k(self):
        t = torch.zeros(1, 4, 4, dtype=torch.long)
        t[0, :, :2] = 1  # 8 px
        t[0, :2, 2:] = 2  # 4 px
        exact1 = t[0] == 1
        part2 = torch.zeros(4, 4, dtype=torch.bool)
        part2[0, 2:] = True  # 2 of the 4 px of instance 2: IoU 0.5
        masks = [torch.stack([part2, exact1])]
        scores = [torch.tensor([0.9, 0.1])]
        assert mi.average_recall(masks, t, iou_thresholds=(0.5,)) == 1.0
        thr = mi.AR_IOU_THRESHOLDS
        # instance 1 recalled at all 10 thresholds, instance 2 at 0.5 only
        assert abs(mi.average_recall(masks, t) - (10 + 1) / 20) < 1e-12
        assert mi.average_recall(masks, t, scores, max_proposals=1, iou_thresholds=(0.5,)) == 0.5
        assert len(thr) == 10 and thr[0] == 0.5 and thr[-1] == 0.95

    def test_bad_input(self):
        t = torch.ones(1, 2, 2, dtype=torch.long)
        m = [torch.ones(1, 2, 2, dtype=torch.bool)]
        with pytest.raises(ValueError, match="`scores`: needed"):
            mi.average_recall(m, t, max_proposals=1)
        with pytest.raises(ValueError, match="`iou_thresholds`"):
            mi.average_recall(m, t, iou_thresholds=(1.5,))
        with pytest.raises(ValueError, match="`max_proposals`"):
            mi.average_recall(m, t, [torch.ones(1)], max_proposals=0)
