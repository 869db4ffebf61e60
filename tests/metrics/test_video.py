"""DAVIS J and F, their statistics, and the flow end-point error (Chapter 8)."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import disk

from pixelbook.metrics.video import (boundary_measure, boundary_measure_per_image, db_statistics, end_point_error,
                                     region_similarity, region_similarity_per_image, seg2bmap,
                                     video_segmentation_scores)


def _davis_f_numpy(fg: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """An independent transcription of davis2017-evaluation's f_measure (numpy, scipy, skimage)."""
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(fg.shape))

    def bmap(seg):
        seg = seg.astype(bool)
        e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
        e[:, :-1] = seg[:, 1:]
        s[:-1, :] = seg[1:, :]
        se[:-1, :-1] = seg[1:, 1:]
        b = seg ^ e | seg ^ s | seg ^ se
        b[-1, :] = seg[-1, :] ^ e[-1, :]
        b[:, -1] = seg[:, -1] ^ s[:, -1]
        b[-1, -1] = 0
        return b

    fb, gb = bmap(fg), bmap(gt)
    fd = ndimage.binary_dilation(fb, disk(bound_pix))
    gd = ndimage.binary_dilation(gb, disk(bound_pix))
    n_fg, n_gt = fb.sum(), gb.sum()
    if n_fg == 0 and n_gt > 0:
        p, r = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        p, r = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        p, r = 1.0, 1.0
    else:
        p, r = (fb & gd).sum() / n_fg, (gb & fd).sum() / n_gt
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _blobs(seed, T=6, H=40, W=56):
    g = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(g.random((T, H, W)), (0, 3, 3))
    return torch.from_numpy(x > np.median(x))


class TestRegionSimilarity:
    def test_edge_cases(self):
        m = torch.zeros(4, 8, 8, dtype=torch.bool)
        m[0, 2:5, 2:5] = True
        m[1, :4] = True
        disjoint = torch.zeros_like(m)
        disjoint[0, 6:, 6:] = True
        assert region_similarity_per_image(m, m).tolist() == [1.0, 1.0, 1.0, 1.0]  # frames 2, 3: both empty -> 1
        assert region_similarity_per_image(disjoint, m).tolist() == [0.0, 0.0, 1.0, 1.0]
        assert region_similarity_per_image(torch.ones(1, 8, 8), torch.zeros(1, 8, 8)).tolist() == [0.0]

    def test_float_means(self):
        g = torch.zeros(2, 8, 8, dtype=torch.bool)
        g[:, 2:6, 2:6] = True
        p = g.clone()
        p[1] = False
        assert region_similarity(p, g) == 0.5 and boundary_measure(p, g) == 0.5

    def test_hand_value(self):
        g = torch.zeros(1, 10, 10, dtype=torch.bool)
        g[0, :, :6] = True  # 60 pixels
        p = torch.zeros_like(g)
        p[0, :, 3:] = True  # 70 pixels, 30 shared
        assert region_similarity_per_image(p, g).item() == pytest.approx(30 / 100)


class TestBoundaryMeasure:
    @pytest.mark.parametrize("seed", range(4))
    def test_equals_the_official_definition(self, seed):
        p, g = _blobs(seed), _blobs(seed + 100)
        ours = boundary_measure_per_image(p, g)
        ref = [_davis_f_numpy(p[t].numpy(), g[t].numpy()) for t in range(p.shape[0])]
        np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)
        ours3 = boundary_measure_per_image(p, g, bound_th=3)
        ref3 = [_davis_f_numpy(p[t].numpy(), g[t].numpy(), 3) for t in range(p.shape[0])]
        np.testing.assert_allclose(ours3.numpy(), ref3, rtol=0, atol=1e-12)

    def test_empty_conventions(self):
        empty, full = torch.zeros(1, 16, 16, dtype=torch.bool), torch.zeros(1, 16, 16, dtype=torch.bool)
        full[:, 4:10, 4:10] = True
        assert boundary_measure_per_image(empty, empty).tolist() == [1.0]
        assert boundary_measure_per_image(empty, full).tolist() == [0.0]
        assert boundary_measure_per_image(full, empty).tolist() == [0.0]

    def test_tolerance_is_ceil_of_the_diagonal_fraction(self):
        g = torch.zeros(1, 64, 64, dtype=torch.bool)
        g[:, 20:40, 20:40] = True
        assert boundary_measure_per_image(torch.roll(g, 1, 2), g).item() == 1.0  # 0.008 * 90.5 -> 1 px
        assert boundary_measure_per_image(torch.roll(g, 2, 2), g).item() < 1.0
        assert boundary_measure_per_image(torch.roll(g, 2, 2), g, bound_th=2).item() == 1.0

    def test_seg2bmap_hand_case(self):
        m = torch.zeros(1, 4, 4, dtype=torch.bool)
        m[0, 1:3, 1:3] = True
        assert seg2bmap(m)[0].int().tolist() == [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]


class TestStatisticsAndScores:
    def test_db_statistics_decay_bins(self):
        v = torch.tensor([1.0, 1.0, 0.4, 0.4, 0.4, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
        s = db_statistics(v)
        # ids = round(linspace(1, 9, 5)) - 1 = [0, 2, 4, 6, 8]; bins v[0:3], ..., v[6:9]
        assert s["mean"] == pytest.approx(3.2 / 9)
        assert s["recall"] == pytest.approx(2 / 9)
        assert s["decay"] == pytest.approx((2.4 / 3) - 0.0)

    def test_perfect_and_identity_propagation(self):
        labels = torch.zeros(6, 32, 32, dtype=torch.long)
        for t in range(6):
            labels[t, 5:15, 2 + 4 * t: 10 + 4 * t] = 1
            labels[t, 20:28, 20:28] = 2
        perfect = video_segmentation_scores(labels, labels)
        assert perfect == {"J_mean": 1.0, "J_recall": 1.0, "J_decay": 0.0, "F_mean": 1.0, "F_recall": 1.0,
                           "F_decay": 0.0, "JF_mean": 1.0}
        identity = video_segmentation_scores(labels[:1].expand(6, -1, -1).contiguous(), labels)
        # object 2 is static (J = 1); object 1 moved 4, 8, 12, 16 px in frames 1..4 (width 8)
        j1 = [region_similarity_per_image(labels[:1] == 1, labels[t:t + 1] == 1).item() for t in range(1, 5)]
        assert identity["J_mean"] == pytest.approx((sum(j1) / 4 + 1.0) / 2)
        assert j1[1:] == [0.0, 0.0, 0.0] and identity["J_recall"] == pytest.approx((0 + 1.0) / 2)

    def test_skip_first_last_false_scores_frames_1_to_end(self):
        labels = torch.zeros(3, 8, 8, dtype=torch.long)
        labels[:, 2:5, 2:5] = 1
        preds = labels.clone()
        preds[2] = 0
        assert video_segmentation_scores(preds, labels)["J_mean"] == 1.0
        assert video_segmentation_scores(preds, labels, skip_first_last=False)["J_mean"] == 0.5


class TestEndPointError:
    def test_values(self):
        pred = torch.zeros(1, 2, 2, 2)
        target = torch.zeros(1, 2, 2, 2)
        target[0, 0, 0, 0], target[0, 1, 0, 0] = 3.0, 4.0
        assert end_point_error(pred, target) == pytest.approx(5 / 4)
        valid = torch.zeros(1, 2, 2, dtype=torch.bool)
        valid[0, 0, 0] = True
        assert end_point_error(pred, target, valid) == pytest.approx(5.0)


class TestBadInput:
    def test_errors_name_the_argument(self):
        m = torch.zeros(2, 8, 8, dtype=torch.bool)
        with pytest.raises(ValueError, match="`labels`: expected H=8"):
            region_similarity_per_image(m, torch.zeros(2, 4, 8, dtype=torch.bool))
        with pytest.raises(ValueError, match="`pred`: expected a bool mask or values in"):
            boundary_measure_per_image(torch.full((2, 8, 8), 2), m)
        with pytest.raises(ValueError, match="`bound_th`"):
            boundary_measure_per_image(m, m, bound_th=0)
        with pytest.raises(ValueError, match="`pred`: expected at least 3 frames"):
            video_segmentation_scores(torch.zeros(2, 8, 8, dtype=torch.long), torch.zeros(2, 8, 8, dtype=torch.long))
        with pytest.raises(ValueError, match="`object_ids`"):
            video_segmentation_scores(torch.zeros(4, 8, 8, dtype=torch.long), torch.zeros(4, 8, 8, dtype=torch.long))
        with pytest.raises(TypeError, match="`labels`"):
            video_segmentation_scores(torch.zeros(4, 8, 8, dtype=torch.long), torch.zeros(4, 8, 8))
        with pytest.raises(ValueError, match="`valid`: expected at least one"):
            end_point_error(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
        with pytest.raises(ValueError, match="`target`: expected shape"):
            end_point_error(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2))
