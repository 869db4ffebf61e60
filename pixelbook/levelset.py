r"""Level sets, Chan–Vese and Neural-ODE segmentation [NODE-LS] (Chapter 2).

Conventions, stated once and kept everywhere in this module:

* A level-set function ``phi`` is a float tensor ``(N, C, H, W)`` (usually ``C = 1``) in **pixel
  units** on a grid with spacing :math:`\Delta x = 1`; the ``x`` axis is the last (width) axis.
* :math:`\phi > 0` **inside** the object, :math:`\phi < 0` outside, the contour is
  :math:`\{\phi = 0\}`. With this sign the paper's level-set equation reads
  :math:`\phi_t = F\,|\nabla\phi|` [NODE-LS, Eq. 1], and a **positive speed** :math:`F` moves the
  front **outwards** (the region grows).
* Curvature is :math:`\kappa = \nabla\cdot(\nabla\phi/|\nabla\phi|)` (the paper prints
  :math:`\nabla\frac{\nabla\phi}{\|\nabla\phi\|}` without the dot). With :math:`\phi>0` inside, a
  circle of radius :math:`r` has :math:`\kappa = -1/r`, so the flow :math:`F = \kappa` shrinks it:
  :math:`r(t) = \sqrt{r_0^2 - 2t}`. A constant speed :math:`F=c` gives :math:`r(t) = r_0 + ct`.
* Masks are ``(N, H, W)`` and binary (bool, or integers/floats equal to 0 or 1).

Contents: signed distance from a mask; central and Godunov-upwind gradients; curvature; smoothed
Heaviside/Dirac; explicit level-set evolution with a CFL check; Sussman re-initialisation;
Chan–Vese in torch (the scikit-image scheme, batched and differentiable); a learned linear
forcing; the narrow-band loss; and the two Neural-ODE models of [NODE-LS]: :class:`ContourEvolution`
(Eq. 3) and :class:`ImageEvolution` (Eq. 4), solved with torchdiffeq with any of its solvers,
tolerances, the adjoint on or off, and function-evaluation (NFE) counting.

References: [NODE-LS] *Neural ODEs for image segmentation with level sets*, arXiv:1912.11683;
[OS88] Osher & Sethian 1988; [CV01] Chan & Vese 2001; [SSO94] Sussman, Smereka & Osher 1994;
[Getreuer12] *Chan–Vese segmentation*, IPOL 2012; [OF03] Osher & Fedkiw, *Level Set Methods and
Dynamic Implicit Surfaces*, 2003.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_dtype, check_finite, check_shape

__all__ = [
    "sdf_from_mask", "gradient", "grad_norm", "upwind_grad_norm", "curvature", "curvature_term",
    "heaviside", "dirac", "level_set_rhs", "cfl_dt", "evolve", "reinitialize", "region_means",
    "chan_vese", "chan_vese_energy", "edge_indicator", "narrow_band", "narrow_band_loss",
    "segmentation_scores", "ODESolveError", "solve_ode", "ODEFunc", "ContourEvolution",
    "ImageEvolution", "LinearForcing", "ADAPTIVE_METHODS", "FIXED_METHODS",
]

_EPS = 1e-8  # ours: keeps sqrt/division finite where the gradient vanishes (flat regions)
#: torchdiffeq's adaptive-step solvers (step size set by ``atol``/``rtol``).
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: torchdiffeq's fixed-step solvers (step size set by ``step_size``).
FIXED_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams")


# ----------------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------------

def _check_phi(phi, name: str = "phi", dims: dict | None = None) -> dict:
    d = check_shape(phi, name, "N C H W", dims)
    check_dtype(phi, name, "float")
    check_finite(phi, name)
    return d


def _check_masks(masks, name: str = "masks", dims: dict | None = None) -> dict:
    d = check_shape(masks, name, "N H W", dims)
    if masks.dtype != torch.bool:
        if masks.is_complex():
            raise TypeError(f"`{name}`: expected a bool or 0/1 tensor, got {masks.dtype}")
        bad = (masks != 0) & (masks != 1)
        if bool(bad.any()):
            vals = masks[bad]
            raise ValueError(f"`{name}`: expected binary values {{0, 1}} (or bool), got {int(bad.sum())} other "
                             f"values in [{float(vals.min()):.4g}, {float(vals.max()):.4g}]")
    return d


def _positive(value, name: str, allow_zero: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"`{name}`: expected a {'non-negative' if allow_zero else 'positive'} finite number, got {value}")
    return v


# ----------------------------------------------------------------------------------------------------
# Signed distance, derivatives, curvature
# ----------------------------------------------------------------------------------------------------

def sdf_from_mask(masks: torch.Tensor, half_pixel: bool = True) -> torch.Tensor:
    r"""Signed Euclidean distance to the mask boundary, positive inside [NODE-LS, §2].

    :math:`\phi^0(x) = \pm\min_{u\in S^0}\|x - u\|` with :math:`\phi>0` inside. Computed with
    ``scipy.ndimage.distance_transform_edt`` (exact EDT to pixel centres, on the CPU). The contour
    runs *between* the last inside and the first outside pixel centre, so with ``half_pixel=True``
    each distance is reduced by 1/2: :math:`\phi = \mathrm{EDT}(M) - \tfrac12` inside and
    :math:`-(\mathrm{EDT}(\lnot M) - \tfrac12)` outside, which halves the error against the exact
    SDF of a smooth shape (≈0.5 px instead of ≈1 px) and leaves no value in (−½, ½).
    An empty mask has no contour: every pixel gets :math:`-\sqrt{H^2+W^2}` (a full mask
    :math:`+\sqrt{H^2+W^2}`), the largest distance the image can hold. Not differentiable (a
    mask has no gradient); the result is a constant for autograd.

    Args:
        masks: ``(N, H, W)`` bool or 0/1 tensor.
        half_pixel: subtract the half-pixel offset (see above).

    Returns:
        ``(N, 1, H, W)`` float32 on ``masks``' device.

    Raises:
        ValueError: wrong shape or values other than 0/1.

    Example:
        >>> m = torch.zeros(1, 5, 5, dtype=torch.bool); m[0, 1:4, 1:4] = True
        >>> sdf_from_mask(m)[0, 0, 2].tolist()
        [-0.5, 0.5, 1.5, 0.5, -0.5]
    """
    from scipy.ndimage import distance_transform_edt

    _check_masks(masks)
    m = masks.detach().to("cpu").bool().numpy()
    n, h, w = m.shape
    out = np.empty((n, 1, h, w), dtype=np.float32)
    far = math.hypot(h, w)
    off = 0.5 if half_pixel else 0.0
    for i in range(n):
        if not m[i].any():
            out[i, 0] = -far
        elif m[i].all():
            out[i, 0] = far
        else:
            inside = distance_transform_edt(m[i]) - off
            outside = distance_transform_edt(~m[i]) - off
            out[i, 0] = np.where(m[i], inside, -outside)
    return torch.from_numpy(out).to(masks.device)


def _shifts(phi: torch.Tensor):
    """Replicate-padded neighbours (Neumann boundary): centre, x−1, x+1, y−1, y+1."""
    p = F.pad(phi, (1, 1, 1, 1), mode="replicate")
    return p, p[..., 1:-1, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:], p[..., :-2, 1:-1], p[..., 2:, 1:-1]


def gradient(phi: torch.Tensor, scheme: str = "central") -> tuple[torch.Tensor, torch.Tensor]:
    r"""Finite-difference gradient ``(phi_y, phi_x)`` with replicate (Neumann) boundaries.

    Args:
        phi: ``(N, C, H, W)``.
        scheme: ``"central"`` :math:`(\phi_{i+1}-\phi_{i-1})/2`, ``"forward"``
            :math:`D^+ = \phi_{i+1}-\phi_i` or ``"backward"`` :math:`D^- = \phi_i-\phi_{i-1}`.

    Example:
        >>> gy, gx = gradient(torch.arange(5.).repeat(1, 1, 5, 1))
        >>> gx[0, 0, 2].tolist(), float(gy.abs().max())
        ([0.5, 1.0, 1.0, 1.0, 0.5], 0.0)
    """
    _check_phi(phi)
    check_choice(scheme, "scheme", ("central", "forward", "backward"))
    _, c, xm, xp, ym, yp = _shifts(phi)
    if scheme == "central":
        return (yp - ym) / 2, (xp - xm) / 2
    if scheme == "forward":
        return yp - c, xp - c
    return c - ym, c - xm


def grad_norm(phi: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    r""":math:`|\nabla\phi|` with central differences, :math:`\sqrt{\phi_x^2+\phi_y^2+\epsilon^2}`.

    Use for diagnostics and for the curvature term; the advection term needs
    :func:`upwind_grad_norm`. ``eps`` keeps the gradient of the square root finite where
    :math:`\nabla\phi = 0`.
    """
    gy, gx = gradient(phi)
    return torch.sqrt(gx * gx + gy * gy + eps * eps)


def upwind_grad_norm(phi: torch.Tensor, speed, eps: float = _EPS) -> torch.Tensor:
    r"""Godunov upwind :math:`|\nabla\phi|` for :math:`\phi_t = F|\nabla\phi|` with :math:`\phi>0` inside.

    Information travels along the characteristics, i.e. with the front, so the one-sided
    differences must look *where the front comes from* [OS88; OF03, §6.2]. In our sign convention
    (derived by substituting :math:`\psi=-\phi` into the textbook form
    :math:`\psi_t + F|\nabla\psi| = 0`):

    .. math::
        F>0:\ |\nabla\phi|^2 \approx \min(D^-_x\phi,0)^2 + \max(D^+_x\phi,0)^2 + (\text{same in } y),\\
        F<0:\ |\nabla\phi|^2 \approx \max(D^-_x\phi,0)^2 + \min(D^+_x\phi,0)^2 + (\text{same in } y).

    Args:
        phi: ``(N, C, H, W)``.
        speed: :math:`F`, a number or a tensor broadcastable to ``phi``; only its sign is used.

    Example:
        >>> phi = torch.tensor([[[[3., 2., 1., 0., -1.]]]])   # front at x=3 with phi>0 on the left
        >>> upwind_grad_norm(phi, 1.0)[0, 0, 0, 1:4].tolist()  # F>0: backward differences
        [1.0, 1.0, 1.0]
    """
    _check_phi(phi)
    return _upwind_grad_norm(phi, speed, eps)


def _upwind_grad_norm(phi, speed, eps=_EPS):
    _, c, xm, xp, ym, yp = _shifts(phi)
    dxm, dxp, dym, dyp = c - xm, xp - c, c - ym, yp - c
    grow = (dxm.clamp(max=0) ** 2 + dxp.clamp(min=0) ** 2 + dym.clamp(max=0) ** 2 + dyp.clamp(min=0) ** 2)
    shrink = (dxm.clamp(min=0) ** 2 + dxp.clamp(max=0) ** 2 + dym.clamp(min=0) ** 2 + dyp.clamp(max=0) ** 2)
    speed = torch.as_tensor(speed, dtype=phi.dtype, device=phi.device)
    return torch.sqrt(torch.where(speed > 0, grow, shrink) + eps * eps)


def _second_derivatives(phi):
    p, c, xm, xp, ym, yp = _shifts(phi)
    px, py = (xp - xm) / 2, (yp - ym) / 2
    pxx, pyy = xp - 2 * c + xm, yp - 2 * c + ym
    pxy = (p[..., 2:, 2:] - p[..., 2:, :-2] - p[..., :-2, 2:] + p[..., :-2, :-2]) / 4
    return px, py, pxx, pyy, pxy


def curvature(phi: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    r"""Curvature :math:`\kappa = \nabla\cdot\frac{\nabla\phi}{|\nabla\phi|}` with central differences.

    .. math:: \kappa = \frac{\phi_{xx}\phi_y^2 - 2\phi_x\phi_y\phi_{xy} + \phi_{yy}\phi_x^2}
                          {(\phi_x^2+\phi_y^2)^{3/2}}

    With :math:`\phi>0` inside, a disc of radius :math:`r` has :math:`\kappa=-1/r` on its rim
    (convex regions have negative :math:`\kappa`). Where :math:`\nabla\phi\approx 0` (flat or noisy
    regions) the quotient can be far larger than the grid can represent (:math:`1/\Delta x`);
    evolutions use :func:`curvature_term`, :math:`\kappa|\nabla\phi|`, which stays bounded.

    Example:
        >>> yy, xx = torch.meshgrid(torch.arange(64.), torch.arange(64.), indexing="ij")
        >>> phi = (20 - ((xx - 32) ** 2 + (yy - 32) ** 2).sqrt())[None, None]
        >>> round(float(curvature(phi)[0, 0, 32, 52]), 3)   # on the rim, r = 20
        -0.05
    """
    _check_phi(phi)
    px, py, pxx, pyy, pxy = _second_derivatives(phi)
    g2 = px * px + py * py
    return (pxx * py * py - 2 * px * py * pxy + pyy * px * px) / (g2 + eps * eps) ** 1.5


def curvature_term(phi: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    r""":math:`\kappa\,|\nabla\phi|` with central differences: the curvature flow's right-hand side.

    Equals :math:`(\phi_{xx}\phi_y^2 - 2\phi_x\phi_y\phi_{xy} + \phi_{yy}\phi_x^2)/|\nabla\phi|^2`,
    i.e. :math:`t^\top(\nabla^2\phi)\,t` for the unit tangent :math:`t`, so it is bounded by the
    Hessian's norm and stays finite where :math:`\nabla\phi=0`; for an SDF
    (:math:`|\nabla\phi|=1`) it is the Laplacian minus the normal second derivative.
    """
    _check_phi(phi)
    return _curvature_term(phi, eps)


def _curvature_term(phi, eps=_EPS):
    px, py, pxx, pyy, pxy = _second_derivatives(phi)
    g2 = px * px + py * py
    return (pxx * py * py - 2 * px * py * pxy + pyy * px * px) / (g2 + eps * eps)


def heaviside(phi: torch.Tensor, epsilon: float = 1.0) -> torch.Tensor:
    r"""Smoothed Heaviside :math:`H_\varepsilon(\phi) = \tfrac12\big(1+\tfrac2\pi\arctan(\phi/\varepsilon)\big)` [CV01, Eq. 9 (H_{2,ε})].

    Example:
        >>> heaviside(torch.tensor([-1.0, 0.0, 1.0])).tolist()
        [0.25, 0.5, 0.75]
    """
    _positive(epsilon, "epsilon")
    return 0.5 * (1 + (2 / math.pi) * torch.atan(phi / epsilon))


def dirac(phi: torch.Tensor, epsilon: float = 1.0) -> torch.Tensor:
    r"""Smoothed Dirac :math:`\delta_\varepsilon = H_\varepsilon' = \frac{\varepsilon}{\pi(\varepsilon^2+\phi^2)}` [CV01].

    Its integral over the real line is 1 for every :math:`\varepsilon`; scikit-image's
    ``chan_vese`` omits the :math:`1/\pi` (a rescaled time step).
    """
    _positive(epsilon, "epsilon")
    return epsilon / (math.pi * (epsilon * epsilon + phi * phi))


# ----------------------------------------------------------------------------------------------------
# Classical evolution
# ----------------------------------------------------------------------------------------------------

def level_set_rhs(phi: torch.Tensor, speed=0.0, curvature_weight: float = 0.0) -> torch.Tensor:
    r"""Right-hand side of :math:`\phi_t = F\,|\nabla\phi|_{\rm upwind} + b\,\kappa|\nabla\phi|` [NODE-LS, Eq. 1].

    The advection part uses :func:`upwind_grad_norm`, the curvature part (a diffusion) central
    differences, as in [OF03, §4.3, §6.2].

    Args:
        phi: ``(N, C, H, W)``.
        speed: :math:`F`, a number or a tensor broadcastable to ``phi`` (image-dependent speeds).
        curvature_weight: :math:`b \ge 0` (``b < 0`` is the ill-posed backward heat equation).
    """
    b = _positive(curvature_weight, "curvature_weight", allow_zero=True)
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
    rate = math.sqrt(2) * abs(float(max_speed)) + 4 * _positive(curvature_weight, "curvature_weight", True)
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
    dt = _positive(dt, "dt")
    b = _positive(curvature_weight, "curvature_weight", allow_zero=True)
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
    if int(steps) < 0:
        raise ValueError(f"`steps`: expected >= 0, got {steps}")
    dt = _positive(dt, "dt")
    if dt * math.sqrt(2) > 1 + 1e-9:
        raise ValueError(f"`dt`: expected <= {1 / math.sqrt(2):.4f} (CFL with |S| <= 1), got {dt}")
    S = phi / torch.sqrt(phi * phi + epsilon * epsilon)
    for _ in range(int(steps)):
        phi = phi + dt * S * (1 - _upwind_grad_norm(phi, -S))
    return phi


def region_means(image: torch.Tensor, phi: torch.Tensor, epsilon: float | None = None):
    r"""Chan–Vese region averages :math:`c_1` (inside, :math:`\phi>0`) and :math:`c_2` (outside) [CV01, Eq. 6].

    Args:
        image: ``(N, C, H, W)``.
        phi: ``(N, 1, H, W)``.
        epsilon: ``None`` uses the sharp indicator :math:`\phi>0` (as scikit-image and the
            alternating minimisation of [CV01]); a number uses :math:`H_\varepsilon` (differentiable
            in ``phi``). An empty region gets mean 0 (scikit-image's convention).

    Returns:
        ``(c1, c2)``, each ``(N, C, 1, 1)``.
    """
    d = check_shape(image, "image", "N C H W")
    check_shape(phi, "phi", "N 1 H W", d)
    w = (phi > 0).to(image.dtype) if epsilon is None else heaviside(phi, epsilon)
    inside, outside = w.sum((2, 3), keepdim=True), (1 - w).sum((2, 3), keepdim=True)
    c1 = (image * w).sum((2, 3), keepdim=True) / torch.where(inside > 0, inside, torch.ones_like(inside))
    c2 = (image * (1 - w)).sum((2, 3), keepdim=True) / torch.where(outside > 0, outside, torch.ones_like(outside))
    return c1, c2


def chan_vese(image: torch.Tensor, phi: torch.Tensor, mu: float = 0.25, nu: float = 0.0, lambda1: float = 1.0,
              lambda2: float = 1.0, dt: float = 0.5 * math.pi, steps: int = 100, epsilon: float = 1.0,
              return_path: bool = False) -> torch.Tensor:
    r"""Chan–Vese active contours without edges, batched and differentiable [CV01; Getreuer12].

    Gradient flow of :math:`E = \mu\,\mathrm{Length} + \nu\,\mathrm{Area}(\phi>0) + \lambda_1\int_{\phi>0}|I-c_1|^2 + \lambda_2\int_{\phi<0}|I-c_2|^2`:

    .. math:: \phi_t = \delta_\varepsilon(\phi)\Big[\mu\,\nabla\cdot\frac{\nabla\phi}{|\nabla\phi|} - \nu
              - \lambda_1 (I-c_1)^2 + \lambda_2 (I-c_2)^2\Big]\qquad [\text{CV01, Eq. 9}],

    discretised with Getreuer's semi-implicit scheme in its Jacobi (vectorised) form, exactly as
    ``skimage.segmentation.chan_vese`` does; with :math:`\delta_\varepsilon` including its
    :math:`1/\pi` our ``dt`` equals scikit-image's ``dt`` times :math:`\pi`, so the default matches
    its ``dt=0.5``. Multi-channel images use the mean over channels of the region terms
    (vector-valued Chan–Vese). The image is used as given (scikit-image rescales it to [0, 1]
    first). Unlike scikit-image, runs exactly ``steps`` iterations (no stopping tolerance).

    Args:
        image: ``(N, C, H, W)``.
        phi: ``(N, 1, H, W)`` initial level set, :math:`\phi>0` inside.
        mu, nu, lambda1, lambda2: :math:`\mu,\nu,\lambda_1,\lambda_2` (scikit-image's defaults;
            ``nu = 0`` as there).
        dt: time step (see above). steps: iterations. epsilon: :math:`\varepsilon` of :math:`\delta_\varepsilon`.
        return_path: return ``(steps + 1, N, 1, H, W)`` (every iterate) instead of the last.

    Returns:
        The final level set ``(N, 1, H, W)``; the segmentation is ``phi > 0``.

    Example:
        >>> img = torch.zeros(1, 1, 20, 20); img[..., 5:15, 5:15] = 1
        >>> yy, xx = torch.meshgrid(torch.arange(20.), torch.arange(20.), indexing="ij")
        >>> phi0 = (8 - ((xx - 9.5) ** 2 + (yy - 9.5) ** 2).sqrt())[None, None]
        >>> int((chan_vese(img, phi0, steps=50) > 0).sum())
        100
    """
    d = check_shape(image, "image", "N C H W")
    check_dtype(image, "image", "float")
    check_finite(image, "image")
    check_shape(phi, "phi", "N 1 H W", d)
    _check_phi(phi)
    mu = _positive(mu, "mu", allow_zero=True)
    lambda1, lambda2 = _positive(lambda1, "lambda1", True), _positive(lambda2, "lambda2", True)
    dt = _positive(dt, "dt")
    if int(steps) < 0:
        raise ValueError(f"`steps`: expected >= 0, got {steps}")
    eta = 1e-16  # scikit-image's guard inside the square roots
    path = [phi]
    for _ in range(int(steps)):
        p, c, xm, xp, ym, yp = _shifts(phi)
        phix0, phiy0 = (xp - xm) / 2, (yp - ym) / 2
        C1 = 1 / torch.sqrt(eta + (xp - c) ** 2 + phiy0 ** 2)
        C2 = 1 / torch.sqrt(eta + (c - xm) ** 2 + phiy0 ** 2)
        C3 = 1 / torch.sqrt(eta + phix0 ** 2 + (yp - c) ** 2)
        C4 = 1 / torch.sqrt(eta + phix0 ** 2 + (c - ym) ** 2)
        K = xp * C1 + xm * C2 + yp * C3 + ym * C4
        c1, c2 = region_means(image, phi)
        region = (-lambda1 * (image - c1) ** 2 + lambda2 * (image - c2) ** 2).mean(1, keepdim=True)
        step = dt * dirac(phi, epsilon)
        phi = (phi + step * (mu * K - nu + region)) / (1 + mu * step * (C1 + C2 + C3 + C4))
        path.append(phi)
    return torch.stack(path) if return_path else phi


def chan_vese_energy(image: torch.Tensor, phi: torch.Tensor, mu: float = 0.25, nu: float = 0.0,
                     lambda1: float = 1.0, lambda2: float = 1.0, epsilon: float = 1.0) -> torch.Tensor:
    r"""The regularised Chan–Vese energy [CV01, Eq. 9], per image: ``(N,)``.

    :math:`E = \sum_x \mu\,\delta_\varepsilon(\phi)|\nabla\phi| + \nu H_\varepsilon(\phi)
    + \lambda_1 |I-c_1|^2 H_\varepsilon(\phi) + \lambda_2 |I-c_2|^2 (1-H_\varepsilon(\phi))`,
    with :math:`c_{1,2}` the :math:`H_\varepsilon`-weighted region means (the minimisers of
    :math:`E` over :math:`c`; with sharp means the energy need not decrease along the flow) and the
    channel mean of the data terms. Up to the :math:`1/\pi` in :math:`\delta_\varepsilon`, this is
    the energy scikit-image's ``chan_vese`` reports.
    """
    d = check_shape(image, "image", "N C H W")
    check_shape(phi, "phi", "N 1 H W", d)
    c1, c2 = region_means(image, phi, epsilon)
    H = heaviside(phi, epsilon)
    data = (lambda1 * (image - c1) ** 2 * H + lambda2 * (image - c2) ** 2 * (1 - H)).mean(1, keepdim=True)
    length = mu * dirac(phi, epsilon) * grad_norm(phi)
    return (length + nu * H + data).sum((1, 2, 3))


def edge_indicator(image: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    r"""Edge-stopping function :math:`g = 1/(1+|\nabla G_\sigma * I|^2)` of geodesic active contours.

    With speed :math:`F = g(I)(c+\kappa)` the front slows down where the smoothed image has strong
    edges [Caselles, Kimmel & Sapiro 1997; cited through Paragios & Deriche 2000 in NODE-LS].
    Multi-channel images sum the squared gradients over channels. Returns ``(N, 1, H, W)`` in (0, 1].
    """
    from torchvision.transforms.functional import gaussian_blur

    check_shape(image, "image", "N C H W")
    check_finite(image, "image")
    sigma = _positive(sigma, "sigma")
    k = 2 * math.ceil(3 * sigma) + 1
    smooth = gaussian_blur(image, [k, k], [sigma, sigma])
    gy, gx = gradient(smooth)
    return 1 / (1 + (gx * gx + gy * gy).sum(1, keepdim=True))


# ----------------------------------------------------------------------------------------------------
# Narrow band, loss and evaluation
# ----------------------------------------------------------------------------------------------------

def narrow_band(phi: torch.Tensor, scale: float = 3.0) -> torch.Tensor:
    r""":math:`\tanh(\phi/s)`: the paper's "narrow band" squashing of a distance map [NODE-LS, §3.2].

    :math:`\partial_\phi\tanh(\phi/s) = (1-\tanh^2(\phi/s))/s` decays like :math:`4e^{-2|\phi|/s}/s`,
    so a loss on squashed maps concentrates its gradient within a few ``s`` of the contour.
    ``scale`` (:math:`s`, pixels) is not given in the paper; 3 px is ours.
    """
    _positive(scale, "scale")
    return torch.tanh(phi / scale)


def narrow_band_loss(pred: torch.Tensor, target: torch.Tensor, scale: float = 3.0,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""MSE between narrow-band maps [NODE-LS, §3.1–3.2]:
    :math:`\frac{1}{\sum m}\sum_x m(x)\big(\tanh(\tilde\phi/s) - \tanh(\phi/s)\big)^2`.

    The paper states "MSE between the target and predicted distance maps" plus a tanh on the
    evolved map; squashing the target too keeps both in the same units (our reading).

    Args:
        pred: ``(N, 1, H, W)`` predicted distance map :math:`\tilde\phi` (pixels).
        target: ``(N, 1, H, W)`` target SDF :math:`\phi`.
        scale: :math:`s`.
        mask: optional ``(N, H, W)`` 0/1 validity mask (the paper's padding mask).

    Returns: a scalar. An all-zero mask gives 0 (not 0/0).

    Example:
        >>> phi = sdf_from_mask(torch.ones(2, 8, 8).triu().bool())
        >>> float(narrow_band_loss(phi, phi))
        0.0
    """
    d = check_shape(pred, "pred", "N 1 H W")
    check_shape(target, "target", "N 1 H W", d)
    check_finite(target, "target")
    err = (narrow_band(pred, scale) - narrow_band(target, scale)) ** 2
    if mask is None:
        return err.mean()
    _check_masks(mask, "mask", d)
    m = mask.to(err.dtype)[:, None]
    return (err * m).sum() / m.sum().clamp_min(1)


@torch.no_grad()
def segmentation_scores(phi: torch.Tensor, masks: torch.Tensor, scale: float = 3.0,
                        beta2: float = 0.3) -> dict:
    r"""Scores of a predicted distance map against binary masks, the segmentation being :math:`\phi>0`.

    * ``pooled_iou``: :math:`TP/(TP+FP+FN)` with the counts summed over the whole set, the
      paper's IoU [NODE-LS, §4.2] (PASCAL VOC's definition).
    * ``mean_iou``: the mean of per-image IoUs (an image with empty prediction and mask scores 1).
    * ``fbeta``: :math:`F_\beta = (1+\beta^2)PR/(\beta^2P+R)` of the binary maps with :math:`P,R`
      pooled over the set, :math:`\beta^2=0.3` — what [NODE-LS] calls α-F_β (its printed formula,
      :math:`F_1(1+\beta^2)/\beta^2`, exceeds 1 and cannot be what was computed; see the errata).
    * ``mae``: mean absolute error of the soft map :math:`\tfrac12(1+\tanh(\phi/s))` (not in the
      paper; the usual saliency MAE).

    Args:
        phi: ``(N, 1, H, W)``; masks: ``(N, H, W)`` binary; scale: :math:`s` for the soft map.

    Example:
        >>> m = torch.zeros(2, 4, 4, dtype=torch.bool); m[:, :2] = True
        >>> phi = sdf_from_mask(m); phi[1, 0, 2] = 1.0   # image 1: one row too many
        >>> s = segmentation_scores(phi, m)
        >>> round(s["pooled_iou"], 4), round(s["mean_iou"], 4)
        (0.8, 0.8333)
    """
    d = check_shape(phi, "phi", "N 1 H W")
    check_finite(phi, "phi")
    _check_masks(masks, "masks", d)
    pred, gt = phi[:, 0] > 0, masks.bool()
    tp = (pred & gt).sum((1, 2)).double()
    fp = (pred & ~gt).sum((1, 2)).double()
    fn = (~pred & gt).sum((1, 2)).double()
    union = tp + fp + fn
    per_image = torch.where(union > 0, tp / union.clamp_min(1), torch.ones_like(tp))
    TP, FP, FN = float(tp.sum()), float(fp.sum()), float(fn.sum())
    P = TP / (TP + FP) if TP + FP > 0 else 0.0
    R = TP / (TP + FN) if TP + FN > 0 else 0.0
    fbeta = (1 + beta2) * P * R / (beta2 * P + R) if P + R > 0 else 0.0
    soft = 0.5 * (1 + narrow_band(phi[:, 0], scale))
    return {"pooled_iou": TP / max(TP + FP + FN, 1.0), "mean_iou": float(per_image.mean()),
            "fbeta": fbeta, "mae": float((soft - gt.to(soft.dtype)).abs().mean())}


# ----------------------------------------------------------------------------------------------------
# Neural ODEs
# ----------------------------------------------------------------------------------------------------

class ODESolveError(RuntimeError):
    """An ODE solve failed (step-size underflow, too many steps, or NaN/Inf); the message says what to change."""


def _advice(method, atol, rtol):
    return (f"loosen the tolerance (atol={atol:g}, rtol={rtol:g} now; try atol=1e-3), switch to a fixed-step "
            f"solver (method='rk4', step_size=0.25), or make the dynamics smoother: lower the learning rate, "
            f"set TrainConfig.grad_clip, or check the inputs for extreme values")


def solve_ode(func: nn.Module, y0: torch.Tensor, times: torch.Tensor | Sequence[float], method: str = "dopri5",
              rtol: float = 0.0, atol: float = 1e-3, step_size: float | None = None, adjoint: bool = False,
              max_num_steps: int = 1000) -> torch.Tensor:
    r"""Solve :math:`\dot y = f(t, y)` with torchdiffeq and turn its failures into clear errors.

    Args:
        func: an ``nn.Module`` ``func(t, y)`` (e.g. :class:`ODEFunc`).
        y0: initial state (any shape).
        times: increasing 1-D output times; the first is the initial time.
        method: one of :data:`ADAPTIVE_METHODS` (error-controlled; the paper's RK45 is
            ``"dopri5"``) or :data:`FIXED_METHODS`.
        rtol, atol: tolerances of the adaptive methods; the step is accepted when the error
            estimate is below :math:`a_{tol} + r_{tol}|y|` elementwise (RMS norm in torchdiffeq;
            [NODE-LS, Eq. 5] writes an ∞-norm). The paper uses ``rtol=0`` and atol in [1e-5, 1e-3].
        step_size: required for fixed-step methods, rejected for adaptive ones.
        adjoint: back-propagate with the adjoint method (memory constant in the number of steps)
            instead of through the solver's operations [Chen et al. 2018].
        max_num_steps: adaptive methods give up after this many steps.

    Returns:
        ``(T, *y0.shape)``.

    Raises:
        ODESolveError: step-size underflow, too many steps, or non-finite state, with advice.
        ValueError: a bad option (unknown method, missing or superfluous ``step_size``).
    """
    from torchdiffeq import odeint, odeint_adjoint

    check_choice(method, "method", ADAPTIVE_METHODS + FIXED_METHODS)
    check_finite(y0, "y0")
    t = torch.as_tensor(times, dtype=y0.dtype, device=y0.device).flatten()
    if t.numel() < 2 or bool((t[1:] <= t[:-1]).any()):
        raise ValueError(f"`times`: expected at least 2 strictly increasing times, got {t.tolist()}")
    rtol, atol = _positive(rtol, "rtol", True), _positive(atol, "atol", True)
    if method in FIXED_METHODS:
        if step_size is None:
            raise ValueError(f"`step_size`: required for the fixed-step method {method!r} (e.g. step_size=0.25)")
        options = {"step_size": _positive(step_size, "step_size")}
    else:
        if step_size is not None:
            raise ValueError(f"`step_size`: only used by fixed-step methods {FIXED_METHODS}; {method!r} chooses "
                             f"its own steps from atol/rtol")
        if rtol == 0 and atol == 0:
            raise ValueError("`atol`: rtol and atol cannot both be 0 for an adaptive method")
        if int(max_num_steps) < 1:
            raise ValueError(f"`max_num_steps`: expected >= 1, got {max_num_steps}")
        options = {"max_num_steps": int(max_num_steps)}
        if hasattr(func, "nfe"):  # a guard that also works under `python -O` (torchdiffeq uses assert)
            func.nfe_limit = func.nfe + 14 * int(max_num_steps) + 64
    kwargs = dict(rtol=rtol, atol=atol, method=method, options=options)
    checked = func if isinstance(func, ODEFunc) else _FiniteCheck(func)  # ODEFunc checks itself
    try:
        if adjoint:
            params = tuple(p for p in func.parameters() if p.requires_grad)
            return odeint_adjoint(checked, y0, t, adjoint_params=params, **kwargs)
        return odeint(checked, y0, t, **kwargs)
    except AssertionError as exc:
        msg = str(exc)
        if "underflow" in msg:
            raise ODESolveError(f"ODE solve failed: the adaptive step size of {method!r} underflowed ({msg}); the "
                                f"dynamics are too stiff for this tolerance: {_advice(method, atol, rtol)}") from exc
        if "max_num_steps" in msg:
            raise ODESolveError(f"ODE solve failed: {method!r} needed more than max_num_steps={max_num_steps} "
                                f"steps; raise `max_num_steps`, or {_advice(method, atol, rtol)}") from exc
        if "non-finite" in msg:
            raise ODESolveError(f"ODE solve failed: the state became NaN/Inf; {_advice(method, atol, rtol)}") from exc
        raise
    finally:
        if hasattr(func, "nfe_limit") and not adjoint:
            func.nfe_limit = None


class _FiniteCheck(nn.Module):
    """Wraps a user's ``func(t, y)`` so that a NaN/Inf derivative raises at once (torchdiffeq would
    shrink the step until it underflows and blame the step size)."""

    def __init__(self, func):
        super().__init__()
        self.func = func

    def forward(self, t, y):
        out = self.func(t, y)
        if not bool(torch.isfinite(out).all()):
            raise ODESolveError(f"ODE solve failed: the dynamics returned NaN/Inf at t={float(t):.4g}; check the "
                                f"inputs are finite, lower the learning rate, set TrainConfig.grad_clip, or use a "
                                f"smaller step_size / tighter atol")
        return out


class ODEFunc(nn.Module):
    r"""The dynamics :math:`f_\theta(\gamma, t)` of [NODE-LS, Eqs. 2–4]: a small conv net.

    ``layers`` 3×3 convolutions; between them GroupNorm (the paper's choice, §3.5: the number of
    calls depends on the NFE, so BatchNorm statistics are ill-defined) and a Softplus (smooth, so
    adaptive solvers do not stall on kinks). With ``time_channel`` a constant plane :math:`t` is
    concatenated before every convolution (torchdiffeq's ``ConcatConv2d``; the paper does not say
    how :math:`t` enters). The **last convolution is zero-initialised** [NODE-LS, §3.3], so at
    initialisation :math:`f_\theta \equiv 0` and the flow is the identity.

    Counts its calls in ``nfe`` (reset it yourself, or read the models' ``nfe_forward``);
    raises :class:`ODESolveError` if it returns NaN/Inf or exceeds ``nfe_limit`` calls.

    Args:
        channels: state channels (in = out). hidden: width. layers: number of convolutions (>= 2).
        time_channel: concatenate :math:`t`. groups: GroupNorm groups. dilation: of the middle convolutions.
    """

    def __init__(self, channels: int, hidden: int = 32, layers: int = 3, time_channel: bool = True,
                 groups: int = 8, dilation: int = 1):
        super().__init__()
        if int(layers) < 2:
            raise ValueError(f"`layers`: expected >= 2, got {layers}")
        for name, v in (("channels", channels), ("hidden", hidden), ("groups", groups), ("dilation", dilation)):
            if int(v) < 1:
                raise ValueError(f"`{name}`: expected a positive integer, got {v}")
        tc = int(bool(time_channel))
        self.time_channel = bool(time_channel)
        widths = [channels] + [hidden] * (layers - 1) + [channels]
        self.convs = nn.ModuleList()
        for i in range(layers):
            dil = dilation if 0 < i < layers - 1 else 1
            self.convs.append(nn.Conv2d(widths[i] + tc, widths[i + 1], 3, padding=dil, dilation=dil))
        self.norms = nn.ModuleList(nn.GroupNorm(math.gcd(groups, hidden), hidden) for _ in range(layers - 1))
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)
        self.nfe = 0
        self.nfe_limit: int | None = None

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        if self.nfe_limit is not None and self.nfe > self.nfe_limit:
            raise ODESolveError(f"ODE solve failed: more than {self.nfe_limit} function evaluations (NFE) at "
                                f"t={float(t):.4g}; {_advice('adaptive', float('nan'), float('nan'))}")
        tplane = None
        if self.time_channel:
            tplane = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0], 1, *x.shape[2:])
        for i, conv in enumerate(self.convs):
            if tplane is not None:
                x = torch.cat([x, tplane], 1)
            x = conv(x)
            if i < len(self.norms):
                x = F.softplus(self.norms[i](x))
        if not bool(torch.isfinite(x).all()):
            raise ODESolveError(f"ODE solve failed: f_theta returned NaN/Inf at t={float(t):.4g} (NFE {self.nfe}); "
                                f"check the inputs are finite, lower the learning rate, set TrainConfig.grad_clip, "
                                f"or use a smaller step_size / tighter atol")
        return x


def _zero_last(seq: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(seq[-1].weight)
    nn.init.zeros_(seq[-1].bias)
    return seq


def _conv_block(cin, cout, hidden, groups):
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.GroupNorm(math.gcd(groups, hidden), hidden),
                         nn.Softplus(), nn.Conv2d(hidden, cout, 3, padding=1))


class _NeuralODEModel(nn.Module):
    """Solver configuration and NFE bookkeeping shared by the two models of [NODE-LS]."""

    def configure_solver(self, method: str | None = None, rtol: float | None = None, atol: float | None = None,
                         step_size: float | None = None, adjoint: bool | None = None,
                         max_num_steps: int | None = None, t1: float | None = None):
        r"""Change solver options in place (validated); returns ``self``.

        ``step_size`` is set to ``None`` automatically when switching to an adaptive ``method``
        unless given. Example: ``model.configure_solver(method="dopri5", atol=1e-4, adjoint=True)``.
        """
        if method is not None:
            check_choice(method, "method", ADAPTIVE_METHODS + FIXED_METHODS)
            if method in ADAPTIVE_METHODS and step_size is None:
                self.step_size = None
            self.method = method
        if rtol is not None:
            self.rtol = _positive(rtol, "rtol", True)
        if atol is not None:
            self.atol = _positive(atol, "atol", True)
        if step_size is not None:
            self.step_size = _positive(step_size, "step_size")
        if adjoint is not None:
            self.adjoint = bool(adjoint)
        if max_num_steps is not None:
            self.max_num_steps = int(max_num_steps)
        if t1 is not None:
            self.t1 = _positive(t1, "t1")
        if self.method in FIXED_METHODS and self.step_size is None:
            raise ValueError(f"`step_size`: required for the fixed-step method {self.method!r}")
        if self.method in ADAPTIVE_METHODS and self.step_size is not None:
            raise ValueError(f"`step_size`: only for fixed-step methods; {self.method!r} is adaptive")
        return self

    def solver_options(self) -> dict:
        """The current solver settings as a dict (for tables and cache keys)."""
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, "step_size": self.step_size,
                "adjoint": self.adjoint, "max_num_steps": self.max_num_steps, "t1": self.t1}

    def _solve(self, y0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        self.func.nfe = 0
        out = solve_ode(self.func, y0, times, method=self.method, rtol=self.rtol, atol=self.atol,
                        step_size=self.step_size, adjoint=self.adjoint, max_num_steps=self.max_num_steps)
        self.nfe_forward = self.func.nfe
        return out

    @property
    def nfe_backward(self) -> int:
        """Function evaluations of the last backward pass (adjoint solve), after ``loss.backward()``;
        0 when back-propagating through the solver (autograd replays no evaluations)."""
        return self.func.nfe - self.nfe_forward

    def _init_solver(self, method, rtol, atol, step_size, adjoint, max_num_steps, t1):
        self.method, self.rtol, self.atol, self.step_size = "dopri5", 0.0, 1e-3, None
        self.adjoint, self.max_num_steps, self.t1 = False, 1000, 1.0
        self.nfe_forward = 0
        self.configure_solver(method=method, rtol=rtol, atol=atol, step_size=step_size, adjoint=adjoint,
                              max_num_steps=max_num_steps, t1=t1)


class ContourEvolution(_NeuralODEModel):
    r"""Contour Evolution with a Neural ODE [NODE-LS, Eq. 3].

    .. math::
        \gamma = (\hat\phi, h),\quad \frac{d\gamma}{dt} = f_\theta(\gamma, t),\ t\in[0, 1],\quad
        \gamma^{(0)} = (\hat\phi^{(0)}, h^{(0)}),\quad \tilde\phi = \hat\phi^{(1)} + \psi(\gamma^{(1)}).

    Here :math:`h^{(0)} = \lambda(I)` is a learned two-layer conv embedding of the image (the paper
    does not say how :math:`h^{(0)}` is made), :math:`f_\theta` is an :class:`ODEFunc` and
    :math:`\psi` (the paper's "Postnet") a two-layer conv head. The state carries
    :math:`\hat\phi/s` (``scale`` :math:`s` in pixels) so that all channels have unit magnitude;
    the output is back in pixels. The last layers of :math:`f_\theta` and :math:`\psi` are zero
    [NODE-LS, §3.3]: **at initialisation** :math:`\tilde\phi = \hat\phi^{(0)}` **exactly**.

    Args:
        image_channels: channels of :math:`I`. embed_channels: channels of :math:`h`.
        hidden, layers, dilation: of :math:`f_\theta` (see :class:`ODEFunc`).
        scale: :math:`s` (pixels), the state's distance unit; use the narrow-band loss' ``scale``.
        method, rtol, atol, step_size, adjoint, max_num_steps: solver (see :func:`solve_ode`);
            defaults are the paper's: ``dopri5`` (RK45), ``rtol=0``, ``atol=1e-3``, adjoint on.
        t1: end time (the paper integrates over [0, 1]).

    ``forward(image, phi0)`` takes ``(N, C, H, W)`` and ``(N, 1, H, W)`` and returns
    :math:`\tilde\phi` ``(N, 1, H, W)``; ``nfe_forward``/``nfe_backward`` count evaluations.

    Example:
        >>> net = ContourEvolution(image_channels=1, method="rk4", step_size=0.5, adjoint=False)
        >>> phi0 = torch.randn(2, 1, 16, 16)
        >>> bool(torch.equal(net(torch.rand(2, 1, 16, 16), phi0), phi0)), net.nfe_forward   # identity at init
        (True, 8)
    """

    def __init__(self, image_channels: int = 1, embed_channels: int = 8, hidden: int = 32, layers: int = 3,
                 scale: float = 3.0, method: str = "dopri5", rtol: float = 0.0, atol: float = 1e-3,
                 step_size: float | None = None, adjoint: bool = True, max_num_steps: int = 1000,
                 t1: float = 1.0, time_channel: bool = True, groups: int = 8, dilation: int = 1):
        super().__init__()
        self.image_channels, self.scale = int(image_channels), _positive(scale, "scale")
        self.embed = _conv_block(image_channels, embed_channels, hidden, groups)   # lambda
        self.func = ODEFunc(1 + embed_channels, hidden, layers, time_channel, groups, dilation)
        self.postnet = _zero_last(_conv_block(1 + embed_channels, 1, hidden, groups))   # psi
        self._init_solver(method, rtol, atol, step_size, adjoint, max_num_steps, t1)

    def _initial_state(self, image, phi0):
        d = check_shape(image, "image", f"N {self.image_channels} H W")
        check_shape(phi0, "phi0", "N 1 H W", d)
        check_finite(image, "image")
        _check_phi(phi0, "phi0")
        return torch.cat([phi0 / self.scale, self.embed(image)], 1)

    def forward(self, image: torch.Tensor, phi0: torch.Tensor) -> torch.Tensor:
        gamma0 = self._initial_state(image, phi0)
        t = torch.tensor([0.0, self.t1], dtype=gamma0.dtype, device=gamma0.device)
        gamma1 = self._solve(gamma0, t)[-1]
        # = s * (phi_hat(1) + psi(gamma(1))), written as an increment so that the identity at
        # initialisation (f = 0, psi = 0) holds bit for bit, not just up to phi0 / s * s rounding.
        return phi0 + self.scale * ((gamma1[:, :1] - gamma0[:, :1]) + self.postnet(gamma1))

    def trajectory(self, image: torch.Tensor, phi0: torch.Tensor, times: Sequence[float],
                   readout: bool = False) -> torch.Tensor:
        r"""The state's distance channel at ``times``, ``(T, N, 1, H, W)`` in pixels.

        ``readout=False``: :math:`s\,\hat\phi^{(t)}`, the first channel of :math:`\gamma(t)` alone.
        ``readout=True``: :math:`s\,(\hat\phi^{(t)} + \psi(\gamma^{(t)}))`, the model's output as if
        the integration stopped at :math:`t` (it equals ``forward`` at :math:`t=1`; :math:`\psi` is
        trained only there)."""
        gamma0 = self._initial_state(image, phi0)
        t = torch.as_tensor(list(times), dtype=gamma0.dtype, device=gamma0.device)
        prepend = float(t[0]) != 0.0
        if prepend:
            t = torch.cat([t.new_zeros(1), t])
        gammas = self._solve(gamma0, t)[int(prepend):]
        if not readout:
            return phi0 + self.scale * (gammas[:, :, :1] - gamma0[:, :1])
        return torch.stack([phi0 + self.scale * ((g[:, :1] - gamma0[:, :1]) + self.postnet(g)) for g in gammas])


class ImageEvolution(_NeuralODEModel):
    r"""Image Evolution with a Neural ODE [NODE-LS, Eq. 4]:
    :math:`\frac{dh}{dt} = f_\theta(h,t)`, :math:`h^{(0)} = \lambda(I)`, :math:`\tilde\phi = \psi(h^{(1)})`.

    A continuous-depth ResNet with a distance-map head: :math:`\lambda` is a two-layer conv
    embedding, :math:`f_\theta` an :class:`ODEFunc` (last layer zero), :math:`\psi` a two-layer
    conv head (last layer zero, [NODE-LS, §3.3]) whose output is multiplied by ``scale``. No
    initial contour is needed.

    Args: as :class:`ContourEvolution`, with ``channels`` the width of :math:`h`.

    Example:
        >>> net = ImageEvolution(image_channels=1, method="euler", step_size=0.25, adjoint=False)
        >>> tuple(net(torch.rand(2, 1, 16, 16)).shape), net.nfe_forward
        ((2, 1, 16, 16), 4)
    """

    def __init__(self, image_channels: int = 1, channels: int = 16, hidden: int = 32, layers: int = 3,
                 scale: float = 3.0, method: str = "dopri5", rtol: float = 0.0, atol: float = 1e-3,
                 step_size: float | None = None, adjoint: bool = True, max_num_steps: int = 1000,
                 t1: float = 1.0, time_channel: bool = True, groups: int = 8, dilation: int = 1):
        super().__init__()
        self.image_channels, self.scale = int(image_channels), _positive(scale, "scale")
        self.embed = _conv_block(image_channels, channels, hidden, groups)   # lambda
        self.func = ODEFunc(channels, hidden, layers, time_channel, groups, dilation)
        self.postnet = _zero_last(_conv_block(channels, 1, hidden, groups))   # psi
        self._init_solver(method, rtol, atol, step_size, adjoint, max_num_steps, t1)

    def _initial_state(self, image):
        check_shape(image, "image", f"N {self.image_channels} H W")
        check_finite(image, "image")
        return self.embed(image)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h0 = self._initial_state(image)
        t = torch.tensor([0.0, self.t1], dtype=h0.dtype, device=h0.device)
        return self.scale * self.postnet(self._solve(h0, t)[-1])

    def trajectory(self, image: torch.Tensor, times: Sequence[float]) -> torch.Tensor:
        r""":math:`s\,\psi(h^{(t)})` at ``times`` (``(T, N, 1, H, W)``); only :math:`t=1` is trained."""
        h0 = self._initial_state(image)
        t = torch.as_tensor(list(times), dtype=h0.dtype, device=h0.device)
        prepend = float(t[0]) != 0.0
        if prepend:
            t = torch.cat([t.new_zeros(1), t])
        hs = self._solve(h0, t)[int(prepend):]
        return torch.stack([self.scale * self.postnet(h) for h in hs])


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
        if int(steps) < 1:
            raise ValueError(f"`steps`: expected >= 1, got {steps}")
        self.steps, self.scale, self.epsilon = int(steps), _positive(scale, "scale"), _positive(epsilon, "epsilon")
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
