r"""MSRA10K, the training set of Chapter 2's salient-object experiments [NODE-LS, §4.1, §4.4.2].

MSRA10K (Cheng et al. 2014, formerly THUS10000) holds 10000 images from the MSRA dataset with
pixel-accurate binary masks of their salient object. [NODE-LS] trains on all of it ("we use all
images for training") and evaluates on ECSSD, PASCAL-S and HKU-IS, whose loaders live in
:mod:`pixelbook.data.saliency` (``SaliencyDataset("ecssd" | "pascal_s" | "hku_is")``).

The official archive ``MSRA10K_Imgs_GT.zip`` (about 195 MB, from https://mmcheng.net/msra10k/)
unpacks to::

    MSRA10K_Imgs_GT/Imgs/<id>.jpg     the image
    MSRA10K_Imgs_GT/Imgs/<id>.png     its mask (0 or 255)
    MSRA10K_Imgs_GT/Readme.txt

No checksum is published: fetch it with ``verify=False`` (the registry then prints the file's
sha256, which can be pinned here). The URL could not be checked from this offline build.

:func:`with_sdf` adds the signed-distance target :math:`\phi` (positive inside) that the
distance-map regressions of [NODE-LS] are trained on.
"""

from __future__ import annotations

from pathlib import Path

from ..runtime import cache_dir
from .registry import DatasetSpec, extract, fetch, register
from .files import find_pairs
from .saliency import SaliencyDataset, SODLayout, _check_size

__all__ = ["MSRA10K", "msra10k_root", "msra10k_pairs", "MSRA10KDataset", "with_sdf"]

_HOME = "https://mmcheng.net/msra10k/"
register(DatasetSpec(
    name="msra10k_zip", url="https://mmcheng.net/mftp/Data/MSRA10K_Imgs_GT.zip", sha256=None,
    filename="MSRA10K_Imgs_GT.zip",
    description="MSRA10K: 10000 images with pixel-accurate salient-object masks (Cheng et al. 2014)",
    licence="URL as published on the homepage, not checked from an offline build; research use, see the homepage",
    homepage=_HOME))

#: Where MSRA10K keeps images and masks once unpacked (same fields as the test sets' layouts).
MSRA10K = SODLayout("msra10k", ("msra10k_zip",), "**/Imgs/*.jpg", "**/Imgs/*.png", 10000, title="MSRA10K")


def msra10k_root(*, download: bool = False, verify: bool = False) -> Path:
    """Fetch ``MSRA10K_Imgs_GT.zip`` through the registry, unpack it, return the folder.

    Raises:
        FileNotFoundError: the archive is not cached and ``download=False`` (the message says where
            to put it and where to get it).
    """
    path = fetch("msra10k_zip", download=download, verify=verify)
    dest = Path(cache_dir("datasets", "sod", "msra10k")) / "msra10k_zip"
    extract(path, dest)
    return dest.parent


def msra10k_pairs(root) -> list:
    """``(image_path, mask_path)`` pairs under ``root`` (``**/Imgs/<id>.jpg`` with ``<id>.png``),
    sorted by id (:func:`pixelbook.data.files.find_pairs`).

    Raises:
        FileNotFoundError: no masks, a mask without its image, or two files of one id, naming the
            expected layout.
    """
    return find_pairs(root, MSRA10K.images, MSRA10K.masks, title="MSRA10K")


class MSRA10KDataset(SaliencyDataset):
    """MSRA10K as ``image`` / ``mask`` / ``labels`` / ``id`` samples, read and resized exactly like
    :class:`pixelbook.data.saliency.SaliencyDataset`: mask = grey level > 127, image and mask
    resized together to ``size`` × ``size`` (bilinear with antialiasing / nearest), image
    standardised per channel.

    Args:
        root: the unpacked archive (any folder containing ``Imgs/``); ``None`` fetches and unpacks
            it through the registry.
        size: side of the square output (``None`` keeps each image's size). [NODE-LS] trains on
            512×512 crops with padding; the chapter resizes to ``size`` instead (ours).
        standardize, download, verify, transform: as for ``SaliencyDataset``.
    """

    def __init__(self, root=None, *, size: int | None = 256, standardize: bool = True, download: bool = False,
                 verify: bool = False, transform=None):
        _check_size(size)
        if root is None:
            root = msra10k_root(download=download, verify=verify)
        root = Path(root)
        self._setup("msra10k", MSRA10K, root, msra10k_pairs(root), size, standardize, transform)


def with_sdf(sample: dict) -> dict:
    """A ``transform`` adding ``phi`` ``(1, S, S)``, the signed distance of ``sample["mask"]`` (pixels,
    positive inside; :func:`pixelbook.ops.sdf_from_mask`)."""
    from ..ops.sdf import sdf_from_mask

    return {**sample, "phi": sdf_from_mask(sample["mask"][None])[0]}
