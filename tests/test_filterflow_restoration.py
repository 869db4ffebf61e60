"""pixelbook.filterflow.restoration against independent computations: the degradations drawn from
the same generator as the data module's, the per-image info, ``predict``'s batches, modes and
clamping, the metrics' keys, and ``flow_edge_ratio`` against a per-pixel loop in float64.
Complements ``TestRestoration`` in tests/test_filterflow.py."""

from __future__ import annotations

import pytest
import torch

from pixelbook.data import degradations as dg
from pixelbook.filterflow import restoration as rs
from pixelbook.metrics import psnr_per_image, ssim_per_image

BLUR = {"size": 5, "min_length": 1.0, "max_length": 4.0, "cells": 2}


def test_tasks_and_their_filter_normalisations():
    assert rs.TASKS == {"deblur": "softmax", "jpeg": "none", "sr": "none"}
    assert rs.__all__ == ["TASKS", "degrade", "predict", "image_metrics", "flow_edge_ratio"]


# --------------------------------------------------------------------------------------------------
# degrade


def test_degrade_rejects_an_unknown_task_and_a_bad_shape():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"^`task`: expected one of \('deblur', 'jpeg', 'sr'\), got 'blur'$"):
        rs.degrade("blur", x, BLUR)
    with pytest.raises(ValueError, match=r"^`clean`: expected shape \(N, C, H, W\), got \(1, 8, 8\)$"):
        rs.degrade("sr", x[0], {"scale": 2})


def test_deblur_is_the_data_modules_blur_from_the_same_generator():
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y, info = rs.degrade("deblur", x, BLUR, torch.Generator().manual_seed(7))
    ref, ref_info = dg.random_nonuniform_motion_blur(x, size=5, min_length=1.0, max_length=4.0, cells=2,
                                                     generator=torch.Generator().manual_seed(7))
    assert torch.equal(y, ref)
    assert sorted(info) == ["angle_a", "length"]
    # the larger of the two motion lengths, per image
    assert torch.equal(info["length"], torch.maximum(ref_info["length_a"], ref_info["length_b"]))
    assert not torch.equal(info["length"], ref_info["length_a"]) or not torch.equal(info["length"], ref_info["length_b"])
    assert torch.equal(info["angle_a"], ref_info["angle_a"])
    # each parameter is passed on: another cells or length range gives another result, and a size
    # too large for 8 x 8 images is refused (a larger kernel of the same motions blurs alike)
    with pytest.raises(ValueError, match=r"^`size`: expected an odd kernel side with size // 2 < min\(H, W\) = 8, got 17$"):
        rs.degrade("deblur", x, {**BLUR, "size": 17})
    for key, value in (("cells", 4), ("min_length", 2.5), ("max_length", 2.0)):
        other, _ = rs.degrade("deblur", x, {**BLUR, key: value}, torch.Generator().manual_seed(7))
        ref, _ = dg.random_nonuniform_motion_blur(x, **{**BLUR, key: value}, generator=torch.Generator().manual_seed(7))
        assert torch.equal(other, ref) and not torch.equal(other, y), key


def test_jpeg_with_one_quality_compresses_every_image_at_it():
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    y, info = rs.degrade("jpeg", x, {"quality": 20.0, "qualities": [90]})  # "quality" wins; a float is cast
    assert sorted(info) == ["quality"]
    assert info["quality"].dtype == torch.int64 and info["quality"].tolist() == [20, 20, 20]
    assert torch.equal(y, dg.jpeg_compress(x, 20))


def test_jpeg_draws_each_images_quality_from_the_generator():
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    y, info = rs.degrade("jpeg", x, {"qualities": [10, 40, 80]}, torch.Generator().manual_seed(3))
    expected = torch.tensor([10, 40, 80])[torch.randint(3, (8,), generator=torch.Generator().manual_seed(3))]
    assert torch.equal(info["quality"], expected)
    assert len(set(expected.tolist())) == 3  # the draw exercises every quality
    for n, q in enumerate(expected.tolist()):
        assert torch.equal(y[n:n + 1], dg.jpeg_compress(x[n:n + 1], q)), n
    # the qualities may be given as floats; they are cast before compressing
    y2, info2 = rs.degrade("jpeg", x, {"qualities": [10.0, 40.0, 80.0]}, torch.Generator().manual_seed(3))
    assert info2["quality"].dtype == torch.int64 and torch.equal(info2["quality"], expected) and torch.equal(y2, y)


def test_sr_is_the_bicubic_round_trip_and_reports_the_scale():
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    y, info = rs.degrade("sr", x, {"scale": 2.0})  # cast to int
    assert torch.equal(y, dg.bicubic_degrade(x, 2)[0]) and y.shape == x.shape
    assert sorted(info) == ["scale"] and info["scale"].dtype == torch.int64 and info["scale"].tolist() == [2, 2]


# --------------------------------------------------------------------------------------------------
# predict


class _Affine(torch.nn.Module):
    """``{"out": 3x - 1, "filters": x + 10 + training}``; records the batch sizes and modes it sees."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(3.0))
        self.calls = []

    def forward(self, x):
        self.calls.append((x.shape[0], self.training, torch.is_grad_enabled()))
        return {"out": self.w * x - 1, "filters": x + 10 + float(self.training)}


@pytest.mark.parametrize("training", [True, False])
def test_predict_batches_clamps_and_restores_the_mode(training):
    model = _Affine().train(training)
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    out, filters = rs.predict(model, x, batch_size=2, filters=True)
    assert model.training is training
    assert model.calls == [(2, False, False), (2, False, False), (1, False, False)]
    assert torch.equal(out, (3 * x - 1).clamp(0, 1))
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0  # both bounds are hit
    assert torch.equal(filters, x + 10) and not out.requires_grad


def test_predict_rejects_a_batch_size_below_one():
    with pytest.raises(ValueError, match=r"^`batch_size`: expected an integer in \[1, inf\], got 0$"):
        rs.predict(_Affine(), torch.rand(2, 1, 2, 2), batch_size=0)
    with pytest.raises(TypeError, match=r"^`batch_size`: expected an integer"):
        rs.predict(_Affine(), torch.rand(2, 1, 2, 2), batch_size=2.0)


def test_predict_defaults_one_batch_of_64_and_no_filters():
    model = _Affine()
    x = torch.rand(65, 1, 2, 2, generator=torch.Generator().manual_seed(6))
    out = rs.predict(model, x)
    assert torch.is_tensor(out) and out.shape == x.shape
    assert [c[0] for c in model.calls] == [64, 1]
    model.calls.clear()
    out = rs.predict(model, x[:3], 2)
    assert [c[0] for c in model.calls] == [2, 1] and torch.equal(out, (3 * x[:3] - 1).clamp(0, 1))


# --------------------------------------------------------------------------------------------------
# image_metrics


def test_image_metrics_are_the_per_image_psnr_and_ssim():
    g = torch.Generator().manual_seed(8)
    target = torch.rand(2, 1, 16, 16, generator=g)
    pred = (target + 0.1 * torch.randn(2, 1, 16, 16, generator=g)).clamp(0, 1)
    m = rs.image_metrics(pred, target)
    assert sorted(m) == ["psnr", "ssim"]
    assert torch.equal(m["psnr"], psnr_per_image(pred, target)) and torch.equal(m["ssim"], ssim_per_image(pred, target))
    assert m["psnr"].dtype == torch.float64 and m["psnr"].shape == (2,)


# --------------------------------------------------------------------------------------------------
# flow_edge_ratio


def _ratio_by_hand(filters, image, top=0.2, bottom=0.5):
    """The same statistic, pixel by pixel in float64, from the definitions in the docstring."""
    N, T, H, W = filters.shape
    k = int(round(T ** 0.5))
    r = k // 2
    f, im = filters.double(), image.double()
    flows, grads = [], []
    for n in range(N):
        for i in range(1, H - 1):
            for j in range(1, W - 1):
                vx = sum(float(f[n, t, i, j]) * (t % k - r) for t in range(T))
                vy = sum(float(f[n, t, i, j]) * (t // k - r) for t in range(T))
                flows.append((vx * vx + vy * vy) ** 0.5)
                gx = (im[n, :, i, j + 1] - im[n, :, i, j - 1]) / 2
                gy = (im[n, :, i + 1, j] - im[n, :, i - 1, j]) / 2
                grads.append(float((gx * gx + gy * gy).sum()) ** 0.5)
    order = sorted(range(len(grads)), key=grads.__getitem__)
    n_low, n_high = max(1, int(bottom * len(order))), max(1, int(top * len(order)))
    low = sum(flows[q] for q in order[:n_low]) / n_low
    high = sum(flows[q] for q in order[-n_high:]) / n_high
    return high / low


def _random_case(seed, n=2, c=3, h=7, w=9, k=3):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, c, h, w, generator=g)
    filters = (3 * torch.randn(n, k * k, h, w, generator=g)).softmax(1)
    return filters, image


@pytest.mark.parametrize("kw", [{}, {"top": 0.1, "bottom": 0.3}, {"top": 0.5, "bottom": 0.05}, {"top": 1e-9, "bottom": 1e-9}])
def test_flow_edge_ratio_equals_a_per_pixel_computation(kw):
    filters, image = _random_case(9)
    ours = rs.flow_edge_ratio(filters, image, **kw)
    assert isinstance(ours, float)
    assert ours == pytest.approx(_ratio_by_hand(filters, image, **kw), rel=1e-5)


def test_flow_edge_ratio_defaults_and_a_5x5_window():
    filters, image = _random_case(10, n=1, c=2, h=8, w=6, k=5)
    assert rs.flow_edge_ratio(filters, image) == pytest.approx(_ratio_by_hand(filters, image, 0.2, 0.5), rel=1e-5)
    # the defaults matter: other fractions give another number on this input
    assert rs.flow_edge_ratio(filters, image) != pytest.approx(_ratio_by_hand(filters, image, 0.3, 0.5), rel=1e-3)
    assert rs.flow_edge_ratio(filters, image) != pytest.approx(_ratio_by_hand(filters, image, 0.2, 0.4), rel=1e-3)


def test_flow_edge_ratio_when_the_flat_pixels_do_not_move():
    image = torch.zeros(1, 1, 6, 6)
    image[..., 3:] = 1.0  # an edge between columns 2 and 3: interior columns 2, 3 are strong, 1, 4 flat
    filters = torch.zeros(1, 9, 6, 6)
    filters[:, 4] = 1.0  # identity: zero flow everywhere
    assert rs.flow_edge_ratio(filters, image) == float("inf")  # 0 / 0 counts as no edge preference
    filters[:, 4, :, 2:4], filters[:, 5, :, 2:4] = 0.5, 0.5  # half a pixel on the edge columns only
    assert rs.flow_edge_ratio(filters, image) == float("inf")
    filters[:, 4], filters[:, 5] = 0.25, 0.75  # 0.75 px on the flat pixels: a finite ratio
    filters[:, 4, :, 2:4], filters[:, 5, :, 2:4] = 0.0, 1.0  # 1 px on the edges
    assert rs.flow_edge_ratio(filters, image) == pytest.approx(1 / 0.75)


def test_flow_edge_ratio_arguments():
    # a fraction above 1 used to select a silent subset (top=1.5 gave top=0.5's ratio) and
    # filters of another size than the image gave a number or an IndexError; both are errors now
    filters, image = _random_case(11, n=1, c=1, h=6, w=6)
    for name in ("top", "bottom"):
        for bad in (0.0, 1.5, -0.2):
            with pytest.raises(ValueError, match=rf"^`{name}`: expected a finite number in \(0, 1\], got {bad}$"):
                rs.flow_edge_ratio(filters, image, **{name: bad})
        assert rs.flow_edge_ratio(filters, image, **{name: 1.0}) == pytest.approx(
            _ratio_by_hand(filters, image, **{name: 1.0}), rel=1e-5)  # 1 is allowed: every pixel
    for axis, sl, got in (("H", (slice(None), slice(None), slice(0, 5)), 5), ("W", (Ellipsis, slice(0, 4)), 4)):
        with pytest.raises(ValueError, match=rf"^`image`: expected {axis}=6 \(as in `filters`\), got {got}$"):
            rs.flow_edge_ratio(filters, image[sl])
    with pytest.raises(ValueError, match=r"^`image`: expected N=1 \(as in `filters`\), got 2$"):
        rs.flow_edge_ratio(filters, image.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match=r"^`image`: expected shape \(N, C, H, W\), got \(1, 6, 6\)$"):
        rs.flow_edge_ratio(filters, image[0])
    with pytest.raises(ValueError, match=r"^`filters`: expected shape \(N, T, H, W\), got \(9, 6, 6\)$"):
        rs.flow_edge_ratio(filters[0], image)
    for h, w in ((2, 6), (6, 2)):
        with pytest.raises(ValueError, match=rf"^`filters`: expected H, W >= 3 \(the border pixel is left out\), got \({h}, {w}\)$"):
            rs.flow_edge_ratio(filters[..., :h, :w], image[..., :h, :w])
    small_f, small_i = _random_case(12, n=1, c=1, h=3, w=3)  # one interior pixel: its own ratio, 1
    assert rs.flow_edge_ratio(small_f, small_i) == pytest.approx(1.0)
