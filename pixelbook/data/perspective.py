r"""Perspective scenes for Chapter 5: classes that need a receptive field matched to the object's size.

A pinhole camera at height :math:`h` looks horizontally over a ground plane; the horizon is image
row :math:`y_h`. Each object is a disk of radius :math:`R` (the same physical size for every object)
standing on the ground at depth :math:`Z`, facing the camera. Projected with focal length
:math:`f` (pixels), its image radius and base row are

.. math:: r = f R / Z, \qquad y_{base} - y_h = f h / Z,

so apparent size is inversely proportional to depth and the ratio :math:`r/(y_{base}-y_h) = R/h` is
the same for every object ([KONG, §3.1]: "the scales of the objects in the image frame are
inversely proportional to the distance to the camera"). The ground at row :math:`y > y_h` has
depth :math:`Z(y) = f h / (y - y_h)`; the sky has depth ``sky_depth``.

Each disk carries a two-tone texture whose period is a fixed fraction of the disk
(``period_fraction`` · r: the same physical texture seen at a different distance) and whose class is
the *kind* of texture: ``stripes`` (class 1) or ``checker`` (class 2), at a random orientation and
phase, in random colours shared by both classes. Telling them apart needs a window of about one
period: a few pixels for a far disk, tens of pixels for a near one. A small pooling field cannot see
a near disk's pattern; a large dilated one steps over a far disk entirely. Atmospheric haze blends
everything toward the sky colour with distance, a local depth cue (and lower contrast far away).

Objects are drawn far to near (nearer ones occlude). The depth of an object pixel is the disk's
:math:`Z`. Depths are sampled with density :math:`p(\log Z)\propto Z^{\gamma}` (``depth_power``
:math:`\gamma`; 0 = log-uniform); far objects are small, so :math:`\gamma > 0` keeps the share of
pixels per depth range from being dominated by the few near disks.

Every scene comes from its own ``np.random.SeedSequence([seed, split, index])``; this module
imports no method module.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_float, check_int

__all__ = ["PERSPECTIVE_CLASSES", "make_perspective_scenes", "perspective_camera"]

#: Label names: ``labels == i`` is ``PERSPECTIVE_CLASSES[i]``.
PERSPECTIVE_CLASSES = ("background", "stripes", "checker")
_SPLITS = ("train", "val", "test")
_HORIZON = 0.125  # ours: horizon row as a fraction of the height
_SUPERSAMPLE = 3  # ours: sub-pixel samples per axis, so fine far textures are anti-aliased
_SKY = np.array([0.72, 0.78, 0.85])  # ours: sky / haze colour
_GROUND = np.array([0.45, 0.42, 0.36])  # ours: ground colour (before haze)


def perspective_camera(size: int, depth_range=(1.0, 6.0), max_radius: float = 0.375) -> dict:
    r"""The camera and object geometry of :func:`make_perspective_scenes` for an image of ``size``.

    The nearest disk (depth ``depth_range[0]``) has image radius ``max_radius·size`` and touches the
    bottom row. Returns a dict with ``f`` (focal length, px), ``h`` (camera height), ``R`` (disk
    radius), ``y_h`` (horizon row), ``z_near``, ``z_far``; lengths in metres with ``z_near`` = 1 m
    by default.

    Example:
        >>> cam = perspective_camera(64)
        >>> round(cam["f"] * cam["R"] / cam["z_near"], 3), round(cam["f"] * cam["R"] / cam["z_far"], 3)
        (24.0, 4.0)
    """
    size = check_int(size, "size", 16)
    z_near, z_far = _check_range(depth_range)
    max_radius = check_float(max_radius, "max_radius", 0, 0.5, low_open=True)
    y_h = _HORIZON * size
    f = float(size)  # ours: focal length = image size (a 53° field of view)
    r_near = max_radius * size
    base_near = (size - 1) - y_h  # the nearest disk's base is the bottom row
    return {"f": f, "R": r_near * z_near / f, "h": base_near * z_near / f, "y_h": y_h,
            "z_near": z_near, "z_far": z_far}


def _check_range(depth_range):
    if not hasattr(depth_range, "__len__") or len(depth_range) != 2:
        raise ValueError(f"`depth_range`: expected (near, far), got {depth_range!r}")
    near = check_float(depth_range[0], "depth_range", 0, low_open=True)
    far = check_float(depth_range[1], "depth_range", 0, low_open=True)
    if not far > near:
        raise ValueError(f"`depth_range`: expected near < far, got {depth_range!r}")
    return near, far


def _hsv(h, s, v):
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _sample_objects(rng, cam, num_objects, depth_power):
    lo, hi = num_objects
    k = int(rng.integers(lo, hi + 1))
    # log Z with density ∝ exp(γ log Z) on [log z_near, log z_far]: inverse-CDF sampling
    a, b = math.log(cam["z_near"]), math.log(cam["z_far"])
    u = rng.random(k)
    if abs(depth_power) < 1e-9:
        logz = a + (b - a) * u
    else:
        g = depth_power
        logz = np.log(np.exp(g * a) + u * (np.exp(g * b) - np.exp(g * a))) / g
    z = np.sort(np.exp(logz))[::-1]  # far to near: painter's order
    objects = []
    for zi in z:
        objects.append({
            "z": float(zi),
            "x": float(rng.uniform(-0.05, 1.05)),  # horizontal centre as a fraction of the width
            "cls": int(rng.integers(1, 3)),
            "angle": float(rng.uniform(0, math.pi)),
            "phase": rng.uniform(0, 1, size=2),
            "light": _hsv(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.75, 0.95)),
            "dark": None,
        })
        objects[-1]["dark"] = objects[-1]["light"] * rng.uniform(0.25, 0.45)
    return objects


def _render_one(rng, size, cam, objects, period_fraction, haze, noise, sky_depth):
    s = _SUPERSAMPLE
    n = size * s
    # sub-pixel sample positions in pixel units (pixel centres at integers)
    coords = (np.arange(n) + 0.5) / s - 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    f, h, R, y_h = cam["f"], cam["h"], cam["R"], cam["y_h"]
    below = yy > y_h + 1e-6
    depth = np.where(below, f * h / np.maximum(yy - y_h, 1e-6), sky_depth)
    depth = np.minimum(depth, sky_depth)
    colour = np.where(below[..., None], _GROUND, _SKY)
    labels = np.zeros((n, n), np.int64)
    radius = np.zeros(len(objects))
    for i, o in enumerate(objects):
        z = o["z"]
        r = f * R / z
        cy = y_h + f * (h - R) / z
        cx = o["x"] * (size - 1)
        radius[i] = r
        # only the sub-samples inside the disk's bounding box are touched
        r0, r1 = max(int((cy - r + 0.5) * s), 0), min(int((cy + r + 0.5) * s) + 2, n)
        c0, c1 = max(int((cx - r + 0.5) * s), 0), min(int((cx + r + 0.5) * s) + 2, n)
        if r0 >= r1 or c0 >= c1:
            continue
        box = (slice(r0, r1), slice(c0, c1))
        dy, dx = yy[box] - cy, xx[box] - cx
        inside = dy * dy + dx * dx <= r * r
        p = period_fraction * r
        ca, sa = math.cos(o["angle"]), math.sin(o["angle"])
        su = np.sin(2 * math.pi * ((ca * dx + sa * dy) / p + o["phase"][0]))
        if o["cls"] == 1:
            tone = su > 0
        else:
            tone = su * np.sin(2 * math.pi * ((-sa * dx + ca * dy) / p + o["phase"][1])) > 0
        colour[box] = np.where(inside[..., None], np.where(tone[..., None], o["light"], o["dark"]), colour[box])
        depth[box] = np.where(inside, z, depth[box])
        labels[box] = np.where(inside, o["cls"], labels[box])
    # atmospheric haze: blend toward the sky colour with distance (0 at the nearest depth)
    a = haze * (1.0 - cam["z_near"] / depth)
    colour = (1 - a[..., None]) * colour + a[..., None] * _SKY
    image = colour.reshape(size, s, size, s, 3).mean((1, 3))
    image = np.clip(image + noise * rng.standard_normal(image.shape), 0, 1)
    # labels/depth at the pixel centre (the middle sub-sample; s is odd)
    c = s // 2
    return image, labels[c::s, c::s], depth[c::s, c::s], radius


def make_perspective_scenes(n: int, size: int = 64, seed: int = 0, split: str = "train", *,
                            depth_range=(1.0, 6.0), num_objects=(6, 14), depth_power: float = 2.0,
                            period_fraction: float = 0.8, haze: float = 0.5, noise: float = 0.03,
                            max_radius: float = 0.375) -> dict:
    r"""``n`` perspective scenes (see the module docstring) with labels and depth.

    Args:
        n: number of scenes.
        size: image side (>= 16).
        seed: base seed; the split and the index are mixed in (scenes never repeat across splits).
        split: ``"train"``, ``"val"`` or ``"test"``.
        depth_range: ``(near, far)`` depths of the disks; far/near is the range of apparent sizes
            (default 6: radii from 0.375·size down to 0.0625·size, 24 to 4 px at 64 px).
        num_objects: ``(min, max)`` disks per scene.
        depth_power: :math:`\gamma` of :math:`p(\log Z)\propto Z^\gamma` (default 2, ours: object
            pixels split roughly evenly over equal ratios of depth).
        period_fraction: texture period / disk radius (default 0.8; ours: a far disk of radius 4 px
            has a 3.2 px period, just above the Nyquist limit).
        haze: haze at infinite depth, in [0, 1) (default 0.5; ours).
        noise: std of additive Gaussian pixel noise (default 0.03; ours).
        max_radius: radius of the nearest disk as a fraction of ``size`` (default 0.375).

    Returns:
        dict with ``image`` ``(n, 3, size, size)`` float32 in [0, 1], ``labels`` ``(n, size, size)``
        int64 indexing :data:`PERSPECTIVE_CLASSES`, ``depth`` ``(n, 1, size, size)`` float32 metres,
        ``valid`` ``(n, size, size)`` bool (all True), ``object_depth`` and ``object_radius``
        ``(n, max_objects)`` float32 (NaN-padded; radius in pixels) in drawing order (far to near).

    Example:
        >>> d = make_perspective_scenes(2, size=32)
        >>> tuple(d["image"].shape), d["labels"].unique().tolist()
        ((2, 3, 32, 32), [0, 1, 2])
    """
    n = check_int(n, "n", 1)
    size = check_int(size, "size", 16)
    seed = check_int(seed, "seed", 0)
    check_choice(split, "split", _SPLITS)
    cam = perspective_camera(size, depth_range, max_radius)
    if not hasattr(num_objects, "__len__") or len(num_objects) != 2:
        raise ValueError(f"`num_objects`: expected (min, max), got {num_objects!r}")
    lo, hi = check_int(num_objects[0], "num_objects", 0), check_int(num_objects[1], "num_objects", 0)
    if hi < lo:
        raise ValueError(f"`num_objects`: expected min <= max, got {num_objects!r}")
    depth_power = check_float(depth_power, "depth_power", -5, 5)
    period_fraction = check_float(period_fraction, "period_fraction", 0, low_open=True)
    haze = check_float(haze, "haze", 0, 1, high_open=True)
    noise = check_float(noise, "noise", 0)
    sky_depth = cam["f"] * cam["h"] / 0.5  # ours: the ground half a pixel below the horizon
    images, labels, depths, zs, rs = [], [], [], [], []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLITS.index(split), i]))
        objects = _sample_objects(rng, cam, (lo, hi), depth_power)
        img, lab, dep, rad = _render_one(rng, size, cam, objects, period_fraction, haze, noise, sky_depth)
        images.append(img), labels.append(lab), depths.append(dep)
        zs.append([o["z"] for o in objects]), rs.append(rad.tolist())
    pad = lambda rows: torch.tensor([r + [math.nan] * (hi - len(r)) for r in rows], dtype=torch.float32)  # noqa: E731
    return {
        "image": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().contiguous(),
        "labels": torch.from_numpy(np.stack(labels)),
        "depth": torch.from_numpy(np.stack(depths))[:, None].float(),
        "valid": torch.ones(n, size, size, dtype=torch.bool),
        "object_depth": pad(zs).reshape(n, hi),
        "object_radius": pad(rs).reshape(n, hi),
    }
