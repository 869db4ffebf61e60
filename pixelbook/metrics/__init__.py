r"""Evaluation metrics for pixel-level prediction, with their exact conventions.

Functional metrics, one module per domain; each validates its inputs (``pixelbook._checks``), runs
under ``torch.no_grad()`` and follows the device of its inputs. One return type per function: a
score of the whole batch is a python float (a dict of floats where a family has several numbers,
plus tensors for the curves it is asked for); per-image scores come from the ``*_per_image``
functions and per-class or count arrays from :func:`confusion_matrix`, :func:`iou_from_confusion`
and the shape diagnostics, always as tensors. A batch whose pixels are all ``ignore_index`` (or
have no valid pixel) has no score: the function raises a ``ValueError`` naming ``labels`` (or
``valid``/``target``), never returns 0 or NaN.

==============================  =====================================================================
domain                          functions
==============================  =====================================================================
segmentation                    :func:`confusion_matrix`, :func:`iou_from_confusion`, :func:`mean_iou`,
                                :func:`pixel_accuracy` (+ ``*_from_confusion`` for accumulated counts),
                                :func:`matched_iou`, :func:`binary_segmentation_scores`
boundary (BSDS-like)            :func:`boundary_f` → ``ods``, ``ois``, ``ap``
depth [EIGEN14]                 :func:`depth_metrics` → ``abs_rel, sq_rel, rmse, rmse_log, log10, d1..d3``
normals                         :func:`normal_metrics` → ``mean, median, a11, a22, a30``
saliency                        :func:`fbeta_scores`, :func:`f_measure`, :func:`mae`, :func:`s_measure`,
                                :func:`e_measure`, :func:`weighted_f_measure`
image restoration               :func:`psnr`, :func:`ssim` [WANG04] (PSNR wraps torchmetrics)
shape                           :func:`star_violations`, :func:`boundary_length`, :func:`count_components`
video [DAVIS17]                 :func:`region_similarity` (J), :func:`boundary_measure` (F),
                                :func:`video_segmentation_scores`, :func:`end_point_error`
instance                        :func:`adjusted_rand_index`, :func:`segmentation_covering`,
                                :func:`best_iou_per_instance`, :func:`instance_average_precision`,
                                :func:`average_recall`, :func:`masks_from_segments`
==============================  =====================================================================

Dataset-level numbers over many batches (and, under DDP, many processes): the
``torchmetrics.Metric`` classes of :mod:`~pixelbook.metrics.stateful` — :class:`MeanIoU`,
:class:`PixelAccuracy`, :class:`DepthMetrics`, :class:`NormalMetrics`, :class:`SaliencyMetrics` —
accumulate sums and equal the functional metrics on the whole dataset. They are loaded on first
use (``pb.metrics.MeanIoU``), because importing torchmetrics takes about a second.

References (keys used in the docstrings): [EIGEN14], [BSDS], [ACHANTA09], [BORJI15], [PERAZZI12],
[FAN17], [FAN18], [MARGOLIN14], [PySODMetrics], [WANG04], [HUBERT85], [ARBELAEZ11], [HARIHARAN14],
[HOSANG16] — given in full in the module of each domain.
"""

from __future__ import annotations

from .boundary import boundary_f
from .depth import depth_metrics
from .image import psnr, psnr_per_image, ssim, ssim_per_image
from .instance import (AR_IOU_THRESHOLDS, adjusted_rand_index, adjusted_rand_index_per_image, average_recall,
                       best_iou_per_instance, instance_average_precision, masks_from_segments, segmentation_covering,
                       segmentation_covering_per_image)
from .normals import normal_metrics
from .saliency import (e_measure, e_measure_per_image, f_measure, fbeta_per_image, fbeta_scores, mae, mae_per_image,
                       s_measure, s_measure_per_image, weighted_f_measure, weighted_f_measure_per_image)
from .segmentation import (binary_segmentation_scores, confusion_matrix, iou_from_confusion, matched_iou,
                           matched_iou_per_image, mean_iou, mean_iou_from_confusion, pixel_accuracy,
                           pixel_accuracy_from_confusion)
from .shape import boundary_length, count_components, star_violations
from .video import (boundary_measure, boundary_measure_per_image, db_statistics, end_point_error, region_similarity,
                    region_similarity_per_image, seg2bmap, video_segmentation_scores)

__all__ = [
    "confusion_matrix", "iou_from_confusion", "mean_iou", "mean_iou_from_confusion", "pixel_accuracy",
    "pixel_accuracy_from_confusion", "matched_iou", "matched_iou_per_image", "binary_segmentation_scores",
    "boundary_f", "depth_metrics", "normal_metrics", "f_measure", "fbeta_scores", "fbeta_per_image", "mae",
    "mae_per_image", "s_measure", "s_measure_per_image", "e_measure", "e_measure_per_image",
    "weighted_f_measure", "weighted_f_measure_per_image", "psnr", "psnr_per_image", "ssim", "ssim_per_image",
    "star_violations",
    "boundary_length", "count_components", "region_similarity", "region_similarity_per_image", "boundary_measure",
    "boundary_measure_per_image", "seg2bmap", "db_statistics", "video_segmentation_scores", "end_point_error",
    "adjusted_rand_index", "adjusted_rand_index_per_image", "segmentation_covering",
    "segmentation_covering_per_image", "best_iou_per_instance", "masks_from_segments", "instance_average_precision",
    "average_recall", "AR_IOU_THRESHOLDS",
    "MeanIoU", "PixelAccuracy", "DepthMetrics", "NormalMetrics",
    "SaliencyMetrics",
]

_STATEFUL = ("MeanIoU", "PixelAccuracy", "DepthMetrics", "NormalMetrics", "SaliencyMetrics")


def __getattr__(name):  # PEP 562: torchmetrics (and the torchvision it loads) only when a class is used
    if name in _STATEFUL:
        from . import stateful

        return getattr(stateful, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
