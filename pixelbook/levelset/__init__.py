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

Contents, by module:

* :mod:`~pixelbook.levelset.evolution`: explicit level-set evolution with a CFL check, Sussman
  re-initialisation, the edge indicator, a learned linear forcing;
* :mod:`~pixelbook.levelset.chan_vese`: Chan–Vese in torch (the scikit-image scheme, batched and
  differentiable) and its energy;
* :mod:`~pixelbook.levelset.narrow_band`: the narrow band, the narrow-band loss, the scores of a
  distance map;
* :mod:`~pixelbook.levelset.neural_ode`: the two Neural-ODE models of [NODE-LS]:
  :class:`ContourEvolution` (Eq. 3) and :class:`ImageEvolution` (Eq. 4), solved with torchdiffeq
  with any of its solvers, tolerances, the adjoint on or off, and function-evaluation (NFE) counting;
  and :class:`ResidualRefiner`, their discrete counterpart (ours: a ResNet with the same pieces).

The building blocks the chapter teaches live in :mod:`pixelbook.ops` and are importable from here
too: the signed distance :func:`~pixelbook.ops.sdf.sdf_from_mask`, the smoothed
:func:`~pixelbook.ops.sdf.heaviside` and :func:`~pixelbook.ops.sdf.dirac`, and the finite
differences :func:`~pixelbook.ops.differences.gradient`, :func:`~pixelbook.ops.differences.grad_norm`,
:func:`~pixelbook.ops.differences.upwind_grad_norm`, :func:`~pixelbook.ops.differences.curvature` and
:func:`~pixelbook.ops.differences.curvature_term`. The ODE models stay here, not in
:mod:`pixelbook.models`: they *are* the method (the level-set PDE with a learned right-hand side).

References: [NODE-LS] *Neural ODEs for image segmentation with level sets*, arXiv:1912.11683;
[OS88] Osher & Sethian 1988; [CV01] Chan & Vese 2001; [SSO94] Sussman, Smereka & Osher 1994;
[Getreuer12] *Chan–Vese segmentation*, IPOL 2012; [OF03] Osher & Fedkiw, *Level Set Methods and
Dynamic Implicit Surfaces*, 2003.
"""

from __future__ import annotations

from ..ops.differences import curvature, curvature_term, grad_norm, gradient, upwind_grad_norm  # noqa: F401
from ..ops.sdf import dirac, heaviside, sdf_from_mask  # noqa: F401  (the chapter's building blocks)
from .chan_vese import chan_vese, chan_vese_energy, region_means
from .evolution import LinearForcing, cfl_dt, edge_indicator, evolve, level_set_rhs, reinitialize
from .narrow_band import NarrowBandLoss, narrow_band, narrow_band_loss, segmentation_scores
from .neural_ode import (ADAPTIVE_METHODS, FIXED_METHODS, ContourEvolution, ImageEvolution, ODEFunc, ODESolveError,
                         ResidualRefiner, solve_ode)

__all__ = [
    "level_set_rhs", "cfl_dt", "evolve", "reinitialize", "region_means", "chan_vese", "chan_vese_energy",
    "edge_indicator", "narrow_band", "narrow_band_loss", "NarrowBandLoss", "segmentation_scores", "ODESolveError",
    "solve_ode", "ODEFunc", "ContourEvolution", "ImageEvolution", "ResidualRefiner", "LinearForcing", "ADAPTIVE_METHODS",
    "FIXED_METHODS",
]
