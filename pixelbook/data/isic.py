r"""ISIC 2018 skin-lesion segmentation (Task 1) and the star-shaped subset of [STD, Sec. 4.3.3].

[STD] trains and evaluates its star-shape prior on ISIC 2018 Task 1: "of 2594 images, the
non-star-shaped objects were removed, leaving 2198", split at random into 1758 training and 440
validation images, with the lesion's centre "mainly produced by the geometric center of the
ground truth" in training and at test time. The paper does not say how "non-star-shaped" was
decided; we keep a lesion when at most ``max_violation`` (default 1 %) of its pixels see a point
outside the lesion on their straight segment to the lesion's centroid
(:func:`pixelbook.metrics.star_violations`, on the mask resized to 128×128). How many images that
keeps on the real data is printed by :func:`isic2018_star_subset`; it need not be 2198.

The two official archives (from https://challenge.isic-archive.com/data/#2018, no published
checksum, so they are fetched with ``verify=False``) unpack to::

    ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg, ...             2594 dermoscopic images
    ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png  lesion masks, 0 or 255

PASCAL VOC 2012, the paper's other dataset, is read through torchvision by
:class:`pixelbook.data.segmentation.VOCAugSegmentation`.

A sample is a dict: ``image`` ``(3, S, S)`` float32 (ImageNet-normalised by default), ``labels``
``(S, S)`` int64 in {0, 1}, ``center`` ``(2,)`` float32 (row, col) — the centroid of ``labels``,
the paper's oracle star centre —, ``volume`` ``(2,)`` float32 pixel counts (background, lesion), the
paper's oracle volumes, and ``id``. Importing this module touches no network and no file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..runtime import cache_dir
from ._joint import apply_joint
from .files import find_pairs, read_grey, read_rgb
from .registry import DatasetSpec, extract, fetch, register

__all__ = ["ISIC2018_COUNT", "PAPER_STAR_COUNT", "isic2018_root", "isic2018_pairs", "ISIC2018", "star_fraction",
           "isic2018_star_subset", "isic2018_star_splits"]

#: Images in the ISIC 2018 Task 1 training set.
ISIC2018_COUNT = 2594
#: Star-shaped images the paper kept [STD, Sec. 4.3.3] (its criterion is not given).
PAPER_STAR_COUNT = 2198
_HOME = "https://challenge.isic-archive.com/data/#2018"
_LICENCE = "CC BY-NC 4.0 (ISIC Archive); cite Codella et al. 2019 and Tschandl et al. 2018"
_INPUT, _GT = "isic2018_task1_input", "isic2018_task1_gt"
_IMAGE_GLOB = "**/ISIC2018_Task1-2_Training_Input/ISIC_*.jpg"
_MASK_GLOB = "**/ISIC2018_Task1_Training_GroundTruth/ISIC_*_segmentation.png"
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet statistics (torchvision backbones)

register(DatasetSpec(
    name=_INPUT, url="https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task1-2_Training_Input.zip",
    sha256=None, filename="ISIC2018_Task1-2_Training_Input.zip",
    description="ISIC 2018 Task 1-2 training images: 2594 dermoscopic JPEGs (about 10 GB)",
    licence=_LICENCE, homepage=_HOME))
register(DatasetSpec(
    name=_GT, url="https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task1_Training_GroundTruth.zip",
    sha256=None, filename="ISIC2018_Task1_Training_GroundTruth.zip",
    description="ISIC 2018 Task 1 training lesion masks: 2594 PNGs, 0 = skin, 255 = lesion",
    licence=_LICENCE, homepage=_HOME))


def isic2018_root(*, download: bool = False, verify: bool = False) -> Path:
    """Fetch both ISIC 2018 Task 1 archives through the registry, unpack them, return the folder.

    Raises:
        FileNotFoundError: an archive is not cached and ``download=False`` (the message says where
            to put it and where to get it).
    """
    base = Path(cache_dir("datasets", "isic2018"))
    for name in (_INPUT, _GT):
        extract(fetch(name, download=download, verify=verify), base / name)
    return base


def isic2018_pairs(root) -> list:
    """``(image_path, mask_path)`` pairs under ``root`` (searched recursively), sorted by id
    (:func:`pixelbook.data.files.find_pairs`; a mask ``<id>_segmentation.png`` pairs with ``<id>.jpg``).

    Raises:
        FileNotFoundError: no masks, a mask without its image, or two files of one id, naming the
            expected layout.
    """
    return find_pairs(root, _IMAGE_GLOB, _MASK_GLOB, title="ISIC 2018", mask_suffix="_segmentation")


def _read_mask(path) -> torch.Tensor:
    """The lesion mask at ``path`` as ``(H, W)`` bool; ``ValueError`` unless it holds only 0 and 255."""
    m = read_grey(path)
    values = m.unique()
    if not set(values.tolist()) <= {0, 255}:
        raise ValueError(f"'{path}': expected a lesion mask of 0 and 255, got values {values[:8].tolist()}")
    return m == 255


def star_fraction(mask: torch.Tensor, size: int = 128) -> float:
    """Fraction of the lesion's pixels that violate the star constraint about its centroid.

    ``mask`` ``(H, W)`` bool is resized (nearest) to ``size``×``size`` first, so that the cost is
    the same for every image; an empty mask returns 1.0 (no centre exists).

    Example:
        >>> m = torch.zeros(20, 20, dtype=torch.bool); m[5:15, 5:15] = True
        >>> star_fraction(m, size=20)
        0.0
    """
    from ..metrics.shape import star_violations
    from ..ops.regions import centroid

    if not torch.is_tensor(mask) or mask.ndim != 2:
        raise ValueError(f"`mask`: expected an (H, W) tensor, got {getattr(mask, 'shape', type(mask).__name__)}")
    m = F.interpolate(mask[None, None].float(), size=(size, size), mode="nearest")[0] > 0.5
    area = int(m.sum())
    if area == 0:
        return 1.0
    return float(star_violations(m, centroid(m.float()))[0]) / area


class ISIC2018(torch.utils.data.Dataset):
    """ISIC 2018 Task 1 lesion segmentation at a fixed square size, with the paper's oracle priors.

    Per sample: the image is read as RGB in [0, 1] and the mask (0 / 255 only, else
    ``ValueError``) as ``labels`` in {0, 1}; one ``torchvision.transforms.v2`` pipeline on the
    pair (``tv_tensors.Image`` / ``tv_tensors.Mask``) resizes both to ``size`` × ``size`` (image
    bilinear with antialiasing, labels nearest) and, with ``train``, flips both left-right and
    up-down, each with probability 1/2; then the image is normalised with ImageNet's mean and std
    (``normalize``). ``center`` and ``volume`` are computed from the resized (and flipped) labels.

    Args:
        root: a folder holding the two unpacked archives (searched recursively); ``None`` fetches
            and unpacks them through the registry (``download`` and ``verify`` are passed on).
        size: side of the square the image and mask are resized to.
        ids: keep only these image ids (e.g. :func:`isic2018_star_subset`), in this order.
        train: random horizontal and vertical flips.
        normalize: ImageNet mean/std normalisation (for torchvision backbones).
        generator: optional ``torch.Generator`` that makes the flips reproducible.

    Raises:
        FileNotFoundError: missing archives or layout; ValueError: an unknown id, a bad ``size``,
            and (on access) an unreadable file or a mask of other values than 0 and 255.
    """

    def __init__(self, root=None, *, size: int = 321, ids=None, train: bool = False, normalize: bool = True,
                 download: bool = False, verify: bool = False, generator: torch.Generator | None = None):
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"`size`: expected an int >= 8, got {size!r}")
        root = isic2018_root(download=download, verify=verify) if root is None else Path(root)
        pairs = {p[0].stem: p for p in isic2018_pairs(root)}
        if ids is not None:
            missing = [i for i in ids if i not in pairs]
            if missing:
                raise ValueError(f"`ids`: {len(missing)} ids not in the data (first: {missing[0]!r})")
            pairs = {i: pairs[i] for i in ids}
        self.ids, self.pairs = list(pairs), pairs
        self.size, self.train, self.normalize, self.generator = size, train, normalize, generator

    def __len__(self) -> int:
        return len(self.ids)

    def _pipeline(self):
        from torchvision.transforms import v2

        steps = [v2.Resize((self.size, self.size))]
        if self.train:
            steps += [v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5)]
        if self.normalize:
            steps.append(v2.Normalize(_MEAN, _STD))  # acts on the image only
        return v2.Compose(steps)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        name = self.ids[i]
        img_path, mask_path = self.pairs[name]
        image, mask = read_rgb(img_path), _read_mask(mask_path)
        if image.shape[1:] != mask.shape:
            raise ValueError(f"'{mask_path}': mask {tuple(mask.shape)} != image {tuple(image.shape[1:])}")
        image, labels = apply_joint(self._pipeline(), image, mask.long(), self.generator)
        S = (self.size, self.size)
        fg = labels.float()
        area = fg.sum()
        if float(area) > 0:
            rows = torch.arange(S[0], dtype=torch.float32)
            cols = torch.arange(S[1], dtype=torch.float32)
            center = torch.stack([(fg.sum(1) * rows).sum() / area, (fg.sum(0) * cols).sum() / area])
        else:  # no lesion left at this size: the image centre (a star prior is then meaningless)
            center = torch.tensor([(S[0] - 1) / 2, (S[1] - 1) / 2])
        volume = torch.stack([S[0] * S[1] - area, area]).float()
        return {"image": image.contiguous(), "labels": labels, "center": center, "volume": volume, "id": name}


def isic2018_star_subset(root=None, *, max_violation: float = 0.01, size: int = 128, download: bool = False,
                         verify: bool = False, verbose: bool = True) -> list:
    """Ids of the lesions that are star-shaped about their centroid (our reading of [STD, Sec. 4.3.3]).

    The :func:`star_fraction` of every mask is computed once and cached as JSON in
    ``<cache>/datasets/isic2018/star_fraction-<size>-<hash of root>.json``.

    Args:
        max_violation: keep a lesion when at most this fraction of its pixels violate the constraint.
        size: the resolution of the test (the masks are resized to ``size``×``size``).
    """
    if not 0 <= max_violation <= 1:
        raise ValueError(f"`max_violation`: expected a fraction in [0, 1], got {max_violation!r}")
    root = isic2018_root(download=download, verify=verify) if root is None else Path(root)
    key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:10]
    cache = Path(cache_dir("datasets", "isic2018")) / f"star_fraction-{size}-{key}.json"
    fractions = json.loads(cache.read_text()) if cache.is_file() else {}
    pairs = isic2018_pairs(root)
    todo = [(img.stem, mask) for img, mask in pairs if img.stem not in fractions]
    for name, mask in todo:
        fractions[name] = star_fraction(_read_mask(mask), size)
    if todo:
        cache.write_text(json.dumps(fractions, indent=0, sort_keys=True))
    keep = [img.stem for img, _ in pairs if fractions[img.stem] <= max_violation]
    if verbose:
        print(f"ISIC 2018 star subset: {len(keep)} of {len(pairs)} lesions have <= {100 * max_violation:g} % "
              f"violating pixels (the paper kept {PAPER_STAR_COUNT} of {ISIC2018_COUNT})")
    return keep


def isic2018_star_splits(root=None, *, size: int = 321, max_violation: float = 0.01, val_fraction: float = 0.2,
                         seed: int = 0, download: bool = False, verify: bool = False) -> tuple:
    """The paper's protocol: the star subset split at random 80 / 20 into training and validation sets.

    Returns:
        ``(train, val)`` :class:`ISIC2018` datasets (the training one with random flips).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"`val_fraction`: expected a fraction in (0, 1), got {val_fraction!r}")
    root = isic2018_root(download=download, verify=verify) if root is None else Path(root)
    ids = isic2018_star_subset(root, max_violation=max_violation)
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(val_fraction * len(ids)))
    val_ids = sorted(ids[i] for i in order[:n_val])
    train_ids = sorted(ids[i] for i in order[n_val:])
    return (ISIC2018(root, size=size, ids=train_ids, train=True),
            ISIC2018(root, size=size, ids=val_ids, train=False))
