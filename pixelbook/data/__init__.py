"""Data for the book.

* :mod:`~pixelbook.data.synthetic`: ray-cast 3-D scenes with exact, consistent labels, instance
  ids, boundaries, depth and normals (``make_scenes``), used at ``smoke`` and ``small`` scale.
* :mod:`~pixelbook.data.images`: scikit-image's sample images as tensors, offline (``load_image``).
* :mod:`~pixelbook.data.degradations`: simulated motion blur (spatially varying), JPEG and bicubic
  down-sampling, the free supervision of image restoration (Ch. 7);
  :mod:`~pixelbook.data.hr_images`: DIV2K's HR archives and any folder of photographs (Ch. 7, ``full``).
* :mod:`~pixelbook.data.registry`: real datasets, downloaded on demand into a cache folder with
  sha256 checks and resumable downloads (``fetch``, ``extract``); :mod:`~pixelbook.data.nyuv2`
  (``NYUv2Labeled``) and :mod:`~pixelbook.data.bsds` (``BSDS500``) register and read theirs.
* :mod:`~pixelbook.data.files`: the one image reader of every loader (``read_rgb``, ``read_grey``,
  ``read_label_map``) and the image/mask pairing of the salient-object and lesion datasets
  (``find_pairs``). Loaders that resize or augment move image and labels together with
  ``torchvision.transforms.v2`` (``tv_tensors.Image`` / ``tv_tensors.Mask``).

Chapter-specific data: :mod:`~pixelbook.data.starshapes` (Ch. 2), :mod:`~pixelbook.data.shapes` and
:mod:`~pixelbook.data.isic` (Ch. 3), :mod:`~pixelbook.data.segmentation` (Ch. 4: wire scenes, CamVid,
VOC + SBD), :mod:`~pixelbook.data.saliency`, :mod:`~pixelbook.data.msra10k` and
:mod:`~pixelbook.data.kits19` (Ch. 2 and 9), :mod:`~pixelbook.data.instances` (Ch. 6: overlapping
same-coloured shapes with instance ids), :mod:`~pixelbook.data.sprites` (Ch. 8: moving-sprite clips with
exact flow and occlusions), :mod:`~pixelbook.data.davis` (Ch. 8: DAVIS 2017), :mod:`~pixelbook.data.perspective`,
:mod:`~pixelbook.data.gratings` and :mod:`~pixelbook.data.cityscapes` (Ch. 5). They are imported here so that every real dataset is in
the registry (``list_datasets()``) as soon as ``pixelbook.data`` is.

Importing this package touches no network and no dataset file.
"""

from __future__ import annotations

from . import bsds, degradations, files, hr_images, images, nyuv2, registry, synthetic
from . import davis, instances, isic, kits19, msra10k, saliency, segmentation, shapes, sprites, starshapes  # noqa: F401  (register datasets)
from . import cityscapes, gratings, perspective  # noqa: F401
from .bsds import BSDS500
from .images import list_images, load_image, load_stereo_motorcycle
from .nyuv2 import NYUv2Labeled
from .registry import DatasetSpec, dataset_dir, extract, fetch, get_spec, list_datasets, register
from .synthetic import (
    SCENE_CLASSES,
    make_scene_splits,
    make_scenes,
    normals_from_depth,
    scene_class_names,
)

__all__ = [
    "synthetic", "images", "registry", "files", "nyuv2", "bsds", "degradations", "hr_images",
    "starshapes", "shapes", "isic", "segmentation", "saliency", "msra10k", "kits19", "instances", "sprites", "davis",
    "perspective", "gratings", "cityscapes",
    "SCENE_CLASSES", "scene_class_names", "make_scenes", "make_scene_splits", "normals_from_depth",
    "load_image", "list_images", "load_stereo_motorcycle",
    "DatasetSpec", "register", "get_spec", "list_datasets", "dataset_dir", "fetch", "extract",
    "NYUv2Labeled", "BSDS500",
]
