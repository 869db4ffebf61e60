"""Tests of pixelbook.metrics.image."""

import math

import pytest
import torch

from pixelbook.metrics import psnr, psnr_per_image, ssim, ssim_per_image


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestPsnr:
    def test_hand_computed_mean_of_per_image_psnr(self):
        target = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
        pred = torch.tensor([0.1, 0.01], dtype=torch.float64).reshape(2, 1, 1, 1).expand(2, 1, 4, 4)
        # MSE 1e-2 -> 20 dB, 1e-4 -> 40 dB; the mean of per-image PSNR is 30 dB (pooled MSE would give 22.97)
        per_image = psnr_per_image(pred, target)
        torch.testing.assert_close(per_image, torch.tensor([20.0, 40.0], dtype=torch.float64))
        assert psnr(pred, target) == pytest.approx(30.0)
        assert psnr(pred * 255, target * 255, data_range=255.0) == pytest.approx(30.0)

    def test_identical_images_are_infinite(self):
        x = torch.rand(1, 3, 8, 8, generator=gen(18))
        assert psnr(x, x) == math.inf

    def test_error_data_range(self):
        with pytest.raises(ValueError, match=r"`data_range`: expected a finite number in \(0, inf\)"):
            psnr(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), data_range=0)

    def test_error_shape_mismatch(self):
        with pytest.raises(ValueError, match="`target`: expected C=3"):
            psnr(torch.rand(1, 3, 4, 4), torch.rand(1, 1, 4, 4))


class TestSsim:
    def test_identical_is_one_and_noise_lowers_it_monotonically(self):
        x = torch.rand(2, 3, 24, 24, generator=gen(19))
        noise = torch.randn(2, 3, 24, 24, generator=gen(20))
        assert ssim(x, x) == pytest.approx(1.0)
        scores = [ssim((x + s * noise).clamp(0, 1), x) for s in (0.02, 0.1, 0.3)]
        assert scores[0] > scores[1] > scores[2]

    def test_per_image_values_and_their_mean(self):
        a = torch.rand(2, 1, 16, 16, generator=gen(21))
        b = torch.rand(2, 1, 16, 16, generator=gen(22))
        per_image = ssim_per_image(a, b)
        assert per_image.shape == (2,)
        assert float(per_image[0]) == pytest.approx(ssim(a[:1], b[:1]), rel=1e-12)
        assert ssim(a, b) == pytest.approx(float(per_image.mean()), rel=1e-12)

    def test_error_image_smaller_than_window(self):
        with pytest.raises(ValueError, match="`pred`: expected H and W >= kernel_size=11"):
            ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))

    def test_error_even_kernel(self):
        with pytest.raises(ValueError, match="`kernel_size`: expected an odd int"):
            ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), kernel_size=10)
