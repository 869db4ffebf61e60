"""Tests of pixelbook.ops.regions: canonical renumbering, region statistics, centroid."""

import pytest
import torch

import fakes
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelbook.ops import canonical_regions, centroid, region_stats


_probs, _partition = fakes.random_probs, fakes.random_partition


class TestCanonicalRegions:
    def test_numbers_regions_by_first_appearance(self):
        ids, n = canonical_regions(torch.tensor([[[5, 5, -2], [9, -2, 5]], [[1, 1, 1], [1, 1, 0]]]))
        assert ids.tolist() == [[[0, 0, 1], [2, 1, 0]], [[0, 0, 0], [0, 0, 1]]]
        assert n.tolist() == [3, 2]

    @given(st.integers(0, 10_000))
    @settings(max_examples=25, deadline=None)
    def test_any_relabelling_gives_identical_ids(self, seed):
        y = _partition(B=3, N=4, seed=seed)
        g = torch.Generator().manual_seed(seed + 1)
        values = torch.randperm(50, generator=g)[:4] - 20  # distinct arbitrary values, some negative
        ids, n = canonical_regions(y)
        ids2, n2 = canonical_regions(values[y])
        assert torch.equal(ids, ids2) and torch.equal(n, n2)

    def test_ignored_pixels_get_minus_one_and_are_not_regions(self):
        ids, n = canonical_regions(torch.tensor([[[255, 3, 3], [4, 255, 4]]]), ignore_index=255)
        assert ids.tolist() == [[[-1, 0, 0], [1, -1, 1]]] and n.tolist() == [2]

    def test_float_labels_raise(self):
        with pytest.raises(TypeError, match="`labels`: expected an integer tensor"):
            canonical_regions(torch.zeros(1, 2, 2))


class TestRegionStats:
    def test_means_variances_sizes_by_hand(self):
        s = torch.tensor([[[[1.0, 0.5, 0.0]], [[0.0, 0.5, 1.0]]]])
        stats = region_stats(s, torch.tensor([[[7, 7, 1]]]))
        assert stats.sizes.tolist() == [[2.0, 1.0]]
        assert stats.means.tolist() == [[[0.75, 0.25], [0.0, 1.0]]]
        assert stats.variances.tolist() == [[0.125, 0.0]]  # ((.25)^2 + (.25)^2) per pixel, both pixels
        assert stats.present.tolist() == [[True, True]]

    def test_images_with_fewer_regions_have_empty_padding_slots(self):
        stats = region_stats(_probs(B=2, H=2, W=2), torch.tensor([[[0, 1], [2, 2]], [[0, 0], [1, 1]]]))
        assert stats.present.tolist() == [[True, True, True], [True, True, False]]
        assert stats.sizes[1, 2] == 0 and torch.equal(stats.means[1, 2], torch.zeros(3, dtype=torch.float64))


class TestCentroid:
    def test_by_hand_and_empty_mask(self):
        m = torch.zeros(2, 4, 4)
        m[0, 0, 0], m[0, 2, 2] = 1, 1
        m[1, 3, 1] = 1
        torch.testing.assert_close(centroid(m), torch.tensor([[1.0, 1.0], [3.0, 1.0]]))
        with pytest.raises(ValueError, match="`mask`: image 0 is empty"):
            centroid(torch.zeros(1, 3, 3))
