"""Differentiable building blocks and kernels.

Every kernel ``x`` here follows one pattern: a pure-PyTorch ``_x_reference`` twin, the fast
implementations beside it (a memory-lean PyTorch one, a Triton one for GPUs), one public dispatcher
``x(..., impl="auto")`` that can say which implementation it picks, a test comparing them all on
the CPU (Triton under ``TRITON_INTERPRET=1``), and a benchmark in ``benchmarks/``.

* :mod:`pixelbook.ops.filter_flow` — per-pixel :math:`k\\times k` filters applied to an image
  (filter flow [KONG, Eq. 6.1]) and their expected flow.
* :mod:`pixelbook.ops.warp` — backward warping by a flow (bilinear), flow composition and
  nearest-neighbour flow upsampling (multigrid PFF, Chapter 8).
* :mod:`pixelbook.ops.gated_conv` — a convolution evaluated only where a binary mask is 1
  (masked dense reference, gather–GEMM–scatter sparse path; PAG, Chapter 5).
"""

from __future__ import annotations

from .gated_conv import gated_conv2d
from .filter_flow import IMPLS, apply_filter_flow, expected_flow, filter_size, tap_offsets, which_impl
from .warp import compose_flows, flow_grid, flow_warp, upsample_flow

__all__ = ["apply_filter_flow", "expected_flow", "filter_size", "tap_offsets", "which_impl", "IMPLS",
           "flow_warp", "compose_flows", "upsample_flow", "flow_grid", "gated_conv2d"]
