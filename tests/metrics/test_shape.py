"""Tests of pixelbook.metrics.shape: star-shape violations, boundary length, components."""

import torch

from pixelbook.metrics import boundary_length, count_components, star_violations

f64 = torch.float64


def _disk(n, r, center=None):
    c = (n - 1) / 2 if center is None else center
    yy, xx = torch.meshgrid(torch.arange(n, dtype=f64), torch.arange(n, dtype=f64), indexing="ij")
    return ((yy - c) ** 2 + (xx - c) ** 2 <= r * r).to(f64)


class TestStarViolations:
    def test_star_and_convex_shapes_have_none(self):
        d = _disk(21, 7).bool()[None]
        assert int(star_violations(d, torch.tensor([10.0, 10.0]))) == 0

    def test_counts_pixels_behind_a_hole(self):
        m = torch.ones(1, 1, 7, dtype=torch.bool)
        m[0, 0, 2] = False  # centre at col 0; cols 3..6 see the hole on their way
        assert int(star_violations(m, torch.tensor([0.0, 0.0]))) == 4


class TestBoundaryLengthAndComponents:
    def test_by_hand(self):
        lab = torch.tensor([[[0, 1, 0, 0], [0, 0, 0, 1], [2, 2, 0, 0]]])
        assert int(boundary_length(lab)) == (2 + 1 + 1) + (1 + 2 + 0 + 2)  # row pairs by row + column pairs by column
        assert int(count_components(lab)) == 4
        diag = torch.tensor([[[1, 0], [0, 1]]])
        assert int(count_components(diag)) == 4 and int(count_components(diag, connectivity=2)) == 2
