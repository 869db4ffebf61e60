r"""Gating: depth-aware pooling [KONG, Ch. 3] and Pixel-wise Attentional Gating [KONG, Ch. 4].

Chapter 5 of the book. The modules, from the thesis' first idea to its last:

* :mod:`~pixelbook.gating.pooling` — multi-dilation pooling with a per-pixel gate:
  :class:`DepthAwareGatedPool` (average, true-depth, predicted-depth or learned gate; tied or
  untied branches) and :class:`PAGMultiPool` (one branch per pixel, picked by a hard gate);
  :func:`quantize_depth`, :func:`depth_bin_edges`.
* :mod:`~pixelbook.gating.gumbel` — hard choices that train: :func:`gumbel_softmax_st`
  (Gumbel-max + softmax relaxation + straight-through), :class:`GumbelGate`,
  :func:`temperature_schedule`, :func:`set_temperature`.
* :mod:`~pixelbook.gating.pag` — :class:`PAGBottleneck`, a ResNet bottleneck computed only where
  its gate says so, and :func:`insert_pag` to put it into a torchvision ResNet.
* :mod:`~pixelbook.gating.budget` — the per-layer Bernoulli-KL budget (:func:`budget_kl_loss`,
  :class:`BudgetKLLoss`), :func:`gate_densities`, :func:`ponder_map` and :func:`count_flops`
  (exact FLOPs from the realised masks).
* :mod:`~pixelbook.gating.nets` — the chapter's two small networks: :class:`GatedPoolNet` (one
  pooling module on a shallow stem) and :class:`PAGResNet` (a stack of gated bottlenecks); and the
  ``full``-scale one, :class:`PAGResNet50` (torchvision's ResNet-50 with MultiPool and PAG).

The sparse execution path (gather the active pixels, convolve, scatter back) is the kernel
:func:`pixelbook.ops.gated_conv2d`.

Reference: [KONG] S. Kong, *Pixel-Level Prediction: Models and Applications*, PhD thesis, UC
Irvine (2019), Chapters 3–4; [KONG, Eq. n.m] points there.
"""

from __future__ import annotations

from . import budget, gumbel, nets, pag, pooling
from .budget import (BudgetKLLoss, FlopCount, bernoulli_kl, budget_kl_loss, count_flops, gate_densities,
                     pag_blocks, ponder_map)
from .gumbel import GumbelGate, gumbel_noise, gumbel_softmax_st, set_temperature, temperature_schedule
from .nets import GatedPoolNet, PAGResNet, PAGResNet50
from .pag import PAGBottleneck, insert_pag
from .pooling import DepthAwareGatedPool, PAGMultiPool, depth_bin_edges, quantize_depth

__all__ = [
    "gumbel", "pooling", "pag", "budget", "nets",
    "gumbel_noise", "gumbel_softmax_st", "GumbelGate", "temperature_schedule", "set_temperature",
    "depth_bin_edges", "quantize_depth", "DepthAwareGatedPool", "PAGMultiPool",
    "PAGBottleneck", "insert_pag",
    "bernoulli_kl", "budget_kl_loss", "BudgetKLLoss", "pag_blocks", "gate_densities", "ponder_map",
    "FlopCount", "count_flops", "GatedPoolNet", "PAGResNet", "PAGResNet50",
]
