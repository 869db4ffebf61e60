"""Filter flow methods: Predictive Filter Flow (Ch. 7) and, beside it, multigrid PFF (Ch. 8).

Public API of :mod:`pixelbook.filterflow.pff` (Chapter 7, [KONG, Ch. 6]):

* :class:`~pixelbook.filterflow.pff.TwoStreamNet` — the two-stream predictor (deep stream with
  pooling + full-resolution stream);
* :class:`~pixelbook.filterflow.pff.PredictiveFilterFlow` — ``x -> {"out", "filters"}`` with
  softmax or free-form per-pixel filters;
* :class:`~pixelbook.filterflow.pff.DirectCNN` — the same net predicting the image (baseline);
* :func:`~pixelbook.filterflow.pff.local_envelope`, :func:`~pixelbook.filterflow.pff.filter_pca_energy`;
* :mod:`pixelbook.filterflow.restoration` — the three restoration tasks (``degrade``, ``predict``,
  ``image_metrics``, ``flow_edge_ratio``), used by Chapter 7's experiment.

Public API of :mod:`pixelbook.filterflow.multigrid` (Chapter 8, [KONG, Ch. 7]):

* :class:`~pixelbook.filterflow.multigrid.MultigridPFF` — the siamese, weight-shared multigrid
  model (``(target, source) -> MultigridOutput`` with per-level filters and the composed flow);
* its losses :func:`~pixelbook.filterflow.multigrid.mgpff_loss` (Eq. 7.8, ``mgpff_terms``) and the terms
  (:func:`~pixelbook.filterflow.multigrid.photometric_loss`, ``flow_warp_loss``,
  ``forward_backward_loss``, ``flow_smoothness_loss``, ``filter_smoothness_loss``);
* :func:`~pixelbook.filterflow.multigrid.multigrid_apply`, ``multigrid_flow``,
  :func:`~pixelbook.filterflow.multigrid.propagate_labels`, ``long_range_error``.

The operator itself, :func:`pixelbook.ops.apply_filter_flow`, and :func:`pixelbook.ops.expected_flow`
live in :mod:`pixelbook.ops` and are re-exported here. The degradations that make training pairs
are data: :mod:`pixelbook.data.degradations`.
"""

from __future__ import annotations

from ..ops.filter_flow import apply_filter_flow, expected_flow
from .multigrid import (
    MultigridOutput,
    MultigridPFF,
    MultigridPFFLoss,
    coefficient_ratio,
    max_displacement,
    mgpff_loss,
    mgpff_terms,
    multigrid_apply,
    multigrid_flow,
    propagate_labels,
)
from .pff import (
    FILTER_NORMALIZATIONS,
    DirectCNN,
    PredictiveFilterFlow,
    TwoStreamNet,
    filter_pca_energy,
    local_envelope,
)

__all__ = ["apply_filter_flow", "expected_flow", "TwoStreamNet", "PredictiveFilterFlow", "DirectCNN",
           "FILTER_NORMALIZATIONS", "local_envelope", "filter_pca_energy",
           "MultigridPFF", "MultigridOutput", "MultigridPFFLoss", "mgpff_loss", "mgpff_terms", "multigrid_apply", "multigrid_flow",
           "propagate_labels", "max_displacement", "coefficient_ratio"]
