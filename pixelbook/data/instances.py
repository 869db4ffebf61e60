r"""Overlapping flat shapes with instance ids, for instance grouping (Chapter 6).

Every image holds 2–5 shapes (disks, squares, triangles) drawn in depth order on a noisy
background, so later shapes occlude earlier ones. Colours come from a small palette and at least
two instances of every image share a colour, so colour alone cannot separate instances: a pixel
must be grouped by shape and position. Each shape carries a 1-px darker outline, drawn before the
shapes in front of it, so that where two same-coloured shapes overlap the occluder's outline is
the only visible cue (without it the split would be unidentifiable).

``sizes="mixed"`` draws radii between 12% and 28% of the image side; ``sizes="unequal"`` one large
shape (32–42%) below 2–4 tiny ones (6–10%, a few dozen pixels at 32 × 32), the set on which the
instance-size weighting of the loss matters [Kong thesis, §5.3.1].

================ ================ =========================================================
key              shape / dtype    meaning
================ ================ =========================================================
image            (N,3,H,W) f32    RGB in [0, 1]
instances        (N,H,W) int64    0 background, 1..k shapes in drawing order (back to front)
labels           (N,H,W) int64    0 background, 1 disk, 2 square, 3 triangle
num_instances    (N,) int64       k, the number of visible shapes
================ ================ =========================================================

Full scale: :class:`VOCInstances` reads PASCAL VOC 2012 ``SegmentationObject`` masks and SBD's
``inst`` masks, the thesis' instance data [Kong thesis, §5.5.1].

Every image comes from its own ``np.random.SeedSequence([seed, split, index])``: an image does
not depend on how many are drawn with it, and the splits never coincide. No global random state
is touched. Every instance keeps at least ``min_visible`` visible pixels (a shape that would be
hidden more is dropped before rendering ids).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice, check_float, check_int
from .files import read_label_map, read_rgb

__all__ = ["SHAPES", "PALETTE", "make_instance_scenes", "VOC_INSTANCE_SPLITS", "VOCInstances", "InstanceTransform"]

#: Shape kinds; ``labels`` holds their index + 1.
SHAPES = ("disk", "square", "triangle")
#: The palette (ours): three saturated colours well away from the grey background.
PALETTE = np.array([[0.85, 0.25, 0.2], [0.2, 0.65, 0.3], [0.25, 0.35, 0.85]])
_SPLITS = ("train", "val", "test")
_RADII = {"mixed": (0.12, 0.28), "unequal_large": (0.32, 0.42), "unequal_small": (0.06, 0.10)}  # ours, × size
_OUTLINE_SHADE = 0.45  # ours: the outline keeps 45% of the fill colour
_COLOUR_JITTER = 0.03  # ours: per-instance colour noise, far below the palette spacing
_MAX_TRIES = 20  # ours: redraws of a scene whose instances are too hidden


def _shape_mask(kind: int, cy: float, cx: float, r: float, angle: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Bool mask of one shape; ``r`` is the radius (disk), half side (square) or circumradius."""
    dy, dx = yy - cy, xx - cx
    if kind == 0:
        return dy ** 2 + dx ** 2 <= r ** 2
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if kind == 1:
        return (np.abs(u) <= r) & (np.abs(v) <= r)
    # equilateral triangle with circumradius r: three half-planes at distance r/2 from the centre
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        a = 2 * math.pi * k / 3
        inside &= math.cos(a) * u + math.sin(a) * v <= r / 2
    return inside


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour erosion (pixels outside the image count as outside the shape)."""
    p = np.pad(mask, 1)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _sample_shapes(rng: np.random.Generator, size: int, lo: int, hi: int, sizes: str) -> list[dict]:
    k = int(rng.integers(lo, hi + 1))
    if sizes == "mixed":
        radii = rng.uniform(*_RADII["mixed"], k) * size
    else:
        radii = np.concatenate([rng.uniform(*_RADII["unequal_large"], 1),
                                rng.uniform(*_RADII["unequal_small"], k - 1)]) * size
    colours = rng.integers(0, len(PALETTE), k)  # a repeated colour is enforced later, in _colour
    shapes = []
    for i in range(k):
        r = float(radii[i])
        if i and rng.random() < 0.75:  # ours: most shapes overlap or touch an earlier one
            other = shapes[int(rng.integers(0, i))]
            dist = rng.uniform(0.5, 1.1) * (r + other["r"])
            a = rng.uniform(0, 2 * math.pi)
            cy, cx = other["cy"] + dist * math.sin(a), other["cx"] + dist * math.cos(a)
            cy, cx = float(np.clip(cy, 0, size - 1)), float(np.clip(cx, 0, size - 1))
        else:
            cy, cx = rng.uniform(0.15, 0.85, 2) * (size - 1)
        shapes.append(dict(kind=int(rng.integers(0, len(SHAPES))), cy=float(cy), cx=float(cx), r=r,
                           angle=float(rng.uniform(0, 2 * math.pi)), palette=int(colours[i])))
    return shapes


def _colour(rng: np.random.Generator, shapes: list[dict]) -> None:
    """Give every shape its fill colour, first making sure two shapes share a palette entry."""
    used = [sh["palette"] for sh in shapes]
    if len(set(used)) == len(used):  # a dropped shape may have taken the repeated colour with it
        i, j = rng.choice(len(shapes), 2, replace=False)
        shapes[j]["palette"] = shapes[i]["palette"]
    for sh in shapes:
        sh["colour"] = np.clip(PALETTE[sh["palette"]] + rng.normal(0, _COLOUR_JITTER, 3), 0, 1)


def _render(shapes: list[dict], size: int, background: np.ndarray):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = background.copy()
    inst = np.zeros((size, size), dtype=np.int64)
    lab = np.zeros((size, size), dtype=np.int64)
    for i, sh in enumerate(shapes, start=1):
        m = _shape_mask(sh["kind"], sh["cy"], sh["cx"], sh["r"], sh["angle"], yy, xx)
        colour = sh.get("colour", PALETTE[sh["palette"]])  # before _colour: ids only matter
        image[m] = colour
        image[m & ~_erode(m)] = colour * _OUTLINE_SHADE
        inst[m], lab[m] = i, sh["kind"] + 1
    return image, inst, lab


def _scene(rng: np.random.Generator, size: int, lo: int, hi: int, sizes: str, noise: float, min_visible: int):
    grey = rng.uniform(0.45, 0.7)
    background = grey + 0.06 * rng.standard_normal((size, size, 1)) * np.ones(3)
    for _ in range(_MAX_TRIES):
        shapes = _sample_shapes(rng, size, lo, hi, sizes)
        while True:  # drop the most hidden shape until every instance is visible enough
            image, inst, lab = _render(shapes, size, background)
            counts = np.bincount(inst.ravel(), minlength=len(shapes) + 1)[1:]
            worst = int(counts.argmin())
            if counts[worst] >= min_visible or len(shapes) <= lo:
                break
            shapes.pop(worst)
        if counts.min() >= min_visible and len(shapes) >= lo:
            _colour(rng, shapes)
            image, inst, lab = _render(shapes, size, background)
            break
    else:  # pragma: no cover - needs a pathological size/min_visible combination
        raise RuntimeError(f"could not place {lo} shapes with {min_visible} visible pixels each in {_MAX_TRIES} tries")
    image = np.clip(image + noise * rng.standard_normal(image.shape), 0, 1)
    return image, inst, lab


def make_instance_scenes(n: int, size: int = 32, seed: int = 0, split: str = "train", *,
                         num_shapes: tuple[int, int] = (2, 5), sizes: str = "mixed", noise: float = 0.03,
                         min_visible: int | None = None) -> dict:
    """Images of overlapping same-coloured shapes with instance ids (see the module docstring).

    Args:
        n: number of images.
        size: image side (≥ 16).
        seed: base seed; with ``split`` and the image index it seeds each image.
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint seed streams).
        num_shapes: inclusive range of shapes per image (≥ 2: a repeated colour needs two).
        sizes: ``"mixed"`` or ``"unequal"`` (one large shape, the rest tiny).
        noise: standard deviation of the per-pixel Gaussian noise.
        min_visible: fewest visible pixels per instance; default 12 (``mixed``) or 6 (``unequal``),
            ours.

    Returns:
        dict with ``image`` ``(n, 3, size, size)`` float32, ``instances`` and ``labels``
        ``(n, size, size)`` int64, ``num_instances`` ``(n,)`` int64.

    Example:
        >>> d = make_instance_scenes(4, size=32, seed=0)
        >>> tuple(d["image"].shape), d["num_instances"].tolist()
        ((4, 3, 32, 32), [5, 2, 5, 2])
    """
    n = check_int(n, "n", low=1)
    size = check_int(size, "size", low=16)
    seed = check_int(seed, "seed", low=0)
    check_choice(split, "split", _SPLITS)
    check_choice(sizes, "sizes", ("mixed", "unequal"))
    noise = check_float(noise, "noise", 0.0, 1.0)
    if not (isinstance(num_shapes, (tuple, list)) and len(num_shapes) == 2):
        raise ValueError(f"`num_shapes`: expected a (low, high) pair, got {num_shapes!r}")
    lo = check_int(num_shapes[0], "num_shapes[0]", low=2)
    hi = check_int(num_shapes[1], "num_shapes[1]", low=lo)
    if min_visible is None:
        min_visible = 12 if sizes == "mixed" else 6
    min_visible = check_int(min_visible, "min_visible", low=1)
    images, insts, labs = [], [], []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLITS.index(split), i]))
        image, inst, lab = _scene(rng, size, lo, hi, sizes, noise, min_visible)
        images.append(image)
        insts.append(inst)
        labs.append(lab)
    instances = torch.from_numpy(np.stack(insts))
    return {
        "image": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().contiguous(),
        "instances": instances,
        "labels": torch.from_numpy(np.stack(labs)),
        "num_instances": instances.flatten(1).max(1).values,
    }


# ------------------------------------------------------------------------------------------------
# full scale: PASCAL VOC 2012 + SBD instance masks [Kong thesis, §5.5.1]
# ------------------------------------------------------------------------------------------------

#: Splits of :class:`VOCInstances`.
VOC_INSTANCE_SPLITS = ("train", "val", "train_aug")
_VOID = 255  # VOC's void label (object borders and difficult regions)


def _read_ids(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class VOCInstances(torch.utils.data.Dataset):
    """PASCAL VOC 2012 instance masks, optionally with SBD's [Kong thesis, §5.5.1].

    The thesis trains on 10,582 images (VOC 2012 train + SBD train/val, minus VOC val) and
    evaluates on the 1,449 images of VOC 2012 val. VOC's ``SegmentationObject`` PNGs number the
    instances of an image 1..k with 255 on void borders; ``SegmentationClass`` gives each pixel's
    class. SBD's ``inst/<id>.mat`` holds ``GTinst.Segmentation`` (instance map, 0 = background)
    and ``GTinst.Categories`` (class of each instance); SBD has no void label. An image annotated
    by both uses VOC's masks. The archives are those of torchvision's ``VOCSegmentation`` (VOC 2012
    trainval tar, ~2 GB, which contains ``SegmentationObject``) and ``SBDataset`` (~1.4 GB), which
    download them with ``download=True``.

    Args:
        root: folder holding ``VOCdevkit/VOC2012`` and (for ``train_aug``) ``SBD`` (the contents of
            ``benchmark_RELEASE/dataset``: ``img/``, ``inst/``, ``train.txt``, ``val.txt``). ``None``
            uses ``<cache>/datasets/voc2012``, shared with :class:`~pixelbook.data.segmentation.VOCAugSegmentation`.
        split: ``"train"`` (1,464), ``"val"`` (1,449) or ``"train_aug"`` (10,582 on the real data).
        download: let torchvision download what is missing.
        transform: optional callable applied to each sample dict.

    A sample: ``image`` ``(3, H, W)`` float32 in [0, 1]; ``instances`` ``(H, W)`` int64, 0
    background, 1..k instances, 255 void; ``labels`` ``(H, W)`` int64 classes in ``[0, 21)`` or 255;
    ``valid`` ``(H, W)`` bool (``instances != 255``); ``id``.

    Raises:
        FileNotFoundError: naming ``root`` when the folders are missing and ``download=False``.
    """

    def __init__(self, root=None, split: str = "val", *, download: bool = False, transform=None):
        from ..runtime import cache_dir

        check_choice(split, "split", VOC_INSTANCE_SPLITS)
        root = Path(cache_dir("datasets", "voc2012") if root is None else root)
        voc = root / "VOCdevkit" / "VOC2012"
        if not (voc / "SegmentationObject").is_dir():
            if not download:
                raise FileNotFoundError(f"`root`: no '{voc / 'SegmentationObject'}'; pass download=True (torchvision "
                                        f"downloads VOC 2012, ~2 GB) or unpack VOCtrainval_11-May-2012.tar into '{root}'")
            from torchvision.datasets import VOCSegmentation

            VOCSegmentation(str(root), year="2012", image_set="val", download=True)
        lists = voc / "ImageSets" / "Segmentation"
        voc_split = "train" if split == "train_aug" else split
        self.files = {i: ("voc", voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationObject" / f"{i}.png",
                          voc / "SegmentationClass" / f"{i}.png") for i in _read_ids(lists / f"{voc_split}.txt")}
        if split == "train_aug":
            sbd = root / "SBD"
            if not (sbd / "inst").is_dir():
                if not download:
                    raise FileNotFoundError(f"`root`: no '{sbd / 'inst'}'; pass download=True (torchvision downloads "
                                            f"SBD, ~1.4 GB) or put benchmark_RELEASE/dataset's contents in '{sbd}'")
                from torchvision.datasets import SBDataset

                SBDataset(str(sbd), image_set="train", mode="segmentation", download=True)
            val_ids = set(_read_ids(lists / "val.txt"))
            for name in ("train.txt", "val.txt"):
                for i in _read_ids(sbd / name):
                    if i not in val_ids and i not in self.files:
                        self.files[i] = ("sbd", sbd / "img" / f"{i}.jpg", sbd / "inst" / f"{i}.mat", None)
        self.ids = sorted(self.files)
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        name = self.ids[i]
        source, img_path, inst_path, cls_path = self.files[name]
        if source == "voc":
            instances = read_label_map(inst_path)
            labels = read_label_map(cls_path)
        else:
            import scipy.io

            gt = scipy.io.loadmat(inst_path)["GTinst"][0, 0]
            instances = torch.from_numpy(np.asarray(gt["Segmentation"]).astype(np.int64))
            categories = torch.from_numpy(np.asarray(gt["Categories"]).astype(np.int64).reshape(-1))
            lut = torch.cat([torch.zeros(1, dtype=torch.long), categories])  # instance id -> class
            if int(instances.max()) >= len(lut):
                raise ValueError(f"'{inst_path}': instance id {int(instances.max())} but {len(categories)} categories")
            labels = lut[instances]
        image = read_rgb(img_path)
        if image.shape[1:] != instances.shape:
            raise ValueError(f"'{inst_path}': instances {tuple(instances.shape)} != image {tuple(image.shape[1:])}")
        out = {"image": image, "instances": instances, "labels": labels, "valid": instances != _VOID, "id": name}
        return self.transform(out) if self.transform is not None else out


class InstanceTransform:
    """The thesis' augmentation for instance embeddings [Kong thesis, §5.5.1], on VOCInstances samples.

    Training: normalise the image (ImageNet mean and std), scale image and masks by a factor drawn
    uniformly from ``scales`` (image bilinear with antialiasing, ``instances`` and ``labels``
    nearest), rotate by an angle drawn uniformly from ``[-rotate, rotate]`` degrees, flip left-right
    with probability 1/2, pad the bottom and right up to ``crop`` and take a random ``crop`` ×
    ``crop`` crop; pixels brought in by the rotation or the padding are void (255) in the masks and 0
    (the mean colour) in the image. ``valid`` is recomputed (``instances != 255``). The thesis also
    jitters colours and crops "with a 20-pixel margin"; neither is reproduced (ours).
    Evaluation (``train=False``): normalise and resize to ``size`` × ``size`` (the image bilinear with
    antialiasing, the masks nearest; a square, so images of any shape stack), no augmentation.

    Args:
        crop: side of the training crop.
        scales: ``(lo, hi)`` of the random scale factor (thesis: 0.5, 1.5).
        rotate: largest rotation in degrees (thesis: 10).
        train: augment (True) or resize for evaluation (False).
        size: side of the evaluation images (``train=False`` only).
        generator: optional ``torch.Generator`` for reproducible augmentation.

    Example:
        >>> t = InstanceTransform(crop=8, generator=torch.Generator().manual_seed(0))
        >>> inst = torch.zeros(6, 10, dtype=torch.long); inst[:, 5:] = 1
        >>> out = t({"image": torch.rand(3, 6, 10), "instances": inst, "labels": inst * 3})
        >>> tuple(out["image"].shape), tuple(out["instances"].shape), out["valid"].dtype
        ((3, 8, 8), (8, 8), torch.bool)
    """

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, crop: int = 320, scales=(0.5, 1.5), rotate: float = 10.0, train: bool = True,
                 size: int | None = None, generator: torch.Generator | None = None):
        self.crop = check_int(crop, "crop", low=1)
        scales = tuple(float(v) for v in scales)
        if len(scales) != 2 or not 0 < scales[0] <= scales[1]:
            raise ValueError(f"`scales`: expected (lo, hi) with 0 < lo <= hi, got {scales}")
        self.scales, self.rotate = scales, check_float(rotate, "rotate", low=0.0)
        if not train and size is None:
            raise ValueError("`size`: evaluation (train=False) resizes to size x size; give it")
        self.train, self.size, self.generator = bool(train), size, generator

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def __call__(self, sample: dict) -> dict:
        from torchvision import tv_tensors
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        image = TF.normalize(tv_tensors.Image(sample["image"]), self.MEAN, self.STD)
        masks = tv_tensors.Mask(torch.stack([sample["instances"], sample["labels"]]))
        if not self.train:
            size = [self.size, self.size]
            image, masks = TF.resize(image, size), TF.resize(masks, size)
        else:
            H, W = masks.shape[-2:]
            s = self.scales[0] + (self.scales[1] - self.scales[0]) * self._rand()
            size = [max(1, round(H * s)), max(1, round(W * s))]
            image, masks = TF.resize(image, size), TF.resize(masks, size)
            angle = (2 * self._rand() - 1) * self.rotate
            image = TF.rotate(image, angle, InterpolationMode.BILINEAR, fill=0.0)
            masks = TF.rotate(masks, angle, InterpolationMode.NEAREST, fill=_VOID)
            if self._rand() < 0.5:
                image, masks = TF.horizontal_flip(image), TF.horizontal_flip(masks)
            k = self.crop
            pad = [0, 0, max(0, k - size[1]), max(0, k - size[0])]  # left, top, right, bottom
            image, masks = TF.pad(image, pad, fill=0.0), TF.pad(masks, pad, fill=_VOID)
            H2, W2 = masks.shape[-2:]
            r, c = int(self._rand() * (H2 - k + 1)), int(self._rand() * (W2 - k + 1))
            image, masks = TF.crop(image, r, c, k, k), TF.crop(masks, r, c, k, k)
        masks = masks.as_subclass(torch.Tensor)
        instances, labels = masks[0].contiguous(), masks[1].contiguous()
        return {**sample, "image": image.as_subclass(torch.Tensor).contiguous(), "instances": instances,
                "labels": labels, "valid": instances != _VOID}
