r"""Synthetic 3-D scenes with exact, mutually consistent labels for every pixel-level task.

A scene is a random layout of textured primitives (spheres, boxes, vertical cylinders and cones)
standing on a ground plane :math:`y = 0` in front of a back wall, seen by a pinhole camera that
looks slightly down. Every pixel's ray is cast against all surfaces at once (vectorised over
scenes and pixels; the only Python loop is over object slots), a z-buffer keeps the nearest hit,
and the renderer writes, from that single hit:

========== ================ ==============================================================
key        shape / dtype    meaning
========== ================ ==============================================================
image      (N,3,H,W) f32    Lambertian shading with cast shadows, textures, optional noise
labels     (N,H,W) int64    semantic class, an index into :data:`SCENE_CLASSES`
instances  (N,H,W) int64    0 for floor/wall ("stuff"), 1..k for objects, nearest first
boundaries (N,H,W) bool     1-px occlusion boundaries, on the nearer side of each change
depth      (N,1,H,W) f32    metres along the optical axis (camera :math:`z`), > 0
normals    (N,3,H,W) f32    unit surface normals in the camera frame, facing the camera
valid      (N,H,W) bool     all True (the renderer has no holes; kept for NYUv2 parity)
K          (N,3,3) f32      pinhole intrinsics (pixel centres at integer coordinates)
========== ================ ==============================================================

plus ``pitch``, ``camera_height`` (N,), ``light`` (N,3, camera frame) and ``num_instances`` (N,).

Camera frame (OpenCV): :math:`x` right, :math:`y` down, :math:`z` forward. World frame: :math:`X`
right, :math:`Y` up, :math:`Z` away from the camera, camera centre :math:`C = (0, h, 0)`. A pixel
:math:`(u, v)` has the camera ray :math:`d = ((u-c_x)/f, (v-c_y)/f, 1)`, so the ray parameter of a
hit *is* its depth :math:`z`. With pitch :math:`\theta` (down), the ground plane has camera-frame
normal :math:`n = (0, -\cos\theta, -\sin\theta)` and depth :math:`z = h / (\bar v\cos\theta +
\sin\theta)`, :math:`\bar v = (v - c_y)/f` -- the consistency tests check both.

Colour is informative but not sufficient: each object class has a preferred hue, but hues are
jittered across class ranges and one object in five takes a random hue; the texture (plain,
stripes, checker, waves) is random per object. A segmenter must use shape as well as colour.

Every scene is generated from its own ``np.random.SeedSequence([seed, split, index])``, so a
scene does not depend on how many others are drawn with it, and ``train``/``val``/``test``
scenes can never coincide (:func:`make_scene_splits`). No global random state is touched.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, fields
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_dtype, check_finite, check_int, check_shape

__all__ = [
    "SCENE_CLASSES",
    "OBJECT_CLASSES",
    "SPLITS",
    "MAX_OBJECTS",
    "scene_class_names",
    "SceneLayout",
    "sample_layouts",
    "layout_from_objects",
    "render_scenes",
    "make_scenes",
    "make_scene_splits",
    "intrinsics",
    "backproject",
    "normals_from_depth",
]

#: Semantic classes; ``labels`` index this tuple. 0 and 1 are "stuff" (instance id 0).
SCENE_CLASSES: tuple[str, ...] = ("floor", "wall", "sphere", "box", "cylinder", "cone")
#: The object ("thing") classes, i.e. ``SCENE_CLASSES[2:]``.
OBJECT_CLASSES: tuple[str, ...] = SCENE_CLASSES[2:]
FLOOR, WALL, SPHERE, BOX, CYLINDER, CONE = range(6)
#: Split names; each draws scenes from its own seed stream.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Most objects a scene may hold (ours: keeps the slot loop short).
MAX_OBJECTS = 8
#: Smallest image side (ours: below this an object covers a handful of pixels).
MIN_SIZE = 16

_HFOV = math.radians(60.0)  # ours: horizontal field of view of the synthetic camera
_EPS = 1e-6  # smallest accepted ray parameter (metres); avoids self-hits of shadow rays
_SHADOW_OFFSET = 1e-4  # shadow rays start this far (metres) off the surface, along the normal
_AMBIENT = 0.35  # ours: ambient share of the shading, so shadowed sides stay textured
_CLASS_HUE = {SPHERE: 0.0, BOX: 0.62, CYLINDER: 0.33, CONE: 0.1}  # ours: preferred hue per class
_HUE_JITTER = 0.07  # ours: std of the hue around the class hue (sphere/cone ranges overlap)
_RANDOM_HUE_P = 0.2  # ours: share of objects whose hue ignores the class
_TEXTURES = ("plain", "stripes", "checker", "waves")
_BRICK = (0.45, 0.9)  # ours: wall brick height and length (m), no thin mortar lines to alias


def scene_class_names() -> tuple[str, ...]:
    """The semantic class names, in label order (``labels == i`` means ``SCENE_CLASSES[i]``).

    Example:
        >>> scene_class_names()[:3]
        ('floor', 'wall', 'sphere')
    """
    return SCENE_CLASSES


# --------------------------------------------------------------------------------------------
# Layouts: everything random about a batch of scenes, as plain arrays
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneLayout:
    """The 3-D content of ``N`` scenes with up to ``K`` object slots each (world frame, metres).

    Attributes:
        camera_height: ``(N,)`` camera height :math:`h` above the ground plane.
        pitch: ``(N,)`` downward tilt :math:`\\theta` of the optical axis, radians.
        wall_z: ``(N,)`` distance of the back wall :math:`Z = z_w`.
        light: ``(N, 3)`` unit direction towards a distant light (world frame).
        floor_colours: ``(N, 2, 3)`` the two checker colours of the floor.
        floor_tile: ``(N,)`` checker tile size.
        wall_colour: ``(N, 3)`` brick colour of the wall.
        kind: ``(N, K)`` class index (``SPHERE`` .. ``CONE``) or -1 for an empty slot; slots are
            sorted nearest first, so instance ids grow with distance.
        position: ``(N, K, 2)`` ``(X, Z)`` of the object's footprint centre on the floor.
        dims: ``(N, K, 3)`` sphere ``(r, -, -)``; box half extents ``(a_x, a_y, a_z)``;
            cylinder and cone ``(r, height, -)``.
        yaw: ``(N, K)`` rotation about the vertical axis (boxes; texture orientation otherwise).
        colour: ``(N, K, 3)`` RGB albedo in [0, 1].
        texture: ``(N, K)`` index into ``("plain", "stripes", "checker", "waves")``.
        texture_freq: ``(N, K)`` texture frequency, cycles per metre.
        texture_dir: ``(N, K, 3)`` unit direction of stripes / waves in the object frame.
        noise_seed: ``(N,)`` seeds of the per-scene pixel noise.
    """

    camera_height: np.ndarray
    pitch: np.ndarray
    wall_z: np.ndarray
    light: np.ndarray
    floor_colours: np.ndarray
    floor_tile: np.ndarray
    wall_colour: np.ndarray
    kind: np.ndarray
    position: np.ndarray
    dims: np.ndarray
    yaw: np.ndarray
    colour: np.ndarray
    texture: np.ndarray
    texture_freq: np.ndarray
    texture_dir: np.ndarray
    noise_seed: np.ndarray

    def __len__(self) -> int:
        return int(self.camera_height.shape[0])

    def __getitem__(self, index) -> "SceneLayout":
        """Select scenes (an int, slice or index array), keeping the arrays' leading axis."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1) if index != -1 else slice(-1, None)
        return SceneLayout(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size
    ):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"`size`: expected an int or a pair (H, W) of ints, got {size!r}")
    if min(hw) < MIN_SIZE:
        raise ValueError(f"`size`: expected each side >= {MIN_SIZE} pixels, got {hw}")
    return hw


def _check_num_objects(num_objects) -> tuple[int, int]:
    if isinstance(num_objects, (int, np.integer)) and not isinstance(num_objects, bool):
        lo = hi = int(num_objects)
    elif isinstance(num_objects, (tuple, list)) and len(num_objects) == 2 and all(
        isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in num_objects
    ):
        lo, hi = int(num_objects[0]), int(num_objects[1])
    else:
        raise ValueError(f"`num_objects`: expected an int or a pair (min, max), got {num_objects!r}")
    if not 0 <= lo <= hi <= MAX_OBJECTS:
        raise ValueError(f"`num_objects`: expected 0 <= min <= max <= {MAX_OBJECTS}, got ({lo}, {hi})")
    return lo, hi


def _check_classes(classes) -> tuple[int, ...]:
    if isinstance(classes, str) or not isinstance(classes, Iterable):
        raise ValueError(f"`classes`: expected a sequence of names from {SCENE_CLASSES}, got {classes!r}")
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SCENE_CLASSES]
    if unknown:
        raise ValueError(f"`classes`: unknown class names {unknown}; expected names from {SCENE_CLASSES}")
    kinds = tuple(sorted({SCENE_CLASSES.index(c) for c in classes if c in OBJECT_CLASSES}))
    if not kinds:
        raise ValueError(f"`classes`: expected at least one object class from {OBJECT_CLASSES}, got {classes}")
    return kinds


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, s, v)


def _footprint(kind: int, dims: np.ndarray) -> float:
    """Radius of a disc on the floor containing the object's footprint."""
    if kind == BOX:
        return float(math.hypot(dims[0], dims[2]))
    return float(dims[0])


def _sample_scene(rng: np.random.Generator, kinds: tuple[int, ...], lo: int, hi: int) -> dict:
    """Draw one scene; all ranges are ours, chosen so objects are visible at 64 x 64."""
    out = {
        "camera_height": rng.uniform(1.3, 1.8),
        "pitch": math.radians(rng.uniform(8.0, 18.0)),
        "wall_z": rng.uniform(11.0, 15.0),
    }
    az, el = math.radians(rng.uniform(-60, 60)), math.radians(rng.uniform(35, 65))
    out["light"] = np.array([math.cos(el) * math.sin(az), math.sin(el), -math.cos(el) * math.cos(az)])
    h = rng.uniform(0, 1)
    out["floor_colours"] = np.array(
        [_hsv(h, rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.45)), _hsv(h, rng.uniform(0.05, 0.3), rng.uniform(0.6, 0.8))]
    )
    out["floor_tile"] = rng.uniform(0.5, 1.0)
    out["wall_colour"] = np.array(_hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.35), rng.uniform(0.7, 0.9)))
    objects: list[tuple] = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        kind = int(kinds[int(rng.integers(len(kinds)))])
        if kind == SPHERE:
            dims = np.array([rng.uniform(0.35, 0.7), 0.0, 0.0])
        elif kind == BOX:
            dims = np.array([rng.uniform(0.25, 0.6), rng.uniform(0.25, 0.6), rng.uniform(0.25, 0.6)])
        elif kind == CYLINDER:
            dims = np.array([rng.uniform(0.25, 0.45), rng.uniform(0.6, 1.5), 0.0])
        else:
            dims = np.array([rng.uniform(0.3, 0.6), rng.uniform(0.8, 1.6), 0.0])
        rho = _footprint(kind, dims)
        for _attempt in range(30):  # rejection sampling of a free spot on the floor
            z = 2.3 + 6.0 * rng.uniform() ** 1.5  # in [2.3, 8.3] m, denser near the camera
            x = rng.uniform(-0.5, 0.5) * z
            if all(math.hypot(x - o[1][0], z - o[1][1]) > rho + o[2] + 0.05 for o in objects):
                break
        else:
            continue  # no room: the scene gets one object fewer
        hue = rng.uniform(0, 1) if rng.uniform() < _RANDOM_HUE_P else _CLASS_HUE[kind] + rng.normal(0, _HUE_JITTER)
        colour = np.array(_hsv(hue, rng.uniform(0.45, 0.9), rng.uniform(0.6, 0.95)))
        tex = int(rng.integers(len(_TEXTURES)))
        freq = rng.uniform(1.5, 3.0) / rho
        tdir = rng.normal(size=3)
        tdir /= np.linalg.norm(tdir)
        objects.append((kind, (x, z), rho, dims, rng.uniform(0, math.pi / 2), colour, tex, freq, tdir))
    objects.sort(key=lambda o: o[1][1])  # nearest first
    out["objects"] = objects
    out["noise_seed"] = int(rng.integers(2**31))
    return out


def _stack(scenes: Sequence[dict], slots: int) -> SceneLayout:
    n = len(scenes)
    kind = np.full((n, slots), -1, dtype=np.int64)
    position = np.zeros((n, slots, 2))
    dims = np.zeros((n, slots, 3))
    yaw = np.zeros((n, slots))
    colour = np.zeros((n, slots, 3))
    texture = np.zeros((n, slots), dtype=np.int64)
    freq = np.ones((n, slots))
    tdir = np.zeros((n, slots, 3))
    tdir[..., 1] = 1.0
    for i, s in enumerate(scenes):
        for j, (k, (x, z), _rho, d, yw, c, t, f, td) in enumerate(s["objects"]):
            kind[i, j], position[i, j], dims[i, j], yaw[i, j] = k, (x, z), d, yw
            colour[i, j], texture[i, j], freq[i, j], tdir[i, j] = c, t, f, td
    return SceneLayout(
        camera_height=np.array([s["camera_height"] for s in scenes], dtype=np.float64),
        pitch=np.array([s["pitch"] for s in scenes], dtype=np.float64),
        wall_z=np.array([s["wall_z"] for s in scenes], dtype=np.float64),
        light=np.stack([np.asarray(s["light"], dtype=np.float64) for s in scenes]),
        floor_colours=np.stack([np.asarray(s["floor_colours"], dtype=np.float64) for s in scenes]),
        floor_tile=np.array([s["floor_tile"] for s in scenes], dtype=np.float64),
        wall_colour=np.stack([np.asarray(s["wall_colour"], dtype=np.float64) for s in scenes]),
        kind=kind, position=position, dims=dims, yaw=yaw, colour=colour,
        texture=texture, texture_freq=freq, texture_dir=tdir,
        noise_seed=np.array([s["noise_seed"] for s in scenes], dtype=np.int64),
    )


def sample_layouts(
    n: int,
    seed: int = 0,
    num_objects=(2, 5),
    classes: Iterable[str] = SCENE_CLASSES,
    split: str = "train",
    first_index: int = 0,
) -> SceneLayout:
    """Draw the random 3-D layouts of ``n`` scenes (no rendering).

    Scene ``i`` uses ``np.random.SeedSequence([seed, SPLITS.index(split), first_index + i])``.

    Args:
        n: number of scenes, >= 1.
        seed: non-negative int.
        num_objects: ``(min, max)`` objects per scene (inclusive) or an int; at most
            :data:`MAX_OBJECTS`. A scene may hold fewer when no free floor spot is found.
        classes: names from :data:`SCENE_CLASSES`; the object classes among them may appear
            (floor and wall always do). Labels keep their global indices.
        split: ``"train"``, ``"val"`` or ``"test"``: a separate seed stream per split.
        first_index: index of the first scene in its stream.

    Raises:
        ValueError / TypeError naming the bad argument.
    """
    n = check_int(n, "n", low=1)
    seed = check_int(seed, "seed", low=0)
    first_index = check_int(first_index, "first_index", low=0)
    lo, hi = _check_num_objects(num_objects)
    kinds = _check_classes(classes)
    check_choice(split, "split", SPLITS)
    stream = SPLITS.index(split)
    scenes = [
        _sample_scene(np.random.default_rng(np.random.SeedSequence([seed, stream, first_index + i])), kinds, lo, hi)
        for i in range(n)
    ]
    return _stack(scenes, max(1, hi))


def layout_from_objects(
    scenes: Sequence[Sequence[dict]],
    *,
    camera_height: float = 1.5,
    pitch_deg: float = 12.0,
    wall_z: float = 14.0,
    light: Sequence[float] = (0.3, 0.8, -0.5),
) -> SceneLayout:
    """Build a layout by hand, for tests and figures: one list of object dicts per scene.

    Each object is ``{"class": name, "x": X, "z": Z, ...}`` with ``radius`` (sphere, cylinder,
    cone), ``height`` (cylinder, cone), ``half_extents`` (box, 3 values), optional ``yaw``,
    ``colour`` (RGB, default mid grey) and ``texture`` (name, default ``"plain"``).

    Example:
        >>> lay = layout_from_objects([[{"class": "sphere", "x": 0.0, "z": 5.0, "radius": 0.5}]])
        >>> lay.kind.tolist()
        [[2]]
    """
    if isinstance(scenes, dict) or not isinstance(scenes, Sequence) or not scenes:
        raise ValueError("`scenes`: expected a non-empty list (one per scene) of lists of object dicts")
    light = np.asarray(light, dtype=np.float64)
    if light.shape != (3,) or not np.isfinite(light).all() or np.linalg.norm(light) == 0:
        raise ValueError(f"`light`: expected a non-zero finite 3-vector, got {light.tolist()}")
    built = []
    for i, objs in enumerate(scenes):
        objects = []
        for j, o in enumerate(objs):
            name = o.get("class")
            if name not in OBJECT_CLASSES:
                raise ValueError(f"`scenes[{i}][{j}]['class']`: expected one of {OBJECT_CLASSES}, got {name!r}")
            kind = SCENE_CLASSES.index(name)
            try:
                if kind == SPHERE:
                    dims = np.array([o["radius"], 0.0, 0.0])
                elif kind == BOX:
                    dims = np.array(o["half_extents"], dtype=np.float64).reshape(3)
                else:
                    dims = np.array([o["radius"], o["height"], 0.0])
            except KeyError as exc:
                raise ValueError(f"`scenes[{i}][{j}]`: a {name} needs key {exc.args[0]!r}") from None
            if (dims[: 3 if kind == BOX else (1 if kind == SPHERE else 2)] <= 0).any():
                raise ValueError(f"`scenes[{i}][{j}]`: expected positive dimensions, got {dims.tolist()}")
            tex = o.get("texture", "plain")
            check_choice(tex, f"scenes[{i}][{j}]['texture']", _TEXTURES)
            rho = _footprint(kind, dims)
            objects.append(
                (kind, (float(o["x"]), float(o["z"])), rho, dims, float(o.get("yaw", 0.0)),
                 np.asarray(o.get("colour", (0.6, 0.6, 0.6)), dtype=np.float64), _TEXTURES.index(tex),
                 2.0 / rho, np.array([0.0, 1.0, 0.0]))
            )
        objects.sort(key=lambda ob: ob[1][1])
        built.append({
            "camera_height": camera_height, "pitch": math.radians(pitch_deg), "wall_z": wall_z,
            "light": light / np.linalg.norm(light), "floor_colours": np.array([[0.35] * 3, [0.65] * 3]),
            "floor_tile": 0.75, "wall_colour": np.array([0.8, 0.78, 0.75]), "objects": objects, "noise_seed": i,
        })
    return _stack(built, max(1, max(len(b["objects"]) for b in built)))


# --------------------------------------------------------------------------------------------
# Camera geometry
# --------------------------------------------------------------------------------------------


def intrinsics(size, hfov_deg: float = math.degrees(_HFOV)) -> torch.Tensor:
    """Pinhole intrinsics ``K`` (3, 3) of the synthetic camera for an image of ``size``.

    Pixel centres sit at integer coordinates: ``c_x = (W - 1) / 2``; ``f = (W / 2) / tan(hfov/2)``.

    Example:
        >>> intrinsics(64)[0, 2].item()
        31.5
    """
    H, W = _check_size(size)
    f = (W / 2) / math.tan(math.radians(hfov_deg) / 2)
    return torch.tensor([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)


def _camera_axes(pitch: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)``: rows are the camera x, y, z axes in world coordinates (pitch down)."""
    c, s = torch.cos(pitch), torch.sin(pitch)
    o, z = torch.ones_like(c), torch.zeros_like(c)
    return torch.stack(
        [torch.stack([o, z, z], -1), torch.stack([z, -c, -s], -1), torch.stack([z, -s, c], -1)], dim=1
    )


def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame 3-D points ``(N, 3, H, W)`` of a depth map: :math:`P = z\\,K^{-1}(u, v, 1)^T`.

    Args:
        depth: ``(N, 1, H, W)`` depth along the optical axis.
        K: ``(3, 3)`` or ``(N, 3, 3)`` intrinsics, pixel centres at integer coordinates.

    Example:
        >>> backproject(torch.ones(1, 1, 16, 16), intrinsics(16))[0, :, 7, 8].round(decimals=3)
        tensor([ 0.0360, -0.0360,  1.0000])
    """
    d = check_shape(depth, "depth", "N 1 H W")
    check_dtype(depth, "depth", "float")
    if K.ndim == 2:
        K = K.expand(d["N"][0], 3, 3)
    check_shape(K, "K", "N 3 3", d)
    N, _, H, W = depth.shape
    Kd = K.to(depth.dtype)
    v, u = torch.meshgrid(
        torch.arange(H, dtype=depth.dtype, device=depth.device),
        torch.arange(W, dtype=depth.dtype, device=depth.device),
        indexing="ij",
    )
    fx, fy = Kd[:, 0, 0].view(N, 1, 1), Kd[:, 1, 1].view(N, 1, 1)
    cx, cy = Kd[:, 0, 2].view(N, 1, 1), Kd[:, 1, 2].view(N, 1, 1)
    z = depth[:, 0]
    return torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], dim=1)


def normals_from_depth(
    depth: torch.Tensor,
    K: torch.Tensor,
    method: str = "plane",
    window: int = 3,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface normals estimated from a depth map, in the camera frame, facing the camera.

    ``method="cross"``: central differences of the back-projected points,
    :math:`n \\propto (P_{u+1} - P_{u-1}) \\times (P_{v+1} - P_{v-1})`.
    ``method="plane"``: least-squares plane through the ``window x window`` neighbourhood: the
    eigenvector of the smallest eigenvalue of the points' covariance (vectorised, float64), the
    standard way NYUv2 normals are derived from depth. Pixels without a full set of valid
    neighbours (image border, holes) are returned as invalid with a zero normal.

    Args:
        depth: ``(N, 1, H, W)``. K: ``(3, 3)`` or ``(N, 3, 3)``.
        method: ``"plane"`` or ``"cross"``.
        window: odd neighbourhood size for ``"plane"`` (>= 3).
        valid: optional ``(N, H, W)`` bool mask of trustworthy depth.

    Returns:
        ``(normals (N, 3, H, W) float32, valid (N, H, W) bool)``.

    Example:
        >>> z = torch.full((1, 1, 16, 16), 2.0)  # a fronto-parallel plane
        >>> n, ok = normals_from_depth(z, intrinsics(16))
        >>> (n[0, :, 8, 8] + 0.0).tolist(), bool(ok[0, 0, 0]), bool(ok[0, 8, 8])
        ([0.0, 0.0, -1.0], False, True)
    """
    d = check_shape(depth, "depth", "N 1 H W")
    check_dtype(depth, "depth", "float")
    check_finite(depth, "depth")
    check_choice(method, "method", ("plane", "cross"))
    if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
        raise ValueError(f"`window`: expected an odd int >= 3, got {window!r}")
    N, _, H, W = depth.shape
    if valid is None:
        valid = depth[:, 0] > 0
    else:
        check_shape(valid, "valid", "N H W", d)
        valid = valid.bool() & (depth[:, 0] > 0)
    P = backproject(depth.double(), K.double())
    w = valid.double().unsqueeze(1)
    r = window // 2 if method == "plane" else 1
    # a pixel is usable only when its whole neighbourhood is valid (not across holes/borders)
    full = F.avg_pool2d(F.pad(w, (r, r, r, r)), 2 * r + 1, stride=1) > 1 - 1e-9
    ok = full[:, 0]
    if method == "cross":
        Pp = F.pad(P, (1, 1, 1, 1), mode="replicate")
        du = Pp[:, :, 1:-1, 2:] - Pp[:, :, 1:-1, :-2]
        dv = Pp[:, :, 2:, 1:-1] - Pp[:, :, :-2, 1:-1]
        n = torch.cross(du, dv, dim=1)
    else:
        k = 2 * r + 1
        pool = lambda x: F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), k, stride=1)  # noqa: E731
        mu = pool(P)
        idx = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
        m = {(a, b): pool(P[:, a : a + 1] * P[:, b : b + 1])[:, 0] - mu[:, a] * mu[:, b] for a, b in idx}
        cov = torch.stack(
            [torch.stack([m[(0, 0)], m[(0, 1)], m[(0, 2)]], -1),
             torch.stack([m[(0, 1)], m[(1, 1)], m[(1, 2)]], -1),
             torch.stack([m[(0, 2)], m[(1, 2)], m[(2, 2)]], -1)], -2)  # (N, H, W, 3, 3)
        cov = torch.where(ok[..., None, None], cov, torch.eye(3, dtype=cov.dtype))
        _, vecs = torch.linalg.eigh(cov)
        n = vecs[..., 0].permute(0, 3, 1, 2)
    norm = n.norm(dim=1, keepdim=True)
    ok = ok & (norm[:, 0] > 0)
    n = n / norm.clamp_min(1e-300)
    n = torch.where((n * P).sum(1, keepdim=True) > 0, -n, n)  # face the camera: n . P < 0
    n = torch.where(ok.unsqueeze(1), n, torch.zeros_like(n))
    return n.float(), ok


# --------------------------------------------------------------------------------------------
# Ray casting (float64; O: ray origins (n, 1 or P, 3), D: directions (n, P, 3))
# --------------------------------------------------------------------------------------------

_INF = float("inf")


def _first_positive(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    t1 = torch.where(torch.isnan(t1), _INF, t1)
    t2 = torch.where(torch.isnan(t2), _INF, t2)
    return torch.where(t1 > _EPS, t1, torch.where(t2 > _EPS, t2, torch.full_like(t1, _INF)))


def _quadratic(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted real roots of ``a t^2 + 2 b t + c`` (inf where none), numerically stable."""
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp_min(0))
    q = -(b + torch.where(b >= 0, sq, -sq))
    r1 = torch.where(a != 0, q / a, -c / (2 * b))
    r2 = torch.where(q != 0, c / q, r1)
    lo, hi = torch.minimum(r1, r2), torch.maximum(r1, r2)
    none = disc < 0
    return torch.where(none, _INF, lo), torch.where(none, _INF, hi)


def _rot_y(v: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``v (..., 3)`` about the world Y axis by the angle with cos ``c``, sin ``s``."""
    x, y, z = v.unbind(-1)
    return torch.stack([c * x + s * z, y, -s * x + c * z], -1)


def _hit_sphere(O, D, pos, dims, yaw):
    S = torch.stack([pos[..., 0], dims[..., 0], pos[..., 1]], -1)  # centre (X, r, Z)
    r = dims[..., 0]
    oc = O - S
    t1, t2 = _quadratic((D * D).sum(-1), (D * oc).sum(-1), (oc * oc).sum(-1) - r * r)
    t = _first_positive(t1, t2)
    n = (O + torch.where(torch.isinf(t), 0.0, t)[..., None] * D - S) / r[..., None]
    return t, n


def _hit_box(O, D, pos, dims, yaw):
    base = torch.stack([pos[..., 0], dims[..., 1], pos[..., 1]], -1)
    c, s = torch.cos(yaw), torch.sin(yaw)
    o = _rot_y(O - base, c, -s)  # into the box frame
    d = _rot_y(D, c, -s)
    d = torch.where(d == 0, 1e-300, d)
    a = dims
    t_a, t_b = (-a - o) / d, (a - o) / d
    t_in, t_out = torch.minimum(t_a, t_b), torch.maximum(t_a, t_b)
    near, axis = t_in.max(-1)
    far = t_out.min(-1).values
    hit = (far >= near) & (near > _EPS)
    t = torch.where(hit, near, _INF)
    n_local = -torch.sign(d) * F.one_hot(axis, 3).to(d.dtype)
    return t, _rot_y(n_local, c, s)


def _hit_cylinder(O, D, pos, dims, yaw):
    r, h = dims[..., 0], dims[..., 1]
    ox, oz = O[..., 0] - pos[..., 0], O[..., 2] - pos[..., 1]
    Dx, Dy, Dz = D.unbind(-1)
    t1, t2 = _quadratic(Dx * Dx + Dz * Dz, ox * Dx + oz * Dz, ox * ox + oz * oz - r * r)
    y1, y2 = O[..., 1] + t1 * Dy, O[..., 1] + t2 * Dy
    t1 = torch.where((y1 >= 0) & (y1 <= h), t1, _INF)
    t2 = torch.where((y2 >= 0) & (y2 <= h), t2, _INF)
    side = _first_positive(t1, t2)
    tc = (h - O[..., 1]) / Dy
    cx, cz = ox + tc * Dx, oz + tc * Dz
    cap = torch.where((cx * cx + cz * cz <= r * r) & (tc > _EPS), tc, _INF)
    t = torch.minimum(side, cap)
    tt = torch.where(torch.isinf(t), 0.0, t)
    px, pz = ox + tt * Dx, oz + tt * Dz
    n_side = torch.stack([px, torch.zeros_like(px), pz], -1) / r[..., None]
    n_cap = torch.zeros_like(n_side)
    n_cap[..., 1] = 1.0
    return t, torch.where((cap <= side)[..., None], n_cap, n_side)


def _hit_cone(O, D, pos, dims, yaw):
    r, h = dims[..., 0], dims[..., 1]
    k2 = (r / h) ** 2
    ox, oz, e = O[..., 0] - pos[..., 0], O[..., 2] - pos[..., 1], h - O[..., 1]
    Dx, Dy, Dz = D.unbind(-1)
    # (ox + t Dx)^2 + (oz + t Dz)^2 = k^2 (e - t Dy)^2
    t1, t2 = _quadratic(Dx * Dx + Dz * Dz - k2 * Dy * Dy, ox * Dx + oz * Dz + k2 * e * Dy, ox * ox + oz * oz - k2 * e * e)
    y1, y2 = O[..., 1] + t1 * Dy, O[..., 1] + t2 * Dy
    t1 = torch.where((y1 >= 0) & (y1 <= h), t1, _INF)
    t2 = torch.where((y2 >= 0) & (y2 <= h), t2, _INF)
    t = _first_positive(t1, t2)
    tt = torch.where(torch.isinf(t), 0.0, t)
    px, py, pz = ox + tt * Dx, O[..., 1] + tt * Dy, oz + tt * Dz
    n = torch.stack([px, k2 * (h - py), pz], -1)  # gradient of x^2 + z^2 - k^2 (h - y)^2
    return t, n / n.norm(dim=-1, keepdim=True).clamp_min(1e-300)


_HIT = {SPHERE: _hit_sphere, BOX: _hit_box, CYLINDER: _hit_cylinder, CONE: _hit_cone}


def _bounding_spheres(kind, pos, dims):
    """Centre ``(N, K, 3)`` and radius ``(N, K)`` of a sphere enclosing each object."""
    r, h = dims[..., 0], dims[..., 1]
    half = torch.where(kind == SPHERE, r, torch.where(kind == BOX, dims[..., 1], h / 2))
    rad = torch.where(
        kind == SPHERE, r, torch.where(kind == BOX, dims.norm(dim=-1), torch.sqrt(r * r + half * half))
    )
    return torch.stack([pos[..., 0], half, pos[..., 1]], -1), rad


def _hit_pairs(O, D, kind, pos, dims, yaw, need_normals=True):
    """Intersect ray/object pairs given as flat arrays: ``O, D (S, 3)``, object params ``(S, ...)``.

    Returns ``t (S,)`` (inf for a miss) and, if asked, normals ``(S, 3)`` in the world frame.
    """
    t = torch.full(kind.shape, _INF, dtype=D.dtype)
    n = torch.zeros(D.shape, dtype=D.dtype) if need_normals else None
    for k, fn in _HIT.items():
        sel = (kind == k).nonzero()[:, 0]
        if sel.numel() == 0:
            continue
        tk, nk = fn(O[sel, None], D[sel, None], pos[sel, None], dims[sel, None], yaw[sel, None])
        t[sel] = tk[:, 0]
        if need_normals:
            n[sel] = nk[:, 0]
    return t, n


def _screen_pairs(S_cam, rad, exists, f, cx, cy, H, W):
    r"""(object, pixel) pairs whose pixel lies in the object's projected bounding box.

    The box of a sphere (centre ``S_cam`` in the camera frame, radius ``rad``) comes from the
    two tangent lines through the camera centre in the x-z and y-z planes: slopes
    :math:`m = (x_0 z_0 \pm \rho\sqrt{x_0^2 + z_0^2 - \rho^2}) / (z_0^2 - \rho^2)`. An object
    that reaches behind ``z = rho`` gets the whole image.
    Returns ``(obj (S,), pixel (S,))`` with ``obj`` indexing the flattened ``exists`` objects.
    """
    x0, y0, z0 = S_cam.unbind(-1)
    den = z0 * z0 - rad * rad
    front = den > 1e-6 * z0 * z0

    def span(a0, c, size):
        root = torch.sqrt((a0 * a0 + z0 * z0 - rad * rad).clamp_min(0))
        dd = torch.where(front, den, 1.0)
        lo = c + f * (a0 * z0 - rad * root) / dd
        hi = c + f * (a0 * z0 + rad * root) / dd
        lo = torch.where(front, torch.floor(lo), 0.0).clamp(0, size - 1)
        hi = torch.where(front, torch.ceil(hi), size - 1.0).clamp(-1, size - 1)
        hi = torch.where(front & (c + f * (a0 * z0 + rad * root) / dd < 0), -1.0, hi)
        lo = torch.where(front & (c + f * (a0 * z0 - rad * root) / dd > size - 1), float(size), lo)
        return lo.long(), hi.long()

    u0, u1 = span(x0, cx, W)
    v0, v1 = span(y0, cy, H)
    w, hgt = (u1 - u0 + 1).clamp_min(0), (v1 - v0 + 1).clamp_min(0)
    area = torch.where(exists, w * hgt, 0)
    obj = torch.repeat_interleave(torch.arange(area.numel()), area)
    off = torch.arange(obj.numel()) - (area.cumsum(0) - area)[obj]
    pix = (v0[obj] + off // w[obj]) * W + u0[obj] + off % w[obj]
    return obj, pix


def _texture(local: torch.Tensor, tex: torch.Tensor, freq: torch.Tensor, tdir: torch.Tensor) -> torch.Tensor:
    """Albedo multiplier in [0.5, 1] of the four procedural textures at object-frame points."""
    x = local * freq[..., None]
    proj = (x * tdir).sum(-1)
    stripes = torch.where(torch.sin(2 * math.pi * proj) > 0, 1.0, 0.5)
    checker = torch.where(torch.floor(x).sum(-1).remainder(2) == 0, 1.0, 0.5)
    waves = 0.75 + 0.25 * torch.sin(2 * math.pi * proj) * torch.cos(2 * math.pi * (x[..., 0] - x[..., 2]) * 0.7)
    out = torch.ones_like(proj)
    out = torch.where(tex == 1, stripes, out)
    out = torch.where(tex == 2, checker, out)
    return torch.where(tex == 3, waves, out)


def render_scenes(layout: SceneLayout, size=64, noise: float = 0.0, shadows: bool = True) -> dict:
    """Render layouts to images and exact labels, depth and normals (see the module docstring).

    Rays are cast only against objects whose projected bounding sphere covers the pixel (and
    shadow rays only against objects whose bounding sphere lies between the point and the
    light), so the cost grows with the image area the objects cover, not with pixels x objects.
    Intersections are computed in float64, image-wide shading in float32.

    Args:
        layout: a :class:`SceneLayout` (from :func:`sample_layouts` or :func:`layout_from_objects`).
        size: int or ``(H, W)``, each side >= 16.
        noise: std of additive Gaussian pixel noise (clipped to [0, 1] afterwards), in [0, 1].
        shadows: cast shadows from the objects onto everything (one shadow ray per lit pixel).

    Returns:
        dict of tensors (CPU); see the module docstring for keys, shapes and dtypes.
    """
    if not isinstance(layout, SceneLayout):
        raise TypeError(f"`layout`: expected a SceneLayout, got {type(layout).__name__}")
    H, W = _check_size(size)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise <= 1.0:
        raise ValueError(f"`noise`: expected a float in [0, 1], got {noise!r}")
    dt, ft = torch.float64, torch.float32
    T = lambda a: torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731
    N, P = len(layout), H * W
    K = intrinsics((H, W))
    f, cx, cy = float(K[0, 0]), float(K[0, 2]), float(K[1, 2])
    v, u = torch.meshgrid(torch.arange(H, dtype=dt), torch.arange(W, dtype=dt), indexing="ij")
    d_cam = torch.stack([(u - cx) / f, (v - cy) / f, torch.ones_like(u)], -1).reshape(-1, 3)  # (P, 3)
    pitch, h, wall_z = T(layout.pitch), T(layout.camera_height), T(layout.wall_z)
    R = _camera_axes(pitch)  # rows: camera axes in world coordinates; world dir = d_cam @ R
    C = torch.stack([torch.zeros_like(h), h, torch.zeros_like(h)], -1)  # (N, 3)
    kind = torch.as_tensor(layout.kind, dtype=torch.long)
    pos, dims, yaw = T(layout.position), T(layout.dims), T(layout.yaw)
    Kslots = kind.shape[1]
    exists = (kind >= 0).reshape(-1)
    flat = lambda a: a.reshape(N * Kslots, *a.shape[2:])  # noqa: E731  (scene, slot) -> object

    # stuff: floor (y = 0) and back wall (Z = wall_z); every ray hits one of them.
    # World ray of pixel (u, v): D = (ub, -(cos.vb + sin), cos - sin.vb), ub = (u - cx)/f, vb = (v - cy)/f
    cp, sp_ = torch.cos(pitch)[:, None], torch.sin(pitch)[:, None]
    ub, vb = d_cam[:, 0][None], d_cam[:, 1][None]  # (1, P)
    Dy, Dz = -(cp * vb + sp_), cp - sp_ * vb  # (N, P)
    t_floor = torch.where(Dy < 0, h[:, None] / (-Dy).clamp_min(1e-300), _INF)
    t_wall = torch.where(Dz > 0, wall_z[:, None] / Dz.clamp_min(1e-300), _INF)
    t = torch.minimum(t_floor, t_wall)  # (N, P)
    if not bool(torch.isfinite(t).all()):
        raise ValueError("`layout`: some camera rays miss both floor and wall; reduce `pitch` below 60 degrees")
    is_floor = t_floor <= t_wall

    # objects: z-buffer over (object, pixel) pairs inside each projected bounding sphere
    centre, rad = _bounding_spheres(kind, pos, dims)
    S_cam = torch.einsum("nwc,nkc->nkw", R, centre - C[:, None])
    obj, pix = _screen_pairs(flat(S_cam), flat(rad), exists, f, cx, cy, H, W)
    scene = obj // Kslots
    D_pair = torch.einsum("sc,scw->sw", d_cam[pix], R[scene])
    t_pair, n_pair = _hit_pairs(C[scene], D_pair, flat(kind)[obj], flat(pos)[obj], flat(dims)[obj], flat(yaw)[obj])
    q = scene * P + pix
    t_flat = t.reshape(-1).clone().scatter_reduce_(0, q, t_pair, "amin")
    win = torch.isfinite(t_pair) & (t_pair == t_flat[q])
    slot = torch.full((N * P,), -1, dtype=torch.long)
    slot[q[win]] = (obj % Kslots)[win]
    n_win = torch.zeros((N * P, 3), dtype=dt)
    n_win[q[win]] = n_pair[win]
    t, slot = t_flat.view(N, P), slot.view(N, P)
    is_obj = slot >= 0
    is_floor = is_floor & ~is_obj
    on = is_obj.nonzero()  # (M, 2): scene, pixel of every object pixel
    o_sc, o_px = on[:, 0], on[:, 1]
    o = o_sc * Kslots + slot[o_sc, o_px]  # flat object index per object pixel
    n_obj = n_win.view(N, P, 3)[o_sc, o_px]  # (M, 3) world normals of object pixels
    X_o = C[o_sc] + t[o_sc, o_px][:, None] * torch.einsum("mc,mcw->mw", d_cam[o_px], R[o_sc])

    # semantic labels and instance ids (objects renumbered 1..k by visibility, nearest first)
    labels = torch.where(is_floor, FLOOR, WALL)
    labels[o_sc, o_px] = flat(kind)[o]
    present = torch.zeros((N, Kslots + 1), dtype=torch.long).scatter_(1, slot + 1, 1)[:, 1:]
    new_id = present.cumsum(1) * present
    instances = torch.zeros((N, P), dtype=torch.long)
    instances[o_sc, o_px] = flat(new_id)[o]

    # albedo (N, 3, P): floor checker, wall bricks, object colour x procedural texture
    tf = t.to(ft)
    Xw, Yw, Zw = tf * ub.to(ft), h.to(ft)[:, None] + tf * Dy.to(ft), tf * Dz.to(ft)  # world hit points
    tile = T(layout.floor_tile).to(ft)[:, None]
    parity = (torch.floor(Xw / tile) + torch.floor(Zw / tile)).remainder(2) == 0
    row = torch.floor(Yw / _BRICK[0])  # running-bond bricks, half a brick offset per row,
    col = torch.floor((Xw + 0.5 * _BRICK[1] * row.remainder(2)) / _BRICK[1])  # each its own shade
    brick_gain = 0.8 + (0.25 / 3) * ((col.long() * 73856093) ^ (row.long() * 19349663)).remainder(4)  # hash
    fc = T(layout.floor_colours).to(ft)  # (N, 2, 3)
    albedo = torch.where(
        is_floor[:, None],
        torch.where(parity[:, None], fc[:, 0, :, None], fc[:, 1, :, None]),
        T(layout.wall_colour).to(ft)[:, :, None] * brick_gain[:, None],
    )
    if on.numel():
        base = torch.stack([flat(pos)[o, 0], torch.zeros_like(o, dtype=dt), flat(pos)[o, 1]], -1)
        yw = flat(yaw)[o]
        local = _rot_y(X_o - base, torch.cos(yw), -torch.sin(yw))
        tex = _texture(local, flat(torch.as_tensor(layout.texture))[o], flat(T(layout.texture_freq))[o],
                       flat(T(layout.texture_dir))[o])
        albedo.permute(0, 2, 1)[o_sc, o_px] = (flat(T(layout.colour))[o] * tex[:, None]).to(ft)

    # Lambertian shading with a distant light (floor: n = +Y, wall: n = -Z) and cast shadows
    L = T(layout.light)
    L = L / L.norm(dim=-1, keepdim=True)
    lambert = torch.where(is_floor, L[:, 1:2].clamp_min(0).to(ft), (-L[:, 2:3]).clamp_min(0).to(ft))
    lambert[o_sc, o_px] = (n_obj * L[o_sc]).sum(-1).clamp_min(0).to(ft)
    if shadows and bool(exists.any()):
        # candidate occluders: bounding sphere (with a safety margin) reaching the ray X + s L,
        # tested in light coordinates (a, b) across the light and c along it
        Lf = L.to(ft)
        e1 = torch.nn.functional.normalize(torch.linalg.cross(Lf, torch.tensor([0.0, 0.0, 1.0]).expand_as(Lf)), dim=-1)
        e2 = torch.linalg.cross(Lf, e1)
        proj = lambda M, x, y, z: M[:, 0:1] * x + M[:, 1:2] * y + M[:, 2:3] * z  # noqa: E731
        pa, pb, pc = (proj(M, Xw, Yw, Zw) for M in (e1, e2, Lf))  # (N, P)
        cen = centre.to(ft)
        ca, cb, cc = ((cen * M[:, None]).sum(-1)[..., None] for M in (e1, e2, Lf))  # (N, K, 1)
        r_m = (rad.to(ft) * 1.01 + 0.01)[..., None]
        cand = ((pa[:, None] - ca) ** 2 + (pb[:, None] - cb) ** 2 <= r_m * r_m) & (pc[:, None] < cc + r_m)
        cand &= (kind >= 0)[..., None] & (lambert > 0)[:, None]
        sc, sk, sp = cand.nonzero().unbind(1)
        so = sc * Kslots + sk
        X_s = C[sc] + t[sc, sp][:, None] * torch.einsum("sc,scw->sw", d_cam[sp], R[sc])
        nrm = torch.where(is_floor[sc, sp][:, None], torch.tensor([0.0, 1.0, 0.0], dtype=dt), torch.tensor([0.0, 0.0, -1.0], dtype=dt))
        nrm[is_obj[sc, sp]] = n_win.view(N, P, 3)[sc, sp][is_obj[sc, sp]]
        t_s, _ = _hit_pairs(X_s + _SHADOW_OFFSET * nrm, L[sc], flat(kind)[so], flat(pos)[so], flat(dims)[so], flat(yaw)[so], False)
        lit = torch.isfinite(t_s)
        lambert[sc[lit], sp[lit]] = 0.0
    image = (albedo * (_AMBIENT + (1 - _AMBIENT) * lambert)[:, None]).clamp(0, 1).view(N, 3, H, W)

    # camera-frame normals (N, 3, P), facing the camera: floor (0, -cos, -sin), wall (0, sin, -cos)
    zero = torch.zeros_like(cp)
    nf = torch.cat([zero, -cp, -sp_], 1).to(ft)[:, :, None]
    nw = torch.cat([zero, sp_, -cp], 1).to(ft)[:, :, None]
    normals = torch.where(is_floor[:, None], nf, nw)
    n_oc = torch.einsum("mwc,mc->mw", R[o_sc], n_obj)
    n_oc = torch.where(((n_oc * d_cam[o_px]).sum(-1) > 0)[:, None], -n_oc, n_oc)
    normals.permute(0, 2, 1)[o_sc, o_px] = n_oc.to(ft)

    if noise > 0:
        eps = np.stack([np.random.default_rng(int(s)).standard_normal((3, H, W)) for s in layout.noise_seed])
        image = (image + noise * torch.as_tensor(eps, dtype=ft)).clamp(0, 1)
    labels = labels.reshape(N, H, W)
    instances = instances.reshape(N, H, W)
    depth = t.reshape(N, 1, H, W)
    return {
        "image": image,
        "labels": labels,
        "instances": instances,
        "boundaries": _occlusion_boundaries(labels * (MAX_OBJECTS + 1) + instances, depth[:, 0]),
        "depth": depth.to(ft),
        "normals": normals.view(N, 3, H, W),
        "valid": torch.ones((N, H, W), dtype=torch.bool),
        "K": K.expand(N, 3, 3).clone(),
        "pitch": pitch.to(ft),
        "camera_height": h.to(ft),
        "light": torch.einsum("nwc,nc->nw", R, L).to(ft),
        "num_instances": present.sum(1),
    }


def _occlusion_boundaries(segments: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """1-px boundaries: of each 4-adjacent pair with different segments, mark the nearer pixel."""
    b = torch.zeros_like(segments, dtype=torch.bool)
    diff = segments[:, :, 1:] != segments[:, :, :-1]
    left_front = depth[:, :, :-1] <= depth[:, :, 1:]
    b[:, :, :-1] |= diff & left_front
    b[:, :, 1:] |= diff & ~left_front
    diff = segments[:, 1:] != segments[:, :-1]
    top_front = depth[:, :-1] <= depth[:, 1:]
    b[:, :-1] |= diff & top_front
    b[:, 1:] |= diff & ~top_front
    return b


def make_scenes(
    n: int,
    size=64,
    seed: int = 0,
    num_objects=(2, 5),
    classes: Iterable[str] = SCENE_CLASSES,
    noise: float = 0.0,
    split: str = "train",
    first_index: int = 0,
    shadows: bool = True,
) -> dict:
    """``n`` random synthetic scenes with image, labels, instances, boundaries, depth, normals.

    Deterministic given ``(seed, split, first_index)``; scene ``i`` is the same whatever ``n``.
    ``make_scenes(200, 64)`` takes about 0.3 s on one CPU core.

    Args:
        n: number of scenes, >= 1.
        size: int or ``(H, W)``, each side >= 16.
        seed: non-negative int.
        num_objects: ``(min, max)`` objects per scene, inclusive, or an int (<= 8).
        classes: allowed names from :data:`SCENE_CLASSES` (floor and wall are always present).
        noise: std of additive Gaussian pixel noise, in [0, 1].
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint seed streams).
        first_index: index of the first scene within its stream.
        shadows: render cast shadows.

    Returns:
        dict of tensors, see the module docstring.

    Raises:
        ValueError / TypeError naming the bad argument.

    Example:
        >>> s = make_scenes(2, size=32, seed=0)
        >>> tuple(s["image"].shape), s["labels"].dtype, tuple(s["depth"].shape)
        ((2, 3, 32, 32), torch.int64, (2, 1, 32, 32))
        >>> bool((s["depth"] > 0).all()), bool(s["labels"].max() < len(SCENE_CLASSES))
        (True, True)
    """
    _check_size(size)  # fail before sampling
    layout = sample_layouts(n, seed=seed, num_objects=num_objects, classes=classes, split=split, first_index=first_index)
    return render_scenes(layout, size=size, noise=noise, shadows=shadows)


def make_scene_splits(n_train: int, n_val: int, size=64, seed: int = 0, **kwargs) -> tuple[dict, dict]:
    """Train and validation scene sets drawn from disjoint seed streams (never the same scene).

    Scene ``i`` of the training set uses ``SeedSequence([seed, 0, i])`` and of the validation set
    ``SeedSequence([seed, 1, i])``, so neither set depends on the other's size. ``kwargs`` go to
    :func:`make_scenes` (``num_objects``, ``classes``, ``noise``, ``shadows``).

    Example:
        >>> tr, va = make_scene_splits(3, 2, size=16)
        >>> len(tr["image"]), len(va["image"])
        (3, 2)
    """
    for key in ("split", "first_index"):
        if key in kwargs:
            raise ValueError(f"`{key}`: set by make_scene_splits; use make_scenes to choose it")
    train = make_scenes(n_train, size=size, seed=seed, split="train", **kwargs)
    val = make_scenes(n_val, size=size, seed=seed, split="val", **kwargs)
    return train, val
