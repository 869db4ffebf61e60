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
from ._checks import IGNORE_INDEX, check_shape
from .training import evaluate_batches

__all__ = ["predict_dataset", "task_metrics", "trivial_predictions", "TASK_METRICS", "load_task_data",
           "load_boundary_data", "label_boundaries", "TASK_KEYS", "BSDS_POSITIVE"]

#: A BSDS pixel is a boundary when at least this share of annotators drew one there, background
#: when none did, and ignored in between (ours; RCF's convention, Liu et al. 2017).
BSDS_POSITIVE = 0.5

#: The keys of a task-data dict (what ``multitask_loss`` and ``task_metrics`` read).
TASK_KEYS = ("image", "labels", "boundaries", "depth", "normals", "valid")

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
        labels = data["labels"] if valid is None else data["labels"].masked_fill(~valid, IGNORE_INDEX)
        cm = metrics.confusion_matrix(pred["seg"], labels, num_classes, ignore_index=IGNORE_INDEX)
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


def label_boundaries(labels: torch.Tensor, ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """1-px boundaries of a label map ``(N, H, W)``: pixels whose right or lower neighbour differs.

    Pairs involving ``ignore_index`` are not boundaries. Used for datasets without boundary labels
    (NYUv2): its semantic boundaries stand in for the BSDS-style ones.
    """
    check_shape(labels, "labels", "N H W")
    b = torch.zeros_like(labels, dtype=torch.bool)
    for dy, dx in ((0, 1), (1, 0)):
        a, c = labels[:, : labels.shape[1] - dy, : labels.shape[2] - dx], labels[:, dy:, dx:]
        edge = a != c
        if ignore_index is not None:
            edge &= (a != ignore_index) & (c != ignore_index)
        b[:, : labels.shape[1] - dy, : labels.shape[2] - dx] |= edge
    return b


def _resize_sample(sample: dict, size) -> dict:
    """Resize one NYUv2-style sample to ``size``: bilinear image, nearest for everything else."""
    img = F.interpolate(sample["image"][None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    near = lambda x: F.interpolate(x[None].float(), size=size, mode="nearest")[0]  # noqa: E731
    normals = F.normalize(near(sample["normals"]), dim=0)
    valid = near(sample["valid"][None])[0].bool() & near(sample.get("normals_valid", sample["valid"])[None])[0].bool()
    return {"image": img, "labels": near(sample["labels40"][None])[0].long(), "depth": near(sample["depth"]),
            "normals": normals, "valid": valid}


def load_task_data(dataset: str, split: str, n: int | None = None, size=64, seed: int = 0, root=None,
                   download: bool = False, progress: bool = True) -> tuple[dict, tuple[str, ...]]:
    """A dict of tensors with ``TASK_KEYS`` for Chapter 1, and the class names.

    Args:
        dataset: ``"synthetic"`` (:func:`pixelbook.data.make_scenes`, exact labels for all four
            tasks) or ``"nyuv2"`` (:class:`pixelbook.data.NYUv2Labeled`, 40 classes; boundaries
            are the semantic boundaries of the labels; normals fitted to the depth).
        split: ``"train"`` or ``"val"`` (NYUv2: its 654-image test split, as in the thesis).
        n: number of images (``None``: all; required for synthetic data).
        size: ``H`` or ``(H, W)`` of the returned images.
        root: folder with the NYUv2 files (``None``: the registry's cache).
        download: let the registry download missing NYUv2 files (about 2.8 GB).
    """
    from .data import NYUv2Labeled, SCENE_CLASSES, make_scenes

    from ._checks import check_choice

    check_choice(dataset, "dataset", ("synthetic", "nyuv2"))
    check_choice(split, "split", ("train", "val"))
    size = (size, size) if isinstance(size, int) else tuple(size)
    if dataset == "synthetic":
        if n is None:
            raise ValueError("`n`: expected the number of synthetic scenes, got None")
        scenes = make_scenes(n, size=size, seed=seed, split=split)
        return {k: scenes[k] for k in TASK_KEYS}, tuple(SCENE_CLASSES)
    from tqdm.auto import tqdm

    ds = NYUv2Labeled(root, split="train" if split == "train" else "test", download=download, verify=False)
    count = len(ds) if n is None else min(n, len(ds))
    samples = [_resize_sample(ds[i], size) for i in tqdm(range(count), desc=f"NYUv2 {split}", disable=not progress)]
    data = {k: torch.stack([s[k] for s in samples]) for k in ("image", "labels", "depth", "normals", "valid")}
    data["labels"] = data["labels"].masked_fill(~data["valid"], IGNORE_INDEX)
    data["boundaries"] = label_boundaries(data["labels"])
    return {k: data[k] for k in TASK_KEYS}, tuple(NYUv2Labeled.classes)


def load_boundary_data(split: str, size=(320, 480), n: int | None = None, root=None, download: bool = False,
                       progress: bool = True) -> dict:
    """BSDS500 as tensors for boundary training: ``image``, ``boundaries``, ``valid``.

    Portrait images are transposed to landscape, then all are resized to ``size``: images
    bilinearly with antialiasing, the annotator mean by adaptive *max* pooling (a pixel of the
    small map takes the largest mean in its cell, so a one-pixel boundary survives the shrink).
    Labels follow :data:`BSDS_POSITIVE`: positive where the resized mean is at least
    ``BSDS_POSITIVE``, negative where it is 0 (no annotator drew a boundary in the cell), ignored
    (``valid = False``) in between. The resized mean itself is returned as ``boundary_mean`` for
    evaluation.

    Args:
        split: ``"train"`` (200 images), ``"val"`` (100) or ``"test"`` (200).
        size: ``(H, W)`` after resizing (landscape).
        n: at most this many images (``None``: all).
        root: a folder with the unpacked archive; ``None``: the registry's cache.
        download: let the registry download the archive (252 MB).
    """
    from tqdm.auto import tqdm

    from .data import BSDS500

    ds = BSDS500(root, split=split, download=download)
    count = len(ds) if n is None else min(n, len(ds))
    images, means = [], []
    for i in tqdm(range(count), desc=f"BSDS500 {split}", disable=not progress):
        s = ds[i]
        img, b = s["image"], s["boundaries"][None]
        if img.shape[1] > img.shape[2]:  # portrait -> landscape
            img, b = img.transpose(1, 2), b.transpose(1, 2)
        images.append(F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0])
        means.append(F.adaptive_max_pool2d(b[None], size)[0, 0])  # max keeps thin lines alive when shrinking
    image, mean = torch.stack(images), torch.stack(means)
    return {"image": image, "boundaries": mean >= BSDS_POSITIVE, "boundary_mean": mean,
            "valid": (mean >= BSDS_POSITIVE) | (mean == 0)}
