"""NYU Depth v2, labeled subset: 1,449 indoor RGB-D images with dense labels [NYUv2].

Three files, each in the registry (all cached under ``cache_dir("datasets", <name>)``):

* ``nyuv2_labeled``: ``nyu_depth_v2_labeled.mat`` (~2.8 GB, MATLAB v7.3 = HDF5). As stored by
  MATLAB and read by ``h5py`` its arrays are transposed: ``images`` ``(1449, 3, 640, 480)``
  uint8, ``depths`` ``(1449, 640, 480)`` float metres (in-painted, so > 0), ``labels``
  ``(1449, 640, 480)`` uint16 in 0..894 (0 = unlabelled).
* ``nyuv2_splits``: ``splits.mat`` with the standard split, ``trainNdxs`` (795) and
  ``testNdxs`` (654), 1-based.
* ``nyuv2_class40``: ``classMapping40.mat`` with ``mapClass`` (894 values in 1..40), the
  40-class grouping of Gupta et al. used by the thesis' Chapter 2.

No sha256 of these files has been published, so they are registered with ``sha256=None`` and
:class:`NYUv2Labeled` needs ``verify=False`` to fetch them (see :mod:`pixelbook.data.registry`).
Reading HDF5 needs ``h5py``, imported only when a sample is read.

Normals are not part of the labeled set. Here they are estimated from depth by a least-squares
plane fit over a ``window x window`` neighbourhood of back-projected points (the eigenvector of
the smallest eigenvalue of their covariance), with the RGB camera intrinsics of the NYU toolbox,
:func:`pixelbook.data.synthetic.normals_from_depth`. They are *not* the normals of Eigen & Fergus
or Ladicky et al. that papers evaluate against; numbers computed with them are not comparable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice
from .registry import DatasetSpec, fetch, register
from .synthetic import normals_from_depth

__all__ = ["NYUv2Labeled", "NYU40_CLASSES", "NYU_INTRINSICS", "IGNORE_INDEX", "load_nyuv2_splits", "load_nyuv2_class40"]

#: Label of unlabelled pixels in ``labels40``.
IGNORE_INDEX = 255
#: The 40 classes of Gupta et al. (2013), in label order (as ``className`` in classMapping40.mat).
NYU40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
# RGB intrinsics from the NYU toolbox camera_params.m (fx_rgb, fy_rgb, cx_rgb, cy_rgb), with the
# principal point moved from MATLAB's 1-based to 0-based pixel coordinates.
NYU_INTRINSICS = torch.tensor(
    [[5.1885790117450188e02, 0.0, 3.2558244941119034e02 - 1],
     [0.0, 5.1946961112127485e02, 2.5373616633400465e02 - 1],
     [0.0, 0.0, 1.0]],
    dtype=torch.float32,
)
_N_RAW_CLASSES = 894
_HOMEPAGE = "https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html"
_TERMS = "no licence stated on the dataset page; cite Silberman et al., ECCV 2012"

register(DatasetSpec(
    name="nyuv2_labeled",
    url="http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",
    sha256=None,  # none published
    filename="nyu_depth_v2_labeled.mat",
    size_bytes=2972037809,  # the "canonical byte length" checked by third-party download scripts
    description="NYU Depth v2 labeled subset: 1449 RGB-D images, 640x480, 894 raw classes",
    licence=_TERMS,
    homepage=_HOMEPAGE,
))
register(DatasetSpec(
    name="nyuv2_splits",
    url="http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat",
    sha256=None,
    filename="splits.mat",
    description="NYU Depth v2 standard split: 795 train / 654 test indices (1-based)",
    licence=_TERMS,
    homepage="https://cs.nyu.edu/~silberman/projects/indoor_scene_seg_sup.html",
))
register(DatasetSpec(
    name="nyuv2_class40",
    url="https://github.com/ankurhanda/nyuv2-meta-data/raw/master/classMapping40.mat",
    sha256=None,
    filename="classMapping40.mat",
    description="NYU Depth v2 mapping of the 894 raw classes to the 40 classes of Gupta et al.",
    licence="no licence stated in the repository ankurhanda/nyuv2-meta-data",
    homepage="https://github.com/ankurhanda/nyuv2-meta-data",
))

_FILES = {"nyuv2_labeled": "nyu_depth_v2_labeled.mat", "nyuv2_splits": "splits.mat", "nyuv2_class40": "classMapping40.mat"}


def _import_h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "NYUv2Labeled reads nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5) with h5py, which is not "
            "installed: pip install h5py"
        ) from exc
    return h5py


def _is_hdf5(path: Path) -> bool:
    """HDF5 signature at offset 0 or after a MATLAB v7.3 user block (512, 1024, ... bytes)."""
    sig = b"\x89HDF\r\n\x1a\n"
    with open(path, "rb") as fh:
        head = fh.read(4096 + 8)
    return any(head[o : o + 8] == sig for o in (0, 512, 1024, 2048, 4096))


def _loadmat(path: Path, keys: tuple[str, ...]) -> dict:
    """Arrays ``keys`` of a MATLAB file, v5 (scipy) or v7.3 / HDF5 (h5py, transposed back)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, variable_names=list(keys))
        return {k: np.asarray(mat[k]) for k in keys if k in mat}
    except Exception as exc:  # scipy raises NotImplementedError for v7.3, ValueError, ... on damage
        if not _is_hdf5(path):
            raise ValueError(
                f"'{path}' is not a readable MATLAB file ({type(exc).__name__}: {exc}); delete it and fetch it again"
            ) from exc
    h5py = _import_h5py()
    with h5py.File(path, "r") as f:
        return {k: np.asarray(f[k]).T for k in keys if k in f and isinstance(f[k], h5py.Dataset)}


def load_nyuv2_splits(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The standard split from ``splits.mat``: ``{"train": ..., "test": ...}`` 0-based indices.

    Raises:
        ValueError: the file lacks ``trainNdxs``/``testNdxs`` or holds indices below 1.
    """
    mat = _loadmat(Path(path), ("trainNdxs", "testNdxs"))
    out = {}
    for split, key in (("train", "trainNdxs"), ("test", "testNdxs")):
        if key not in mat:
            raise ValueError(f"'{path}': expected a variable {key!r} (1-based indices), found {sorted(mat)}")
        idx = mat[key].astype(np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < 1:
            raise ValueError(f"'{path}': `{key}` must hold 1-based indices, got min {idx.min() if idx.size else 'none'}")
        out[split] = idx - 1
    return out


def load_nyuv2_class40(path: str | os.PathLike) -> np.ndarray:
    """Lookup table ``(895,)`` int64 from raw NYUv2 labels to 40-class labels.

    ``lut[0] = 255`` (unlabelled -> ignore), ``lut[c] = mapClass[c - 1] - 1`` in 0..39.

    Raises:
        ValueError: ``mapClass`` missing, not 894 long or outside 1..40.
    """
    mat = _loadmat(Path(path), ("mapClass",))
    if "mapClass" not in mat:
        raise ValueError(f"'{path}': expected a variable 'mapClass' (894 values in 1..40)")
    m = mat["mapClass"].astype(np.int64).reshape(-1)
    if m.size != _N_RAW_CLASSES or m.min() < 1 or m.max() > len(NYU40_CLASSES):
        raise ValueError(
            f"'{path}': expected `mapClass` of {_N_RAW_CLASSES} values in 1..40, got {m.size} values in "
            f"{m.min() if m.size else '-'}..{m.max() if m.size else '-'}"
        )
    return np.concatenate([[IGNORE_INDEX], m - 1])


class NYUv2Labeled(torch.utils.data.Dataset):
    """The NYUv2 labeled set with the standard 795/654 split and 40 classes [NYUv2].

    Args:
        root: a folder holding ``nyu_depth_v2_labeled.mat``, ``splits.mat`` and
            ``classMapping40.mat``; ``None`` fetches them through the registry.
        split: ``"train"`` (795 images), ``"test"`` (654) or ``"all"`` (1449).
        download: with ``root=None``, allow downloading missing files (~2.8 GB).
        verify: passed to :func:`~pixelbook.data.registry.fetch`; these files have no published
            checksum, so fetching needs ``verify=False``.
        normals: ``"plane"`` (least-squares plane fit, see the module docstring), ``"cross"``
            (central differences) or ``None`` (skip, faster).
        window: neighbourhood of the plane fit (odd, >= 3).
        transform: optional callable applied to each sample dict.

    A sample is a dict: ``image`` ``(3, 480, 640)`` float32 in [0, 1]; ``labels40`` ``(480, 640)``
    int64 in 0..39 (``mapClass`` of the raw label, minus 1) or 255 (raw label 0, unlabelled);
    ``depth`` ``(1, 480, 640)`` float32 metres, 0 where the stored depth is not finite and > 0;
    ``valid`` ``(480, 640)`` bool, where it is; ``normals`` ``(3, 480, 640)`` float32 camera-frame
    unit normals facing the camera and ``normals_valid`` (unless ``normals=None``), from
    :func:`pixelbook.data.synthetic.normals_from_depth` on the valid depth; ``index`` the 0-based
    image index. The HDF5 file is opened on the first read, once per process (DataLoader workers
    reopen it).

    Raises:
        FileNotFoundError: a file is missing (the message says which and where to get it).
        ImportError: ``h5py`` is not installed (on first read).
        ValueError (on access): the split names an image the file lacks, or a raw label > 894.
    """

    classes = NYU40_CLASSES
    ignore_index = IGNORE_INDEX

    def __init__(self, root=None, split: str = "train", *, download: bool = False, verify: bool = True,
                 normals: str | None = "plane", window: int = 5, transform=None):
        check_choice(split, "split", ("train", "test", "all"))
        check_choice(normals, "normals", ("plane", "cross", None))
        if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
            raise ValueError(f"`window`: expected an odd int >= 3, got {window!r}")
        if root is None:
            paths = {k: fetch(k, download=download, verify=verify) for k in _FILES}
        else:
            root = Path(root)
            if not root.is_dir():
                raise FileNotFoundError(f"`root`: '{root}' is not a folder")
            paths = {k: root / f for k, f in _FILES.items()}
            missing = [str(p) for p in paths.values() if not p.is_file()]
            if missing:
                raise FileNotFoundError(
                    f"`root`: missing {missing}; expected {list(_FILES.values())} in '{root}' "
                    f"(from {_HOMEPAGE} and https://github.com/ankurhanda/nyuv2-meta-data)"
                )
        self.path = paths["nyuv2_labeled"]
        self.lut = torch.from_numpy(load_nyuv2_class40(paths["nyuv2_class40"]))
        splits = load_nyuv2_splits(paths["nyuv2_splits"])
        self.split = split
        self.indices = np.sort(np.concatenate([splits["train"], splits["test"]])) if split == "all" else splits[split]
        self.normals, self.window, self.transform = normals, window, transform
        self._file, self._pid = None, None

    def __len__(self) -> int:
        return int(len(self.indices))

    def _h5(self):
        if self._file is None or self._pid != os.getpid():  # one handle per worker process
            h5py = _import_h5py()
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
            n = self._file["images"].shape[0]
            if len(self.indices) and int(self.indices.max()) >= n:
                raise ValueError(f"'{self.path}' holds {n} images but the split refers to image {int(self.indices.max()) + 1}")
        return self._file

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None  # h5py handles do not pickle
        return state

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        k = int(self.indices[i])
        f = self._h5()
        image = torch.from_numpy(np.ascontiguousarray(np.asarray(f["images"][k]).transpose(0, 2, 1)))
        depth = torch.from_numpy(np.ascontiguousarray(np.asarray(f["depths"][k], dtype=np.float32).T))
        raw = torch.from_numpy(np.ascontiguousarray(np.asarray(f["labels"][k]).T.astype(np.int64)))
        if int(raw.max()) > _N_RAW_CLASSES:
            raise ValueError(f"'{self.path}': image {k + 1} has raw label {int(raw.max())} > {_N_RAW_CLASSES}")
        valid = torch.isfinite(depth) & (depth > 0)
        depth = torch.where(valid, depth, torch.zeros_like(depth))
        out = {
            "image": image.float() / 255.0,
            "labels40": self.lut[raw],
            "depth": depth[None],
            "valid": valid,
            "index": k,
        }
        if self.normals is not None:
            n, ok = normals_from_depth(out["depth"][None], NYU_INTRINSICS, method=self.normals,
                                       window=self.window, valid=valid[None])
            out["normals"], out["normals_valid"] = n[0], ok[0]
        return self.transform(out) if self.transform is not None else out
