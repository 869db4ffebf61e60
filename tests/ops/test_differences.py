"""Tests of pixelbook.ops.differences: gradients, upwind norm, curvature, the grad/div pair."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelbook.ops import curvature, curvature_term, div2d, grad2d, grad_norm, gradient, upwind_grad_norm

f64 = torch.float64


def disc_phi(size=128, r0=30.0, center=None, dtype=torch.float64):
    """Exact SDF of a disc, positive inside: (1, 1, size, size)."""
    c = (size / 2 - 0.5 + 0.3) if center is None else center
    yy, xx = torch.meshgrid(torch.arange(size, dtype=dtype), torch.arange(size, dtype=dtype), indexing="ij")
    return (r0 - ((xx - c) ** 2 + (yy - c) ** 2).sqrt())[None, None]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


class TestGradient:
    def test_linear_ramp_exact_inside_and_halved_at_the_border(self):
        phi = (2.0 * torch.arange(6.0) - 1.0).repeat(1, 1, 4, 1)
        gy, gx = gradient(phi)
        assert torch.equal(gx[..., 1:-1], torch.full_like(gx[..., 1:-1], 2.0)) and float(gy.abs().max()) == 0
        assert gx[0, 0, 0, 0] == 1.0  # replicate padding: (phi[1] - phi[0]) / 2

    def test_one_sided_schemes(self):
        phi = torch.tensor([[[[0.0, 1.0, 4.0, 9.0]]]])
        assert gradient(phi, "forward")[1][0, 0, 0].tolist() == [1.0, 3.0, 5.0, 0.0]
        assert gradient(phi, "backward")[1][0, 0, 0].tolist() == [0.0, 1.0, 3.0, 5.0]

    def test_bad_scheme_and_nan(self):
        with pytest.raises(ValueError, match="`scheme`: expected one of"):
            gradient(torch.zeros(1, 1, 3, 3), "upwind")
        with pytest.raises(ValueError, match="`phi`: expected finite values"):
            gradient(torch.tensor([[[[0.0, float("nan")]]]]))


class TestGradNorm:
    def test_is_one_for_a_signed_distance_away_from_the_centre(self):
        phi = disc_phi(64, 20.0)
        ring = (phi.abs() < 10)
        assert float((grad_norm(phi)[ring] - 1).abs().max()) < 0.01


class TestUpwindGradNorm:
    def test_hand_computed_one_dimensional_front(self):
        phi = torch.tensor([[[[3.0, 2.0, 1.0, 0.0, -1.0, 0.5]]]])
        # F > 0 (grow): min(D-, 0)^2 + max(D+, 0)^2 ; F < 0 (shrink): max(D-, 0)^2 + min(D+, 0)^2
        grow = upwind_grad_norm(phi, 1.0)[0, 0, 0]
        shrink = upwind_grad_norm(phi, -1.0)[0, 0, 0]
        # index 4 is a valley (D- = -1, D+ = 1.5): growing uses both sides, shrinking neither
        torch.testing.assert_close(grow, torch.tensor([0.0, 1.0, 1.0, 1.0, math.sqrt(3.25), 0.0]), atol=1e-6, rtol=0)
        torch.testing.assert_close(shrink, torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.5]), atol=1e-6, rtol=0)

    def test_speed_map_selects_per_pixel(self):
        phi = disc_phi(16, 5.0)
        F = torch.where(torch.rand(1, 1, 16, 16) > 0.5, 1.0, -1.0).double()
        expected = torch.where(F > 0, upwind_grad_norm(phi, 1.0), upwind_grad_norm(phi, -1.0))
        torch.testing.assert_close(upwind_grad_norm(phi, F), expected)

    def test_gradcheck_float64(self):
        phi = (disc_phi(8, 3.0) + 0.01 * torch.randn(1, 1, 8, 8, dtype=torch.float64)).requires_grad_()
        assert torch.autograd.gradcheck(lambda p: upwind_grad_norm(p, 1.0), (phi,))


class TestCurvature:
    @pytest.mark.parametrize("r0", [10.0, 20.0, 30.0])
    def test_minus_one_over_r_on_a_circle(self, r0):
        phi = disc_phi(96, r0)
        rim = phi.abs() < 0.5
        assert float(curvature(phi)[rim].mean()) == pytest.approx(-1 / r0, rel=0.02)

    def test_curvature_term_equals_curvature_times_norm_away_from_kinks(self):
        phi = disc_phi(64, 20.0)
        ring = phi.abs() < 8
        torch.testing.assert_close(curvature_term(phi)[ring], (curvature(phi) * grad_norm(phi))[ring], rtol=1e-4, atol=1e-6)

    def test_curvature_term_bounded_by_the_hessian_on_noise(self):
        phi = torch.randn(2, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        assert float(curvature(phi).abs().max()) > 50  # kappa itself exceeds 1/dx by far where grad ~ 0
        p = torch.nn.functional.pad(phi, (1, 1, 1, 1), mode="replicate")
        pxx = p[..., 1:-1, 2:] - 2 * phi + p[..., 1:-1, :-2]
        pyy = p[..., 2:, 1:-1] - 2 * phi + p[..., :-2, 1:-1]
        pxy = (p[..., 2:, 2:] - p[..., 2:, :-2] - p[..., :-2, 2:] + p[..., :-2, :-2]) / 4
        frobenius = (pxx ** 2 + pyy ** 2 + 2 * pxy ** 2).sqrt()
        assert bool((curvature_term(phi).abs() <= frobenius + 1e-9).all())

    def test_gradcheck_float64(self):
        phi = (disc_phi(7, 2.5) + 0.01 * torch.randn(1, 1, 7, 7, dtype=torch.float64)).requires_grad_()
        assert torch.autograd.gradcheck(curvature_term, (phi,))


class TestGradDiv:
    @settings(max_examples=30, deadline=None)
    @given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 10_000))
    def test_div_is_minus_adjoint_of_grad(self, h, w, seed):
        g = _gen(seed)
        u, v = torch.randn(2, 1, h, w, generator=g, dtype=f64), torch.randn(2, 2, h, w, generator=g, dtype=f64)
        lhs, rhs = (grad2d(u) * v).sum(), -(u * div2d(v)).sum()
        assert abs(float(lhs - rhs)) <= 1e-12 * max(1.0, float(lhs.abs()))

    def test_grad_of_ramp_and_constant(self):
        ramp = (2.0 * torch.arange(4.0))[None, None, :, None].expand(1, 1, 4, 3)
        g = grad2d(ramp)
        assert g[0, 0, :3].eq(2).all() and g[0, 0, 3].eq(0).all() and g[0, 1].eq(0).all()
        assert grad2d(torch.ones(1, 1, 5, 5)).abs().max() == 0

    def test_shape_errors(self):
        with pytest.raises(ValueError, match="`u`: expected shape"):
            grad2d(torch.zeros(1, 2, 4, 4))
        with pytest.raises(ValueError, match="`v`: expected shape"):
            div2d(torch.zeros(1, 1, 4, 4))
