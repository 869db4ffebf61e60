"""Tests of pixelbook.std: soft threshold dynamics and its volume and star-shape variants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelbook import std as S

f64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _conv(u, k):
    """Inline depthwise zero-padded convolution (the reference for the package's)."""
    C = u.shape[1]
    return F.conv2d(u, k[None, None].expand(C, 1, *k.shape), padding=k.shape[-1] // 2, groups=C)


def _disk(n, r, center=None):
    c = (n - 1) / 2 if center is None else center
    yy, xx = torch.meshgrid(torch.arange(n, dtype=f64), torch.arange(n, dtype=f64), indexing="ij")
    return ((yy - c) ** 2 + (xx - c) ** 2 <= r * r).to(f64)


class TestGaussianKernel:
    def test_sums_to_one_and_is_point_symmetric(self):
        for psd in (False, True):
            for size, sigma in ((3, 0.5), (7, 1.0), (7, 5.0), (9, 2.0)):
                k = S.gaussian_kernel(size, sigma, psd=psd, dtype=f64)
                assert k.shape == (size, size)
                torch.testing.assert_close(k.sum(), torch.tensor(1.0, dtype=f64))
                torch.testing.assert_close(k, k.flip(0, 1))

    def test_plain_kernel_equals_sampled_gaussian(self):
        r = torch.arange(5, dtype=f64) - 2
        g = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * 1.3**2))
        torch.testing.assert_close(S.gaussian_kernel(5, 1.3, dtype=f64), g / g.sum())

    def test_psd_kernel_is_autocorrelation_of_half_width_gaussian(self):
        r = torch.arange(4, dtype=f64) - 1.5
        g = torch.exp(-r**2 / (2 * (2.0 / math.sqrt(2)) ** 2))
        g = g / g.sum()
        k1 = torch.tensor([sum(g[j] * g[j + a] for j in range(4 - a)) for a in (3, 2, 1, 0)] +
                          [sum(g[j] * g[j + a] for j in range(4 - a)) for a in (1, 2, 3)], dtype=f64)
        torch.testing.assert_close(S.gaussian_kernel(7, 2.0, psd=True, dtype=f64), k1[:, None] * k1[None])

    def test_per_class_sigma_gives_one_kernel_per_class(self):
        k = S.gaussian_kernel(5, torch.tensor([0.5, 1.0, 2.0], dtype=f64))
        assert k.shape == (3, 5, 5)
        torch.testing.assert_close(k[1], S.gaussian_kernel(5, 1.0, dtype=f64))

    def test_gradcheck_in_sigma(self):
        for psd in (False, True):
            sigma = torch.tensor(1.3, dtype=f64, requires_grad=True)
            assert torch.autograd.gradcheck(lambda s: S.gaussian_kernel(5, s, psd=psd), (sigma,))

    def test_bad_arguments_name_themselves(self):
        with pytest.raises(ValueError, match="`size`: expected an odd"):
            S.gaussian_kernel(6, 1.0)
        with pytest.raises(ValueError, match=r"`sigma`: expected a finite number in \(0, inf\)"):
            S.gaussian_kernel(7, 0.0)
        with pytest.raises(ValueError, match="`sigma`: expected values > 0"):
            S.gaussian_kernel(7, torch.tensor([1.0, -1.0]))


class TestKernelSpectrum:
    def test_equals_dft_of_centred_zero_padded_kernel(self):
        k = S.gaussian_kernel(7, 5.0, dtype=f64)
        K = torch.zeros(32, 32, dtype=f64)
        K[:7, :7] = k
        K = torch.roll(K, (-3, -3), (0, 1))
        dft = torch.fft.fft2(K)
        assert float(dft.imag.abs().max()) < 1e-14
        torch.testing.assert_close(S.kernel_spectrum(k, 32), dft.real)

    def test_paper_kernel_is_not_psd_and_stripes_witness_it(self):
        k = S.gaussian_kernel(S.PAPER_KERNEL_SIZE, S.PAPER_SIGMA, dtype=f64)
        assert float(S.kernel_spectrum(k).min()) == pytest.approx(-0.19665, abs=1e-4)
        assert not S.is_psd(k)
        # v = (-1)^col: <v, k*v> < 0, so R(u) = <u, k*(1-u)> is strictly convex along v
        v = ((-1.0) ** torch.arange(32, dtype=f64)).expand(32, 32)[None, None].contiguous()
        assert float((v * _conv(v, k)).sum()) < 0

    def test_default_and_psd_kernels_are_psd(self):
        assert S.is_psd(S.gaussian_kernel(S.DEFAULT_KERNEL_SIZE, S.DEFAULT_SIGMA, dtype=f64))
        assert S.is_psd(S.gaussian_kernel(7, 1.1, dtype=f64)) and not S.is_psd(S.gaussian_kernel(7, 1.2, dtype=f64))
        for sigma in (1.0, 2.0, 5.0, 20.0):
            assert S.is_psd(S.gaussian_kernel(7, sigma, psd=True, dtype=f64))

    @settings(max_examples=20, deadline=None)
    @given(st.integers(0, 10_000))
    def test_quadratic_form_of_psd_kernel_is_nonnegative(self, seed):
        v = torch.randn(1, 1, 12, 10, generator=_gen(seed), dtype=f64)
        k = S.gaussian_kernel(7, 5.0, psd=True, dtype=f64)
        assert float((v * _conv(v, k)).sum()) >= -1e-12


class TestLengthSurrogate:
    def test_equals_brute_force_double_sum(self):
        g = _gen(0)
        u = torch.softmax(torch.randn(1, 2, 6, 5, generator=g, dtype=f64), 1)
        k = S.gaussian_kernel(3, 0.8, dtype=f64)
        H, W = 6, 5
        expected = torch.zeros(2, dtype=f64)
        for i in range(2):
            for y in range(H):
                for x in range(W):
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            if 0 <= y + dy < H and 0 <= x + dx < W:
                                expected[i] += u[0, i, y, x] * k[dy + 1, dx + 1] * (1 - u[0, i, y + dy, x + dx])
        torch.testing.assert_close(S.length_surrogate(u, k)[0], expected)

    @pytest.mark.parametrize("sigma", [2.0, 4.0])
    def test_disk_gives_sigma_over_sqrt_2pi_times_perimeter(self, sigma):
        n, r = 200, 60
        u1 = _disk(n, r)
        u = torch.stack([u1, 1 - u1])[None]
        k = S.gaussian_kernel(int(2 * math.ceil(6 * sigma) + 1), sigma, dtype=f64)
        per_class = S.length_surrogate(u, k)[0]
        torch.testing.assert_close(per_class[0], per_class[1])  # symmetric kernel
        estimate = float(per_class[0]) * math.sqrt(2 * math.pi) / sigma
        assert estimate == pytest.approx(2 * math.pi * r, rel=0.02)

    def test_one_hot_constant_map_has_zero_length(self):
        u = torch.zeros(1, 3, 8, 8)
        u[:, 1] = 1
        assert float(S.length_surrogate(u, S.gaussian_kernel()).abs().max()) == 0.0

    def test_rejects_asymmetric_and_even_kernels(self):
        u = torch.rand(1, 2, 8, 8)
        with pytest.raises(ValueError, match="`kernel`: expected a point-symmetric"):
            S.length_surrogate(u, torch.rand(3, 3) + torch.eye(3))
        with pytest.raises(ValueError, match="`kernel`: expected an odd size"):
            S.length_surrogate(u, torch.ones(4, 4) / 16)


class TestStdEnergy:
    def test_softmax_attains_minus_log_sum_exp_when_lam_is_zero(self):
        o = torch.randn(2, 4, 5, 6, generator=_gen(1), dtype=f64)
        for eps in (0.1, 0.5, 2.0):
            e = S.std_energy(torch.softmax(o / eps, 1), o, lam=0.0, epsilon=eps)
            torch.testing.assert_close(e, -(eps * torch.logsumexp(o / eps, 1)).sum((1, 2)))

    def test_softmax_beats_random_simplex_points(self):
        o = torch.randn(1, 3, 4, 4, generator=_gen(2), dtype=f64)
        best = S.std_energy(torch.softmax(o / 0.7, 1), o, lam=0.0, epsilon=0.7)
        others = torch.distributions.Dirichlet(torch.ones(3, dtype=f64)).sample((200, 4, 4)).permute(0, 3, 1, 2)
        assert bool((S.std_energy(others, o.expand(200, -1, -1, -1), lam=0.0, epsilon=0.7) > best).all())

    def test_subgradient_formula_equals_autograd(self):
        """p = lam * k * (1 - 2u) is the gradient of R(u) = lam <u, k*(1-u)> [STD, App. A]."""
        u = torch.rand(2, 3, 7, 6, generator=_gen(3), dtype=f64, requires_grad=True)
        k = S.gaussian_kernel(5, 1.5, dtype=f64)
        lam = 0.8
        R = lam * S.length_surrogate(u, k).sum()
        (grad,) = torch.autograd.grad(R, u)
        torch.testing.assert_close(grad, lam * _conv(1 - 2 * u.detach(), k), rtol=0, atol=1e-12)


class TestSoftThresholdDynamics:
    @settings(max_examples=10, deadline=None)
    @given(st.integers(1, 3), st.integers(2, 5), st.integers(0, 6), st.sampled_from([0.05, 0.3, 1.0, 3.0]),
           st.integers(0, 10_000))
    def test_outputs_lie_on_the_simplex(self, n, c, T, eps, seed):
        o = 5 * torch.randn(n, c, 9, 7, generator=_gen(seed))
        for kwargs in ({}, {"volumes": torch.full((n, c), 63.0 / c)}, {"center": torch.tensor([4.0, 3.0])}):
            u = S.soft_threshold_dynamics(o, iterations=T, lam=1.5, epsilon=eps, **kwargs)
            assert bool(torch.isfinite(u).all()) and float(u.min()) >= 0
            torch.testing.assert_close(u.sum(1), torch.ones(n, 9, 7), rtol=0, atol=1e-5)

    def test_lam_zero_is_softmax_for_any_iterations(self):
        o = torch.randn(2, 3, 8, 8, generator=_gen(4), dtype=f64)
        for T in (0, 1, 5):
            torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=T, lam=0.0, epsilon=0.3),
                                       torch.softmax(o / 0.3, 1), rtol=0, atol=1e-12)

    def test_zero_iterations_is_softmax(self):
        o = torch.randn(1, 2, 8, 8, generator=_gen(5))
        torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=0, lam=2.0, epsilon=0.5),
                                   torch.softmax(o / 0.5, 1))

    def test_first_step_equals_inline_formula(self):
        o = torch.randn(2, 3, 8, 8, generator=_gen(6), dtype=f64)
        k = S.gaussian_kernel(7, 1.0, dtype=f64)
        u0 = torch.softmax(o / 0.4, 1)
        u1 = torch.softmax((o - 1.2 * _conv(1 - 2 * u0, k)) / 0.4, 1)
        torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=1, lam=1.2, epsilon=0.4, kernel=k), u1)

    @settings(max_examples=10, deadline=None)
    @given(st.integers(0, 10_000), st.floats(0.01, 1.0), st.floats(0.5, 5.0), st.floats(0.5, 3.0))
    def test_energy_never_increases_with_a_psd_kernel(self, seed, eps, lam, scale):
        """Theorem 3.1 [STD]: energy descent, for a PSD kernel."""
        o = scale * torch.randn(2, 3, 10, 10, generator=_gen(seed), dtype=f64)
        k = S.gaussian_kernel(7, 2.0, psd=True, dtype=f64)
        _, E = S.soft_threshold_dynamics(o, iterations=15, lam=lam, epsilon=eps, kernel=k, return_energies=True)
        assert E.shape == (16, 2)
        assert bool((E[1:] <= E[:-1] + 1e-10 * E[:-1].abs().clamp_min(1)).all())

    def test_small_epsilon_limit_is_the_ictm_threshold_step(self):
        """As eps -> 0 one step is u = onehot(argmax(o - lam k*(1 - 2 onehot(argmax o)))) [STD, Remark 1]."""
        o = torch.randn(1, 2, 16, 16, generator=_gen(7), dtype=f64)
        k = S.gaussian_kernel(5, 1.0, dtype=f64)
        hard0 = F.one_hot(o.argmax(1), 2).permute(0, 3, 1, 2).to(f64)
        score = o - 0.7 * _conv(1 - 2 * hard0, k)
        u = S.soft_threshold_dynamics(o, iterations=1, lam=0.7, epsilon=1e-4, kernel=k)
        margin = (score[:, 0] - score[:, 1]).abs()
        clear = (margin > 1e-2) & ((o[:, 0] - o[:, 1]).abs() > 1e-2)
        assert bool((u.argmax(1) == score.argmax(1))[clear].all())
        assert float((u - F.one_hot(score.argmax(1), 2).permute(0, 3, 1, 2))[:, :, clear[0]].abs().max()) < 1e-6

    def test_output_modes_agree(self):
        o = torch.randn(2, 3, 8, 8, generator=_gen(8))
        kw = dict(iterations=4, lam=1.0, epsilon=0.3)
        probs = S.soft_threshold_dynamics(o, **kw)
        torch.testing.assert_close(S.soft_threshold_dynamics(o, output="log_probs", **kw).exp(), probs)
        torch.testing.assert_close(torch.softmax(S.soft_threshold_dynamics(o, output="logits", **kw), 1), probs)

    def test_reduces_length_and_components_on_a_noisy_disk(self):
        gt = _disk(32, 9).float()
        v = gt + 0.6 * torch.randn(32, 32, generator=_gen(9))
        o = torch.stack([-0.5 * v**2, -0.5 * (v - 1) ** 2])[None]
        soft = o.argmax(1)
        stdl = S.soft_threshold_dynamics(o, lam=1.0, epsilon=0.5).argmax(1)
        assert int(S.boundary_length(stdl)) < int(S.boundary_length(soft)) / 3
        assert int(S.count_components(stdl)) < int(S.count_components(soft)) / 3

    def test_gradcheck_std_float64(self):
        o = torch.randn(1, 2, 6, 6, generator=_gen(10), dtype=f64, requires_grad=True)
        lam = torch.tensor(0.9, dtype=f64, requires_grad=True)
        eps = torch.tensor(0.6, dtype=f64, requires_grad=True)
        sig = torch.tensor(1.1, dtype=f64, requires_grad=True)
        fn = lambda o, lam, eps, sig: S.soft_threshold_dynamics(  # noqa: E731
            o, iterations=3, lam=lam, epsilon=eps, kernel=S.gaussian_kernel(5, sig))
        assert torch.autograd.gradcheck(fn, (o, lam, eps, sig), fast_mode=True)

    def test_gradcheck_volume_float64(self):
        o = torch.randn(1, 3, 5, 5, generator=_gen(11), dtype=f64, requires_grad=True)
        V = torch.tensor([[10.0, 8.0, 7.0]], dtype=f64, requires_grad=True)
        fn = lambda o, V: S.soft_threshold_dynamics(  # noqa: E731
            o, iterations=3, lam=0.8, epsilon=0.5, volumes=V, sinkhorn_iterations=2)
        assert torch.autograd.gradcheck(fn, (o, V), fast_mode=True)

    def test_gradcheck_star_float64(self):
        o = torch.randn(1, 2, 6, 6, generator=_gen(12), dtype=f64, requires_grad=True)
        c = torch.tensor([[2.5, 3.0]], dtype=f64)
        fn = lambda o: S.soft_threshold_dynamics(o, iterations=4, lam=0.8, epsilon=0.5, center=c)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (o,), fast_mode=True)

    def test_bad_input_names_the_argument(self):
        o = torch.randn(1, 2, 8, 8)
        with pytest.raises(ValueError, match="`logits`: expected shape"):
            S.soft_threshold_dynamics(o[0])
        with pytest.raises(ValueError, match="`logits`: expected finite"):
            S.soft_threshold_dynamics(torch.full((1, 2, 4, 4), float("nan")))
        with pytest.raises(ValueError, match="`logits`: expected C >= 2"):
            S.soft_threshold_dynamics(o[:, :1])
        with pytest.raises(ValueError, match=r"`epsilon`: expected a finite number in \(0, inf\)"):
            S.soft_threshold_dynamics(o, epsilon=0.0)
        with pytest.raises(ValueError, match=r"`lam`: expected a finite number in \[0, inf\)"):
            S.soft_threshold_dynamics(o, lam=-1.0)
        with pytest.raises(ValueError, match=r"`iterations`: expected an integer in \[0, inf\]"):
            S.soft_threshold_dynamics(o, iterations=-1)
        with pytest.raises(ValueError, match="`output`: expected one of"):
            S.soft_threshold_dynamics(o, output="argmax")
        with pytest.raises(ValueError, match="`kernel`: expected C=1 or C=2"):
            S.soft_threshold_dynamics(o, kernel=S.gaussian_kernel(3, torch.ones(3)))


class TestVolumeConstraint:
    def test_sinkhorn_meets_volumes(self):
        o = 3 * torch.randn(2, 3, 12, 12, generator=_gen(13), dtype=f64)
        V = torch.tensor([[80.0, 40.0, 24.0], [10.0, 100.0, 34.0]], dtype=f64)
        for eps in (0.25, 1.0):
            u = S.soft_threshold_dynamics(o, iterations=2, lam=0.5, epsilon=eps, volumes=V, sinkhorn_iterations=500)
            torch.testing.assert_close(u.sum((2, 3)), V, rtol=1e-6, atol=0)

    def test_volume_error_with_one_sinkhorn_step_shrinks_over_iterations(self):
        o = 3 * torch.randn(2, 2, 16, 16, generator=_gen(14), dtype=f64)
        V = torch.tensor([[200.0, 56.0], [100.0, 156.0]], dtype=f64)
        err = [float(((S.soft_threshold_dynamics(o, iterations=T, lam=0.5, epsilon=0.5, volumes=V).sum((2, 3)) - V)
                      .abs() / V).max()) for T in (1, 10, 30)]
        assert err[2] < err[1] < err[0]

    def test_primal_equals_dual_without_the_papers_constant(self):
        """Prop. 3 [STD]: the dual value has no -|Omega| eps term for the entropy eps<u, ln u>."""
        o = torch.randn(1, 3, 6, 5, generator=_gen(15), dtype=f64)
        V = torch.tensor([[12.0, 10.0, 8.0]], dtype=f64)
        eps = 0.7
        u = S.soft_threshold_dynamics(o, iterations=1, lam=0.0, epsilon=eps, volumes=V, sinkhorn_iterations=3000)
        primal = float(S.std_energy(u, o, lam=0.0, epsilon=eps))
        q = (eps * u.log() - o).mean((2, 3), keepdim=True)  # the dual variable, up to a constant
        dual = float((q[0, :, 0, 0] * V[0]).sum() - eps * torch.logsumexp((o + q) / eps, 1).sum())
        assert primal == pytest.approx(dual, abs=1e-8)
        assert primal - (dual - 30 * eps) == pytest.approx(30 * eps, abs=1e-8)  # the paper's (9) is off by |Omega| eps

    @pytest.mark.parametrize("fraction", [0.5, 0.05, 0.01])
    def test_volume_std_default_meets_volumes_to_half_a_pixel(self, fraction):
        # the layer's default (adaptive Sinkhorn) meets every volume within its documented 0.5 px,
        # including a class at 1 % of a 64 x 64 image (41 px), where the paper's t2 = 1 misses by > 10x
        g = torch.Generator().manual_seed(0)
        o = 3 * torch.randn(4, 2, 64, 64, generator=g)
        fg = 64 * 64 * fraction
        V = torch.tensor([[64 * 64 - fg, fg]]).repeat(4, 1)
        u = S.VolumeSTD()(o, V)
        assert float((u.sum((2, 3)) - V).abs().max()) <= 0.5
        if fraction == 0.01:
            u1 = S.VolumeSTD(sinkhorn_iterations=1)(o, V)
            assert float(((u1.sum((2, 3)) - V).abs() / V).max()) > 10

    def test_adaptive_sinkhorn_warns_when_the_cap_is_too_small(self, monkeypatch):
        from pixelbook.std import dynamics
        monkeypatch.setattr(dynamics, "MAX_SINKHORN_ITERATIONS", 1)
        o = 3 * torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(1))
        V = torch.tensor([[1014.0, 10.0]])
        with pytest.warns(RuntimeWarning, match="volume_tol=0.5 px"):
            S.soft_threshold_dynamics(o, iterations=2, volumes=V, sinkhorn_iterations=None)

    def test_log_domain_sinkhorn_is_finite_at_tiny_epsilon(self):
        o = 50 * torch.randn(2, 3, 8, 8, generator=_gen(16))
        V = torch.tensor([[30.0, 20.0, 14.0]] * 2)
        u = S.soft_threshold_dynamics(o, iterations=20, lam=1.0, epsilon=1e-3, volumes=V, sinkhorn_iterations=5)
        assert bool(torch.isfinite(u).all())

    def test_unmeetable_volumes_raise(self):
        o = torch.randn(1, 3, 4, 4)
        with pytest.raises(ValueError, match="`volumes`: expected every class to have a positive volume.*class 2"):
            S.soft_threshold_dynamics(o, volumes=torch.tensor([[10.0, 6.0, 0.0]]))
        with pytest.raises(ValueError, match=r"`volumes`: expected each image's volumes to sum to H\*W = 16"):
            S.soft_threshold_dynamics(o, volumes=torch.tensor([[10.0, 6.0, 5.0]]))
        with pytest.raises(ValueError, match="`volumes`: expected C=3"):
            S.soft_threshold_dynamics(o, volumes=torch.tensor([[10.0, 6.0]]))


class TestStarConstraint:
    def _scene(self, noise=0.2, seed=17):
        gt = _disk(32, 9, center=15.0).float()
        v = gt.clone()
        v[1:7, 1:7] = 1.0  # a 6x6 distractor blob, off the object's rays
        v = v + noise * torch.randn(32, 32, generator=_gen(seed))
        o = torch.stack([-0.5 * v**2, -0.5 * (v - 1) ** 2])[None]
        return o, gt.long()[None], torch.tensor([[15.0, 15.0]])

    def test_violations_fall_with_iterations(self):
        o, _, c = self._scene()
        viol = [int(S.star_violations(S.soft_threshold_dynamics(o, iterations=T, lam=1.0, epsilon=0.5, center=c)
                                      .argmax(1) == 1, c)) for T in (0, 3, 10, 50)]
        assert viol[3] < viol[2] < viol[1] < viol[0]
        assert viol[3] <= 5

    def test_star_prior_removes_the_off_ray_distractor(self):
        o, gt, c = self._scene()
        plain = S.soft_threshold_dynamics(o, iterations=50, lam=1.0, epsilon=0.5).argmax(1)
        star = S.soft_threshold_dynamics(o, iterations=50, lam=1.0, epsilon=0.5, center=c).argmax(1)
        assert int(plain[0, 1:7, 1:7].sum()) > 30  # the length prior alone keeps the blob
        assert not bool(star[0, 1:7, 1:7].any())
        iou = float(((star == 1) & (gt == 1)).sum() / ((star == 1) | (gt == 1)).sum())
        assert iou >= 0.95

    def test_centre_outside_the_image_raises(self):
        o = torch.randn(2, 2, 8, 8)
        with pytest.raises(ValueError, match=r"`center`: expected \(row, col\) inside the image"):
            S.soft_threshold_dynamics(o, center=torch.tensor([[3.0, 3.0], [3.0, 8.5]]))
        with pytest.raises(ValueError, match="`center`: expected N=2"):
            S.soft_threshold_dynamics(o, center=torch.zeros(3, 2))
        with pytest.raises(ValueError, match=r"`star_class`: expected a class index in \[0, 2\)"):
            S.soft_threshold_dynamics(o, center=torch.tensor([3.0, 3.0]), star_class=2)


class TestStarDirections:
    def test_unit_vectors_towards_the_centre(self):
        s = S.star_directions(torch.tensor([[2.0, 1.0]]), 4, 5, dtype=f64)
        norms = s.norm(dim=1)[0]
        assert norms[2, 1] == 0
        mask = torch.ones(4, 5, dtype=torch.bool)
        mask[2, 1] = False
        torch.testing.assert_close(norms[mask], torch.ones(19, dtype=f64))
        torch.testing.assert_close(s[0, :, 0, 1], torch.tensor([1.0, 0.0], dtype=f64))  # straight down to c
        torch.testing.assert_close(s[0, :, 2, 4], torch.tensor([0.0, -1.0], dtype=f64))  # straight left


class TestPriorsFromData:
    def test_volumes_from_labels_counts_and_shares_out_ignored_pixels(self):
        lab = torch.tensor([[[0, 0, 1, 2], [255, 255, 2, 2]]])
        torch.testing.assert_close(S.volumes_from_labels(lab, 3, ignore_index=255),
                                   torch.tensor([[2.0, 1.0, 3.0]]) * 8 / 6)
        torch.testing.assert_close(S.volumes_from_labels(lab.clamp(max=2), 3), torch.tensor([[2.0, 1.0, 5.0]]))


class TestSTDLayer:
    def test_module_equals_function(self):
        o = torch.randn(2, 3, 10, 10, generator=_gen(20))
        head = S.STD(iterations=4, lam=0.7, epsilon=0.3, kernel_size=5, sigma=1.0)
        torch.testing.assert_close(head(o), S.soft_threshold_dynamics(
            o, iterations=4, lam=0.7, epsilon=0.3, kernel=S.gaussian_kernel(5, 1.0)))

    def test_defaults_are_the_papers_except_the_psd_kernel(self):
        head = S.STD()
        assert (head.iterations, head.kernel_size) == (10, 7)
        assert (float(head.lam), float(head.epsilon)) == pytest.approx((1.0, 0.1))
        assert float(head.sigma) == S.DEFAULT_SIGMA and S.is_psd(head.kernel())
        assert S.StarSTD().iterations == 50 and S.VolumeSTD().sinkhorn_iterations is None

    def test_learnable_parameters_get_gradients_and_stay_positive(self):
        head = S.STD(iterations=3, lam=0.5, epsilon=0.5, learnable=("lam", "epsilon", "sigma"))
        assert {n for n, _ in head.named_parameters()} == {"log_lam", "log_epsilon", "log_sigma"}
        o = torch.randn(2, 2, 8, 8, generator=_gen(21))
        F.nll_loss(head(o).clamp_min(1e-6).log(), torch.randint(0, 2, (2, 8, 8), generator=_gen(22))).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad) and p.grad != 0 for p in head.parameters())
        assert min(float(head.lam.detach()), float(head.epsilon.detach()), float(head.sigma.detach())) > 0

    def test_fixed_module_has_no_parameters_and_saves_its_hyperparameters(self):
        head = S.STD(lam=0.75)
        assert list(head.parameters()) == []
        other = S.STD()
        other.load_state_dict(head.state_dict())
        assert float(other.lam) == 0.75

    def test_gradcheck_float64(self):
        head = S.STD(iterations=3, lam=0.8, epsilon=0.5, kernel_size=5)
        o = torch.randn(1, 2, 6, 6, generator=_gen(23), dtype=f64, requires_grad=True)
        assert torch.autograd.gradcheck(head, (o,), fast_mode=True)

    def test_bad_construction(self):
        with pytest.raises(ValueError, match="`learnable`: expected one of"):
            S.STD(learnable=("kernel",))
        with pytest.raises(ValueError, match="`lam`: a learnable lam"):
            S.STD(lam=0.0, learnable=("lam",))
        with pytest.raises(ValueError, match="`kernel_size`: expected an odd size"):
            S.STD(kernel_size=4)


class TestVolumeSTDLayer:
    def test_module_equals_function_and_gradcheck(self):
        head = S.VolumeSTD(iterations=3, lam=0.8, epsilon=0.5, kernel_size=3, sinkhorn_iterations=2)
        o = torch.randn(1, 2, 5, 5, generator=_gen(24), dtype=f64, requires_grad=True)
        V = torch.tensor([[15.0, 10.0]], dtype=f64)
        torch.testing.assert_close(head(o, V), S.soft_threshold_dynamics(
            o, iterations=3, lam=0.8, epsilon=0.5, kernel=S.gaussian_kernel(3, 1.0, dtype=f64), volumes=V,
            sinkhorn_iterations=2))
        assert torch.autograd.gradcheck(lambda o: head(o, V), (o,), fast_mode=True)


class TestStarSTDLayer:
    def test_module_equals_function_and_gradcheck(self):
        head = S.StarSTD(iterations=4, lam=0.8, epsilon=0.5, kernel_size=3, star_class=0)
        o = torch.randn(1, 2, 6, 6, generator=_gen(25), dtype=f64, requires_grad=True)
        c = torch.tensor([[3.0, 2.0]])
        torch.testing.assert_close(head(o, c), S.soft_threshold_dynamics(
            o, iterations=4, lam=0.8, epsilon=0.5, kernel=S.gaussian_kernel(3, 1.0, dtype=f64), center=c,
            star_class=0))
        assert torch.autograd.gradcheck(lambda o: head(o, c), (o,), fast_mode=True)


# --------------------------------------------------------------------------------------------------
# The documented contract, case by case (written against the mutation run's survivors; each value
# comes from the paper's update written inline, a closed form, or the docstring's stated default).

def _step(o, u, k, lam, eps):
    """One STD step written from [STD, Eq. 7] with a per-class kernel ``k`` ``(C, K, K)`` or one ``(K, K)``."""
    if k.ndim == 2:
        k = k[None].expand(o.shape[1], *k.shape)
    p = lam * F.conv2d(1 - 2 * u, k[:, None], padding=k.shape[-1] // 2, groups=o.shape[1])
    return o - p


class TestDynamicsContract:
    def test_per_class_kernels_follow_eq_7_class_by_class(self):
        o = torch.randn(2, 3, 9, 8, generator=_gen(40), dtype=f64)
        k = S.gaussian_kernel(5, torch.tensor([0.6, 1.0, 1.7], dtype=f64))
        u0 = torch.softmax(o / 0.4, 1)
        u1 = torch.softmax(_step(o, u0, k, 0.9, 0.4) / 0.4, 1)
        u2 = torch.softmax(_step(o, u1, k, 0.9, 0.4) / 0.4, 1)
        torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=2, lam=0.9, epsilon=0.4, kernel=k), u2,
                                   rtol=0, atol=1e-12)

    def test_default_kernel_is_gaussian_7_sigma_1(self):
        o = torch.randn(1, 2, 10, 10, generator=_gen(41), dtype=f64)
        k = S.gaussian_kernel(7, 1.0, dtype=f64)
        torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=2, lam=1.3, epsilon=0.5),
                                   S.soft_threshold_dynamics(o, iterations=2, lam=1.3, epsilon=0.5, kernel=k))
        u = torch.softmax(o, 1)
        torch.testing.assert_close(S.std_energy(u, o, lam=1.3, epsilon=0.5), S.std_energy(u, o, lam=1.3, epsilon=0.5, kernel=k))

    def test_documented_defaults_are_the_papers(self):
        # T = 10, lam = 1, eps = 0.1 [STD, Sec. 3.6, Tables 1-2]
        assert (S.PAPER_ITERATIONS, S.PAPER_LAM, S.PAPER_EPSILON, S.PAPER_STAR_ITERATIONS) == (10, 1.0, 0.1, 50)
        o = torch.randn(1, 2, 8, 8, generator=_gen(42), dtype=f64)
        k = S.gaussian_kernel(7, 1.0, dtype=f64)
        u = torch.softmax(o / 0.1, 1)
        for _ in range(10):
            u = torch.softmax(_step(o, u, k, 1.0, 0.1) / 0.1, 1)
        torch.testing.assert_close(S.soft_threshold_dynamics(o), u, rtol=0, atol=1e-10)
        v = torch.softmax(o, 1)
        torch.testing.assert_close(S.std_energy(v, o), S.std_energy(v, o, lam=1.0, epsilon=0.1, kernel=k))

    def test_energy_is_eq_7_term_by_term_with_0_log_0_as_0(self):
        o = torch.randn(2, 3, 6, 5, generator=_gen(43), dtype=f64)
        u = torch.softmax(3 * torch.randn(2, 3, 6, 5, generator=_gen(44), dtype=f64), 1)
        u[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0], dtype=f64)  # exact zeros: 0 ln 0 = 0
        k = S.gaussian_kernel(3, 0.8, dtype=f64)
        lam, eps = 0.7, 0.3
        ulogu = torch.where(u > 0, u * u.clamp_min(1e-300).log(), torch.zeros_like(u))
        length = (u * _conv(1 - u, k)).sum((1, 2, 3))
        expected = -(o * u).sum((1, 2, 3)) + eps * ulogu.sum((1, 2, 3)) + lam * length
        torch.testing.assert_close(S.std_energy(u, o, lam=lam, epsilon=eps, kernel=k), expected, rtol=1e-12, atol=1e-12)

    def test_energy_bad_input(self):
        u = torch.full((1, 2, 4, 4), 0.5)
        with pytest.raises(ValueError, match=r"`lam`: expected a finite number in \[0, inf\)"):
            S.std_energy(u, u, lam=-0.1)
        with pytest.raises(ValueError, match=r"`epsilon`: expected a finite number in \(0, inf\)"):
            S.std_energy(u, u, epsilon=0)
        with pytest.raises(ValueError, match="`logits`: expected W=4"):
            S.std_energy(u, u[..., :3])

    def test_energies_are_those_of_the_iterates(self):
        o = torch.randn(2, 2, 8, 8, generator=_gen(45), dtype=f64)
        k = S.gaussian_kernel(5, 1.0, dtype=f64)
        out, E = S.soft_threshold_dynamics(o, iterations=3, lam=0.8, epsilon=0.5, kernel=k, return_energies=True)
        u, expected = torch.softmax(o / 0.5, 1), []
        for _ in range(4):
            expected.append(S.std_energy(u, o, lam=0.8, epsilon=0.5, kernel=k))
            u = torch.softmax(_step(o, u, k, 0.8, 0.5) / 0.5, 1)
        torch.testing.assert_close(E, torch.stack(expected), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out, S.soft_threshold_dynamics(o, iterations=3, lam=0.8, epsilon=0.5, kernel=k))

    def test_logits_output_are_the_final_scores(self):
        # "final scores whose softmax is u": z / eps with z = o - p (no constraint)
        o = torch.randn(1, 3, 8, 8, generator=_gen(46), dtype=f64)
        k = S.gaussian_kernel(3, 1.0, dtype=f64)
        torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=0, epsilon=0.25, output="logits"), o / 0.25)
        u0 = torch.softmax(o / 0.25, 1)
        z = _step(o, u0, k, 0.6, 0.25)
        torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=1, lam=0.6, epsilon=0.25, kernel=k,
                                                             output="logits"), z / 0.25, rtol=0, atol=1e-10)
        torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=1, lam=0.6, epsilon=0.25, kernel=k,
                                                             output="log_probs"), torch.log_softmax(z / 0.25, 1))

    def test_init_is_the_starting_point(self):
        o = torch.randn(1, 2, 8, 8, generator=_gen(47), dtype=f64)
        k = S.gaussian_kernel(3, 1.0, dtype=f64)
        init = torch.zeros(1, 2, 8, 8, dtype=f64)
        init[:, 0, :4], init[:, 1, 4:] = 1, 1  # a binary shape (the MBO limit's start)
        assert torch.equal(S.soft_threshold_dynamics(o, iterations=0, init=init), init)
        u1 = torch.softmax(_step(o, init, k, 1.1, 0.3) / 0.3, 1)
        torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=1, lam=1.1, epsilon=0.3, kernel=k, init=init),
                                   u1, rtol=0, atol=1e-12)
        # float32 init with float64 logits: u comes back in the logits' dtype
        assert S.soft_threshold_dynamics(o, iterations=0, init=init.float()).dtype == f64

    def test_bad_init(self):
        o = torch.randn(1, 2, 4, 4)
        ok = torch.full((1, 2, 4, 4), 0.5)
        with pytest.raises(ValueError, match="`init`: expected H=4"):
            S.soft_threshold_dynamics(o, init=ok[:, :, :3])
        with pytest.raises(ValueError, match="`init`: expected finite"):
            S.soft_threshold_dynamics(o, init=torch.full_like(ok, float("nan")))
        with pytest.raises(ValueError, match="`init`"):
            S.soft_threshold_dynamics(o, init=torch.stack([ok[:, 0] + 0.7, ok[:, 1] - 0.7], 1))  # -0.2: outside [0, 1]
        with pytest.raises(ValueError, match="`init`: expected points of the simplex"):
            S.soft_threshold_dynamics(o, init=torch.full_like(ok, 0.4))
        # within the documented tolerances (1e-5 above 1, 1e-4 off the simplex) it is accepted
        S.soft_threshold_dynamics(o, iterations=0, init=torch.stack([ok[:, 0] + 0.5 + 5e-6, ok[:, 1] - 0.5], 1)
                                  .clamp_min(0))

    def test_other_bad_options(self):
        o = torch.randn(1, 2, 4, 4)
        with pytest.raises(TypeError, match="`logits`: expected a floating-point tensor"):
            S.soft_threshold_dynamics(o.long())
        with pytest.raises(ValueError, match=r"`sinkhorn_iterations`: expected an integer in \[1, inf\]"):
            S.soft_threshold_dynamics(o, sinkhorn_iterations=0)
        with pytest.raises(ValueError, match=r"`volume_tol`: expected a finite number in \(0, inf\)"):
            S.soft_threshold_dynamics(o, volume_tol=0.0)
        with pytest.raises(ValueError, match=r"`tau`: expected a finite number in \(0, inf\)"):
            S.soft_threshold_dynamics(o, tau=-1.0)  # checked even without a centre
        with pytest.raises(ValueError, match=r"`tau`: expected a finite number in \(0, inf\)"):
            S.soft_threshold_dynamics(o, tau=0.0, center=torch.tensor([1.0, 1.0]))
        with pytest.raises(TypeError, match="`star_class`: expected an integer"):
            S.soft_threshold_dynamics(o, center=torch.tensor([1.0, 1.0]), star_class=1.0)
        with pytest.raises(ValueError, match=r"`star_class`: expected a class index in \[0, 2\) \(as in `logits`\), got -1"):
            S.soft_threshold_dynamics(o, center=torch.tensor([1.0, 1.0]), star_class=-1)

    @pytest.mark.parametrize("star_class,tau", [(1, None), (0, 0.2)])
    def test_one_star_step_is_alg_3(self, star_class, tau):
        o = torch.randn(1, 2, 7, 6, generator=_gen(48), dtype=f64)
        k = S.gaussian_kernel(3, 1.0, dtype=f64)
        c = torch.tensor([[3.0, 2.5]], dtype=f64)
        eps, lam = 0.5, 0.8
        t = eps if tau is None else tau  # tau defaults to epsilon
        s = S.star_directions(c, 7, 6, dtype=f64)
        u0 = torch.softmax(o / eps, 1)
        eta = (-t * (s * S.grad2d(u0[:, star_class:star_class + 1])).sum(1, keepdim=True)).clamp_min(0)
        z = _step(o, u0, k, lam, eps)
        z[:, star_class] -= S.div2d(eta * s)[:, 0]
        out = S.soft_threshold_dynamics(o, iterations=1, lam=lam, epsilon=eps, kernel=k, center=c,
                                        star_class=star_class, tau=tau, output="logits")
        torch.testing.assert_close(out, z / eps, rtol=0, atol=1e-10)

    def test_two_sinkhorn_steps_follow_eq_10(self):
        o = torch.randn(1, 3, 6, 6, generator=_gen(49), dtype=f64)
        k = S.gaussian_kernel(3, 1.0, dtype=f64)
        V = torch.tensor([[20.0, 10.0, 6.0]], dtype=f64)
        eps, lam = 0.5, 0.7
        z = _step(o, torch.softmax(o / eps, 1), k, lam, eps)
        q = torch.zeros(1, 3, 1, 1, dtype=f64)
        for _ in range(2):
            vol = torch.softmax((z + q) / eps, 1).sum((2, 3), keepdim=True)
            q = q + eps * (V.log()[:, :, None, None] - vol.log())
        u1 = torch.softmax((z + q) / eps, 1)
        torch.testing.assert_close(S.soft_threshold_dynamics(o, iterations=1, lam=lam, epsilon=eps, kernel=k, volumes=V,
                                                             sinkhorn_iterations=2), u1, rtol=0, atol=1e-10)

    def test_adaptive_sinkhorn_stops_at_the_tolerance(self):
        # sinkhorn_iterations=None stops as soon as every soft volume is within volume_tol: a loose
        # tolerance leaves a visible miss, a tight one meets the volumes; no warning either way
        o = 3 * torch.randn(1, 2, 16, 16, generator=_gen(50), dtype=f64)
        V = torch.tensor([[236.0, 20.0]], dtype=f64)
        kw = dict(iterations=1, lam=0.5, epsilon=0.5, volumes=V, sinkhorn_iterations=None)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loose = float((S.soft_threshold_dynamics(o, volume_tol=8.0, **kw).sum((2, 3)) - V).abs().max())
            tight = float((S.soft_threshold_dynamics(o, volume_tol=1e-6, **kw).sum((2, 3)) - V).abs().max())
            # a fixed number of steps that misses the volumes is no warning: only the adaptive cap warns
            S.soft_threshold_dynamics(o, iterations=1, epsilon=0.5, volumes=V, sinkhorn_iterations=1)
        assert tight <= 1e-6 < 0.5 < loose <= 8.0

    def test_volume_errors_name_image_and_class(self):
        o = torch.randn(2, 3, 4, 4)
        V = torch.tensor([[6.0, 5.0, 5.0], [-1.0, 9.0, 8.0]])
        with pytest.raises(ValueError, match=r"got -1 for class 0 of image 1"):
            S.soft_threshold_dynamics(o, volumes=V)
        with pytest.raises(ValueError, match=r"sum to H\*W = 16 pixels .*got 17 for image 1"):
            S.soft_threshold_dynamics(o, volumes=torch.tensor([[6.0, 5.0, 5.0], [6.0, 6.0, 5.0]]))
        with pytest.raises(TypeError, match="`volumes`: expected a floating-point tensor"):
            S.soft_threshold_dynamics(o, volumes=torch.tensor([[6, 5, 5], [6, 5, 5]]))
        with pytest.raises(ValueError, match="`volumes`: expected finite"):
            S.soft_threshold_dynamics(o, volumes=torch.tensor([[6.0, 5.0, 5.0], [6.0, float("nan"), 5.0]]))
        # shares of ignored pixels are not integers; their float32 rounding is accepted
        S.soft_threshold_dynamics(o, iterations=1, volumes=torch.tensor([[16 / 3, 16 / 3, 16 / 3]] * 2))

    def test_star_directions_batch_fractional_centre_and_dtype(self):
        c = torch.tensor([[0.0, 0.0], [1.5, 2.0]])
        s = S.star_directions(c, 3, 4)
        assert s.shape == (2, 2, 3, 4) and s.dtype == torch.float32
        torch.testing.assert_close(s[0, :, 2, 3], torch.tensor([-2.0, -3.0]) / math.sqrt(13))
        torch.testing.assert_close(s[1, :, 0, 0], torch.tensor([1.5, 2.0]) / 2.5)
        assert bool((s[0, :, 0, 0] == 0).all())
        one = S.star_directions(torch.tensor([1.5, 2.0]), 3, 4, dtype=f64)
        assert one.shape == (1, 2, 3, 4) and one.dtype == f64
        with pytest.raises(ValueError, match=r"`height`: expected an integer in \[1, inf\]"):
            S.star_directions(c, 0, 4)
        with pytest.raises(ValueError, match=r"`width`: expected an integer in \[1, inf\]"):
            S.star_directions(c, 3, 0)

    def test_volumes_from_labels_edge_cases(self):
        lab = torch.tensor([[[0, 1], [1, 1]], [[255, 255], [255, 255]]])
        with pytest.raises(ValueError, match="`labels`: image 1 has no valid pixel"):
            S.volumes_from_labels(lab, 2)
        out = S.volumes_from_labels(lab[:1], 3, ignore_index=None)
        assert out.dtype == torch.float32 and torch.equal(out, torch.tensor([[1.0, 3.0, 0.0]]))
        with pytest.raises(ValueError, match=r"`num_classes`: expected an integer in \[1, inf\]"):
            S.volumes_from_labels(lab[:1], 0)
        with pytest.raises(ValueError, match="`labels`: expected labels in"):
            S.volumes_from_labels(lab, 2, ignore_index=None)


class TestLayersContract:
    def test_bad_construction_names_the_argument(self):
        for kw, name in [({"iterations": -1}, "iterations"), ({"lam": -1.0}, "lam"), ({"epsilon": 0.0}, "epsilon"),
                         ({"sigma": 0.0}, "sigma"), ({"kernel_size": 0}, "kernel_size"), ({"output": "x"}, "output")]:
            with pytest.raises(ValueError, match=f"`{name}`"):
                S.STD(**kw)
        with pytest.raises(ValueError, match=r"`sinkhorn_iterations`: expected an integer in \[1, inf\]"):
            S.VolumeSTD(sinkhorn_iterations=0)
        with pytest.raises(ValueError, match=r"`volume_tol`: expected a finite number in \(0, inf\)"):
            S.VolumeSTD(volume_tol=0.0)
        with pytest.raises(ValueError, match=r"`star_class`: expected an integer in \[0, inf\]"):
            S.StarSTD(star_class=-1)
        with pytest.raises(ValueError, match=r"`tau`: expected a finite number in \(0, inf\)"):
            S.StarSTD(tau=0.0)

    def test_learnable_values_start_at_the_given_ones(self):
        head = S.STD(lam=0.5, epsilon=0.25, sigma=1.5, learnable=("lam", "epsilon", "sigma"))
        torch.testing.assert_close(head.log_lam.detach(), torch.tensor(math.log(0.5)))
        assert float(head.lam.detach()) == pytest.approx(0.5) and float(head.epsilon.detach()) == pytest.approx(0.25)
        assert float(head.sigma.detach()) == pytest.approx(1.5)
        torch.testing.assert_close(head.kernel(), S.gaussian_kernel(7, 1.5))
        only = S.STD(lam=0.5, learnable=("epsilon",))
        assert {n for n, _ in only.named_parameters()} == {"log_epsilon"} and float(only.lam) == 0.5

    def test_psd_kernel_and_output_reach_the_dynamics(self):
        o = torch.randn(1, 2, 9, 9, generator=_gen(51), dtype=f64)
        head = S.STD(iterations=2, lam=1.0, epsilon=0.5, kernel_size=5, sigma=1.5, psd_kernel=True, output="log_probs")
        k = S.gaussian_kernel(5, 1.5, psd=True, dtype=f64)
        assert torch.equal(head.kernel(f64), k)
        torch.testing.assert_close(head(o), S.soft_threshold_dynamics(o, iterations=2, lam=1.0, epsilon=0.5, kernel=k,
                                                                      output="log_probs"))

    def test_repr_shows_the_hyperparameters(self):
        assert repr(S.STD()) == ("STD(iterations=10, lam=1, epsilon=0.1, kernel_size=7, sigma=1, psd_kernel=False, "
                                 "learnable=(), output='probs')")
        assert repr(S.VolumeSTD()).endswith(", sinkhorn_iterations=None, volume_tol=0.5)")
        assert repr(S.StarSTD(tau=0.3)).endswith(", star_class=1, tau=0.3)")
        assert "iterations=50," in repr(S.StarSTD())

    def test_volume_layer_default_is_adaptive(self):
        o = 3 * torch.randn(1, 2, 16, 16, generator=_gen(52), dtype=f64)
        V = torch.tensor([[236.0, 20.0]], dtype=f64)
        head = S.VolumeSTD(iterations=2, epsilon=0.5, volume_tol=0.01)
        torch.testing.assert_close(head(o, V), S.soft_threshold_dynamics(
            o, iterations=2, epsilon=0.5, kernel=S.gaussian_kernel(7, 1.0, dtype=f64), volumes=V,
            sinkhorn_iterations=None, volume_tol=0.01))
        assert float((head(o, V).sum((2, 3)) - V).abs().max()) <= 0.01

    def test_star_layer_passes_tau_and_defaults_to_the_foreground(self):
        o = torch.randn(1, 2, 6, 6, generator=_gen(53), dtype=f64)
        c = torch.tensor([[2.0, 3.0]])
        head = S.StarSTD(iterations=3, epsilon=0.5, kernel_size=3, tau=0.2)
        assert head.star_class == 1
        ref = S.soft_threshold_dynamics(o, iterations=3, epsilon=0.5, kernel=S.gaussian_kernel(3, 1.0, dtype=f64),
                                        center=c, star_class=1, tau=0.2)
        torch.testing.assert_close(head(o, c), ref)
        assert not torch.allclose(S.StarSTD(iterations=3, epsilon=0.5, kernel_size=3)(o, c), ref)


class TestKernelsContract:
    def test_defaults_are_7_by_7_sigma_1_float32(self):
        k = S.gaussian_kernel()
        assert k.shape == (7, 7) and k.dtype == torch.float32
        torch.testing.assert_close(k, S.gaussian_kernel(7, 1.0, dtype=f64).float())
        assert (S.DEFAULT_KERNEL_SIZE, S.DEFAULT_SIGMA, S.PAPER_KERNEL_SIZE, S.PAPER_SIGMA) == (7, 1.0, 7, 5.0)

    def test_dtype_follows_a_tensor_sigma(self):
        assert S.gaussian_kernel(3, torch.tensor(1.0, dtype=f64)).dtype == f64
        assert S.gaussian_kernel(3, torch.tensor(1)).dtype == torch.float32  # an integer sigma: float32
        assert S.gaussian_kernel(3, torch.tensor(1.0, dtype=f64), dtype=torch.float32).dtype == torch.float32
        assert S.gaussian_kernel(3, 1.0, dtype=f64).dtype == f64

    def test_per_class_psd_kernels(self):
        k = S.gaussian_kernel(5, torch.tensor([1.0, 3.0], dtype=f64), psd=True)
        assert k.shape == (2, 5, 5)
        torch.testing.assert_close(k[1], S.gaussian_kernel(5, 3.0, psd=True, dtype=f64))

    def test_size_one_is_the_identity_kernel(self):
        assert torch.equal(S.gaussian_kernel(1, 2.0), torch.ones(1, 1))
        assert torch.equal(S.gaussian_kernel(1, 2.0, psd=True), torch.ones(1, 1))

    def test_bad_sigma_and_size(self):
        with pytest.raises(ValueError, match=r"`sigma`: expected a number, a 0-dim or a \(C,\) tensor, got shape \(2, 2\)"):
            S.gaussian_kernel(3, torch.ones(2, 2))
        with pytest.raises(ValueError, match="`sigma`: expected finite values"):
            S.gaussian_kernel(3, torch.tensor(float("nan")))
        with pytest.raises(ValueError, match="`sigma`: expected values > 0, got min 0"):
            S.gaussian_kernel(3, torch.tensor(0.0))
        with pytest.raises(ValueError, match=r"`size`: expected an integer in \[1, inf\]"):
            S.gaussian_kernel(0, 1.0)

    def test_bad_kernels_name_the_argument(self):
        u = torch.full((1, 2, 6, 6), 0.5)
        with pytest.raises(TypeError, match=r"`kernel`: expected a torch.Tensor of shape \(K, K\) or \(C, K, K\), got list"):
            S.length_surrogate(u, [[1.0]])
        with pytest.raises(ValueError, match=r"`kernel`: expected shape \(K, K\) or \(C, K, K\), got \(3,\)"):
            S.length_surrogate(u, torch.ones(3))
        with pytest.raises(ValueError, match=r"`kernel`: expected shape \(K, K\) or \(C, K, K\), got \(1, 1, 3, 3\)"):
            S.length_surrogate(u, torch.ones(1, 1, 3, 3))
        with pytest.raises(ValueError, match="`kernel`: expected K=3 \\(as in `kernel`\\), got 5"):
            S.length_surrogate(u, torch.ones(3, 5))  # not square
        with pytest.raises(TypeError, match="`kernel`: expected a floating-point tensor"):
            S.length_surrogate(u, torch.ones(3, 3, dtype=torch.long))
        with pytest.raises(ValueError, match="`kernel`: expected finite values"):
            S.length_surrogate(u, torch.full((3, 3), float("inf")))
        with pytest.raises(ValueError, match="`kernel`: expected C=1 or C=2 \\(as in `logits`\\), got 3"):
            S.length_surrogate(u, S.gaussian_kernel(3, torch.ones(3)))
        # one kernel for all classes, given as (1, K, K), is accepted
        torch.testing.assert_close(S.length_surrogate(u, S.gaussian_kernel(3, 1.0)[None]),
                                   S.length_surrogate(u, S.gaussian_kernel(3, 1.0)))

    def test_symmetry_is_checked_relative_to_the_kernel_scale(self):
        u = torch.full((1, 2, 6, 6), 0.5, dtype=f64)
        k = S.gaussian_kernel(3, 1.0, dtype=f64) * 1e-12  # tiny but symmetric: accepted
        S.length_surrogate(u, k)
        bad = k.clone()
        bad[0, 1] *= 1.01  # 1 % asymmetry of a tiny kernel is still asymmetry
        with pytest.raises(ValueError, match="point-symmetric"):
            S.length_surrogate(u, bad)
        ok = S.gaussian_kernel(3, 1.0, dtype=f64)
        ok[0, 1] += 1e-9  # below the 1e-6 relative tolerance (rounding of a symmetric kernel)
        S.length_surrogate(u, ok)

    def test_spectrum_size_and_psd_tolerance(self):
        k = S.gaussian_kernel(S.PAPER_KERNEL_SIZE, S.PAPER_SIGMA, dtype=f64)
        assert S.kernel_spectrum(k).shape == (128, 128) and S.kernel_spectrum(k, 16).shape == (16, 16)
        assert float(S.kernel_spectrum(k)[0, 0]) == pytest.approx(1.0, abs=1e-12)  # omega = 0: the sum
        # the paper kernel's spectrum dips to -0.197: PSD within a tolerance of 0.2, not of 0.19
        assert S.is_psd(k, tol=0.2) and not S.is_psd(k, tol=0.19)
        with pytest.raises(ValueError, match=r"`n`: expected an integer in \[1, inf\]"):
            S.kernel_spectrum(k, 0)
        # PSD in exact arithmetic, rounding to about -2e-8 in float32: the default tolerance (64 eps) accepts it
        k32 = S.gaussian_kernel(7, 5.0, psd=True)
        assert S.is_psd(k32) and not S.is_psd(k32, tol=0.0)


class TestDynamicsSecondRound:
    """Survivors of the second mutation run, each pinned by a documented behaviour."""

    def test_shape_errors_name_the_argument_and_the_expected_shape(self):
        with pytest.raises(ValueError, match=r"^`probs`: expected shape \(N, C, H, W\), got \(2, 4, 4\)$"):
            S.length_surrogate(torch.zeros(2, 4, 4), S.gaussian_kernel(3, 1.0))
        with pytest.raises(TypeError, match=r"^`probs`: expected a floating-point tensor"):
            S.length_surrogate(torch.zeros(1, 2, 4, 4, dtype=torch.long), S.gaussian_kernel(3, 1.0))
        with pytest.raises(ValueError, match=r"^`probs`: expected shape \(N, C, H, W\), got \(2, 4, 4\)$"):
            S.std_energy(torch.zeros(2, 4, 4), torch.zeros(1, 2, 4, 4))
        with pytest.raises(ValueError, match=r"^`logits`: expected shape \(N, C, H, W\), got \(2, 4, 4\)$"):
            S.soft_threshold_dynamics(torch.zeros(2, 4, 4))
        with pytest.raises(ValueError, match=r"^`init`: expected shape \(N, C, H, W\), got \(2, 4, 4\)$"):
            S.soft_threshold_dynamics(torch.zeros(1, 2, 4, 4), init=torch.full((2, 4, 4), 0.5))
        with pytest.raises(ValueError, match=r"^`labels`: expected shape \(N, H, W\), got \(4, 4\)$"):
            S.volumes_from_labels(torch.zeros(4, 4, dtype=torch.long), 2)

    def test_volume_shape_errors_say_as_in_logits(self):
        o = torch.randn(1, 3, 4, 4)
        with pytest.raises(ValueError, match=r"^`volumes`: expected C=3 \(as in `logits`\), got 2$"):
            S.soft_threshold_dynamics(o, volumes=torch.tensor([[10.0, 6.0]]))
        with pytest.raises(ValueError, match=r"^`volumes`: expected N=1 \(as in `logits`\), got 2$"):
            S.soft_threshold_dynamics(o, volumes=torch.full((2, 3), 16 / 3))

    def test_any_positive_volume_is_allowed_and_the_error_names_the_non_positive_class(self):
        o = torch.randn(1, 3, 4, 4)
        S.soft_threshold_dynamics(o, iterations=1, volumes=torch.tensor([[0.5, 5.5, 10.0]]))
        with pytest.raises(ValueError, match="got 0 for class 2 of image 0"):
            S.soft_threshold_dynamics(o, volumes=torch.tensor([[0.5, 15.5, 0.0]]))

    def test_volume_sum_tolerance_is_relative_to_the_image_area(self):
        # 4 x 16: H W = 64; float rounding (5e-5 relative) passes, a 1e-3 relative miss does not
        o = torch.randn(1, 2, 4, 16)
        S.soft_threshold_dynamics(o, iterations=1, volumes=torch.tensor([[32.0, 32.0 + 64 * 5e-5]], dtype=f64))
        with pytest.raises(ValueError, match="sum to H\\*W = 64"):
            S.soft_threshold_dynamics(o, iterations=1, volumes=torch.tensor([[32.0, 32.0 + 64 * 1e-3]], dtype=f64))

    def test_paper_default_is_one_sinkhorn_step(self):
        o = 3 * torch.randn(1, 2, 8, 8, generator=_gen(60), dtype=f64)
        V = torch.tensor([[50.0, 14.0]], dtype=f64)
        one = S.soft_threshold_dynamics(o, iterations=2, volumes=V, sinkhorn_iterations=1)
        assert torch.equal(S.soft_threshold_dynamics(o, iterations=2, volumes=V), one)
        assert not torch.allclose(S.soft_threshold_dynamics(o, iterations=2, volumes=V, sinkhorn_iterations=2), one)

    def test_output_dtype_is_the_logits_dtype(self):
        o = torch.randn(1, 2, 6, 6, generator=_gen(61))
        V = torch.tensor([[20.0, 16.0]], dtype=f64)
        for output in ("probs", "logits"):
            assert S.soft_threshold_dynamics(o, iterations=2, volumes=V, output=output).dtype == torch.float32

    @pytest.mark.parametrize("constraint", ["volume", "star"])
    def test_images_of_a_batch_are_independent(self, constraint):
        o = torch.randn(2, 2, 7, 6, generator=_gen(62), dtype=f64)
        kw = dict(iterations=3, lam=0.8, epsilon=0.5, output="logits")
        if constraint == "volume":
            extra = [dict(volumes=torch.tensor([[30.0, 12.0]], dtype=f64)), dict(volumes=torch.tensor([[12.0, 30.0]], dtype=f64))]
            batch = dict(volumes=torch.tensor([[30.0, 12.0], [12.0, 30.0]], dtype=f64), sinkhorn_iterations=3)
            extra = [dict(e, sinkhorn_iterations=3) for e in extra]
        else:
            extra = [dict(center=torch.tensor([[3.0, 2.0]])), dict(center=torch.tensor([[1.0, 4.0]]))]
            batch = dict(center=torch.tensor([[3.0, 2.0], [1.0, 4.0]]))
        out = S.soft_threshold_dynamics(o, **kw, **batch)
        for i in range(2):
            torch.testing.assert_close(out[i:i + 1], S.soft_threshold_dynamics(o[i:i + 1], **kw, **extra[i]),
                                       rtol=0, atol=1e-12)

    def test_init_bounds(self):
        o = torch.randn(1, 3, 2, 2)
        neg = torch.tensor([0.6, 0.6, -0.2])[None, :, None, None].expand(1, 3, 2, 2)  # sums to 1, below 0
        with pytest.raises(ValueError, match="`init`"):
            S.soft_threshold_dynamics(o, init=neg)
        above = torch.tensor([1.00005, 0.0, 0.0])[None, :, None, None].expand(1, 3, 2, 2)  # within 1e-4 of the simplex
        with pytest.raises(ValueError, match="`init`"):
            S.soft_threshold_dynamics(o, init=above)
        with pytest.raises(ValueError, match=r"^`init`: expected points of the simplex \(classes summing to 1 at every "
                                             r"pixel\)$"):
            S.soft_threshold_dynamics(o, init=torch.full((1, 3, 2, 2), 0.4))

    def test_unmet_volume_warning_points_at_the_caller(self, monkeypatch):
        from pixelbook.std import dynamics
        monkeypatch.setattr(dynamics, "MAX_SINKHORN_ITERATIONS", 1)
        o = 3 * torch.randn(1, 2, 16, 16, generator=_gen(63))
        with pytest.warns(RuntimeWarning) as record:
            S.soft_threshold_dynamics(o, iterations=1, volumes=torch.tensor([[250.0, 6.0]]), sinkhorn_iterations=None)
        # stacklevel=2: the caller's line, not dynamics.py (under mutmut a trampoline frame sits in between)
        assert record[0].filename == __file__ or "mutmut" in record[0].filename

    def test_star_directions_in_the_requested_dtype(self):
        c = torch.tensor([[1.1, 2.3]], dtype=f64)
        s = S.star_directions(c, 3, 4, dtype=torch.float32)
        assert s.dtype == torch.float32
        torch.testing.assert_close(s[0, :, 0, 0], torch.tensor([1.1, 2.3]) / math.hypot(1.1, 2.3))

    def test_volumes_from_labels_with_one_class_and_void(self):
        lab = torch.tensor([[[0, 0], [255, 0]]])
        assert torch.equal(S.volumes_from_labels(lab, 1), torch.tensor([[4.0]]))


class TestKernelsAndLayersSecondRound:
    """Survivors of the mutation runs of std/kernels.py and std/layers.py, each pinned by a documented behaviour."""

    def test_spectrum_of_a_diagonal_kernel(self):
        # point-symmetric but not symmetric per axis: k_hat(w) = 1 + 2a cos(w1 + w2) (the sine terms matter)
        a = 0.2
        k = torch.tensor([[a, 0, 0], [0, 1.0, 0], [0, 0, a]], dtype=f64)
        w = 2 * math.pi * torch.arange(16, dtype=f64) / 16
        torch.testing.assert_close(S.kernel_spectrum(k, 16), 1 + 2 * a * torch.cos(w[:, None] + w[None, :]),
                                   rtol=0, atol=1e-14)

    def test_is_psd_samples_the_requested_frequencies(self):
        # the paper kernel dips below 0 at omega = pi but not at 2 pi / 3
        k = S.gaussian_kernel(S.PAPER_KERNEL_SIZE, S.PAPER_SIGMA, dtype=f64)
        assert S.is_psd(k, n=3) and not S.is_psd(k, n=2)

    def test_is_psd_bad_kernels_are_clear_errors(self):
        with pytest.raises(TypeError, match="`kernel`: expected a torch.Tensor"):
            S.is_psd([[1.0]])
        with pytest.raises(TypeError, match="`kernel`: expected a floating-point tensor"):
            S.is_psd(torch.ones(3, 3, dtype=torch.long))

    def test_point_symmetry_means_both_axes_flipped(self):
        u = torch.full((1, 2, 6, 6), 0.5, dtype=f64)
        up_down = torch.tensor([[0, 1, 0], [0, 1, 2], [0, 1, 0]], dtype=f64)  # symmetric in rows, not in columns
        with pytest.raises(ValueError, match=r"^`kernel`: expected a point-symmetric kernel k\(x\) = k\(-x\)"):
            S.length_surrogate(u, up_down)
        with pytest.raises(ValueError, match="point-symmetric"):
            S.length_surrogate(u, up_down.T.contiguous())
        with pytest.raises(ValueError, match=r"^`kernel`: expected K=3 \(as in `kernel`\), got 5$"):
            S.length_surrogate(u, torch.ones(2, 3, 5, dtype=f64))

    def test_layer_sizes_and_outputs_at_their_bounds(self):
        o = torch.randn(1, 2, 6, 6, generator=_gen(70), dtype=f64)
        torch.testing.assert_close(S.STD(iterations=0, epsilon=0.5)(o), torch.softmax(o / 0.5, 1))  # T = 0: the softmax
        S.STD(kernel_size=1)(o)
        with pytest.raises(ValueError, match=r"^`kernel_size`: expected an integer in \[1, inf\], got 0$"):
            S.STD(kernel_size=0)
        torch.testing.assert_close(torch.softmax(S.STD(iterations=2, output="logits")(o), 1), S.STD(iterations=2)(o))

    def test_a_float64_input_is_computed_in_float64(self):
        o = torch.randn(1, 2, 8, 8, generator=_gen(71), dtype=f64)
        head = S.STD(iterations=3, lam=1.0, epsilon=0.5, sigma=1.0)  # values exact in float32
        ref = S.soft_threshold_dynamics(o, iterations=3, lam=1.0, epsilon=0.5, kernel=S.gaussian_kernel(7, 1.0, dtype=f64))
        torch.testing.assert_close(head(o), ref, rtol=0, atol=1e-13)

    def test_positional_arguments_after_iterations(self):
        # "same arguments as STD": iterations, lam, epsilon, kernel_size, sigma in that order
        v = S.VolumeSTD(5, 0.5, 0.3, 5, 1.5)
        s = S.StarSTD(20, 0.5, 0.3, 5, 1.5)
        for head in (v, s):
            assert (float(head.lam), float(head.epsilon), head.kernel_size, float(head.sigma)) == (0.5, pytest.approx(0.3), 5, 1.5)
