r"""Evaluation metrics for pixel-level prediction, with their exact conventions.

One function per metric family; each validates its inputs (``pixelbook._checks``), runs under
``torch.no_grad()``, follows the device of its inputs and returns python floats (in a dict where a
family has several numbers) or tensors for per-class / per-image arrays.

==============================  =====================================================================
family                          functions
==============================  =====================================================================
semantic segmentation           :func:`confusion_matrix`, :func:`iou_from_confusion`, :func:`mean_iou`,
                                :func:`pixel_accuracy` (+ ``*_from_confusion`` for accumulated counts)
boundaries (BSDS-like)          :func:`boundary_f` → ``ods``, ``ois``, ``ap``
depth [EIGEN14]                 :func:`depth_metrics` → ``abs_rel, sq_rel, rmse, rmse_log, log10, d1..d3``
surface normals                 :func:`normal_metrics` → ``mean, median, a11, a22, a30``
salient objects                 :func:`fbeta_scores`, :func:`f_measure`, :func:`mae`, :func:`s_measure`
image restoration               :func:`psnr`, :func:`ssim` (thin wrappers over torchmetrics)
==============================  =====================================================================

References (keys used in the docstrings):

- [EIGEN14] Eigen, Puhrsch, Fergus, "Depth map prediction from a single image using a multi-scale deep
  network", NeurIPS 2014, Sec. 4.
- [BSDS] Arbeláez, Maire, Fowlkes, Malik, "Contour detection and hierarchical image segmentation", TPAMI
  2011, Sec. 3 (benchmark code ``collect_eval_bdry.m``).
- [ACHANTA09] Achanta et al., "Frequency-tuned salient region detection", CVPR 2009 (F-β, β² = 0.3,
  adaptive threshold 2 × mean saliency).
- [BORJI15] Borji, Cheng, Jiang, Li, "Salient object detection: a benchmark", TIP 2015 (PR curves
  averaged over images, max F from the averaged curve).
- [PERAZZI12] Perazzi et al., "Saliency filters", CVPR 2012 (MAE).
- [FAN17] Fan, Cheng, Liu, Li, Borji, "Structure-measure: a new way to evaluate foreground maps", ICCV
  2017, Eqs. 1–6, and its MATLAB code ``StructureMeasure.m``.
- [PySODMetrics] lartpang/PySODMetrics (``Fmeasure``, ``MAE``, ``Smeasure``), the Python port of the
  MATLAB SOD toolboxes that most recent SOD papers use.
- [WANG04] Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
  structural similarity", TIP 2004 (SSIM, 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from ._checks import check_dtype, check_finite, check_labels, check_range, check_shape

__all__ = [
    "confusion_matrix",
    "iou_from_confusion",
    "mean_iou",
    "mean_iou_from_confusion",
    "pixel_accuracy",
    "pixel_accuracy_from_confusion",
    "boundary_f",
    "depth_metrics",
    "normal_metrics",
    "f_measure",
    "fbeta_scores",
    "mae",
    "s_measure",
    "psnr",
    "ssim",
]

# MATLAB's `eps` (= np.spacing(1.0)), the stabiliser of Fan et al.'s StructureMeasure.m [FAN17].
_MATLAB_EPS = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------------------------------
# small validation helpers (scalars, masks, devices); tensors go through pixelbook._checks
# --------------------------------------------------------------------------------------------------
def _check_int(value, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}`: expected an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}`: expected an int >= {minimum}, got {value}")
    return int(value)


def _check_real(value, name: str, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}`: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}`: expected a finite number, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"`{name}`: expected a value {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"`{name}`: expected a value <= {high}, got {value}")
    return value


def _check_reduction(reduction, allowed=("mean", "none")) -> None:
    if reduction not in allowed:
        raise ValueError(f"`reduction`: expected one of {allowed}, got {reduction!r}")


def _check_nonempty(x: torch.Tensor, name: str) -> None:
    if x.numel() == 0:
        raise ValueError(f"`{name}`: expected a non-empty tensor, got shape {tuple(x.shape)}")


def _check_same_device(x: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if x.device != ref.device:
        raise ValueError(f"`{name}`: expected a tensor on {ref.device} (as `{ref_name}`), got {x.device}")


def _check_prob_map(x, name: str, spec: str, dims: dict | None = None) -> dict:
    """Shape, float dtype, non-empty, finite, values in [0, 1]."""
    dims = check_shape(x, name, spec, dims)
    check_dtype(x, name, "float")
    _check_nonempty(x, name)
    check_finite(x, name)
    check_range(x, name, 0.0, 1.0)
    return dims


def _binary_mask(m, name: str, spec: str, dims: dict, ref: torch.Tensor, ref_name: str) -> torch.Tensor:
    """Accept a bool mask, or an integer/float tensor holding only 0 and 1; return it as bool."""
    check_shape(m, name, spec, dims)
    _check_same_device(m, name, ref, ref_name)
    if m.dtype == torch.bool:
        return m
    if m.is_complex():
        raise TypeError(f"`{name}`: expected a bool (or 0/1) mask, got {m.dtype}")
    check_finite(m, name)
    bad = (m != 0) & (m != 1)
    if bool(bad.any()):
        raise ValueError(
            f"`{name}`: expected a bool mask or values in {{0, 1}}, got {int(bad.sum())} other values "
            f"(e.g. {m[bad][0].item():.4g})"
        )
    return m != 0


def _valid_mask(valid, dims: dict, ref: torch.Tensor, ref_name: str) -> torch.Tensor:
    """`valid` as a bool ``(N, H, W)`` mask; ``(N, 1, H, W)`` is squeezed."""
    if torch.is_tensor(valid) and valid.ndim == 4:
        check_shape(valid, "valid", "N 1 H W", dims)
        valid = valid[:, 0]
    check_shape(valid, "valid", "N H W", dims)
    _check_same_device(valid, "valid", ref, ref_name)
    if valid.dtype != torch.bool:
        raise TypeError(f"`valid`: expected a bool mask, got {valid.dtype}")
    return valid


def _valid_or_default(valid, default: torch.Tensor, what: str, dims: dict, pred: torch.Tensor) -> torch.Tensor:
    """``valid`` checked against ``pred`` (or ``default`` when ``None``); raise if it selects nothing."""
    if valid is None:
        if not bool(default.any()):
            raise ValueError(f"`gt`: expected {what} (the default valid mask), got none")
        return default
    valid = _valid_mask(valid, dims, pred, "pred")
    if not bool(valid.any()):
        raise ValueError("`valid`: expected at least one valid pixel, got none")
    return valid


def _thresholds(thresholds, name: str, interior: bool) -> torch.Tensor:
    """Ascending float64 CPU thresholds in [0, 1], from an int count or an explicit sequence.

    ``interior=True``: ``linspace(1/(T+1), 1 - 1/(T+1), T)`` as the BSDS benchmark
    (``evaluation_bdry_image.m``); ``interior=False``: ``linspace(0, 1, T)``, i.e. k/255 for T = 256 as
    PySODMetrics' uint8 histogram.
    """
    if isinstance(thresholds, (int, np.integer)) and not isinstance(thresholds, bool):
        count = _check_int(thresholds, name, minimum=1 if interior else 2)
        if interior:
            return torch.linspace(1.0 / (count + 1), 1.0 - 1.0 / (count + 1), count, dtype=torch.float64)
        return torch.linspace(0.0, 1.0, count, dtype=torch.float64)
    if torch.is_tensor(thresholds) or isinstance(thresholds, (list, tuple, np.ndarray)):
        t = torch.as_tensor(thresholds).detach().to("cpu", torch.float64)
        if t.ndim != 1 or t.numel() == 0:
            raise ValueError(f"`{name}`: expected an int or a non-empty 1-D sequence, got shape {tuple(t.shape)}")
        check_finite(t, name)
        check_range(t, name, 0.0, 1.0)
        if t.numel() > 1 and not bool((t[1:] > t[:-1]).all()):
            raise ValueError(f"`{name}`: expected strictly increasing thresholds")
        return t
    raise TypeError(f"`{name}`: expected an int or a 1-D sequence of thresholds, got {type(thresholds).__name__}")


def _counts_at_least(values: torch.Tensor, mask: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """``out[n, k] = #{i : mask[n, i] and values[n, i] >= thr[k]}`` for ascending ``thr``, in one pass.

    Each value is binned by how many thresholds it reaches (``searchsorted``), the bins are counted
    with ``bincount`` and a reversed cumulative sum turns "in bin k" into "reaches threshold k". No loop
    over thresholds or pixels. values ``(N, P)`` float64, mask ``(N, P)`` bool, thr ``(T,)`` float64.
    """
    n_img, n_thr = values.shape[0], thr.numel()
    b = torch.searchsorted(thr.to(values.device), values.contiguous(), right=True) - 1  # (N, P) in [-1, T-1]
    keep = mask & (b >= 0)
    flat = (torch.arange(n_img, device=values.device)[:, None] * n_thr + b)[keep]
    hist = torch.bincount(flat, minlength=n_img * n_thr).reshape(n_img, n_thr)
    return hist.flip(1).cumsum(1).flip(1)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, and 0 where den == 0 (then num == 0 too: a count of an empty set)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


# --------------------------------------------------------------------------------------------------
# semantic segmentation
# --------------------------------------------------------------------------------------------------
def _check_index_maps(preds, labels, num_classes, ignore_index) -> None:
    for x, name in ((preds, "preds"), (labels, "labels")):
        if torch.is_tensor(x) and x.ndim == 4 and x.is_floating_point():
            raise ValueError(
                f"`{name}`: expected shape (N, H, W) of class indices, got {tuple(x.shape)} "
                "(scores? take `.argmax(1)` first)"
            )
    d = check_shape(preds, "preds", "N H W")
    check_shape(labels, "labels", "N H W", d)
    _check_same_device(labels, "labels", preds, "preds")
    _check_nonempty(preds, "preds")
    check_labels(preds, "preds", num_classes)
    check_labels(labels, "labels", num_classes, ignore_index)


@torch.no_grad()
def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    r"""Confusion matrix of a batch of label maps, pixels pooled over all images.

    ``cm[i, j]`` counts pixels whose ground truth is class ``i`` and prediction class ``j`` (rows =
    ground truth). Pixels with ``labels == ignore_index`` are left out. Matrices of several batches add
    up: ``sum(confusion_matrix(p, l, C) for p, l in batches)`` is the dataset's matrix, from which
    :func:`iou_from_confusion` and :func:`mean_iou_from_confusion` give the dataset-wide scores.

    Args:
        preds: ``(N, H, W)`` integer (int64) predicted classes in ``[0, num_classes)``.
        labels: ``(N, H, W)`` integer ground truth in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: :math:`C` ≥ 1.
        ignore_index: label value to skip (e.g. 255 for VOC); must lie outside ``[0, C)`` so that it
            cannot be confused with a class. ``None``: every pixel counts.

    Returns:
        ``(C, C)`` int64 tensor on the inputs' device.

    Raises:
        TypeError: non-integer ``preds``/``labels`` or ``num_classes``.
        ValueError: naming the argument for wrong shapes, classes out of range, an ``ignore_index``
            inside ``[0, C)``.

    Example:
        >>> import torch
        >>> preds = torch.tensor([[[0, 1, 1], [1, 1, 0]]])
        >>> labels = torch.tensor([[[0, 1, 0], [1, 255, 0]]])
        >>> confusion_matrix(preds, labels, num_classes=2, ignore_index=255)
        tensor([[2, 1],
                [0, 2]])
    """
    C = _check_int(num_classes, "num_classes", minimum=1)
    if ignore_index is not None:
        ignore_index = _check_int(ignore_index, "ignore_index")
        if 0 <= ignore_index < C:
            raise ValueError(
                f"`ignore_index`: expected a value outside [0, {C}) (e.g. 255 or -1), got {ignore_index}; "
                "a class index cannot double as the ignore label"
            )
    _check_index_maps(preds, labels, C, ignore_index)
    preds, labels = preds.long(), labels.long()
    if ignore_index is not None:
        keep = labels != ignore_index
        preds, labels = preds[keep], labels[keep]
    idx = (labels * C + preds).reshape(-1)
    return torch.bincount(idx, minlength=C * C).reshape(C, C)


@torch.no_grad()
def iou_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    r"""Per-class intersection over union :math:`\mathrm{IoU}_c = TP_c / (TP_c + FP_c + FN_c)`.

    With rows = ground truth: :math:`TP_c = cm_{cc}`, :math:`FN_c = \sum_j cm_{cj} - TP_c`,
    :math:`FP_c = \sum_i cm_{ic} - TP_c` (PASCAL VOC definition; thesis note §5).

    **Absent-class convention:** a class that occurs neither in the ground truth nor in the predictions
    (:math:`TP + FP + FN = 0`) gets ``NaN`` — its IoU is undefined, not 0 or 1 — and
    :func:`mean_iou` skips it. A class only predicted (false positives, no ground truth) gets 0 and
    counts. This matches ``torchmetrics.functional.classification.multiclass_jaccard_index``
    (``average="macro"``, torchmetrics ≥ 1.6).

    Args:
        cm: ``(C, C)`` non-negative counts (integer or float), rows = ground truth, e.g. from
            :func:`confusion_matrix`, possibly summed over batches.

    Returns:
        ``(C,)`` float64 tensor, ``NaN`` for absent classes.

    Example:
        >>> import torch
        >>> iou_from_confusion(torch.tensor([[2, 1, 0], [0, 2, 0], [0, 0, 0]]))
        tensor([0.6667, 0.6667,    nan], dtype=torch.float64)
    """
    check_shape(cm, "cm", "C C")
    if cm.dtype == torch.bool or cm.is_complex():
        raise TypeError(f"`cm`: expected an integer or float tensor of counts, got {cm.dtype}")
    check_finite(cm, "cm")
    check_range(cm, "cm", 0.0)
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1e-300), torch.full_like(tp, float("nan")))


@torch.no_grad()
def mean_iou_from_confusion(cm: torch.Tensor) -> float:
    """Mean over classes of :func:`iou_from_confusion`, skipping absent (``NaN``) classes.

    Raises:
        ValueError: if every class is absent (no labelled pixel and no prediction was counted).

    Example:
        >>> import torch
        >>> round(mean_iou_from_confusion(torch.tensor([[2, 1, 0], [0, 2, 0], [0, 0, 0]])), 4)
        0.6667
    """
    iou = iou_from_confusion(cm)
    present = ~torch.isnan(iou)
    if not bool(present.any()):
        raise ValueError("`cm`: expected at least one counted pixel, got an all-zero confusion matrix "
                         "(every pixel ignored?)")
    return float(iou[present].mean())


@torch.no_grad()
def pixel_accuracy_from_confusion(cm: torch.Tensor) -> float:
    """Pixel accuracy ``trace(cm) / cm.sum()`` of an (accumulated) confusion matrix.

    Example:
        >>> import torch
        >>> pixel_accuracy_from_confusion(torch.tensor([[2, 1], [0, 2]]))
        0.8
    """
    check_shape(cm, "cm", "C C")
    if cm.dtype == torch.bool or cm.is_complex():
        raise TypeError(f"`cm`: expected an integer or float tensor of counts, got {cm.dtype}")
    check_finite(cm, "cm")
    check_range(cm, "cm", 0.0)
    total = float(cm.double().sum())
    if total == 0:
        raise ValueError("`cm`: expected at least one counted pixel, got an all-zero confusion matrix")
    return float(cm.double().diagonal().sum()) / total


@torch.no_grad()
def mean_iou(preds: torch.Tensor, labels: torch.Tensor, num_classes: int,
             ignore_index: int | None = None) -> float:
    r"""Dataset-wide mean IoU: one confusion matrix over **all pixels of all images**, then the mean over
    classes of :math:`TP/(TP+FP+FN)` — *not* the mean of per-image mIoUs (the two differ whenever
    images differ in size or class content; the thesis' and PASCAL/Cityscapes' "mIoU" is this one).

    Classes absent from both ground truth and predictions are skipped (see :func:`iou_from_confusion`).
    Pixels labelled ``ignore_index`` are excluded. For a dataset larger than one batch, sum
    :func:`confusion_matrix` over batches and call :func:`mean_iou_from_confusion`.

    Args:
        preds: ``(N, H, W)`` int64 predicted classes in ``[0, num_classes)``.
        labels: ``(N, H, W)`` int64 ground truth in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: :math:`C`.
        ignore_index: label to skip, outside ``[0, C)``; ``None`` = none.

    Returns:
        python float in [0, 1].

    Raises:
        ValueError: naming the argument (shape, range), or if every pixel is ignored.

    Example:
        >>> import torch
        >>> preds = torch.tensor([[[0, 1, 1], [1, 1, 0]]])
        >>> labels = torch.tensor([[[0, 1, 0], [1, 1, 0]]])
        >>> mean_iou(preds, labels, num_classes=2)  # class 0: 2/3, class 1: 3/4
        0.7083333333333333
    """
    cm = confusion_matrix(preds, labels, num_classes, ignore_index)
    if int(cm.sum()) == 0:
        raise ValueError(f"`labels`: expected at least one pixel not equal to ignore_index={ignore_index}, got none")
    return mean_iou_from_confusion(cm)


@torch.no_grad()
def pixel_accuracy(preds: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = None) -> float:
    r"""Pixel accuracy = #correctly labelled pixels / #labelled pixels, pooled over the batch (thesis §5).

    Args:
        preds: ``(N, H, W)`` integer predicted classes.
        labels: ``(N, H, W)`` integer ground truth; pixels equal to ``ignore_index`` are not "labelled".
        ignore_index: label to skip; ``None`` = none.

    Returns:
        python float in [0, 1].

    Raises:
        ValueError: naming the argument (shape), or if every pixel is ignored.

    Example:
        >>> import torch
        >>> pixel_accuracy(torch.tensor([[[0, 1, 1], [1, 1, 0]]]), torch.tensor([[[0, 1, 0], [1, 255, 0]]]),
        ...                ignore_index=255)
        0.8
    """
    d = check_shape(preds, "preds", "N H W")
    check_shape(labels, "labels", "N H W", d)
    _check_same_device(labels, "labels", preds, "preds")
    check_dtype(preds, "preds", "int")
    check_dtype(labels, "labels", "int")
    _check_nonempty(preds, "preds")
    if ignore_index is not None:
        ignore_index = _check_int(ignore_index, "ignore_index")
        keep = labels != ignore_index
    else:
        keep = torch.ones_like(labels, dtype=torch.bool)
    n = int(keep.sum())
    if n == 0:
        raise ValueError(f"`labels`: expected at least one pixel not equal to ignore_index={ignore_index}, got none")
    return int(((preds == labels) & keep).sum()) / n


# --------------------------------------------------------------------------------------------------
# boundaries
# --------------------------------------------------------------------------------------------------
def _disk(radius: float) -> np.ndarray:
    """Footprint of the offsets (dy, dx) with dy² + dx² <= radius² (Euclidean, as the EDT)."""
    r = int(math.floor(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy ** 2 + xx ** 2) <= radius ** 2


@torch.no_grad()
def boundary_f(pred_prob: torch.Tensor, gt: torch.Tensor, tolerance: float = 2, thresholds=33,
               return_curves: bool = False) -> dict:
    r"""Boundary precision/recall F-measure at ODS and OIS, and AP — a **simplified, non-official**
    version of the BSDS benchmark [BSDS].

    At each threshold :math:`t` the predicted boundary is :math:`E_t = \{p \ge t\}`.

    - *precision* counts predicted pixels lying within ``tolerance`` pixels (Euclidean) of some
      ground-truth boundary pixel, using ``scipy.ndimage.distance_transform_edt`` of the ground truth;
    - *recall* counts ground-truth pixels within ``tolerance`` of some pixel of :math:`E_t`. Since
      :math:`\mathrm{dist}(x, E_t) \le \tau \iff \max_{\|y-x\|\le\tau} p(y) \ge t`, one grey dilation of
      ``pred_prob`` by a disk of radius τ answers this for all thresholds at once.

    Counts for all thresholds come from one histogram per image (no loop over thresholds or pixels).
    The distance transform and dilation run in scipy on the CPU (CUDA inputs are copied there); the
    returned curves are CPU tensors.

    **Differences from the official benchmark:** no thinning of the prediction (a 3-px-wide edge is
    not penalised), no one-to-one bipartite matching (several predicted pixels may match one ground
    truth pixel), a single ground truth per image (BSDS has 5–9 annotators), a fixed tolerance in pixels
    (BSDS: ``maxDist = 0.0075 × diagonal`` ≈ 4.3 px on 321×481), no interpolation between thresholds when
    maximising F, and AP as the step-wise area (below) instead of BSDS's 101-point interpolated area.
    Use it for comparisons inside this book, not against published BSDS numbers.

    Definitions (counts summed as in ``collect_eval_bdry.m``; a ratio with a zero denominator is 0):

    - ODS: counts summed over all images per threshold, :math:`F = 2PR/(P+R)`, maximised over thresholds.
    - OIS: each image's best threshold (first maximum of its own F); the counts at those thresholds are
      summed over images and give P, R, F (as BSDS does, not a mean of per-image F).
    - AP: area under the dataset PR curve, :math:`\sum_k (R_k - R_{k-1})\,P_k` over thresholds in
      decreasing order, :math:`R_{-1} = 0` (scikit-learn's ``average_precision_score`` convention).

    Args:
        pred_prob: ``(N, H, W)`` float boundary probabilities in [0, 1].
        gt: ``(N, H, W)`` bool (or 0/1) ground-truth boundary maps; at least one boundary pixel in the batch.
        tolerance: matching distance τ in pixels (≥ 0; 0 = exact position). Default 2 (ours, for 64–128 px
            images; the BSDS default corresponds to ≈ 4 px at 321×481).
        thresholds: number of thresholds ``T`` (``linspace(1/(T+1), 1-1/(T+1), T)`` as BSDS; default 33)
            or an increasing sequence of thresholds in [0, 1].
        return_curves: also return ``thresholds``, ``precision``, ``recall``, ``f`` (dataset curves,
            ``(T,)`` float64 tensors) and ``ods_threshold``.

    Returns:
        ``dict(ods=float, ois=float, ap=float)`` (+ curves if asked).

    Raises:
        ValueError / TypeError naming the argument: wrong shapes or dtypes, NaN/Inf, values outside
        [0, 1], a non-binary ``gt``, no ground-truth boundary pixel in the whole batch.

    Example:
        >>> import torch
        >>> gt = torch.zeros(1, 8, 8, dtype=torch.bool); gt[0, :, 3] = True
        >>> shifted = torch.zeros(1, 8, 8); shifted[0, :, 4] = 1.0   # one pixel to the right
        >>> boundary_f(shifted, gt, tolerance=2)["ods"], boundary_f(shifted, gt, tolerance=0)["ods"]
        (1.0, 0.0)
    """
    d = _check_prob_map(pred_prob, "pred_prob", "N H W")
    gt = _binary_mask(gt, "gt", "N H W", d, pred_prob, "pred_prob")
    tol = _check_real(tolerance, "tolerance", low=0.0)
    thr = _thresholds(thresholds, "thresholds", interior=True)
    return_curves = bool(return_curves)
    if not bool(gt.any()):
        raise ValueError("`gt`: expected at least one boundary pixel in the batch, got none (recall is undefined)")

    p = pred_prob.detach().to("cpu", torch.float64).numpy()
    g = gt.detach().cpu().numpy()
    # Precision side: distance of every pixel to the nearest ground-truth boundary pixel (EDT per image).
    near_gt = np.zeros_like(g)
    for n in range(g.shape[0]):  # one EDT per image; scipy has no batched 2-D EDT
        if g[n].any():
            near_gt[n] = ndimage.distance_transform_edt(~g[n]) <= tol
    # Recall side: max of p over the tolerance disk; a gt pixel is matched at t iff this max >= t.
    p_dil = ndimage.maximum_filter(p, footprint=_disk(tol)[None], mode="constant", cval=-1.0)

    N = p.shape[0]
    pt, pdil = torch.from_numpy(p).reshape(N, -1), torch.from_numpy(p_dil).reshape(N, -1)
    gtt, neart = torch.from_numpy(g).reshape(N, -1), torch.from_numpy(near_gt).reshape(N, -1)
    pred_pos = _counts_at_least(pt, torch.ones_like(gtt), thr)  # sumP: predicted boundary pixels
    pred_hit = _counts_at_least(pt, neart, thr)  # cntP: ... within τ of the ground truth
    gt_hit = _counts_at_least(pdil, gtt, thr)  # cntR: gt pixels within τ of the prediction
    gt_pos = gtt.sum(1, keepdim=True).expand_as(gt_hit)  # sumR

    def prf(cnt_p, sum_p, cnt_r, sum_r):
        P, R = _safe_div(cnt_p, sum_p), _safe_div(cnt_r, sum_r)
        return P, R, _safe_div(2 * P * R, P + R)

    P, R, F = prf(pred_hit.sum(0), pred_pos.sum(0), gt_hit.sum(0), gt_pos.sum(0))
    k_ods = int(torch.argmax(F))
    _, _, F_img = prf(pred_hit, pred_pos, gt_hit, gt_pos)
    best = torch.argmax(F_img, dim=1, keepdim=True)  # first maximum, as `ff(1)` in collect_eval_bdry.m
    _, _, F_ois = prf(*(c.gather(1, best).sum() for c in (pred_hit, pred_pos, gt_hit, gt_pos)))
    R_desc, P_desc = R.flip(0), P.flip(0)  # decreasing threshold = increasing recall
    ap = float((torch.diff(R_desc, prepend=R_desc.new_zeros(1)) * P_desc).sum())
    out = dict(ods=float(F[k_ods]), ois=float(F_ois), ap=ap)
    if return_curves:
        out.update(thresholds=thr, precision=P, recall=R, f=F, ods_threshold=float(thr[k_ods]))
    return out


# --------------------------------------------------------------------------------------------------
# depth and surface normals
# --------------------------------------------------------------------------------------------------
def _as_nhw(x, name: str, dims: dict | None) -> tuple[torch.Tensor, dict]:
    if torch.is_tensor(x) and x.ndim == 4:
        dims = check_shape(x, name, "N 1 H W", dims)
        return x[:, 0], dims
    if torch.is_tensor(x) and x.ndim != 3:
        raise ValueError(f"`{name}`: expected shape (N, 1, H, W) or (N, H, W), got {tuple(x.shape)}")
    dims = check_shape(x, name, "N H W", dims)
    return x, dims


@torch.no_grad()
def depth_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> dict:
    r"""Standard single-image depth metrics [EIGEN14], each a mean over all valid pixels of the batch.

    With :math:`d` the prediction, :math:`d^*` the ground truth and :math:`N` the number of valid pixels
    pooled over all images (thesis note §5):

    - ``abs_rel`` :math:`=\frac1N\sum|d-d^*|/d^*`, ``sq_rel`` :math:`=\frac1N\sum(d-d^*)^2/d^*`,
    - ``rmse`` :math:`=\sqrt{\frac1N\sum(d-d^*)^2}`, ``rmse_log`` :math:`=\sqrt{\frac1N\sum(\ln d-\ln d^*)^2}`,
    - ``log10`` :math:`=\frac1N\sum|\log_{10}d-\log_{10}d^*|`,
    - ``d1, d2, d3``: fraction (in [0, 1]) of pixels with :math:`\max(d/d^*, d^*/d) < 1.25^k`, k = 1, 2, 3.

    Computed in float64. Predictions are not clamped: a non-positive prediction at a valid pixel is an
    error (clamp it yourself, e.g. ``pred.clamp_min(1e-3)``, and say so).

    Args:
        pred: ``(N, 1, H, W)`` or ``(N, H, W)`` float predicted depths, positive where valid.
        gt: same shape, float ground-truth depths.
        valid: optional bool ``(N, H, W)`` or ``(N, 1, H, W)`` mask of pixels to score; default ``gt > 0``
            (0 marks missing depth, as in NYUv2 / KITTI).

    Returns:
        ``dict(abs_rel, sq_rel, rmse, rmse_log, log10, d1, d2, d3)`` of python floats.

    Raises:
        ValueError / TypeError naming the argument: shapes, dtypes, NaN/Inf, no valid pixel,
        non-positive depths at valid pixels.

    Example:
        >>> import torch
        >>> pred = torch.tensor([[[1.0, 1.2, 1.5, 2.0]]])   # (N, H, W) = (1, 1, 4); ratios 1, 1.2, 1.5, 2
        >>> m = depth_metrics(pred, torch.ones(1, 1, 4))
        >>> m["d1"], m["d2"], m["d3"], round(m["abs_rel"], 4)
        (0.5, 0.75, 0.75, 0.425)
    """
    pred, d = _as_nhw(pred, "pred", None)
    gt, d = _as_nhw(gt, "gt", d)
    _check_same_device(gt, "gt", pred, "pred")
    check_dtype(pred, "pred", "float")
    check_dtype(gt, "gt", "float")
    _check_nonempty(pred, "pred")
    check_finite(pred, "pred")
    check_finite(gt, "gt")
    valid = _valid_or_default(valid, gt > 0, "some pixels with gt > 0", d, pred)
    dp, dg = pred[valid].double(), gt[valid].double()
    if float(dg.min()) <= 0:
        raise ValueError(f"`gt`: expected positive depths where `valid` is True, got min {float(dg.min()):.4g}")
    if float(dp.min()) <= 0:
        raise ValueError(
            f"`pred`: expected positive depths where `valid` is True, got min {float(dp.min()):.4g} "
            "(clamp predictions, e.g. pred.clamp_min(1e-3))"
        )
    diff = dp - dg
    ratio = torch.maximum(dp / dg, dg / dp)
    return dict(
        abs_rel=float((diff.abs() / dg).mean()),
        sq_rel=float((diff ** 2 / dg).mean()),
        rmse=float(diff.pow(2).mean().sqrt()),
        rmse_log=float((dp.log() - dg.log()).pow(2).mean().sqrt()),
        log10=float((dp.log10() - dg.log10()).abs().mean()),
        d1=float((ratio < 1.25).double().mean()),
        d2=float((ratio < 1.25 ** 2).double().mean()),
        d3=float((ratio < 1.25 ** 3).double().mean()),
    )


@torch.no_grad()
def normal_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> dict:
    r"""Surface-normal angular errors, pooled over the valid pixels of the batch (thesis note §5).

    Per pixel, with both vectors normalised to unit length, the error is
    :math:`\frac{180}{\pi}\cos^{-1}(\mathrm{clip}(\mathbf n^\top\hat{\mathbf n}, -1, 1))`, evaluated as
    :math:`\operatorname{atan2}(\|\mathbf n\times\hat{\mathbf n}\|, \mathbf n^\top\hat{\mathbf n})` in
    float64 — the same angle, without acos' loss of precision near 0° and 180°.

    Returns ``mean`` and ``median`` (average of the two middle values for an even count, as
    ``numpy.median``) in **degrees**, and ``a11, a22, a30``: the **fractions in [0, 1]** (not percent) of
    pixels with error < 11.25°, < 22.5°, < 30°.

    Args:
        pred: ``(N, 3, H, W)`` float predicted normals (any non-zero length; normalised here).
        gt: ``(N, 3, H, W)`` float ground-truth normals (normalised here too; unit vectors are unchanged).
        valid: optional bool ``(N, H, W)`` or ``(N, 1, H, W)`` mask; default: pixels where ``gt`` is
            non-zero (a zero vector marks a missing normal, as in NYUv2).

    Returns:
        ``dict(mean, median, a11, a22, a30)`` of python floats.

    Raises:
        ValueError / TypeError naming the argument: shapes, dtypes, NaN/Inf, no valid pixel, a zero
        vector at a valid pixel.

    Example:
        >>> import torch
        >>> up = torch.zeros(1, 3, 2, 2); up[:, 2] = 1.0
        >>> side = torch.zeros(1, 3, 2, 2); side[:, 0] = 3.0   # 90° away, any length
        >>> normal_metrics(side, up)
        {'mean': 90.0, 'median': 90.0, 'a11': 0.0, 'a22': 0.0, 'a30': 0.0}
    """
    d = check_shape(pred, "pred", "N 3 H W")
    check_shape(gt, "gt", "N 3 H W", d)
    _check_same_device(gt, "gt", pred, "pred")
    check_dtype(pred, "pred", "float")
    check_dtype(gt, "gt", "float")
    _check_nonempty(pred, "pred")
    check_finite(pred, "pred")
    check_finite(gt, "gt")
    p, g = pred.double(), gt.double()
    pn, gn = p.norm(dim=1), g.norm(dim=1)
    valid = _valid_or_default(valid, gn > 0, "some non-zero normals", d, pred)
    for norms, name in ((pn, "pred"), (gn, "gt")):
        zero = valid & (norms == 0)
        if bool(zero.any()):
            raise ValueError(f"`{name}`: expected non-zero normal vectors where `valid` is True, "
                             f"got {int(zero.sum())} zero vectors")
    p = p.permute(0, 2, 3, 1)[valid] / pn[valid][:, None]
    g = g.permute(0, 2, 3, 1)[valid] / gn[valid][:, None]
    cos = (p * g).sum(1)
    sin = torch.linalg.cross(p, g, dim=1).norm(dim=1)
    ang = torch.rad2deg(torch.atan2(sin, cos))
    n = ang.numel()
    lo = ang.kthvalue((n + 1) // 2).values
    hi = ang.kthvalue(n // 2 + 1).values
    return dict(
        mean=float(ang.mean()),
        median=float((lo + hi) / 2),
        a11=float((ang < 11.25).double().mean()),
        a22=float((ang < 22.5).double().mean()),
        a30=float((ang < 30.0).double().mean()),
    )


# --------------------------------------------------------------------------------------------------
# salient object detection
# --------------------------------------------------------------------------------------------------
def _check_sod(probs, masks) -> tuple[torch.Tensor, torch.Tensor]:
    d = _check_prob_map(probs, "probs", "N H W")
    masks = _binary_mask(masks, "masks", "N H W", d, probs, "probs")
    return probs, masks


def f_measure(precision, recall, beta2: float = 0.3):
    r""":math:`F_\beta = \frac{(1+\beta^2)PR}{\beta^2P+R}` elementwise, and 0 where :math:`PR = 0`.

    β² = 0.3 weights precision more than recall ([ACHANTA09]; "like all previous works" [CAS]). Use it
    to turn precision/recall curves accumulated over many batches (``fbeta_scores(...,
    reduction="none", return_curves=True)``) into F.

    Args:
        precision, recall: floats or tensors of the same shape, in [0, 1].
        beta2: :math:`\beta^2` > 0.

    Example:
        >>> round(float(f_measure(0.5, 1.0)), 4)   # 1.3 * 0.5 / (0.15 + 1)
        0.5652
    """
    beta2 = _check_real(beta2, "beta2", low=0.0, low_open=True)
    P = torch.as_tensor(precision, dtype=torch.float64)
    R = torch.as_tensor(recall, dtype=torch.float64)
    num = (1 + beta2) * P * R
    den = beta2 * P + R
    return torch.where(num > 0, num / torch.where(num > 0, den, torch.ones_like(den)), torch.zeros_like(num))


@torch.no_grad()
def fbeta_scores(probs: torch.Tensor, masks: torch.Tensor, beta2: float = 0.3, thresholds=256,
                 average: str = "pr", reduction: str = "mean", return_curves: bool = False) -> dict:
    r"""F-β of saliency maps: maximum and mean over thresholds of the F-β curve, and adaptive F-β.

    Per image :math:`n` and threshold :math:`t_k` (default 256 thresholds :math:`k/255`, binarisation
    :math:`p \ge t_k`, i.e. PySODMetrics' uint8 histogram), precision :math:`P_{nk} = TP/|\{p\ge t_k\}|`
    and recall :math:`R_{nk} = TP/|G|`, each 0 when its denominator is 0 (an empty prediction has
    precision 0; an image without salient pixels has recall 0, as in [PySODMetrics]).

    ``average`` chooses how images are combined — the two conventions in use differ by up to a few
    points, so report which one you used:

    - ``"pr"`` (default): the **per-image PR curves are averaged over images**, then F is computed from
      the mean curve, :math:`F_k = F_\beta(\bar P_k, \bar R_k)` — the convention of [BORJI15]'s benchmark
      and of the widely used Evaluate-SOD (Hanqer) scripts;
    - ``"f"``: per-image F curves are averaged, :math:`F_k = \frac1N\sum_n F_\beta(P_{nk}, R_{nk})` —
      [PySODMetrics] ``Fmeasure`` / Fan et al.'s MATLAB toolbox.

    ``max_f`` = :math:`\max_k F_k`, ``mean_f`` = :math:`\frac1T\sum_k F_k`. ``adaptive_f`` is per image
    at the adaptive threshold :math:`\min(2\,\mathrm{mean}(p), 1)` [ACHANTA09, PySODMetrics
    ``get_adaptive_threshold``], binarised as :math:`p \ge t`, then averaged over images. Unlike
    PySODMetrics, ``probs`` are *not* min-max normalised per image.

    Args:
        probs: ``(N, H, W)`` float saliency in [0, 1].
        masks: ``(N, H, W)`` bool (or 0/1) ground truth.
        beta2: :math:`\beta^2`, default 0.3 [ACHANTA09].
        thresholds: count ``T ≥ 2`` (``linspace(0, 1, T)``) or an increasing sequence in [0, 1].
        average: ``"pr"`` or ``"f"``, see above.
        reduction: ``"mean"`` (python floats) or ``"none"`` (``(N,)`` float64 tensors of per-image scores;
            ``max_f``/``mean_f`` then come from each image's own curve).
        return_curves: also return ``thresholds`` ``(T,)`` and ``precision``, ``recall``, ``f`` —
            ``(T,)`` dataset curves for ``"mean"``, ``(N, T)`` per-image curves for ``"none"``.
            To evaluate a dataset batch by batch with ``average="pr"``, concatenate the per-image curves,
            average them over images and apply :func:`f_measure`.

    Returns:
        ``dict(max_f, mean_f, adaptive_f)`` (+ curves if asked).

    Raises:
        ValueError / TypeError naming the argument: shapes, dtypes, NaN/Inf, ``probs`` outside [0, 1],
        non-binary ``masks``, bad ``beta2``/``thresholds``/``average``/``reduction``.

    Example:
        >>> import torch
        >>> masks = torch.zeros(2, 4, 4, dtype=torch.bool); masks[:, 1:3, 1:3] = True
        >>> scores = fbeta_scores(masks.float(), masks)   # a perfect map
        >>> scores["max_f"], scores["adaptive_f"]
        (1.0, 1.0)
        >>> # mean_f < 1: at t = 0 every pixel is "salient" (P = 4/16, R = 1, F = 0.325/1.075)
        >>> round(scores["mean_f"], 6) == round((255 + 0.325 / 1.075) / 256, 6)
        True
    """
    probs, masks = _check_sod(probs, masks)
    beta2 = _check_real(beta2, "beta2", low=0.0, low_open=True)
    thr = _thresholds(thresholds, "thresholds", interior=False)
    if average not in ("pr", "f"):
        raise ValueError(f"`average`: expected one of ('pr', 'f'), got {average!r}")
    _check_reduction(reduction)
    N = probs.shape[0]
    p = probs.detach().reshape(N, -1).double()
    m = masks.reshape(N, -1)
    tp = _counts_at_least(p, m, thr)
    pp = _counts_at_least(p, torch.ones_like(m), thr)
    g = m.sum(1, keepdim=True)
    P, R = _safe_div(tp, pp), _safe_div(tp, g.expand_as(tp))
    F_img = f_measure(P, R, beta2)
    # adaptive threshold per image: min(2 * mean(p), 1)  [PySODMetrics utils.get_adaptive_threshold]
    t_ad = (2 * p.mean(1, keepdim=True)).clamp_max(1.0)
    b = p >= t_ad
    inter = (b & m).sum(1)
    F_ad = f_measure(_safe_div(inter, b.sum(1)), _safe_div(inter, g[:, 0]), beta2)
    thr = thr.to(p.device)
    if reduction == "none":
        out = dict(max_f=F_img.max(1).values, mean_f=F_img.mean(1), adaptive_f=F_ad)
        if return_curves:
            out.update(thresholds=thr, precision=P, recall=R, f=F_img)
        return out
    Pm, Rm = P.mean(0), R.mean(0)
    curve = f_measure(Pm, Rm, beta2) if average == "pr" else F_img.mean(0)
    out = dict(max_f=float(curve.max()), mean_f=float(curve.mean()), adaptive_f=float(F_ad.mean()))
    if return_curves:
        out.update(thresholds=thr, precision=Pm, recall=Rm, f=curve)
    return out


@torch.no_grad()
def mae(probs: torch.Tensor, masks: torch.Tensor, reduction: str = "mean"):
    r"""Mean absolute error :math:`\frac{1}{HW}\sum_x |S(x) - G(x)|` per image [PERAZZI12], averaged over
    images (as [PySODMetrics] ``MAE``). Computed on the continuous map ``probs`` (the CAS paper's
    definition), not on a binarised one.

    Args:
        probs: ``(N, H, W)`` float saliency in [0, 1].
        masks: ``(N, H, W)`` bool (or 0/1) ground truth.
        reduction: ``"mean"`` → python float; ``"none"`` → ``(N,)`` float64 tensor.

    Example:
        >>> import torch
        >>> mae(torch.tensor([[[0.5, 1.0], [0.0, 0.0]]]), torch.tensor([[[True, True], [False, True]]]))
        0.375
    """
    probs, masks = _check_sod(probs, masks)
    _check_reduction(reduction)
    per_image = (probs.double() - masks.double()).abs().flatten(1).mean(1)
    return per_image if reduction == "none" else float(per_image.mean())


def _matlab_std(x: np.ndarray) -> float:
    """MATLAB ``std`` (normalised by n-1; 0 for a single element)."""
    return float(np.std(x, ddof=1)) if x.size > 1 else 0.0


def _s_object_score(x: np.ndarray) -> float:
    # [FAN17, Eq. 4]: 2 x̄ / (x̄² + 1 + σ_x), + eps as in StructureMeasure.m
    mean = float(x.mean())
    return 2.0 * mean / (mean ** 2 + 1.0 + _matlab_std(x) + _MATLAB_EPS)


def _region_ssim(p: np.ndarray, g: np.ndarray) -> float:
    # [FAN17, Eq. 2] (SSIM without C1, C2) with the special cases of StructureMeasure.m's `ssim`.
    n = p.size
    if n == 0:  # an empty quadrant has weight 0 (MATLAB would give NaN here)
        return 0.0
    x, y = float(p.mean()), float(g.mean())
    sx2 = float(((p - x) ** 2).sum()) / (n - 1 + _MATLAB_EPS)
    sy2 = float(((g - y) ** 2).sum()) / (n - 1 + _MATLAB_EPS)
    sxy = float(((p - x) * (g - y)).sum()) / (n - 1 + _MATLAB_EPS)
    alpha = 4.0 * x * y * sxy
    beta = (x ** 2 + y ** 2) * (sx2 + sy2)
    if alpha != 0:
        return alpha / (beta + _MATLAB_EPS)
    return 1.0 if beta == 0 else 0.0


def _s_measure_one(p: np.ndarray, g: np.ndarray, alpha: float) -> float:
    y = float(g.mean())
    if y == 0:  # all background: the mean "non-saliency" of the prediction
        return 1.0 - float(p.mean())
    if y == 1:  # all foreground
        return float(p.mean())
    # object-aware score [FAN17, Eq. 5]: foreground on p, background on 1 - p, weighted by area
    s_obj = y * _s_object_score(p[g]) + (1 - y) * _s_object_score(1.0 - p[~g])
    # region-aware score [FAN17, Eq. 3]: split at the ground truth's centroid into 4 blocks, weighted by area
    H, W = g.shape
    rows, cols = np.nonzero(g)
    X = int(math.floor(cols.mean() + 1 + 0.5))  # 1-based centroid, MATLAB round (half away from zero)
    Y = int(math.floor(rows.mean() + 1 + 0.5))
    area = H * W
    w1, w2, w3 = X * Y / area, (W - X) * Y / area, X * (H - Y) / area
    w4 = 1.0 - w1 - w2 - w3
    s_reg = (w1 * _region_ssim(p[:Y, :X], g[:Y, :X]) + w2 * _region_ssim(p[:Y, X:], g[:Y, X:])
             + w3 * _region_ssim(p[Y:, :X], g[Y:, :X]) + w4 * _region_ssim(p[Y:, X:], g[Y:, X:]))
    return max(0.0, alpha * s_obj + (1 - alpha) * s_reg)  # [FAN17, Eq. 6], clipped at 0 as the code


@torch.no_grad()
def s_measure(probs: torch.Tensor, masks: torch.Tensor, alpha: float = 0.5, reduction: str = "mean"):
    r"""Structure measure :math:`S = \alpha S_o + (1-\alpha) S_r` of Fan et al. [FAN17, Eq. 6], per image,
    averaged over images.

    Follows the authors' MATLAB ``StructureMeasure.m`` (as ported by [PySODMetrics] ``Smeasure``):

    - ground truth all background: :math:`S = 1 - \mathrm{mean}(p)`; all foreground: :math:`S = \mathrm{mean}(p)`;
    - object-aware :math:`S_o = \mu\,O(p|_G) + (1-\mu)\,O(1-p|_{\bar G})`, with :math:`\mu` the foreground
      fraction and :math:`O(x) = 2\bar x/(\bar x^2 + 1 + \sigma_x)` (σ: standard deviation with n−1,
      0 for one pixel, as MATLAB's ``std``) [FAN17, Eqs. 4–5];
    - region-aware :math:`S_r`: the image is split at the ground-truth centroid (1-based, MATLAB
      ``round``) into four blocks, each scored by the SSIM-like
      :math:`4\bar x\bar y\sigma_{xy}/((\bar x^2+\bar y^2)(\sigma_x^2+\sigma_y^2))` (1 when both numerator
      and denominator vanish, 0 when only the numerator does) and weighted by its area [FAN17, Eqs. 1–3];
    - :math:`S` is clipped below at 0.

    A quirk of the original code, kept here: a block whose ground truth *and* prediction are both
    uniform scores 1 in :math:`S_r` even when the prediction is wrong there (numerator and denominator
    both vanish). So an inverted map scores exactly 0 only when every block mixes foreground and
    background; otherwise it keeps some region score.

    Two documented deviations, both at degenerate inputs: the centroid is rounded half away from zero
    as MATLAB (PySODMetrics' ``np.round`` rounds half to even, so the two differ when the centroid lies
    exactly on a half pixel), and an empty block (centroid on the last row/column) contributes 0 where
    the MATLAB code returns NaN. Away from these cases it agrees with PySODMetrics 1.6.2
    ``Smeasure.cal_sm`` to the last bit (checked on a few hundred random maps). Computed in float64 on
    the CPU, one image at a time.

    Args:
        probs: ``(N, H, W)`` float saliency in [0, 1].
        masks: ``(N, H, W)`` bool (or 0/1) ground truth.
        alpha: weight α of the object-aware term, in [0, 1]; 0.5 in [FAN17].
        reduction: ``"mean"`` → python float; ``"none"`` → ``(N,)`` float64 tensor (on ``probs``' device).

    Example:
        >>> import torch
        >>> masks = torch.zeros(1, 5, 5, dtype=torch.bool); masks[0, 1:4, 1:4] = True
        >>> round(s_measure(masks.float(), masks), 12), s_measure(1 - masks.float(), masks)  # perfect, inverted
        (1.0, 0.0)
    """
    probs, masks = _check_sod(probs, masks)
    alpha = _check_real(alpha, "alpha", low=0.0, high=1.0)
    _check_reduction(reduction)
    p = probs.detach().to("cpu", torch.float64).numpy()
    g = masks.detach().cpu().numpy()
    scores = torch.tensor([_s_measure_one(p[n], g[n], alpha) for n in range(p.shape[0])],
                          dtype=torch.float64)
    return scores.to(probs.device) if reduction == "none" else float(scores.mean())


# --------------------------------------------------------------------------------------------------
# image restoration
# --------------------------------------------------------------------------------------------------
def _check_image_pair(pred, target, data_range) -> float:
    d = check_shape(pred, "pred", "N C H W")
    check_shape(target, "target", "N C H W", d)
    _check_same_device(target, "target", pred, "pred")
    check_dtype(pred, "pred", "float")
    check_dtype(target, "target", "float")
    _check_nonempty(pred, "pred")
    check_finite(pred, "pred")
    check_finite(target, "target")
    return _check_real(data_range, "data_range", low=0.0, low_open=True)


@torch.no_grad()
def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, reduction: str = "mean"):
    r"""Peak signal-to-noise ratio :math:`10\log_{10}(L^2/\mathrm{MSE})` in dB, **per image** (MSE over
    C×H×W), then averaged over images — the usual restoration-paper convention. Thin wrapper over
    ``torchmetrics.functional.image.peak_signal_noise_ratio(..., dim=(1, 2, 3))``.

    An image identical to its target has PSNR ``inf`` (and so has the mean).

    Args:
        pred, target: ``(N, C, H, W)`` float images.
        data_range: :math:`L`, the span of valid values (1.0 for [0, 1] images, 255 for uint8 scale).
        reduction: ``"mean"`` → python float; ``"none"`` → ``(N,)`` tensor.

    Example:
        >>> import torch
        >>> round(psnr(torch.full((1, 1, 4, 4), 0.5), torch.full((1, 1, 4, 4), 0.6)), 4)   # MSE 0.01 -> 20 dB
        20.0
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    L = _check_image_pair(pred, target, data_range)
    _check_reduction(reduction)
    per_image = peak_signal_noise_ratio(pred.double(), target.double(), data_range=L, reduction="none",
                                        dim=(1, 2, 3))
    return per_image if reduction == "none" else float(per_image.mean())


@torch.no_grad()
def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, reduction: str = "mean",
         kernel_size: int = 11, sigma: float = 1.5):
    r"""Structural similarity [WANG04] per image, averaged over images. Thin wrapper over
    ``torchmetrics.functional.image.structural_similarity_index_measure`` (Gaussian window
    ``kernel_size``×``kernel_size``, σ = ``sigma``, K1 = 0.01, K2 = 0.03 — the paper's constants).

    Args:
        pred, target: ``(N, C, H, W)`` float images, H and W ≥ ``kernel_size``.
        data_range: span of valid values (1.0 for [0, 1] images).
        reduction: ``"mean"`` → python float; ``"none"`` → ``(N,)`` tensor.
        kernel_size: odd window size, default 11 [WANG04].
        sigma: Gaussian σ of the window, default 1.5 [WANG04].

    Example:
        >>> import torch
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim(x, x)
        1.0
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    L = _check_image_pair(pred, target, data_range)
    _check_reduction(reduction)
    k = _check_int(kernel_size, "kernel_size", minimum=1)
    if k % 2 == 0:
        raise ValueError(f"`kernel_size`: expected an odd int, got {k}")
    s = _check_real(sigma, "sigma", low=0.0, low_open=True)
    H, W = pred.shape[-2:]
    if min(H, W) < k:
        raise ValueError(f"`pred`: expected H and W >= kernel_size={k}, got {(H, W)}")
    per_image = structural_similarity_index_measure(pred.double(), target.double(), data_range=L,
                                                    kernel_size=k, sigma=s, reduction="none")
    return per_image if reduction == "none" else float(per_image.mean())
