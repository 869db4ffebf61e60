"""Tests of pixelbook.rmi: the exact properties of the RMI lower bound, the loss, the baseline, the model."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import pixelbook.rmi as rmi_mod
from pixelbook.rmi import RMILoss, downsample, rmi_from_covariance, rmi_loss, rmi_lower_bound

f64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _onehot(labels, C, dtype=f64):
    return F.one_hot(labels, C).permute(0, 3, 1, 2).to(dtype)


def _inline_rmi(probs, targets, R, xi, normalize=True):
    """The paper's formula written directly: sample covariances, explicit inverse, log-det (float64)."""
    N, C, h, w = probs.shape
    hh, ww = h - R + 1, w - R + 1
    P = torch.stack([probs[:, :, i:i + hh, j:j + ww] for i in range(R) for j in range(R)], 2).reshape(N, C, R * R, -1)
    Y = torch.stack([targets[:, :, i:i + hh, j:j + ww] for i in range(R) for j in range(R)], 2).reshape(N, C, R * R, -1)
    P, Y = P.double() - P.double().mean(-1, keepdim=True), Y.double() - Y.double().mean(-1, keepdim=True)
    n = P.shape[-1] if normalize else 1
    Sp, Sy, Syp = P @ P.mT / n, Y @ Y.mT / n, Y @ P.mT / n
    eye = torch.eye(R * R, dtype=f64)
    M = Sy - Syp @ torch.linalg.inv(Sp + xi * eye) @ Syp.mT
    return 0.5 * torch.logdet(M + xi * eye) / (R * R)


def _random_spd(dim, seed):
    A = torch.randn(dim, dim, generator=_gen(seed), dtype=f64)
    return A @ A.T + 0.5 * torch.eye(dim, dtype=f64)


class TestDownsample:
    def test_avg_pool_of_one_hot_gives_fractions(self):
        y = torch.zeros(1, 1, 4, 4)
        y[0, 0, 0, 0] = 1
        out = downsample(y, "avg", 2)
        assert out[0, 0, 0, 0] == 0.25 and out.sum() == 0.25

    def test_interp_uses_nearest_for_labels_and_bilinear_for_probs(self):
        x = torch.rand(1, 1, 8, 8, generator=_gen(1))
        assert torch.equal(downsample(x, "interp", 2, kind="labels"), F.interpolate(x, size=(4, 4), mode="nearest"))
        ref = F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=True)
        assert torch.equal(downsample(x, "interp", 2, kind="probs"), ref)

    def test_size_one_is_identity(self):
        x = torch.rand(1, 2, 5, 5)
        assert downsample(x, "avg", 1) is x

    @pytest.mark.parametrize("pool", ["avg", "max", "interp"])
    @pytest.mark.parametrize("size,stride,padding", [(1, 1, 0), (2, 2, 0), (3, 3, 1), (4, 4, 2), (4, 4, 0), (3, 2, 1)])
    @pytest.mark.parametrize("void", [True, False])
    def test_pooled_one_hot_shortcut_equals_pooling_the_one_hot(self, pool, size, stride, padding, void):
        labels = torch.randint(0, 4, (2, 13, 11), generator=_gen(2))
        if void:
            labels[0, :3, :5] = 255
        valid = labels != 255 if void else None
        full = rmi_mod._onehot(labels, 4, valid, f64)
        ref = downsample(full, pool, size, stride, padding, kind="labels")
        fast = rmi_mod._pooled_onehot(labels, 4, valid, pool, size, stride, padding, f64)
        torch.testing.assert_close(fast, ref, rtol=0, atol=1e-15)

    def test_error_names_pool(self):
        with pytest.raises(ValueError, match="`pool`: expected one of"):
            downsample(torch.zeros(1, 1, 4, 4), "median", 2)


class TestRmiFromCovariance:
    @pytest.mark.parametrize("d", [1, 4, 9])
    def test_gaussian_bound_is_tight(self, d):
        # For jointly Gaussian (Y, P): I = H(Y) - 1/2 log((2 pi e)^d det M) exactly (Schur complement).
        J = _random_spd(2 * d, seed=d)
        Sp, Sy = J[:d, :d], J[d:, d:]
        mi = 0.5 * (torch.logdet(Sy) + torch.logdet(Sp) - torch.logdet(J))
        H_Y = 0.5 * (d * math.log(2 * math.pi * math.e) + torch.logdet(Sy))
        ell = rmi_from_covariance(J, xi=0.0)
        bound = H_Y - 0.5 * d * math.log(2 * math.pi * math.e) - d * ell
        assert abs(float(bound - mi)) < 1e-10

    @pytest.mark.parametrize("a", [0.5, 1.0, 2.0])
    def test_uniform_noise_gap_is_half_log_pi_e_over_6(self, a):
        # d = 1, P ~ N(0, 1), Y = P + U(-a, a): I = h(Y) - ln(2a); bound = h(Y) - 1/2 ln(2 pi e M), M = a^2/3.
        J = torch.tensor([[1.0, 1.0], [1.0, 1.0 + a * a / 3]], dtype=f64)
        ell = float(rmi_from_covariance(J, xi=0.0))
        gap = (0.5 * math.log(2 * math.pi * math.e) + ell) - math.log(2 * a)  # I - bound, h(Y) cancels
        assert abs(gap - 0.5 * math.log(math.pi * math.e / 6)) < 1e-12
        assert gap > 0  # the bound is strict for non-Gaussian noise

    def test_canonical_correlation_form(self):
        d = 4
        J = _random_spd(2 * d, seed=11)
        Sp, Spy, Sy = J[:d, :d], J[:d, d:], J[d:, d:]

        def inv_sqrt(A):
            w, V = torch.linalg.eigh(A)
            return V @ torch.diag(w.rsqrt()) @ V.T

        rho = torch.linalg.svdvals(inv_sqrt(Sy) @ Spy.T @ inv_sqrt(Sp))
        expected = (torch.logdet(Sy) + torch.log1p(-rho ** 2).sum()) / (2 * d)
        assert abs(float(rmi_from_covariance(J, xi=0.0) - expected)) < 1e-12

    def test_singular_without_xi_raises_and_with_xi_is_finite(self):
        J = torch.zeros(2, 2, dtype=f64)
        with pytest.raises(ValueError, match="`xi`: the joint covariance"):
            rmi_from_covariance(J, xi=0.0)
        assert float(rmi_from_covariance(J, xi=1e-6)) == pytest.approx(0.5 * math.log(1e-6), abs=1e-12)

    def test_error_names_cov(self):
        with pytest.raises(ValueError, match=r"`cov`: expected shape \(\.\.\., 2d, 2d\)"):
            rmi_from_covariance(torch.zeros(3, 3))


class TestRmiLowerBound:
    def test_equals_inline_formula_on_random_input(self):
        p, y = torch.rand(2, 3, 10, 9, generator=_gen(12)), torch.rand(2, 3, 10, 9, generator=_gen(13))
        for R, xi, norm in [(1, 1e-6, True), (2, 5e-4, False), (3, 1e-6, True), (3, 5e-4, False)]:
            torch.testing.assert_close(rmi_lower_bound(p, y, R, xi, norm), _inline_rmi(p, y, R, xi, norm),
                                       rtol=1e-10, atol=1e-12)

    def test_polarity_invariance(self):
        p = torch.rand(2, 2, 12, 12, dtype=f64, generator=_gen(14))
        y = (torch.rand(2, 2, 12, 12, generator=_gen(15)) > 0.6).to(f64)
        torch.testing.assert_close(rmi_lower_bound(1 - p, y, 3, 5e-4), rmi_lower_bound(p, y, 3, 5e-4), rtol=0, atol=1e-12)

    @pytest.mark.parametrize("value", [0.0, 1.0, 0.25])
    def test_constant_target_gives_half_log_xi_and_zero_gradient(self, value):
        # absent class (0), class everywhere (1), or a constant pooled fraction: Y is constant.
        p = torch.rand(1, 1, 10, 10, dtype=f64, generator=_gen(16), requires_grad=True)
        y = torch.full((1, 1, 10, 10), value, dtype=f64)
        ell = rmi_lower_bound(p, y, 3, xi=5e-4, normalize=False)
        assert float(ell.detach()) == pytest.approx(0.5 * math.log(5e-4), abs=1e-12)
        g, = torch.autograd.grad(ell.sum(), p)
        assert float(g.abs().max()) <= 1e-15

    @settings(max_examples=25, deadline=None)
    @given(seed=st.integers(0, 10_000), R=st.integers(1, 3), xi=st.sampled_from([1e-6, 5e-4]),
           normalize=st.booleans())
    def test_each_term_is_at_least_half_log_xi(self, seed, R, xi, normalize):
        g = _gen(seed)
        p = torch.rand(2, 2, 7, 7, generator=g, dtype=f64) ** 3
        y = (torch.rand(2, 2, 7, 7, generator=g) > 0.7).to(f64)
        assert bool((rmi_lower_bound(p, y, R, xi, normalize) >= 0.5 * math.log(xi) - 1e-12).all())

    def test_radius_one_is_a_pearson_correlation_loss(self):
        p = torch.rand(1, 1, 16, 16, dtype=f64, generator=_gen(17))
        y = ((p + 0.5 * torch.rand(1, 1, 16, 16, dtype=f64, generator=_gen(18))) > 0.8).to(f64)
        rho = np.corrcoef(p.flatten().numpy(), y.flatten().numpy())[0, 1]
        var_y = float(y.var(unbiased=False))
        expected = 0.5 * math.log(var_y * (1 - rho ** 2))
        assert float(rmi_lower_bound(p, y, 1, xi=0.0)) == pytest.approx(expected, abs=1e-12)

    def test_unnormalised_minus_normalised_is_half_log_n(self):
        p, y = torch.rand(1, 1, 12, 11, dtype=f64, generator=_gen(19)), torch.rand(1, 1, 12, 11, dtype=f64, generator=_gen(20))
        n = 10 * 9
        diff = rmi_lower_bound(p, y, 3, 0.0, normalize=False) - rmi_lower_bound(p, y, 3, 0.0, normalize=True)
        assert float(diff) == pytest.approx(0.5 * math.log(n), abs=1e-10)

    def test_uniform_noise_gap_from_sampled_maps(self):
        # The whole pipeline with R = 1: P a Gaussian map, Y = P + uniform noise; the empirical gap
        # h-free: (1/2 ln 2 pi e + ell) - ln(2a) -> 1/2 ln(pi e / 6) up to sampling error O(1/sqrt(n)).
        g, a, n = _gen(21), 1.0, 512
        P = torch.randn(1, 1, n, n, generator=g, dtype=f64)
        Y = P + (2 * torch.rand(1, 1, n, n, generator=g, dtype=f64) - 1) * a
        gap = 0.5 * math.log(2 * math.pi * math.e) + float(rmi_lower_bound(P, Y, 1, xi=0.0)) - math.log(2 * a)
        assert abs(gap - 0.5 * math.log(math.pi * math.e / 6)) < 5e-3  # sd of the estimate ~ 1/n = 2e-3

    def test_joint_permutation_changes_rmi_only_for_radius_above_one(self):
        p = torch.rand(1, 1, 12, 12, dtype=f64, generator=_gen(22))
        y = (p + 0.3 * torch.rand(1, 1, 12, 12, dtype=f64, generator=_gen(23)) > 0.7).to(f64)
        perm = torch.randperm(144, generator=_gen(24))
        pp, yp = p.flatten()[perm].reshape(p.shape), y.flatten()[perm].reshape(y.shape)
        assert float(rmi_lower_bound(pp, yp, 1)) == pytest.approx(float(rmi_lower_bound(p, y, 1)), abs=1e-12)
        assert abs(float(rmi_lower_bound(pp, yp, 3)) - float(rmi_lower_bound(p, y, 3))) > 1e-3

    def test_thin_line_contiguous_gap_costs_more_than_scattered_errors(self):
        # Note 002 §2.11(8): same BCE, same R = 1 value, but R = 3 prefers scattered errors.
        def line(rows):
            p = torch.full((1, 1, 16, 16), 0.1, dtype=f64)
            p[0, 0, :, 8] = 0.9
            p[0, 0, rows, 8] = 0.2
            return p
        y = torch.zeros(1, 1, 16, 16, dtype=f64)
        y[0, 0, :, 8] = 1
        contiguous, scattered = line([6, 7, 8, 9]), line([1, 5, 10, 14])
        kw = dict(xi=5e-4, normalize=False)
        assert float(rmi_lower_bound(contiguous, y, 1, **kw)) == pytest.approx(float(rmi_lower_bound(scattered, y, 1, **kw)), abs=1e-12)
        assert float(rmi_lower_bound(contiguous, y, 3, **kw)) == pytest.approx(-2.22586, abs=1e-5)
        assert float(rmi_lower_bound(scattered, y, 3, **kw)) == pytest.approx(-2.51448, abs=1e-5)

    def test_error_names_xi(self):
        with pytest.raises(ValueError, match="`xi`: expected a finite number >= 0"):
            rmi_lower_bound(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), xi=-1.0)


class TestRmiLoss:
    def test_equals_inline_formula_on_random_input(self):
        logits = torch.randn(2, 3, 24, 20, generator=_gen(30))
        labels = torch.randint(0, 3, (2, 24, 20), generator=_gen(31))
        y, p = _onehot(labels, 3, torch.float32), torch.sigmoid(logits)
        y4, p4 = F.avg_pool2d(y, 4, 4), F.avg_pool2d(p, 4, 4)
        rmi = _inline_rmi(p4, y4, 3, 1e-6).sum(1).mean()
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / (2 * 24 * 20)
        expected = 0.5 * bce + 0.5 * rmi.float()
        torch.testing.assert_close(rmi_loss(logits, labels), expected, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("R,DF,pool,act", [(2, 1, "avg", "sigmoid"), (3, 1, "avg", "softmax"),
                                               (2, 2, "avg", "sigmoid"), (3, 2, "max", "sigmoid"),
                                               (2, 2, "interp", "softmax")])
    def test_gradcheck_float64(self, R, DF, pool, act):
        logits = torch.randn(1, 2, 6, 6, dtype=f64, generator=_gen(32), requires_grad=True)
        labels = torch.randint(0, 2, (1, 6, 6), generator=_gen(33))
        labels[0, 0, :3] = 255
        fn = lambda x: rmi_loss(x, labels, radius=R, pool=pool, pool_size=DF, activation=act)  # noqa: E731
        # fast mode compares one random vector-Jacobian product with finite differences (seconds, not minutes)
        assert torch.autograd.gradcheck(fn, (logits,), fast_mode=True)

    @pytest.mark.parametrize("pool", ["avg", "max"])
    def test_agrees_with_rmi_pytorch_where_settings_coincide(self, pool):
        ref_mod = pytest.importorskip("rmi")
        logits = torch.randn(2, 3, 32, 32, dtype=f64, generator=_gen(34), requires_grad=True)
        labels = torch.randint(0, 3, (2, 32, 32), generator=_gen(35))
        for R in (1, 2, 3, 4):
            for s in (1, 2, 3, 4):
                # rmi-pytorch: kernel = stride = s, padding s // 2, xi = 5e-4 on unnormalised sums;
                # its Cholesky path calls the removed torch.cholesky, so use its logdet path.
                ref = ref_mod.RMILoss(with_logits=True, radius=R, bce_weight=0.0, pool=pool, stride=s,
                                      use_log_trace=False)
                a = ref(logits, _onehot(labels, 3))
                ga, = torch.autograd.grad(a, logits)
                b = rmi_loss(logits, labels, radius=R, pool=pool, pool_size=s, pool_padding=s // 2, xi=5e-4,
                             normalize=False, ce_weight=0.0)
                gb, = torch.autograd.grad(b, logits)
                torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
                torch.testing.assert_close(gb, ga, rtol=1e-8, atol=1e-12)

    def test_ce_terms_match_torch(self):
        logits = torch.randn(2, 4, 9, 9, generator=_gen(36))
        labels = torch.randint(0, 4, (2, 9, 9), generator=_gen(37))
        labels[1, :4] = 255
        valid = labels != 255
        y = rmi_mod._onehot(labels, 4, valid, torch.float32)
        w = valid[:, None].float().expand_as(y)
        bce = F.binary_cross_entropy_with_logits(logits, y, weight=w, reduction="sum") / valid.sum()
        torch.testing.assert_close(rmi_loss(logits, labels, ce_weight=1.0), bce, rtol=1e-5, atol=1e-6)
        ce = F.cross_entropy(logits, labels, ignore_index=255)
        torch.testing.assert_close(rmi_loss(logits, labels, ce_weight=1.0, activation="softmax"), ce, rtol=1e-5, atol=1e-6)

    def test_reductions_are_consistent(self):
        logits = torch.randn(3, 2, 16, 16, generator=_gen(38))
        labels = torch.randint(0, 2, (3, 16, 16), generator=_gen(39))
        none = rmi_loss(logits, labels, reduction="none")
        assert none.shape == (3,)
        torch.testing.assert_close(rmi_loss(logits, labels), none.mean(), rtol=1e-5, atol=1e-6)
        rmi_only = rmi_loss(logits, labels, ce_weight=0.0, reduction="none")
        torch.testing.assert_close(rmi_loss(logits, labels, ce_weight=0.0, reduction="sum"), rmi_only.sum())

    def test_absent_class_gets_no_rmi_gradient(self):
        logits = torch.randn(1, 3, 16, 16, generator=_gen(40), dtype=f64, requires_grad=True)
        labels = torch.randint(0, 2, (1, 16, 16), generator=_gen(41))  # class 2 absent
        loss = rmi_loss(logits, labels, ce_weight=0.0, radius=2, pool_size=2)
        g, = torch.autograd.grad(loss, logits)
        assert float(g[:, 2].abs().max()) == 0.0 and float(g[:, :2].abs().max()) > 0

    @pytest.mark.parametrize("case", ["constant_logits", "all_void", "single_class"])
    def test_degenerate_inputs_give_finite_loss_and_gradient(self, case, device):
        logits = torch.randn(2, 3, 16, 16, generator=_gen(42)).to(device)
        labels = torch.randint(0, 3, (2, 16, 16), generator=_gen(43)).to(device)
        if case == "constant_logits":
            logits = torch.zeros_like(logits)
        elif case == "all_void":
            labels = torch.full_like(labels, 255)
        else:
            labels = torch.zeros_like(labels)
        logits.requires_grad_(True)
        official = {"xi": 5e-4, "normalize": False, "pool_padding": 2}
        for kw in ({}, {"xi": 1e-12}, {"pool": "max"}, {"pool": "interp"}, {"activation": "softmax"}, official):
            loss = rmi_loss(logits, labels, **kw)
            g, = torch.autograd.grad(loss, logits)
            assert torch.isfinite(loss) and bool(torch.isfinite(g).all()), (case, kw)

    def test_all_void_batch_has_zero_gradient(self):
        logits = torch.randn(1, 2, 8, 8, requires_grad=True)
        loss = rmi_loss(logits, torch.full((1, 8, 8), 255), radius=2, pool_size=2)
        g, = torch.autograd.grad(loss, logits)
        assert float(g.abs().max()) == 0.0

    def test_perfect_prediction_beats_random(self):
        labels = torch.randint(0, 3, (2, 32, 32), generator=_gen(44))
        perfect = 12.0 * _onehot(labels, 3, torch.float32) - 6.0
        noisy = torch.randn(2, 3, 32, 32, generator=_gen(45))
        assert float(rmi_loss(perfect, labels, ce_weight=0.0)) < float(rmi_loss(noisy, labels, ce_weight=0.0))

    def test_module_equals_function(self):
        logits, labels = torch.randn(2, 3, 16, 16, generator=_gen(46)), torch.randint(0, 3, (2, 16, 16), generator=_gen(47))
        mod = RMILoss(radius=2, pool="max", pool_size=2, xi=1e-5, ce_weight=0.3, activation="softmax")
        ref = rmi_loss(logits, labels, radius=2, pool="max", pool_size=2, xi=1e-5, ce_weight=0.3, activation="softmax")
        assert torch.equal(mod(logits, labels), ref)

    def test_official_settings(self):
        off = RMILoss.official()
        assert (off.radius, off.pool, off.pool_size, off.pool_padding, off.xi, off.normalize) == (3, "avg", 4, 2, 5e-4, False)

    def test_error_names_argument(self):
        with pytest.raises(ValueError, match="`labels`: expected H=32"):
            rmi_loss(torch.rand(1, 2, 32, 32), torch.zeros(1, 16, 32, dtype=torch.long))

    def test_labels_out_of_range(self):
        with pytest.raises(ValueError, match=r"`labels`: expected labels in \[0, 2\) or ignore_index=255"):
            rmi_loss(torch.rand(1, 2, 16, 16), torch.full((1, 16, 16), 2))

    def test_nan_logits(self):
        logits = torch.rand(1, 2, 16, 16)
        logits[0, 1, 3, 4] = float("nan")
        with pytest.raises(ValueError, match="`logits`: expected finite values"):
            rmi_loss(logits, torch.zeros(1, 16, 16, dtype=torch.long))

    def test_radius_larger_than_downsampled_map(self):
        with pytest.raises(ValueError, match="`radius`: expected at most 2"):
            rmi_loss(torch.rand(1, 2, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long), radius=3, pool_size=4)

    def test_bad_options(self):
        x, y = torch.rand(1, 2, 16, 16), torch.zeros(1, 16, 16, dtype=torch.long)
        with pytest.raises(ValueError, match="`ce_weight`"):
            rmi_loss(x, y, ce_weight=1.5)
        with pytest.raises(ValueError, match="`activation`"):
            rmi_loss(x, y, activation="tanh")
        with pytest.raises(ValueError, match="`pool`"):
            RMILoss(pool="median")


def test_moved_names_say_where_they_went():
    with pytest.raises(AttributeError, match=r"pixelbook.models.MiniDeepLab"):
        rmi_mod.MiniDeepLab
    with pytest.raises(AttributeError, match=r"pixelbook.losses.affinity_loss"):
        rmi_mod.affinity_loss
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        rmi_mod.nothing


# --------------------------------------------------------------------------------------------------
# The contract in the docstrings, case by case (written against the mutation run's survivors:
# every value below comes from a closed form, the paper's equations or torch's own functions).

def _bce_per_pixel(logits, labels, valid):
    """Binary CE of sigmoid(logits) against the one-hot labels, summed over classes, 0 at void."""
    y = F.one_hot(torch.where(valid, labels, 0), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(1) * valid


class TestDownsampleContract:
    def test_bad_sizes_name_the_argument(self):
        x = torch.rand(1, 1, 8, 8)
        with pytest.raises(ValueError, match=r"`size`: expected an integer in \[1, inf\], got 0"):
            downsample(x, "avg", 0)
        with pytest.raises(ValueError, match=r"`stride`: expected an integer in \[1, inf\], got 0"):
            downsample(x, "avg", 2, stride=0)
        with pytest.raises(ValueError, match=r"`padding`: expected an integer in \[0, inf\], got -1"):
            downsample(x, "avg", 2, padding=-1)
        with pytest.raises(ValueError, match=r"`padding`: expected at most size // 2 = 2, got 3"):
            downsample(x, "avg", 4, padding=3)
        with pytest.raises(ValueError, match=r"`padding`: expected at most size // 2 = 1, got 2"):
            downsample(x, "avg", 3, padding=2)
        with pytest.raises(ValueError, match="`kind`: expected one of"):
            downsample(x, "interp", 2, kind="mask")
        with pytest.raises(TypeError, match="`x`: expected a floating-point tensor"):
            downsample(torch.ones(1, 1, 8, 8, dtype=torch.long), "avg", 2)

    def test_padding_of_half_the_size_is_allowed(self):
        # (8 + 2*2 - 4) // 4 + 1 = 3 cells per side; the corner cell holds 2x2 pixels of 16
        out = downsample(torch.ones(1, 1, 8, 8), "avg", 4, padding=2)
        assert out.shape == (1, 1, 3, 3) and float(out[0, 0, 0, 0]) == 0.25

    def test_size_one_with_a_larger_stride_subsamples(self):
        x = torch.rand(1, 2, 7, 6, generator=_gen(60))
        assert torch.equal(downsample(x, "avg", 1, stride=2), x[..., ::2, ::2])

    def test_max_pool_is_the_cell_maximum(self):
        x = torch.rand(2, 3, 8, 4, generator=_gen(61))
        ref = x.reshape(2, 3, 4, 2, 2, 2).amax((3, 5))
        assert torch.equal(downsample(x, "max", 2), ref)

    def test_interp_of_a_map_smaller_than_the_stride_keeps_one_row(self):
        x = torch.rand(1, 1, 3, 8, generator=_gen(62))
        out = downsample(x, "interp", 4, kind="labels")  # nearest: source index floor(i * in / out)
        assert out.shape == (1, 1, 1, 2)
        assert torch.equal(out[0, 0, 0], x[0, 0, 0, [0, 4]])


class TestRmiFromCovarianceContract:
    @pytest.mark.parametrize("cov,got", [(torch.zeros(4), r"\(4,\)"), (torch.zeros(2, 4), r"\(2, 4\)"),
                                         (torch.zeros(1, 3, 3), r"\(1, 3, 3\)"), ([[1.0, 0.0], [0.0, 1.0]], "list")])
    def test_bad_shapes(self, cov, got):
        with pytest.raises(ValueError, match=rf"`cov`: expected shape \(\.\.\., 2d, 2d\), got {got}"):
            rmi_from_covariance(cov)

    def test_bad_values(self):
        with pytest.raises(TypeError, match="`cov`: expected a floating-point tensor"):
            rmi_from_covariance(torch.eye(2, dtype=torch.long))
        with pytest.raises(ValueError, match="`cov`: expected finite values"):
            rmi_from_covariance(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
        for xi in (-1e-9, float("nan"), float("inf"), "1e-6", None):
            with pytest.raises(ValueError, match=r"`xi`: expected a finite number >= 0, got"):
                rmi_from_covariance(torch.eye(2), xi=xi)

    def test_d_one_closed_form_with_xi_on_both_blocks(self):
        # d = 1: Cholesky of [[a + xi, b], [b, c + xi]] has L_11 = sqrt(a + xi), L_22^2 = c + xi - b^2 / (a + xi),
        # so l = 1/2 ln(c + xi - b^2 / (a + xi)): xi regularises Sigma_P and M alike (module docstring).
        abc = [(1.0, 0.8, 1.0), (2.0, -0.5, 0.7), (0.3, 0.1, 4.0)]
        cov = torch.tensor([[[a, b], [b, c]] for a, b, c in abc], dtype=torch.float32)
        for xi in (0.0, 1e-6, 0.25, 3):
            out = rmi_from_covariance(cov, xi=xi)
            assert out.dtype == f64 and out.shape == (3,)
            expected = [0.5 * math.log(c + xi - b * b / (a + xi)) for a, b, c in abc]
            torch.testing.assert_close(out, torch.tensor(expected, dtype=f64), rtol=1e-7, atol=0)

    def test_block_diagonal_joint_covariance_gives_the_mean_log_of_sigma_y(self):
        # independent P and Y (Sigma_PY = 0): M = Sigma_Y, l = (1/2d) log det(Sigma_Y + xi I)
        d, xi = 3, 0.1
        Sy = _random_spd(d, seed=63)
        J = torch.block_diag(_random_spd(d, seed=64), Sy)
        expected = 0.5 * torch.logdet(Sy + xi * torch.eye(d, dtype=f64)) / d
        assert float(rmi_from_covariance(J, xi=xi)) == pytest.approx(float(expected), abs=1e-12)


class TestRmiLowerBoundContract:
    def test_bad_input_names_the_argument(self):
        p, y = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
        with pytest.raises(ValueError, match=r"`probs`: expected shape \(N, C, H, W\)"):
            rmi_lower_bound(p[0], y)
        bad = y.clone()
        bad[0, 0, 1, 1] = float("inf")
        with pytest.raises(ValueError, match="`target`: expected finite values"):
            rmi_lower_bound(p, bad)
        with pytest.raises(ValueError, match="`probs`: expected finite values"):
            rmi_lower_bound(bad, y)
        with pytest.raises(ValueError, match="`xi`: expected a finite number >= 0, got nan"):
            rmi_lower_bound(p, y, xi=float("nan"))

    def test_defaults_are_the_papers(self):
        # R = 3, xi = 1e-6, normalised covariances [RMI, Sec. 4]
        p = torch.rand(1, 2, 9, 10, dtype=f64, generator=_gen(65))
        y = (torch.rand(1, 2, 9, 10, generator=_gen(66)) > 0.5).to(f64)
        torch.testing.assert_close(rmi_lower_bound(p, y), _inline_rmi(p, y, 3, 1e-6, True), rtol=1e-10, atol=1e-12)


class TestRmiLossContract:
    def test_ce_weight_is_checked_and_its_bounds_are_allowed(self):
        x, y = torch.randn(1, 2, 16, 16, generator=_gen(70)), torch.randint(0, 2, (1, 16, 16), generator=_gen(71))
        for w in (-0.1, 1.5, "0.5", None):
            with pytest.raises(ValueError, match=r"`ce_weight`: expected a number in \[0, 1\], got"):
                rmi_loss(x, y, ce_weight=w)
            with pytest.raises(ValueError, match=r"`ce_weight`: expected a number in \[0, 1\], got"):
                RMILoss(ce_weight=w)
        assert torch.isfinite(rmi_loss(x, y, ce_weight=0)) and torch.isfinite(rmi_loss(x, y, ce_weight=1))

    def test_other_bad_options_name_the_argument(self):
        x, y = torch.randn(1, 2, 16, 16), torch.zeros(1, 16, 16, dtype=torch.long)
        with pytest.raises(ValueError, match=r"`radius`: expected an integer in \[1, inf\], got 0"):
            rmi_loss(x, y, radius=0)
        with pytest.raises(ValueError, match="`reduction`: expected one of"):
            rmi_loss(x, y, reduction="max")
        with pytest.raises(ValueError, match="`logits`: softmax needs at least 2 classes, got C=1"):
            rmi_loss(x[:, :1], y, activation="softmax")
        with pytest.raises(TypeError, match="`logits`: expected a floating-point tensor"):
            rmi_loss(x.long(), y)
        with pytest.raises(ValueError, match=r"`radius`: expected at most 2 \(the size of the maps after "
                                             r"down-sampling \(8, 8\) by 4\), got 3"):
            rmi_loss(torch.randn(1, 2, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))

    def test_one_class_sigmoid_is_allowed(self):
        x = torch.randn(1, 1, 16, 16, generator=_gen(72))
        assert torch.isfinite(rmi_loss(x, torch.zeros(1, 16, 16, dtype=torch.long)))

    def test_ce_alone_needs_no_rmi_window(self):
        # ce_weight = 1 is "the CE alone": a map too small for the RMI window is no error
        logits, labels = torch.randn(2, 3, 8, 8, generator=_gen(73)), torch.randint(0, 3, (2, 8, 8), generator=_gen(74))
        expected = _bce_per_pixel(logits, labels, torch.ones_like(labels, dtype=torch.bool)).mean()
        torch.testing.assert_close(rmi_loss(logits, labels, ce_weight=1.0), expected, rtol=1e-6, atol=1e-6)

    def test_map_exactly_radius_wide_is_one_region(self):
        # 12 x 12 pooled by 4 is 3 x 3: one region, every centred region vector is 0, so J = 0 and each
        # class term is 1/2 ln xi (Eqs. 14-15 with M = 0); two classes sum to ln xi.
        logits, labels = torch.randn(2, 2, 12, 12, generator=_gen(75)), torch.randint(0, 2, (2, 12, 12), generator=_gen(76))
        for xi in (1e-6, 5e-4):
            out = rmi_loss(logits, labels, ce_weight=0.0, xi=xi, reduction="none")
            torch.testing.assert_close(out, torch.full((2,), math.log(xi)), rtol=1e-6, atol=0)

    @pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
    def test_ce_reductions_with_void_pixels(self, activation):
        logits = torch.randn(2, 3, 8, 8, generator=_gen(77), dtype=f64)
        labels = torch.randint(0, 3, (2, 8, 8), generator=_gen(78))
        labels[1, :5] = 255  # image 1: 24 valid pixels of 64
        valid = labels != 255
        if activation == "sigmoid":
            per = _bce_per_pixel(logits, labels, valid)
        else:
            per = F.cross_entropy(logits, torch.where(valid, labels, 0), reduction="none") * valid
        kw = dict(ce_weight=1.0, activation=activation)
        torch.testing.assert_close(rmi_loss(logits, labels, reduction="none", **kw),
                                   per.sum((1, 2)) / valid.sum((1, 2)), rtol=1e-12, atol=0)
        torch.testing.assert_close(rmi_loss(logits, labels, reduction="sum", **kw), per.sum(), rtol=1e-12, atol=0)
        torch.testing.assert_close(rmi_loss(logits, labels, reduction="mean", **kw), per.sum() / valid.sum(),
                                   rtol=1e-12, atol=0)

    def test_void_pixels_are_agreeing_zeros_in_the_rmi_term(self):
        # the docstring's convention: a void pixel has an all-zero label and a zero probability
        logits = torch.randn(2, 2, 12, 10, generator=_gen(79), dtype=f64)
        labels = torch.randint(0, 2, (2, 12, 10), generator=_gen(80))
        labels[0, 2:7, 3:6] = 255
        valid = (labels != 255)[:, None].to(f64)
        p = torch.sigmoid(logits) * valid
        y = _onehot(torch.where(labels == 255, 0, labels), 2) * valid
        p2, y2 = F.avg_pool2d(p, 2), F.avg_pool2d(y, 2)
        expected = _inline_rmi(p2, y2, 2, 1e-4).sum(1)
        out = rmi_loss(logits, labels, ce_weight=0.0, radius=2, pool_size=2, xi=1e-4, reduction="none")
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(rmi_loss(logits, labels, ce_weight=0.0, radius=2, pool_size=2, xi=1e-4),
                                   expected.mean(), rtol=1e-10, atol=1e-12)

    def test_an_all_void_image_counts_zero_and_leaves_the_means(self):
        logits = torch.randn(2, 2, 16, 16, generator=_gen(81), dtype=f64)
        labels = torch.randint(0, 2, (2, 16, 16), generator=_gen(82))
        labels[1] = 255
        kw = dict(radius=2, pool_size=2)
        alone = {r: rmi_loss(logits[:1], labels[:1], reduction=r, **kw) for r in ("none", "sum", "mean")}
        none = rmi_loss(logits, labels, reduction="none", **kw)
        assert float(none[1]) == 0.0 and float(none[0]) == pytest.approx(float(alone["none"][0]), abs=1e-12)
        assert float(rmi_loss(logits, labels, reduction="sum", **kw)) == pytest.approx(float(alone["sum"]), abs=1e-12)
        assert float(rmi_loss(logits, labels, reduction="mean", **kw)) == pytest.approx(float(alone["mean"]), abs=1e-12)

    def test_all_void_batch_gives_exactly_zero_for_every_reduction(self):
        logits, labels = torch.randn(2, 2, 8, 8, generator=_gen(83)), torch.full((2, 8, 8), 255)
        for r in ("mean", "sum", "none"):
            out = rmi_loss(logits, labels, radius=2, pool_size=2, reduction=r)
            assert out.shape == ((2,) if r == "none" else ()) and bool((out == 0).all())

    def test_ignore_index_is_the_void_label_and_none_means_no_void(self):
        logits = torch.randn(1, 3, 12, 12, generator=_gen(84))
        labels = torch.randint(0, 3, (1, 12, 12), generator=_gen(85))
        ref = rmi_loss(logits, labels, radius=2, pool_size=2)
        assert torch.equal(rmi_loss(logits, labels, radius=2, pool_size=2, ignore_index=None), ref)
        void = labels.clone()
        void[0, :4] = 255
        other = void.clone()
        other[0, :4] = 7
        torch.testing.assert_close(rmi_loss(logits, other, radius=2, pool_size=2, ignore_index=7),
                                   rmi_loss(logits, void, radius=2, pool_size=2), rtol=0, atol=0)
        with pytest.raises(ValueError, match="`labels`: expected labels in"):
            rmi_loss(logits, void, radius=2, pool_size=2, ignore_index=None)

    def test_module_defaults_are_the_papers(self):
        m = RMILoss()
        assert (m.radius, m.pool, m.pool_size, m.pool_stride, m.pool_padding, m.xi, m.normalize, m.ce_weight,
                m.activation, m.ignore_index, m.reduction) == (3, "avg", 4, None, 0, 1e-6, True, 0.5, "sigmoid",
                                                              255, "mean")
        assert ("radius=3, pool='avg', pool_size=4, xi=1e-06, normalize=True, ce_weight=0.5, "
                "activation='sigmoid'") in repr(m)
        logits, labels = torch.randn(2, 2, 16, 16, generator=_gen(86)), torch.randint(0, 2, (2, 16, 16), generator=_gen(87))
        labels[0, :3] = 255
        assert torch.equal(m(logits, labels), rmi_loss(logits, labels))

    def test_module_passes_every_option(self):
        logits, labels = torch.randn(2, 2, 18, 18, generator=_gen(88)), torch.randint(0, 2, (2, 18, 18), generator=_gen(89))
        labels[1, :4] = 9
        kw = dict(radius=2, pool="avg", pool_size=3, pool_stride=2, pool_padding=1, xi=1e-3, normalize=False,
                  ce_weight=0.25, activation="softmax", ignore_index=9, reduction="none")
        ref = rmi_loss(logits, labels, **kw)
        assert torch.equal(RMILoss(**kw)(logits, labels), ref)
        for name, other in [("pool_stride", 3), ("pool_padding", 0), ("normalize", True), ("xi", 1e-2)]:
            assert not torch.equal(RMILoss(**{**kw, name: other})(logits, labels), ref), name

    def test_module_rejects_bad_options(self):
        for kw, name in [({"radius": 0}, "radius"), ({"activation": "tanh"}, "activation"),
                         ({"reduction": "max"}, "reduction"), ({"xi": -1.0}, "xi"), ({"xi": float("inf")}, "xi")]:
            with pytest.raises(ValueError, match=f"`{name}`"):
                RMILoss(**kw)

    def test_official_settings_and_overrides(self):
        off = RMILoss.official()
        assert (off.pool_stride, off.ce_weight, off.activation, off.ignore_index, off.reduction) == \
            (None, 0.5, "sigmoid", 255, "mean")
        mine = RMILoss.official(radius=2, xi=1e-3)
        assert (mine.radius, mine.xi, mine.pool_size, mine.pool_padding, mine.normalize) == (2, 1e-3, 4, 2, False)


class TestRmiSecondRound:
    """Survivors of the second mutation run, each pinned by a documented behaviour."""

    def test_shape_errors_name_the_argument_and_the_expected_shape(self):
        with pytest.raises(ValueError, match=r"^`x`: expected shape \(N, C, H, W\), got \(4, 4\)$"):
            downsample(torch.zeros(4, 4))
        with pytest.raises(ValueError, match=r"^`logits`: expected shape \(N, C, H, W\), got \(2, 8, 8\)$"):
            rmi_loss(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))
        with pytest.raises(ValueError, match=r"^`labels`: expected shape \(N, H, W\), got \(1, 1, 8, 8\)$"):
            rmi_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.long))

    def test_defaults_of_downsample_and_of_xi(self):
        x = torch.rand(1, 2, 8, 8, generator=_gen(90))
        assert torch.equal(downsample(x), F.avg_pool2d(x, 4))  # avg, DF = 4 [RMI, Table 1]
        J = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=f64)
        assert float(rmi_from_covariance(J)) == pytest.approx(0.5 * math.log(1 + 1e-6 - 0.64 / (1 + 1e-6)), abs=1e-13)

    def test_max_pool_with_a_stride_other_than_the_size(self):
        x = torch.rand(1, 1, 9, 9, generator=_gen(91))
        out = downsample(x, "max", 3, stride=2)
        ref = torch.stack([torch.stack([x[0, 0, i:i + 3, j:j + 3].max() for j in range(0, 7, 2)]) for i in range(0, 7, 2)])
        assert torch.equal(out[0, 0], ref)

    def test_interp_of_a_map_narrower_than_the_stride(self):
        x = torch.rand(1, 1, 8, 3, generator=_gen(92))
        out = downsample(x, "interp", 4, kind="labels")
        assert out.shape == (1, 1, 2, 1) and torch.equal(out[0, 0, :, 0], x[0, 0, [0, 4], 0])

    @pytest.mark.parametrize("shape", [(1, 3, 16), (1, 16, 3)])
    def test_interp_rmi_on_maps_thinner_than_the_pool(self, shape):
        # the pooled labels keep one row (column) like the pooled probabilities: R = 1 works
        logits = torch.randn(1, 2, *shape[1:], generator=_gen(93), dtype=f64)
        labels = torch.randint(0, 2, shape, generator=_gen(94))
        out = rmi_loss(logits, labels, pool="interp", pool_size=4, radius=1, ce_weight=0.0, xi=1e-3)
        h, w = max(1, shape[1] // 4), max(1, shape[2] // 4)
        p = F.interpolate(torch.sigmoid(logits), size=(h, w), mode="bilinear", align_corners=True)
        y = F.interpolate(_onehot(labels, 2), size=(h, w), mode="nearest")
        torch.testing.assert_close(out, _inline_rmi(p, y, 1, 1e-3).sum(1).mean(), rtol=1e-10, atol=1e-12)

    def test_singular_covariance_message(self):
        with pytest.raises(ValueError, match=r"^`xi`: the joint covariance of the region vectors is singular; "
                                             r"use xi > 0 \(the paper uses 1e-6\)$"):
            rmi_from_covariance(torch.zeros(2, 2), xi=0.0)

    def test_ce_over_a_single_valid_pixel(self):
        logits = torch.randn(2, 2, 4, 4, generator=_gen(95), dtype=f64)
        labels = torch.full((2, 4, 4), 255)
        labels[0, 1, 2] = 1  # image 0: one valid pixel; image 1: none
        valid = labels != 255
        per = _bce_per_pixel(logits, labels, valid)
        none = rmi_loss(logits, labels, ce_weight=1.0, reduction="none")
        torch.testing.assert_close(none, torch.stack([per[0, 1, 2], per.new_zeros(())]), rtol=1e-12, atol=0)
        torch.testing.assert_close(rmi_loss(logits, labels, ce_weight=1.0), per[0, 1, 2], rtol=1e-12, atol=0)

    def test_softmax_rmi_uses_softmax_probabilities(self):
        logits = torch.randn(2, 3, 12, 12, generator=_gen(96), dtype=f64)
        labels = torch.randint(0, 3, (2, 12, 12), generator=_gen(97))
        p, y = F.avg_pool2d(torch.softmax(logits, 1), 2), F.avg_pool2d(_onehot(labels, 3), 2)
        out = rmi_loss(logits, labels, activation="softmax", ce_weight=0.0, radius=2, pool_size=2, xi=1e-4)
        torch.testing.assert_close(out, _inline_rmi(p, y, 2, 1e-4).sum(1).mean(), rtol=1e-10, atol=1e-12)

    def test_radius_message_names_the_map_size_not_the_classes(self):
        with pytest.raises(ValueError, match=r"`radius`: expected at most 2 \(the size"):
            rmi_loss(torch.randn(1, 1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long), radius=3)

    def test_all_void_images_leave_the_mean_over_images(self):
        logits = torch.randn(3, 2, 16, 16, generator=_gen(98), dtype=f64)
        labels = torch.randint(0, 2, (3, 16, 16), generator=_gen(99))
        labels[2] = 255
        kw = dict(radius=2, pool_size=2, ce_weight=0.0)
        expected = rmi_loss(logits[:2], labels[:2], **kw)  # the mean over the two labelled images
        torch.testing.assert_close(rmi_loss(logits, labels, **kw), expected, rtol=1e-12, atol=1e-12)

    def test_xi_of_the_wrong_type_is_a_clear_error(self):
        p = torch.rand(1, 1, 8, 8)
        for xi in ("1e-6", None):
            with pytest.raises(ValueError, match="`xi`: expected a finite number >= 0"):
                rmi_lower_bound(p, p, xi=xi)

    def test_module_accepts_every_documented_boundary(self):
        # R = 1 (the Pearson case), xi = 0 (checks on non-singular data), lambda = 0 and 1, sum reduction
        for kw in ({"radius": 1}, {"xi": 0.0}, {"ce_weight": 0}, {"ce_weight": 1}, {"reduction": "sum"}):
            m = RMILoss(**kw)
            assert all(getattr(m, k) == v for k, v in kw.items())
