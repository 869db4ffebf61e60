"""SSIM against a closed form, scikit-image and the paper's definition written out [WANG04].

These replace a test that compared ``pixelbook.metrics.ssim`` with the torchmetrics function it
wrapped (which could not fail). ``ssim`` used to wrap torchmetrics, which departs from [WANG04] in
two ways that the tests below would catch (they were strict ``xfail`` until ``ssim`` followed the
paper):

* torchmetrics reflect-pads the images and averages the SSIM map over *every* pixel; the paper's
  reference code (and ``skimage.metrics.structural_similarity``) averages over full windows only.
  On the 20 x 17 noise pair below the two give 0.8285 and 0.7948; on large images they differ less.
* with a Gaussian window torchmetrics sizes it from ``sigma`` (``2 * int(3.5 * sigma + 0.5) + 1``)
  and ignores ``kernel_size``.
"""

import pytest
import torch
import torch.nn.functional as F

from pixelbook.metrics import ssim, ssim_per_image


def ssim_reference(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, kernel_size: int = 11,
                   sigma: float = 1.5) -> torch.Tensor:
    """[WANG04] Eq. 13 in float64: Gaussian-weighted local means, variances and covariance over every
    full ``kernel_size`` window (no padding), K1 = 0.01, K2 = 0.03; the mean over windows and
    channels of each image, ``(N,)``."""
    x, y = x.double(), y.double()
    channels = x.shape[1]
    t = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(channels, 1, kernel_size, kernel_size)

    def local_mean(z):
        return F.conv2d(z, window, groups=channels)

    mx, my = local_mean(x), local_mean(y)
    vx, vy, cxy = local_mean(x * x) - mx ** 2, local_mean(y * y) - my ** 2, local_mean(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.mean((1, 2, 3))


def _noisy_pair(seed=21, shape=(1, 3, 20, 17)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(*shape, generator=g)
    return a, (a + 0.2 * torch.randn(*shape, generator=g)).clamp(0, 1)


class TestSsimDefinition:
    @pytest.mark.parametrize("L, a, b", [(1.0, 0.2, 0.6), (255.0, 51.0, 153.0), (1.0, 0.0, 0.5)])
    def test_constant_images_match_the_closed_form(self, L, a, b):
        """Constant images: no variance, so SSIM = (2ab + C1) / (a² + b² + C1) with C1 = (0.01 L)²."""
        c1 = (0.01 * L) ** 2
        x, y = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
        a, b = float(x[0, 0, 0, 0]), float(y[0, 0, 0, 0])  # the float32 values
        assert ssim(x, y, data_range=L) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)

    def test_symmetric_and_one_only_for_identical_images(self):
        a, b = _noisy_pair()
        assert ssim(a, b) == pytest.approx(ssim(b, a), rel=1e-12)
        assert ssim(a, a) == pytest.approx(1.0) and ssim(a, b) < 0.95

    def test_the_reference_is_scikit_images_ssim(self):
        """The reference above is the paper's definition: it equals scikit-image's implementation
        (Gaussian weights, sigma 1.5, population covariance), an independent library."""
        from skimage.metrics import structural_similarity

        a, b = _noisy_pair()
        expected = structural_similarity(a[0].double().numpy(), b[0].double().numpy(), channel_axis=0,
                                         gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=1.0)
        assert float(ssim_reference(a, b)) == pytest.approx(expected, rel=1e-9)

    def test_equals_the_papers_definition_on_noise(self):
        a, b = _noisy_pair()
        assert ssim(a, b) == pytest.approx(float(ssim_reference(a, b)), abs=1e-6)
        # and not torchmetrics' (0.8285 here, against 0.7948: the module docstring)
        from torchmetrics.functional.image import structural_similarity_index_measure

        assert abs(ssim(a, b) - float(structural_similarity_index_measure(a.double(), b.double(), data_range=1.0))) > 0.02

    @pytest.mark.parametrize("shape, data_range", [((3, 1, 48, 48), 1.0), ((2, 3, 11, 30), 1.0),
                                                   ((1, 2, 25, 19), 255.0)])
    def test_per_image_equals_scikit_image(self, shape, data_range):
        """Each image of a batch against scikit-image, to 1e-6: several images, channels, a window
        as tall as the image, the uint8 scale."""
        from skimage.metrics import structural_similarity

        a, b = _noisy_pair(seed=5, shape=shape)
        a, b = a * data_range, b * data_range
        got = ssim_per_image(a, b, data_range=data_range)
        assert got.shape == (shape[0],) and got.dtype == torch.float64
        for i in range(shape[0]):
            want = structural_similarity(a[i].double().numpy(), b[i].double().numpy(), channel_axis=0,
                                         gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=data_range)
            assert float(got[i]) == pytest.approx(want, abs=1e-6)

    def test_float32_input_matches_float64(self):
        a, b = _noisy_pair(seed=6, shape=(2, 1, 24, 24))
        torch.testing.assert_close(ssim_per_image(a, b), ssim_per_image(a.double(), b.double()), rtol=0, atol=1e-6)

    def test_kernel_size_sets_the_window(self):
        a, b = _noisy_pair(shape=(1, 3, 32, 32))
        assert ssim(a, b, kernel_size=7, sigma=1.5) != pytest.approx(ssim(a, b, kernel_size=11, sigma=1.5), abs=1e-6)
        assert ssim(a, b, kernel_size=7, sigma=1.5) == pytest.approx(
            float(ssim_reference(a, b, kernel_size=7, sigma=1.5)), abs=1e-9)

    def test_only_full_windows_count(self):
        """A 13 x 13 image with a 13 x 13 window has exactly one full window: SSIM is Eq. 13 on it,
        computed by hand (a padded implementation would average 169 windows)."""
        a, b = _noisy_pair(seed=7, shape=(1, 1, 13, 13))
        t = torch.arange(13, dtype=torch.float64) - 6
        g = torch.exp(-t ** 2 / (2 * 1.5 ** 2))
        w = (g[:, None] * g[None, :]) / g.sum() ** 2  # the single 13 x 13 window
        x, y = a[0, 0].double(), b[0, 0].double()
        mx, my = (w * x).sum(), (w * y).sum()
        vx, vy, cxy = (w * x * x).sum() - mx ** 2, (w * y * y).sum() - my ** 2, (w * x * y).sum() - mx * my
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        want = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        assert ssim(a, b, kernel_size=13) == pytest.approx(float(want), abs=1e-12)
