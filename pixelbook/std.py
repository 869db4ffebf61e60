r"""Soft Threshold Dynamics (STD): softmax with spatial, volume and star-shape priors [STD].

The softmax :math:`u=\mathcal S(o/\varepsilon)` is the unique minimiser over the probability simplex
:math:`\mathbb U` of the entropy-regularised linear energy
:math:`\mathcal F(u;o)=\langle -o,u\rangle+\varepsilon\langle u,\ln u\rangle` [STD, Sec. 3.2]. STD adds
the threshold-dynamics boundary-length term :math:`\mathcal R(u)=\lambda\langle u,k*(1-u)\rangle`
[STD, Sec. 3.3] and minimises :math:`\mathcal F+\mathcal R` by linearising the concave
:math:`\mathcal R` at the previous iterate (a majorise-minimise step, [STD, Eq. 7]):

.. math:: p^t=\lambda\,k*(1-2u^t),\qquad u^{t+1}=\mathcal S\big((o-p^t)/\varepsilon\big).

Unrolled for a fixed number of iterations it is a differentiable layer that replaces the final
softmax of a segmentation network. Two constraints slot into the same loop:

* volume :math:`\int u_i=V_i` (VP-STD, [STD, Eqs. 8-10]): a per-class dual :math:`q_i` updated by a
  log-domain Sinkhorn step (entropic optimal transport);
* star shape about a centre :math:`c` (SS-STD, [STD, Eq. 11, Alg. 3]): :math:`s\cdot\nabla u_i\ge 0`
  with :math:`s` the unit vector towards :math:`c`, enforced by a non-negative dual field updated by
  projected ascent, with discrete :math:`\nabla` and :math:`\operatorname{div}=-\nabla^\top`.

Conventions (the paper leaves them open; each is a decision documented here):

* ``kernel``: a normalised (sums to 1), symmetric Gaussian applied per class with **zero padding**,
  which keeps the convolution self-adjoint, so :math:`p` is exactly the gradient of :math:`\mathcal R`.
* Default kernel: 7×7 with :math:`\sigma=1` (:data:`DEFAULT_SIGMA`). The paper uses 7×7 with
  :math:`\sigma=5` (:data:`PAPER_SIGMA`), which is **not positive semi-definite** (its spectrum dips to
  about -0.197), so Theorem 3.1's premise fails for it; ``gaussian_kernel(..., psd=True)`` builds a
  kernel of any size and width that is PSD by construction.
* Initialisation :math:`u^0=\mathcal S(o/\varepsilon)`, the :math:`\lambda=0` solution (the paper writes
  :math:`\mathcal S(o)`; the two agree for :math:`\varepsilon=1` and differ only in the first
  :math:`p`).
* Volumes are pixel counts at the resolution of ``logits``; they must be positive and sum to
  :math:`H\cdot W` per image.
* Memory: autograd keeps about three ``logits``-sized tensors per iteration.

Reference: J. Liu, X. Wang, X.-C. Tai, *Deep Convolutional Neural Networks with Spatial
Regularization, Volume and Star-shape Priori for Image Segmentation* (arXiv:2002.03989) [STD].
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_dtype, check_finite, check_range, check_shape

__all__ = [
    "gaussian_kernel", "kernel_spectrum", "is_psd", "length_surrogate", "std_energy",
    "soft_threshold_dynamics", "STD", "VolumeSTD", "StarSTD",
    "volumes_from_labels", "centroid", "star_directions", "grad2d", "div2d", "star_violations",
    "boundary_length", "count_components",
    "DEFAULT_KERNEL_SIZE", "DEFAULT_SIGMA", "PAPER_KERNEL_SIZE", "PAPER_SIGMA",
    "PAPER_LAM", "PAPER_EPSILON", "PAPER_ITERATIONS", "PAPER_STAR_ITERATIONS",
]

PAPER_KERNEL_SIZE = 7  # [STD, Sec. 4.2]: "support set size 7x7"
PAPER_SIGMA = 5.0  # [STD, Sec. 4.2]: "standard deviation sigma = 5.0" -- not PSD, see kernel_spectrum
DEFAULT_KERNEL_SIZE = 7  # the paper's support
DEFAULT_SIGMA = 1.0  # ours: 7x7 stays PSD up to sigma ~ 1.1; at 1.0 the spectrum min is +2e-4 (a margin)
PAPER_LAM = 1.0  # [STD, Table 2]: best lambda on VOC 2012 (ISIC: 0.75)
PAPER_EPSILON = 0.1  # [STD, Table 1]: best epsilon on VOC 2012 (ISIC: 0.1; Cityscapes VP-STD: 1.0)
PAPER_ITERATIONS = 10  # [STD, Sec. 3.6]: "we set the number of the sublayers as t1 = 10"
PAPER_STAR_ITERATIONS = 50  # [STD, Sec. 3.8]: "we just take t1 = 50 layers"
_VOLUME_RTOL = 1e-4  # ours: float32 sums of H*W ones are exact far beyond this


# ----------------------------------------------------------------------------- small checks
def _check_number(value, name: str, low: float | None = None, strict: bool = False) -> None:
    """A float or 0-dim tensor, finite, >= low (> low if strict)."""
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"`{name}`: expected a number or a 1-element tensor, got shape {tuple(value.shape)}")
        v = float(value.detach())
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        v = float(value)
    else:
        raise TypeError(f"`{name}`: expected a number, got {type(value).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"`{name}`: expected a finite number, got {v}")
    if low is not None and (v <= low if strict else v < low):
        raise ValueError(f"`{name}`: expected a number {'>' if strict else '>='} {low}, got {v}")


def _check_int(value, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}`: expected an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"`{name}`: expected an int >= {low}, got {value}")
    return int(value)


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


def _conv(u: torch.Tensor, k4: torch.Tensor) -> torch.Tensor:
    C = u.shape[1]
    return F.conv2d(u, k4.expand(C, 1, *k4.shape[-2:]).to(u.dtype), padding=k4.shape[-1] // 2, groups=C)


class _SelfAdjointConv(torch.autograd.Function):
    """Zero-padded convolution with a point-symmetric kernel is self-adjoint, so its backward pass is
    the same convolution: one conv instead of the generic (slower) convolution backward."""

    @staticmethod
    def forward(ctx, u, k4):
        ctx.save_for_backward(k4)
        return _conv(u, k4)

    @staticmethod
    def backward(ctx, grad):
        (k4,) = ctx.saved_tensors
        return _SelfAdjointConv.apply(grad, k4), None


def _blur(u: torch.Tensor, k4: torch.Tensor) -> torch.Tensor:
    """Per-class ("depthwise") convolution with zero padding; ``k4`` is ``(1 or C, 1, K, K)``, symmetric."""
    if k4.requires_grad:  # learnable sigma: let autograd differentiate in the kernel too
        return _conv(u, k4)
    return _SelfAdjointConv.apply(u, k4)


def _subgradient(u: torch.Tensor, k4: torch.Tensor, lam) -> torch.Tensor:
    r""":math:`p=\lambda\,k*(1-2u)` [STD, Eq. 7], computed as :math:`\lambda(k*1-2\,k*u)`.

    With one kernel for all classes, :math:`k*u_C=k*1-\sum_{i<C}k*u_i` on the simplex, so the last
    class needs no convolution (half the work for two classes). :math:`k*1` is 1 away from the border.
    """
    k1 = _conv(torch.ones_like(u[:1, : k4.shape[0]]), k4)  # (1, 1 or C, H, W)
    if k4.shape[0] != 1:  # one kernel per class: no shortcut
        return lam * (k1 - 2 * _blur(u, k4))
    ku = _blur(u[:, :-1], k4)
    return lam * (k1 - 2 * torch.cat([ku, k1 - ku.sum(1, keepdim=True)], 1))


# ----------------------------------------------------------------------------- kernels
def gaussian_kernel(size: int = DEFAULT_KERNEL_SIZE, sigma=DEFAULT_SIGMA, *, psd: bool = False,
                    dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    r"""A normalised, separable ``size``×``size`` Gaussian kernel :math:`k` [STD, Eq. 4 and Sec. 4.2].

    With ``psd=False`` it samples :math:`e^{-|x|^2/2\sigma^2}` on the grid and divides by the sum.
    A truncated Gaussian is positive semi-definite only while ``size`` covers about
    :math:`\pm3\sigma`: 7×7 is PSD for :math:`\sigma\le1.1` but not for the paper's
    :math:`\sigma=5` (check with :func:`kernel_spectrum`).

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
    size = _check_int(size, "size", 1)
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
        _check_number(sigma, "sigma", 0.0, strict=True)
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
    n = _check_int(n, "n", 1)
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


# ----------------------------------------------------------------------------- energy
def length_surrogate(probs: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    r"""Threshold-dynamics length surrogate :math:`\langle u_i,k*(1-u_i)\rangle` per image and class [STD, Eq. 5].

    For a binary region and a Gaussian of standard deviation :math:`\sigma` it tends to
    :math:`\frac{\sigma}{\sqrt{2\pi}}\,|\partial\Omega_i|` as :math:`\sigma/\text{radius}\to0`. (The paper's
    Eq. 4 prefactor :math:`\sqrt{\pi/\sigma}` is right only if :math:`\sigma` is the heat-kernel time,
    i.e. variance :math:`2\sigma`; see the book's errata.) Pixels outside the image count as
    :math:`u=0`, :math:`1-u=0` (zero padding of :math:`1-u`), so the image border adds no length.

    Args:
        probs: ``(N, C, H, W)`` soft segmentation.
        kernel: ``(K, K)`` or ``(C, K, K)`` symmetric kernel.

    Returns:
        ``(N, C)`` tensor.

    Example:
        >>> u = torch.zeros(1, 2, 8, 8); u[:, 0, :, :4] = 1; u[:, 1] = 1 - u[:, 0]
        >>> length_surrogate(u, gaussian_kernel(3, 1.0)).shape
        torch.Size([1, 2])
    """
    d = check_shape(probs, "probs", "N C H W")
    check_dtype(probs, "probs", "float")
    k4 = _check_kernel(kernel, d["C"][0])
    return (probs * _blur(1 - probs, k4)).sum((2, 3))


def std_energy(probs: torch.Tensor, logits: torch.Tensor, *, lam=PAPER_LAM, epsilon=PAPER_EPSILON,
               kernel: torch.Tensor | None = None) -> torch.Tensor:
    r"""STD energy :math:`\mathcal F(u;o)+\mathcal R(u)` per image [STD, Sec. 3.3, Eq. 7].

    .. math:: \langle -o,u\rangle+\varepsilon\langle u,\ln u\rangle+\lambda\langle u,k*(1-u)\rangle,
       \qquad 0\ln0:=0.

    Theorem 3.1 states that STD iterations never increase it when ``kernel`` is PSD.

    Args:
        probs: ``(N, C, H, W)`` points of the simplex :math:`u`.
        logits: ``(N, C, H, W)`` scores :math:`o`.
        lam, epsilon: :math:`\lambda\ge0`, :math:`\varepsilon>0`.
        kernel: symmetric kernel (default :func:`gaussian_kernel` ``(7, 1.0)``).

    Returns:
        ``(N,)`` tensor.

    Example:
        >>> o = torch.randn(2, 3, 8, 8)
        >>> std_energy(torch.softmax(o / 0.5, 1), o, lam=1.0, epsilon=0.5).shape
        torch.Size([2])
    """
    d = check_shape(probs, "probs", "N C H W")
    check_shape(logits, "logits", "N C H W", d)
    _check_number(lam, "lam", 0.0)
    _check_number(epsilon, "epsilon", 0.0, strict=True)
    if kernel is None:
        kernel = gaussian_kernel(DEFAULT_KERNEL_SIZE, DEFAULT_SIGMA, dtype=logits.dtype, device=logits.device)
    linear = -(logits * probs).sum((1, 2, 3))
    entropy = torch.special.xlogy(probs, probs).sum((1, 2, 3))
    return linear + epsilon * entropy + lam * length_surrogate(probs, kernel).sum(1)


# ----------------------------------------------------------------------------- star-shape helpers
def grad2d(u: torch.Tensor) -> torch.Tensor:
    r"""Forward-difference gradient with Neumann boundary: ``(N, 1, H, W)`` → ``(N, 2, H, W)``.

    Channel 0 is :math:`u_{r+1,c}-u_{r,c}` (rows, downwards), channel 1 is :math:`u_{r,c+1}-u_{r,c}`
    (columns); both are 0 on the last row / column. Adjoint: :func:`div2d` is exactly :math:`-\nabla^\top`.

    Example:
        >>> grad2d(torch.arange(3.).reshape(1, 1, 1, 3))[0, :, 0]
        tensor([[0., 0., 0.],
                [1., 1., 0.]])
    """
    check_shape(u, "u", "N 1 H W")
    gr = F.pad(u[:, :, 1:] - u[:, :, :-1], (0, 0, 0, 1))
    gc = F.pad(u[:, :, :, 1:] - u[:, :, :, :-1], (0, 1, 0, 0))
    return torch.cat([gr, gc], 1)


def div2d(v: torch.Tensor) -> torch.Tensor:
    r"""Discrete divergence, the negative adjoint of :func:`grad2d`: ``(N, 2, H, W)`` → ``(N, 1, H, W)``.

    Backward differences with :math:`v_{-1}=0` and the last row/column of :math:`v` treated as 0,
    so :math:`\langle\nabla u,v\rangle=-\langle u,\operatorname{div}v\rangle` holds exactly
    (summation by parts).

    Example:
        >>> u, v = torch.randn(1, 1, 5, 6, dtype=torch.float64), torch.randn(1, 2, 5, 6, dtype=torch.float64)
        >>> bool(torch.isclose((grad2d(u) * v).sum(), -(u * div2d(v)).sum()))
        True
    """
    check_shape(v, "v", "N 2 H W")
    vr, vc = v[:, :1].clone(), v[:, 1:].clone()
    vr[:, :, -1], vc[:, :, :, -1] = 0, 0
    dr = vr - F.pad(vr[:, :, :-1], (0, 0, 1, 0))
    dc = vc - F.pad(vc[:, :, :, :-1], (1, 0, 0, 0))
    return dr + dc


def _check_center(center: torch.Tensor, n: int, h: int, w: int, name: str = "center") -> torch.Tensor:
    if not torch.is_tensor(center):
        raise TypeError(f"`{name}`: expected a torch.Tensor of shape (N, 2), got {type(center).__name__}")
    if center.ndim == 1:
        center = center[None].expand(n, 2)
    check_shape(center, name, "N 2", {"N": (n, "logits")})
    check_finite(center.float(), name)
    c = center.detach().float()
    bad = (c[:, 0] < 0) | (c[:, 0] > h - 1) | (c[:, 1] < 0) | (c[:, 1] > w - 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"`{name}`: expected (row, col) inside the image, 0 <= row <= {h - 1} and "
                         f"0 <= col <= {w - 1}, got {tuple(round(float(x), 3) for x in c[i])} for image {i}")
    return center


def star_directions(center: torch.Tensor, height: int, width: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    r"""Unit vectors :math:`s(x)=(c-x)/|c-x|` from each pixel towards the star centre [STD, Sec. 3.5].

    Args:
        center: ``(N, 2)`` or ``(2,)`` centre as (row, col) in pixels, inside the image (may be
            fractional, e.g. a centroid).
        height, width: image size.

    Returns:
        ``(N, 2, H, W)`` with channels (row, col); :math:`s=0` at a pixel that coincides with :math:`c`.

    Example:
        >>> star_directions(torch.tensor([1., 1.]), 3, 3)[0, :, 0, 1]
        tensor([1., 0.])
    """
    height, width = _check_int(height, "height", 1), _check_int(width, "width", 1)
    n = center.shape[0] if torch.is_tensor(center) and center.ndim == 2 else 1
    c = _check_center(center, n, height, width).to(dtype=dtype, device=device)
    rows = torch.arange(height, dtype=dtype, device=c.device)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=dtype, device=c.device)[None, :].expand(height, width)
    d = torch.stack([c[:, 0, None, None] - rows, c[:, 1, None, None] - cols], 1)  # (N, 2, H, W)
    norm = d.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, d / norm.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(d))


# ----------------------------------------------------------------------------- the iteration
def _check_volumes(volumes: torch.Tensor, n: int, c: int, h: int, w: int) -> torch.Tensor:
    check_shape(volumes, "volumes", "N C", {"N": (n, "logits"), "C": (c, "logits")})
    check_dtype(volumes, "volumes", "float")
    check_finite(volumes, "volumes")
    v = volumes.detach()
    if bool((v <= 0).any()):
        i, j = (int(t) for t in (v <= 0).nonzero()[0])
        raise ValueError(
            f"`volumes`: expected every class to have a positive volume, got {float(v[i, j]):.4g} for class {j} "
            f"of image {i}: a class absent from the image cannot be met by a soft segmentation (u > 0 "
            f"everywhere); drop it from `logits`, or give it a small positive volume")
    total = v.sum(1)
    bad = (total - h * w).abs() > _VOLUME_RTOL * h * w
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"`volumes`: expected each image's volumes to sum to H*W = {h * w} pixels (the "
                         f"classes partition the image), got {float(total[i]):.6g} for image {i}; "
                         f"see volumes_from_labels")
    return volumes


def soft_threshold_dynamics(
    logits: torch.Tensor,
    *,
    iterations: int = PAPER_ITERATIONS,
    lam=PAPER_LAM,
    epsilon=PAPER_EPSILON,
    kernel: torch.Tensor | None = None,
    volumes: torch.Tensor | None = None,
    sinkhorn_iterations: int = 1,
    center: torch.Tensor | None = None,
    star_class: int = 1,
    tau=None,
    init: torch.Tensor | None = None,
    output: str = "probs",
    return_energies: bool = False,
):
    r"""Soft threshold dynamics: the STD, VP-STD and SS-STD softmax [STD, Algs. 1-3].

    Starting from :math:`u^0=\mathcal S(o/\varepsilon)`, each of the ``iterations`` steps computes

    .. math::
        p &= \lambda\,k*(1-2u) &&\text{subgradient of }\mathcal R\text{ [STD, Eq. 7, App. A]}\\
        q_i &\leftarrow q_i+\varepsilon\big(\log V_i-\log\textstyle\sum_x\mathcal S_i((o-p+q)/\varepsilon)\big)
            &&\text{volume dual, ``sinkhorn_iterations`` times [STD, Eq. 10]}\\
        \eta &\leftarrow\max\{\eta-\tau\,s\cdot\nabla u_{i^*},0\} &&\text{star dual [STD, Alg. 3]}\\
        u &= \mathcal S\big((o-p+q-\delta_{i,i^*}\operatorname{div}(\eta s))/\varepsilon\big)
            &&\text{closed-form primal step}

    The volume step runs only when ``volumes`` is given, the star step only when ``center`` is.
    Both duals are stable by construction: the Sinkhorn step works on log-probabilities
    (``log_softmax``/``logsumexp``, no exponent can overflow for any :math:`\varepsilon`) and is
    re-centred (:math:`u` is invariant to :math:`q\to q+c`); the star dual is projected onto
    :math:`\eta\ge0` and, with :math:`\tau=\varepsilon`, moves the scores :math:`(\cdot)/\varepsilon` by at
    most :math:`4\sqrt2` per step, whatever :math:`\varepsilon`.

    Args:
        logits: ``(N, C, H, W)`` scores :math:`o` from the network, ``C >= 2``.
        iterations: unrolled steps :math:`T` (paper: 10 for STD and VP-STD, 50 for SS-STD); 0 returns
            the softmax.
        lam: :math:`\lambda\ge0` (paper: 1.0 on VOC, 0.75 on ISIC; 0 gives the softmax). Number or
            0-dim tensor (learnable).
        epsilon: :math:`\varepsilon>0`, the entropy weight / temperature (paper: 0.1; range [0.1, 3]).
        kernel: ``(K, K)`` or ``(C, K, K)`` symmetric kernel; default ``gaussian_kernel(7, 1.0)``,
            which is PSD (the paper's 7×7, :math:`\sigma=5` is not).
        volumes: ``(N, C)`` target pixel counts :math:`V`, positive, summing to :math:`H W` per image.
        sinkhorn_iterations: inner volume steps :math:`t_2` per outer step (paper: 1), warm-started.
        center: ``(N, 2)`` or ``(2,)`` star centre (row, col) in pixels, inside the image.
        star_class: the class :math:`i^*` that must be star-shaped (default 1, the foreground).
        tau: star dual step :math:`\tau_q` (paper and default: :math:`\varepsilon`).
        init: ``(N, C, H, W)`` starting point :math:`u^0` on the simplex (default
            :math:`\mathcal S(o/\varepsilon)`), e.g. a binary shape for the MBO limit.
        output: ``"probs"`` (:math:`u`, on the simplex), ``"log_probs"`` (:math:`\log u`, for
            ``F.nll_loss``) or ``"logits"`` (final scores whose softmax is :math:`u`, for
            ``F.cross_entropy``).
        return_energies: also return the energy :math:`\mathcal F+\mathcal R` of
            :math:`u^0,\dots,u^T` as a detached ``(T+1, N)`` tensor.

    Returns:
        ``(N, C, H, W)`` tensor as chosen by ``output``; with ``return_energies`` a pair.

    Raises:
        ValueError: bad shapes, non-finite values, :math:`\varepsilon\le0`, :math:`\lambda<0`, volumes
            that cannot be met (a zero volume, i.e. an absent class, or a sum other than
            :math:`HW`), a centre outside the image, ``star_class`` out of range.

    Example:
        >>> o = torch.randn(2, 3, 16, 16)
        >>> u = soft_threshold_dynamics(o, lam=1.0, epsilon=0.5)
        >>> u.shape, bool(torch.allclose(u.sum(1), torch.ones(2, 16, 16)))
        (torch.Size([2, 3, 16, 16]), True)
        >>> torch.allclose(soft_threshold_dynamics(o, lam=0.0, epsilon=0.5), torch.softmax(o / 0.5, 1))
        True
    """
    d = check_shape(logits, "logits", "N C H W")
    check_dtype(logits, "logits", "float")
    check_finite(logits, "logits")
    N, C, H, W = logits.shape
    if C < 2:
        raise ValueError(f"`logits`: expected C >= 2 classes, got C={C}")
    T = _check_int(iterations, "iterations", 0)
    t2 = _check_int(sinkhorn_iterations, "sinkhorn_iterations", 1)
    _check_number(lam, "lam", 0.0)
    _check_number(epsilon, "epsilon", 0.0, strict=True)
    check_choice(output, "output", ("probs", "log_probs", "logits"))
    if kernel is None:
        kernel = gaussian_kernel(DEFAULT_KERNEL_SIZE, DEFAULT_SIGMA, dtype=logits.dtype, device=logits.device)
    k4 = _check_kernel(kernel, C).to(device=logits.device)
    o, eps = logits, epsilon

    logV = None
    if volumes is not None:
        logV = _check_volumes(volumes, N, C, H, W).to(logits.dtype).log()[:, :, None, None]
        q = logits.new_zeros(N, C, 1, 1)
    s = None
    if center is not None:
        if isinstance(star_class, bool) or not isinstance(star_class, (int, np.integer)):
            raise TypeError(f"`star_class`: expected an int, got {type(star_class).__name__}")
        if not 0 <= star_class < C:
            raise ValueError(f"`star_class`: expected a class index in [0, {C}) (as in `logits`), got {star_class}")
        if tau is None:
            tau = eps
        _check_number(tau, "tau", 0.0, strict=True)
        center = _check_center(center, N, H, W)
        s = star_directions(center, H, W, dtype=logits.dtype, device=logits.device)
        eta = logits.new_zeros(N, 1, H, W)
        onehot = F.one_hot(torch.tensor(star_class), C).to(logits.dtype).to(logits.device)[None, :, None, None]
    elif tau is not None:
        _check_number(tau, "tau", 0.0, strict=True)

    z = o
    if init is None:
        u = torch.softmax(z / eps, 1)
    else:
        check_shape(init, "init", "N C H W", d)
        check_finite(init, "init")
        check_range(init, "init", 0.0, 1.0 + 1e-5)
        if float((init.detach().sum(1) - 1).abs().max()) > 1e-4:
            raise ValueError("`init`: expected points of the simplex (classes summing to 1 at every pixel)")
        u = init.to(logits.dtype)
    energies = []
    if return_energies:
        with torch.no_grad():
            energies.append(std_energy(u, o, lam=lam, epsilon=eps, kernel=kernel))
    for _ in range(T):
        p = _subgradient(u, k4, lam)  # = lam * k*(1 - 2u) [STD, Eq. 7], e = 1
        z = o - p
        if s is not None:
            # projected dual ascent on the ray-monotonicity constraint s . grad u >= 0 [STD, Alg. 3]
            eta = torch.clamp(eta - tau * (s * grad2d(u[:, star_class:star_class + 1])).sum(1, keepdim=True), min=0)
            z = z - onehot * div2d(eta * s)
        if logV is not None:
            for _ in range(t2):  # log-domain Sinkhorn column scaling [STD, Eq. 10]
                logu = torch.log_softmax((z + q) / eps, 1)
                q = q + eps * (logV - torch.logsumexp(logu, dim=(2, 3), keepdim=True))
                q = q - q.mean(1, keepdim=True)  # gauge: u is invariant to q + const
            z = z + q
        u = torch.softmax(z / eps, 1)
        if return_energies:
            with torch.no_grad():
                energies.append(std_energy(u, o, lam=lam, epsilon=eps, kernel=kernel))

    if output == "probs":
        out = u
    elif output == "log_probs":
        out = torch.log_softmax(z / eps, 1)
    else:
        out = z / eps
    if return_energies:
        return out, torch.stack(energies).detach()
    return out


# ----------------------------------------------------------------------------- layers
_LEARNABLE = ("lam", "epsilon", "sigma")


class STD(nn.Module):
    r"""STD softmax block: a drop-in replacement for a segmentation network's final softmax [STD, Sec. 3.6, Eq. 12].

    Stores :math:`T`, :math:`\lambda`, :math:`\varepsilon` and the Gaussian kernel's size and
    :math:`\sigma`, and calls :func:`soft_threshold_dynamics`. Each of ``lam``, ``epsilon`` and
    ``sigma`` is fixed (a buffer, the paper's choice) or learnable (a parameter stored as its log, so
    it stays positive).

    Args:
        iterations: :math:`T` (paper: 10).
        lam: :math:`\lambda` (paper: 1.0 on VOC).
        epsilon: :math:`\varepsilon` (paper: 0.1 on VOC).
        kernel_size: odd kernel support (paper: 7).
        sigma: kernel :math:`\sigma` in pixels (default 1.0, PSD at 7×7; paper: 5.0, not PSD).
        psd_kernel: build the kernel as an autocorrelation, PSD for any ``sigma``
            (see :func:`gaussian_kernel`).
        learnable: names among ``("lam", "epsilon", "sigma")`` to learn.
        output: ``"probs"``, ``"log_probs"`` or ``"logits"`` (see :func:`soft_threshold_dynamics`).

    Example:
        >>> head = STD(iterations=5, lam=1.0, epsilon=0.5)
        >>> head(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, iterations: int = PAPER_ITERATIONS, lam: float = PAPER_LAM, epsilon: float = PAPER_EPSILON,
                 kernel_size: int = DEFAULT_KERNEL_SIZE, sigma: float = DEFAULT_SIGMA, *, psd_kernel: bool = False,
                 learnable: Iterable[str] = (), output: str = "probs"):
        super().__init__()
        self.iterations = _check_int(iterations, "iterations", 0)
        _check_number(lam, "lam", 0.0)
        _check_number(epsilon, "epsilon", 0.0, strict=True)
        _check_number(sigma, "sigma", 0.0, strict=True)
        self.kernel_size = _check_int(kernel_size, "kernel_size", 1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size`: expected an odd size, got {kernel_size}")
        check_choice(output, "output", ("probs", "log_probs", "logits"))
        self.output, self.psd_kernel = output, bool(psd_kernel)
        learnable = tuple(learnable)
        for name in learnable:
            check_choice(name, "learnable", _LEARNABLE)
        if "lam" in learnable and float(lam) <= 0:
            raise ValueError(f"`lam`: a learnable lam is stored as log(lam) and must start > 0, got {lam}")
        self.learnable = learnable
        for name, value in (("lam", lam), ("epsilon", epsilon), ("sigma", sigma)):
            if name in learnable:
                setattr(self, f"log_{name}", nn.Parameter(torch.tensor(math.log(float(value)))))
            else:
                self.register_buffer(f"_{name}", torch.tensor(float(value)), persistent=True)

    def _value(self, name: str) -> torch.Tensor:
        return getattr(self, f"log_{name}").exp() if name in self.learnable else getattr(self, f"_{name}")

    lam = property(lambda self: self._value("lam"), doc=r":math:`\lambda` (a 0-dim tensor).")
    epsilon = property(lambda self: self._value("epsilon"), doc=r":math:`\varepsilon` (a 0-dim tensor).")
    sigma = property(lambda self: self._value("sigma"), doc=r"kernel :math:`\sigma` (a 0-dim tensor).")

    def kernel(self, dtype=None) -> torch.Tensor:
        """The current ``(K, K)`` kernel (differentiable in ``sigma`` when it is learnable)."""
        return gaussian_kernel(self.kernel_size, self.sigma, psd=self.psd_kernel, dtype=dtype)

    def _kwargs(self, logits: torch.Tensor) -> dict:
        return dict(iterations=self.iterations, lam=self.lam.to(logits.dtype), epsilon=self.epsilon.to(logits.dtype),
                    kernel=self.kernel(logits.dtype), output=self.output)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` logits → ``(N, C, H, W)`` output (``probs`` by default)."""
        return soft_threshold_dynamics(logits, **self._kwargs(logits))

    def extra_repr(self) -> str:
        lam, eps, sigma = (float(v.detach()) for v in (self.lam, self.epsilon, self.sigma))
        return (f"iterations={self.iterations}, lam={lam:.4g}, epsilon={eps:.4g}, "
                f"kernel_size={self.kernel_size}, sigma={sigma:.4g}, psd_kernel={self.psd_kernel}, "
                f"learnable={self.learnable}, output={self.output!r}")


class VolumeSTD(STD):
    r"""Volume-preserving STD block (VP-STD) [STD, Sec. 3.7, Eq. 13, Alg. 2].

    Same arguments as :class:`STD` plus ``sinkhorn_iterations`` (:math:`t_2`, paper: 1). The forward
    pass takes the target volumes: the paper takes them from the ground truth, also at test time.

    Example:
        >>> head = VolumeSTD(iterations=10, epsilon=0.5)
        >>> V = torch.tensor([[192., 64.]])
        >>> u = head(torch.randn(1, 2, 16, 16), V)
        >>> torch.allclose(u.sum((2, 3)), V, rtol=0.05)
        True
    """

    def __init__(self, *args, sinkhorn_iterations: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.sinkhorn_iterations = _check_int(sinkhorn_iterations, "sinkhorn_iterations", 1)

    def forward(self, logits: torch.Tensor, volumes: torch.Tensor) -> torch.Tensor:
        """``logits`` ``(N, C, H, W)``, ``volumes`` ``(N, C)`` pixel counts summing to ``H*W``."""
        return soft_threshold_dynamics(logits, volumes=volumes, sinkhorn_iterations=self.sinkhorn_iterations,
                                       **self._kwargs(logits))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", sinkhorn_iterations={self.sinkhorn_iterations}"


class StarSTD(STD):
    r"""Star-shape STD block (SS-STD) [STD, Sec. 3.8, Eq. 14, Alg. 3].

    Same arguments as :class:`STD` (but ``iterations`` defaults to the paper's 50) plus
    ``star_class`` (the class that must be star-shaped) and ``tau`` (dual step, default
    :math:`\varepsilon`). The forward pass takes the centre: the paper takes it from the ground truth,
    in training and at test time.

    Example:
        >>> head = StarSTD(iterations=20, epsilon=0.5)
        >>> head(torch.randn(1, 2, 16, 16), torch.tensor([[8., 8.]])).shape
        torch.Size([1, 2, 16, 16])
    """

    def __init__(self, iterations: int = PAPER_STAR_ITERATIONS, *args, star_class: int = 1, tau: float | None = None,
                 **kwargs):
        super().__init__(iterations, *args, **kwargs)
        if isinstance(star_class, bool) or not isinstance(star_class, (int, np.integer)) or star_class < 0:
            raise ValueError(f"`star_class`: expected a class index >= 0, got {star_class!r}")
        if tau is not None:
            _check_number(tau, "tau", 0.0, strict=True)
        self.star_class, self.tau = int(star_class), tau

    def forward(self, logits: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """``logits`` ``(N, C, H, W)``, ``center`` ``(N, 2)`` (row, col) inside the image."""
        return soft_threshold_dynamics(logits, center=center, star_class=self.star_class, tau=self.tau,
                                       **self._kwargs(logits))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", star_class={self.star_class}, tau={self.tau}"


# ----------------------------------------------------------------------------- priors from data, diagnostics
def volumes_from_labels(labels: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    r"""Per-class pixel counts :math:`V` of a label map, as :func:`soft_threshold_dynamics` wants them.

    Pixels equal to ``ignore_index`` are shared out in proportion to the counts of the others, so
    the volumes still sum to :math:`HW`. (This is the paper's oracle: volumes from the ground truth.)

    Args:
        labels: ``(N, H, W)`` int64 in ``[0, num_classes)`` or ``ignore_index``.

    Returns:
        ``(N, num_classes)`` float32; a class absent from an image gets 0 (which
        :func:`soft_threshold_dynamics` rejects, naming the class).

    Example:
        >>> volumes_from_labels(torch.tensor([[[0, 0], [1, 255]]]), 2, ignore_index=255)
        tensor([[2.6667, 1.3333]])
    """
    from ._checks import check_labels

    check_shape(labels, "labels", "N H W")
    num_classes = _check_int(num_classes, "num_classes", 1)
    check_labels(labels, "labels", num_classes, ignore_index)
    valid = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
    onehot = F.one_hot(torch.where(valid, labels, 0), num_classes) * valid[..., None]
    counts = onehot.sum((1, 2)).float()
    n_valid = counts.sum(1, keepdim=True)
    if bool((n_valid == 0).any()):
        raise ValueError(f"`labels`: image {int((n_valid[:, 0] == 0).nonzero()[0])} has no valid pixel")
    return counts * (labels.shape[1] * labels.shape[2]) / n_valid


def centroid(mask: torch.Tensor) -> torch.Tensor:
    r"""Centre of mass (row, col) of each ``(N, H, W)`` non-negative mask: the paper's star centre.

    Raises:
        ValueError: for an empty mask (no centre exists).

    Example:
        >>> m = torch.zeros(1, 5, 5); m[0, 1:4, 2:5] = 1
        >>> centroid(m)
        tensor([[2., 3.]])
    """
    check_shape(mask, "mask", "N H W")
    m = mask.float()
    check_finite(m, "mask")
    check_range(m, "mask", low=0.0)
    total = m.sum((1, 2))
    if bool((total <= 0).any()):
        raise ValueError(f"`mask`: image {int((total <= 0).nonzero()[0])} is empty; a star centre needs a non-empty mask")
    rows = torch.arange(m.shape[1], dtype=m.dtype, device=m.device)
    cols = torch.arange(m.shape[2], dtype=m.dtype, device=m.device)
    return torch.stack([(m.sum(2) * rows).sum(1) / total, (m.sum(1) * cols).sum(1) / total], 1)


def star_violations(mask: torch.Tensor, center: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    r"""Hard star-shape violations: pixels of ``mask`` whose straight segment to ``center`` leaves it.

    Each segment is sampled every half pixel and rounded to the nearest pixel (a rasterised ray, as in
    Veksler's discrete constraint); a pixel counts once however many of its samples fall outside.
    Only foreground pixels are traced; memory :math:`\propto` ``chunk`` × their number.

    Args:
        mask: ``(N, H, W)`` bool (or 0/1) foreground.
        center: ``(N, 2)`` or ``(2,)`` star centre (row, col), inside the image.

    Returns:
        ``(N,)`` int64 counts (0 for a star-shaped mask).

    Example:
        >>> ring = torch.zeros(1, 9, 9, dtype=torch.bool); ring[0, 1:8, 1:8] = True; ring[0, 3:6, 3:6] = False
        >>> int(star_violations(ring, torch.tensor([4., 4.]))[0]) > 0
        True
    """
    check_shape(mask, "mask", "N H W")
    N, H, W = mask.shape
    c = _check_center(center, N, H, W).to(torch.float32).to(mask.device)
    m = mask.bool()
    n_idx, r_idx, c_idx = m.nonzero(as_tuple=True)
    out = torch.zeros(N, dtype=torch.int64, device=m.device)
    if n_idx.numel() == 0:
        return out
    r0, c0 = r_idx.float(), c_idx.float()
    dr, dc = c[n_idx, 0] - r0, c[n_idx, 1] - c0
    steps = int(math.ceil(2 * float(torch.hypot(dr, dc).max()))) + 1
    ts = torch.linspace(0, 1, steps, device=m.device)
    flat, base = m.reshape(-1), n_idx * (H * W)
    bad = torch.zeros_like(n_idx, dtype=torch.bool)
    for start in range(0, steps, chunk):
        t = ts[start:start + chunk, None]  # (t, 1)
        rr = (r0 + t * dr).round().clamp(0, H - 1).long()
        cc = (c0 + t * dc).round().clamp(0, W - 1).long()
        bad |= ~flat[base + rr * W + cc].all(0)
    return out.index_add_(0, n_idx, bad.long())


def boundary_length(labels: torch.Tensor) -> torch.Tensor:
    """Number of 4-neighbour pairs with different labels in each ``(N, H, W)`` map (a discrete perimeter).

    Example:
        >>> boundary_length(torch.tensor([[[0, 0, 1], [0, 0, 1]]]))
        tensor([2])
    """
    check_shape(labels, "labels", "N H W")
    return ((labels[:, 1:] != labels[:, :-1]).sum((1, 2)) + (labels[:, :, 1:] != labels[:, :, :-1]).sum((1, 2)))


def count_components(labels: torch.Tensor, connectivity: int = 1) -> torch.Tensor:
    """Connected components summed over the labels present, per ``(N, H, W)`` map (scipy.ndimage.label).

    ``connectivity`` 1 is 4-connected, 2 is 8-connected. A clean scene of ``k`` separate objects on a
    background has ``k + 1``; speckle adds one per isolated blob.

    Example:
        >>> count_components(torch.tensor([[[0, 1, 0], [0, 0, 0], [1, 0, 0]]]))
        tensor([3])
    """
    from scipy import ndimage

    check_shape(labels, "labels", "N H W")
    check_choice(connectivity, "connectivity", (1, 2))
    structure = ndimage.generate_binary_structure(2, connectivity)
    lab = labels.detach().cpu().numpy()
    out = []
    for img in lab:
        out.append(sum(ndimage.label(img == v, structure=structure)[1] for v in np.unique(img)))
    return torch.tensor(out, dtype=torch.int64)
