r"""Cityscapes (fine annotations + disparity) for Chapter 5's ``full`` scale [KONG, Ch. 3–4].

The thesis trains on the 2,975 finely annotated training images and tests on the 500 validation
images, 19 classes, and uses the stereo disparity as depth ("depth from disparity", with holes where
stereo fails). The archives need a (free) login at https://www.cityscapes-dataset.com, so they
cannot be downloaded by a script: put them into the registry's cache folder by hand (the error of
:func:`cityscapes_root` says where):

========================================  ==========================================================
archive (registry name)                    layout after unpacking
========================================  ==========================================================
``leftImg8bit_trainvaltest.zip``           ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png``
(``cityscapes_leftimg8bit``)
``gtFine_trainvaltest.zip``                ``gtFine/<split>/<city>/<id>_gtFine_labelIds.png``
(``cityscapes_gtfine``)
``disparity_trainvaltest.zip``             ``disparity/<split>/<city>/<id>_disparity.png``
(``cityscapes_disparity``)
``camera_trainvaltest.zip`` (optional,     ``camera/<split>/<city>/<id>_camera.json``
``cityscapes_camera``)
========================================  ==========================================================

Label ids map to the 19 training ids with torchvision's ``Cityscapes.classes`` table (the official
``cityscapesScripts`` mapping); every other id becomes 255. Disparity PNGs store
:math:`p = 256\,d + 1` (0 = invalid), so :math:`d = (p - 1)/256` pixels and depth
:math:`Z = b f_x / d` with the stereo baseline :math:`b` and focal length :math:`f_x` of the image's
camera file, or the typical values 0.209313 m and 2262.52 px when it is absent.

No checksum is published for any archive (``sha256=None``: fetch with ``verify=False``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import IGNORE_INDEX, check_choice
from ..runtime import cache_dir
from .files import read_label_map, read_raw_map, read_rgb
from .registry import DatasetSpec, extract, fetch, register

__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_BASELINE", "CITYSCAPES_FX", "cityscapes_root", "cityscapes_train_ids",
           "disparity_to_depth", "CityscapesSegDepth"]

_HOME = "https://www.cityscapes-dataset.com"
_TERMS = "Cityscapes licence: non-commercial research and teaching only; login required to download"
_ARCHIVES = {  # registry name -> (packageID of the download page, file name, description)
    "cityscapes_leftimg8bit": (3, "leftImg8bit_trainvaltest.zip", "left 8-bit images, train/val/test (about 11 GB)"),
    "cityscapes_gtfine": (1, "gtFine_trainvaltest.zip", "fine annotations, train/val/test (about 241 MB)"),
    "cityscapes_disparity": (7, "disparity_trainvaltest.zip", "stereo disparity, train/val/test (about 3.5 GB)"),
    "cityscapes_camera": (8, "camera_trainvaltest.zip", "camera calibration per image (about 2 MB)"),
}
for _name, (_pid, _file, _desc) in _ARCHIVES.items():
    register(DatasetSpec(name=_name, url=f"{_HOME}/file-handling/?packageID={_pid}", sha256=None, filename=_file,
                         description=f"Cityscapes {_desc}", licence=_TERMS, homepage=_HOME))

#: Typical stereo baseline (m) and focal length (px) of the Cityscapes cameras (their camera files);
#: used when an image's ``_camera.json`` is absent.
CITYSCAPES_BASELINE = 0.209313
CITYSCAPES_FX = 2262.52


def _train_id_table():
    from torchvision.datasets import Cityscapes

    table = np.full(256, IGNORE_INDEX, dtype=np.int64)
    names = [None] * 19
    for c in Cityscapes.classes:
        if 0 <= c.id < 256 and 0 <= c.train_id < 19:
            table[c.id] = c.train_id
            names[c.train_id] = c.name
    return table, tuple(names)


_TABLE, _NAMES = _train_id_table()
#: The 19 evaluation classes in training-id order (``labels == i`` is ``CITYSCAPES_CLASSES[i]``).
CITYSCAPES_CLASSES: tuple = _NAMES


def cityscapes_train_ids(label_ids: torch.Tensor) -> torch.Tensor:
    """Official label ids ``(..., H, W)`` (0–33) → training ids 0–18, 255 for the rest.

    Example:
        >>> cityscapes_train_ids(torch.tensor([[7, 26, 0]]))
        tensor([[  0,  13, 255]])
    """
    ids = label_ids.long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > 255):
        raise ValueError(f"`label_ids`: expected values in [0, 255], got [{int(ids.min())}, {int(ids.max())}]")
    return torch.from_numpy(_TABLE)[ids]


def disparity_to_depth(raw: torch.Tensor, baseline: float = CITYSCAPES_BASELINE,
                       fx: float = CITYSCAPES_FX) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Raw 16-bit Cityscapes disparity → ``(depth, valid)``: :math:`d = (p-1)/256`, :math:`Z = b f_x / d`.

    Args:
        raw: integer tensor of stored values :math:`p` (0 = no measurement).
        baseline, fx: stereo baseline (m) and focal length (px).

    Returns:
        ``depth`` float32 metres (0 where invalid) and ``valid`` bool (``p > 1``: a positive disparity).

    Example:
        >>> depth, valid = disparity_to_depth(torch.tensor([0, 1 + 256 * 10]))
        >>> valid.tolist(), round(float(depth[1]), 2)
        ([False, True], 47.36)
    """
    p = raw.to(torch.float64)
    valid = p > 1
    d = (p - 1) / 256.0
    depth = torch.where(valid, baseline * fx / d.clamp_min(1e-12), torch.zeros_like(d))
    return depth.float(), valid


def cityscapes_root(*, download: bool = False, verify: bool = False, camera: bool = True) -> Path:
    """Fetch (from the cache: see the module docstring) and unpack the archives; return the folder.

    Raises:
        FileNotFoundError: an archive is not in the cache (the message says where to put it).
    """
    base = Path(cache_dir("datasets", "cityscapes"))
    names = [n for n in _ARCHIVES if camera or n != "cityscapes_camera"]
    for name in names:
        try:
            path = fetch(name, download=download, verify=verify)
        except FileNotFoundError:
            if name == "cityscapes_camera":  # optional: typical camera values are used instead
                continue
            raise
        extract(path, base / name)
    return base


def _find(root: Path, kind: str, split: str, suffix: str) -> dict:
    out = {}
    for top in [root] + [p for p in root.iterdir() if p.is_dir()]:
        folder = top / kind / split
        if folder.is_dir():
            for p in folder.glob(f"*/*_{suffix}"):
                out[p.name[: -len(suffix) - 1]] = p
    return out


class CityscapesSegDepth(torch.utils.data.Dataset):
    """Cityscapes images with 19-class labels and depth from disparity (one split).

    Args:
        root: a folder holding ``leftImg8bit/``, ``gtFine/`` and ``disparity/`` (directly or one level
            down, as :func:`cityscapes_root` unpacks them); ``None``: :func:`cityscapes_root`.
        split: ``"train"`` (2,975 images) or ``"val"`` (500, the thesis' test set).
        size: optional ``(H, W)`` to resize to (bilinear image, nearest labels / depth / valid).
        download, verify: passed to :func:`cityscapes_root` when ``root`` is ``None``.

    Items are dicts: ``image`` ``(3, H, W)`` float32 in [0, 1], ``labels`` ``(H, W)`` int64 (0–18 or
    255), ``depth`` ``(1, H, W)`` float32 metres (0 where invalid), ``valid`` ``(H, W)`` bool (depth
    measured), ``id`` (str).

    Raises:
        FileNotFoundError: no image of ``split`` under ``root``, or an image without its annotation
            or disparity (naming it).
    """

    def __init__(self, root=None, split: str = "train", size=None, *, download: bool = False, verify: bool = False):
        check_choice(split, "split", ("train", "val"))
        root = cityscapes_root(download=download, verify=verify) if root is None else Path(root)
        if not Path(root).is_dir():
            raise FileNotFoundError(f"`root`: no folder {root}")
        images = _find(root, "leftImg8bit", split, "leftImg8bit.png")
        if not images:
            raise FileNotFoundError(f"`root`: no leftImg8bit/{split}/<city>/*_leftImg8bit.png under {root}")
        labels = _find(root, "gtFine", split, "gtFine_labelIds.png")
        disparity = _find(root, "disparity", split, "disparity.png")
        cameras = _find(root, "camera", split, "camera.json")
        self.ids = sorted(images)
        for i in self.ids:
            if i not in labels:
                raise FileNotFoundError(f"Cityscapes {split}: no gtFine/{split}/.../{i}_gtFine_labelIds.png")
            if i not in disparity:
                raise FileNotFoundError(f"Cityscapes {split}: no disparity/{split}/.../{i}_disparity.png")
        self.images, self.labels, self.disparity, self.cameras = images, labels, disparity, cameras
        self.size = None if size is None else (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.ids)

    def _camera(self, i):
        path = self.cameras.get(i)
        if path is None:
            return CITYSCAPES_BASELINE, CITYSCAPES_FX
        cam = json.loads(Path(path).read_text())
        return float(cam["extrinsic"]["baseline"]), float(cam["intrinsic"]["fx"])

    def __getitem__(self, index: int) -> dict:
        i = self.ids[index]
        image = read_rgb(self.images[i])
        labels = cityscapes_train_ids(read_label_map(self.labels[i]))
        raw = read_raw_map(self.disparity[i])
        depth, valid = disparity_to_depth(raw, *self._camera(i))
        if self.size is not None and tuple(image.shape[-2:]) != self.size:
            image = F.interpolate(image[None], size=self.size, mode="bilinear", align_corners=False)[0]
            near = lambda t: F.interpolate(t[None, None].float(), size=self.size, mode="nearest")[0, 0]  # noqa: E731
            labels, depth, valid = near(labels).long(), near(depth), near(valid) > 0.5
        return {"image": image, "labels": labels, "depth": depth[None], "valid": valid, "id": i}
