r"""Semantic segmentation metrics: confusion matrix, IoU, mean IoU, pixel accuracy, matched IoU.

Dataset-level numbers come from one confusion matrix accumulated over all pixels of all images
(the thesis', PASCAL's and Cityscapes' convention): sum :func:`confusion_matrix` over batches and
call the ``*_from_confusion`` functions, or use :class:`pixelbook.metrics.MeanIoU`.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from .._checks import IGNORE_INDEX, check_dtype, check_finite, check_float, check_int, check_labels, check_range, check_shape
from ._common import _binary_mask, _check_nonempty, _check_same_device

__all__ = [
    "confusion_matrix", "iou_from_confusion", "mean_iou", "mean_iou_from_confusion", "pixel_accuracy",
    "pixel_accuracy_from_confusion", "matched_iou", "matched_iou_per_image", "binary_segmentation_scores",
]


def _check_index_maps(pred, labels, num_classes, ignore_index) -> None:
    for x, name in ((pred, "pred"), (labels, "labels")):
        if torch.is_tensor(x) and x.ndim == 4 and x.is_floating_point():
            raise ValueError(
                f"`{name}`: expected shape (N, H, W) of class indices, got {tuple(x.shape)} "
                "(scores? take `.argmax(1)` first)"
            )
    d = check_shape(pred, "pred", "N H W")
    check_shape(labels, "labels", "N H W", d)
    _check_same_device(labels, "labels", pred, "pred")
    _check_nonempty(pred, "pred")
    check_labels(pred, "pred", num_classes)
    check_labels(labels, "labels", num_classes, ignore_index)


@torch.no_grad()
def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    r"""Confusion matrix of a batch of label maps, pixels pooled over all images.

    ``cm[i, j]`` counts pixels whose ground truth is class ``i`` and prediction class ``j`` (rows =
    ground truth). Pixels with ``labels == ignore_index`` are left out. Matrices of several batches add
    up: ``sum(confusion_matrix(p, l, C) for p, l in batches)`` is the dataset's matrix, from which
    :func:`iou_from_confusion` and :func:`mean_iou_from_confusion` give the dataset-wide scores.

    Args:
        pred: ``(N, H, W)`` integer (int64) predicted classes in ``[0, num_classes)``.
        labels: ``(N, H, W)`` integer ground truth in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: :math:`C` ≥ 1.
        ignore_index: label value to skip (e.g. 255 for VOC); must lie outside ``[0, C)`` so that it
            cannot be confused with a class. ``None``: every pixel counts.

    Returns:
        ``(C, C)`` int64 tensor on the inputs' device.

    Raises:
        TypeError: non-integer ``pred``/``labels`` or ``num_classes``.
        ValueError: naming the argument for wrong shapes, classes out of range, an ``ignore_index``
            inside ``[0, C)``.

    Example:
        >>> import torch
        >>> pred = torch.tensor([[[0, 1, 1], [1, 1, 0]]])
        >>> labels = torch.tensor([[[0, 1, 0], [1, 255, 0]]])
        >>> confusion_matrix(pred, labels, num_classes=2, ignore_index=255)
        tensor([[2, 1],
                [0, 2]])
    """
    C = check_int(num_classes, "num_classes", low=1)
    if ignore_index is not None:
        ignore_index = check_int(ignore_index, "ignore_index")
        if 0 <= ignore_index < C:
            raise ValueError(
                f"`ignore_index`: expected a value outside [0, {C}) (e.g. 255 or -1), got {ignore_index}; "
                "a class index cannot double as the ignore label"
            )
    _check_index_maps(pred, labels, C, ignore_index)
    pred, labels = pred.long(), labels.long()
    if ignore_index is not None:
        keep = labels != ignore_index
        pred, labels = pred[keep], labels[keep]
    idx = (labels * C + pred).reshape(-1)
    return torch.bincount(idx, minlength=C * C).reshape(C, C)


@torch.no_grad()
def iou_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    r"""Per-class intersection over union :math:`\mathrm{IoU}_c = TP_c / (TP_c + FP_c + FN_c)`.

    With rows = ground truth: :math:`TP_c = cm_{cc}`, :math:`FN_c = \sum_j cm_{cj} - TP_c`,
    :math:`FP_c = \sum_i cm_{ic} - TP_c` (PASCAL VOC definition; thesis note §5).

    **Absent-class convention:** a class that occurs neither in the ground truth nor in the predictions
    (:math:`TP + FP + FN = 0`) gets ``NaN`` — its IoU is undefined, not 0 or 1 — and
    :func:`mean_iou` skips it. A class only predicted (false positives, no ground truth) gets 0 and
    counts. This matches ``torchmetrics.functional.classification.multiclass_jaccard_index``
    (``average="macro"``, torchmetrics ≥ 1.6).

    Args:
        cm: ``(C, C)`` non-negative counts (integer or float), rows = ground truth, e.g. from
            :func:`confusion_matrix`, possibly summed over batches.

    Returns:
        ``(C,)`` float64 tensor, ``NaN`` for absent classes.

    Example:
        >>> import torch
        >>> iou_from_confusion(torch.tensor([[2, 1, 0], [0, 2, 0], [0, 0, 0]]))
        tensor([0.6667, 0.6667,    nan], dtype=torch.float64)
    """
    check_shape(cm, "cm", "C C")
    if cm.dtype == torch.bool or cm.is_complex():
        raise TypeError(f"`cm`: expected an integer or float tensor of counts, got {cm.dtype}")
    check_finite(cm, "cm")
    check_range(cm, "cm", 0.0)
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1e-300), torch.full_like(tp, float("nan")))


@torch.no_grad()
def mean_iou_from_confusion(cm: torch.Tensor) -> float:
    """Mean over classes of :func:`iou_from_confusion`, skipping absent (``NaN``) classes.

    Raises:
        ValueError: if every class is absent (no labelled pixel and no prediction was counted).

    Example:
        >>> import torch
        >>> round(mean_iou_from_confusion(torch.tensor([[2, 1, 0], [0, 2, 0], [0, 0, 0]])), 4)
        0.6667
    """
    iou = iou_from_confusion(cm)
    present = ~torch.isnan(iou)
    if not bool(present.any()):
        raise ValueError("`cm`: expected at least one counted pixel, got an all-zero confusion matrix "
                         "(every pixel ignored?)")
    return float(iou[present].mean())


@torch.no_grad()
def pixel_accuracy_from_confusion(cm: torch.Tensor) -> float:
    """Pixel accuracy ``trace(cm) / cm.sum()`` of an (accumulated) confusion matrix.

    Example:
        >>> import torch
        >>> pixel_accuracy_from_confusion(torch.tensor([[2, 1], [0, 2]]))
        0.8
    """
    check_shape(cm, "cm", "C C")
    if cm.dtype == torch.bool or cm.is_complex():
        raise TypeError(f"`cm`: expected an integer or float tensor of counts, got {cm.dtype}")
    check_finite(cm, "cm")
    check_range(cm, "cm", 0.0)
    total = float(cm.double().sum())
    if total == 0:
        raise ValueError("`cm`: expected at least one counted pixel, got an all-zero confusion matrix")
    return float(cm.double().diagonal().sum()) / total


@torch.no_grad()
def mean_iou(pred: torch.Tensor, labels: torch.Tensor, num_classes: int,
             ignore_index: int | None = IGNORE_INDEX) -> float:
    r"""Dataset-wide mean IoU: one confusion matrix over **all pixels of all images**, then the mean over
    classes of :math:`TP/(TP+FP+FN)` — *not* the mean of per-image mIoUs (the two differ whenever
    images differ in size or class content; the thesis' and PASCAL/Cityscapes' "mIoU" is this one).

    Classes absent from both ground truth and predictions are skipped (see :func:`iou_from_confusion`).
    Pixels labelled ``ignore_index`` are excluded. For a dataset larger than one batch, sum
    :func:`confusion_matrix` over batches and call :func:`mean_iou_from_confusion`.

    Args:
        pred: ``(N, H, W)`` int64 predicted classes in ``[0, num_classes)``.
        labels: ``(N, H, W)`` int64 ground truth in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: :math:`C`.
        ignore_index: label to skip, outside ``[0, C)``; ``None`` = none.

    Returns:
        python float in [0, 1].

    Raises:
        ValueError: naming the argument (shape, range), or if every pixel is ignored.

    Example:
        >>> import torch
        >>> pred = torch.tensor([[[0, 1, 1], [1, 1, 0]]])
        >>> labels = torch.tensor([[[0, 1, 0], [1, 1, 0]]])
        >>> mean_iou(pred, labels, num_classes=2)  # class 0: 2/3, class 1: 3/4
        0.7083333333333333
    """
    cm = confusion_matrix(pred, labels, num_classes, ignore_index)
    if int(cm.sum()) == 0:
        raise ValueError(f"`labels`: expected at least one pixel not equal to ignore_index={ignore_index}, got none")
    return mean_iou_from_confusion(cm)


@torch.no_grad()
def pixel_accuracy(pred: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = IGNORE_INDEX) -> float:
    r"""Pixel accuracy = #correctly labelled pixels / #labelled pixels, pooled over the batch (thesis §5).

    Args:
        pred: ``(N, H, W)`` integer predicted classes.
        labels: ``(N, H, W)`` integer ground truth; pixels equal to ``ignore_index`` are not "labelled".
        ignore_index: label to skip; ``None`` = none.

    Returns:
        python float in [0, 1].

    Raises:
        ValueError: naming the argument (shape), or if every pixel is ignored.

    Example:
        >>> import torch
        >>> pixel_accuracy(torch.tensor([[[0, 1, 1], [1, 1, 0]]]), torch.tensor([[[0, 1, 0], [1, 255, 0]]]),
        ...                ignore_index=255)
        0.8
    """
    d = check_shape(pred, "pred", "N H W")
    check_shape(labels, "labels", "N H W", d)
    _check_same_device(labels, "labels", pred, "pred")
    check_dtype(pred, "pred", "int")
    check_dtype(labels, "labels", "int")
    _check_nonempty(pred, "pred")
    if ignore_index is not None:
        ignore_index = check_int(ignore_index, "ignore_index")
        keep = labels != ignore_index
    else:
        keep = torch.ones_like(labels, dtype=torch.bool)
    n = int(keep.sum())
    if n == 0:
        raise ValueError(f"`labels`: expected at least one pixel not equal to ignore_index={ignore_index}, got none")
    return int(((pred == labels) & keep).sum()) / n


@torch.no_grad()
def matched_iou_per_image(pred: torch.Tensor, labels: torch.Tensor, num_classes: int,
                          num_channels: int | None = None, ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    r"""Per-image mean IoU under the best one-to-one matching of predicted channels to classes.

    The evaluation of a class-agnostic segmentation: a prediction is scored as a *partition*, so
    relabelling its channels in any image changes nothing. For each image the ``num_classes ×
    num_channels`` confusion matrix is formed and the injective map from classes to channels
    maximising the summed IoU is taken (enumerated: at most a few thousand maps). Classes absent
    from an image (and not predicted under the matching) are left out of that image's mean.

    Args:
        pred: ``(N, H, W)`` int channel index per pixel (e.g. ``probs.argmax(1)``), in
            ``[0, num_channels)``.
        labels: ``(N, H, W)`` int in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: :math:`K`. num_channels: :math:`M \ge K` (default ``K``).

    Returns: ``(N,)`` float64 tensor of per-image matched mean IoU (:func:`matched_iou` averages it).

    Raises:
        ValueError: naming the argument; an image whose pixels all equal ``ignore_index`` (its score
        is undefined) names ``labels``.

    Example:
        >>> y = torch.tensor([[[0, 0, 1, 2]]])
        >>> matched_iou_per_image(torch.tensor([[[2, 2, 0, 1]]]), y, 3).tolist()   # a relabelled perfect map
        [1.0]
    """
    d = check_shape(pred, "pred", "N H W")
    check_shape(labels, "labels", "N H W", d)
    check_dtype(pred, "pred", "int")
    check_dtype(labels, "labels", "int")
    K = check_int(num_classes, "num_classes", low=1)
    M = K if num_channels is None else int(num_channels)
    if K < 1 or M < K:
        raise ValueError(f"`num_channels`: expected >= num_classes={K}, got {M}")
    count = math.perm(M, K)
    if count > 40320:
        raise ValueError(f"`num_classes`, `num_channels`: {count} matchings are too many to enumerate")
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    void = ~valid.flatten(1).any(1)
    if bool(void.any()):
        raise ValueError(f"`labels`: image {int(void.nonzero()[0])} has no pixel other than "
                         f"ignore_index={ignore_index}; its matched IoU is undefined")
    y = torch.where(valid, labels.long(), torch.zeros_like(labels, dtype=torch.long))
    if bool(((y < 0) | (y >= K)).any()) or bool(((pred < 0) | (pred >= M)).any()):
        raise ValueError(f"`pred`/`labels`: expected values in [0, {M}) and [0, {K}) (or ignore_index)")
    B = pred.shape[0]
    yk = F.one_hot(y.reshape(B, -1), K).double() * valid.reshape(B, -1, 1)
    pm = F.one_hot(pred.reshape(B, -1).long(), M).double() * valid.reshape(B, -1, 1)
    cm = torch.bmm(yk.transpose(1, 2), pm)                                   # (B, K, M)
    gt, pr = cm.sum(2), cm.sum(1)                                            # (B, K), (B, M)
    perms = torch.tensor(list(itertools.permutations(range(M), K)), device=cm.device)  # (P, K)
    rows = torch.arange(K, device=cm.device)
    inter = cm[:, rows[None, :], perms]                                      # (B, P, K)
    union = gt[:, None, :] + pr[:, perms] - inter
    present = union > 0
    iou = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(inter))
    score = iou.sum(2) / present.sum(2).clamp_min(1)                         # (B, P)
    return score.max(1).values


@torch.no_grad()
def matched_iou(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, num_channels: int | None = None,
                ignore_index: int | None = IGNORE_INDEX) -> float:
    r"""The mean over images of :func:`matched_iou_per_image` (same arguments): a python float.

    Example:
        >>> y = torch.tensor([[[0, 0, 1, 2]]] * 2)
        >>> round(matched_iou(torch.tensor([[[2, 2, 0, 1]], [[0, 0, 0, 0]]]), y, 3), 6)   # (1 + (2/4) / 3) / 2
        0.583333
    """
    return float(matched_iou_per_image(pred, labels, num_classes, num_channels, ignore_index).mean())


@torch.no_grad()
def binary_segmentation_scores(pred: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor | None = None,
                               beta2: float = 0.3) -> dict:
    r"""IoU and F-β of binary segmentations, pooled over the set and per image, and the MAE of a soft map.

    * ``pooled_iou``: :math:`TP/(TP+FP+FN)` with the counts summed over all images (PASCAL VOC's
      definition; 0 when neither prediction nor ground truth has a foreground pixel);
    * ``mean_iou``: the mean of per-image IoUs, an image with empty prediction and ground truth
      scoring 1;
    * ``fbeta``: :math:`F_\beta = (1+\beta^2)PR/(\beta^2P+R)` with :math:`P, R` from the pooled
      counts (each 0 when its denominator is 0), :math:`\beta^2 = 0.3` [ACHANTA09];
    * ``mae``: :func:`pixelbook.metrics.mae` of ``probs`` (only when ``probs`` is given).

    Args:
        pred: ``(N, H, W)`` bool (or 0/1) predicted foreground.
        labels: ``(N, H, W)`` bool (or 0/1) ground-truth foreground.
        probs: optional ``(N, H, W)`` soft map in [0, 1] for the MAE.
        beta2: :math:`\beta^2 > 0`.

    Returns:
        ``dict(pooled_iou, mean_iou, fbeta[, mae])`` of python floats.

    Example:
        >>> gt = torch.zeros(2, 4, 4, dtype=torch.bool); gt[:, :2] = True
        >>> pred = gt.clone(); pred[1, 2] = True   # image 1: one row too many
        >>> s = binary_segmentation_scores(pred, gt)
        >>> round(s["pooled_iou"], 4), round(s["mean_iou"], 4)
        (0.8, 0.8333)
    """
    from .saliency import f_measure, mae

    d = check_shape(pred, "pred", "N H W")
    pred = _binary_mask(pred, "pred", "N H W", d, pred, "pred")
    gt = _binary_mask(labels, "labels", "N H W", d, pred, "pred")
    beta2 = check_float(beta2, "beta2", low=0.0, low_open=True)
    tp = (pred & gt).sum((1, 2)).double()
    fp = (pred & ~gt).sum((1, 2)).double()
    fn = (~pred & gt).sum((1, 2)).double()
    union = tp + fp + fn
    per_image = torch.where(union > 0, tp / union.clamp_min(1), torch.ones_like(tp))
    TP, FP, FN = float(tp.sum()), float(fp.sum()), float(fn.sum())
    P = TP / (TP + FP) if TP + FP > 0 else 0.0
    R = TP / (TP + FN) if TP + FN > 0 else 0.0
    out = {"pooled_iou": TP / max(TP + FP + FN, 1.0), "mean_iou": float(per_image.mean()),
           "fbeta": float(f_measure(P, R, beta2))}
    if probs is not None:
        out["mae"] = mae(probs, gt)
    return out
