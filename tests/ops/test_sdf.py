"""Tests of pixelbook.ops.sdf: signed distance, smoothed Heaviside and Dirac."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelbook.ops import dirac, heaviside, sdf_from_mask


def disc_phi(size=128, r0=30.0, center=None, dtype=torch.float64):
    """Exact SDF of a disc, positive inside: (1, 1, size, size)."""
    c = (size / 2 - 0.5 + 0.3) if center is None else center
    yy, xx = torch.meshgrid(torch.arange(size, dtype=dtype), torch.arange(size, dtype=dtype), indexing="ij")
    return (r0 - ((xx - c) ** 2 + (yy - c) ** 2).sqrt())[None, None]


class TestSdfFromMask:
    def test_hand_computed_square(self):
        m = torch.zeros(1, 5, 5, dtype=torch.bool)
        m[0, 1:4, 1:4] = True
        phi = sdf_from_mask(m)
        assert phi.shape == (1, 1, 5, 5) and phi.dtype == torch.float32
        assert phi[0, 0, 2].tolist() == [-0.5, 0.5, 1.5, 0.5, -0.5]
        assert phi[0, 0, 0, 0] == pytest.approx(-(math.sqrt(2) - 0.5))
        assert sdf_from_mask(m, half_pixel=False)[0, 0, 2].tolist() == [-1.0, 1.0, 2.0, 1.0, -1.0]

    def test_sign_matches_mask(self):
        m = torch.rand(3, 12, 9) > 0.5
        assert torch.equal(sdf_from_mask(m)[:, 0] > 0, m)

    def test_circle_error_at_most_half_pixel(self):
        exact = disc_phi(64, 20.0, dtype=torch.float32)
        phi = sdf_from_mask(exact[:, 0] > 0)
        near = exact.abs() < 5  # the EDT is exact to pixel centres; the half-pixel shift bounds the rest
        assert float((phi - exact)[near].abs().max()) <= 0.5 + 0.05
        assert float((sdf_from_mask(exact[:, 0] > 0, half_pixel=False) - exact)[near].abs().max()) > 0.7

    def test_empty_and_full_masks_get_the_image_diagonal(self):
        m = torch.zeros(2, 3, 4, dtype=torch.bool)
        m[1] = True
        phi = sdf_from_mask(m)
        assert torch.allclose(phi[0], torch.full((1, 3, 4), -5.0)) and torch.allclose(phi[1], torch.full((1, 3, 4), 5.0))

    def test_accepts_0_1_floats_and_ints(self):
        m = (torch.rand(2, 6, 6) > 0.5)
        assert torch.equal(sdf_from_mask(m.float()), sdf_from_mask(m)) and torch.equal(sdf_from_mask(m.long()), sdf_from_mask(m))

    def test_non_binary_mask_raises(self):
        with pytest.raises(ValueError, match=r"`mask`: expected binary values \{0, 1\}"):
            sdf_from_mask(torch.full((1, 4, 4), 0.5))

    def test_wrong_shape_raises(self):
        with pytest.raises(ValueError, match=r"`mask`: expected shape \(N, H, W\), got \(1, 1, 4, 4\)"):
            sdf_from_mask(torch.zeros(1, 1, 4, 4, dtype=torch.bool))

    def test_follows_device(self, device):
        assert sdf_from_mask(torch.ones(1, 4, 4, dtype=torch.bool, device=device).triu()).device.type == device.type


class TestHeavisideDirac:
    def test_values(self):
        assert heaviside(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0.25, 0.5, 0.75]
        assert float(dirac(torch.tensor(0.0), 2.0)) == pytest.approx(1 / (2 * math.pi))

    def test_dirac_is_the_derivative_of_heaviside(self):
        x = torch.linspace(-5, 5, 41, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(heaviside(x, 0.7).sum(), x)
        torch.testing.assert_close(g, dirac(x.detach(), 0.7))

    @given(st.floats(0.1, 5.0))
    @settings(max_examples=20, deadline=None)
    def test_dirac_integrates_to_one(self, eps):
        r = torch.logspace(-4, 4, 20001, dtype=torch.float64)   # fine near 0, out to L = 1e4
        x = torch.cat([-r.flip(0), torch.zeros(1, dtype=torch.float64), r])
        # the tails beyond |x| = L hold 2 eps / (pi L) + O(L^-3)
        assert float(torch.trapezoid(dirac(x, eps), x)) == pytest.approx(1.0 - 2 * eps / (math.pi * 1e4), abs=1e-6)

    def test_bad_epsilon(self):
        with pytest.raises(ValueError, match=r"`epsilon`: expected a finite number in \(0, inf\)"):
            heaviside(torch.zeros(3), 0.0)
