r"""Video metrics: DAVIS region similarity :math:`\mathcal J`, boundary measure :math:`\mathcal F`, flow end-point error.

The definitions are those of the DAVIS 2017 semi-supervised benchmark [DAVIS17] (the official
``davis2017-evaluation`` code, which the thesis used [KONG, §7.3.2]):

* :math:`\mathcal J` = IoU of the predicted and ground-truth mask of one object in one frame; a frame
  where both are empty scores 1 (:func:`region_similarity_per_image`, mean: :func:`region_similarity`).
* :math:`\mathcal F` = F-measure of boundary precision and recall: boundaries are the one-pixel maps of
  ``seg2bmap``, and a boundary pixel matches if the other boundary lies within a disk of radius
  :math:`\lceil 0.008 \cdot \text{diagonal}\rceil` pixels (dilation matching, not a one-to-one
  assignment); both boundaries empty score 1, exactly one empty scores 0
  (:func:`boundary_measure_per_image`, mean: :func:`boundary_measure`).
* Per object, over the evaluated frames: *mean*, *recall* = the fraction of **frames** scoring
  above 0.5 (the thesis' "fraction of sequences" is a slip), and *decay* = mean of the first quarter
  of the frames minus mean of the last quarter; then averaged over objects
  (:func:`video_segmentation_scores`). As the official code, the first frame (given) and the last
  frame are not evaluated.

[DAVIS17] J. Pont-Tuset et al., "The 2017 DAVIS Challenge on Video Object Segmentation",
arXiv:1704.00675, and F. Perazzi et al., "A Benchmark Dataset and Evaluation Methodology for Video
Object Segmentation", CVPR 2016 (the measures).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_dtype, check_finite, check_shape

__all__ = ["region_similarity", "region_similarity_per_image", "boundary_measure", "boundary_measure_per_image",
           "seg2bmap", "db_statistics", "video_segmentation_scores",
           "end_point_error"]

#: DAVIS boundary tolerance as a fraction of the image diagonal (``bound_th`` of the official code).
DAVIS_BOUND_TH = 0.008


def _masks(x, name: str, dims: dict | None = None) -> tuple[torch.Tensor, dict]:
    """``(N, H, W)`` bool, or integer/float holding only 0 and 1 -> bool."""
    dims = check_shape(x, name, "N H W", dims)
    if x.dtype == torch.bool:
        return x, dims
    if x.is_complex():
        raise TypeError(f"`{name}`: expected a bool (or 0/1) mask, got {x.dtype}")
    check_finite(x, name)
    bad = (x != 0) & (x != 1)
    if bool(bad.any()):
        raise ValueError(f"`{name}`: expected a bool mask or values in {{0, 1}}, got {int(bad.sum())} other values")
    return x != 0, dims


@torch.no_grad()
def region_similarity_per_image(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Per-image :math:`\mathcal J = |P\cap G| / |P \cup G|` of one object (1 when both are empty).

    Args:
        pred: ``(N, H, W)`` bool (or 0/1) predicted masks (the frames of a video, or any images).
        labels: ``(N, H, W)`` bool (or 0/1) ground-truth masks.

    Returns:
        ``(N,)`` float64 tensor.

    Example:
        >>> g = torch.zeros(2, 4, 4, dtype=torch.bool); g[:, :2] = True
        >>> p = torch.zeros(2, 4, 4, dtype=torch.bool); p[0, :1] = True
        >>> region_similarity_per_image(p, g).tolist()
        [0.5, 0.0]
    """
    p, dims = _masks(pred, "pred")
    g, _ = _masks(labels, "labels", dims)
    inter = (p & g).flatten(1).sum(1).double()
    union = (p | g).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def seg2bmap(mask: torch.Tensor) -> torch.Tensor:
    """One-pixel boundary maps of a binary ``mask``, as DAVIS' ``_seg2bmap``: ``(T, H, W)`` bool -> bool.

    A pixel is on the boundary if it differs from its right, lower or lower-right neighbour; the last
    row compares only to the right, the last column only downwards, the corner never.
    """
    s = mask
    e = torch.zeros_like(s)
    e[:, :, :-1] = s[:, :, 1:]
    so = torch.zeros_like(s)
    so[:, :-1, :] = s[:, 1:, :]
    se = torch.zeros_like(s)
    se[:, :-1, :-1] = s[:, 1:, 1:]
    b = (s ^ e) | (s ^ so) | (s ^ se)
    b[:, -1, :] = s[:, -1, :] ^ e[:, -1, :]
    b[:, :, -1] = s[:, :, -1] ^ so[:, :, -1]
    b[:, -1, -1] = False
    return b


def _dilate(b: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of ``(T, H, W)`` by the disk ``dy² + dx² <= radius²`` (skimage ``disk``)."""
    if radius <= 0:
        return b
    t = torch.arange(-radius, radius + 1, device=b.device)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius ** 2).to(torch.float32)[None, None]
    return F.conv2d(b[:, None].to(torch.float32), disk, padding=radius)[:, 0] > 0.5


@torch.no_grad()
def boundary_measure_per_image(pred: torch.Tensor, labels: torch.Tensor, bound_th: float = DAVIS_BOUND_TH) -> torch.Tensor:
    r"""Per-image DAVIS boundary F-measure :math:`\mathcal F` of one object.

    Args:
        pred: ``(N, H, W)`` bool (or 0/1) predicted masks (the frames of a video, or any images).
        labels: ``(N, H, W)`` bool (or 0/1) ground-truth masks.
        bound_th: tolerance; ``< 1``: a fraction of the image diagonal, rounded up to pixels (DAVIS:
            0.008, i.e. 1 px at 64×64 and 8 px at 480×854); ``>= 1``: pixels.

    Returns:
        ``(N,)`` float64 tensor.

    Example:
        >>> g = torch.zeros(1, 16, 16, dtype=torch.bool); g[:, 4:12, 4:12] = True
        >>> shifted = torch.roll(g, 1, dims=2)   # one pixel to the right: within the 1 px tolerance
        >>> boundary_measure_per_image(shifted, g).tolist(), boundary_measure_per_image(torch.roll(g, 3, dims=2), g).tolist()
        ([1.0], [0.5])
    """
    p, dims = _masks(pred, "pred")
    g, _ = _masks(labels, "labels", dims)
    if isinstance(bound_th, bool) or not isinstance(bound_th, (int, float)) or not bound_th > 0 or math.isinf(bound_th):
        raise ValueError(f"`bound_th`: expected a positive number, got {bound_th!r}")
    H, W = p.shape[-2:]
    radius = int(bound_th) if bound_th >= 1 else int(math.ceil(bound_th * math.hypot(H, W)))
    bp, bg = seg2bmap(p), seg2bmap(g)
    n_p = bp.flatten(1).sum(1).double()
    n_g = bg.flatten(1).sum(1).double()
    match_p = (bp & _dilate(bg, radius)).flatten(1).sum(1).double()
    match_g = (bg & _dilate(bp, radius)).flatten(1).sum(1).double()
    precision = torch.where(n_p > 0, match_p / n_p.clamp_min(1), (n_g == 0).double())
    recall = torch.where(n_g > 0, match_g / n_g.clamp_min(1), torch.ones_like(n_g))
    # DAVIS: no predicted boundary but a true one -> P = 1, R = 0; the reverse -> P = 0, R = 1; none -> 1, 1
    recall = torch.where((n_p == 0) & (n_g > 0), torch.zeros_like(recall), recall)
    precision = torch.where((n_p == 0) & (n_g > 0), torch.ones_like(precision), precision)
    denom = precision + recall
    return torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), torch.zeros_like(denom))


@torch.no_grad()
def region_similarity(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of :func:`region_similarity_per_image` over the images (frames): a python float.

    Example:
        >>> g = torch.zeros(2, 4, 4, dtype=torch.bool); g[:, :2] = True
        >>> region_similarity(g, g)
        1.0
    """
    return float(region_similarity_per_image(pred, labels).mean())


@torch.no_grad()
def boundary_measure(pred: torch.Tensor, labels: torch.Tensor, bound_th: float = DAVIS_BOUND_TH) -> float:
    """Mean of :func:`boundary_measure_per_image` over the images (frames): a python float."""
    return float(boundary_measure_per_image(pred, labels, bound_th).mean())


def db_statistics(values: torch.Tensor) -> dict:
    """DAVIS ``db_statistics`` of one object's per-frame scores: ``mean``, ``recall`` (> 0.5), ``decay``.

    Decay: the frames are split into 4 bins at ``round(linspace(1, n, 5)) - 1`` (bins share their
    edge frame, as the official code) and decay = mean(first bin) - mean(last bin).

    Example:
        >>> db_statistics(torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2], dtype=torch.float64))
        {'mean': 0.6, 'recall': 0.6, 'decay': 0.6}
    """
    check_shape(values, "values", "T")
    check_dtype(values, "values", "float")
    n = values.numel()
    if n == 0:
        raise ValueError("`values`: expected at least one frame, got none")
    v = values.double()
    ids = [int(round(1 + i * (n - 1) / 4 + 1e-10)) - 1 for i in range(5)]
    bins = [v[ids[i]:ids[i + 1] + 1] for i in range(4)]
    decay = float(bins[0].mean() - bins[3].mean())
    return {"mean": round(float(v.mean()), 12), "recall": round(float((v > 0.5).double().mean()), 12),
            "decay": round(decay, 12)}


@torch.no_grad()
def video_segmentation_scores(pred: torch.Tensor, labels: torch.Tensor, object_ids=None, *,
                              bound_th: float = DAVIS_BOUND_TH, skip_first_last: bool = True) -> dict:
    r"""DAVIS :math:`\mathcal J` and :math:`\mathcal F` (mean, recall, decay) of a propagated segmentation.

    Args:
        pred: ``(T, H, W)`` int64 predicted object ids (0 = background).
        labels: ``(T, H, W)`` int64 ground-truth object ids.
        object_ids: the objects to score; default the ids > 0 present in ``labels[0]`` (the given
            first-frame objects).
        bound_th: boundary tolerance (see :func:`boundary_measure`).
        skip_first_last: do not score the first (given) and the last frame, as the official code
            (needs ``T >= 3``); ``False`` scores frames ``1 … T-1``.

    Returns:
        dict of floats: ``J_mean``, ``J_recall``, ``J_decay``, ``F_mean``, ``F_recall``, ``F_decay``
        (each averaged over objects) and ``JF_mean`` = (J_mean + F_mean) / 2.

    Raises:
        ValueError / TypeError naming the argument (shapes, dtypes, too few frames, no object).
    """
    dims = check_shape(pred, "pred", "T H W")
    check_shape(labels, "labels", "T H W", dims)
    check_dtype(pred, "pred", "int")
    check_dtype(labels, "labels", "int")
    T = pred.shape[0]
    frames = slice(1, T - 1) if skip_first_last else slice(1, T)
    if (T - 2 if skip_first_last else T - 1) < 1:
        raise ValueError(f"`pred`: expected at least {3 if skip_first_last else 2} frames, got {T}")
    if object_ids is None:
        object_ids = [int(i) for i in labels[0].unique().tolist() if i > 0]
    else:
        object_ids = [int(i) for i in object_ids]
    if not object_ids or any(i <= 0 for i in object_ids):
        raise ValueError(f"`object_ids`: expected at least one object id > 0, got {object_ids}")
    stats = {"J": [], "F": []}
    for i in object_ids:
        p, g = pred[frames] == i, labels[frames] == i
        stats["J"].append(db_statistics(region_similarity_per_image(p, g)))
        stats["F"].append(db_statistics(boundary_measure_per_image(p, g, bound_th)))
    out = {}
    for m in ("J", "F"):
        for k in ("mean", "recall", "decay"):
            out[f"{m}_{k}"] = sum(s[k] for s in stats[m]) / len(object_ids)
    out["JF_mean"] = (out["J_mean"] + out["F_mean"]) / 2
    return out


@torch.no_grad()
def end_point_error(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    r"""Mean end-point error :math:`\frac{1}{|V|}\sum_{p\in V}\|u(p) - u^*(p)\|_2` of a flow, in pixels.

    Args:
        pred, target: ``(N, 2, H, W)`` flows.
        valid: optional ``(N, H, W)`` bool, the pixels that count (at least one).

    Example:
        >>> end_point_error(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 3.0))
        4.242640687119285
    """
    dims = check_shape(pred, "pred", "N 2 H W")
    check_shape(target, "target", "N 2 H W", dims)
    for x, n in ((pred, "pred"), (target, "target")):
        check_dtype(x, n, "float")
        check_finite(x, n)
    err = (pred.double() - target.double()).norm(dim=1)
    if valid is None:
        return float(err.mean())
    check_shape(valid, "valid", "N H W", dims)
    if valid.dtype != torch.bool:
        raise TypeError(f"`valid`: expected a bool mask, got {valid.dtype}")
    if not bool(valid.any()):
        raise ValueError("`valid`: expected at least one valid pixel, got none")
    return float(err[valid].mean())
