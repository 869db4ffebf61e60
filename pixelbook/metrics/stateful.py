r"""Dataset-level metrics as ``torchmetrics.Metric`` classes: sums accumulated batch by batch.

Each class keeps *sums* (counts, sums of errors, sums of per-image curves) as states reduced with
``dist_reduce_fx="sum"``, so ``update`` over the batches of a dataset, in any split and order, and
across processes under DDP (torchmetrics synchronises the states), gives the number that the
functional metric gives on the whole dataset at once — exactly for counts, and up to the
rounding of float64 sums otherwise. ``compute()`` returns tensors (a dict of tensors where the
functional version returns a dict), as torchmetrics does.

- :class:`MeanIoU`, :class:`PixelAccuracy`: a ``(C, C)`` int64 confusion matrix; equal to
  :func:`~pixelbook.metrics.mean_iou` and :func:`~pixelbook.metrics.pixel_accuracy`;
- :class:`DepthMetrics`: float64 sums and counts over the valid pixels; equal to
  :func:`~pixelbook.metrics.depth_metrics`;
- :class:`NormalMetrics`: the sum of the angles, the counts below each threshold and a histogram of
  the angles; equal to :func:`~pixelbook.metrics.normal_metrics` (the median to half a bin);
- :class:`SaliencyMetrics`: sums of the per-image curves, adaptive F and MAE; equal to
  :func:`~pixelbook.metrics.fbeta_scores` and :func:`~pixelbook.metrics.mae`.

The two confusion-matrix classes are torchmetrics' own ``MulticlassConfusionMatrix`` (its state is
the matrix, summed across processes), read out with this package's conventions
(:func:`~pixelbook.metrics.iou_from_confusion`). The median angle of :class:`NormalMetrics` is the
one number that is not a sum: it is read from a histogram of the angles (``bins`` bins over
[0°, 180°]), exact to half a bin width.

This module imports torchmetrics (about a second, and it loads torchvision); ``pixelbook.metrics``
imports it only when one of these classes is first used.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix

from .._checks import IGNORE_INDEX, check_int, check_shape
from .depth import depth_metrics
from .normals import normal_metrics
from .saliency import fbeta_per_image, fbeta_scores, mae_per_image
from .segmentation import confusion_matrix, mean_iou_from_confusion, pixel_accuracy_from_confusion

__all__ = ["MeanIoU", "PixelAccuracy", "DepthMetrics", "NormalMetrics", "SaliencyMetrics"]


class _ConfusionMatrixMetric(MulticlassConfusionMatrix):
    """torchmetrics' confusion matrix, filled through :func:`pixelbook.metrics.confusion_matrix`.

    ``update(pred, labels)`` validates its inputs as the functional metrics do (shapes, integer
    classes in range, ``ignore_index`` outside ``[0, C)``) and adds the batch's matrix to the state.
    """

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX, **kwargs):
        num_classes = check_int(num_classes, "num_classes", low=1)
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, validate_args=False, **kwargs)

    def update(self, pred: torch.Tensor, labels: torch.Tensor) -> None:
        cm = confusion_matrix(pred, labels, self.num_classes, self.ignore_index)
        self.confmat += cm.to(self.confmat.device)

    def _counted(self) -> torch.Tensor:
        if int(self.confmat.sum()) == 0:
            raise ValueError(f"`labels`: no pixel other than ignore_index={self.ignore_index} has been counted "
                             f"(all ignored, or `update` never called); {type(self).__name__} has no value")
        return self.confmat


class MeanIoU(_ConfusionMatrixMetric):
    r"""Dataset-wide mean IoU from a confusion matrix accumulated over batches (and processes).

    ``update(pred, labels)`` with ``(N, H, W)`` integer maps; ``compute()`` is a 0-dim float64 tensor
    equal to :func:`pixelbook.metrics.mean_iou` on the whole dataset (absent classes skipped; raises a
    ``ValueError`` naming ``labels`` if no pixel was counted). ``confmat`` holds the ``(C, C)`` int64
    matrix (rows = ground truth).

    Args:
        num_classes: :math:`C`.
        ignore_index: label of void pixels, outside ``[0, C)`` (default 255); ``None``: every pixel counts.

    Example:
        >>> m = MeanIoU(num_classes=2)
        >>> m.update(torch.tensor([[[0, 1, 1]]]), torch.tensor([[[0, 1, 0]]]))
        >>> m.update(torch.tensor([[[1, 1, 0]]]), torch.tensor([[[1, 1, 0]]]))
        >>> round(float(m.compute()), 4)   # class 0: 2/3, class 1: 3/4
        0.7083
    """

    def compute(self) -> torch.Tensor:
        return torch.tensor(mean_iou_from_confusion(self._counted()), dtype=torch.float64, device=self.confmat.device)


class PixelAccuracy(_ConfusionMatrixMetric):
    r"""Dataset-wide pixel accuracy ``trace(cm) / cm.sum()`` of a confusion matrix accumulated over batches.

    Same arguments and ``update`` as :class:`MeanIoU`; ``compute()`` equals
    :func:`pixelbook.metrics.pixel_accuracy` on the whole dataset (a 0-dim float64 tensor).

    Example:
        >>> m = PixelAccuracy(num_classes=2, ignore_index=255)
        >>> m.update(torch.tensor([[[0, 1, 1], [1, 1, 0]]]), torch.tensor([[[0, 1, 0], [1, 255, 0]]]))
        >>> float(m.compute())
        0.8
    """

    def compute(self) -> torch.Tensor:
        return torch.tensor(pixel_accuracy_from_confusion(self._counted()), dtype=torch.float64,
                            device=self.confmat.device)


_DEPTH_SUMS = ("abs_rel", "sq_rel", "sq_err", "sq_log", "log10", "d1", "d2", "d3")


class DepthMetrics(Metric):
    r"""Depth metrics [EIGEN14] over all valid pixels of a dataset, accumulated as float64 sums.

    ``update(pred, target, valid=None)`` takes what :func:`pixelbook.metrics.depth_metrics` takes
    (``(N, 1, H, W)`` or ``(N, H, W)`` depths, ``valid`` defaulting to ``target > 0``) and adds, over
    the batch's valid pixels, the count and the sums of :math:`|d-d^*|/d^*`, :math:`(d-d^*)^2/d^*`,
    :math:`(d-d^*)^2`, :math:`(\ln d-\ln d^*)^2`, :math:`|\log_{10}d-\log_{10}d^*|` and the
    indicators of :math:`\max(d/d^*, d^*/d) < 1.25^k`. ``compute()`` divides (and takes the square
    roots of the RMS terms): a dict with the keys of :func:`~pixelbook.metrics.depth_metrics`, each a
    0-dim float64 tensor, equal to it on the concatenated dataset up to float64 rounding.

    Example:
        >>> m = DepthMetrics()
        >>> m.update(torch.tensor([[[1.0, 1.2]]]), torch.ones(1, 1, 2))
        >>> m.update(torch.tensor([[[1.5, 2.0]]]), torch.ones(1, 1, 2))
        >>> float(m.compute()["d1"]), round(float(m.compute()["abs_rel"]), 4)
        (0.5, 0.425)
    """

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        for name in _DEPTH_SUMS:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        depth_metrics(pred, target, valid)  # validates everything (shapes, positivity, a valid pixel)
        if pred.ndim == 4:
            pred, target = pred[:, 0], target[:, 0]
        if valid is None:
            valid = target > 0
        elif valid.ndim == 4:
            valid = valid[:, 0]
        dp, dg = pred.detach()[valid].double(), target.detach()[valid].double()
        diff = dp - dg
        ratio = torch.maximum(dp / dg, dg / dp)
        self.count += dp.numel()
        self.abs_rel += (diff.abs() / dg).sum()
        self.sq_rel += (diff ** 2 / dg).sum()
        self.sq_err += (diff ** 2).sum()
        self.sq_log += (dp.log() - dg.log()).pow(2).sum()
        self.log10 += (dp.log10() - dg.log10()).abs().sum()
        for k, name in enumerate(("d1", "d2", "d3"), start=1):
            setattr(self, name, getattr(self, name) + (ratio < 1.25 ** k).sum())

    def compute(self) -> dict:
        if int(self.count) == 0:
            raise ValueError("`valid`: no valid pixel has been counted (`update` never called?); DepthMetrics has no value")
        n = self.count.double()
        return dict(abs_rel=self.abs_rel / n, sq_rel=self.sq_rel / n, rmse=(self.sq_err / n).sqrt(),
                    rmse_log=(self.sq_log / n).sqrt(), log10=self.log10 / n,
                    d1=self.d1 / n, d2=self.d2 / n, d3=self.d3 / n)


class NormalMetrics(Metric):
    r"""Surface-normal angular errors over all valid pixels of a dataset.

    ``update(pred, target, valid=None)`` takes what :func:`pixelbook.metrics.normal_metrics` takes
    and accumulates the count of valid pixels, the sum of their angles (degrees, float64), the counts
    below 11.25°, 22.5° and 30°, and a histogram of the angles with ``bins`` equal bins over
    [0°, 180°]. ``compute()``: a dict with the keys of :func:`~pixelbook.metrics.normal_metrics`
    (0-dim float64 tensors). ``mean``, ``a11``, ``a22``, ``a30`` equal the functional values on the
    whole dataset up to float64 rounding; ``median`` is the midpoint of the histogram bin holding it
    (for an even count, the mean of the two middle values' bins), within half a bin width
    (``90 / bins`` degrees; 0.005° for the default) of the exact median.

    Args:
        bins: histogram bins over [0°, 180°] for the median (default 18 000: 0.01° wide).

    Example:
        >>> up = torch.zeros(1, 3, 2, 2); up[:, 2] = 1.0
        >>> side = torch.zeros(1, 3, 2, 2); side[:, 0] = 1.0
        >>> m = NormalMetrics(); m.update(side, up); m.update(up, up)
        >>> {k: round(float(v), 2) for k, v in m.compute().items()}
        {'mean': 45.0, 'median': 45.0, 'a11': 0.5, 'a22': 0.5, 'a30': 0.5}
    """

    full_state_update = False

    def __init__(self, bins: int = 18_000, **kwargs):
        super().__init__(**kwargs)
        self.bins = check_int(bins, "bins", low=1)
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("angle_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("below", default=torch.zeros(3, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("histogram", default=torch.zeros(self.bins, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        normal_metrics(pred, target, valid)  # validates everything (shapes, finiteness, zero vectors)
        p, g = pred.detach().double(), target.detach().double()
        if valid is None:
            valid = g.norm(dim=1) > 0
        elif valid.ndim == 4:
            valid = valid[:, 0]
        p = torch.nn.functional.normalize(p.permute(0, 2, 3, 1)[valid], dim=1, eps=0.0)
        g = torch.nn.functional.normalize(g.permute(0, 2, 3, 1)[valid], dim=1, eps=0.0)
        ang = torch.rad2deg(torch.atan2(torch.linalg.cross(p, g, dim=1).norm(dim=1), (p * g).sum(1)))
        self.count += ang.numel()
        self.angle_sum += ang.sum()
        self.below += torch.stack([(ang < t).sum() for t in (11.25, 22.5, 30.0)])
        idx = (ang / 180.0 * self.bins).floor().long().clamp_(0, self.bins - 1)
        self.histogram += torch.bincount(idx, minlength=self.bins)

    def _bin_of_rank(self, rank: int) -> torch.Tensor:
        """Midpoint (degrees) of the bin holding the ``rank``-th smallest angle (1-based)."""
        k = int(torch.searchsorted(self.histogram.cumsum(0), torch.tensor(rank, device=self.histogram.device)))
        return torch.tensor((k + 0.5) * 180.0 / self.bins, dtype=torch.float64, device=self.histogram.device)

    def compute(self) -> dict:
        n = int(self.count)
        if n == 0:
            raise ValueError("`valid`: no valid pixel has been counted (`update` never called?); NormalMetrics has no value")
        median = (self._bin_of_rank((n + 1) // 2) + self._bin_of_rank(n // 2 + 1)) / 2
        below = self.below.double() / n
        return dict(mean=self.angle_sum / n, median=median, a11=below[0], a22=below[1], a30=below[2])


class SaliencyMetrics(Metric):
    r"""Salient-object F-β (max, mean, adaptive) and MAE over a dataset, accumulated per image.

    ``update(probs, labels)`` takes what :func:`pixelbook.metrics.fbeta_scores` takes and adds, over
    the batch's images, the sums of the per-image precision and recall curves (``average="pr"``) or
    F curves (``average="f"``), of the adaptive F and of the per-image MAE, and the image count.
    ``compute()``: ``dict(max_f, mean_f, adaptive_f, mae)`` of 0-dim float64 tensors, equal to
    :func:`~pixelbook.metrics.fbeta_scores` and :func:`~pixelbook.metrics.mae` on the concatenated
    dataset up to float64 rounding.

    Args:
        beta2: :math:`\beta^2`, default 0.3.
        thresholds: as in :func:`~pixelbook.metrics.fbeta_scores` (count or increasing sequence).
        average: ``"pr"`` or ``"f"``, as in :func:`~pixelbook.metrics.fbeta_scores`.

    Example:
        >>> labels = torch.zeros(2, 4, 4, dtype=torch.bool); labels[:, 1:3, 1:3] = True
        >>> m = SaliencyMetrics(); m.update(labels[:1].float(), labels[:1]); m.update(labels[1:].float(), labels[1:])
        >>> float(m.compute()["max_f"]), float(m.compute()["mae"])
        (1.0, 0.0)
    """

    full_state_update = False

    def __init__(self, beta2: float = 0.3, thresholds=256, average: str = "pr", **kwargs):
        super().__init__(**kwargs)
        probe = fbeta_scores(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1, dtype=torch.bool), beta2=beta2,
                             thresholds=thresholds, average=average, return_curves=True)  # validates the options
        self.beta2, self.thresholds, self.average = float(beta2), thresholds, average
        T = probe["thresholds"].numel()
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        for name in ("precision_sum", "recall_sum", "f_sum"):
            self.add_state(name, default=torch.zeros(T, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("adaptive_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("mae_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        check_shape(probs, "probs", "N H W")
        s = fbeta_per_image(probs, labels, beta2=self.beta2, thresholds=self.thresholds, return_curves=True)
        self.count += probs.shape[0]
        self.precision_sum += s["precision"].sum(0).to(self.precision_sum.device)
        self.recall_sum += s["recall"].sum(0).to(self.recall_sum.device)
        self.f_sum += s["f"].sum(0).to(self.f_sum.device)
        self.adaptive_sum += s["adaptive_f"].sum().to(self.adaptive_sum.device)
        self.mae_sum += mae_per_image(probs, labels).sum().to(self.mae_sum.device)

    def compute(self) -> dict:
        n = int(self.count)
        if n == 0:
            raise ValueError("`probs`: no image has been counted (`update` never called?); SaliencyMetrics has no value")
        if self.average == "pr":
            P, R = self.precision_sum / n, self.recall_sum / n
            num, den = (1 + self.beta2) * P * R, self.beta2 * P + R
            curve = torch.where(num > 0, num / torch.where(num > 0, den, torch.ones_like(den)), torch.zeros_like(num))
        else:
            curve = self.f_sum / n
        return dict(max_f=curve.max(), mean_f=curve.mean(), adaptive_f=self.adaptive_sum / n, mae=self.mae_sum / n)
