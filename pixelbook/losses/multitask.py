r"""The weighted sum of Chapter 1's four task losses [Kong thesis, Ch. 2]."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .boundary import boundary_loss
from .depth import DEPTH_GAMMA, log_depth_loss
from .normals import NORMAL_LAMBDA, normal_loss
from .segmentation import segmentation_loss

__all__ = ["multitask_loss", "MultitaskLoss"]


def multitask_loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                   weights: Mapping[str, float], ignore_index: int = 255, gamma: float = DEPTH_GAMMA,
                   lam: float = NORMAL_LAMBDA):
    """Weighted sum of the task losses for the heads present in ``outputs``.

    Args:
        outputs: the model's dict: ``seg`` ``(N,K,H,W)``, ``boundary_sides`` (list of
            ``(N,1,H,W)``, the fused map last), ``depth`` (log-depth ``(N,1,H,W)``), ``normals``.
        batch: ``labels``, ``boundaries``, ``depth``, ``normals`` and optionally ``valid``.
        weights: per-task weights, e.g. ``{"seg": 1, "boundary": 1, "depth": 1, "normals": 1}``;
            a task missing from ``weights`` gets weight 1.
        gamma: γ of the depth loss (:func:`log_depth_loss`; thesis: 2, 0 = L2 only).
        lam: λ of the normal loss (:func:`normal_loss`; thesis: 4, 0 = cosine only).

    Returns:
        ``(total, logs)`` where ``logs`` maps each task to its (unweighted) loss value.
    """
    valid = batch.get("valid")
    terms = {}
    if "seg" in outputs:
        labels = batch["labels"] if valid is None else batch["labels"].masked_fill(~valid, ignore_index)
        terms["seg"] = segmentation_loss(outputs["seg"], labels, ignore_index=ignore_index)
    if "boundary_sides" in outputs:
        terms["boundary"] = boundary_loss(outputs["boundary_sides"], batch["boundaries"], valid)
    if "depth" in outputs:
        terms["depth"] = log_depth_loss(outputs["depth"], batch["depth"], None if valid is None else valid[:, None],
                                        gamma=gamma)
    if "normals" in outputs:
        terms["normals"] = normal_loss(outputs["normals"], batch["normals"], valid, lam=lam)
    if not terms:
        raise ValueError(f"`outputs`: expected at least one of seg/boundary_sides/depth/normals, got {list(outputs)}")
    unknown = set(weights) - {"seg", "boundary", "depth", "normals"}
    if unknown:
        raise ValueError(f"`weights`: unknown tasks {sorted(unknown)}; expected seg, boundary, depth, normals")
    total = sum(float(weights.get(k, 1.0)) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


class MultitaskLoss(nn.Module):
    """Module form of :func:`multitask_loss`; ``forward(outputs, batch)`` returns ``(total, logs)``.

    Args:
        weights: per-task weights (a task missing gets 1); ``None``: all 1.
        ignore_index: void label of the segmentation task.
    """

    def __init__(self, weights: Mapping[str, float] | None = None, ignore_index: int = 255):
        super().__init__()
        self.weights, self.ignore_index = dict(weights or {}), ignore_index

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
        return multitask_loss(outputs, batch, self.weights, ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"weights={self.weights}, ignore_index={self.ignore_index}"
