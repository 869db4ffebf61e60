"""Filter flow methods: Predictive Filter Flow (Ch. 7) and, beside it, multigrid PFF (Ch. 8).

Public API of :mod:`pixelbook.filterflow.pff` (Chapter 7, [KONG, Ch. 6]):

* :class:`~pixelbook.filterflow.pff.TwoStreamNet` — the two-stream predictor (deep stream with
  pooling + full-resolution stream);
* :class:`~pixelbook.filterflow.pff.PredictiveFilterFlow` — ``x -> {"out", "filters"}`` with
  softmax or free-form per-pixel filters;
* :class:`~pixelbook.filterflow.pff.DirectCNN` — the same net predicting the image (baseline);
* :func:`~pixelbook.filterflow.pff.local_envelope`, :func:`~pixelbook.filterflow.pff.filter_pca_energy`.

The operator itself, :func:`pixelbook.ops.apply_filter_flow`, and :func:`pixelbook.ops.expected_flow`
live in :mod:`pixelbook.ops` and are re-exported here. The degradations that make training pairs
are data: :mod:`pixelbook.data.degradations`.
"""

from __future__ import annotations

from ..ops.filter_flow import apply_filter_flow, expected_flow
from .pff import (
    FILTER_NORMALIZATIONS,
    DirectCNN,
    PredictiveFilterFlow,
    TwoStreamNet,
    filter_pca_energy,
    local_envelope,
)

__all__ = ["apply_filter_flow", "expected_flow", "TwoStreamNet", "PredictiveFilterFlow", "DirectCNN",
           "FILTER_NORMALIZATIONS", "local_envelope", "filter_pca_energy"]
