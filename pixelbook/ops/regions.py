r"""Regions of a label map: canonical renumbering, per-region statistics, centre of mass.

:func:`canonical_regions` numbers the regions of each image in order of first appearance, so that
anything computed from its output depends on the *partition* only, not on the label values
(Chapter 9's class-agnostic loss is built on it); :func:`region_stats` gives their sizes, means
and variances; :func:`centroid` the centre of mass of a mask (Chapter 3's star centre).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import IGNORE_INDEX, check_dtype, check_finite, check_range, check_shape

__all__ = ["canonical_regions", "RegionStats", "region_stats", "centroid"]


def _check_labels_tensor(labels, name, dims):
    check_shape(labels, name, "N H W", dims)
    check_dtype(labels, name, "int")


def canonical_regions(labels: torch.Tensor, ignore_index: int | None = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Renumber the regions of each image ``0, 1, ...`` in order of first appearance (raster order).

    The result depends only on the partition, not on the label values: ``labels`` and any
    relabelling of it (per image) give identical outputs. Vectorised; no loop over images.

    Args:
        labels: ``(N, H, W)`` integer region labels, any values (negative ones included).
        ignore_index: label of pixels that belong to no region (e.g. 255), or ``None``.

    Returns:
        ``(ids, num_regions)``: ``ids`` is ``(N, H, W)`` int64 in ``[0, num_regions[n])``, with
        ``-1`` at ignored pixels; ``num_regions`` is ``(N,)`` int64.

    Example:
        >>> ids, n = canonical_regions(torch.tensor([[[7, 7, 3], [3, 9, 7]]]))
        >>> ids.tolist(), n.tolist()
        ([[[0, 0, 1], [1, 2, 0]]], [3])
    """
    _check_labels_tensor(labels, "labels", {})
    B, H, W = labels.shape
    P = H * W
    flat = labels.reshape(B, P).long()
    values, dense = torch.unique(flat, return_inverse=True)  # dense ids shared by the whole batch
    K = values.numel()
    valid = torch.ones_like(flat, dtype=torch.bool) if ignore_index is None else flat != ignore_index
    dense = torch.where(valid, dense, torch.full_like(dense, K))  # ignored pixels -> extra slot K
    pos = torch.arange(P, device=flat.device).expand(B, P)
    first = torch.full((B, K + 1), P, dtype=torch.long, device=flat.device)
    first = first.scatter_reduce(1, dense, pos, reduce="amin", include_self=True)
    first[:, K] = P + 1  # the ignore slot always sorts last
    order = first.argsort(dim=1, stable=True)  # present values by first appearance, then absent ones
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(K + 1, device=flat.device).expand(B, K + 1))
    ids = rank.gather(1, dense)
    ids = torch.where(valid, ids, torch.full_like(ids, -1))
    num_regions = (first[:, :K] < P).sum(1)
    return ids.reshape(B, H, W), num_regions


class RegionStats(NamedTuple):
    """Per-image region statistics, regions in canonical order (see :func:`canonical_regions`).

    Attributes:
        sizes: ``(N, R)`` pixel counts :math:`|r_i|` (0 for the padding slots of images with fewer
            than ``R`` regions, ``R`` being the largest number of regions in the batch).
        means: ``(N, R, M)`` region means :math:`\\hat{\\mathbf{s}}_i` (0 in padding slots).
        variances: ``(N, R)`` :math:`V_i=\\frac{1}{|r_i|}\\sum_{x\\in r_i}\\|\\mathbf{s}(x)-\\hat{\\mathbf{s}}_i\\|^2`.
        present: ``(N, R)`` bool, which slots hold a region.
        ids: ``(N, H, W)`` canonical region id per pixel (``-1`` where ignored).
    """

    sizes: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor
    present: torch.Tensor
    ids: torch.Tensor


def _onehot(ids, R, dtype):
    """``(B, P)`` ids in ``[-1, R)`` -> ``(B, P, R)`` float indicator; id -1 (ignored) gives a zero row."""
    return (ids[..., None] == torch.arange(R, device=ids.device)).to(dtype)


def _stats_from_ids(probs: torch.Tensor, ids: torch.Tensor, R: int) -> RegionStats:
    """Region statistics for canonical ``ids`` in ``[-1, R)``; one-hot memory ``N·P·R``."""
    B, M = probs.shape[:2]
    s = probs.reshape(B, M, -1)                                           # (B, M, P)
    onehot = _onehot(ids.reshape(B, -1), R, probs.dtype)                  # (B, P, R)
    sizes = onehot.sum(1)                                                 # (B, R)
    present = sizes > 0
    denom = torch.where(present, sizes, torch.ones_like(sizes))
    means = torch.bmm(s, onehot).transpose(1, 2) / denom[..., None]       # (B, R, M)
    centred = s - torch.bmm(means.transpose(1, 2), onehot.transpose(1, 2))  # (B, M, P); 0 at ignored px
    ignored = (ids.reshape(B, 1, -1) < 0)
    sq = torch.where(ignored, torch.zeros_like(centred), centred).pow(2).sum(1, keepdim=True)  # (B, 1, P)
    variances = torch.bmm(sq, onehot)[:, 0] / denom                        # (B, R)
    return RegionStats(sizes, means, variances, present, ids)


def _check_probs(probs, name="probs"):
    d = check_shape(probs, name, "N C H W")
    check_dtype(probs, name, "float")
    check_finite(probs.detach(), name)
    check_range(probs.detach(), name, 0.0, 1.0)
    if probs.shape[1] < 2:
        raise ValueError(f"`{name}`: expected at least 2 channels (C >= 2), got C={probs.shape[1]}")
    return d


def region_stats(probs: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = IGNORE_INDEX) -> RegionStats:
    r"""Sizes, means and variances of the regions of each image [CAS, §3.1].

    Args:
        probs: ``(N, M, H, W)`` descriptors in [0, 1] (the network's softmax output).
        labels: ``(N, H, W)`` integer region labels; only the partition matters.
        ignore_index: label of pixels that belong to no region, or ``None``.

    Returns:
        :class:`RegionStats`, regions in order of first appearance. Extra memory ≈ ``R/M × probs``
        for ``R`` regions (a one-hot indicator), so linear in the number of pixels.

    Example:
        >>> s = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]], [[0.0, 0.5], [1.0, 1.0]]]])
        >>> st = region_stats(s, torch.tensor([[[4, 4], [2, 2]]]))
        >>> st.sizes.tolist(), st.means.tolist(), st.variances.tolist()
        ([[2.0, 2.0]], [[[0.75, 0.25], [0.0, 1.0]]], [[0.125, 0.0]])
    """
    d = _check_probs(probs)
    _check_labels_tensor(labels, "labels", d)
    ids, n = canonical_regions(labels, ignore_index)
    return _stats_from_ids(probs, ids, max(int(n.max()), 1))


def centroid(mask: torch.Tensor) -> torch.Tensor:
    r"""Centre of mass (row, col) of each ``(N, H, W)`` non-negative mask: the paper's star centre.

    Raises:
        ValueError: for an empty mask (no centre exists).

    Example:
        >>> m = torch.zeros(1, 5, 5); m[0, 1:4, 2:5] = 1
        >>> centroid(m)
        tensor([[2., 3.]])
    """
    check_shape(mask, "mask", "N H W")
    m = mask.float()
    check_finite(m, "mask")
    check_range(m, "mask", low=0.0)
    total = m.sum((1, 2))
    if bool((total <= 0).any()):
        raise ValueError(f"`mask`: image {int((total <= 0).nonzero()[0])} is empty; a star centre needs a non-empty mask")
    rows = torch.arange(m.shape[1], dtype=m.dtype, device=m.device)
    cols = torch.arange(m.shape[2], dtype=m.dtype, device=m.device)
    return torch.stack([(m.sum(2) * rows).sum(1) / total, (m.sum(1) * cols).sum(1) / total], 1)


def _check_center(center: torch.Tensor, n: int, h: int, w: int, name: str = "center") -> torch.Tensor:
    if not torch.is_tensor(center):
        raise TypeError(f"`{name}`: expected a torch.Tensor of shape (N, 2), got {type(center).__name__}")
    if center.ndim == 1:
        center = center[None].expand(n, 2)
    check_shape(center, name, "N 2", {"N": (n, "logits")})
    check_finite(center.float(), name)
    c = center.detach().float()
    bad = (c[:, 0] < 0) | (c[:, 0] > h - 1) | (c[:, 1] < 0) | (c[:, 1] > w - 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"`{name}`: expected (row, col) inside the image, 0 <= row <= {h - 1} and "
                         f"0 <= col <= {w - 1}, got {tuple(round(float(x), 3) for x in c[i])} for image {i}")
    return center
