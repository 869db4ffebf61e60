r"""Instance segmentation and proposal metrics: ARI, covering, AP at IoU 0.5, average recall.

Conventions: ``pred`` (predicted segment ids) and ``instances`` (ground-truth instance ids) are
``(N, H, W)`` int64 maps; ids are arbitrary labels (only equality matters, so every metric is
invariant to relabelling). ``valid`` ``(N, H, W)`` bool selects the pixels that count (VOC's void
pixels are excluded from every count, as in the SBD/VOC evaluation). ``background`` names the
ground-truth id that is not an object (0): it is left out of the objects that covering, AP and AR
look for, but it is a group like any other for ARI. Proposals are given per image as
``(K, H, W)`` bool masks with ``(K,)`` scores; they may overlap. A batch score is a python float
(the mean over images for ARI and covering); ``*_per_image`` functions return ``(N,)`` float64
tensors. A batch with nothing to score (no valid pixel; no instance) raises a ValueError naming the
argument, never returns 0 or NaN.

* :func:`adjusted_rand_index` (and ``_per_image``) — Hubert & Arabie's chance-corrected Rand index over pixel pairs.
* :func:`segmentation_covering` (and ``_per_image``) — size-weighted best IoU of each target region [ARBELAEZ11, Eq. 8].
* :func:`best_iou_per_instance` — the best IoU of every target instance with its area, for
  per-size-bin numbers.
* :func:`instance_average_precision` — :math:`AP^r` [HARIHARAN14]: predictions over
  the whole set sorted by score; a prediction is a true positive if its best-IoU target has
  IoU ≥ 0.5 and was not matched by a higher-scoring prediction [KONG, §5.5.4]; VOC's
  all-point interpolated area under the precision–recall curve. Class-agnostic (call it per class
  for the per-class mean of the thesis' Table 5.2).
* :func:`average_recall` — recall of target instances by the top-k proposals, averaged over IoU
  thresholds 0.5:0.05:0.95 [HOSANG16], or at given thresholds (the thesis' Table 5.1
  uses 0.5 only).

[HUBERT85] Hubert, Arabie, "Comparing partitions", Journal of Classification 2 (1985).
[ARBELAEZ11] Arbeláez, Maire, Fowlkes, Malik, "Contour detection and hierarchical image
segmentation", IEEE TPAMI 33(5) (2011).
[HARIHARAN14] Hariharan, Arbeláez, Girshick, Malik, "Simultaneous detection and segmentation",
ECCV 2014.
[HOSANG16] Hosang, Benenson, Dollár, Schiele, "What makes for effective detection proposals?",
IEEE TPAMI 38(4) (2016).
[KONG] Shu Kong, PhD thesis (UC Irvine), Chapter 5.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .._checks import check_dtype, check_float, check_int, check_shape

__all__ = ["adjusted_rand_index", "adjusted_rand_index_per_image", "segmentation_covering",
           "segmentation_covering_per_image", "best_iou_per_instance", "masks_from_segments",
           "instance_average_precision", "average_recall", "AR_IOU_THRESHOLDS"]

#: IoU thresholds of average recall [HOSANG16]; the thesis' Fig. 5.8 ("0.5 to 0.95").
AR_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _check_maps(pred, instances, valid) -> dict:
    d = check_shape(pred, "pred", "N H W")
    check_dtype(pred, "pred", "int")
    check_shape(instances, "instances", "N H W", d)
    check_dtype(instances, "instances", "int")
    if valid is not None:
        check_shape(valid, "valid", "N H W", d)
        if valid.dtype != torch.bool:
            raise TypeError(f"`valid`: expected a bool tensor, got {valid.dtype}")
    return d


def _contingency(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Contingency table ``(#ids of a, #ids of b)`` of two flat id vectors (float64), ids sorted."""
    _, ai = torch.unique(a, return_inverse=True)
    _, bi = torch.unique(b, return_inverse=True)
    ka, kb = int(ai.max()) + 1, int(bi.max()) + 1
    return torch.bincount(ai * kb + bi, minlength=ka * kb).reshape(ka, kb).double()


def _pixels(x: torch.Tensor, valid, b: int) -> torch.Tensor:
    return x[b].reshape(-1) if valid is None else x[b][valid[b]]


def _pairs(v: torch.Tensor) -> torch.Tensor:
    """Sum of binomial(v, 2) over the entries of ``v``."""
    return (v * (v - 1) / 2).sum()


def adjusted_rand_index_per_image(pred: torch.Tensor, instances: torch.Tensor,
                                  valid: torch.Tensor | None = None) -> torch.Tensor:
    r"""Adjusted Rand index between the predicted and the true pixel partition of each image [HUBERT85].

    .. math::
        \mathrm{ARI} = \frac{\sum_{ij}\binom{n_{ij}}{2} - \big[\sum_i\binom{a_i}{2}\sum_j\binom{b_j}{2}\big]/\binom{n}{2}}
        {\tfrac12\big[\sum_i\binom{a_i}{2}+\sum_j\binom{b_j}{2}\big] - \big[\sum_i\binom{a_i}{2}\sum_j\binom{b_j}{2}\big]/\binom{n}{2}}

    from the contingency table :math:`n_{ij}` (row sums :math:`a`, column sums :math:`b`) over the
    valid pixels. 1 for identical partitions, ≈ 0 for independent ones, invariant to relabelling;
    the background is one more group. When the denominator is 0 (both partitions trivial in the
    same way) the value is 1, as in scikit-learn.

    Args:
        pred: ``(N, H, W)`` int64 segment ids.
        instances: ``(N, H, W)`` int64 instance ids.
        valid: ``(N, H, W)`` bool pixels that count; ``None`` = all.

    Returns:
        ``(N,)`` float64 tensor.

    Raises:
        ValueError: naming the argument; an image without a valid pixel names ``valid``.

    Example:
        >>> t = torch.tensor([[[0, 0, 1, 1]], [[0, 0, 1, 1]], [[0, 0, 1, 1]]])
        >>> p = torch.tensor([[[0, 0, 1, 1]], [[5, 5, 2, 2]], [[0, 1, 0, 1]]])
        >>> [round(v, 6) for v in adjusted_rand_index_per_image(p, t).tolist()]
        [1.0, 1.0, -0.5]
    """
    _check_maps(pred, instances, valid)
    out = torch.empty(pred.shape[0], dtype=torch.float64)
    for b in range(pred.shape[0]):
        p, t = _pixels(pred, valid, b), _pixels(instances, valid, b)
        if p.numel() == 0:
            raise ValueError(f"`valid`: image {b} has no valid pixel; its ARI is undefined")
        n_ij = _contingency(p, t)
        n = n_ij.sum()
        index, sa, sb = _pairs(n_ij), _pairs(n_ij.sum(1)), _pairs(n_ij.sum(0))
        expected = sa * sb / (n * (n - 1) / 2) if n > 1 else torch.zeros((), dtype=torch.float64)
        denom = (sa + sb) / 2 - expected
        out[b] = 1.0 if float(denom) == 0 else (index - expected) / denom
    return out


def adjusted_rand_index(pred: torch.Tensor, instances: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    """Mean over images of :func:`adjusted_rand_index_per_image`.

    Example:
        >>> t = torch.tensor([[[0, 0, 1, 1]]])
        >>> adjusted_rand_index(1 - t, t)
        1.0
    """
    return float(adjusted_rand_index_per_image(pred, instances, valid).mean())


def _region_ious(p: torch.Tensor, t: torch.Tensor):
    """IoU matrix (#true regions, #predicted segments), the true region ids and areas."""
    tid = torch.unique(t)
    n_ij = _contingency(t, p)
    area_t, area_p = n_ij.sum(1), n_ij.sum(0)
    return n_ij / (area_t[:, None] + area_p[None, :] - n_ij), tid, area_t


def best_iou_per_instance(pred: torch.Tensor, instances: torch.Tensor, valid: torch.Tensor | None = None,
                          background: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Best IoU of every true instance with any predicted segment, and its area (for size bins).

    Args:
        pred: ``(N, H, W)`` int64 segment ids.
        instances: ``(N, H, W)`` int64 instance ids.
        valid: ``(N, H, W)`` bool; ``None`` = all.
        background: instance id that is not an object (``None``: every region counts).

    Returns:
        ``(ious, areas)``: two ``(M,)`` float64 tensors over the M instances of all images (M may be 0).

    Example:
        >>> t = torch.tensor([[[0, 1, 1, 2]]]); p = torch.tensor([[[0, 1, 1, 1]]])
        >>> best_iou_per_instance(p, t)
        (tensor([0.6667, 0.3333], dtype=torch.float64), tensor([2., 1.], dtype=torch.float64))
    """
    _check_maps(pred, instances, valid)
    ious, areas = [torch.zeros(0, dtype=torch.float64)], [torch.zeros(0, dtype=torch.float64)]
    for b in range(pred.shape[0]):
        p, t = _pixels(pred, valid, b), _pixels(instances, valid, b)
        if t.numel() == 0:
            continue
        iou, tid, area = _region_ious(p, t)
        keep = tid != background if background is not None else torch.ones_like(tid, dtype=torch.bool)
        ious.append(iou.max(1).values[keep])
        areas.append(area[keep])
    return torch.cat(ious), torch.cat(areas)


def segmentation_covering_per_image(pred: torch.Tensor, instances: torch.Tensor, valid: torch.Tensor | None = None,
                                    background: int | None = 0) -> torch.Tensor:
    r"""Covering of the true instances by the predicted segments, per image [ARBELAEZ11, Eq. 8].

    .. math:: C(S\to T) = \frac{1}{\sum_{R\in T}|R|}\sum_{R\in T}|R|\max_{R'\in S}\mathrm{IoU}(R,R')

    over the true regions :math:`R` other than ``background`` (``background=None`` is the BSDS
    definition, over all regions).

    Args:
        pred: ``(N, H, W)`` int64 segment ids.
        instances: ``(N, H, W)`` int64 instance ids.
        valid: ``(N, H, W)`` bool; ``None`` = all.
        background: instance id left out of the covered regions; 0 by default.

    Returns:
        ``(N,)`` float64 tensor; NaN for an image without any (valid) instance.

    Example:
        >>> t = torch.tensor([[[0, 1, 1, 2]]]); p = torch.tensor([[[0, 1, 1, 1]]])
        >>> [round(v, 4) for v in segmentation_covering_per_image(p, t).tolist()]  # (2 * 2/3 + 1 * 1/3) / 3
        [0.5556]
    """
    _check_maps(pred, instances, valid)
    out = torch.full((pred.shape[0],), float("nan"), dtype=torch.float64)
    for b in range(pred.shape[0]):
        p, t = _pixels(pred, valid, b), _pixels(instances, valid, b)
        if t.numel() == 0:
            continue
        iou, tid, area = _region_ious(p, t)
        keep = tid != background if background is not None else torch.ones_like(tid, dtype=torch.bool)
        if bool(keep.any()):
            out[b] = (area[keep] * iou.max(1).values[keep]).sum() / area[keep].sum()
    return out


def segmentation_covering(pred: torch.Tensor, instances: torch.Tensor, valid: torch.Tensor | None = None,
                          background: int | None = 0) -> float:
    """Mean of :func:`segmentation_covering_per_image` over the images that have instances.

    Raises:
        ValueError: naming ``instances`` when no image has one.

    Example:
        >>> t = torch.tensor([[[0, 1, 1, 2]]])
        >>> segmentation_covering(t + 3, t)
        1.0
    """
    per = segmentation_covering_per_image(pred, instances, valid, background)
    per = per[~per.isnan()]
    if per.numel() == 0:
        raise ValueError("`instances`: expected at least one instance (id != background) in a valid pixel, got none")
    return float(per.mean())


def masks_from_segments(segments: torch.Tensor) -> list[torch.Tensor]:
    """Per image, the ``(K, H, W)`` bool masks of the ids present in ``(N, H, W)`` ``segments``.

    Example:
        >>> [m.shape for m in masks_from_segments(torch.tensor([[[0, 3], [3, 3]]]))]
        [torch.Size([2, 2, 2])]
    """
    check_shape(segments, "segments", "N H W")
    check_dtype(segments, "segments", "int")
    return [s[None] == torch.unique(s)[:, None, None] for s in segments]


def _check_proposals(proposals, scores, instances, valid) -> None:
    d = check_shape(instances, "instances", "N H W")
    check_dtype(instances, "instances", "int")
    N, H, W = instances.shape
    if valid is not None:
        check_shape(valid, "valid", "N H W", d)
        if valid.dtype != torch.bool:
            raise TypeError(f"`valid`: expected a bool tensor, got {valid.dtype}")
    if len(proposals) != N:
        raise ValueError(f"`proposals`: expected one entry per image ({N}, as in `instances`), got {len(proposals)}")
    if scores is not None and len(scores) != N:
        raise ValueError(f"`scores`: expected one entry per image ({N}, as in `instances`), got {len(scores)}")
    for b, m in enumerate(proposals):
        dm = check_shape(m, f"proposals[{b}]", f"K {H} {W}", allow_empty="K")
        if m.dtype != torch.bool:
            raise TypeError(f"`proposals[{b}]`: expected a bool tensor, got {m.dtype}")
        if scores is not None:
            check_shape(scores[b], f"scores[{b}]", "K", dm, allow_empty="K")


def _proposal_ious(masks_b: torch.Tensor, instances_b: torch.Tensor, valid_b, background) -> torch.Tensor:
    """IoU ``(K, G)`` between the proposals and the true instances of one image (valid pixels only)."""
    keep = torch.ones_like(instances_b, dtype=torch.bool) if valid_b is None else valid_b
    ids = torch.unique(instances_b[keep])
    if background is not None:
        ids = ids[ids != background]
    gt = ((instances_b[None] == ids[:, None, None]) & keep).reshape(len(ids), instances_b.numel()).double()
    pr = (masks_b & keep).reshape(masks_b.shape[0], instances_b.numel()).double()
    inter = pr @ gt.T
    union = pr.sum(1)[:, None] + gt.sum(1)[None, :] - inter
    return inter / union.clamp_min(1)


def instance_average_precision(proposals: Sequence[torch.Tensor], scores: Sequence[torch.Tensor],
                               instances: torch.Tensor, iou_threshold: float = 0.5,
                               valid: torch.Tensor | None = None, background: int | None = 0) -> float:
    r""":math:`AP^r` at an IoU threshold over a set of images, class-agnostic [HARIHARAN14].

    All predictions of all images are ranked by score. Each is matched to the true instance of
    its image with the highest IoU; it is a true positive if that IoU ≥ ``iou_threshold`` and the
    instance was not matched by a higher-scoring prediction, otherwise a false positive
    [KONG, §5.5.4]. AP is the area under the precision–recall curve with precision made
    monotone (VOC 2010+ all-point interpolation). For the thesis' per-class :math:`AP^r` (Table
    5.2) call it once per class with that class's predictions and instances.

    Args:
        proposals: per image, ``(K, H, W)`` bool predicted instance masks (K may be 0).
        scores: per image, ``(K,)`` scores (higher = more confident).
        instances: ``(N, H, W)`` int64 instance ids.
        iou_threshold: 0.5 in the thesis' Table 5.2.
        valid: ``(N, H, W)`` bool pixels that count in the IoUs; ``None`` = all.
        background: instance id that is not an object.

    Returns:
        AP in [0, 1].

    Raises:
        ValueError: naming ``instances`` when there is no instance to find.

    Example:
        >>> t = torch.tensor([[[0, 1, 1, 2]]])
        >>> m = [torch.tensor([[[False, True, True, False]], [[False, False, False, True]], [[True, False, False, False]]])]
        >>> instance_average_precision(m, [torch.tensor([0.9, 0.8, 0.7])], t)
        1.0
    """
    _check_proposals(proposals, scores, instances, valid)
    iou_threshold = check_float(iou_threshold, "iou_threshold", 0.0, 1.0, low_open=True)
    all_scores, all_tp, num_gt = [], [], 0
    for b in range(instances.shape[0]):
        iou = _proposal_ious(proposals[b], instances[b], None if valid is None else valid[b], background)
        num_gt += iou.shape[1]
        sb = scores[b].detach().double().cpu()
        order = torch.argsort(sb, descending=True, stable=True)
        taken = torch.zeros(iou.shape[1], dtype=torch.bool)
        for k in order.tolist():
            tp = False
            if iou.shape[1]:
                g = int(iou[k].argmax())
                if float(iou[k, g]) >= iou_threshold and not bool(taken[g]):
                    taken[g], tp = True, True
            all_tp.append(tp)
        all_scores.append(sb[order])
    if num_gt == 0:
        raise ValueError("`instances`: expected at least one instance (id != background) in a valid pixel, got none")
    if not all_tp:
        return 0.0
    s = torch.cat(all_scores)
    tp = torch.tensor(all_tp, dtype=torch.float64)[torch.argsort(s, descending=True, stable=True)]
    ctp, cfp = tp.cumsum(0), (1 - tp).cumsum(0)
    recall = torch.cat([torch.zeros(1, dtype=torch.float64), ctp / num_gt])
    precision = torch.cat([torch.ones(1, dtype=torch.float64), ctp / (ctp + cfp)])
    precision = precision.flip(0).cummax(0).values.flip(0)  # monotone envelope
    return float(((recall[1:] - recall[:-1]) * precision[1:]).sum())


def average_recall(proposals: Sequence[torch.Tensor], instances: torch.Tensor,
                   scores: Sequence[torch.Tensor] | None = None, max_proposals: int | None = None,
                   iou_thresholds: Sequence[float] = AR_IOU_THRESHOLDS, valid: torch.Tensor | None = None,
                   background: int | None = 0) -> float:
    r"""Average recall of the true instances by proposals [HOSANG16; KONG, Table 5.1].

    For each image the ``max_proposals`` best-scoring proposals are kept; an instance is recalled at
    threshold τ if some kept proposal has IoU ≥ τ with it (no one-to-one matching, as for proposal
    recall). The recall over all instances of the set is averaged over ``iou_thresholds``.

    Args:
        proposals: per image, ``(K, H, W)`` bool proposal masks.
        instances: ``(N, H, W)`` int64 instance ids.
        scores: per image, ``(K,)`` scores; needed when ``max_proposals`` is given.
        max_proposals: proposals kept per image; ``None`` = all.
        iou_thresholds: default 0.5:0.05:0.95; ``(0.5,)`` for the thesis' Table 5.1.
        valid: ``(N, H, W)`` bool; ``None`` = all.
        background: instance id that is not an object.

    Raises:
        ValueError: naming ``instances`` when there is no instance to recall.

    Example:
        >>> t = torch.tensor([[[0, 1, 1, 2]]])
        >>> m = [torch.tensor([[[False, True, True, False]], [[False, False, True, True]]])]
        >>> average_recall(m, t, iou_thresholds=(0.5,))  # instance 2 has IoU 0.5 with the second
        1.0
    """
    _check_proposals(proposals, scores, instances, valid)
    if max_proposals is not None:
        max_proposals = check_int(max_proposals, "max_proposals", low=1)
        if scores is None:
            raise ValueError("`scores`: needed to pick the top `max_proposals` proposals, got None")
    if len(iou_thresholds) == 0:
        raise ValueError("`iou_thresholds`: expected at least one threshold, got none")
    thr = torch.tensor([check_float(t, "iou_thresholds", 0.0, 1.0, low_open=True) for t in iou_thresholds],
                       dtype=torch.float64)
    best = [torch.zeros(0, dtype=torch.float64)]
    for b in range(instances.shape[0]):
        m = proposals[b]
        if max_proposals is not None:
            m = m[torch.argsort(scores[b].detach().double().cpu(), descending=True, stable=True)[:max_proposals]]
        iou = _proposal_ious(m, instances[b], None if valid is None else valid[b], background)
        if iou.shape[1]:
            best.append(iou.max(0).values if iou.shape[0] else torch.zeros(iou.shape[1], dtype=torch.float64))
    best = torch.cat(best)
    if best.numel() == 0:
        raise ValueError("`instances`: expected at least one instance (id != background) in a valid pixel, got none")
    return float((best[:, None] >= thr[None, :]).double().mean())
