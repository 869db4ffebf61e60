"""Tests of pixelbook.ops.gated_conv: the sparse (gather–GEMM–scatter) path equals the masked dense one."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixelbook.ops import gated_conv2d
from pixelbook.ops import gated_conv as gc

f64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _case(seed, N=2, C=3, H=7, W=9, Cout=4, k=3, stride=1, density=0.4, dtype=f64):
    g = _gen(seed)
    x = torch.randn(N, C, H, W, generator=g, dtype=dtype)
    w = torch.randn(Cout, C, k, k, generator=g, dtype=dtype)
    b = torch.randn(Cout, generator=g, dtype=dtype)
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    m = (torch.rand(N, 1, Ho, Wo, generator=g) < density).to(dtype)
    return x, w, b, m


def _loop_conv(x, w, b, m, stride, dilation):
    """An independent reference: a Python loop over output pixels (tiny inputs only)."""
    N, C, H, W = x.shape
    Cout, _, k, _ = w.shape
    pad = dilation * (k - 1) // 2
    xp = F.pad(x, (pad, pad, pad, pad))
    Ho, Wo = m.shape[-2:]
    out = torch.zeros(N, Cout, Ho, Wo, dtype=x.dtype)
    for n, i, j in itertools.product(range(N), range(Ho), range(Wo)):
        if m[n, 0, i, j]:
            patch = xp[n, :, i * stride:i * stride + dilation * (k - 1) + 1:dilation,
                       j * stride:j * stride + dilation * (k - 1) + 1:dilation]
            out[n, :, i, j] = (w * patch).sum((1, 2, 3)) + (b if b is not None else 0)
    return out


class TestGatedConv2d:
    @pytest.mark.parametrize("k,stride,dilation", [(3, 1, 1), (3, 1, 2), (3, 2, 1), (3, 2, 3), (1, 1, 1),
                                                   (5, 1, 2), (1, 2, 1)])
    def test_both_paths_equal_a_pixel_loop(self, k, stride, dilation):
        x, w, b, m = _case(k * 10 + stride + dilation, k=k, stride=stride)
        ref = _loop_conv(x, w, b, m, stride, dilation)
        for impl in ("dense", "sparse"):
            torch.testing.assert_close(gated_conv2d(x, w, m, b, stride, dilation, impl=impl), ref)

    @pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
    @pytest.mark.parametrize("with_bias", [True, False])
    def test_sparse_equals_masked_dense_values_and_gradients(self, density, with_bias):
        x, w, b, m = _case(int(density * 10), density=density)
        b = b if with_bias else None
        leaves = [t.requires_grad_(True) for t in (x, w) + ((b,) if with_bias else ())]
        y_d = gated_conv2d(x, w, m, b, dilation=2, impl="dense")
        y_s = gated_conv2d(x, w, m, b, dilation=2, impl="sparse")
        torch.testing.assert_close(y_s, y_d, rtol=0, atol=1e-12)
        up = torch.randn(y_d.shape, generator=_gen(3), dtype=f64)
        g_d = torch.autograd.grad((y_d * up).sum(), leaves)
        g_s = torch.autograd.grad((y_s * up).sum(), leaves)
        for a, c in zip(g_s, g_d):
            torch.testing.assert_close(a, c, rtol=0, atol=1e-12)

    def test_skipped_pixels_are_exactly_zero_even_with_bias(self):
        x, w, b, m = _case(5, density=0.5)
        y = gated_conv2d(x, w, m, b, impl="sparse")
        assert bool((y.permute(1, 0, 2, 3)[:, m[:, 0] == 0] == 0).all())
        assert bool((y.permute(1, 0, 2, 3)[:, m[:, 0] == 1] != 0).all())

    def test_gradcheck_sparse_float64(self):
        x, w, b, m = _case(7, N=1, C=2, H=5, W=4, Cout=2)
        x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x, w, b: gc._gated_conv2d_sparse(x, w, m, b, 1, 2), (x, w, b))

    def test_bool_and_3d_masks_accepted(self):
        x, w, b, m = _case(8)
        y = gated_conv2d(x, w, m, b, impl="sparse")
        torch.testing.assert_close(gated_conv2d(x, w, m.bool(), b, impl="sparse"), y)
        torch.testing.assert_close(gated_conv2d(x, w, m[:, 0], b, impl="dense"), y)

    def test_output_on_input_dtype_float32(self):
        x, w, b, m = _case(9, dtype=torch.float32)
        y = gated_conv2d(x, w, m, b, impl="sparse")
        assert y.dtype == torch.float32 and y.is_contiguous()
        torch.testing.assert_close(y, gated_conv2d(x, w, m, b, impl="dense"), atol=1e-5, rtol=1e-5)

    def test_auto_picks_dense_above_threshold_and_when_the_mask_needs_grad(self, monkeypatch):
        calls = []
        monkeypatch.setattr(gc, "_gated_conv2d_sparse", lambda *a: calls.append("sparse") or 0)
        monkeypatch.setattr(gc, "_gated_conv2d_reference", lambda *a: calls.append("dense") or 0)
        x, w, b, _ = _case(10)
        full = torch.ones(2, 1, 7, 9, dtype=f64)
        sparse = torch.zeros(2, 1, 7, 9, dtype=f64)
        sparse[0, 0, 0, 0] = 1  # density 1/126 < AUTO_SPARSE_BELOW
        gated_conv2d(x, w, full, impl="auto")
        gated_conv2d(x, w, sparse, impl="auto")
        gated_conv2d(x, w, sparse.clone().requires_grad_(True), impl="auto")
        assert calls == ["dense", "sparse", "dense"]

    def test_auto_threshold_is_a_density(self):
        assert 0 < gc.AUTO_SPARSE_BELOW < 1

    def test_error_sparse_with_mask_requiring_grad(self):
        x, w, b, m = _case(11)
        with pytest.raises(ValueError, match="`mask`: the sparse path treats the mask as a constant"):
            gated_conv2d(x, w, m.requires_grad_(True), impl="sparse")

    @pytest.mark.parametrize("bad,match", [
        (dict(mask=torch.full((2, 1, 7, 9), 0.5, dtype=f64)), "`mask`: expected binary"),
        (dict(mask=torch.ones(2, 1, 7, 8, dtype=f64)), r"`mask`: expected the output size \(H, W\)=\(7, 9\)"),
        (dict(mask=torch.ones(3, 1, 7, 9, dtype=f64)), "`mask`: expected N=2"),
        (dict(weight=torch.ones(4, 3, 2, 2, dtype=f64)), "`weight`: expected an odd kernel"),
        (dict(weight=torch.ones(4, 5, 3, 3, dtype=f64)), "`weight`: expected C=3"),
        (dict(weight=torch.ones(4, 3, 3, 3)), "`weight`: expected dtype torch.float64"),
        (dict(bias=torch.ones(5, dtype=f64)), "`bias`: expected O=4"),
        (dict(dilation=0), "`dilation`: expected an integer in \\[1"),
        (dict(stride=1.5), "`stride`: expected an integer"),
        (dict(impl="fast"), "`impl`: expected one of"),
        (dict(x=torch.ones(2, 3, 7), weight=None), r"`x`: expected shape \(N, C, H, W\)"),
        (dict(x=torch.full((2, 3, 7, 9), float("nan"), dtype=f64)), "`x`: expected finite"),
        (dict(x=torch.ones(2, 3, 7, 9, dtype=torch.long)), "`x`: expected a floating-point"),
    ])
    def test_errors_name_the_argument(self, bad, match):
        x, w, b, m = _case(12)
        args = dict(x=x, weight=w, mask=m, bias=b, stride=1, dilation=1, impl="auto")
        args.update({k: v for k, v in bad.items() if v is not None})
        with pytest.raises((ValueError, TypeError), match=match):
            gated_conv2d(**args)

    def test_numpy_int_dilation_accepted(self):
        x, w, b, m = _case(13)
        torch.testing.assert_close(gated_conv2d(x, w, m, b, dilation=np.int64(2)),
                                   gated_conv2d(x, w, m, b, dilation=2))
