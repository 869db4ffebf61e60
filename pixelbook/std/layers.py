r"""The three STD layers: drop-in replacements for a segmentation network's final softmax [STD, Secs. 3.6–3.8]."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from .._checks import check_choice, check_float, check_int
from .dynamics import PAPER_EPSILON, PAPER_ITERATIONS, PAPER_LAM, PAPER_STAR_ITERATIONS, soft_threshold_dynamics
from .kernels import DEFAULT_KERNEL_SIZE, DEFAULT_SIGMA, gaussian_kernel

__all__ = ["STD", "VolumeSTD", "StarSTD"]

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
        self.iterations = check_int(iterations, "iterations", low=0)
        check_float(lam, "lam", low=0.0)
        check_float(epsilon, "epsilon", low=0.0, low_open=True)
        check_float(sigma, "sigma", low=0.0, low_open=True)
        self.kernel_size = check_int(kernel_size, "kernel_size", low=1)
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

    Same arguments as :class:`STD` plus ``sinkhorn_iterations`` (:math:`t_2`) and ``volume_tol``. The
    default ``sinkhorn_iterations=None`` runs the volume step until every soft volume is within
    ``volume_tol`` = 0.5 pixels of its target (the resolution of a pixel count), warm-started across
    the outer steps; the paper's ``sinkhorn_iterations=1`` misses small classes by a wide margin (see
    :func:`soft_threshold_dynamics`). The forward pass takes the target volumes: the paper takes them
    from the ground truth, also at test time.

    Example:
        >>> head = VolumeSTD(iterations=10, epsilon=0.5)
        >>> V = torch.tensor([[192., 64.]])
        >>> u = head(torch.randn(1, 2, 16, 16), V)
        >>> bool((u.sum((2, 3)) - V).abs().max() <= 0.5)
        True
    """

    def __init__(self, *args, sinkhorn_iterations: int | None = None, volume_tol: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.sinkhorn_iterations = (None if sinkhorn_iterations is None
                                    else check_int(sinkhorn_iterations, "sinkhorn_iterations", low=1))
        self.volume_tol = check_float(volume_tol, "volume_tol", low=0.0, low_open=True)

    def forward(self, logits: torch.Tensor, volumes: torch.Tensor) -> torch.Tensor:
        """``logits`` ``(N, C, H, W)``, ``volumes`` ``(N, C)`` pixel counts summing to ``H*W``."""
        return soft_threshold_dynamics(logits, volumes=volumes, sinkhorn_iterations=self.sinkhorn_iterations,
                                       volume_tol=self.volume_tol, **self._kwargs(logits))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", sinkhorn_iterations={self.sinkhorn_iterations}, volume_tol={self.volume_tol:g}"


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
        star_class = check_int(star_class, "star_class", low=0)
        if tau is not None:
            check_float(tau, "tau", low=0.0, low_open=True)
        self.star_class, self.tau = int(star_class), tau

    def forward(self, logits: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """``logits`` ``(N, C, H, W)``, ``center`` ``(N, 2)`` (row, col) inside the image."""
        return soft_threshold_dynamics(logits, center=center, star_class=self.star_class, tau=self.tau,
                                       **self._kwargs(logits))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", star_class={self.star_class}, tau={self.tau}"
