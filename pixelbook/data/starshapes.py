r"""StarShapes: synthetic single-object segmentation with distance-map targets (Chapter 2).

One grey star-shaped object per image, surrounded by distractor disks of *similar* intensity,
under a linear illumination ramp, blurred (weak edges) and noisy, so that neither thresholding nor
a purely local detector can separate object from clutter. The recipe follows the Chapter 2 note
(§6.1, calibrated there at 64×64) with lengths scaled by ``size / 64``:

* centre :math:`\sim U(0.375, 0.625)\,\text{size}` per axis, base radius
  :math:`r_0 \sim U(10, 16)\cdot\text{size}/64`;
  boundary :math:`r(\theta) = r_0\big(1 + \sum_{k=2}^{5} a_k\cos(k\theta + p_k)\big)` with
  :math:`a_k \sim U(0, 0.25/\sqrt{k-1})`;
* object intensity 1, background 0, plus a ramp with slopes :math:`U(-\tfrac12, \tfrac12)` in x and y;
* distractor disks, radius :math:`U(3, 7)\cdot\text{size}/64`, intensity :math:`U(0.6, 1)`;
* Gaussian blur :math:`\sigma_b`, then Gaussian noise :math:`\sigma_n`.

``variant="hard"`` makes it harder in three ways the note does not: one side of the object fades
(its intensity falls linearly to :math:`U(0.35, 0.55)` across the object, a genuinely weak edge),
one more distractor, distractors may touch the object, and a smooth background texture is added.

Targets are the mask and its signed distance map (:func:`pixelbook.ops.sdf_from_mask`,
positive inside).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_choice

__all__ = ["make_star_shapes", "STAR_VARIANTS"]

#: The variants :func:`make_star_shapes` draws.
STAR_VARIANTS = ("basic", "hard")


def _star_radius(rng, theta, r0):
    r = np.ones_like(theta)
    for k in range(2, 6):
        r = r + rng.uniform(0, 0.25 / math.sqrt(k - 1)) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    return r0 * r


def make_star_shapes(n: int, size: int = 32, variant: str = "basic", seed: int = 0, noise: float | None = None,
                     blur: float | None = None) -> dict:
    r"""Draw ``n`` StarShapes images (see the module docstring for the recipe).

    Args:
        n: number of images.
        size: side in pixels (>= 16).
        variant: ``"basic"`` or ``"hard"``.
        seed: the data are a deterministic function of ``seed`` (and the other arguments).
        noise: :math:`\sigma_n`; default 0.5 (basic) and 0.6 (hard).
        blur: :math:`\sigma_b` in pixels; default ``size / 64`` (the note's 1 px at 64×64).

    Returns:
        dict with ``image`` ``(n, 1, size, size)`` float32, ``masks`` ``(n, size, size)`` bool and
        ``phi`` ``(n, 1, size, size)`` float32, the signed distance (pixels, positive inside).

    Example:
        >>> d = make_star_shapes(3, size=32, seed=1)
        >>> tuple(d["image"].shape), d["masks"].dtype, bool(((d["phi"][:, 0] > 0) == d["masks"]).all())
        ((3, 1, 32, 32), torch.bool, True)
    """
    from scipy.ndimage import gaussian_filter

    from ..ops.sdf import sdf_from_mask

    check_choice(variant, "variant", STAR_VARIANTS)
    for name, value, low in (("n", n, 1), ("size", size, 16)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}`: expected an int >= {low}, got {value!r}")
    hard = variant == "hard"
    noise = (0.6 if hard else 0.5) if noise is None else float(noise)
    blur = size / 64 if blur is None else float(blur)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"`noise`: expected a finite number >= 0, got {noise}")
    if not (math.isfinite(blur) and blur >= 0):
        raise ValueError(f"`blur`: expected a finite number >= 0, got {blur}")
    f = size / 64
    rng = np.random.default_rng([seed, size, STAR_VARIANTS.index(variant)])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images = np.zeros((n, size, size), np.float32)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        cy, cx = rng.uniform(0.375, 0.625, 2) * size
        r0 = rng.uniform(10, 16) * f
        rho, theta = np.hypot(yy - cy, xx - cx), np.arctan2(yy - cy, xx - cx)
        obj = rho <= _star_radius(rng, theta, r0)
        img = obj.astype(np.float64)
        if hard:  # one side fades: a weak edge
            ang = rng.uniform(0, 2 * math.pi)
            u = ((xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)) / (1.6 * r0)
            low = rng.uniform(0.35, 0.55)
            img = np.where(obj, 1 - (1 - low) * np.clip(u + 0.5, 0, 1), 0.0)
        gap = -0.5 if hard else 1.0
        placed, tries = 0, 0
        while placed < (3 if hard else 2) and tries < 500:
            tries += 1
            rad = rng.uniform(3, 7) * f
            py, px = rng.uniform(rad, size - 1 - rad, 2)
            disk = np.hypot(yy - py, xx - px) <= rad
            if (np.hypot(yy - py, xx - px)[obj] <= rad + gap).any():
                continue
            img = np.where(disk, rng.uniform(0.6, 1.0), img)
            placed += 1
        gx, gy = rng.uniform(-0.5, 0.5, 2)
        img = img + gx * (xx / size - 0.5) + gy * (yy / size - 0.5)
        if hard:
            tex = gaussian_filter(rng.standard_normal((size, size)), 3 * f * 2)
            img = img + 0.15 * tex / max(tex.std(), 1e-12)
        if blur > 0:
            img = gaussian_filter(img, blur)
        images[i] = img + noise * rng.standard_normal((size, size))
        masks[i] = obj
    masks_t = torch.from_numpy(masks)
    return {"image": torch.from_numpy(images)[:, None], "masks": masks_t, "phi": sdf_from_mask(masks_t)}
