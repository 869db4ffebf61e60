r"""Shape diagnostics of label maps: star-shape violations, boundary length, connected components (Ch. 3)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_choice, check_shape
from ..ops.regions import _check_center

__all__ = ["star_violations", "boundary_length", "count_components"]


def star_violations(mask: torch.Tensor, center: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    r"""Hard star-shape violations: pixels of ``mask`` whose straight segment to ``center`` leaves it.

    Each segment is sampled every half pixel and rounded to the nearest pixel (a rasterised ray, as in
    Veksler's discrete constraint); a pixel counts once however many of its samples fall outside.
    Only foreground pixels are traced; memory :math:`\propto` ``chunk`` × their number.

    Args:
        mask: ``(N, H, W)`` bool (or 0/1) foreground.
        center: ``(N, 2)`` or ``(2,)`` star centre (row, col), inside the image.

    Returns:
        ``(N,)`` int64 counts (0 for a star-shaped mask).

    Example:
        >>> ring = torch.zeros(1, 9, 9, dtype=torch.bool); ring[0, 1:8, 1:8] = True; ring[0, 3:6, 3:6] = False
        >>> int(star_violations(ring, torch.tensor([4., 4.]))[0]) > 0
        True
    """
    check_shape(mask, "mask", "N H W")
    N, H, W = mask.shape
    c = _check_center(center, N, H, W).to(torch.float32).to(mask.device)
    m = mask.bool()
    n_idx, r_idx, c_idx = m.nonzero(as_tuple=True)
    out = torch.zeros(N, dtype=torch.int64, device=m.device)
    if n_idx.numel() == 0:
        return out
    r0, c0 = r_idx.float(), c_idx.float()
    dr, dc = c[n_idx, 0] - r0, c[n_idx, 1] - c0
    steps = int(math.ceil(2 * float(torch.hypot(dr, dc).max()))) + 1
    ts = torch.linspace(0, 1, steps, device=m.device)
    flat, base = m.reshape(-1), n_idx * (H * W)
    bad = torch.zeros_like(n_idx, dtype=torch.bool)
    for start in range(0, steps, chunk):
        t = ts[start:start + chunk, None]  # (t, 1)
        rr = (r0 + t * dr).round().clamp(0, H - 1).long()
        cc = (c0 + t * dc).round().clamp(0, W - 1).long()
        bad |= ~flat[base + rr * W + cc].all(0)
    return out.index_add_(0, n_idx, bad.long())


def boundary_length(labels: torch.Tensor) -> torch.Tensor:
    """Number of 4-neighbour pairs with different labels in each ``(N, H, W)`` map (a discrete perimeter).

    Example:
        >>> boundary_length(torch.tensor([[[0, 0, 1], [0, 0, 1]]]))
        tensor([2])
    """
    check_shape(labels, "labels", "N H W")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"`labels`: expected an integer or bool tensor of class ids, got {labels.dtype}")
    return ((labels[:, 1:] != labels[:, :-1]).sum((1, 2)) + (labels[:, :, 1:] != labels[:, :, :-1]).sum((1, 2)))


def count_components(labels: torch.Tensor, connectivity: int = 1) -> torch.Tensor:
    """Connected components summed over the labels present, per ``(N, H, W)`` map (scipy.ndimage.label).

    ``connectivity`` 1 is 4-connected, 2 is 8-connected. A clean scene of ``k`` separate objects on a
    background has ``k + 1``; speckle adds one per isolated blob.

    Example:
        >>> count_components(torch.tensor([[[0, 1, 0], [0, 0, 0], [1, 0, 0]]]))
        tensor([3])
    """
    from scipy import ndimage

    check_shape(labels, "labels", "N H W")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"`labels`: expected an integer or bool tensor of class ids, got {labels.dtype}")
    check_choice(connectivity, "connectivity", (1, 2))
    structure = ndimage.generate_binary_structure(2, connectivity)
    lab = labels.detach().cpu().numpy()
    out = []
    for img in lab:
        out.append(sum(ndimage.label(img == v, structure=structure)[1] for v in np.unique(img)))
    return torch.tensor(out, dtype=torch.int64, device=labels.device)
