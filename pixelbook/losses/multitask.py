r"""The weighted sum of Chapter 1's four task losses [Kong thesis, Ch. 2]."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .._checks import IGNORE_INDEX
from .boundary import boundary_loss
from .depth import DEPTH_GAMMA, log_depth_loss
from .normals import NORMAL_LAMBDA, normal_loss
from .segmentation import segmentation_loss

__all__ = ["multitask_loss", "MultitaskLoss", "multitask_terms", "TASK_LOSSES"]

#: The task losses, by the name of their head: ``seg`` Eq. 2.1, ``boundary`` Eq. 2.2, ``depth`` Eq. 2.3,
#: ``normals`` Eq. 2.4 [Kong thesis].
TASK_LOSSES = ("seg", "boundary", "depth", "normals")


def multitask_terms(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                    ignore_index: int | None = IGNORE_INDEX, gamma: float = DEPTH_GAMMA,
                    lam: float = NORMAL_LAMBDA) -> dict:
    r"""The unweighted loss of every task whose head is in ``outputs``, as ``{task: scalar tensor}``.

    Args:
        outputs: the model's dict: ``seg`` ``(N,K,H,W)``, ``boundary_sides`` (list of
            ``(N,1,H,W)``, the fused map last), ``depth`` (log-depth ``(N,1,H,W)``), ``normals``.
        batch: ``labels``, ``boundaries``, ``depth``, ``normals`` and optionally ``valid``
            (``(N, H, W)`` bool, the pixels that count for every task).
        ignore_index: void label of the segmentation task.
        gamma: :math:`\gamma` of the depth loss (:func:`log_depth_loss`; thesis: 2, 0 = L2 only).
        lam: :math:`\lambda` of the normal loss (:func:`normal_loss`; thesis: 4, 0 = cosine only).

    Returns:
        ``dict`` with keys among :data:`TASK_LOSSES`, in that order; each value a scalar tensor.
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
    return terms


def multitask_loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                   task_weights: Mapping[str, float] | None = None, ignore_index: int | None = IGNORE_INDEX,
                   gamma: float = DEPTH_GAMMA, lam: float = NORMAL_LAMBDA) -> torch.Tensor:
    r"""Weighted sum :math:`\sum_t w_t \ell_t` of the task losses for the heads present in ``outputs``.

    Args:
        outputs, batch, ignore_index, gamma, lam: as in :func:`multitask_terms`.
        task_weights: per-task weights, e.g. ``{"seg": 1, "boundary": 1, "depth": 1, "normals": 1}``;
            a task missing from it (or ``None``) gets weight 1.

    Returns:
        Scalar tensor. For the unweighted terms (to log them during training) use
        :func:`multitask_terms`.
    """
    task_weights = {} if task_weights is None else task_weights
    unknown = set(task_weights) - set(TASK_LOSSES)
    if unknown:
        raise ValueError(f"`task_weights`: unknown tasks {sorted(unknown)}; expected seg, boundary, depth, normals")
    terms = multitask_terms(outputs, batch, ignore_index, gamma=gamma, lam=lam)
    return sum(float(task_weights.get(k, 1.0)) * v for k, v in terms.items())


class MultitaskLoss(nn.Module):
    """Module form of :func:`multitask_loss`; ``forward(outputs, batch)`` returns the weighted sum.

    Args:
        task_weights: per-task weights (a task missing gets 1); ``None``: all 1.
        ignore_index, gamma, lam: as in :func:`multitask_terms`.
    """

    def __init__(self, task_weights: Mapping[str, float] | None = None, ignore_index: int | None = IGNORE_INDEX,
                 gamma: float = DEPTH_GAMMA, lam: float = NORMAL_LAMBDA):
        super().__init__()
        self.task_weights, self.ignore_index = dict(task_weights or {}), ignore_index
        self.gamma, self.lam = gamma, lam

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return multitask_loss(outputs, batch, self.task_weights, ignore_index=self.ignore_index, gamma=self.gamma,
                              lam=self.lam)

    def extra_repr(self) -> str:
        return f"task_weights={self.task_weights}, ignore_index={self.ignore_index}, gamma={self.gamma}, lam={self.lam}"
