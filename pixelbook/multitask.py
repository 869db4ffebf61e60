"""Evaluating one network on four pixel tasks, and the trivial baselines it must beat [Kong thesis, Ch. 2].

``task_metrics`` turns dense predictions into the numbers of the thesis' Tables 2.1–2.4 (mIoU and
pixel accuracy; boundary ODS/OIS/AP; depth δ-accuracies and errors; normal angle statistics).
``trivial_predictions`` builds the predictions a network must beat to have learned anything:
the majority class, a constant boundary probability, the mean depth, the mean normal.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from . import metrics
from ._checks import check_shape
from .training import evaluate_batches

__all__ = ["predict_dataset", "task_metrics", "trivial_predictions", "TASK_METRICS"]

#: The columns reported per task, in the thesis' order (Tables 2.1–2.4) plus standard extras.
TASK_METRICS = {
    "seg": ("miou", "pixel_acc"),
    "boundary": ("ods", "ois", "ap"),
    "depth": ("d1", "d2", "d3", "abs_rel", "rmse"),
    "normals": ("mean", "median", "a11", "a22", "a30"),
}


def predict_dataset(model, data: Mapping[str, torch.Tensor], batch_size: int = 32, device=None) -> dict:
    """Run ``model.predict`` over ``data["image"]`` in batches and concatenate on the CPU."""
    parts = evaluate_batches(model, {"image": data["image"]}, lambda m, b: {k: v.cpu() for k, v in m.predict(b["image"]).items()},
                             batch_size=batch_size, device=device)
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def task_metrics(pred: Mapping[str, torch.Tensor], data: Mapping[str, torch.Tensor], num_classes: int,
                 boundary_tolerance: float = 1.0) -> dict:
    """Metrics for every task present in ``pred``, as ``{task: {metric: value}}``.

    Args:
        pred: ``seg`` labels ``(N,H,W)``, ``boundary`` probabilities ``(N,H,W)``, ``depth`` in metres
            ``(N,1,H,W)``, ``normals`` ``(N,3,H,W)`` — any subset (``PixelNet.predict`` output).
        data: ground truth with ``labels``, ``boundaries``, ``depth``, ``normals`` and optional ``valid``.
        num_classes: :math:`K` for the confusion matrix.
        boundary_tolerance: matching distance in pixels for the boundary F-measure (1 px on 64×64
            images is about the BSDS tolerance, 0.75 % of the diagonal, scaled to our size).

    mIoU is computed from one confusion matrix accumulated over the whole set (the thesis' and
    Cityscapes' convention), not as a mean of per-image scores.
    """
    valid = data.get("valid")
    out = {}
    if "seg" in pred:
        labels = data["labels"] if valid is None else data["labels"].masked_fill(~valid, 255)
        cm = metrics.confusion_matrix(pred["seg"], labels, num_classes, ignore_index=255)
        out["seg"] = {"miou": metrics.mean_iou_from_confusion(cm), "pixel_acc": metrics.pixel_accuracy_from_confusion(cm),
                      "per_class_iou": metrics.iou_from_confusion(cm)}
    if "boundary" in pred:
        out["boundary"] = metrics.boundary_f(pred["boundary"], data["boundaries"] > 0.5, tolerance=boundary_tolerance)
    if "depth" in pred:
        out["depth"] = metrics.depth_metrics(pred["depth"], data["depth"], None if valid is None else valid)
    if "normals" in pred:
        out["normals"] = metrics.normal_metrics(pred["normals"], data["normals"], valid)
    return out


def trivial_predictions(train: Mapping[str, torch.Tensor], n: int, size, num_classes: int) -> dict:
    """Predictions that ignore the image, fitted on the training set.

    - ``seg``: the majority class everywhere;
    - ``boundary``: the training set's boundary rate everywhere (any threshold gives all or nothing);
    - ``depth``: the mean training depth everywhere (the constant minimising squared error);
    - ``depth_map``: the per-pixel mean depth map (a stronger baseline: it knows the ground plane);
    - ``normals``: the normalised mean training normal everywhere.

    Returns a dict like ``PixelNet.predict``'s, for ``n`` images of ``size = (H, W)``.
    """
    check_shape(train["labels"], "train['labels']", "N H W")
    H, W = size
    valid = train.get("valid", torch.ones_like(train["labels"], dtype=torch.bool))
    counts = torch.bincount(train["labels"][valid].flatten(), minlength=num_classes)
    depth_valid = valid[:, None] & (train["depth"] > 0)
    mean_depth = train["depth"][depth_valid].mean()
    depth_map = (train["depth"] * depth_valid).sum(0, keepdim=True) / depth_valid.sum(0, keepdim=True).clamp_min(1)
    depth_map = torch.where(depth_map > 0, depth_map, mean_depth)
    mean_normal = F.normalize((train["normals"] * valid[:, None]).sum((0, 2, 3)), dim=0)
    return {
        "seg": torch.full((n, H, W), int(counts.argmax()), dtype=torch.long),
        "boundary": torch.full((n, H, W), float((train["boundaries"] > 0.5).float().mean())),
        "depth": torch.full((n, 1, H, W), float(mean_depth)),
        "depth_map": depth_map.expand(n, 1, H, W).clone(),
        "normals": mean_normal.view(1, 3, 1, 1).expand(n, 3, H, W).clone(),
    }
