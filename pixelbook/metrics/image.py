r"""Image restoration metrics: PSNR (a thin wrapper over torchmetrics) and SSIM [WANG04] per image.

[WANG04] Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
structural similarity", TIP 2004 (SSIM, 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03).

SSIM is written out here rather than taken from torchmetrics, whose
``structural_similarity_index_measure`` departs from the paper in two ways: it reflect-pads the
images and averages the SSIM map over every pixel (the paper's reference code and scikit-image
average over full windows only; on 48 × 48 crops the two differ in the second decimal), and with a
Gaussian window it sizes the window from σ and ignores ``kernel_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_dtype, check_finite, check_float, check_int, check_shape
from ._common import _check_nonempty, _check_same_device

__all__ = ["psnr", "psnr_per_image", "ssim", "ssim_per_image"]


def _check_image_pair(pred, target, data_range) -> float:
    d = check_shape(pred, "pred", "N C H W")
    check_shape(target, "target", "N C H W", d)
    _check_same_device(target, "target", pred, "pred")
    check_dtype(pred, "pred", "float")
    check_dtype(target, "target", "float")
    _check_nonempty(pred, "pred")
    check_finite(pred, "pred")
    check_finite(target, "target")
    return check_float(data_range, "data_range", low=0.0, low_open=True)


@torch.no_grad()
def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> float:
    r"""Peak signal-to-noise ratio :math:`10\log_{10}(L^2/\mathrm{MSE})` in dB, **per image** (MSE over
    C×H×W), then averaged over images — the usual restoration-paper convention. Thin wrapper over
    ``torchmetrics.functional.image.peak_signal_noise_ratio(..., dim=(1, 2, 3))``.

    An image identical to its target has PSNR ``inf`` (and so has the mean).

    Args:
        pred, target: ``(N, C, H, W)`` float images.
        data_range: :math:`L`, the span of valid values (1.0 for [0, 1] images, 255 for uint8 scale).

    Returns:
        python float (:func:`psnr_per_image` gives the ``(N,)`` per-image values).

    Example:
        >>> import torch
        >>> round(psnr(torch.full((1, 1, 4, 4), 0.5), torch.full((1, 1, 4, 4), 0.6)), 4)   # MSE 0.01 -> 20 dB
        20.0
    """
    return float(psnr_per_image(pred, target, data_range).mean())


@torch.no_grad()
def psnr_per_image(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """The per-image PSNR of :func:`psnr`: ``(N,)`` float64 tensor on ``pred``'s device.

    Example:
        >>> psnr_per_image(torch.full((2, 1, 4, 4), 0.5), torch.full((2, 1, 4, 4), 0.6)).round(decimals=4)
        tensor([20., 20.], dtype=torch.float64)
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    L = _check_image_pair(pred, target, data_range)
    return peak_signal_noise_ratio(pred.double(), target.double(), data_range=L, reduction="none", dim=(1, 2, 3))


@torch.no_grad()
def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, kernel_size: int = 11,
         sigma: float = 1.5) -> float:
    r"""Structural similarity [WANG04, Eq. 13] per image, averaged over images.

    Per channel, with Gaussian-weighted local means :math:`\mu`, variances :math:`\sigma^2` and
    covariance :math:`\sigma_{xy}` (population moments, weights summing to one) over each
    ``kernel_size``×``kernel_size`` window that lies **fully inside** the image,

    .. math:: \mathrm{SSIM} = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
              {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},\quad
              C_1 = (0.01 L)^2,\ C_2 = (0.03 L)^2,

    averaged over the ``(H - k + 1) × (W - k + 1)`` window positions and the channels [WANG04, Eq. 17
    with equal weights]. This is the paper's reference code and scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``
    (which sizes its window from σ, 11 for σ = 1.5; here ``kernel_size`` sets it). Computed in
    float64; five separable Gaussian filterings per batch (memory: five copies of the batch).

    Args:
        pred, target: ``(N, C, H, W)`` float images, H and W ≥ ``kernel_size``.
        data_range: :math:`L`, span of valid values (1.0 for [0, 1] images).
        kernel_size: odd window size, default 11 [WANG04].
        sigma: Gaussian σ of the window, default 1.5 [WANG04].

    Returns:
        python float (:func:`ssim_per_image` gives the ``(N,)`` per-image values).

    Example:
        >>> import torch
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim(x, x)
        1.0
    """
    return float(ssim_per_image(pred, target, data_range, kernel_size, sigma).mean())


@torch.no_grad()
def ssim_per_image(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, kernel_size: int = 11,
                   sigma: float = 1.5) -> torch.Tensor:
    """The per-image SSIM of :func:`ssim`: ``(N,)`` float64 tensor on ``pred``'s device.

    Example:
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim_per_image(x, x)
        tensor([1., 1.], dtype=torch.float64)
    """
    L = _check_image_pair(pred, target, data_range)
    k = check_int(kernel_size, "kernel_size", low=1)
    if k % 2 == 0:
        raise ValueError(f"`kernel_size`: expected an odd int, got {k}")
    s = check_float(sigma, "sigma", low=0.0, low_open=True)
    N, C, H, W = pred.shape
    if min(H, W) < k:
        raise ValueError(f"`pred`: expected H and W >= kernel_size={k}, got {(H, W)}")
    x, y = pred.double(), target.double()
    t = torch.arange(k, dtype=torch.float64, device=x.device) - (k - 1) / 2
    g = torch.exp(-t ** 2 / (2 * s * s))
    g = g / g.sum()  # the 2-D window g gᵀ sums to one
    # the five moment maps of every channel as channels of one batch, filtered by one separable,
    # depthwise Gaussian without padding (only full windows)
    z = torch.stack([x, y, x * x, y * y, x * y], dim=1).reshape(N, 5 * C, H, W)
    z = F.conv2d(z, g.view(1, 1, k, 1).expand(5 * C, 1, k, 1), groups=5 * C)
    z = F.conv2d(z, g.view(1, 1, 1, k).expand(5 * C, 1, 1, k), groups=5 * C)
    mx, my, mxx, myy, mxy = z.view(N, 5, C, H - k + 1, W - k + 1).unbind(1)
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    ssim_map = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return ssim_map.mean(dim=(1, 2, 3))
