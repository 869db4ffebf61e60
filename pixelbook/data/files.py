"""Reading the image files of real datasets, and pairing each image with its mask.

Every loader in :mod:`pixelbook.data` reads its files through these functions:

* :func:`read_rgb` — an image as ``(3, H, W)`` float32 in [0, 1];
* :func:`read_grey` — a mask stored as grey levels, ``(H, W)`` uint8;
* :func:`read_label_map` — a class-index PNG (single channel or palette), ``(H, W)`` int64;
* :func:`read_raw_map` — a single-channel map stored as raw integers (Cityscapes' 16-bit disparity),
  ``(H, W)`` int64;
* :func:`find_pairs` — ``(image, mask)`` paths of the salient-object and lesion datasets (MSRA10K,
  ECSSD, PASCAL-S, HKU-IS, DUTS, ..., ISIC 2018), matched by file name.

Files are decoded with Pillow. ``torchvision.io.decode_image`` would do the same, but torchvision
0.29 deprecates its image decoders (in favour of TorchCodec) and warns on every call. A file that
cannot be decoded raises ``ValueError`` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_rgb", "read_grey", "read_label_map", "read_raw_map", "find_pairs"]


def _open(path, modes=None) -> np.ndarray:
    """The decoded pixels of ``path``: converted to ``modes`` (a Pillow mode string) when given,
    else as stored."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(modes) if modes else im)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # truncated or not an image
        raise ValueError(f"'{path}': not a readable image ({type(exc).__name__}: {exc})") from exc


def read_rgb(path: str | os.PathLike) -> torch.Tensor:
    """An image file as ``(3, H, W)`` float32 in [0, 1].

    Grey and palette images are expanded to RGB; an alpha channel is dropped (Pillow's ``"RGB"``
    conversion).

    Raises:
        FileNotFoundError: no file. ValueError: the file is not a readable image (names it).
    """
    rgb = _open(path, "RGB")
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)


def read_grey(path: str | os.PathLike) -> torch.Tensor:
    """A mask stored as grey levels (0-255) as ``(H, W)`` uint8. Colour files are converted to
    luminance (ITU-R 601-2, Pillow's ``"L"``), as some releases store masks as RGB.

    Raises:
        FileNotFoundError: no file. ValueError: the file is not a readable image (names it).
    """
    return torch.from_numpy(_open(path, "L").copy())


def read_label_map(path: str | os.PathLike) -> torch.Tensor:
    """A class-index PNG (VOC, CamVid) as ``(H, W)`` int64: the stored indices, not colours.

    Raises:
        FileNotFoundError: no file. ValueError: the file is not a readable image, or it is an
            RGB(A) image, whose colours are not class indices (names it and its mode).
    """
    labels = _open(path)
    if labels.ndim != 2:
        raise ValueError(f"'{path}': expected a single-channel or palette label image, got {labels.ndim}-D "
                         f"pixels of shape {labels.shape}")
    return torch.from_numpy(labels.astype(np.int64))


def read_raw_map(path: str | os.PathLike) -> torch.Tensor:
    """A single-channel image of raw integer values (e.g. Cityscapes' 16-bit disparity PNGs) as
    ``(H, W)`` int64, values as stored (no scaling).

    Raises:
        FileNotFoundError: no file. ValueError: the file is not a readable image, or it has colour
            channels (names it).
    """
    raw = _open(path)
    if raw.ndim != 2:
        raise ValueError(f"'{path}': expected a single-channel image of raw values, got {raw.ndim}-D pixels "
                         f"of shape {raw.shape}")
    return torch.from_numpy(raw.astype(np.int64))


def find_pairs(root: str | os.PathLike, images: str, masks: str, *, title: str,
               mask_suffix: str = "") -> list[tuple[Path, Path]]:
    """``(image_path, mask_path)`` pairs under ``root``, matched by file name, sorted by it.

    An image and a mask belong together when the image's name without extension equals the
    mask's name without extension and without ``mask_suffix`` (ISIC: ``_segmentation``). Images
    without a mask are left out (THUR15K labels only part of its images); hidden files and the
    ``__MACOSX/`` folder of zips made on a Mac are skipped.

    Args:
        root: the folder to search.
        images, masks: glob patterns relative to ``root`` (``**`` searches sub-folders).
        title: the dataset's name, used in error messages.
        mask_suffix: what a mask's name adds to its image's name.

    Raises:
        FileNotFoundError: ``root`` is not a folder; no mask matches ``masks``; a mask has no
            image; two images or two masks share a name (in different folders). Each message
            names the expected layout.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for f in ("img/b.jpg", "img/a.jpg", "gt/a.png", "gt/b.png"):
        ...     (root / f).parent.mkdir(exist_ok=True); (root / f).touch()
        >>> [(i.name, m.name) for i, m in find_pairs(root, "img/*.jpg", "gt/*.png", title="demo")]
        [('a.jpg', 'a.png'), ('b.jpg', 'b.png')]
    """
    root = Path(root)
    expected = f"images '{images}' and masks '{masks}' under '{root}'"
    if not root.is_dir():
        raise FileNotFoundError(f"`root`: '{root}' is not a folder; expected {expected}")

    def by_key(pattern: str, suffix: str) -> dict:
        found: dict = {}
        for p in sorted(root.glob(pattern)):
            if any(part.startswith(".") or part == "__MACOSX" for part in p.relative_to(root).parts):
                continue  # macOS resource forks (__MACOSX/, ._name) and other hidden files
            key = p.stem[: len(p.stem) - len(suffix)] if suffix and p.stem.endswith(suffix) else p.stem
            if key in found:
                raise FileNotFoundError(f"{title}: two files are called {key!r}: '{found[key]}' and '{p}'; "
                                        f"expected one per name in {expected}")
            found[key] = p
        return found

    image_files, mask_files = by_key(images, ""), by_key(masks, mask_suffix)
    if not mask_files:
        raise FileNotFoundError(f"{title}: no masks found; expected {expected}")
    orphans = sorted(set(mask_files) - set(image_files))
    if orphans:
        raise FileNotFoundError(f"{title}: {len(orphans)} masks have no image (first: {orphans[0]!r}); "
                                f"expected {expected}")
    return [(image_files[k], mask_files[k]) for k in sorted(mask_files)]
