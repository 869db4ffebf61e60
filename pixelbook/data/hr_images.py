"""High-resolution photographs for image restoration at ``full`` scale (Chapter 7).

The thesis trains its restoration models on the 800 high-resolution training images of DIV2K
[DIV2K], plus the BSDS500 images for deblurring and JPEG [KONG, §6.4.1] (see the errata for the
count), and tests on the blur set of Bahat et al., LIVE1, Set5, Set14 and Urban100. This module
registers DIV2K's HR archives (official URLs, no published checksum: ``verify=False``) and reads any
folder of images — DIV2K's layout, BSDS500's image folders, or a test set unpacked by the reader:

* :class:`HRImages` — a dataset of ``{"image": (3, H, W) uint8, "id": str}``; from a registry
  archive (``name="div2k_train_hr"`` / ``"div2k_valid_hr"``) or from ``root=`` any folder;
* :func:`load_pool` — the images as a list of tensors (optionally grey, shorter side capped), the
  input of :func:`pixelbook.data.degradations.random_crops`;
* :func:`rgb_to_y` — the luma channel used by JPEG and SR benchmarks (ITU-R BT.601, studio range,
  as MATLAB's ``rgb2ycbcr``).

Images stay ``uint8`` until cropped: 800 DIV2K images are ~2.3 GB as bytes, four times that as floats.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_shape
from .files import read_rgb
from .registry import DatasetSpec, dataset_dir, extract, fetch, register

__all__ = ["HRImages", "load_pool", "rgb_to_y", "HR_ARCHIVES", "IMAGE_EXTENSIONS"]

_HOMEPAGE = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
_TERMS = "academic research use; cite Agustsson & Timofte, CVPR Workshops 2017 (see the homepage)"
#: Registry name -> the folder the archive unpacks to.
HR_ARCHIVES = {"div2k_train_hr": "DIV2K_train_HR", "div2k_valid_hr": "DIV2K_valid_HR"}
#: File suffixes read as images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

register(DatasetSpec(
    name="div2k_train_hr",
    url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
    sha256=None,  # none published
    filename="DIV2K_train_HR.zip",
    description="DIV2K: 800 2K-resolution training images (PNG), DIV2K_train_HR/0001.png ... 0800.png",
    licence=_TERMS,
    homepage=_HOMEPAGE,
))
register(DatasetSpec(
    name="div2k_valid_hr",
    url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
    sha256=None,  # none published
    filename="DIV2K_valid_HR.zip",
    description="DIV2K: 100 2K-resolution validation images (PNG), DIV2K_valid_HR/0801.png ... 0900.png",
    licence=_TERMS,
    homepage=_HOMEPAGE,
))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


class HRImages(torch.utils.data.Dataset):
    """A folder of photographs as ``uint8`` tensors.

    Args:
        root: a folder of images, or a folder containing the archive's folder (``DIV2K_train_HR``);
            ``None`` fetches and unpacks ``name`` through the registry.
        name: registry entry used with ``root=None``: one of :data:`HR_ARCHIVES`.
        download: with ``root=None``, allow the download (3.5 GB for the training set).
        verify: passed to :func:`~pixelbook.data.registry.fetch`; DIV2K publishes no checksum, so
            the default is ``False``.

    A sample is ``{"image": (3, H, W) uint8, "id": file stem}``; grey files are repeated to three
    channels, an alpha channel is dropped.

    Raises:
        FileNotFoundError: no image files under ``root``.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(d / "a.png")
        >>> ds = pb.data.hr_images.HRImages(d)
        >>> len(ds), tuple(ds[0]["image"].shape), ds[0]["id"]
        (1, (3, 4, 6), 'a')
    """

    def __init__(self, root=None, name: str = "div2k_train_hr", *, download: bool = False, verify: bool = False):
        check_choice(name, "name", tuple(HR_ARCHIVES))
        if root is None:
            path = fetch(name, download=download, verify=verify)
            root = extract(path, dataset_dir(name) / "extracted")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"`root`: '{root}' is not a folder")
        folder = root / HR_ARCHIVES[name] if (root / HR_ARCHIVES[name]).is_dir() else root
        self.files = _image_files(folder)
        if not self.files:
            raise FileNotFoundError(f"`root`: no image files ({', '.join(IMAGE_EXTENSIONS)}) in '{folder}'")
        self.ids = [p.stem for p in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        rgb = read_rgb(self.files[i])  # the package's one image reader; back to bytes, exactly
        return {"image": rgb.mul_(255).round_().to(torch.uint8), "id": self.ids[i]}


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """Luma Y of ITU-R BT.601 in studio range, as MATLAB's ``rgb2ycbcr`` (SR and JPEG benchmarks).

    ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255`` for RGB in [0, 1], so Y lies in
    [16/255, 235/255].

    Args:
        image: ``(N, 3, H, W)`` float RGB in [0, 1].

    Returns:
        ``(N, 1, H, W)``.

    Example:
        >>> y = pb.data.hr_images.rgb_to_y(torch.ones(1, 3, 1, 1))
        >>> round(float(y) * 255, 3)
        235.0
    """
    check_shape(image, "image", "N 3 H W")
    w = image.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return 16 / 255 + (image * w).sum(1, keepdim=True) / 255


def load_pool(dataset, gray: bool = False, max_side: int | None = None, limit: int | None = None) -> list[torch.Tensor]:
    """Every image of ``dataset`` (samples with ``"image"``) as a list of ``uint8`` tensors.

    Args:
        dataset: e.g. :class:`HRImages` or :class:`pixelbook.data.BSDS500`.
        gray: convert to one luma channel (:func:`rgb_to_y`) — the thesis evaluates JPEG and SR on Y.
        max_side: shrink (bilinear, anti-aliased) so the longer side is at most this.
        limit: read only the first ``limit`` images.

    Returns:
        list of ``(C, H, W)`` ``uint8`` tensors (float images are scaled by 255).
    """
    out = []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        img = dataset[i]["image"]
        x = img.float() / 255 if img.dtype == torch.uint8 else img.float()
        if max_side is not None and max(x.shape[-2:]) > max_side:
            s = max_side / max(x.shape[-2:])
            size = (max(1, round(x.shape[-2] * s)), max(1, round(x.shape[-1] * s)))
            x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        if gray:
            x = rgb_to_y(x[None])[0] if x.shape[0] == 3 else x
        out.append((x.clamp(0, 1) * 255).round().to(torch.uint8))
    return out
