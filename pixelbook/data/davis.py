"""DAVIS 2017 (semi-supervised video object segmentation), the evaluation set of Chapter 8 [DAVIS17].

The official archive ``DAVIS-2017-trainval-480p.zip`` (about 800 MB) unpacks to::

    DAVIS/JPEGImages/480p/<sequence>/00000.jpg, 00001.jpg, ...
    DAVIS/Annotations/480p/<sequence>/00000.png, ...      (palette PNGs: 0 = background, k = object k)
    DAVIS/ImageSets/2017/train.txt, val.txt               (60 / 30 sequence names)

The thesis evaluates mask propagation on the 30 ``val`` sequences and trains on unlabelled video
including DAVIS [KONG, §7.3.1]; :class:`DAVIS2017` gives both: every frame of a sequence with its
annotations (all frames are annotated in trainval; only frame 0 is an input of the task). No
checksum is published: fetch it with ``verify=False`` (the registry then prints the file's sha256).
The URL could not be checked from this offline build.

[DAVIS17] J. Pont-Tuset, F. Perazzi, S. Caelles, P. Arbeláez, A. Sorkine-Hornung, L. Van Gool,
"The 2017 DAVIS Challenge on Video Object Segmentation", arXiv:1704.00675.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .._checks import check_choice
from .files import read_label_map, read_rgb
from .registry import DatasetSpec, dataset_dir, extract, fetch, register

__all__ = ["DAVIS2017", "DAVIS_SPLITS"]

DAVIS_SPLITS = ("train", "val")
_LAYOUT = "DAVIS/{JPEGImages,Annotations}/480p/<sequence>/*.{jpg,png} and DAVIS/ImageSets/2017/{train,val}.txt"

register(DatasetSpec(
    name="davis2017",
    url="https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip",
    sha256=None,  # none published
    filename="DAVIS-2017-trainval-480p.zip",
    description="DAVIS 2017 train+val, 480p: 90 sequences with per-frame object masks",
    licence="BSD (annotations) / see the homepage for the images' terms",
    homepage="https://davischallenge.org/davis2017/code.html",
))


def _find_root(root: Path) -> Path | None:
    for cand in (root / "DAVIS", root):
        if (cand / "JPEGImages").is_dir() and (cand / "Annotations").is_dir() and (cand / "ImageSets").is_dir():
            return cand
    return None


class DAVIS2017(torch.utils.data.Dataset):
    """DAVIS 2017 sequences, one sample per sequence.

    Args:
        root: a folder containing ``DAVIS/`` (the unpacked archive) or that folder itself; ``None``
            fetches and unpacks the archive through the registry (``download=True`` to allow it).
        split: ``"val"`` (30 sequences, the thesis' evaluation) or ``"train"`` (60).
        size: ``None`` (native 480p) or the shorter side in pixels; frames are resized bilinearly
            with antialiasing, labels by nearest neighbour. The thesis works at 256×256 [KONG,
            §7.3.1]; a multiple of ``2^(levels-1)`` suits :class:`pixelbook.filterflow.MultigridPFF`.
        max_frames: keep at most this many frames per sequence (``None``: all).
        download, verify: passed to :func:`~pixelbook.data.registry.fetch` when ``root`` is ``None``.

    A sample is a dict: ``frames`` ``(T, 3, H, W)`` float32 in [0, 1], ``labels`` ``(T, H, W)`` int64
    object ids (0 = background; 255, if present, is the void label), ``name`` str.

    Raises:
        FileNotFoundError: no DAVIS layout under ``root``, a listed sequence without frames, or a
            frame without its annotation.
    """

    def __init__(self, root=None, split: str = "val", *, size: int | None = None, max_frames: int | None = None,
                 download: bool = False, verify: bool = False):
        check_choice(split, "split", DAVIS_SPLITS)
        for value, name in ((size, "size"), (max_frames, "max_frames")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}`: expected None or a positive int, got {value!r}")
        if root is None:
            path = fetch("davis2017", download=download, verify=verify)
            root = extract(path, dataset_dir("davis2017") / "extracted")
        base = _find_root(Path(root))
        if base is None:
            raise FileNotFoundError(f"`root`: no DAVIS 2017 under '{root}'; expected the layout {_LAYOUT}")
        listing = base / "ImageSets" / "2017" / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"`root`: missing '{listing}' (layout {_LAYOUT})")
        self.names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
        self.base, self.split, self.size, self.max_frames = base, split, size, max_frames
        self.sequences = []
        for name in self.names:
            frames = sorted((base / "JPEGImages" / "480p" / name).glob("*.jpg"))
            if not frames:
                raise FileNotFoundError(f"`root`: no frames for sequence '{name}' in '{base / 'JPEGImages' / '480p'}'")
            annos = [base / "Annotations" / "480p" / name / f"{f.stem}.png" for f in frames]
            missing = [a.name for a in annos if not a.is_file()]
            if missing:
                raise FileNotFoundError(f"`root`: sequence '{name}' has no annotation {missing[:3]}")
            self.sequences.append((frames, annos))

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} sequences")
        frames, annos = self.sequences[i]
        if self.max_frames is not None:
            frames, annos = frames[:self.max_frames], annos[:self.max_frames]
        x = torch.stack([read_rgb(f) for f in frames])  # (T, 3, H, W)
        y = torch.stack([read_label_map(a) for a in annos])  # palette PNGs: the indices are the object ids
        if x.shape[-2:] != y.shape[-2:]:
            raise ValueError(f"sequence '{self.names[i]}': annotations {tuple(y.shape[-2:])} != frames {tuple(x.shape[-2:])}")
        if self.size is not None:
            H, W = x.shape[-2:]
            s = self.size / min(H, W)
            hw = (max(1, round(H * s)), max(1, round(W * s)))
            x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
            y = F.interpolate(y[:, None].float(), size=hw, mode="nearest")[:, 0].long()
        return {"frames": x, "labels": y, "name": self.names[i]}
