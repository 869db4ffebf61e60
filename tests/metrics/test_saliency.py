"""Tests of pixelbook.metrics.saliency: F-beta, MAE, S-measure against PySODMetrics-style references."""

import math

import numpy as np
import pytest
import torch

from pixelbook.metrics import (e_measure, e_measure_per_image, f_measure, fbeta_per_image, fbeta_scores, mae,
                               mae_per_image, s_measure, weighted_f_measure, weighted_f_measure_per_image,
                               s_measure_per_image)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fb(P: float, R: float, b2: float = 0.3) -> float:
    """F-beta written out by hand, 0 when P*R = 0."""
    return 0.0 if P * R == 0 else (1 + b2) * P * R / (b2 * P + R)


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
        with pytest.raises(ValueError, match=r"`beta2`: expected a finite number in \(0, inf\)"):
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

    def test_per_image_scores(self):
        probs, masks = torch.cat([SOD_P, SOD_P2]), torch.cat([SOD_M, SOD_M2])
        out = fbeta_per_image(probs, masks, thresholds=self.THR)
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
        with pytest.raises(ValueError, match=r"`labels`: expected a bool mask or values in \{0, 1\}"):
            fbeta_scores(SOD_P, SOD_M.long() * 255)

    def test_error_channel_axis(self):
        with pytest.raises(ValueError, match=r"`probs`: expected shape \(N, H, W\)"):
            fbeta_scores(SOD_P[:, None], SOD_M[:, None])

    def test_error_options(self):
        with pytest.raises(ValueError, match="`average`: expected one of"):
            fbeta_scores(SOD_P, SOD_M, average="max")
        with pytest.raises(ValueError, match=r"`thresholds`: expected an integer in \[2, inf\]"):
            fbeta_scores(SOD_P, SOD_M, thresholds=1)
        with pytest.raises(ValueError, match=r"`beta2`: expected a finite number in \(0, inf\)"):
            fbeta_scores(SOD_P, SOD_M, beta2=-0.3)


class TestMae:
    def test_hand_computed_mean_over_images(self):
        # image 1: |0.9-1| + |0.6-1| + 0.2 + 0.1 + 0.7 + 0 = 1.5 over 6; image 2: 1 + 1 over 6
        probs, masks = torch.cat([SOD_P, SOD_P2]), torch.cat([SOD_M, SOD_M2])
        torch.testing.assert_close(mae_per_image(probs, masks),
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

    def test_per_image_and_mean(self):
        masks = torch.zeros(2, 5, 5, dtype=torch.bool)
        masks[:, 1:4, 1:4] = True
        probs = torch.stack([masks[0].float(), 1 - masks[1].float()])
        per_image = s_measure_per_image(probs, masks)
        torch.testing.assert_close(per_image, torch.tensor([1.0, 0.0], dtype=torch.float64))
        assert s_measure(probs, masks) == pytest.approx(0.5)

    def test_error_alpha(self):
        with pytest.raises(ValueError, match=r"`alpha`: expected a finite number in \[0, 1\]"):
            s_measure(SOD_P, SOD_M, alpha=1.5)

    def test_error_shape_mismatch(self):
        with pytest.raises(ValueError, match="`labels`: expected H=2"):
            s_measure(SOD_P, SOD_M[:, :1])


# ---------------------------------------------------------------- thresholds, E-measure, weighted F

class TestThresholdsExact:
    def test_default_thresholds_are_exactly_k_over_255(self):
        # a map whose pixel n holds exactly n/255 (Python's correctly rounded division) reaches
        # exactly the thresholds k <= n: precision curve of image n is 1 for n + 1 thresholds
        probs = torch.tensor([k / 255 for k in range(256)], dtype=torch.float64).view(256, 1, 1)
        labels = torch.ones(256, 1, 1, dtype=torch.bool)
        out = fbeta_per_image(probs, labels, return_curves=True)
        assert [float(t) for t in out["thresholds"]] == [k / 255 for k in range(256)]
        assert out["precision"].sum(1).tolist() == [float(n + 1) for n in range(256)]


def e_hand(counts_values):
    """sum of count * phi over the four (prediction, truth) parts, written out."""
    return sum(c * (1 + 2 * a * b / (a * a + b * b)) ** 2 / 4 for c, a, b in counts_values if c)


class TestEMeasure:
    def test_hand_computed_1x4(self):
        # truth 1 1 0 0, binary map 1 0 0 0: mu_FM = 1/4, mu_GT = 1/2 [FAN18, Eqs. 3-6], divide by HW - 1
        labels = torch.tensor([[[1, 1, 0, 0]]], dtype=torch.bool)
        probs = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
        s = e_hand([(1, 0.75, 0.5), (1, -0.25, 0.5), (2, -0.25, -0.5)])
        assert s == pytest.approx(625 / 676 + 0.01 + 1.62, rel=1e-12)
        out = e_measure_per_image(probs, labels)
        assert float(out["adaptive_e"][0]) == pytest.approx(s / 3, rel=1e-12)  # threshold min(2*0.25, 1)

    def test_perfect_and_inverted_maps(self):
        labels = torch.zeros(2, 4, 4, dtype=torch.bool)
        labels[:, 1:3, 1:3] = True
        assert e_measure(labels.float(), labels)["adaptive_e"] == pytest.approx(16 / 15, rel=1e-12)
        assert e_measure(1 - labels.float(), labels)["adaptive_e"] == pytest.approx(0.0, abs=1e-12)

    def test_constant_map_scores_a_quarter_at_every_threshold(self):
        # p = 0.5 everywhere: every threshold predicts all or nothing, mu_FM is 1 or 0, so the
        # alignment is 0 and phi = 1/4 at every pixel: E = HW / (4 (HW - 1)) for every k
        labels = torch.zeros(1, 5, 5, dtype=torch.bool)
        labels[0, :2] = True
        out = e_measure(torch.full((1, 5, 5), 0.5), labels, return_curves=True)
        assert torch.allclose(out["e"], torch.full((256,), 25 / 96, dtype=torch.float64), rtol=1e-12)
        assert out["max_e"] == pytest.approx(25 / 96) and out["mean_e"] == pytest.approx(25 / 96)

    def test_ground_truth_without_foreground_or_background(self):
        probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])   # adaptive threshold min(2 * 0.5, 1) = 1
        none = torch.zeros(1, 1, 4, dtype=torch.bool)
        every = torch.ones(1, 1, 4, dtype=torch.bool)
        assert float(e_measure_per_image(probs, none)["adaptive_e"][0]) == pytest.approx(2 / 3)  # 2 bg / 3
        assert float(e_measure_per_image(probs, every)["adaptive_e"][0]) == pytest.approx(2 / 3)  # 2 fg / 3

    def test_dataset_curve_is_the_mean_of_image_curves(self):
        g = gen(3)
        probs = torch.rand(3, 9, 7, generator=g)
        labels = torch.rand(3, 9, 7, generator=g) < 0.4
        per = e_measure_per_image(probs, labels, return_curves=True)
        ds = e_measure(probs, labels, return_curves=True)
        assert torch.allclose(ds["e"], per["e"].mean(0))
        assert ds["max_e"] == pytest.approx(float(per["e"].mean(0).max()))
        assert ds["adaptive_e"] == pytest.approx(float(per["adaptive_e"].mean()))

    def test_errors(self):
        labels = torch.zeros(1, 4, 4, dtype=torch.bool)
        with pytest.raises(ValueError, match="probs"):
            e_measure(torch.full((1, 4, 4), 1.5), labels)
        with pytest.raises(ValueError, match="thresholds"):
            e_measure(torch.rand(1, 4, 4), labels, thresholds=1)


def matlab_k33():
    """centre weight of fspecial('gaussian', 7, 5), from its closed form."""
    s = sum(math.exp(-x * x / 50) for x in range(-3, 4))
    return 1 / (s * s)


class TestWeightedF:
    def test_hand_computed_importance_weight(self):
        # truth 1 0 0, map 1 0 0.5: only pixel 2 errs (0.5), at distance 2 from the object,
        # weight 2 - 0.5 ** (2 / 5); R^w = 1, P^w = 1 / (1 + FP^w) [MARGOLIN14, Eqs. 8-12]
        labels = torch.tensor([[[1, 0, 0]]], dtype=torch.bool)
        probs = torch.tensor([[[1.0, 0.0, 0.5]]], dtype=torch.float64)
        fp = 0.5 * (2 - 0.5 ** 0.4)
        P = 1 / (1 + fp)
        assert weighted_f_measure(probs, labels) == pytest.approx(2 * P / (1 + P), rel=1e-12)

    def test_hand_computed_dependency_smoothing(self):
        # truth 1 1 0, map 0 1 0: the error 1 at pixel 0 is smoothed by the zero-padded 7x7 Gaussian
        # (sigma 5) to K[3, 3] there, which is smaller, so it is kept; R^w = 1 - K33 / 2, P^w = 1
        labels = torch.tensor([[[1, 1, 0]]], dtype=torch.bool)
        probs = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=torch.float64)
        R = 1 - matlab_k33() / 2
        assert weighted_f_measure(probs, labels) == pytest.approx(2 * R / (1 + R), rel=1e-12)

    def test_beta2_weights_precision_and_recall(self):
        labels = torch.tensor([[[1, 1, 0]]], dtype=torch.bool)
        probs = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=torch.float64)
        R = 1 - matlab_k33() / 2
        assert weighted_f_measure(probs, labels, beta2=0.3) == pytest.approx(1.3 * R / (R + 0.3), rel=1e-12)

    def test_perfect_empty_and_foreground_free(self):
        labels = torch.zeros(2, 12, 12, dtype=torch.bool)
        labels[:, 5:7, 5:7] = True
        assert weighted_f_measure(labels.float(), labels) == pytest.approx(1.0, abs=1e-12)
        # an empty map: every error is 1 and the smoothing window lies inside the image, so R^w = 0
        assert weighted_f_measure(torch.zeros(2, 12, 12), labels) == pytest.approx(0.0, abs=1e-12)
        assert weighted_f_measure(torch.rand(1, 6, 6, generator=gen(1)), torch.zeros(1, 6, 6, dtype=torch.bool)) == 0.0

    def test_zero_padding_lowers_the_smoothed_error_near_the_border(self):
        # WFb.m's imfilter pads with zeros: an empty map of an object near the border keeps some
        # recall (0.3888 here, the value PySODMetrics 1.6 gives too); the same object away from the
        # border scores 0 (test above)
        labels = torch.zeros(1, 6, 6, dtype=torch.bool)
        labels[:, 2:4, 2:4] = True
        assert weighted_f_measure(torch.zeros(1, 6, 6), labels) == pytest.approx(0.388763116035147, rel=1e-9)

    def test_per_image_mean_and_device(self):
        g = gen(5)
        probs = torch.rand(3, 8, 8, generator=g)
        labels = torch.rand(3, 8, 8, generator=g) < 0.3
        per = weighted_f_measure_per_image(probs, labels)
        assert per.shape == (3,) and per.dtype == torch.float64 and per.device == probs.device
        assert weighted_f_measure(probs, labels) == pytest.approx(float(per.mean()))
        assert bool(((per >= 0) & (per <= 1)).all())

    def test_errors(self):
        labels = torch.zeros(1, 4, 4, dtype=torch.bool)
        with pytest.raises(ValueError, match="beta2"):
            weighted_f_measure(torch.rand(1, 4, 4), labels, beta2=0.0)
        with pytest.raises(ValueError, match="labels"):
            weighted_f_measure(torch.rand(1, 4, 4), labels[:, :3])
