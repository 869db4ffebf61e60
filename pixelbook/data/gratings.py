r"""Grating scenes for Chapter 5: an easy background and a hard foreground.

Each scene is a flat background colour with mild pixel noise (class 0: a 3×3 window decides it —
it has no texture) and 2–5 random blobs (ellipses, possibly overlapping) filled with a sinusoidal
grating at one of two orientations ``angles`` (classes 1 and 2) that differ by ``angle_gap``
degrees (default 15°). Telling the two gratings apart means integrating orientation over a few
periods, which needs depth and receptive field; this is where a dynamically computed network
should spend its computation (the ponder-map question of [KONG, §4.5.3]).

Colours are random per blob and shared by both classes; the period and phase vary a little per
blob. Every scene comes from its own ``np.random.SeedSequence([seed, split, index])``; this module
imports no method module.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_choice, check_float, check_int

__all__ = ["GRATING_CLASSES", "make_grating_scenes"]

#: Label names: ``labels == i`` is ``GRATING_CLASSES[i]``.
GRATING_CLASSES = ("background", "grating_a", "grating_b")
_SPLITS = ("train", "val", "test")


def _hsv(h, s, v):
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def make_grating_scenes(n: int, size: int = 48, seed: int = 0, split: str = "train", *, angle: float = 30.0,
                        angle_gap: float = 15.0, period: float = 5.0, num_blobs=(2, 5),
                        radius=(0.12, 0.3), noise: float = 0.04, contrast=(0.5, 1.0)) -> dict:
    r"""``n`` scenes of oriented-grating blobs on a flat background (see the module docstring).

    Args:
        n: number of scenes.
        size: image side (>= 16).
        seed: base seed; scenes never repeat across splits.
        split: ``"train"``, ``"val"`` or ``"test"``.
        angle: orientation of class 1 in degrees (default 30; ours). Class 2 is ``angle + angle_gap``.
        angle_gap: orientation difference in degrees (default 15, the note's Task B).
        period: mean grating period in pixels (jittered ±15 % per blob; default 5, ours).
        num_blobs: ``(min, max)`` blobs per scene.
        radius: ``(min, max)`` semi-axes of the ellipses as a fraction of ``size``.
        noise: std of the Gaussian pixel noise (default 0.04).
        contrast: ``(min, max)`` grating amplitude (light − dark tone).

    Returns:
        dict with ``image`` ``(n, 3, size, size)`` float32 in [0, 1], ``labels`` ``(n, size, size)``
        int64 indexing :data:`GRATING_CLASSES`, ``valid`` ``(n, size, size)`` bool (all True) and
        ``boundaries`` ``(n, size, size)`` bool (label changes, 4-neighbourhood, on both sides).

    Example:
        >>> d = make_grating_scenes(2, size=32)
        >>> tuple(d["image"].shape), d["labels"].dtype
        ((2, 3, 32, 32), torch.int64)
    """
    n, size, seed = check_int(n, "n", 1), check_int(size, "size", 16), check_int(seed, "seed", 0)
    check_choice(split, "split", _SPLITS)
    angle, angle_gap = check_float(angle, "angle"), check_float(angle_gap, "angle_gap", 0, 90, low_open=True)
    period = check_float(period, "period", 2, low_open=False)
    noise = check_float(noise, "noise", 0)
    lo, hi = (check_int(v, "num_blobs", 0) for v in num_blobs)
    if hi < lo:
        raise ValueError(f"`num_blobs`: expected min <= max, got {num_blobs!r}")
    r_lo, r_hi = (check_float(v, "radius", 0, 1, low_open=True) for v in radius)
    c_lo, c_hi = (check_float(v, "contrast", 0, 1) for v in contrast)
    if r_hi < r_lo or c_hi < c_lo:
        raise ValueError("`radius`/`contrast`: expected (min, max) with min <= max")
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    images, labels = [], []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLITS.index(split), i]))
        img = np.broadcast_to(_hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.3, 0.9)), (size, size, 3)).copy()
        lab = np.zeros((size, size), np.int64)
        for _ in range(int(rng.integers(lo, hi + 1))):
            cls = int(rng.integers(1, 3))
            theta = math.radians(angle + (cls - 1) * angle_gap)
            cy, cx = rng.uniform(0, size, 2)
            a, b = rng.uniform(r_lo, r_hi, 2) * size
            rot = rng.uniform(0, math.pi)
            dy, dx = yy - cy, xx - cx
            u = (math.cos(rot) * dx + math.sin(rot) * dy) / a
            v = (-math.sin(rot) * dx + math.cos(rot) * dy) / b
            inside = u * u + v * v <= 1
            p = period * rng.uniform(0.85, 1.15)
            wave = np.sin(2 * math.pi * ((math.cos(theta) * xx + math.sin(theta) * yy) / p + rng.random()))
            mid = _hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.65))
            amp = rng.uniform(c_lo, c_hi) / 2
            tex = np.clip(mid + amp * wave[..., None], 0, 1)
            img = np.where(inside[..., None], tex, img)
            lab = np.where(inside, cls, lab)
        images.append(np.clip(img + noise * rng.standard_normal(img.shape), 0, 1))
        labels.append(lab)
    labels_t = torch.from_numpy(np.stack(labels))
    diff = torch.zeros_like(labels_t, dtype=torch.bool)
    dv, dh = labels_t[:, 1:] != labels_t[:, :-1], labels_t[:, :, 1:] != labels_t[:, :, :-1]
    diff[:, 1:] |= dv
    diff[:, :-1] |= dv
    diff[:, :, 1:] |= dh
    diff[:, :, :-1] |= dh
    return {
        "image": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().contiguous(),
        "labels": labels_t,
        "valid": torch.ones(n, size, size, dtype=torch.bool),
        "boundaries": diff,
    }
