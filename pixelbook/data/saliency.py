"""Salient object detection data for Chapter 9: synthetic generators (``small``) and the paper's datasets (``full``).

``make_saliency_scenes`` draws images with one salient object among clutter on real textures from
scikit-image (``brick``, ``grass``, ``gravel``), with a region map ``labels`` (0 background,
1 salient object, 2 clutter) and the binary ``mask`` (``labels == 1``). ``make_texture_mosaics``
is the multi-region variant: three textured regions per image, labelled by texture.

Full scale: :class:`SaliencyDataset` reads DUTS-TR (training) and the seven test sets of
[CAS, Tables 1-2] — MSRA-B, DUTS-TE, ECSSD, PASCAL-S, HKU-IS, THUR15K, DUT-OMRON — from their
official archives, fetched and unpacked through :mod:`pixelbook.data.registry`. The archive
layouts (what :data:`SOD_DATASETS` globs for)::

    DUTS-TR.zip               DUTS-TR/DUTS-TR-Image/*.jpg, DUTS-TR/DUTS-TR-Mask/*.png
    DUTS-TE.zip               DUTS-TE/DUTS-TE-Image/*.jpg, DUTS-TE/DUTS-TE-Mask/*.png
    MSRA-B.zip                MSRA-B/*.jpg + *.png, {train,valid,test}_cvpr2013.txt
    images.zip + ground_truth_mask.zip      images/*.jpg, ground_truth_mask/*.png   (ECSSD)
    salObj.zip                datasets/imgs/pascal/*.jpg, datasets/masks/pascal/*.png   (PASCAL-S)
    HKU-IS.rar                HKU-IS/imgs/*.png, HKU-IS/gt/*.png   (unpack by hand: RAR)
    THUR15000.zip             THUR15000/<category>/Src/*.jpg + *.png (masks for 6232 images)
    DUT-OMRON-image.zip + pixelwiseGT-new-PNG.zip   DUT-OMRON-image/*.jpg, pixelwiseGT-new-PNG/*.png

No checksum is published for any of them (``sha256=None``: fetch with ``verify=False``), and the
URLs could not be checked from this offline build; the homepages are in each spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .._checks import check_choice
from ..runtime import cache_dir
from ._joint import apply_joint
from .files import find_pairs, read_grey, read_rgb
from .registry import DatasetError, DatasetSpec, extract, fetch, register

__all__ = ["TEXTURES", "make_saliency_scenes", "make_texture_mosaics", "SODLayout", "SOD_DATASETS", "SOD_TEST_SETS",
           "sod_root", "sod_pairs", "SaliencyDataset"]

#: scikit-image's bundled grey-level textures used as backgrounds, object fills and clutter.
TEXTURES = ("brick", "grass", "gravel")


def _load_texture(name: str) -> torch.Tensor:
    """A scikit-image texture as a float64 ``(H, W)`` tensor in [0, 1] (luminance)."""
    from .images import load_image

    return load_image(name, gray=True)[0].double()


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB; inputs broadcastable tensors in [0, 1]; output ``(..., 3)``."""
    k = torch.stack([torch.full_like(h, 5.0), torch.full_like(h, 3.0), torch.full_like(h, 1.0)], -1)
    k = (k + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def make_saliency_scenes(n: int, size: int = 32, seed: int = 0, *, textures=TEXTURES,
                         object_radius=(0.16, 0.32), clutter: int = 4, clutter_radius=(0.04, 0.08),
                         noise: float = 0.1, texture_scale: int = 4, contrast: float = 0.35,
                         object_saturation: float = 0.75, standardize: bool = True) -> dict:
    r"""Synthetic salient object detection: one object among clutter on a real texture.

    Each image: a background crop of one texture (low-saturation random colour); one salient object —
    a disc, square or rotated ellipse of radius ``object_radius × size`` filled with a crop of a
    *different* texture in a saturated random colour; ``clutter`` small discs (radius
    ``clutter_radius × size``) in saturated random colours on any texture. Colour alone does not
    tell the object from the clutter; size and shape do. Then Gaussian noise, and (``standardize``)
    each image is standardised to zero mean and unit variance per channel, as the paper does
    [CAS, §4.2].

    Args:
        n: number of images; size: side in pixels; seed: the whole draw is a function of it.
        textures: scikit-image texture names. texture_scale: textures are average-pooled by this factor
            before cropping (a 512² texture becomes 128²), so a 32-pixel image shows several texels.
        object_radius, clutter_radius: ``(low, high)`` radii as fractions of ``size``.
        clutter: number of distractor blobs per image.
        noise: standard deviation of the additive noise (image values are in about [0, 1]).
        contrast: texture modulation depth. object_saturation: HSV saturation of object and clutter.

    Returns:
        dict with ``image`` ``(n, 3, size, size)`` float32, ``labels`` ``(n, size, size)`` int64
        (0 background, 1 salient object, 2 clutter) and ``mask`` ``(n, size, size)`` bool (the object).

    Example:
        >>> d = make_saliency_scenes(4, size=32, seed=0)
        >>> tuple(d["image"].shape), sorted(d["labels"].unique().tolist()), d["mask"].dtype
        ((4, 3, 32, 32), [0, 1, 2], torch.bool)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n`: expected an int >= 1, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"`size`: expected an int >= 8, got {size!r}")
    if isinstance(clutter, bool) or not isinstance(clutter, int) or clutter < 0:
        raise ValueError(f"`clutter`: expected an int >= 0, got {clutter!r}")
    for name, (lo, hi) in (("object_radius", object_radius), ("clutter_radius", clutter_radius)):
        if not 0 < lo <= hi < 0.5:
            raise ValueError(f"`{name}`: expected 0 < low <= high < 0.5 (fractions of `size`), got {(lo, hi)}")
    textures = tuple(textures)
    if len(textures) < 2:
        raise ValueError(f"`textures`: expected at least 2 names, got {textures}")
    g = torch.Generator().manual_seed(int(seed))
    S = size
    tex = []
    for name in textures:
        t = F.avg_pool2d(_load_texture(name)[None, None], texture_scale)[0, 0]
        tex.append((t - t.mean()) / t.std())
    side = min(min(t.shape) for t in tex)
    if side < S:
        raise ValueError(f"`size`={S} is larger than the pooled textures ({side} px); lower `texture_scale`")
    tex = torch.stack([t[:side, :side] for t in tex]).float()              # (T, side, side)
    T = len(textures)

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    def crop(tid):
        oy = torch.randint(0, side - S + 1, (n,), generator=g)
        ox = torch.randint(0, side - S + 1, (n,), generator=g)
        iy = oy[:, None, None] + torch.arange(S)[None, :, None]
        ix = ox[:, None, None] + torch.arange(S)[None, None, :]
        return tex[tid[:, None, None], iy, ix]                                # (n, S, S)

    t_bg = torch.randint(0, T, (n,), generator=g)
    t_obj = (t_bg + torch.randint(1, T, (n,), generator=g)) % T
    t_cl = torch.randint(0, T, (n,), generator=g)
    tex_bg, tex_obj, tex_cl = crop(t_bg), crop(t_obj), crop(t_cl)

    yy, xx = torch.meshgrid(torch.arange(S, dtype=torch.float32) + 0.5, torch.arange(S, dtype=torch.float32) + 0.5,
                            indexing="ij")
    # the object: disc, square or rotated ellipse
    r = (object_radius[0] + (object_radius[1] - object_radius[0]) * rand(n)) * S
    cy = r + (S - 2 * r) * rand(n)
    cx = r + (S - 2 * r) * rand(n)
    kind = torch.randint(0, 3, (n,), generator=g)
    dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]
    theta = math.pi * rand(n)[:, None, None]
    aspect = (0.55 + 0.45 * rand(n))[:, None, None]
    u = dx * torch.cos(theta) + dy * torch.sin(theta)
    v = -dx * torch.sin(theta) + dy * torch.cos(theta)
    rr = r[:, None, None]
    disc = dx ** 2 + dy ** 2 <= rr ** 2
    square = torch.maximum(dx.abs(), dy.abs()) <= 0.85 * rr
    ellipse = (u / rr) ** 2 + (v / (aspect * rr)) ** 2 <= 1
    obj = torch.where(kind[:, None, None] == 0, disc, torch.where(kind[:, None, None] == 1, square, ellipse))
    # clutter: small discs anywhere; each blob its own colour
    if clutter:
        rc = (clutter_radius[0] + (clutter_radius[1] - clutter_radius[0]) * rand(n, clutter)) * S
        ccy, ccx = S * rand(n, clutter), S * rand(n, clutter)
        blobs = ((yy[None, None] - ccy[..., None, None]) ** 2 + (xx[None, None] - ccx[..., None, None]) ** 2
                 <= rc[..., None, None] ** 2)                               # (n, k, S, S)
        blob_id = blobs.float().argmax(1)                                   # first blob covering a pixel
        clut = blobs.any(1) & ~obj
    else:
        blob_id = torch.zeros(n, S, S, dtype=torch.long)
        clut = torch.zeros(n, S, S, dtype=torch.bool)
    # colours
    bg_rgb = _hsv_to_rgb(rand(n), 0.1 + 0.15 * rand(n), 0.45 + 0.2 * rand(n))                  # (n, 3)
    sat = torch.full((n,), float(object_saturation))
    obj_rgb = _hsv_to_rgb(rand(n), sat, 0.75 + 0.2 * rand(n))
    k = max(clutter, 1)
    cl_rgb = _hsv_to_rgb(rand(n, k), sat[:, None].expand(n, k), 0.75 + 0.2 * rand(n, k))        # (n, k, 3)
    cl_pix = cl_rgb.gather(1, blob_id.reshape(n, -1, 1).expand(-1, -1, 3)).reshape(n, S, S, 3)
    base = torch.where(obj[..., None], obj_rgb[:, None, None], torch.where(clut[..., None], cl_pix,
                                                                          bg_rgb[:, None, None]))
    texture = torch.where(obj, tex_obj, torch.where(clut, tex_cl, tex_bg))
    image = base * (1 + contrast * texture[..., None]) + noise * torch.randn(n, S, S, 3, generator=g)
    image = image.permute(0, 3, 1, 2).contiguous()
    if standardize:
        image = (image - image.mean((2, 3), keepdim=True)) / image.std((2, 3), keepdim=True).clamp_min(1e-6)
    labels = torch.where(obj, 1, torch.where(clut, 2, 0)).long()
    return {"image": image.float(), "labels": labels, "mask": obj}


#: Mean colour of each texture in :func:`make_texture_mosaics` (HSV hue), so that colour is a noisy
#: cue and texture the exact one. ours: brick reddish, grass green, gravel blue-grey.
_TEXTURE_HUES = {"brick": 0.02, "grass": 0.30, "gravel": 0.60}


def make_texture_mosaics(n: int, size: int = 32, seed: int = 0, *, textures=TEXTURES, radius=(0.2, 0.32),
                         hue_jitter: float = 0.06, noise: float = 0.1, texture_scale: int = 4,
                         contrast: float = 0.5, standardize: bool = True) -> dict:
    r"""Multi-region variant of Chapter 9: every image is a mosaic of ``len(textures)`` textured regions.

    The background is a crop of one texture; each other texture fills one shape (disc, square or
    rotated ellipse, radius ``radius × size``; later shapes cover earlier ones). A region's label is
    its texture's index in ``textures`` — a consistent class, so cross-entropy with correct labels
    can learn it — and its colour is the texture's hue (``_TEXTURE_HUES``) jittered by
    ``hue_jitter``, so colour is a noisy cue and texture the exact one.

    Returns:
        dict with ``image`` ``(n, 3, size, size)`` float32 and ``labels`` ``(n, size, size)`` int64 in
        ``[0, len(textures))``. Every label is present in every image (shapes are kept large enough).

    Example:
        >>> d = make_texture_mosaics(3, size=32, seed=0)
        >>> tuple(d["image"].shape), [sorted(y.unique().tolist()) for y in d["labels"]]
        ((3, 3, 32, 32), [[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n`: expected an int >= 1, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"`size`: expected an int >= 8, got {size!r}")
    textures = tuple(textures)
    if len(textures) < 2:
        raise ValueError(f"`textures`: expected at least 2 names, got {textures}")
    if not 0 < radius[0] <= radius[1] < 0.5:
        raise ValueError(f"`radius`: expected 0 < low <= high < 0.5 (fractions of `size`), got {tuple(radius)}")
    g = torch.Generator().manual_seed(int(seed))
    S, K = size, len(textures)
    tex = []
    for name in textures:
        t = F.avg_pool2d(_load_texture(name)[None, None], texture_scale)[0, 0]
        tex.append((t - t.mean()) / t.std())
    side = min(min(t.shape) for t in tex)
    tex = torch.stack([t[:side, :side] for t in tex]).float()
    hues = torch.tensor([_TEXTURE_HUES.get(name, k / K) for k, name in enumerate(textures)])

    yy, xx = torch.meshgrid(torch.arange(S, dtype=torch.float32) + 0.5, torch.arange(S, dtype=torch.float32) + 0.5,
                            indexing="ij")
    def shape_masks(m):
        r = (radius[0] + (radius[1] - radius[0]) * torch.rand(m, generator=g)) * S
        cy = r + (S - 2 * r) * torch.rand(m, generator=g)
        cx = r + (S - 2 * r) * torch.rand(m, generator=g)
        kind = torch.randint(0, 3, (m,), generator=g)[:, None, None]
        dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]
        theta = math.pi * torch.rand(m, generator=g)[:, None, None]
        aspect = (0.6 + 0.4 * torch.rand(m, generator=g))[:, None, None]
        u = dx * torch.cos(theta) + dy * torch.sin(theta)
        v = -dx * torch.sin(theta) + dy * torch.cos(theta)
        rr = r[:, None, None]
        return torch.where(kind == 0, dx ** 2 + dy ** 2 <= rr ** 2,
                           torch.where(kind == 1, torch.maximum(dx.abs(), dy.abs()) <= 0.85 * rr,
                                       (u / rr) ** 2 + (v / (aspect * rr)) ** 2 <= 1))

    order = torch.argsort(torch.rand(n, K, generator=g), dim=1)       # order[:, 0] is the background
    labels = torch.empty(n, S, S, dtype=torch.long)
    todo = torch.arange(n)
    for _ in range(100):  # redraw the shapes of images where a region would cover < 5 % of the image
        m = len(todo)
        lab = order[todo, :1, None].expand(m, S, S).clone()
        for k in range(1, K):
            lab = torch.where(shape_masks(m), order[todo, k, None, None], lab)
        counts = F.one_hot(lab.reshape(m, -1), K).sum(1)
        ok = (counts >= 0.05 * S * S).all(1)
        labels[todo[ok]] = lab[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            break
    else:  # pragma: no cover - only with radii far too small for the image
        raise ValueError(f"`radius`={tuple(radius)}: could not draw {K} visible regions; use larger radii")
    oy = torch.randint(0, side - S + 1, (n, K), generator=g)
    ox = torch.randint(0, side - S + 1, (n, K), generator=g)
    iy = oy[:, :, None, None] + torch.arange(S)[None, None, :, None]
    ix = ox[:, :, None, None] + torch.arange(S)[None, None, None, :]
    crops = tex[torch.arange(K)[None, :, None, None], iy, ix]            # (n, K, S, S): texture k's crop
    texture = crops.gather(1, labels[:, None]).squeeze(1)
    h = (hues[None] + hue_jitter * torch.randn(n, K, generator=g)) % 1.0
    rgb = _hsv_to_rgb(h, torch.full((n, K), 0.6), 0.55 + 0.3 * torch.rand(n, K, generator=g))    # (n, K, 3)
    base = rgb.gather(1, labels.reshape(n, -1, 1).expand(-1, -1, 3)).reshape(n, S, S, 3)
    image = base * (1 + contrast * texture[..., None]) + noise * torch.randn(n, S, S, 3, generator=g)
    image = image.permute(0, 3, 1, 2).contiguous()
    if standardize:
        image = (image - image.mean((2, 3), keepdim=True)) / image.std((2, 3), keepdim=True).clamp_min(1e-6)
    return {"image": image.float(), "labels": labels.long()}


# --------------------------------------------------------------------------------------------------
# The paper's datasets (full scale): DUTS-TR for training; seven test sets [CAS, §4.2]
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SODLayout:
    """Where one salient-object dataset keeps its images and masks once its archives are unpacked.

    Attributes:
        name: dataset key (``"duts_tr"``, ``"ecssd"``, ...).
        archives: registry names of the archive(s) to fetch and unpack into one folder.
        images, masks: glob patterns (``**`` allowed) relative to the unpacked folder; an image and
            a mask belong together when their file names without extension are equal.
        count: number of image/mask pairs in the official release (checked only by the tests' fakes
            and reported in errors).
        split_lists: ``{split: glob}`` of text files listing image names (one per line, with or
            without extension), for datasets with an official split (MSRA-B).
        mask_threshold: a mask pixel is salient when its grey value exceeds this (0-255).
        title: the dataset's usual name.
    """

    name: str
    archives: tuple
    images: str
    masks: str
    count: int
    split_lists: tuple = ()
    mask_threshold: int = 127
    title: str = ""


_DUTS = "http://saliencydetection.net/duts/"
_ECSSD = "https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html"
_OMRON = "http://saliencydetection.net/dut-omron/"
_SALOBJ = "https://cbs.ic.gatech.edu/salobj/"
_HKUIS = "https://sites.google.com/site/ligb86/hkuis"
_THUR = "https://mmcheng.net/gsal/"
_MSRAB = "https://mmcheng.net/msra10k/"
_UNVERIFIED = "URL as published on the homepage, not checked from an offline build; "

# One DatasetSpec per archive. No SOD dataset publishes checksums: sha256=None, so fetch needs
# verify=False (pixelbook's registry then prints the file's sha256 so that it can be pinned here).
_ARCHIVES = (
    ("duts_tr_zip", _DUTS + "download/DUTS-TR.zip", "DUTS-TR.zip", "DUTS training set (10553 images)", _DUTS),
    ("duts_te_zip", _DUTS + "download/DUTS-TE.zip", "DUTS-TE.zip", "DUTS test set (5019 images)", _DUTS),
    ("ecssd_images_zip", "https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/images.zip",
     "images.zip", "ECSSD images (1000)", _ECSSD),
    ("ecssd_masks_zip", "https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/ground_truth_mask.zip",
     "ground_truth_mask.zip", "ECSSD masks (1000)", _ECSSD),
    ("pascal_s_zip", "https://cbs.ic.gatech.edu/salobj/download/salObj.zip", "salObj.zip",
     "PASCAL-S (850 images, in the salObj release)", _SALOBJ),
    ("hku_is_rar", "https://drive.google.com/uc?id=0BxNRvh6TmiJHSE5yRTNYdUFJaHc&export=download", "HKU-IS.rar",
     "HKU-IS (4447 images); a RAR archive: unpack it by hand", _HKUIS),
    ("thur15k_zip", "https://mmcheng.net/mftp/Data/THUR15000.zip", "THUR15000.zip",
     "THUR15K (6232 labelled of 15k images)", _THUR),
    ("dut_omron_images_zip", _OMRON + "download/DUT-OMRON-image.zip", "DUT-OMRON-image.zip",
     "DUT-OMRON images (5168)", _OMRON),
    ("dut_omron_masks_zip", _OMRON + "download/pixelwiseGT-new-PNG.zip", "pixelwiseGT-new-PNG.zip",
     "DUT-OMRON pixel-wise masks (5168)", _OMRON),
    ("msra_b_zip", "https://mmcheng.net/mftp/Data/MSRA-B.zip", "MSRA-B.zip",
     "MSRA-B (5000 images) with the 2500/500/2000 split lists of Jiang et al. (DRFI)", _MSRAB),
)
for _name, _url, _file, _desc, _home in _ARCHIVES:
    register(DatasetSpec(name=_name, url=_url, sha256=None, filename=_file, description=_desc,
                         licence=_UNVERIFIED + "research use; see the homepage", homepage=_home))

#: The eight datasets of the paper: DUTS-TR (training) and the seven test sets of Tables 1-3.
SOD_DATASETS = {d.name: d for d in (
    SODLayout("duts_tr", ("duts_tr_zip",), "**/DUTS-TR-Image/*.jpg", "**/DUTS-TR-Mask/*.png", 10553, title="DUTS-TR"),
    SODLayout("duts_te", ("duts_te_zip",), "**/DUTS-TE-Image/*.jpg", "**/DUTS-TE-Mask/*.png", 5019, title="DUTS-TE"),
    SODLayout("msra_b", ("msra_b_zip",), "**/MSRA-B/*.jpg", "**/MSRA-B/*.png", 5000,
              split_lists=(("train", "**/train_cvpr2013.txt"), ("val", "**/valid_cvpr2013.txt"),
                           ("test", "**/test_cvpr2013.txt")), title="MSRA-B"),
    SODLayout("ecssd", ("ecssd_images_zip", "ecssd_masks_zip"), "**/images/*.jpg", "**/ground_truth_mask/*.png",
              1000, title="ECSSD"),
    SODLayout("pascal_s", ("pascal_s_zip",), "**/imgs/pascal/*.jpg", "**/masks/pascal/*.png", 850,
              title="PASCAL-S"),  # grey-level masks (fraction of annotators): threshold at 127
    SODLayout("hku_is", ("hku_is_rar",), "**/imgs/*.png", "**/gt/*.png", 4447, title="HKU-IS"),
    SODLayout("thur15k", ("thur15k_zip",), "**/Src/*.jpg", "**/Src/*.png", 6232, title="THUR15K"),
    SODLayout("dut_omron", ("dut_omron_images_zip", "dut_omron_masks_zip"), "**/DUT-OMRON-image/*.jpg",
              "**/pixelwiseGT-new-PNG/*.png", 5168, title="DUT-OMRON"),
)}
#: The seven test sets of the paper's Tables 1 and 2, in the paper's column order.
SOD_TEST_SETS = ("msra_b", "duts_te", "ecssd", "pascal_s", "hku_is", "thur15k", "dut_omron")


def sod_root(name: str, *, download: bool = False, verify: bool = False) -> Path:
    """Fetch and unpack the archive(s) of dataset ``name``; return the folder that holds them.

    Each archive is unpacked into ``<cache>/datasets/sod/<name>/<archive>``, so the returned
    folder holds every archive of the dataset and nothing else.

    Raises:
        ValueError: unknown ``name``.
        FileNotFoundError: an archive is missing and ``download=False``.
        DatasetError: a RAR archive (HKU-IS), which Python cannot unpack: unpack it by hand and
            pass ``root=`` to :class:`SaliencyDataset`.
    """
    check_choice(name, "name", tuple(SOD_DATASETS))
    layout = SOD_DATASETS[name]
    for archive in layout.archives:
        path = fetch(archive, download=download, verify=verify)
        if path.suffix == ".rar":
            raise DatasetError(
                f"dataset {name!r}: '{path}' is a RAR archive, which Python's standard library cannot unpack. "
                f"Unpack it by hand (e.g. `unrar x '{path}' '{path.parent}/extracted/'`) and pass "
                f"root='{path.parent}/extracted' to SaliencyDataset.")
        extract(path, Path(cache_dir("datasets", "sod", name)) / archive)
    return Path(cache_dir("datasets", "sod", name))


def _read_list(path: Path) -> set:
    names = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            names.add(Path(line).stem)
    return names


def sod_pairs(name: str, root, split: str | None = None) -> list:
    """``(image_path, mask_path)`` pairs of dataset ``name`` under ``root``, sorted by file name
    (:func:`pixelbook.data.files.find_pairs` on the dataset's :class:`SODLayout`).

    Images without a mask are left out (THUR15K labels only 6232 of its images). With ``split``
    (MSRA-B), only the images named in the split's list file are kept.

    Raises:
        FileNotFoundError: no pair at all, a mask without an image, two files of one name, or a
            missing split list, naming the layout that was expected.
        ValueError: unknown ``name``, or a ``split`` for a dataset without official splits.
    """
    check_choice(name, "name", tuple(SOD_DATASETS))
    layout = SOD_DATASETS[name]
    lists = dict(layout.split_lists)
    if split is not None:
        if not lists:
            raise ValueError(f"`split`: dataset {name!r} has no official split; use split=None")
        check_choice(split, "split", tuple(lists))
    root = Path(root)
    pairs = find_pairs(root, layout.images, layout.masks, title=f"dataset {name!r}")
    if split is None:
        return pairs
    found = sorted(root.glob(lists[split]))
    if not found:
        raise FileNotFoundError(f"dataset {name!r}: no split list '{lists[split]}' under '{root}'")
    wanted = _read_list(found[0])
    pairs = [(img, mask) for img, mask in pairs if img.stem in wanted]
    if not pairs:
        raise FileNotFoundError(f"dataset {name!r}: split {split!r} lists no image present under '{root}'")
    return pairs


def _standardize(image: torch.Tensor) -> torch.Tensor:
    return (image - image.mean((-2, -1), keepdim=True)) / image.std((-2, -1), keepdim=True).clamp_min(1e-6)


def _check_size(size) -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"`size`: expected None or an int >= 1, got {size!r}")


class SaliencyDataset(torch.utils.data.Dataset):
    """One of the paper's salient-object datasets, as ``image`` / ``mask`` / ``labels`` samples.

    Pre-processing follows [CAS, §4.2]: "All images were resized to 256 × 256 and standardised to
    have mean 0 and unit variance". Here, per sample: the image is read as RGB in [0, 1]; the mask
    is read as grey levels and binarised (``grey > mask_threshold`` of the layout, 127: PASCAL-S
    stores the fraction of annotators); both are resized to ``size`` × ``size`` by one
    ``torchvision.transforms.v2.Resize`` (image bilinear with antialiasing, mask nearest, as a
    ``tv_tensors.Mask``); then the image is standardised per channel over its own pixels (the
    official code uses ImageNet statistics for training and none at test time).

    Args:
        name: one of :data:`SOD_DATASETS` (``"duts_tr"``, ``"duts_te"``, ``"msra_b"``, ``"ecssd"``,
            ``"pascal_s"``, ``"hku_is"``, ``"thur15k"``, ``"dut_omron"``).
        root: the unpacked dataset (any folder that contains the layout); ``None`` fetches and
            unpacks the archives through the registry (:func:`sod_root`).
        split: ``"train"``, ``"val"`` or ``"test"`` for MSRA-B (the DRFI lists; the paper's
            "6:4" split is train + val : test); ``None`` for the whole dataset.
        size: side of the square output, or ``None`` to keep each image's size.
        standardize: standardise the image per channel (else values in [0, 1]).
        download, verify: passed to the registry's ``fetch`` (no checksum is published for these
            datasets, so ``verify=True`` fails with the file's actual sha256 to pin).
        transform: optional callable applied to each sample dict.

    A sample is a dict: ``image`` ``(3, S, S)`` float32, ``mask`` ``(S, S)`` bool, ``labels``
    ``(S, S)`` int64 (the mask as 0/1, what the losses take) and ``id`` (the file name).

    Raises:
        FileNotFoundError: the layout is not found under ``root``. ValueError (on access): an
            unreadable file, or a mask whose size differs from its image's.
    """

    def __init__(self, name: str, root=None, *, split: str | None = None, size: int | None = 256,
                 standardize: bool = True, download: bool = False, verify: bool = False, transform=None):
        check_choice(name, "name", tuple(SOD_DATASETS))
        _check_size(size)
        if root is None:
            root = sod_root(name, download=download, verify=verify)
        self._setup(name, SOD_DATASETS[name], Path(root), sod_pairs(name, root, split), size, standardize, transform)

    def _setup(self, name, layout, root, pairs, size, standardize, transform):
        """Shared with :class:`pixelbook.data.msra10k.MSRA10KDataset`, which finds its pairs itself."""
        self.name, self.layout, self.root, self.pairs = name, layout, root, pairs
        self.size, self.standardize, self.transform = size, standardize, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        img_path, mask_path = self.pairs[i]
        img = read_rgb(img_path)
        m = read_grey(mask_path) > self.layout.mask_threshold
        if m.shape != img.shape[1:]:
            raise ValueError(f"'{mask_path}': mask {tuple(m.shape)} and image {tuple(img.shape[1:])} differ in size")
        if self.size is not None:
            from torchvision.transforms import v2

            img, m = apply_joint(v2.Resize((self.size, self.size)), img, m)
        if self.standardize:
            img = _standardize(img)
        out = {"image": img.contiguous(), "mask": m, "labels": m.long(), "id": img_path.stem}
        return self.transform(out) if self.transform is not None else out
