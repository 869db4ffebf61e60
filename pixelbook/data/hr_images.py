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
  as MATLAB's ``rgb2ycbcr``);
* :class:`RestorationTestSet` — the thesis' test sets [KONG, §6.4]: LIVE1 (JPEG, the 29 reference
  images of the LIVE image-quality database, release 2) and Set5, Set14, Urban100 (×4 SR, from the
  benchmark archive of the EDSR authors), each checked for the layout and number of images its
  source describes (:data:`TEST_SETS`).

No checksum of these archives is published by their sources, so they are registered with
``sha256=None`` (fetched with ``verify=False``) and the loaders verify the structure instead: the
folder each set must have and its number of images. The non-uniform blur set of Bahat et al. (the
thesis' Table 6.1) is not registered: the notes this book works from give no source for it.

Images stay ``uint8`` until cropped: 800 DIV2K images are ~2.3 GB as bytes, four times that as floats.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_shape
from .files import read_rgb
from .registry import DatasetSpec, dataset_dir, extract, fetch, get_spec, register

__all__ = ["HRImages", "load_pool", "rgb_to_y", "HR_ARCHIVES", "IMAGE_EXTENSIONS", "RestorationTestSet", "TEST_SETS",
           "mod_crop"]

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


register(DatasetSpec(
    name="sr_benchmark",
    url="https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
    sha256=None,  # none published (the EDSR page gives the archive only, "250MB")
    filename="benchmark.tar",
    description="SR test sets as packed by the EDSR authors (about 250 MB): benchmark/{Set5,Set14,B100,Urban100}/HR "
                "(PNG) and LR_bicubic/X2..X4; Set5 [Bevilacqua et al., BMVC 2012], Set14 [Zeyde et al., 2010], "
                "Urban100 [Huang et al., CVPR 2015]",
    licence="research use; cite the sets' authors (Bevilacqua et al.; Zeyde et al.; Huang et al.)",
    homepage="https://github.com/sanghyun-son/EDSR-PyTorch",
))
register(DatasetSpec(
    name="live_release2",
    url="http://live.ece.utexas.edu/research/quality/release2/databaserelease2.zip",
    sha256=None,  # none published
    filename="databaserelease2.zip",
    description="LIVE image quality assessment database, release 2; its 29 reference images (refimgs/*.bmp) are "
                "the 'LIVE1' test set of JPEG artefact removal [Sheikh et al.]. The archive may be password "
                "protected (the password is given by the LIVE lab on request)",
    licence="research use; cite Sheikh, Sabir and Bovik, IEEE TIP 2006, and the LIVE database",
    homepage="https://live.ece.utexas.edu/research/quality/subjective.htm",
))

#: The thesis' test sets [KONG, §6.4.3-6.4.4, Tables 6.2-6.3]: registry archive, the folder of the
#: clean images inside it (found anywhere below the unpacked archive) and their number.
TEST_SETS = {
    "live1": {"archive": "live_release2", "folder": "refimgs", "count": 29, "task": "jpeg"},
    "set5": {"archive": "sr_benchmark", "folder": "Set5/HR", "count": 5, "task": "sr"},
    "set14": {"archive": "sr_benchmark", "folder": "Set14/HR", "count": 14, "task": "sr"},
    "urban100": {"archive": "sr_benchmark", "folder": "Urban100/HR", "count": 100, "task": "sr"},
}


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


def mod_crop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom and right edges so that ``H`` and ``W`` are multiples of ``scale``.

    The convention of super-resolution benchmarks ("modcrop"): the high-resolution image is cut to a
    size the down-sampling divides before the low-resolution input is made.

    Example:
        >>> tuple(pb.data.hr_images.mod_crop(torch.zeros(3, 10, 13), 4).shape)
        (3, 8, 12)
    """
    H, W = image.shape[-2:]
    if H < scale or W < scale:
        raise ValueError(f"`image`: expected H and W >= scale={scale}, got {H}x{W}")
    return image[..., : H - H % scale, : W - W % scale]


def _find_folder(root: Path, folder: str) -> Path | None:
    """The first ``folder`` (``"Set5/HR"``, ``"refimgs"``) at any depth under ``root``, or ``None``."""
    if not root.is_dir():
        return None
    parts = folder.split("/")
    for top in sorted(p for p in [root, *root.rglob(parts[0])] if p.is_dir() and p.name == parts[0]):
        if top.joinpath(*parts[1:]).is_dir():
            return top.joinpath(*parts[1:])
    return None


def _encrypted(archive: Path) -> bool:
    import zipfile

    if not archive.name.endswith(".zip"):
        return False
    with zipfile.ZipFile(archive) as zf:
        return any(info.flag_bits & 0x1 for info in zf.infolist())


class RestorationTestSet(torch.utils.data.Dataset):
    """One of the thesis' restoration test sets (:data:`TEST_SETS`), its clean images as ``uint8``.

    Args:
        name: ``"live1"``, ``"set5"``, ``"set14"`` or ``"urban100"``.
        root: a folder holding the unpacked archive (``refimgs/`` or ``benchmark/Set5/HR/`` etc.,
            at any depth); ``None``: fetch and unpack the registry archive.
        download: with ``root=None``, allow the download (no checksum is published: ``verify=False``).

    A sample is ``{"image": (3, H, W) uint8, "id": file stem}`` (as :class:`HRImages`); the images are
    read in file-name order.

    Raises:
        FileNotFoundError: the archive is not in the cache (with ``download=False``), or no folder of
            the set is found under the root.
        ValueError: the folder holds another number of images than the set has (not the archive the
            registry names), or the LIVE archive is password protected (unpack it by hand and pass
            ``root``).

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "benchmark" / "Set5" / "HR"
        >>> d.mkdir(parents=True)
        >>> for i in range(5):
        ...     Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / f"{i}.png")
        >>> len(pb.data.hr_images.RestorationTestSet("set5", d.parents[1]))
        5
    """

    def __init__(self, name: str, root=None, *, download: bool = False):
        check_choice(name, "name", tuple(TEST_SETS))
        spec = TEST_SETS[name]
        self.name = name
        if root is None:
            unpacked = dataset_dir(spec["archive"]) / "extracted"
            if _find_folder(unpacked, spec["folder"]) is None:  # not unpacked yet (by us or by hand)
                archive = fetch(spec["archive"], download=download, verify=False)
                if _encrypted(archive):
                    raise ValueError(
                        f"`root`: the archive '{archive}' is password protected; get the password from the LIVE lab "
                        f"(https://live.ece.utexas.edu/research/quality/subjective.htm) and unpack it into "
                        f"'{unpacked}' (found there by later calls), or pass its folder as root=")
                extract(archive, unpacked)
            root = unpacked
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"`root`: '{root}' is not a folder")
        folder = _find_folder(root, spec["folder"])
        if folder is None:
            raise FileNotFoundError(f"`root`: no folder '{spec['folder']}' (the {name} test set) under '{root}'")
        self.files = _image_files(folder)
        if len(self.files) != spec["count"]:
            raise ValueError(f"`root`: '{folder}' holds {len(self.files)} images; the {name} test set has "
                             f"{spec['count']} (is this the {get_spec(spec['archive']).filename} archive?)")
        self.ids = [p.stem for p in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        rgb = read_rgb(self.files[i])
        return {"image": rgb.mul_(255).round_().to(torch.uint8), "id": self.ids[i]}
