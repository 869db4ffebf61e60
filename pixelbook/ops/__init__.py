r"""Differentiable building blocks and GPU kernels shared by the methods.

=========================================  ==========================================================
module                                     contents
=========================================  ==========================================================
:mod:`~pixelbook.ops.sdf`                  :func:`sdf_from_mask`, :func:`heaviside`, :func:`dirac` (Ch. 2)
:mod:`~pixelbook.ops.differences`          :func:`gradient`, :func:`grad_norm`, :func:`upwind_grad_norm`,
                                           :func:`curvature`, :func:`curvature_term` (Ch. 2);
                                           :func:`grad2d`, :func:`div2d` (Ch. 3)
:mod:`~pixelbook.ops.conv`                 :func:`self_adjoint_conv2d` (Ch. 3)
:mod:`~pixelbook.ops.covariance`           :func:`region_vectors`, :func:`joint_covariance` (Ch. 4)
:mod:`~pixelbook.ops.regions`              :func:`canonical_regions`, :func:`region_stats`,
                                           :class:`RegionStats` (Ch. 9), :func:`centroid` (Ch. 3)
:mod:`~pixelbook.ops.filter_flow`          :func:`apply_filter_flow` (a kernel), :func:`expected_flow`
                                           (Ch. 7–8)
:mod:`~pixelbook.ops.warp`                 :func:`flow_warp` (bilinear backward warping),
                                           :func:`compose_flows`, :func:`upsample_flow`,
                                           :func:`flow_grid` (Ch. 8)
:mod:`~pixelbook.ops.gated_conv`           :func:`gated_conv2d`: a convolution evaluated only where
                                           a binary mask is 1 (PAG, Ch. 5)
=========================================  ==========================================================

Everything here takes and returns tensors on the input's device, validates its inputs with
:mod:`pixelbook._checks`, and knows nothing of any method: methods import ops, never the reverse.

**The kernel pattern** (:mod:`~pixelbook.ops.filter_flow` is the worked example). A kernel ``x``
lives in ``ops/x.py``:

* ``_x_reference(...)``: pure PyTorch, the definition — short, obviously right, differentiable by
  autograd, run on every device and by every CPU test;
* the fast implementations beside it, same arguments and result: a memory-lean PyTorch one where
  it pays, and ``_x_triton(...)`` for GPUs (Triton kernels in ``ops/_x_triton.py``, imported only
  when used, so ``import pixelbook`` stays light); a Triton forward that autograd must differentiate
  gets its backward from a ``torch.autograd.Function``;
* one public dispatcher ``x(..., impl="auto")`` that validates the inputs once and picks Triton for
  CUDA tensors when it is installed, the PyTorch implementation otherwise; ``impl=`` forces one
  (Triton on CPU tensors only under ``TRITON_INTERPRET=1``), and a ``which_impl``-style function
  says which ``"auto"`` picks.

Its test (``tests/ops/test_x.py``) compares every implementation with the reference, values and
gradients, on small random inputs on the CPU, Triton under ``TRITON_INTERPRET=1`` (set before
Triton is first imported); ``benchmarks/bench_x.py`` prints time and memory side by side on a GPU.
"""

from __future__ import annotations

from .conv import self_adjoint_conv2d
from .covariance import joint_covariance, region_vectors
from .differences import curvature, curvature_term, div2d, grad2d, grad_norm, gradient, upwind_grad_norm
from .filter_flow import IMPLS, apply_filter_flow, expected_flow, filter_size, tap_offsets, which_impl
from .gated_conv import gated_conv2d
from .regions import RegionStats, canonical_regions, centroid, region_stats
from .sdf import dirac, heaviside, sdf_from_mask
from .warp import compose_flows, flow_grid, flow_warp, upsample_flow

__all__ = [
    "sdf_from_mask", "heaviside", "dirac", "gradient", "grad_norm", "upwind_grad_norm", "curvature",
    "curvature_term", "grad2d", "div2d", "self_adjoint_conv2d", "region_vectors", "joint_covariance",
    "canonical_regions", "RegionStats", "region_stats", "centroid",
    "apply_filter_flow", "expected_flow", "filter_size", "tap_offsets", "which_impl", "IMPLS",
    "flow_warp", "compose_flows", "upsample_flow", "flow_grid", "gated_conv2d",
]
