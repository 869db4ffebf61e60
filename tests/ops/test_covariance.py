"""Tests of pixelbook.ops.covariance: region vectors and the memory-lean joint covariance."""

import numpy as np
import pytest
import torch

import pixelbook.ops.covariance as cov_mod
from pixelbook.ops import joint_covariance, region_vectors

f64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


class TestRegionVectors:
    def test_unfold_equals_slicing(self):
        x = torch.rand(2, 3, 9, 7, generator=_gen(0))
        for R in (1, 2, 3, 4):
            hh, ww = 9 - R + 1, 7 - R + 1
            sliced = torch.stack([x[:, :, i:i + hh, j:j + ww] for i in range(R) for j in range(R)], 2).reshape(2, 3, R * R, -1)
            assert torch.equal(region_vectors(x, R), sliced)

    def test_number_of_points_is_valid_windows(self):
        assert region_vectors(torch.zeros(1, 1, 10, 8), 3).shape == (1, 1, 9, 8 * 6)

    def test_error_names_radius(self):
        with pytest.raises(ValueError, match="`radius`: expected at most"):
            region_vectors(torch.zeros(1, 1, 4, 4), 5)


class TestJointCovariance:
    def test_equals_numpy_covariance(self):
        p, y = torch.rand(1, 1, 6, 7, generator=_gen(3)), torch.rand(1, 1, 6, 7, generator=_gen(4))
        S = joint_covariance(p, y, 2)[0, 0]
        Z = np.concatenate([region_vectors(p, 2)[0, 0].numpy(), region_vectors(y, 2)[0, 0].numpy()]).astype(np.float64)
        np.testing.assert_allclose(S.numpy(), np.cov(Z, bias=True), rtol=1e-12, atol=1e-15)

    def test_gradcheck_float64_both_inputs(self):
        p = torch.rand(2, 1, 4, 5, dtype=f64, generator=_gen(5), requires_grad=True)
        y = torch.rand(2, 1, 4, 5, dtype=f64, generator=_gen(6), requires_grad=True)
        W = torch.randn(8, 8, dtype=f64, generator=_gen(9))  # a random (non-symmetric) upstream gradient
        assert torch.autograd.gradcheck(lambda a, b: (joint_covariance(a, b, 2) * W).sum(), (p, y))
        W3 = torch.randn(18, 18, dtype=f64, generator=_gen(10))
        assert torch.autograd.gradcheck(lambda a: (joint_covariance(a, y.detach(), 3, normalize=False) * W3).sum(), (p,))

    def test_chunking_changes_nothing(self, monkeypatch):
        p = torch.rand(5, 2, 9, 9, dtype=f64, generator=_gen(7), requires_grad=True)
        y = torch.rand(5, 2, 9, 9, dtype=f64, generator=_gen(8))
        S1 = joint_covariance(p, y, 3)
        g1, = torch.autograd.grad((S1 * S1).sum(), p)
        monkeypatch.setattr(cov_mod, "_CHUNK_BYTES", {"cpu": 1, "other": 1})  # one map per chunk
        S2 = joint_covariance(p, y, 3)
        g2, = torch.autograd.grad((S2 * S2).sum(), p)
        torch.testing.assert_close(S1, S2, rtol=1e-13, atol=0)
        torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-15)

    def test_error_names_targets(self):
        with pytest.raises(ValueError, match="`target`: expected H=8"):
            joint_covariance(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 7, 8))
