r"""Finite differences on image grids: gradients, upwind gradient norm, curvature, and a grad/div pair.

Two families, each with its boundary rule stated:

* level-set operators (Chapter 2) on ``phi`` ``(N, C, H, W)`` in pixel units, :math:`\phi > 0`
  inside, replicate (Neumann) padding: :func:`gradient`, :func:`grad_norm`, :func:`upwind_grad_norm`,
  :func:`curvature`, :func:`curvature_term` [OS88; OF03];
* an exactly adjoint pair (Chapter 3) on ``(N, 1, H, W)`` maps: :func:`grad2d` (forward
  differences) and :func:`div2d` :math:`= -\nabla^\top` (backward differences).

References: [OS88] Osher & Sethian 1988; [OF03] Osher & Fedkiw, *Level Set Methods and Dynamic
Implicit Surfaces*, 2003.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_shape
from ._common import _check_phi

__all__ = ["gradient", "grad_norm", "upwind_grad_norm", "curvature", "curvature_term", "grad2d", "div2d"]

_EPS = 1e-8  # ours: keeps sqrt/division finite where the gradient vanishes (flat regions)


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
