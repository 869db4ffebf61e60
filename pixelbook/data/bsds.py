"""BSDS500: 500 natural images with 5-9 human segmentations each, for boundary detection [BSDS].

The archive (``BSR_bsds500.tgz``, or ``BSR_full.tgz`` which adds the benchmark code) unpacks to::

    BSR/BSDS500/data/images/{train,val,test}/<id>.jpg          (481 x 321 or 321 x 481)
    BSR/BSDS500/data/groundTruth/{train,val,test}/<id>.mat

with 200 / 100 / 200 images. Each ``.mat`` (MATLAB v5, read with ``scipy.io.loadmat``) holds a
cell array ``groundTruth`` with one struct per annotator, fields ``Segmentation`` (region ids,
uint16) and ``Boundaries`` (uint8 0/1, the region borders).

Two registry entries: ``bsds500_full`` (``BSR_full.tgz``, 252 MB) has a sha256 recorded by the
``tensorflow-datasets-bw`` project's checksum file, so it is the default; ``bsds500``
(``BSR_bsds500.tgz``, ~70 MB, data only) has no published sha256 and needs ``verify=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice
from .files import read_rgb
from .registry import DatasetSpec, dataset_dir, extract, fetch, register

__all__ = ["BSDS500", "load_bsds_ground_truth", "BSDS_SPLITS"]

BSDS_SPLITS = ("train", "val", "test")
_HOMEPAGE = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/resources.html"
_TERMS = "no licence file in the archive; cite Arbelaez et al., TPAMI 2011 (see the homepage)"
_LAYOUT = "BSR/BSDS500/data/{images,groundTruth}/{train,val,test}"

register(DatasetSpec(
    name="bsds500",
    url="https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",
    sha256=None,  # none published
    filename="BSR_bsds500.tgz",
    description="BSDS500 images and human segmentations/boundaries (data only)",
    licence=_TERMS,
    homepage=_HOMEPAGE,
))
register(DatasetSpec(
    name="bsds500_full",
    url="https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_full.tgz",
    # recorded in HedgehogCode/tensorflow-datasets-bw, tensorflow_datasets_bw/bsds500/checksums.tsv
    sha256="4c34984b11f4efe83c2754dc94760e7fe2a93b66e3fe44d231bddf6e0fb6b4f9",
    filename="BSR_full.tgz",
    size_bytes=252190720,
    description="BSDS500 data plus the benchmark and gPb-owt-ucm code",
    licence=_TERMS,
    homepage=_HOMEPAGE,
))


def load_bsds_ground_truth(path) -> tuple[np.ndarray, np.ndarray]:
    """Segmentations and boundaries of every annotator in a BSDS500 ``groundTruth`` file.

    Returns:
        ``(segmentations (A, H, W) int64, boundaries (A, H, W) bool)``.

    Raises:
        ValueError: the file is not a MATLAB file with a non-empty ``groundTruth`` cell array
            of structs with ``Segmentation`` and ``Boundaries`` of one shape.
    """
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, variable_names=["groundTruth"])
    except Exception as exc:  # scipy raises ValueError, IndexError, ... on a damaged file
        raise ValueError(f"'{path}': not a readable MATLAB v5 file ({type(exc).__name__}: {exc})") from exc
    if "groundTruth" not in mat or mat["groundTruth"].size == 0:
        raise ValueError(f"'{path}': expected a non-empty cell array `groundTruth`")
    segs, bnds = [], []
    for a, cell in enumerate(mat["groundTruth"].reshape(-1)):
        st = cell.reshape(-1)[0] if isinstance(cell, np.ndarray) and cell.dtype == object else cell
        st = st.reshape(-1)[0] if isinstance(st, np.ndarray) and st.dtype.names is not None else st
        try:
            seg, bnd = np.asarray(st["Segmentation"]), np.asarray(st["Boundaries"])
        except (KeyError, ValueError, IndexError, TypeError):
            raise ValueError(f"'{path}': annotator {a} lacks the fields `Segmentation` and `Boundaries`") from None
        while seg.dtype == object:
            seg = seg.reshape(-1)[0]
        while bnd.dtype == object:
            bnd = bnd.reshape(-1)[0]
        if seg.ndim != 2 or seg.shape != bnd.shape or (segs and seg.shape != segs[0].shape):
            raise ValueError(f"'{path}': annotator {a} has Segmentation {seg.shape} / Boundaries {bnd.shape}")
        segs.append(seg.astype(np.int64))
        bnds.append(bnd.astype(bool))
    return np.stack(segs), np.stack(bnds)


def _find_data_dir(root: Path) -> Path | None:
    for cand in (root / "BSR" / "BSDS500" / "data", root / "BSDS500" / "data", root / "data", root):
        if (cand / "images").is_dir() and (cand / "groundTruth").is_dir():
            return cand
    return None


class BSDS500(torch.utils.data.Dataset):
    """BSDS500 images with the human boundary maps [BSDS].

    Args:
        root: a folder containing ``BSR/BSDS500/data`` (the unpacked archive) or that ``data``
            folder itself; ``None`` fetches and unpacks ``archive`` through the registry.
        split: ``"train"`` (200), ``"val"`` (100) or ``"test"`` (200).
        download: with ``root=None``, allow the download.
        archive: registry entry to use with ``root=None``: ``"bsds500_full"`` (verified) or
            ``"bsds500"`` (needs ``verify=False``).
        verify: passed to :func:`~pixelbook.data.registry.fetch`.
        transform: optional callable applied to each sample dict.

    A sample is a dict: ``image`` ``(3, H, W)`` float32 in [0, 1] (the JPEG read by
    :func:`pixelbook.data.files.read_rgb`, not resized); ``boundaries`` ``(H, W)`` float32, the
    mean over annotators (the fraction of people who drew a boundary there); ``boundaries_all``
    ``(A, H, W)`` bool; ``segmentations`` ``(A, H, W)`` int64; ``id`` str. Images are landscape or
    portrait and ``A`` varies (5-9), so batch with ``batch_size=1`` or a ``transform`` that crops.

    Raises:
        FileNotFoundError: no BSDS500 layout under ``root``, or a ground-truth file is missing.
        ValueError (on access): an unreadable image or ``.mat`` file, or ground truth of another
            size than its image.
    """

    def __init__(self, root=None, split: str = "train", *, download: bool = False,
                 archive: str = "bsds500_full", verify: bool = True, transform=None):
        check_choice(split, "split", BSDS_SPLITS)
        check_choice(archive, "archive", ("bsds500_full", "bsds500"))
        if root is None:
            path = fetch(archive, download=download, verify=verify)
            root = extract(path, dataset_dir(archive) / "extracted")
        root = Path(root)
        data = _find_data_dir(root)
        if data is None:
            raise FileNotFoundError(f"`root`: no BSDS500 data under '{root}'; expected the layout {_LAYOUT}")
        img_dir, gt_dir = data / "images" / split, data / "groundTruth" / split
        if not img_dir.is_dir():
            raise FileNotFoundError(f"`root`: missing folder '{img_dir}' (layout {_LAYOUT})")
        self.ids = sorted(p.stem for p in img_dir.glob("*.jpg"))
        if not self.ids:
            raise FileNotFoundError(f"`root`: no .jpg images in '{img_dir}'")
        missing = [i for i in self.ids if not (gt_dir / f"{i}.mat").is_file()]
        if missing:
            raise FileNotFoundError(f"`root`: no ground truth for {missing[:5]} in '{gt_dir}'")
        self.split, self.img_dir, self.gt_dir, self.transform = split, img_dir, gt_dir, transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        name = self.ids[i]
        img = read_rgb(self.img_dir / f"{name}.jpg")
        segs, bnds = load_bsds_ground_truth(self.gt_dir / f"{name}.mat")
        if bnds.shape[1:] != tuple(img.shape[1:]):
            raise ValueError(f"'{self.gt_dir / name}.mat': ground truth {bnds.shape[1:]} != image {tuple(img.shape[1:])}")
        b = torch.from_numpy(bnds)
        out = {
            "image": img,
            "boundaries": b.float().mean(0),
            "boundaries_all": b,
            "segmentations": torch.from_numpy(segs),
            "id": name,
        }
        return self.transform(out) if self.transform is not None else out
