r"""Noisy 2-D shape scenes for the STD chapter: star shapes, ellipses, shapes with holes, annuli,
C-shapes, distractor speckle and multi-class Voronoi mosaics.

Every image is one grey channel: class :math:`i` of :math:`I` has intensity :math:`i/(I-1)` (so the
foreground of a binary scene is 1 and the background 0), plus Gaussian noise. Two kinds of clutter
test the priors of [STD]:

* *distractors*: small disks with the foreground's intensity but the background's label, away from
  the object (a boundary-length prior removes the smallest; a star prior removes any that is off
  the object's rays);
* *notches*: thin arcs with the background's intensity but the foreground's label, inside the object
  (a star prior fills them; a length prior fills only short ones).

The shapes are rasterised at pixel centres from exact polar or implicit descriptions, so a "star"
is star-shaped with respect to its ``center`` and an ellipse is convex; "holes", "annulus" and
"c_shape" are the negative controls (not star-shaped about any centre inside the hole).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_choice

__all__ = ["SHAPE_KINDS", "make_shape_scenes", "class_means"]

#: The scene kinds :func:`make_shape_scenes` draws.
SHAPE_KINDS = ("star", "ellipse", "holes", "annulus", "c_shape", "mixed", "voronoi")


def class_means(num_classes: int) -> torch.Tensor:
    """The clean intensity of each class, :math:`i/(I-1)`: ``(num_classes,)`` float32."""
    return torch.linspace(0.0, 1.0, num_classes)


def _polar(size: int, cy: float, cx: float):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    return np.hypot(dy, dx), np.arctan2(dy, dx)


def _star(rng, size, cy, cx, r0):
    m = int(rng.integers(3, 8))
    amp = rng.uniform(0.2, 0.45)
    phase = rng.uniform(0, 2 * np.pi)
    rho, th = _polar(size, cy, cx)
    return rho <= r0 * (1 + amp * np.cos(m * th + phase)) / (1 + amp)


def _ellipse(rng, size, cy, cx, r0, ratio=None):
    a = r0
    b = r0 * (ratio if ratio is not None else rng.uniform(0.45, 0.9))
    ang = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(ang) + dy * np.sin(ang)
    v = -dx * np.sin(ang) + dy * np.cos(ang)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def _holes(rng, size, cy, cx, r0):
    obj = _ellipse(rng, size, cy, cx, r0, ratio=rng.uniform(0.7, 1.0))
    for _ in range(int(rng.integers(1, 3))):
        ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.35, 0.5) * r0
        hole = _ellipse(rng, size, cy + rad * np.sin(ang), cx + rad * np.cos(ang), rng.uniform(0.2, 0.3) * r0)
        obj &= ~hole
    return obj


def _annulus(rng, size, cy, cx, r0):
    rho, _ = _polar(size, cy, cx)
    return (rho <= r0) & (rho >= rng.uniform(0.45, 0.6) * r0)


def _c_shape(rng, size, cy, cx, r0):
    rho, th = _polar(size, cy, cx)
    gap_dir, gap = rng.uniform(-np.pi, np.pi), rng.uniform(0.35, 0.6) * np.pi
    dth = np.angle(np.exp(1j * (th - gap_dir)))
    return (rho <= r0) & (rho >= rng.uniform(0.45, 0.6) * r0) & (np.abs(dth) > gap / 2)


_DRAW = {"star": _star, "ellipse": _ellipse, "holes": _holes, "annulus": _annulus, "c_shape": _c_shape}


def _voronoi(rng, size, num_classes):
    k = int(rng.integers(5, 10))
    seeds = rng.uniform(0, size, (k, 2))
    classes = rng.integers(0, num_classes, k)
    classes[: num_classes] = rng.permutation(num_classes)[: min(k, num_classes)]  # every class present
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    d = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    return classes[d.argmin(0)]


def make_shape_scenes(n: int, size: int = 64, kind: str = "star", noise: float = 0.5, distractors: int = 0,
                      notches: int = 0, num_classes: int = 2, seed: int = 0) -> dict:
    r"""Draw ``n`` noisy scenes of one ``kind``.

    Args:
        n: number of scenes.
        size: side in pixels.
        kind: one of :data:`SHAPE_KINDS`. Binary kinds put one object (label 1) on background
            (label 0); ``"mixed"`` draws star, ellipse or holes at random; ``"voronoi"`` is a
            mosaic of ``num_classes`` classes (every class present).
        noise: standard deviation of the additive Gaussian noise (intensities are in [0, 1]).
        distractors: number of distractor disks (radius 1.5-3 px) per binary scene.
        notches: number of dark arcs inside the object per binary scene.
        num_classes: classes of a ``"voronoi"`` scene (binary kinds: 2).
        seed: the scenes are a deterministic function of ``seed``.

    Returns:
        dict with ``image`` ``(n, 1, size, size)`` float32, ``clean`` (the same without noise),
        ``labels`` ``(n, size, size)`` int64, ``center`` ``(n, 2)`` float32 (the object's generating
        centre, row and col; the image centre for Voronoi scenes) and ``kind`` (a list of str).

    Example:
        >>> d = make_shape_scenes(2, size=32, kind="star", distractors=2)
        >>> d["image"].shape, d["labels"].shape, d["center"].shape
        (torch.Size([2, 1, 32, 32]), torch.Size([2, 32, 32]), torch.Size([2, 2]))
    """
    check_choice(kind, "kind", SHAPE_KINDS)
    for name, value, low in (("n", n, 1), ("size", size, 8), ("distractors", distractors, 0), ("notches", notches, 0),
                             ("num_classes", num_classes, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}`: expected an int >= {low}, got {value!r}")
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"`noise`: expected a finite number >= 0, got {noise!r}")
    if kind != "voronoi" and num_classes != 2:
        raise ValueError(f"`num_classes`: kind {kind!r} is binary, expected 2, got {num_classes}")
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, size, size), np.int64)
    clean = np.zeros((n, size, size), np.float32)
    centers = np.zeros((n, 2), np.float32)
    kinds = []
    for i in range(n):
        if kind == "voronoi":
            lab = _voronoi(rng, size, num_classes)
            labels[i], clean[i] = lab, lab / (num_classes - 1)
            centers[i] = (size - 1) / 2
            kinds.append(kind)
            continue
        k = kind if kind != "mixed" else ("star", "ellipse", "holes")[int(rng.integers(0, 3))]
        kinds.append(k)
        r0 = rng.uniform(0.22, 0.32) * size
        cy, cx = rng.uniform(r0 + 2, size - r0 - 3, 2)
        obj = _DRAW[k](rng, size, cy, cx, r0)
        img = obj.astype(np.float32)
        if notches:
            rho, th = _polar(size, cy, cx)
            for _ in range(notches):
                a0, span = rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 0.6) * np.pi
                dth = np.abs(np.angle(np.exp(1j * (th - a0))))
                arc = (np.abs(rho - rng.uniform(0.45, 0.65) * r0) <= 0.8) & (dth <= span / 2) & obj
                img[arc] = 0.0
        placed, tries = 0, 0
        while placed < distractors and tries < 200:
            tries += 1
            rad = rng.uniform(1.5, 3.0)
            py, px = rng.uniform(rad, size - 1 - rad, 2)
            rho, _ = _polar(size, py, px)
            disk = rho <= rad
            grown = rho <= rad + 3  # keep a gap: a distractor never touches the object
            if (grown & obj).any():
                continue
            img[disk] = 1.0
            placed += 1
        labels[i], clean[i], centers[i] = obj, img, (cy, cx)
    image = clean + noise * rng.standard_normal(clean.shape).astype(np.float32)
    return {"image": torch.from_numpy(image)[:, None], "clean": torch.from_numpy(clean)[:, None],
            "labels": torch.from_numpy(labels), "center": torch.from_numpy(centers), "kind": kinds}
