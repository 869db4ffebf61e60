r"""Image restoration metrics: PSNR and SSIM per image, thin wrappers over torchmetrics [WANG04].

[WANG04] Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
structural similarity", TIP 2004 (SSIM, 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03).
"""

from __future__ import annotations

import torch

from .._checks import check_dtype, check_finite, check_shape
from ._common import _check_int, _check_nonempty, _check_real, _check_same_device

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
    return _check_real(data_range, "data_range", low=0.0, low_open=True)


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
    r"""Structural similarity [WANG04] per image, averaged over images. Thin wrapper over
    ``torchmetrics.functional.image.structural_similarity_index_measure`` (Gaussian window
    ``kernel_size``×``kernel_size``, σ = ``sigma``, K1 = 0.01, K2 = 0.03 — the paper's constants).

    Args:
        pred, target: ``(N, C, H, W)`` float images, H and W ≥ ``kernel_size``.
        data_range: span of valid values (1.0 for [0, 1] images).
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
    from torchmetrics.functional.image import structural_similarity_index_measure

    L = _check_image_pair(pred, target, data_range)
    k = _check_int(kernel_size, "kernel_size", minimum=1)
    if k % 2 == 0:
        raise ValueError(f"`kernel_size`: expected an odd int, got {k}")
    s = _check_real(sigma, "sigma", low=0.0, low_open=True)
    H, W = pred.shape[-2:]
    if min(H, W) < k:
        raise ValueError(f"`pred`: expected H and W >= kernel_size={k}, got {(H, W)}")
    return structural_similarity_index_measure(pred.double(), target.double(), data_range=L, kernel_size=k,
                                               sigma=s, reduction="none")
