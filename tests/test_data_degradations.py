"""pixelbook.data.degradations: motion kernels, non-uniform blur, JPEG, bicubic down-sampling, crops."""

import math

import pytest
import torch
import torch.nn.functional as F

from pixelbook.data import degradations as dg


def _centroid_and_direction(kernel):
    size = kernel.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    k = kernel.double()
    cx, cy = float((k * xx).sum()), float((k * yy).sum())
    # principal axis of the mass (second moments)
    sxx = float((k * (xx - cx) ** 2).sum())
    syy = float((k * (yy - cy) ** 2).sum())
    sxy = float((k * (xx - cx) * (yy - cy)).sum())
    angle = 0.5 * math.degrees(math.atan2(2 * sxy, sxx - syy))  # in image coordinates (y down)
    return cx, cy, -angle % 180, sxx + syy


class TestMotionKernel:
    def test_zero_length_is_the_identity(self):
        k = dg.motion_kernel(0, 30, size=5)
        expected = torch.zeros(5, 5)
        expected[2, 2] = 1
        torch.testing.assert_close(k, expected)

    def test_horizontal_and_vertical_integer_lengths_are_boxes(self):
        k = dg.motion_kernel(4, 0, size=7)
        # a segment from x = 1 to x = 5 on the centre row, sampled at 33 points 1/8 px apart and
        # splatted linearly: pixels 2, 3, 4 collect weight 8 each, the end pixels 1 and 5 collect
        # 1 + (7/8 + ... + 1/8) = 4.5, out of 33
        assert torch.all(k[[0, 1, 2, 4, 5, 6]] == 0)
        torch.testing.assert_close(k[3], torch.tensor([0, 4.5, 8, 8, 8, 4.5, 0]) / 33)
        torch.testing.assert_close(dg.motion_kernel(4, 90, size=7), k.T)

    @pytest.mark.parametrize("length,angle", [(6, 30), (9, 120), (12.5, 75), (3, 170)])
    def test_centred_point_symmetric_oriented_and_normalised(self, length, angle):
        k = dg.motion_kernel(length, angle, size=15)
        assert k.min() >= 0 and k.sum().item() == pytest.approx(1.0, abs=1e-6)
        torch.testing.assert_close(k, k.flip(0, 1), atol=1e-6, rtol=0)
        cx, cy, direction, spread = _centroid_and_direction(k)
        assert (cx, cy) == (pytest.approx(7, abs=1e-6), pytest.approx(7, abs=1e-6))
        assert min(abs(direction - angle), 180 - abs(direction - angle)) < 3
        # n equally spaced samples on a segment of length L have variance L²/12 · (n+1)/(n-1) (n = 8L+1
        # here), and bilinear splatting adds f(1 - f) <= 1/4 per axis for a sample at fraction f
        n = math.ceil(8 * length) + 1
        along = length ** 2 / 12 * (n + 1) / (n - 1)
        assert along - 1e-6 <= spread <= along + 0.5

    def test_default_size_holds_the_segment(self):
        assert dg.motion_kernel(5, 45).shape == (7, 7)
        assert dg.motion_kernel(6, 45).shape == (7, 7)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`size`: expected an odd"):
            dg.motion_kernel(3, 0, size=6)
        with pytest.raises(ValueError, match="`size`: expected at least 11"):
            dg.motion_kernel(10, 0, size=9)
        with pytest.raises(ValueError, match="`length`"):
            dg.motion_kernel(-1, 0)
        with pytest.raises(TypeError, match="`angle`: expected a real number"):
            dg.motion_kernel(3, "north")

    def test_random_kernels_follow_the_ranges_and_the_seed(self):
        g = torch.Generator().manual_seed(0)
        kernels, lengths, angles = dg.random_motion_kernels(50, 11, 2, 8, generator=g)
        assert kernels.shape == (50, 11, 11)
        assert lengths.min() >= 2 and lengths.max() <= 8 and angles.min() >= 0 and angles.max() < 180
        again = dg.random_motion_kernels(50, 11, 2, 8, generator=torch.Generator().manual_seed(0))
        assert torch.equal(kernels, again[0])


class TestBlur:
    def test_equals_conv2d_in_the_interior(self):
        g = torch.Generator().manual_seed(1)
        image = torch.rand(2, 3, 20, 20, generator=g)
        kernels = torch.rand(2, 5, 5, generator=g)
        out = dg.blur(image, kernels)
        for n in range(2):
            ref = F.conv2d(image[n:n + 1], kernels[n].expand(3, 1, 5, 5), groups=3)
            torch.testing.assert_close(out[n:n + 1, :, 2:-2, 2:-2], ref)

    def test_constant_image_stays_constant(self):
        image = torch.full((1, 1, 12, 12), 0.3)
        out = dg.blur(image, dg.motion_kernel(6, 33, size=9))
        torch.testing.assert_close(out, image)

    def test_nonuniform_blur_is_a_per_pixel_mixture(self):
        g = torch.Generator().manual_seed(2)
        image = torch.rand(1, 3, 24, 24, generator=g)
        ka, kb = dg.motion_kernel(6, 0, 9)[None], dg.motion_kernel(6, 90, 9)[None]
        mask = torch.zeros(1, 1, 24, 24)
        mask[..., :12] = 1.0
        out = dg.nonuniform_motion_blur(image, ka, kb, mask)
        torch.testing.assert_close(out[..., :12], dg.blur(image, ka)[..., :12])
        torch.testing.assert_close(out[..., 12:], dg.blur(image, kb)[..., 12:])

    def test_smooth_mask_spans_zero_to_one_and_is_smooth(self):
        mask = dg.smooth_random_mask(4, 32, 40, cells=3, generator=torch.Generator().manual_seed(3))
        assert mask.shape == (4, 1, 32, 40)
        assert torch.allclose(mask.amin(dim=(2, 3)), torch.zeros(4, 1))
        assert torch.allclose(mask.amax(dim=(2, 3)), torch.ones(4, 1))
        assert float(mask.diff(dim=-1).abs().max()) < 0.2  # no jumps between neighbouring pixels

    def test_random_nonuniform_blur_is_seeded_and_in_range(self):
        image = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
        a, info = dg.random_nonuniform_motion_blur(image, size=9, generator=torch.Generator().manual_seed(5))
        b, _ = dg.random_nonuniform_motion_blur(image, size=9, generator=torch.Generator().manual_seed(5))
        assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
        assert info["kernel_a"].shape == (3, 9, 9) and info["length_a"].max() <= 8
        assert float((a - image).abs().mean()) > 0.01  # it did blur

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`image`: expected values <= 1"):
            dg.random_nonuniform_motion_blur(torch.full((1, 1, 16, 16), 2.0))
        with pytest.raises(ValueError, match="`size`: expected an odd kernel side"):
            dg.random_nonuniform_motion_blur(torch.rand(1, 1, 16, 16), size=33)
        with pytest.raises(ValueError, match="`mask`: expected shape"):
            dg.nonuniform_motion_blur(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 3), torch.rand(1, 3, 3),
                                      torch.rand(1, 8, 8))
        with pytest.raises(ValueError, match="`kernels`: expected N=2"):
            dg.blur(torch.rand(2, 1, 8, 8), torch.rand(3, 3, 3))


class TestJpeg:
    def test_round_trip_error_shrinks_with_quality(self):
        g = torch.Generator().manual_seed(6)
        # a smooth image plus texture: JPEG's error depends on the quality factor
        image = (F.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=64, mode="bicubic", align_corners=False)
                 + 0.1 * torch.rand(2, 3, 64, 64, generator=g)).clamp(0, 1)
        errors = [float((dg.jpeg_compress(image, q) - image).abs().mean()) for q in (10, 20, 40, 90)]
        assert errors == sorted(errors, reverse=True)
        assert errors[-1] < errors[0] / 2

    def test_matches_pillow_directly(self):
        import io

        import numpy as np
        from PIL import Image

        image = torch.rand(1, 1, 16, 24, generator=torch.Generator().manual_seed(7))
        a = (image[0, 0] * 255).round().to(torch.uint8).numpy()
        buf = io.BytesIO()
        Image.fromarray(a, mode="L").save(buf, format="JPEG", quality=20)
        expected = torch.from_numpy(np.asarray(Image.open(buf)).astype(np.float32) / 255)
        torch.testing.assert_close(dg.jpeg_compress(image, 20)[0, 0], expected)

    def test_shape_dtype_and_bad_input(self):
        out = dg.jpeg_compress(torch.rand(2, 3, 8, 8, dtype=torch.float64), 40)
        assert out.shape == (2, 3, 8, 8) and out.dtype == torch.float64
        with pytest.raises(ValueError, match="`quality`: expected an integer in \\[1, 95\\]"):
            dg.jpeg_compress(torch.rand(1, 3, 8, 8), 100)
        with pytest.raises(ValueError, match="`image`: expected 1 or 3 channels"):
            dg.jpeg_compress(torch.rand(1, 2, 8, 8), 40)
        with pytest.raises(TypeError, match="`quality`"):
            dg.jpeg_compress(torch.rand(1, 3, 8, 8), 40.5)


class TestBicubic:
    def test_constant_image_is_unchanged(self):
        image = torch.full((1, 3, 16, 16), 0.4)
        up, low = dg.bicubic_degrade(image, 4)
        torch.testing.assert_close(up, image)
        torch.testing.assert_close(low, torch.full((1, 3, 4, 4), 0.4))

    def test_loses_detail_more_at_x4_than_x2(self):
        image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
        err2 = float((dg.bicubic_degrade(image, 2)[0] - image).abs().mean())
        err4 = float((dg.bicubic_degrade(image, 4)[0] - image).abs().mean())
        assert 0 < err2 < err4

    def test_low_resolution_is_antialiased_area_like(self):
        # a ±1 checkerboard at the Nyquist rate must vanish when anti-aliased by 2 (mean 0.5 left)
        board = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float().expand(1, 1, 16, 16)
        _, low = dg.bicubic_degrade(board, 2)
        assert float((low - 0.5).abs().max()) < 0.05

    def test_bad_input(self):
        with pytest.raises(ValueError, match="divisible by scale=4"):
            dg.bicubic_degrade(torch.rand(1, 3, 18, 16), 4)
        with pytest.raises(ValueError, match="`scale`: expected an integer in \\[2, inf\\]"):
            dg.bicubic_degrade(torch.rand(1, 3, 16, 16), 1)


class TestRandomCrops:
    def test_crops_come_from_the_images(self):
        images = [torch.arange(3 * 10 * 12, dtype=torch.float32).view(3, 10, 12), torch.rand(3, 9, 9)]
        crops = dg.random_crops(images, 20, 8, generator=torch.Generator().manual_seed(9))
        assert crops.shape == (20, 3, 8, 8)
        for crop in crops:
            found = any(torch.equal(crop, img[:, y:y + 8, x:x + 8]) for img in images
                        for y in range(img.shape[1] - 7) for x in range(img.shape[2] - 7))
            assert found

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`images\\[1\\]`: expected both sides >= size=8"):
            dg.random_crops([torch.rand(3, 10, 10), torch.rand(3, 6, 10)], 2, 8)
        with pytest.raises(ValueError, match="`images\\[1\\]`: expected C=3"):
            dg.random_crops([torch.rand(3, 10, 10), torch.rand(1, 10, 10)], 2, 8)
        with pytest.raises(ValueError, match="`images`: expected a non-empty list"):
            dg.random_crops([], 2, 8)
