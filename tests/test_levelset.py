"""Tests of pixelbook.levelset (Chapter 2) and the StarShapes data."""

import math

import numpy as np
import pytest
import torch

from pixelbook.data.starshapes import make_star_shapes
from pixelbook.levelset import (
    ContourEvolution, ImageEvolution, LinearForcing, ODEFunc, ODESolveError, ResidualRefiner, cfl_dt, chan_vese, chan_vese_energy,
    edge_indicator, evolve, level_set_rhs, narrow_band, narrow_band_loss, region_means, reinitialize,
    segmentation_scores, solve_ode,
)
from pixelbook.ops import dirac, grad_norm, sdf_from_mask


def disc_phi(size=128, r0=30.0, center=None, dtype=torch.float64):
    """Exact SDF of a disc, positive inside: (1, 1, size, size)."""
    c = (size / 2 - 0.5 + 0.3) if center is None else center
    yy, xx = torch.meshgrid(torch.arange(size, dtype=dtype), torch.arange(size, dtype=dtype), indexing="ij")
    return (r0 - ((xx - c) ** 2 + (yy - c) ** 2).sqrt())[None, None]


def area_radius(phi):
    """Area-equivalent radius of {phi > 0}, from the pixel coverage clamp(phi + 1/2, 0, 1) of an SDF."""
    return float(((phi.clamp(-0.5, 0.5) + 0.5).sum() / math.pi).sqrt())


class TestEvolve:
    """The closed-form flows, on a 128x128 grid (the disc of radius 30 of the Chapter 2 note)."""

    @pytest.mark.parametrize("c", [1.0, -1.0])
    def test_constant_speed_moves_the_radius_by_ct(self, c):
        phi = evolve(disc_phi(), [0.0, 10.0], dt=0.25, speed=c)
        # First-order upwind differences on a curved front lag by O(dx * log(r1/r0)) ~ 0.1 px.
        assert area_radius(phi[-1]) == pytest.approx(30 + 10 * c, abs=0.2)

    def test_curvature_flow_follows_sqrt_r0_squared_minus_2t(self):
        phi = evolve(disc_phi(), [0.0, 100.0, 200.0], dt=0.2, curvature_weight=1.0)
        for k, t in enumerate([0.0, 100.0, 200.0]):
            assert area_radius(phi[k]) == pytest.approx(math.sqrt(900 - 2 * t), abs=0.05)

    def test_returns_every_requested_time(self):
        phi0 = disc_phi(32, 8.0)
        out = evolve(phi0, [0.0, 0.5, 1.0], dt=0.25, speed=1.0)
        assert out.shape == (3, 1, 1, 32, 32) and torch.equal(out[0], phi0)
        torch.testing.assert_close(out[1], evolve(phi0, [0.0, 0.5], dt=0.25, speed=1.0)[-1])

    def test_callable_speed_equals_tensor_speed(self):
        phi0 = disc_phi(32, 8.0)
        F = 0.5 + torch.rand(1, 1, 32, 32, dtype=torch.float64)
        a = evolve(phi0, [0.0, 2.0], dt=0.25, speed=F)
        b = evolve(phi0, [0.0, 2.0], dt=0.25, speed=lambda phi, t: F)
        torch.testing.assert_close(a, b)

    def test_cfl_violation_raises_and_names_a_stable_dt(self):
        with pytest.raises(ValueError, match=r"`dt`: step 1 violates the CFL condition.*use dt <= 0\.7071"):
            evolve(disc_phi(32, 8.0), [0.0, 2.0], dt=1.0, speed=1.0)
        assert cfl_dt(1.0, 0.0) == pytest.approx(1 / math.sqrt(2))

    def test_unstable_step_grows_without_the_check(self):
        phi0 = disc_phi(32, 8.0) + 1e-3 * torch.randn(1, 1, 32, 32, dtype=torch.float64,
                                                      generator=torch.Generator().manual_seed(0))
        stable = evolve(phi0, [0.0, 20.0], dt=0.2, curvature_weight=1.0)[-1]
        unstable = evolve(phi0, [0.0, 20.0], dt=0.75, curvature_weight=1.0, check_cfl=False)[-1]
        assert float(unstable.abs().max()) > 100 * float(stable.abs().max())

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`times`: expected a non-empty strictly increasing"):
            evolve(disc_phi(16, 4.0), [0.0, 0.0], dt=0.1)
        with pytest.raises(ValueError, match=r"`curvature_weight`: expected a finite number in \[0, inf\)"):
            evolve(disc_phi(16, 4.0), [0.0, 1.0], dt=0.1, curvature_weight=-1.0)
        with pytest.raises(ValueError, match="`phi`: expected shape \\(N, C, H, W\\)"):
            evolve(torch.zeros(16, 16), [0.0, 1.0], dt=0.1)

    def test_rhs_is_differentiable_in_the_speed(self):
        phi = disc_phi(8, 3.0)
        F = torch.full((1, 1, 8, 8), 0.7, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda f: level_set_rhs(phi, f, 0.5), (F,))


class TestReinitialize:
    def test_restores_unit_gradient_and_keeps_the_contour(self):
        phi = disc_phi(64, 15.0)
        stretched = 3.0 * phi + 0.02 * phi ** 2  # same zero level, |grad| far from 1
        out = reinitialize(stretched, steps=40)
        band = phi.abs() < 6
        assert float((grad_norm(stretched)[band] - 1).abs().mean()) > 1.0
        assert float((grad_norm(out)[band] - 1).abs().mean()) < 0.05
        # Sussman's scheme moves the zero level (its known drift), but by less than half a pixel
        assert float((out - phi)[band].abs().max()) < 0.5

    def test_bad_dt(self):
        with pytest.raises(ValueError, match="`dt`: expected <= 0.7071"):
            reinitialize(disc_phi(8, 3.0), dt=1.0)


class TestRegionMeans:
    def test_hand_computed(self):
        img = torch.tensor([[[[1.0, 2.0], [3.0, 10.0]]]])
        phi = torch.tensor([[[[1.0, 1.0], [-1.0, -1.0]]]])
        c1, c2 = region_means(img, phi)
        assert float(c1) == 1.5 and float(c2) == 6.5

    def test_empty_region_gets_zero(self):
        c1, c2 = region_means(torch.ones(1, 1, 3, 3), -torch.ones(1, 1, 3, 3))
        assert float(c1) == 0.0 and float(c2) == 1.0


class TestChanVese:
    def test_equals_scikit_image_float64(self):
        from skimage import data
        from skimage.segmentation import chan_vese as sk_chan_vese
        from skimage.transform import resize

        img = resize(data.camera().astype(np.float64), (48, 48), anti_aliasing=True)
        img = (img - img.min()) / (img.max() - img.min())  # scikit-image rescales to [0, 1]
        yy, xx = np.mgrid[0:48, 0:48]
        init = np.sin(yy * np.pi / 5) * np.sin(xx * np.pi / 5)  # its 'checkerboard' start
        _, sk_phi, _ = sk_chan_vese(img, mu=0.2, lambda1=1.0, lambda2=1.2, tol=0.0, max_num_iter=30, dt=0.5,
                                    init_level_set=init, extended_output=True)
        ours = chan_vese(torch.from_numpy(img)[None, None], torch.from_numpy(init)[None, None], mu=0.2,
                         lambda1=1.0, lambda2=1.2, dt=0.5 * math.pi, steps=30)
        np.testing.assert_allclose(ours[0, 0].numpy(), sk_phi, rtol=1e-9, atol=1e-9)

    def test_energy_decreases_and_finds_a_square(self):
        img = torch.zeros(1, 1, 24, 24, dtype=torch.float64)
        img[..., 6:18, 6:18] = 1.0
        img = img + 0.2 * torch.randn_like(img)
        phi0 = disc_phi(24, 5.0, center=11.5)
        path = chan_vese(img, phi0, steps=60, return_path=True)
        energy = torch.stack([chan_vese_energy(img, p) for p in path[::10]])
        assert bool((energy[1:] < energy[:-1]).all())
        seg = path[-1][0, 0] > 0
        truth = torch.zeros(24, 24, dtype=torch.bool)
        truth[6:18, 6:18] = True
        assert float((seg & truth).sum() / (seg | truth).sum()) > 0.9

    def test_batch_equals_single_images_and_channel_mean(self):
        img = torch.rand(3, 1, 16, 16, dtype=torch.float64)
        phi0 = disc_phi(16, 5.0).expand(3, 1, 16, 16)
        batch = chan_vese(img, phi0, steps=5)
        for i in range(3):
            torch.testing.assert_close(batch[i:i + 1], chan_vese(img[i:i + 1], phi0[i:i + 1], steps=5))
        torch.testing.assert_close(chan_vese(img.expand(3, 2, 16, 16), phi0, steps=5), batch)

    def test_gradcheck_in_the_image_float64(self):
        img = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
        phi0 = disc_phi(6, 2.0, center=2.5)
        assert torch.autograd.gradcheck(lambda i: chan_vese(i, phi0, steps=2), (img,))

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match="`phi`: expected H=8 \\(as in `image`\\), got 9"):
            chan_vese(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 9, 8))
        with pytest.raises(ValueError, match="`image`: expected finite values"):
            chan_vese(torch.full((1, 1, 4, 4), float("nan")), torch.rand(1, 1, 4, 4))


class TestChanVeseEnergy:
    def test_decreases_along_the_flow_from_a_checkerboard_and_matches_scikit_image(self):
        from skimage import data
        from skimage.segmentation import chan_vese as sk_chan_vese
        from skimage.transform import resize

        img = resize(data.camera().astype(np.float64), (40, 40), anti_aliasing=True)
        img = (img - img.min()) / (img.max() - img.min())
        init = np.sin(np.arange(40)[:, None] * np.pi / 5) * np.sin(np.arange(40)[None, :] * np.pi / 5)
        _, _, sk_energy = sk_chan_vese(img, mu=0.25, tol=0.0, max_num_iter=30, dt=0.5, init_level_set=init,
                                       extended_output=True)
        path = chan_vese(torch.from_numpy(img)[None, None], torch.from_numpy(init)[None, None], steps=30,
                         return_path=True)
        ours = torch.stack([chan_vese_energy(torch.from_numpy(img)[None, None], p)[0] for p in path])
        assert bool((ours[1:] <= ours[:-1] + 1e-9).all())
        # scikit-image's delta lacks the 1/pi: its energy equals ours with the length term times pi
        length = torch.stack([(0.25 * dirac(p) * grad_norm(p)).sum() for p in path])
        np.testing.assert_allclose((ours + (math.pi - 1) * length)[:30].numpy(), np.array(sk_energy), rtol=1e-9)


class TestEdgeIndicator:
    def test_one_on_flat_images_and_small_at_edges(self):
        assert torch.allclose(edge_indicator(torch.full((1, 3, 16, 16), 0.3)), torch.ones(1, 1, 16, 16))
        img = torch.zeros(1, 1, 16, 16)
        img[..., 8:] = 4.0
        g = edge_indicator(img)
        assert float(g[0, 0, 4, 7:9].max()) < 0.5 and float(g[0, 0, 4, 0]) > 0.99


class TestNarrowBandLoss:
    def test_zero_for_equal_maps_and_hand_value(self):
        phi = disc_phi(16, 5.0).float()
        assert float(narrow_band_loss(phi, phi)) == 0.0
        pred, target = torch.zeros(1, 1, 1, 2), torch.tensor([[[[3.0, -3.0]]]])
        assert float(narrow_band_loss(pred, target, scale=3.0)) == pytest.approx(math.tanh(1) ** 2)

    def test_gradient_concentrates_near_the_contour(self):
        pred = torch.tensor([[[[0.0, 3.0, 10.0]]]], requires_grad=True)
        narrow_band_loss(pred, pred.detach() + 1.0).backward()
        g = pred.grad.abs()[0, 0, 0]
        assert g[0] > g[1] > g[2] and float(g[2]) < 0.01 * float(g[0])

    def test_valid_excludes_pixels(self):
        pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[3.0, 3.0], [0.0, 0.0]]]])
        valid = torch.tensor([[[False, False], [True, True]]])
        assert float(narrow_band_loss(pred, target, valid=valid)) == 0.0
        assert float(narrow_band_loss(pred, target, valid=torch.zeros(1, 2, 2))) == 0.0

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match="`target`: expected W=4 \\(as in `pred`\\), got 5"):
            narrow_band_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
        with pytest.raises(ValueError, match="`valid`: expected binary values"):
            narrow_band_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), valid=torch.full((1, 2, 2), 2))
        assert narrow_band(torch.tensor(3.0), 3.0) == pytest.approx(math.tanh(1))


class TestSegmentationScores:
    def test_pooled_differs_from_mean_iou(self):
        masks = torch.zeros(2, 10, 10, dtype=torch.bool)
        masks[0, :5] = True       # 50 pixels
        masks[1, 0, :2] = True    # 2 pixels
        phi = sdf_from_mask(masks)
        phi[1, 0, 0, 2:4] = 1.0   # image 1: 2 false positives -> IoU 0.5
        s = segmentation_scores(phi, masks)
        assert s["pooled_iou"] == pytest.approx(52 / 54)
        assert s["mean_iou"] == pytest.approx((1 + 0.5) / 2)
        P, R = 52 / 54, 1.0
        assert s["fbeta"] == pytest.approx(1.3 * P * R / (0.3 * P + R))

    def test_perfect_and_empty(self):
        masks = torch.zeros(1, 6, 6, dtype=torch.bool)
        masks[0, 2:4, 2:4] = True
        s = segmentation_scores(100 * sdf_from_mask(masks), masks)
        assert s["pooled_iou"] == 1.0 and s["fbeta"] == pytest.approx(1.0) and s["mae"] < 1e-6
        e = segmentation_scores(-torch.ones(1, 1, 6, 6), masks)
        assert e["pooled_iou"] == 0.0 and e["fbeta"] == 0.0

    def test_bad_masks(self):
        with pytest.raises(ValueError, match="`labels`: expected H=6 \\(as in `phi`\\), got 5"):
            segmentation_scores(torch.zeros(1, 1, 6, 6), torch.zeros(1, 5, 6, dtype=torch.bool))


class _Square(torch.nn.Module):
    """dy/dt = y^2 (blows up at t = 1/y0) with an nfe counter, like ODEFunc."""

    def __init__(self):
        super().__init__()
        self.nfe, self.nfe_limit = 0, None

    def forward(self, t, y):
        self.nfe += 1
        return y * y


class _Decay(torch.nn.Module):
    def __init__(self, value=None):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
        self.value = value

    def forward(self, t, y):
        return -self.k * y if self.value is None else torch.full_like(y, self.value)


class TestSolveOde:
    @pytest.mark.parametrize("method,kw,tol", [("dopri5", {"atol": 1e-9}, 1e-7), ("rk4", {"step_size": 0.1}, 1e-6),
                                               ("euler", {"step_size": 0.001}, 1e-3)])
    def test_exponential_decay(self, method, kw, tol):
        y = solve_ode(_Decay(), torch.ones(3, dtype=torch.float64), [0.0, 1.0], method=method, **kw)
        torch.testing.assert_close(y[-1], torch.full((3,), math.exp(-1), dtype=torch.float64), atol=tol, rtol=0)

    def test_adjoint_gradient_equals_backprop(self):
        grads = []
        for adjoint in (False, True):
            f = _Decay()
            y = solve_ode(f, torch.ones(2, dtype=torch.float64), [0.0, 1.0], atol=1e-10, adjoint=adjoint)
            y[-1].sum().backward()
            grads.append(float(f.k.grad))
        assert grads[0] == pytest.approx(-2 * math.exp(-1), rel=1e-6)   # d/dk 2 e^{-k}
        assert grads[1] == pytest.approx(grads[0], rel=1e-6)

    def test_blow_up_raises_with_advice(self):
        with pytest.raises(ODESolveError, match="underflowed|max_num_steps|function evaluations|NaN"):
            solve_ode(_Square(), torch.ones(1, dtype=torch.float64), [0.0, 2.0], atol=1e-6, max_num_steps=200)
        with pytest.raises(ODESolveError, match="atol=1e-06.*method='rk4'"):
            solve_ode(_Square(), torch.ones(1, dtype=torch.float64), [0.0, 2.0], atol=1e-6, max_num_steps=200)

    def test_backward_adjoint_failure_raises_with_advice(self):
        # forward: f = 0, a few steps. backward: the adjoint a' = lam * a (our vjp says df/dy = -lam)
        # grows like e^{200 t}: dopri5 at atol 1e-3 needs far more than 30 steps, and used to raise a
        # bare AssertionError from loss.backward()
        class _StiffAdjoint(torch.autograd.Function):
            @staticmethod
            def forward(ctx, y, k):
                return y * k * 0.0

            @staticmethod
            def backward(ctx, g):
                return -200.0 * g, (g * 0.0).sum().reshape(1)

        class _F(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.k = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

            def forward(self, t, y):
                return _StiffAdjoint.apply(y, self.k)

        f = _F()
        y = solve_ode(f, torch.ones(2, dtype=torch.float64), [0.0, 1.0], atol=1e-3, adjoint=True, max_num_steps=30)
        with pytest.raises(ODESolveError, match="^ODE solve failed in the backward \\(adjoint\\) pass.*max_num_steps=30.*loosen"):
            y[-1].sum().backward()

    def test_adjoint_gradient_reaches_y0_and_parameters_once(self):
        f = _Decay()
        y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
        y = solve_ode(f, 3 * y0, [0.0, 1.0], atol=1e-10, adjoint=True)
        y[-1].sum().backward()
        assert y0.grad.tolist() == pytest.approx([3 * math.exp(-1)] * 2, rel=1e-6)   # d/dy0 e^{-k} 3 y0
        assert float(f.k.grad) == pytest.approx(-6 * math.exp(-1), rel=1e-6)

    def test_nan_state_raises(self):
        with pytest.raises(ODESolveError, match="NaN/Inf"):
            solve_ode(_Decay(value=float("nan")), torch.ones(2, dtype=torch.float64), [0.0, 1.0])

    def test_option_errors(self):
        y0 = torch.ones(2)
        with pytest.raises(ValueError, match="`step_size`: required for the fixed-step method 'rk4'"):
            solve_ode(_Decay(), y0, [0.0, 1.0], method="rk4")
        with pytest.raises(ValueError, match="`step_size`: only used by fixed-step methods"):
            solve_ode(_Decay(), y0, [0.0, 1.0], method="dopri5", step_size=0.1)
        with pytest.raises(ValueError, match="`method`: expected one of"):
            solve_ode(_Decay(), y0, [0.0, 1.0], method="rk45")
        with pytest.raises(ValueError, match="`times`: expected at least 2 strictly increasing"):
            solve_ode(_Decay(), y0, [1.0, 0.0])
        with pytest.raises(ValueError, match="`y0`: expected finite values"):
            solve_ode(_Decay(), torch.tensor([float("inf")]), [0.0, 1.0])


class TestODEFunc:
    def test_zero_at_initialisation_and_counts_calls(self):
        f = ODEFunc(5, hidden=8)
        x = torch.randn(2, 5, 6, 6)
        assert torch.equal(f(torch.tensor(0.3), x), torch.zeros_like(x)) and f.nfe == 1

    def test_nan_output_raises(self):
        f = ODEFunc(2, hidden=4)
        torch.nn.init.constant_(f.convs[-1].bias, float("nan"))
        with pytest.raises(ODESolveError, match="f_theta returned NaN/Inf at t=0.5"):
            f(torch.tensor(0.5), torch.zeros(1, 2, 4, 4))

    def test_bad_layers(self):
        with pytest.raises(ValueError, match=r"`layers`: expected an integer in \[2, inf\]"):
            ODEFunc(3, layers=1)


def _randomise(model, std=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


class TestContourEvolution:
    @pytest.mark.parametrize("solver", [dict(method="rk4", step_size=0.25), dict(method="euler", step_size=0.1)])
    def test_identity_at_initialisation_fixed_step(self, solver):
        net = ContourEvolution(image_channels=3, embed_channels=4, hidden=8, adjoint=False, **solver)
        phi0 = 5 * torch.randn(2, 1, 12, 12)
        out = net(torch.rand(2, 3, 12, 12), phi0)
        assert torch.equal(out, phi0)  # bit for bit: zero-initialised last layers of f and psi

    def test_identity_at_initialisation_adaptive(self):
        # dopri5 returns its dense-output interpolant at t = 1, exact up to rounding only
        net = ContourEvolution(image_channels=3, embed_channels=4, hidden=8, method="dopri5", adjoint=True).double()
        phi0 = 5 * torch.randn(2, 1, 12, 12, dtype=torch.float64)
        with torch.no_grad():
            out = net(torch.rand(2, 3, 12, 12, dtype=torch.float64), phi0)
        assert float((out - phi0).abs().max()) < 1e-12

    def test_nfe_counting(self):
        net = ContourEvolution(1, 4, 8, method="rk4", step_size=0.25, adjoint=False)
        net(torch.rand(1, 1, 8, 8), torch.randn(1, 1, 8, 8)).sum().backward()
        assert net.nfe_forward == 16 and net.nfe_backward == 0
        net.configure_solver(method="euler", step_size=0.5)
        net(torch.rand(1, 1, 8, 8), torch.randn(1, 1, 8, 8))
        assert net.nfe_forward == 2

    def test_adjoint_gradient_equals_backprop_through_the_solver(self):
        torch.manual_seed(0)
        image, phi0 = torch.rand(1, 1, 6, 6, dtype=torch.float64), torch.randn(1, 1, 6, 6, dtype=torch.float64)
        target = torch.randn(1, 1, 6, 6, dtype=torch.float64)
        grads, nfe_back = [], []
        for adjoint in (False, True):
            net = _randomise(ContourEvolution(1, 2, 4, groups=2, atol=1e-10, adjoint=adjoint).double())
            narrow_band_loss(net(image, phi0), target).backward()
            grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
            nfe_back.append(net.nfe_backward)
        assert float(grads[0].abs().max()) > 1e-3  # non-trivial gradients
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-8)
        assert nfe_back[0] == 0 and nfe_back[1] > 0

    def test_trajectory_starts_at_phi0_and_accepts_a_late_start(self):
        net = _randomise(ContourEvolution(1, 2, 4, groups=2, method="rk4", step_size=0.25, adjoint=False), std=0.05)
        image, phi0 = torch.rand(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
        traj = net.trajectory(image, phi0, [0.0, 0.5, 1.0])
        assert traj.shape == (3, 1, 1, 8, 8)
        torch.testing.assert_close(traj[0], phi0)
        readout = net.trajectory(image, phi0, [0.0, 0.5, 1.0], readout=True)
        torch.testing.assert_close(readout[-1], net(image, phi0))  # the readout at t = 1 is the output
        assert net.trajectory(image, phi0, [0.5, 1.0]).shape == (2, 1, 1, 8, 8)

    def test_bad_inputs_name_the_argument(self):
        net = ContourEvolution(1, 2, 4, method="euler", step_size=0.5, adjoint=False)
        with pytest.raises(ValueError, match="`image`: expected finite values"):
            net(torch.full((1, 1, 4, 4), float("nan")), torch.zeros(1, 1, 4, 4))
        with pytest.raises(ValueError, match="`phi0`: expected H=4 \\(as in `image`\\), got 5"):
            net(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 5, 4))
        with pytest.raises(ValueError, match="`image`: expected shape \\(N, 1, H, W\\)"):
            net(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
        with pytest.raises(ValueError, match="`step_size`: required for the fixed-step method 'euler'"):
            ContourEvolution(method="euler")

    def test_runs_on_device(self, device):
        net = ContourEvolution(1, 2, 4, method="rk4", step_size=0.5, adjoint=False).to(device)
        out = net(torch.rand(1, 1, 8, 8, device=device), torch.randn(1, 1, 8, 8, device=device))
        assert out.device.type == device.type

    def test_stiff_dynamics_raise_an_error_that_says_what_to_change(self):
        net = _randomise(ContourEvolution(1, 2, 4, groups=2, atol=1e-7, max_num_steps=5), std=3.0)
        with pytest.raises(ODESolveError, match="loosen the tolerance.*fixed-step solver"):
            net(torch.rand(1, 1, 8, 8), 10 * torch.randn(1, 1, 8, 8))


class TestResidualRefiner:
    def test_identity_at_initialisation(self):
        net = ResidualRefiner(image_channels=1, embed_channels=4, hidden=8, blocks=3)
        phi0 = 5 * torch.randn(2, 1, 12, 12)
        assert torch.equal(net(torch.rand(2, 1, 12, 12), phi0), phi0) and net.nfe_forward == 3

    def test_with_one_shared_network_it_is_contour_evolution_solved_by_euler(self):
        torch.manual_seed(0)
        ce = _randomise(ContourEvolution(1, 2, 4, groups=2, method="euler", step_size=0.25, adjoint=False))
        rr = ResidualRefiner(1, 2, 4, groups=2, blocks=4)
        rr.embed.load_state_dict(ce.embed.state_dict())
        rr.postnet.load_state_dict(ce.postnet.state_dict())
        for f in rr.funcs:
            f.load_state_dict(ce.func.state_dict())
        image, phi0 = torch.rand(2, 1, 8, 8), 3 * torch.randn(2, 1, 8, 8)
        torch.testing.assert_close(rr(image, phi0), ce(image, phi0), rtol=1e-6, atol=1e-6)

    def test_each_block_has_its_own_weights(self):
        net = ResidualRefiner(1, 2, 4, groups=2, blocks=4)
        assert len(net.funcs) == 4 and net.funcs[0].convs[0].weight is not net.funcs[1].convs[0].weight

    @pytest.mark.parametrize("blocks, error", [(0, ValueError), (2.5, TypeError), (True, TypeError)])
    def test_bad_blocks_is_an_error(self, blocks, error):
        with pytest.raises(error, match="`blocks`"):
            ResidualRefiner(blocks=blocks)


class TestImageEvolution:
    def test_output_shape_and_zero_at_initialisation(self):
        net = ImageEvolution(image_channels=3, channels=4, hidden=8, method="euler", step_size=0.25, adjoint=False)
        with torch.no_grad():
            out = net(torch.rand(2, 3, 10, 10))
        assert out.shape == (2, 1, 10, 10) and float(out.abs().max()) == 0.0 and net.nfe_forward == 4

    def test_adjoint_gradient_equals_backprop(self):
        image, target = torch.rand(1, 1, 6, 6, dtype=torch.float64), torch.randn(1, 1, 6, 6, dtype=torch.float64)
        grads = []
        for adjoint in (False, True):
            net = _randomise(ImageEvolution(1, 2, 4, groups=2, atol=1e-10, adjoint=adjoint).double())
            narrow_band_loss(net(image), target).backward()
            grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-8)

    def test_trajectory_shape(self):
        net = ImageEvolution(1, 2, 4, groups=2, method="euler", step_size=0.5, adjoint=False)
        assert net.trajectory(torch.rand(2, 1, 6, 6), [0.0, 0.5, 1.0]).shape == (3, 2, 1, 6, 6)

    def test_bad_inputs(self):
        net = ImageEvolution(1, 2, 4, method="euler", step_size=0.5, adjoint=False)
        with pytest.raises(ValueError, match="`image`: expected finite values"):
            net(torch.tensor([[[[0.0, float("inf")]]]]))


class TestLinearForcing:
    def test_identity_at_zero_weights(self):
        phi0 = disc_phi(16, 5.0).float()
        lf = LinearForcing(steps=5)
        with torch.no_grad():
            lf.weights.zero_()
        assert torch.equal(lf(torch.rand(1, 1, 16, 16), phi0), phi0)
        assert float(LinearForcing().weights[1].detach()) > 0  # the default starts with a small curvature weight

    def test_constant_weight_is_a_constant_speed_flow(self):
        lf = LinearForcing(steps=20)
        with torch.no_grad():
            lf.weights.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0]))
        phi0 = disc_phi(48, 10.0)
        vmax = 0.5 / (math.sqrt(2) / 20)
        expected = evolve(phi0, [0.0, 1.0], dt=1 / 20, speed=vmax * math.tanh(2.0 / vmax))[-1]
        torch.testing.assert_close(lf.double()(torch.rand(1, 1, 48, 48, dtype=torch.float64), phi0), expected)

    def test_large_weights_stay_stable(self):
        lf = LinearForcing(steps=10)
        with torch.no_grad():
            lf.weights.copy_(torch.tensor([50.0, 50.0, -50.0, 50.0, 50.0]))
        out = lf(torch.rand(2, 1, 16, 16), sdf_from_mask(torch.rand(2, 16, 16) > 0.5))
        assert bool(torch.isfinite(out).all()) and float(out.detach().abs().max()) < 100

    def test_gradient_reaches_every_weight(self):
        lf = LinearForcing(steps=5)
        with torch.no_grad():
            lf.weights.fill_(0.1)
        img = torch.rand(1, 1, 12, 12)
        narrow_band_loss(lf(img, disc_phi(12, 3.0).float()), disc_phi(12, 4.0).float()).backward()
        assert bool((lf.weights.grad != 0).all())


class TestMakeStarShapes:
    @pytest.mark.parametrize("variant", ["basic", "hard"])
    def test_shapes_targets_and_determinism(self, variant):
        a = make_star_shapes(4, size=24, variant=variant, seed=3)
        b = make_star_shapes(4, size=24, variant=variant, seed=3)
        assert a["image"].shape == (4, 1, 24, 24) and a["masks"].shape == (4, 24, 24) and a["phi"].shape == (4, 1, 24, 24)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["phi"][:, 0] > 0, a["masks"])
        assert not torch.equal(a["image"], make_star_shapes(4, size=24, variant=variant, seed=4)["image"])
        assert bool(a["masks"].flatten(1).any(1).all())  # every image holds an object

    def test_objects_are_brighter_than_background_on_average(self):
        d = make_star_shapes(32, size=32, seed=0, noise=0.0)
        img, m = d["image"][:, 0], d["masks"]
        assert float(img[m].mean()) > float(img[~m].mean()) + 0.4

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`variant`: expected one of"):
            make_star_shapes(2, variant="easy")
        with pytest.raises(ValueError, match="`size`: expected an int >= 16"):
            make_star_shapes(2, size=8)




# --------------------------------------------------------------------------------------------------
# The neural-ODE models' documented contract, case by case (written against the mutation run's
# survivors; references are written inline from [NODE-LS, Eqs. 3-4] and torch's functional API).

from pixelbook.levelset import neural_ode as node  # noqa: E402


def _odefunc_reference(f, t, x):
    """ODEFunc written out: [conv(cat(x, t)) -> GroupNorm -> softplus] * (layers - 1) -> conv(cat(x, t))."""
    for i, conv in enumerate(f.convs):
        if f.time_channel:
            x = torch.cat([x, torch.full_like(x[:, :1], float(t))], 1)
        x = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=conv.dilation[0], dilation=conv.dilation[0])
        if i < len(f.convs) - 1:
            gn = f.norms[i]
            x = torch.nn.functional.softplus(torch.nn.functional.group_norm(x, gn.num_groups, gn.weight, gn.bias, gn.eps))
    return x


class TestSolverErrors:
    @pytest.mark.parametrize("message,expected", [
        ("underflow in dt 0.0", "ODE solve failed: the adaptive step size of 'dopri5' underflowed \\(underflow in dt 0.0\\)"),
        ("max_num_steps exceeded (10>=10)", "ODE solve failed: 'dopri5' needed more than max_num_steps=10 steps; raise"),
        ("non-finite values in state `y`", "ODE solve failed: the state became NaN/Inf; loosen the tolerance"),
    ])
    def test_torchdiffeq_assertions_become_advice(self, message, expected):
        err = node._solver_error(AssertionError(message), "", method="dopri5", atol=1e-4, rtol=0.0, max_num_steps=10)
        assert isinstance(err, ODESolveError)
        assert re_search(expected, str(err)) and "atol=0.0001, rtol=0" in str(err)

    def test_other_assertions_pass_through_and_the_phase_is_named(self):
        exc = AssertionError("something else")
        assert node._solver_error(exc, "", method="rk4", atol=0.0, rtol=0.0, max_num_steps=1) is exc
        err = node._solver_error(AssertionError("underflow in dt 0.0"), " in the backward (adjoint) pass",
                                 method="dopri5", atol=1e-3, rtol=0.0, max_num_steps=5)
        assert str(err).startswith("ODE solve failed in the backward (adjoint) pass: the adaptive step size")

    def test_too_many_steps_in_the_forward_pass_names_max_num_steps(self):
        with pytest.raises(ODESolveError, match="'dopri5' needed more than max_num_steps=3 steps"):
            solve_ode(_Decay(), torch.ones(2, dtype=torch.float64), [0.0, 10.0], atol=1e-12, max_num_steps=3)

    def test_user_dynamics_returning_nan_name_the_time(self):
        with pytest.raises(ODESolveError, match="the dynamics returned NaN/Inf at t=0;"):
            solve_ode(_Decay(value=float("nan")), torch.ones(2), [0.0, 1.0], method="euler", step_size=0.5)


def re_search(pattern, text):
    import re
    return re.search(pattern, text) is not None


class TestSolveOdeContract:
    def test_more_option_errors(self):
        y0 = torch.ones(2)
        for times in ([0.0], [0.0, 0.0], [0.0, 1.0, 1.0]):
            with pytest.raises(ValueError, match="`times`: expected at least 2 strictly increasing times"):
                solve_ode(_Decay(), y0, times)
        with pytest.raises(ValueError, match="`atol`: rtol and atol cannot both be 0"):
            solve_ode(_Decay(), y0, [0.0, 1.0], atol=0.0)
        with pytest.raises(ValueError, match=r"`rtol`: expected a finite number in \[0, inf\)"):
            solve_ode(_Decay(), y0, [0.0, 1.0], rtol=-1e-3)
        with pytest.raises(ValueError, match=r"`atol`: expected a finite number in \[0, inf\)"):
            solve_ode(_Decay(), y0, [0.0, 1.0], atol=-1e-3)
        with pytest.raises(ValueError, match=r"`step_size`: expected a finite number in \(0, inf\)"):
            solve_ode(_Decay(), y0, [0.0, 1.0], method="euler", step_size=0.0)
        with pytest.raises(ValueError, match=r"`max_num_steps`: expected an integer in \[1, inf\]"):
            solve_ode(_Decay(), y0, [0.0, 1.0], max_num_steps=0)

    def test_defaults_are_dopri5_with_the_papers_tolerance(self):
        # rtol = 0, atol = 1e-3 [NODE-LS]: dopri5 meets e^{-1} to about atol, not to 1e-9
        y = solve_ode(_Decay(), torch.ones(1, dtype=torch.float64), [0.0, 1.0])
        err = abs(float(y[-1, 0].detach()) - math.exp(-1))
        assert 1e-9 < err < 1e-3
        tight = solve_ode(_Decay(), torch.ones(1, dtype=torch.float64), [0.0, 1.0], atol=1e-10)
        assert abs(float(tight[-1, 0].detach()) - math.exp(-1)) < 1e-8

    def test_rtol_alone_is_an_error_control(self):
        y = solve_ode(_Decay(), torch.ones(1, dtype=torch.float64), [0.0, 1.0], rtol=1e-10, atol=0.0)
        assert abs(float(y[-1, 0].detach()) - math.exp(-1)) < 1e-8

    def test_every_requested_time_is_returned(self):
        y = solve_ode(_Decay(), torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 0.5, 2.0]), atol=1e-10)
        torch.testing.assert_close(y[:, 0], torch.tensor([1.0, math.exp(-0.5), math.exp(-2)], dtype=torch.float64),
                                   rtol=0, atol=1e-8)

    def test_an_odefunc_is_free_to_call_after_a_solve(self):
        # the evaluation cap set for an adaptive solve is lifted when it ends
        f = ODEFunc(2, hidden=4, groups=2)
        solve_ode(f, torch.zeros(1, 2, 4, 4), [0.0, 1.0], max_num_steps=20)
        assert f.nfe_limit is None  # the documented cap: None means no limit

    def test_adaptive_solves_needing_many_evaluations_are_not_cut_short(self):
        # the evaluation cap is a guard for `python -O` only: a solve within max_num_steps never hits it
        f = _randomise(ODEFunc(2, hidden=4, groups=2).double(), std=1.0)
        y = solve_ode(f, torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
                      [0.0, 1.0], atol=1e-8, max_num_steps=400)
        assert f.nfe > 100 and bool(torch.isfinite(y).all())

    def test_adjoint_without_gradients_equals_the_plain_solve(self):
        f = _Decay()
        y0 = torch.ones(3, dtype=torch.float64)
        with torch.no_grad():
            a = solve_ode(f, y0, [0.0, 1.0], atol=1e-9, adjoint=True)
        b = solve_ode(f, y0, [0.0, 1.0], atol=1e-9, adjoint=False)
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-12)


class TestODEFuncContract:
    @pytest.mark.parametrize("time_channel,layers,dilation", [(True, 3, 1), (False, 2, 1), (True, 4, 2)])
    def test_equals_the_written_out_network(self, time_channel, layers, dilation):
        f = _randomise(ODEFunc(3, hidden=6, layers=layers, time_channel=time_channel, groups=4, dilation=dilation), 0.5)
        x = torch.randn(2, 3, 7, 5, generator=torch.Generator().manual_seed(1))
        for t in (0.0, 0.7):
            torch.testing.assert_close(f(torch.tensor(t), x), _odefunc_reference(f, t, x), rtol=1e-5, atol=1e-6)
        assert [c.dilation[0] for c in f.convs] == [1] + [dilation] * (layers - 2) + [1]  # middle ones only
        assert f.nfe == 2

    def test_time_enters_only_with_the_time_channel(self):
        x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(2))
        with_t = _randomise(ODEFunc(2, hidden=4, groups=2), 0.5)
        without = _randomise(ODEFunc(2, hidden=4, groups=2, time_channel=False), 0.5)
        assert not torch.allclose(with_t(torch.tensor(0.0), x), with_t(torch.tensor(1.0), x))
        assert torch.equal(without(torch.tensor(0.0), x), without(torch.tensor(1.0), x))
        assert with_t.convs[0].in_channels == 3 and without.convs[0].in_channels == 2

    def test_groups_divide_the_hidden_width(self):
        f = ODEFunc(2, hidden=12, groups=8)
        assert [n.num_groups for n in f.norms] == [4, 4] and len(f.convs) == 3

    def test_evaluation_cap(self):
        f = ODEFunc(2, hidden=4, groups=2)
        f.nfe_limit = 2
        x = torch.zeros(1, 2, 4, 4)
        f(torch.tensor(0.0), x), f(torch.tensor(0.0), x)
        with pytest.raises(ODESolveError, match=r"more than 2 function evaluations \(NFE\) at t=0.25"):
            f(torch.tensor(0.25), x)

    def test_bad_sizes_name_the_argument(self):
        for kw, name in [({"channels": 0}, "channels"), ({"channels": 2, "hidden": 0}, "hidden"),
                         ({"channels": 2, "groups": 0}, "groups"), ({"channels": 2, "dilation": 0}, "dilation")]:
            with pytest.raises(ValueError, match=rf"`{name}`: expected an integer in \[1, inf\]"):
                ODEFunc(**kw)


class TestSolverConfiguration:
    def test_defaults_are_the_papers(self):
        expected = {"method": "dopri5", "rtol": 0.0, "atol": 1e-3, "step_size": None, "adjoint": True,
                    "max_num_steps": 1000, "t1": 1.0}
        assert ContourEvolution().solver_options() == expected
        assert ImageEvolution().solver_options() == expected
        net = ContourEvolution()
        assert net.scale == 3.0 and net.image_channels == 1 and net.func.convs[0].in_channels == 1 + 8 + 1

    def test_configure_solver_sets_and_validates(self):
        net = ContourEvolution(method="rk4", step_size=0.25, adjoint=False)
        assert net.configure_solver(rtol=1e-4, atol=1e-5, max_num_steps=50, t1=2.0, adjoint=True) is net
        assert net.solver_options() == {"method": "rk4", "rtol": 1e-4, "atol": 1e-5, "step_size": 0.25,
                                        "adjoint": True, "max_num_steps": 50, "t1": 2.0}
        net.configure_solver(method="dopri5")  # an adaptive method drops the step size
        assert net.step_size is None
        with pytest.raises(ValueError, match="`step_size`: required for the fixed-step method 'euler'"):
            net.configure_solver(method="euler")
        assert net.method == "dopri5"  # a rejected change leaves the settings as they were
        with pytest.raises(ValueError, match="`step_size`: only for fixed-step methods; 'dopri5' is adaptive"):
            net.configure_solver(step_size=0.5)
        for kw, name in [({"rtol": -1.0}, "rtol"), ({"atol": -1.0}, "atol"), ({"step_size": 0.0}, "step_size"),
                         ({"max_num_steps": 0}, "max_num_steps"), ({"t1": 0.0}, "t1"), ({"method": "rk45"}, "method")]:
            with pytest.raises(ValueError, match=f"`{name}`"):
                ContourEvolution().configure_solver(**kw)

    def test_t1_is_the_end_time(self):
        net = ImageEvolution(1, 2, 4, groups=2, method="euler", step_size=0.5, adjoint=False, t1=2.0)
        net(torch.rand(1, 1, 6, 6))
        assert net.nfe_forward == 4  # 2.0 / 0.5 steps

    def test_model_sizes_are_checked(self):
        for cls in (ContourEvolution, ImageEvolution, ResidualRefiner):
            with pytest.raises(ValueError, match=r"`image_channels`: expected an integer in \[1, inf\]"):
                cls(image_channels=0)
            with pytest.raises(ValueError, match=r"`scale`: expected a finite number in \(0, inf\)"):
                cls(scale=0.0)


class TestModelsWrittenOut:
    def test_contour_evolution_one_euler_step(self):
        # Eq. 3 with one Euler step: gamma1 = gamma0 + f(0, gamma0), phi = s (phi_hat(1) + psi(gamma1))
        net = _randomise(ContourEvolution(1, 2, 4, groups=2, scale=2.5, method="euler", step_size=1.0, adjoint=False),
                         std=0.3)
        image, phi0 = torch.rand(2, 1, 6, 6), 3 * torch.randn(2, 1, 6, 6)
        with torch.no_grad():
            g0 = torch.cat([phi0 / 2.5, net.embed(image)], 1)
            g1 = g0 + _odefunc_reference(net.func, 0.0, g0)
            expected = 2.5 * (g1[:, :1] + net.postnet(g1))
            out = net(image, phi0)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)

    def test_image_evolution_one_euler_step_and_scale(self):
        net = _randomise(ImageEvolution(1, 2, 4, groups=2, scale=4.0, method="euler", step_size=1.0, adjoint=False),
                         std=0.3)
        image = torch.rand(2, 1, 6, 6)
        with torch.no_grad():
            h0 = net.embed(image)
            expected = 4.0 * net.postnet(h0 + _odefunc_reference(net.func, 0.0, h0))
            torch.testing.assert_close(net(image), expected, rtol=1e-5, atol=1e-6)

    def test_trajectories_with_a_late_start_are_the_tail_of_the_full_ones(self):
        ce = _randomise(ContourEvolution(1, 2, 4, groups=2, method="rk4", step_size=0.25, adjoint=False), std=0.1)
        ie = _randomise(ImageEvolution(1, 2, 4, groups=2, method="rk4", step_size=0.25, adjoint=False), std=0.1)
        image, phi0 = torch.rand(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
        with torch.no_grad():
            for readout in (False, True):
                full = ce.trajectory(image, phi0, [0.0, 0.5, 1.0], readout=readout)
                torch.testing.assert_close(ce.trajectory(image, phi0, [0.5, 1.0], readout=readout), full[1:])
            full = ie.trajectory(image, [0.0, 0.5, 1.0])
            torch.testing.assert_close(ie.trajectory(image, [0.5, 1.0]), full[1:])
            torch.testing.assert_close(full[-1], ie(image))
            # readout=False is the distance channel alone; readout=True adds s * psi
            plain = ce.trajectory(image, phi0, [0.0, 1.0])
            read = ce.trajectory(image, phi0, [0.0, 1.0], readout=True)
            g0 = torch.cat([phi0 / ce.scale, ce.embed(image)], 1)
            torch.testing.assert_close(read[0], phi0 + ce.scale * ce.postnet(g0))
            assert not torch.allclose(plain[-1], read[-1])

    def test_residual_refiner_is_k_euler_steps_with_their_own_weights(self):
        net = _randomise(ResidualRefiner(1, 2, 4, groups=2, blocks=2, scale=2.0), std=0.3)
        image, phi0 = torch.rand(1, 1, 6, 6), torch.randn(1, 1, 6, 6)
        with torch.no_grad():
            g0 = torch.cat([phi0 / 2.0, net.embed(image)], 1)
            g1 = g0 + 0.5 * _odefunc_reference(net.funcs[0], 0.0, g0)
            g2 = g1 + 0.5 * _odefunc_reference(net.funcs[1], 0.5, g1)
            expected = 2.0 * (g2[:, :1] + net.postnet(g2))
            torch.testing.assert_close(net(image, phi0), expected, rtol=1e-5, atol=1e-5)
        assert net.nfe_forward == 2
        with pytest.raises(ValueError, match=r"`phi0`: expected H=6 \(as in `image`\), got 5"):
            net(image, phi0[:, :, :5])
        with pytest.raises(ValueError, match="`image`: expected finite values"):
            net(torch.full_like(image, float("nan")), phi0)


# --------------------------------------------------------------------------------------------------
# Explicit flows, Chan-Vese and the narrow band: closed forms case by case (mutation-run survivors).

def _plane(a, b, size=12, dtype=torch.float64):
    """phi = a * col + b * row: |grad phi| = sqrt(a^2 + b^2) exactly, curvature 0."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=dtype), torch.arange(size, dtype=dtype), indexing="ij")
    return (a * xx + b * yy - a * size / 2 - b * size / 2)[None, None]


class TestExplicitFlowsContract:
    def test_rhs_on_a_plane_is_speed_times_slope(self):
        phi = _plane(3.0, 4.0)  # |grad| = 5
        inner = (..., slice(1, -1), slice(1, -1))
        for F in (0.7, -1.3):
            torch.testing.assert_close(level_set_rhs(phi, F)[inner], torch.full((10, 10), 5 * F, dtype=torch.float64)[None, None])
            # a plane has no curvature: the curvature weight adds nothing inside
            torch.testing.assert_close(level_set_rhs(phi, F, 2.0)[inner], level_set_rhs(phi, F)[inner])
        with pytest.raises(ValueError, match=r"`curvature_weight`: expected a finite number in \[0, inf\)"):
            level_set_rhs(phi, 1.0, -0.5)

    def test_curvature_term_of_a_disc_is_minus_one_over_r(self):
        phi = disc_phi(48, 14.0, center=23.5)  # phi = r0 - r: kappa |grad phi| = -1/r
        yy, xx = torch.meshgrid(torch.arange(48.0, dtype=torch.float64), torch.arange(48.0, dtype=torch.float64), indexing="ij")
        r = ((xx - 23.5) ** 2 + (yy - 23.5) ** 2).sqrt()
        ring = (r > 8) & (r < 18)
        rhs = level_set_rhs(phi, 0.0, 1.0)[0, 0]
        assert float((rhs - (-1 / r))[ring].abs().max()) < 2e-3

    def test_cfl_dt_formula(self):
        assert cfl_dt(1.0, 1.0) == pytest.approx(1 / (math.sqrt(2) + 4), rel=1e-15)
        assert cfl_dt(-2.0) == pytest.approx(1 / (2 * math.sqrt(2)), rel=1e-15)  # |F|
        assert cfl_dt(0.0, 0.5) == pytest.approx(0.5, rel=1e-15)
        assert cfl_dt(1.0, 0.0, cfl=0.5) == pytest.approx(0.5 / math.sqrt(2), rel=1e-15)
        assert cfl_dt(0.0, 0.0) == math.inf
        with pytest.raises(ValueError, match="`curvature_weight`"):
            cfl_dt(1.0, -1.0)

    def test_steps_split_each_interval_evenly_and_speed_sees_the_step_times(self):
        seen = []

        def speed(phi, t):
            seen.append(t)
            return 0.5

        phi0 = disc_phi(16, 4.0, center=7.5)
        out = evolve(phi0, [0.0, 1.0, 1.5], dt=0.3, speed=speed)  # ceil(1 / 0.3) = 4 steps of 0.25, then 2
        assert seen == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25])
        seen.clear()
        evolve(phi0, [0.0, 1.0], dt=0.25, speed=speed)  # exactly 4 steps, not 5 from rounding
        assert len(seen) == 4
        # one step is phi + h * rhs
        one = evolve(phi0, [0.0, 0.5], dt=0.5, speed=0.5)
        torch.testing.assert_close(one[-1], phi0 + 0.5 * level_set_rhs(phi0, 0.5), rtol=0, atol=1e-15)
        assert out.shape == (3, 1, 1, 16, 16)

    def test_single_time_returns_the_start(self):
        phi0 = disc_phi(8, 3.0)
        out = evolve(phi0, [0.0], dt=0.1, speed=1.0)
        assert out.shape == (1, 1, 1, 8, 8) and torch.equal(out[0], phi0)

    def test_more_bad_arguments(self):
        phi0 = disc_phi(8, 3.0)
        with pytest.raises(ValueError, match="`times`: expected a non-empty strictly increasing sequence, got \\[\\]"):
            evolve(phi0, [], dt=0.1)
        with pytest.raises(ValueError, match=r"`dt`: expected a finite number in \(0, inf\)"):
            evolve(phi0, [0.0, 1.0], dt=0.0)
        with pytest.raises(ValueError, match="`reinit_every`: expected >= 0, got -1"):
            evolve(phi0, [0.0, 1.0], dt=0.1, reinit_every=-1)
        with pytest.raises(ValueError, match="`speed`: expected finite values"):
            evolve(phi0, [0.0, 1.0], dt=0.1, speed=torch.full_like(phi0, float("nan")))
        with pytest.raises(ValueError, match=r"b = 1\b.*use dt <= 0\.1847"):
            evolve(phi0, [0.0, 1.0], dt=0.2, speed=1.0, curvature_weight=1.0)
        # a step exactly at the CFL limit is allowed
        evolve(phi0, [0.0, 1 / math.sqrt(2)], dt=1 / math.sqrt(2), speed=1.0)

    def test_reinit_every_k_steps(self):
        phi0 = 2.0 * disc_phi(24, 6.0, center=11.5)
        out = evolve(phi0, [0.0, 1.0], dt=0.25, speed=0.5, reinit_every=2)[-1]
        phi = phi0
        for k in range(1, 5):
            phi = phi + 0.25 * level_set_rhs(phi, 0.5)
            if k % 2 == 0:
                phi = reinitialize(phi)
        torch.testing.assert_close(out, phi, rtol=0, atol=1e-12)

    def test_reinitialize_one_step_on_a_plane(self):
        # |grad phi| = 3 everywhere: one step is phi + dt S (1 - 3) with S = phi / sqrt(phi^2 + eps^2)
        phi = _plane(3.0, 0.0)
        inner = (..., slice(1, -1), slice(1, -1))
        for dt, eps in ((0.5, 1.0), (0.25, 2.0)):
            S = phi / torch.sqrt(phi * phi + eps * eps)
            out = reinitialize(phi, steps=1, dt=dt, epsilon=eps)
            torch.testing.assert_close(out[inner], (phi - 2 * dt * S)[inner], rtol=0, atol=1e-12)
        assert torch.equal(reinitialize(phi, steps=0), phi)
        reinitialize(phi, steps=1, dt=1 / math.sqrt(2))  # the CFL limit itself is allowed
        with pytest.raises(ValueError, match=r"`steps`: expected an integer in \[0, inf\]"):
            reinitialize(phi, steps=-1)
        with pytest.raises(ValueError, match=r"`epsilon`: expected a finite number in \(0, inf\)"):
            reinitialize(phi, epsilon=0.0)

    def test_edge_indicator_of_ramps(self):
        # G_sigma * (a x) = a x away from the border (symmetric kernel): g = 1 / (1 + sum_c |grad I_c|^2)
        yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        inner = (0, 0, slice(6, -6), slice(6, -6))
        g = edge_indicator((0.5 * xx)[None, None])
        torch.testing.assert_close(g[inner], torch.full((20, 20), 0.8), rtol=1e-5, atol=1e-5)
        g2 = edge_indicator(torch.stack([0.5 * xx, 0.5 * yy])[None], sigma=2.0)
        assert g2.shape == (1, 1, 32, 32)
        inner2 = (0, 0, slice(8, -8), slice(8, -8))
        torch.testing.assert_close(g2[inner2], torch.full((16, 16), 1 / 1.5), rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match=r"`sigma`: expected a finite number in \(0, inf\)"):
            edge_indicator(torch.zeros(1, 1, 8, 8), sigma=0.0)

    def test_linear_forcing_defaults_and_bad_sizes(self):
        lf = LinearForcing()
        assert (lf.steps, lf.scale, lf.epsilon) == (20, 3.0, 1.0)
        assert lf.weights.tolist() == pytest.approx([0.0, 0.01, 0.0, 0.0, 0.0])
        for kw, name, low in [({"steps": 0}, "steps", r"\[1, inf\]"), ({"scale": 0.0}, "scale", r"\(0, inf\)"),
                              ({"epsilon": 0.0}, "epsilon", r"\(0, inf\)")]:
            with pytest.raises(ValueError, match=rf"`{name}`: expected .* in {low}"):
                LinearForcing(**kw)

    def _lf(self, weights, steps=10):
        lf = LinearForcing(steps=steps).double()
        with torch.no_grad():
            lf.weights.copy_(torch.tensor(weights, dtype=torch.float64))
        return lf

    def test_linear_forcing_features_are_the_documented_speeds(self):
        img = torch.rand(1, 1, 20, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        phi0 = disc_phi(20, 5.0, center=9.5)
        dt, vmax = 1 / 10, 0.5 / (math.sqrt(2) / 10)
        soft = lambda f: vmax * torch.tanh(f / vmax)  # noqa: E731
        # w3: the prior tanh(phi0 / s); w4: the intensity I - 1/2 (channel mean)
        F = soft(0.8 * narrow_band(phi0, 3.0) + 1.5 * (img - 0.5))
        expected = evolve(phi0, [0.0, 1.0], dt=dt, speed=F)[-1]
        torch.testing.assert_close(self._lf([0.0, 0.0, 0.0, 0.8, 1.5])(img.expand(1, 3, 20, 20), phi0), expected)

        # w2: the Chan-Vese speed (I - c2)^2 - (I - c1)^2 with the smoothed means of the current phi
        def cv(phi, t):
            c1, c2 = region_means(img, phi, 1.0)
            return soft(2.0 * ((img - c2) ** 2 - (img - c1) ** 2))
        expected = evolve(phi0, [0.0, 1.0], dt=dt, speed=cv)[-1]
        torch.testing.assert_close(self._lf([0.0, 0.0, 2.0, 0.0, 0.0])(img, phi0), expected)

    def test_linear_forcing_clamps_the_curvature_weight(self):
        img, phi0 = torch.rand(1, 1, 16, 16, dtype=torch.float64), disc_phi(16, 5.0, center=7.5)
        bmax = 0.125 * 10
        expected = evolve(phi0, [0.0, 1.0], dt=0.1, curvature_weight=bmax)[-1]
        torch.testing.assert_close(self._lf([0.0, 100.0, 0.0, 0.0, 0.0])(img, phi0), expected)
        assert torch.equal(self._lf([0.0, -1.0, 0.0, 0.0, 0.0])(img, phi0), phi0)  # b < 0 clamps to 0

    def test_linear_forcing_path(self):
        lf = self._lf([0.5, 0.1, 0.0, 0.0, 0.0], steps=4)
        img, phi0 = torch.rand(2, 1, 12, 12, dtype=torch.float64), disc_phi(12, 3.0).expand(2, 1, 12, 12)
        path = lf(img, phi0, return_path=True)
        assert path.shape == (5, 2, 1, 12, 12) and torch.equal(path[0], phi0)
        assert torch.equal(path[-1], lf(img, phi0))
        with pytest.raises(ValueError, match=r"`phi0`: expected W=12 \(as in `image`\), got 11"):
            lf(img, phi0[..., :11])
        with pytest.raises(ValueError, match="`image`: expected finite values"):
            lf(torch.full_like(img, float("nan")), phi0)


class TestChanVeseContract:
    def test_region_means_smoothed_and_per_channel(self):
        img = torch.rand(2, 3, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
        phi = torch.randn(2, 1, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
        H = 0.5 * (1 + (2 / math.pi) * torch.atan(phi / 0.7))
        c1, c2 = region_means(img, phi, 0.7)
        assert c1.shape == (2, 3, 1, 1)
        torch.testing.assert_close(c1, (img * H).sum((2, 3), keepdim=True) / H.sum((2, 3), keepdim=True))
        torch.testing.assert_close(c2, (img * (1 - H)).sum((2, 3), keepdim=True) / (1 - H).sum((2, 3), keepdim=True))
        c1, c2 = region_means(img, torch.ones(2, 1, 5, 4, dtype=torch.float64))  # no outside
        torch.testing.assert_close(c1, img.mean((2, 3), keepdim=True))
        assert float(c2.abs().max()) == 0.0

    def test_one_step_without_length_is_the_explicit_data_and_area_flow(self):
        # mu = 0: phi1 = phi + dt delta_eps(phi) (-nu - l1 (I - c1)^2 + l2 (I - c2)^2), channel mean, sharp means
        g = torch.Generator().manual_seed(7)
        img = torch.rand(1, 2, 6, 6, dtype=torch.float64, generator=g)
        phi = torch.randn(1, 1, 6, 6, dtype=torch.float64, generator=g)
        inside = (phi > 0).to(torch.float64)
        c1 = (img * inside).sum((2, 3), keepdim=True) / inside.sum()
        c2 = (img * (1 - inside)).sum((2, 3), keepdim=True) / (1 - inside).sum()
        eps, dt, nu, l1, l2 = 2.0, 0.3, 0.4, 1.5, 0.5
        delta = eps / (math.pi * (eps ** 2 + phi ** 2))
        region = (-l1 * (img - c1) ** 2 + l2 * (img - c2) ** 2).mean(1, keepdim=True)
        expected = phi + dt * delta * (-nu + region)
        out = chan_vese(img, phi, mu=0.0, nu=nu, lambda1=l1, lambda2=l2, dt=dt, steps=1, epsilon=eps)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)

    def test_steps_and_path(self):
        img, phi0 = torch.rand(1, 1, 8, 8, dtype=torch.float64), disc_phi(8, 3.0)
        assert torch.equal(chan_vese(img, phi0, steps=0), phi0)
        path = chan_vese(img, phi0, steps=3, return_path=True)
        assert path.shape == (4, 1, 1, 8, 8) and torch.equal(path[0], phi0)
        assert torch.equal(path[-1], chan_vese(img, phi0, steps=3))

    def test_bad_weights_name_themselves(self):
        img, phi0 = torch.rand(1, 1, 8, 8), disc_phi(8, 3.0).float()
        for kw, name in [({"mu": -0.1}, "mu"), ({"nu": float("nan")}, "nu"), ({"lambda1": -1.0}, "lambda1"),
                         ({"lambda2": -1.0}, "lambda2"), ({"dt": 0.0}, "dt"), ({"steps": -1}, "steps"),
                         ({"epsilon": 0.0}, "epsilon")]:
            with pytest.raises(ValueError, match=f"`{name}`"):
                chan_vese(img, phi0, **kw)
            if name not in ("dt", "steps"):
                with pytest.raises(ValueError, match=f"`{name}`"):
                    chan_vese_energy(img, phi0, **kw)
        with pytest.raises(TypeError, match="`image`: expected a floating-point tensor"):
            chan_vese(torch.ones(1, 1, 8, 8, dtype=torch.long), phi0)

    def test_energy_of_a_constant_level_set(self):
        # grad phi = 0 (no length); H = H_eps(2) everywhere, so c1 = c2 = mean(I):
        # E = nu H HW + sum_x mean_c (l1 H + l2 (1 - H)) (I - m)^2
        img = torch.rand(1, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
        phi = torch.full((1, 1, 5, 6), 2.0, dtype=torch.float64)
        H = 0.5 * (1 + (2 / math.pi) * math.atan(2.0 / 1.5))
        m = img.mean((2, 3), keepdim=True)
        data = ((1.2 * H + 0.7 * (1 - H)) * (img - m) ** 2).mean(1).sum()
        expected = 0.3 * H * 30 + data
        out = chan_vese_energy(img, phi, mu=0.0, nu=0.3, lambda1=1.2, lambda2=0.7, epsilon=1.5)
        assert out.shape == (1,) and float(out[0]) == pytest.approx(float(expected), rel=1e-12)
        # the length term is mu * sum delta_eps(phi) |grad phi|
        disc = disc_phi(12, 4.0)
        img1 = torch.rand(1, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
        length = (1.5 / (math.pi * (1.5 ** 2 + disc ** 2)) * grad_norm(disc)).sum()
        diff = chan_vese_energy(img1, disc, mu=0.4, epsilon=1.5) - chan_vese_energy(img1, disc, mu=0.0, epsilon=1.5)
        assert float(diff[0]) == pytest.approx(0.4 * float(length), rel=1e-12)


class TestNarrowBandContract:
    def test_loss_over_valid_pixels_and_no_valid_pixel(self):
        pred = torch.zeros(1, 1, 2, 2, requires_grad=True)
        target = torch.tensor([[[[3.0, 3.0], [0.0, -3.0]]]])
        valid = torch.tensor([[[True, False], [True, True]]])
        assert float(narrow_band_loss(pred, target, valid=valid).detach()) == pytest.approx(2 * math.tanh(1) ** 2 / 3)
        assert float(narrow_band_loss(pred, target, scale=1.5).detach()) == pytest.approx(3 * math.tanh(2) ** 2 / 4)
        loss = narrow_band_loss(pred, target, valid=torch.zeros(1, 2, 2, dtype=torch.bool))
        g, = torch.autograd.grad(loss, pred)
        assert float(loss.detach()) == 0.0 and float(g.abs().max()) == 0.0

    def test_bad_inputs_name_the_argument(self):
        x = torch.zeros(1, 1, 2, 2)
        with pytest.raises(TypeError, match="`pred`: expected a floating-point tensor"):
            narrow_band_loss(x.long(), x)
        with pytest.raises(TypeError, match="`target`: expected a floating-point tensor"):
            narrow_band_loss(x, x.long())
        with pytest.raises(ValueError, match="`pred`: expected finite values"):
            narrow_band_loss(torch.full_like(x, float("nan")), x)
        with pytest.raises(ValueError, match="`target`: expected finite values"):
            narrow_band_loss(x, torch.full_like(x, float("inf")))
        with pytest.raises(ValueError, match=r"`scale`: expected a finite number in \(0, inf\)"):
            narrow_band(x, 0.0)

    def test_module_form(self):
        from pixelbook.levelset import NarrowBandLoss
        pred, target = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
        valid = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(9)) > 0.5
        m = NarrowBandLoss(scale=2.0)
        assert torch.equal(m(pred, target, valid), narrow_band_loss(pred, target, scale=2.0, valid=valid))
        assert repr(NarrowBandLoss()) == "NarrowBandLoss(scale=3.0)"
        with pytest.raises(ValueError, match="`scale`"):
            NarrowBandLoss(scale=-1.0)

    def test_scores_use_scale_and_beta2(self):
        labels = torch.ones(1, 4, 4, dtype=torch.bool)
        phi = torch.full((1, 1, 4, 4), 3.0)
        s = segmentation_scores(phi, labels, scale=1.5)
        assert s["mae"] == pytest.approx(1 - 0.5 * (1 + math.tanh(2)), abs=1e-7)
        assert segmentation_scores(phi, labels)["mae"] == pytest.approx(1 - 0.5 * (1 + math.tanh(1)), abs=1e-7)
        half = phi.clone()
        half[..., 2:] = -3.0  # P = 1, R = 1/2
        assert segmentation_scores(half, labels, beta2=1.0)["fbeta"] == pytest.approx(2 / 3)
        with pytest.raises(ValueError, match="`phi`: expected finite values"):
            segmentation_scores(torch.full((1, 1, 4, 4), float("nan")), labels)


class TestNeuralOdeSecondRound:
    """Survivors of the mutation run of levelset/neural_ode.py, each pinned by a documented behaviour."""

    def test_default_architectures(self):
        ce, ie, rr, f = ContourEvolution(), ImageEvolution(), ResidualRefiner(), ODEFunc(3)
        for model, embed in ((ce, 8), (ie, 16), (rr, 8)):
            assert [type(m).__name__ for m in model.embed] == ["Conv2d", "GroupNorm", "Softplus", "Conv2d"]
            assert model.embed[0].in_channels == 1 and model.embed[-1].out_channels == embed
            assert model.embed[1].num_groups == 8 and model.scale == 3.0
        for func in (ce.func, ie.func, rr.funcs[0], f):  # hidden 32, 3 layers, time channel, 8 groups, no dilation
            assert [c.out_channels for c in func.convs][:-1] == [32, 32] and len(func.convs) == 3
            assert func.time_channel and [n.num_groups for n in func.norms] == [8, 8]
            assert all(c.dilation == (1, 1) for c in func.convs)
        assert len(rr.funcs) == 4 and rr.nfe_forward == 0 and ce.nfe_forward == 0 and ce.nfe_backward == 0

    def test_options_reach_the_dynamics_and_the_solver(self):
        ce = ContourEvolution(dilation=2, rtol=1e-4, t1=2.0)
        ie = ImageEvolution(time_channel=False, groups=2, dilation=2, rtol=1e-4, max_num_steps=7)
        rr = ResidualRefiner(dilation=2, blocks=1)
        for func in (ce.func, ie.func, rr.funcs[0]):
            assert func.convs[1].dilation == (2, 2)
        assert ie.func.convs[0].in_channels == 16 and ie.func.norms[0].num_groups == 2
        assert (ce.rtol, ce.t1, ie.rtol, ie.max_num_steps) == (1e-4, 2.0, 1e-4, 7)

    def test_rtol_alone_controls_a_model_solve(self):
        net = ImageEvolution(1, 2, 4, groups=2, rtol=1e-3, atol=0.0, adjoint=False)
        assert net(torch.rand(1, 1, 6, 6)).shape == (1, 1, 6, 6)

    def test_configure_solver_keeps_the_step_size_for_another_fixed_method(self):
        net = ContourEvolution(method="rk4", step_size=0.25, adjoint=False)
        net.configure_solver(method="euler")
        assert net.step_size == 0.25
        net.configure_solver(max_num_steps=1)
        assert net.max_num_steps == 1
        with pytest.raises(ValueError, match=r"^`step_size`: expected a finite number in \(0, inf\), got 0.0$"):
            net.configure_solver(step_size=0.0)

    def test_bad_initial_contours_name_phi0(self):
        for net in (ContourEvolution(1, 2, 4, groups=2, method="euler", step_size=0.5, adjoint=False),
                    ResidualRefiner(1, 2, 4, groups=2, blocks=1)):
            image = torch.rand(1, 1, 4, 4)
            with pytest.raises(ValueError, match=r"^`phi0`: expected shape \(N, 1, H, W\), got \(1, 2, 4, 4\)$"):
                net(image, torch.zeros(1, 2, 4, 4))
            with pytest.raises(ValueError, match=r"^`phi0`: expected finite values"):
                net(image, torch.full((1, 1, 4, 4), float("nan")))
            with pytest.raises(TypeError, match=r"^`phi0`: expected a floating-point tensor"):
                net(image, torch.zeros(1, 1, 4, 4, dtype=torch.long))
        with pytest.raises(ValueError, match=r"^`image`: expected shape \(N, 1, H, W\), got \(1, 2, 4, 4\)$"):
            ImageEvolution(1, 2, 4, groups=2, method="euler", step_size=0.5, adjoint=False)(torch.zeros(1, 2, 4, 4))

    def test_plain_trajectory_is_the_distance_channel(self):
        net = _randomise(ContourEvolution(1, 2, 4, groups=2, scale=2.5, method="euler", step_size=1.0, adjoint=False),
                         std=0.3)
        image, phi0 = torch.rand(1, 1, 6, 6), torch.randn(1, 1, 6, 6)
        with torch.no_grad():
            g0 = torch.cat([phi0 / 2.5, net.embed(image)], 1)
            g1 = g0 + _odefunc_reference(net.func, 0.0, g0)
            torch.testing.assert_close(net.trajectory(image, phi0, [0.0, 1.0])[-1], phi0 + 2.5 * (g1[:, :1] - g0[:, :1]),
                                       rtol=1e-5, atol=1e-5)

    def test_time_of_any_dtype_enters_the_time_channel(self):
        f = _randomise(ODEFunc(2, hidden=4, groups=2), 0.5)
        x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(f(torch.tensor(0.5, dtype=torch.float64), x), f(torch.tensor(0.5), x))

    def test_residual_refiner_times_in_float64(self):
        net = _randomise(ResidualRefiner(1, 2, 4, groups=2, blocks=3), std=0.3).double()
        image, phi0 = torch.rand(1, 1, 6, 6, dtype=torch.float64), torch.randn(1, 1, 6, 6, dtype=torch.float64)
        with torch.no_grad():
            g = g0 = torch.cat([phi0 / 3.0, net.embed(image)], 1)
            for k in range(3):
                g = g + _odefunc_reference(net.funcs[k], k / 3, g) / 3
            torch.testing.assert_close(net(image, phi0), phi0 + 3.0 * ((g[:, :1] - g0[:, :1]) + net.postnet(g)),
                                       rtol=0, atol=1e-12)

    def test_user_dynamics_see_the_time(self):
        class _T(torch.nn.Module):
            def forward(self, t, y):
                return t * torch.ones_like(y)
        y = solve_ode(_T(), torch.zeros(2, dtype=torch.float64), [0.0, 1.0], method="rk4", step_size=0.5)
        torch.testing.assert_close(y[-1], torch.full((2,), 0.5, dtype=torch.float64))  # y = t^2 / 2, exact for rk4

    def test_adjoint_with_an_unused_parameter(self):
        f = _Decay()
        f.unused = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
        y = solve_ode(f, torch.ones(2, dtype=torch.float64), [0.0, 1.0], atol=1e-9, adjoint=True)
        y[-1].sum().backward()
        assert float(f.k.grad) == pytest.approx(-2 * math.exp(-1), rel=1e-6)
        assert f.unused.grad is None or float(f.unused.grad.abs().max()) == 0.0

    def test_messages_start_with_the_phase(self):
        with pytest.raises(ODESolveError, match="^ODE solve failed: 'dopri5' needed more than max_num_steps=3 steps"):
            solve_ode(_Decay(), torch.ones(2, dtype=torch.float64), [0.0, 10.0], atol=1e-12, max_num_steps=3)
        with pytest.raises(ValueError, match="^`atol`: rtol and atol cannot both be 0 for an adaptive method$"):
            solve_ode(_Decay(), torch.ones(2), [0.0, 1.0], atol=0.0)
        f = ODEFunc(2, hidden=4, groups=2)
        f.nfe_limit = 0
        with pytest.raises(ODESolveError, match=r"^ODE solve failed: more than 0 function evaluations \(NFE\) at t=0; "
                                                r"loosen the tolerance \(atol=nan, rtol=nan now"):
            f(torch.tensor(0.0), torch.zeros(1, 2, 4, 4))


class TestLevelSetThirdRound:
    """Survivors of the mutation runs of chan_vese.py, evolution.py and narrow_band.py, each pinned by a
    documented behaviour (messages naming the argument, defaults, closed forms)."""

    def test_shape_messages_name_the_argument(self):
        img, phi = torch.rand(1, 1, 8, 8), disc_phi(8, 3.0).float()
        for fn in (region_means, chan_vese, chan_vese_energy):
            with pytest.raises(ValueError, match=r"^`image`: expected shape \(N, C, H, W\), got \(8, 8\)$"):
                fn(img[0, 0], phi)
            with pytest.raises(ValueError, match=r"^`phi`: expected shape \(N, 1, H, W\), got \(1, 8, 8\)$"):
                fn(img, phi[0])
            with pytest.raises(ValueError, match=r"^`phi`: expected H=8 \(as in `image`\), got 9$"):
                fn(img, torch.zeros(1, 1, 9, 8))
        with pytest.raises(ValueError, match=r"^`phi`: expected H=8 \(as in `image`\), got 9$"):
            chan_vese(img, torch.zeros(1, 1, 9, 8), steps=0)  # checked even without a step
        with pytest.raises(ValueError, match=r"^`epsilon`: expected a finite number in \(0, inf\), got 0.0$"):
            chan_vese(img, phi, steps=0, epsilon=0.0)
        chan_vese_energy(img, phi, lambda1=0.5, lambda2=0.5)  # any non-negative weights
        with pytest.raises(ValueError, match=r"^`image`: expected shape \(N, C, H, W\), got \(8, 8\)$"):
            edge_indicator(img[0, 0])
        with pytest.raises(ValueError, match=r"^`image`: expected finite values"):
            edge_indicator(torch.full_like(img, float("nan")))
        lf = LinearForcing(steps=2)
        with pytest.raises(ValueError, match=r"^`phi0`: expected finite values"):
            lf(img, torch.full_like(phi, float("nan")))

    def test_region_means_with_less_than_one_pixel_of_weight(self):
        # smoothed weights summing to less than 1 pixel are still a weighted mean (only an empty region is 0)
        img = torch.rand(1, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
        far = torch.full((1, 1, 4, 4), 100.0, dtype=torch.float64)
        c1, c2 = region_means(img, -far, 1.0)  # H_eps(-100) ~ 0.003 everywhere: inside weight 0.05
        torch.testing.assert_close(c1, img.mean((2, 3), keepdim=True))
        c1, c2 = region_means(img, far, 1.0)
        torch.testing.assert_close(c2, img.mean((2, 3), keepdim=True))

    def test_chan_vese_default_steps_and_batched_energy(self):
        img = torch.rand(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
        phi = torch.cat([disc_phi(8, 3.0), -disc_phi(8, 2.0)])
        assert torch.equal(chan_vese(img[:1, :1], phi[:1]), chan_vese(img[:1, :1], phi[:1], steps=100))
        batch = chan_vese_energy(img, phi, nu=0.2)
        single = torch.cat([chan_vese_energy(img[i:i + 1], phi[i:i + 1], nu=0.2) for i in range(2)])
        torch.testing.assert_close(batch, single, rtol=1e-12, atol=0)

    def test_explicit_flows_in_float64_use_exact_times_and_speeds(self):
        phi0 = disc_phi(16, 5.0, center=7.5)
        one = evolve(phi0, [0.0, 0.1], dt=0.1, speed=0.3)[-1]
        torch.testing.assert_close(one, phi0 + 0.1 * level_set_rhs(phi0, 0.3), rtol=0, atol=1e-15)
        phi = _plane(3.0, 4.0)
        torch.testing.assert_close(level_set_rhs(phi, 0.3)[..., 1:-1, 1:-1], torch.full((1, 1, 10, 10), 1.5, dtype=torch.float64),
                                   rtol=0, atol=1e-12)
        assert float(level_set_rhs(phi).abs().max()) == 0.0  # default: no speed, no curvature

    def test_more_evolve_argument_checks(self):
        phi0 = disc_phi(8, 3.0)
        with pytest.raises(ValueError, match="`times`: expected a non-empty strictly increasing sequence"):
            evolve(phi0, [0.0, 2.0, 1.0], dt=0.1)
        with pytest.raises(ValueError, match=r"^`curvature_weight`: expected a finite number in \[0, inf\)"):
            evolve(phi0, [0.0, 1.0], dt=0.1, curvature_weight=-1.0, check_cfl=False)
        with pytest.raises(ValueError, match=r"^`dt`: expected a finite number in \(0, inf\), got 0.0$"):
            reinitialize(phi0, dt=0.0)
        torch.testing.assert_close(reinitialize(phi0), reinitialize(phi0, steps=20, dt=0.5, epsilon=1.0), rtol=0, atol=0)
        assert not torch.equal(reinitialize(phi0), reinitialize(phi0, steps=21))

    def test_edge_indicator_at_a_step_edge(self):
        # g = 1 / (1 + |grad (G_sigma * I)|^2) with a sampled Gaussian of radius ceil(3 sigma), central differences
        sigma, H, W = 1.5, 8, 40
        img = torch.zeros(1, 1, H, W, dtype=torch.float64)
        img[..., 20:] = 4.0
        r = math.ceil(3 * sigma)
        j = torch.arange(-r, r + 1, dtype=torch.float64)
        w = torch.exp(-j ** 2 / (2 * sigma ** 2))
        w = w / w.sum()
        row = img[0, 0, 0]
        smooth = torch.stack([(w * row[x - r:x + r + 1]).sum() for x in range(r, W - r)])  # columns r .. W-r-1
        gx = (smooth[2:] - smooth[:-2]) / 2  # columns r+1 .. W-r-2
        expected = 1 / (1 + gx ** 2)
        g = edge_indicator(img, sigma=sigma)[0, 0, 4, r + 1:W - r - 1]
        torch.testing.assert_close(g, expected, rtol=0, atol=1e-6)

    def test_linear_forcing_prior_uses_its_scale(self):
        img = torch.rand(1, 1, 16, 16, dtype=torch.float64)
        phi0 = disc_phi(16, 5.0, center=7.5)
        lf = LinearForcing(steps=10, scale=1.5).double()
        with torch.no_grad():
            lf.weights.copy_(torch.tensor([0.0, 0.0, 0.0, 0.8, 0.0], dtype=torch.float64))
        vmax = 0.5 / (math.sqrt(2) / 10)
        F = vmax * torch.tanh(0.8 * torch.tanh(phi0 / 1.5) / vmax)
        torch.testing.assert_close(lf(img, phi0), evolve(phi0, [0.0, 1.0], dt=0.1, speed=F)[-1])

    def test_narrow_band_defaults_and_bounds(self):
        assert float(narrow_band(torch.tensor(3.0))) == pytest.approx(math.tanh(1))  # s = 3 px by default
        pred, target = torch.full((1, 1, 2, 2), 1.5), torch.zeros(1, 1, 2, 2)
        assert float(narrow_band_loss(pred, target, scale=1.5)) == pytest.approx(math.tanh(1) ** 2)
        from pixelbook.levelset import NarrowBandLoss
        assert NarrowBandLoss(scale=0.5).scale == 0.5
        with pytest.raises(ValueError, match=r"^`scale`: expected a finite number in \(0, inf\), got 0.0$"):
            NarrowBandLoss(scale=0.0)
        with pytest.raises(ValueError, match=r"^`valid`: expected H=2 \(as in `pred`\), got 3$"):
            narrow_band_loss(pred, target, valid=torch.ones(1, 3, 2, dtype=torch.bool))
        one = torch.zeros(1, 2, 2, dtype=torch.bool)
        one[0, 1, 0] = True
        target[0, 0, 1, 0] = 3.0  # the one valid pixel: (tanh(0.5) - tanh(1))^2
        assert float(narrow_band_loss(pred, target, valid=one)) == pytest.approx((math.tanh(0.5) - math.tanh(1)) ** 2)


def test_segmentation_scores_a_zero_level_pixel_is_background():
    """The segmentation is phi > 0 strictly: a pixel on the zero level set is not foreground."""
    labels = torch.zeros(1, 4, 4, dtype=torch.bool)
    labels[0, :2] = True
    phi = torch.where(labels, 1.0, -1.0)[:, None].clone()
    assert segmentation_scores(phi, labels)["pooled_iou"] == 1.0
    phi[0, 0, 3, 3] = 0.0  # a background pixel exactly on the level set
    assert segmentation_scores(phi, labels)["pooled_iou"] == 1.0
    phi[0, 0, 0, 0] = 0.0  # a foreground pixel on the level set is lost: IoU 7/8
    assert segmentation_scores(phi, labels)["pooled_iou"] == pytest.approx(7 / 8)
