r"""KiTS19 kidney CT slices, the first experiment of Chapter 2 [NODE-LS, §4.1, Table 1].

**How to obtain it.** pixelbook does not download KiTS19. The data of the 2019 Kidney Tumor
Segmentation Challenge (Heller et al. 2019; 210 CT volumes with kidney and tumour labels,
licence CC BY-NC-SA 4.0) are distributed through the official repository
https://github.com/neheller/kits19: clone it (the labels come with it, about 500 MB) and run its
download script for the imaging (tens of GB)::

    git clone https://github.com/neheller/kits19
    cd kits19 && pip install -r requirements.txt && python -m starter_code.get_imaging

Read the challenge's terms at https://kits19.grand-challenge.org first (the brief of this chapter
assumed a registration; the repository's README shows only the scripted download — check the
current terms before use). The result is::

    data/case_00000/imaging.nii.gz        CT volume, shape (slices, height, width), Hounsfield units
    data/case_00000/segmentation.nii.gz   0 background, 1 kidney, 2 tumour
    ...
    data/case_00209/...

Reading NIfTI needs ``nibabel``, which only this loader uses: install the ``kits19`` extra
(``pip install "pixelbook[kits19]"``) or ``pip install nibabel``.

**How the paper uses it** [NODE-LS, §4.1]: 2-D transversal slices, "prune images that do not
contain a kidney and resize the data to 200 by 200"; 7108 training slices from 168 patients and
1786 validation slices from another 42. Not stated, and chosen here (ours): the kidney target is
label >= 1 (kidney and tumour), intensities are clipped to the window [-256, 512] HU and scaled to
[0, 1], images are resized bilinearly (with antialiasing) and masks by nearest neighbour, and the
patients are split by case number (cases 0-167 train, 168-209 validation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice

__all__ = ["KITS19_TRAIN_CASES", "KITS19_VAL_CASES", "kits19_case_dir", "load_kits19_slices"]

#: The paper's patient split sizes (168 / 42); which patients it used is not stated (ours: by number).
KITS19_TRAIN_CASES = tuple(range(0, 168))
KITS19_VAL_CASES = tuple(range(168, 210))
_WINDOW = (-256.0, 512.0)  # ours: HU clip window; the paper gives none


def kits19_case_dir(root, case: int) -> Path:
    """``<root>/case_<case:05d>`` (``root`` is the repository's ``data/`` folder), checked to exist."""
    path = Path(root) / f"case_{int(case):05d}"
    if not (path / "imaging.nii.gz").exists() or not (path / "segmentation.nii.gz").exists():
        raise FileNotFoundError(
            f"KiTS19: '{path}' lacks imaging.nii.gz and segmentation.nii.gz. Get the data with "
            f"`git clone https://github.com/neheller/kits19 && cd kits19 && python -m starter_code.get_imaging` "
            f"and pass root='<kits19>/data'")
    return path


def _read_nifti(path: Path) -> np.ndarray:
    try:
        import nibabel
    except ImportError as exc:
        raise ImportError('KiTS19 volumes are NIfTI files: `pip install "pixelbook[kits19]"` (or nibabel) '
                          "to read them") from exc
    return np.asarray(nibabel.load(str(path)).dataobj)


def load_kits19_slices(root, cases: Sequence[int] = KITS19_VAL_CASES, size: int = 200, target: str = "kidney",
                       window: tuple[float, float] = _WINDOW, reader=_read_nifti) -> dict:
    """2-D transversal slices that contain the target, resized to ``size`` [NODE-LS, §4.1].

    Args:
        root: the KiTS19 repository's ``data/`` folder.
        cases: case numbers to read (default: the 42 validation patients).
        size: side of the square output (the paper's 200).
        target: ``"kidney"`` (labels 1 and 2: kidney including tumour) or ``"tumour"`` (label 2).
        window: Hounsfield window, clipped and scaled to [0, 1].
        reader: ``reader(path) -> ndarray`` of shape (slices, height, width); default nibabel.

    Returns:
        dict with ``image`` ``(N, 1, size, size)`` float32 in [0, 1], ``masks`` ``(N, size, size)``
        bool, ``case`` ``(N,)`` int64 and ``slice`` ``(N,)`` int64.

    Raises:
        FileNotFoundError: a case folder is missing (the message says how to get the data).
        ValueError: bad ``target`` or ``window``, or imaging and segmentation of different shapes.
    """
    check_choice(target, "target", ("kidney", "tumour"))
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        raise ValueError(f"`window`: expected (low, high) with high > low, got {window}")
    images, masks, case_ids, slice_ids = [], [], [], []
    for case in cases:
        folder = kits19_case_dir(root, case)
        vol = np.asarray(reader(folder / "imaging.nii.gz"), dtype=np.float32)
        seg = np.asarray(reader(folder / "segmentation.nii.gz"))
        if vol.shape != seg.shape or vol.ndim != 3:
            raise ValueError(f"KiTS19 case {case}: imaging {vol.shape} and segmentation {seg.shape} must be equal "
                             f"(slices, height, width)")
        fg = seg >= 1 if target == "kidney" else seg == 2
        keep = np.flatnonzero(fg.reshape(len(fg), -1).any(1))   # "prune images that do not contain a kidney"
        if len(keep) == 0:
            continue
        x = torch.from_numpy((np.clip(vol[keep], lo, hi) - lo) / (hi - lo))[:, None]
        m = torch.from_numpy(fg[keep].astype(np.float32))[:, None]
        images.append(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
        masks.append(F.interpolate(m, size=(size, size), mode="nearest")[:, 0] > 0.5)
        case_ids.append(torch.full((len(keep),), int(case), dtype=torch.long))
        slice_ids.append(torch.from_numpy(keep.astype(np.int64)))
    if not images:
        return {"image": torch.zeros(0, 1, size, size), "masks": torch.zeros(0, size, size, dtype=torch.bool),
                "case": torch.zeros(0, dtype=torch.long), "slice": torch.zeros(0, dtype=torch.long)}
    return {"image": torch.cat(images).float(), "masks": torch.cat(masks), "case": torch.cat(case_ids),
            "slice": torch.cat(slice_ids)}
