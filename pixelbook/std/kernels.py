r"""The Gaussian kernel :math:`k` of the threshold-dynamics length term, and its spectrum [STD, Eq. 4, Sec. 4.2].

:func:`kernel_spectrum` and :func:`is_psd` check the premise of [STD, Thm. 3.1] (a positive
semi-definite kernel makes the length term concave, so the STD iteration decreases the energy);
the paper's 7×7, :math:`\sigma=5` kernel fails it, ``gaussian_kernel(..., psd=True)`` meets it by
construction.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_dtype, check_finite, check_float, check_int, check_shape

__all__ = ["gaussian_kernel", "kernel_spectrum", "is_psd", "DEFAULT_KERNEL_SIZE", "DEFAULT_SIGMA",
           "PAPER_KERNEL_SIZE", "PAPER_SIGMA"]

PAPER_KERNEL_SIZE = 7  # [STD, Sec. 4.2]: "support set size 7x7"
PAPER_SIGMA = 5.0  # [STD, Sec. 4.2]: "standard deviation sigma = 5.0" -- not PSD, see kernel_spectrum
DEFAULT_KERNEL_SIZE = 7  # the paper's support
DEFAULT_SIGMA = 1.0  # ours: 7x7 stays PSD up to sigma ~ 1.18 (bisection); at 1.0 the spectrum min is +2e-4 (a margin)


def _check_kernel(kernel: torch.Tensor, channels: int | None = None) -> torch.Tensor:
    """``(K, K)`` or ``(C, K, K)`` odd, square, symmetric, finite; returns ``(C or 1, 1, K, K)``."""
    if not torch.is_tensor(kernel):
        raise TypeError(f"`kernel`: expected a torch.Tensor of shape (K, K) or (C, K, K), got {type(kernel).__name__}")
    if kernel.ndim == 2:
        check_shape(kernel, "kernel", "K K")
        k = kernel[None]
    elif kernel.ndim == 3:
        d = check_shape(kernel, "kernel", "C K K")
        if channels is not None and d["C"][0] not in (1, channels):
            raise ValueError(f"`kernel`: expected C=1 or C={channels} (as in `logits`), got {d['C'][0]}")
        k = kernel
    else:
        raise ValueError(f"`kernel`: expected shape (K, K) or (C, K, K), got {tuple(kernel.shape)}")
    check_dtype(k, "kernel", "float")
    check_finite(k, "kernel")
    if k.shape[-1] % 2 == 0:
        raise ValueError(f"`kernel`: expected an odd size (a centre pixel), got {k.shape[-1]}x{k.shape[-1]}")
    with torch.no_grad():
        asym = (k - k.flip(-1, -2)).abs().max()
        if float(asym) > 1e-6 * max(float(k.abs().max()), 1e-30):
            raise ValueError("`kernel`: expected a point-symmetric kernel k(x) = k(-x) (the subgradient "
                             f"p = lam*k*(1-2u) needs it, [STD, App. A]), got asymmetry {float(asym):.3g}")
    return k[:, None]


def gaussian_kernel(size: int = DEFAULT_KERNEL_SIZE, sigma=DEFAULT_SIGMA, *, psd: bool = False,
                    dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    r"""A normalised, separable ``size``×``size`` Gaussian kernel :math:`k` [STD, Eq. 4 and Sec. 4.2].

    With ``psd=False`` it samples :math:`e^{-|x|^2/2\sigma^2}` on the grid and divides by the sum.
    A truncated Gaussian is positive semi-definite only while ``size`` covers about
    :math:`\pm3\sigma`: 7×7 is PSD up to :math:`\sigma\approx1.18` (bisection) but not for the
    paper's :math:`\sigma=5` (check with :func:`kernel_spectrum`).

    With ``psd=True`` it returns the autocorrelation :math:`g\star g` of a sampled Gaussian :math:`g` of
    :math:`(\text{size}+1)/2` taps and standard deviation :math:`\sigma/\sqrt2` per axis, so that the
    result has (about) standard deviation :math:`\sigma` and a Fourier transform
    :math:`|\hat g|^2\ge0`: positive semi-definite for any ``size`` and ``sigma``, by construction.

    Args:
        size: odd support width (the paper: 7).
        sigma: :math:`\sigma` in pixels, a positive number or a 0-dim tensor (differentiable, so it
            can be learned), or a ``(C,)`` tensor for one kernel per class.
        psd: build the kernel as an autocorrelation (PSD by construction).
        dtype, device: of the result (default: those of ``sigma`` if a tensor, else float32, CPU).

    Returns:
        ``(size, size)`` tensor, or ``(C, size, size)`` for a ``(C,)`` ``sigma``; each sums to 1.

    Example:
        >>> k = gaussian_kernel(7, 1.0)
        >>> k.shape, round(float(k.sum()), 6), bool(is_psd(k))
        (torch.Size([7, 7]), 1.0, True)
        >>> bool(is_psd(gaussian_kernel(7, PAPER_SIGMA))), bool(is_psd(gaussian_kernel(7, PAPER_SIGMA, psd=True)))
        (False, True)
    """
    size = check_int(size, "size", low=1)
    if size % 2 == 0:
        raise ValueError(f"`size`: expected an odd kernel size, got {size}")
    if torch.is_tensor(sigma):
        if sigma.ndim > 1:
            raise ValueError(f"`sigma`: expected a number, a 0-dim or a (C,) tensor, got shape {tuple(sigma.shape)}")
        check_finite(sigma, "sigma")
        if sigma.numel() and float(sigma.detach().min()) <= 0:
            raise ValueError(f"`sigma`: expected values > 0, got min {float(sigma.detach().min()):.4g}")
        dtype = dtype or (sigma.dtype if sigma.is_floating_point() else torch.float32)
        device = device if device is not None else sigma.device
        s = sigma.to(dtype=dtype, device=device)
    else:
        check_float(sigma, "sigma", low=0.0, low_open=True)
        dtype = dtype or torch.float32
        s = torch.tensor(float(sigma), dtype=dtype, device=device)
    batched = s.ndim == 1
    s = s.reshape(-1, 1)  # (C or 1, 1)
    if psd:
        m = (size + 1) // 2
        r = torch.arange(m, dtype=dtype, device=s.device) - (m - 1) / 2
        g = torch.exp(-r**2 / (2 * (s / math.sqrt(2)) ** 2))  # (C, m)
        g = g / g.sum(-1, keepdim=True)
        # autocorrelation: k[a] = sum_j g[j] g[j + a], a = -(m-1) .. m-1
        k1 = torch.stack([(g[:, : m - abs(a)] * g[:, abs(a):]).sum(-1) for a in range(-(m - 1), m)], -1)
    else:
        r = torch.arange(size, dtype=dtype, device=s.device) - (size - 1) / 2
        k1 = torch.exp(-r**2 / (2 * s**2))
        k1 = k1 / k1.sum(-1, keepdim=True)
    k = k1[:, :, None] * k1[:, None, :]
    return k if batched else k[0]


def kernel_spectrum(kernel: torch.Tensor, n: int = 128) -> torch.Tensor:
    r"""The Fourier transform :math:`\hat k(\omega)=\sum_x k(x)\cos(\omega\cdot x)` of a symmetric kernel.

    Sampled at :math:`\omega=2\pi(j_1,j_2)/n`; equal to the DFT of ``kernel`` zero-padded to
    :math:`n\times n` and centred (real because ``kernel`` is point-symmetric). The quadratic form
    :math:`\langle v,k*v\rangle=\sum_\omega|\hat v(\omega)|^2\hat k(\omega)` is non-negative for every
    :math:`v` iff :math:`\hat k\ge0` everywhere: that is what makes :math:`\mathcal R` concave
    [STD, Sec. 3.3.2]. A negative value is a witness that it is not.

    Args:
        kernel: ``(K, K)`` point-symmetric kernel, ``K`` odd.
        n: frequencies per axis (128 as in the paper-erratum check; finer ``n`` samples more).

    Returns:
        ``(n, n)`` real tensor (float64).

    Example:
        >>> s = kernel_spectrum(gaussian_kernel(7, PAPER_SIGMA))
        >>> round(float(s.max()), 6), round(float(s.min()), 3)
        (1.0, -0.197)
    """
    k = _check_kernel(kernel)[0, 0].detach().to(torch.float64)
    n = check_int(n, "n", low=1)
    K = k.shape[-1]
    r = torch.arange(K, dtype=torch.float64, device=k.device) - (K - 1) / 2
    w = 2 * math.pi * torch.arange(n, dtype=torch.float64, device=k.device) / n
    c, s = torch.cos(w[:, None] * r[None]), torch.sin(w[:, None] * r[None])  # (n, K)
    # sum_ab k[a,b] cos(w1 a + w2 b) = C k C^T - S k S^T
    return c @ k @ c.T - s @ k @ s.T


def is_psd(kernel: torch.Tensor, n: int = 128, tol: float | None = None) -> bool:
    """True when :func:`kernel_spectrum` is ``>= -tol`` at all ``n``×``n`` sampled frequencies.

    ``tol`` defaults to 64 machine epsilons of ``kernel``'s dtype (a kernel that is PSD in exact
    arithmetic but has spectral zeros, such as ``gaussian_kernel(7, 5.0, psd=True)``, rounds to
    about -1e-8 in float32).
    """
    if tol is None:
        tol = 64 * torch.finfo(kernel.dtype if torch.is_tensor(kernel) and kernel.is_floating_point() else torch.float64).eps
    return bool(kernel_spectrum(kernel, n).min() >= -tol)
