r"""Explicit level-set evolution: the upwind right-hand side, the CFL step, forward Euler, Sussman
re-initialisation, the geodesic edge indicator, and a learned linear forcing [NODE-LS, Eq. 1; OF03].
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from .._checks import check_finite, check_float, check_int, check_shape
from ..ops._common import _check_phi
from ..ops.differences import _curvature_term, _upwind_grad_norm, grad_norm, gradient  # noqa: F401  (examples)
from ..ops.sdf import sdf_from_mask  # noqa: F401  (used by the examples)
from .chan_vese import region_means
from .narrow_band import narrow_band

__all__ = ["level_set_rhs", "cfl_dt", "evolve", "reinitialize", "edge_indicator", "LinearForcing"]


def level_set_rhs(phi: torch.Tensor, speed=0.0, curvature_weight: float = 0.0) -> torch.Tensor:
    r"""Right-hand side of :math:`\phi_t = F\,|\nabla\phi|_{\rm upwind} + b\,\kappa|\nabla\phi|` [NODE-LS, Eq. 1].

    The advection part uses :func:`upwind_grad_norm`, the curvature part (a diffusion) central
    differences, as in [OF03, §4.3, §6.2].

    Args:
        phi: ``(N, C, H, W)``.
        speed: :math:`F`, a number or a tensor broadcastable to ``phi`` (image-dependent speeds).
        curvature_weight: :math:`b \ge 0` (``b < 0`` is the ill-posed backward heat equation).
    """
    b = check_float(curvature_weight, "curvature_weight", low=0.0)
    _check_phi(phi)
    return _level_set_rhs(phi, speed, b)


def _level_set_rhs(phi, speed, b):
    speed = torch.as_tensor(speed, dtype=phi.dtype, device=phi.device)
    out = speed * _upwind_grad_norm(phi, speed)
    if b:
        out = out + b * _curvature_term(phi)
    return out


def cfl_dt(max_speed: float, curvature_weight: float = 0.0, cfl: float = 1.0) -> float:
    r"""Largest stable explicit time step [OF03, Eq. 4.12 with :math:`H_1 = F n_x`, :math:`H_2 = F n_y`]:

    .. math:: \Delta t\,\big(\sqrt2\,\max|F| + 4b\big) \le \mathrm{cfl}\quad(\Delta x = 1),

    where :math:`\sqrt2 = \max(|n_x|+|n_y|)` over unit normals and :math:`4b = 2b/\Delta x^2 +
    2b/\Delta y^2` is the diffusion limit of the curvature term.

    Example:
        >>> cfl_dt(1.0, 1.0)   # 1 / (sqrt(2) + 4)
        0.18469903125906464
    """
    rate = math.sqrt(2) * abs(float(max_speed)) + 4 * check_float(curvature_weight, "curvature_weight", low=0.0)
    return math.inf if rate == 0 else float(cfl) / rate


def evolve(phi: torch.Tensor, times: Sequence[float] | torch.Tensor, dt: float,
           speed: float | torch.Tensor | Callable = 0.0, curvature_weight: float = 0.0,
           reinit_every: int = 0, check_cfl: bool = True) -> torch.Tensor:
    r"""Explicit (forward-Euler, upwind) integration of :math:`\phi_t = F|\nabla\phi| + b\kappa|\nabla\phi|`.

    The method of lines: after discretising space with :func:`level_set_rhs` the PDE is an ODE
    system :math:`\dot\phi = G(\phi)`, stepped here with forward Euler (the same system the Neural
    ODE replaces by :math:`f_\theta` [NODE-LS, Eq. 2]). Differentiable in ``phi`` and ``speed``.

    Args:
        phi: ``(N, C, H, W)`` initial level set (:math:`\phi>0` inside).
        times: increasing output times, starting with the initial time (like ``torchdiffeq.odeint``).
        dt: maximal time step; each interval is split into ``ceil(interval / dt)`` equal steps.
        speed: :math:`F`: a number, a tensor broadcastable to ``phi``, or a callable
            ``speed(phi, t) -> tensor`` re-evaluated every step (image-driven speeds).
        curvature_weight: :math:`b\ge0`.
        reinit_every: re-initialise with :func:`reinitialize` every this many steps (0 = never).
        check_cfl: raise when a step violates :func:`cfl_dt` (set ``False`` to watch the blow-up).

    Returns:
        ``(T, N, C, H, W)``: ``phi`` at each time in ``times``.

    Raises:
        ValueError: bad shapes, non-increasing times, or a CFL violation (saying which ``dt`` works).

    Example:
        >>> yy, xx = torch.meshgrid(torch.arange(128.), torch.arange(128.), indexing="ij")
        >>> phi0 = (30 - ((xx - 64) ** 2 + (yy - 64) ** 2).sqrt())[None, None]
        >>> out = evolve(phi0, [0.0, 10.0], dt=0.25, speed=1.0)     # r(t) = r0 + t = 40
        >>> area = (out[-1].clamp(-0.5, 0.5) + 0.5).sum()           # pixel coverage of {phi > 0}
        >>> round(float((area / math.pi).sqrt()), 1)                 # first-order upwind lags a little
        39.9
    """
    _check_phi(phi)
    t = torch.as_tensor(times, dtype=torch.float64).flatten()
    if t.numel() < 1 or bool((t[1:] <= t[:-1]).any()):
        raise ValueError(f"`times`: expected a non-empty strictly increasing sequence, got {t.tolist()}")
    dt = check_float(dt, "dt", low=0.0, low_open=True)
    b = check_float(curvature_weight, "curvature_weight", low=0.0)
    if int(reinit_every) < 0:
        raise ValueError(f"`reinit_every`: expected >= 0, got {reinit_every}")
    if torch.is_tensor(speed):
        check_finite(speed, "speed")
    out, step = [phi], 0
    for k in range(1, t.numel()):
        interval = float(t[k] - t[k - 1])
        n_steps = max(1, math.ceil(interval / dt - 1e-9))
        h = interval / n_steps
        for j in range(n_steps):
            now = float(t[k - 1]) + j * h
            F_ = speed(phi, now) if callable(speed) else speed
            F_ = torch.as_tensor(F_, dtype=phi.dtype, device=phi.device)
            if check_cfl:
                limit = cfl_dt(float(F_.detach().abs().max()), b)
                if h > limit * (1 + 1e-9):
                    raise ValueError(
                        f"`dt`: step {h:.4g} violates the CFL condition dt*(sqrt(2)*max|F| + 4*b) <= 1 "
                        f"(max|F| = {float(F_.detach().abs().max()):.4g}, b = {b:.4g}) at t = {now:.4g}; "
                        f"use dt <= {limit:.4g}, or check_cfl=False to watch it blow up")
            phi = phi + h * _level_set_rhs(phi, F_, b)
            step += 1
            if reinit_every and step % int(reinit_every) == 0:
                phi = reinitialize(phi)
        out.append(phi)
    return torch.stack(out)


def reinitialize(phi: torch.Tensor, steps: int = 20, dt: float = 0.5, epsilon: float = 1.0) -> torch.Tensor:
    r"""Sussman re-initialisation: :math:`\phi_\tau = S(\phi_0)(1 - |\nabla\phi|)` [SSO94, Eq. 4.3 (their Eq. for d)].

    Drives :math:`|\nabla\phi|` back to 1 while (ideally) keeping the zero level set, with
    :math:`S(\phi_0) = \phi_0/\sqrt{\phi_0^2+\varepsilon^2}`. Written as
    :math:`\phi_\tau = (-S)|\nabla\phi| + S`, the upwind direction is that of a front with speed
    :math:`-S` (:func:`upwind_grad_norm`): information flows away from the contour. ``dt = 0.5``
    satisfies :math:`\sqrt2\,\Delta\tau\max|S|\le 1`. After ``steps`` iterations only a band of
    width about ``steps * dt`` pixels around the contour is a distance function. Differentiable.
    [NODE-LS, §3.2] found it unnecessary for their NODEs; Chapter 2 shows the drift it corrects.

    Example:
        >>> phi = 3.0 * sdf_from_mask(torch.ones(1, 16, 16).tril().bool())   # |grad phi| = 3
        >>> g = grad_norm(reinitialize(phi))[0, 0, 4:12, 4:12]
        >>> bool((g - 1).abs().mean() < 0.1)
        True
    """
    _check_phi(phi)
    steps = check_int(steps, "steps", low=0)
    dt = check_float(dt, "dt", low=0.0, low_open=True)
    if dt * math.sqrt(2) > 1 + 1e-9:
        raise ValueError(f"`dt`: expected <= {1 / math.sqrt(2):.4f} (CFL with |S| <= 1), got {dt}")
    epsilon = check_float(epsilon, "epsilon", low=0.0, low_open=True)  # 0 would make S = phi/|phi| NaN at 0
    S = phi / torch.sqrt(phi * phi + epsilon * epsilon)
    for _ in range(steps):
        phi = phi + dt * S * (1 - _upwind_grad_norm(phi, -S))
    return phi


def edge_indicator(image: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    r"""Edge-stopping function :math:`g = 1/(1+|\nabla G_\sigma * I|^2)` of geodesic active contours.

    With speed :math:`F = g(I)(c+\kappa)` the front slows down where the smoothed image has strong
    edges [Caselles, Kimmel & Sapiro 1997; cited through Paragios & Deriche 2000 in NODE-LS].
    Multi-channel images sum the squared gradients over channels. Returns ``(N, 1, H, W)`` in (0, 1].
    """
    from torchvision.transforms.functional import gaussian_blur

    check_shape(image, "image", "N C H W")
    check_finite(image, "image")
    sigma = check_float(sigma, "sigma", low=0.0, low_open=True)
    k = 2 * math.ceil(3 * sigma) + 1
    smooth = gaussian_blur(image, [k, k], [sigma, sigma])
    gy, gx = gradient(smooth)
    return 1 / (1 + (gx * gx + gy * gy).sum(1, keepdim=True))


class LinearForcing(nn.Module):
    r"""A learned *linear* forcing function: five weights, the bridge from hand-set flows to NODEs.

    .. math::
        \phi_t = F_{\rm adv}\,|\nabla\phi|_{\rm upwind} + b\,\kappa|\nabla\phi|,\qquad
        F_{\rm adv} = w_0 + w_2\big[(I-c_2)^2-(I-c_1)^2\big] + w_3\tanh(\hat\phi^{(0)}/s) + w_4(I-\tfrac12),

    with :math:`b = w_1` (curvature weight), :math:`c_{1,2}` the smoothed Chan–Vese region means of
    the current :math:`\phi` and :math:`I` the channel mean of the image. Integrated with
    ``steps`` explicit steps over :math:`[0, 1]` from :math:`\phi^{(0)}=\hat\phi^{(0)}`. Stable by
    construction: :math:`F_{\rm adv}` is soft-clipped to :math:`v_{\max}\tanh(F/v_{\max})` and
    :math:`b` clamped to :math:`[0, b_{\max}]` with :math:`\sqrt2\,v_{\max}\Delta t = 4b_{\max}\Delta t = 1/2`,
    so :func:`cfl_dt` holds. All weights start at 0 except :math:`w_1 = 0.01` (the clamp has no
    gradient below 0, so a curvature weight started at exactly 0 could never move); with all
    weights 0 the flow is the identity. This is the chapter's construction (from the note's
    derivation path), not the paper's.

    ``forward(image, phi0)`` -> evolved ``(N, 1, H, W)``. ``weights`` is the ``(5,)`` parameter
    :math:`(w_0, w_1, w_2, w_3, w_4)`.
    """

    FEATURES = ("const", "curvature", "chan_vese", "prior", "intensity")

    def __init__(self, steps: int = 20, scale: float = 3.0, epsilon: float = 1.0):
        super().__init__()
        self.steps = check_int(steps, "steps", low=1)
        self.scale = check_float(scale, "scale", low=0.0, low_open=True)
        self.epsilon = check_float(epsilon, "epsilon", low=0.0, low_open=True)
        self.weights = nn.Parameter(torch.tensor([0.0, 0.01, 0.0, 0.0, 0.0]))  # w1 > 0: see above

    def forward(self, image: torch.Tensor, phi0: torch.Tensor, return_path: bool = False) -> torch.Tensor:
        d = check_shape(image, "image", "N C H W")
        check_shape(phi0, "phi0", "N 1 H W", d)
        check_finite(image, "image")
        _check_phi(phi0, "phi0")
        dt = 1.0 / self.steps
        vmax, bmax = 0.5 / (math.sqrt(2) * dt), 0.125 / dt
        w = self.weights
        gray = image.mean(1, keepdim=True)
        static = w[0] + w[3] * narrow_band(phi0, self.scale) + w[4] * (gray - 0.5)
        b = w[1].clamp(0, bmax)
        phi, path = phi0, [phi0]
        for _ in range(self.steps):
            c1, c2 = region_means(gray, phi, self.epsilon)
            f = static + w[2] * ((gray - c2) ** 2 - (gray - c1) ** 2)
            f = vmax * torch.tanh(f / vmax)
            phi = phi + dt * (f * _upwind_grad_norm(phi, f) + b * _curvature_term(phi))
            path.append(phi)
        return torch.stack(path) if return_path else phi
