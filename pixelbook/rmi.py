r"""Region Mutual Information (RMI) loss for semantic segmentation [RMI].

Pixel-wise cross-entropy [RMI, Eq. 1] is a sum of independent per-pixel terms: it cannot see how
the errors are arranged. RMI turns every pixel and its :math:`R\times R` neighbourhood into a
:math:`d=R^2` dimensional point, for the label map and for the probability map of each class, and
maximises a lower bound on the mutual information between the two clouds of points. With the
regression residual covariance (the Schur complement of :math:`\Sigma_P` in the joint covariance)

.. math::
    M = \Sigma_Y - \operatorname{Cov}(Y,P)\,\Sigma_P^{-1}\operatorname{Cov}(Y,P)^\top
    \qquad [\mathrm{RMI}, \mathrm{Eq.}\ 12]

each (image, class) pair contributes :math:`\ell = \tfrac{1}{2d}\log\det(M+\xi I)`
[RMI, Eqs. 14-15], and the training loss is
:math:`\lambda\,\mathrm{CE} + (1-\lambda)\frac1B\sum_b\sum_c \ell_{b,c}` [RMI, Eq. 16].

How this module computes it (re-derived from the paper, not copied from any implementation):

* :math:`\log\det(M+\xi I)` comes from **one** Cholesky factorisation of the joint
  :math:`2d\times 2d` matrix :math:`J+\xi I`, :math:`J=\operatorname{Cov}([P;Y])`. With P first,
  the lower-right :math:`d\times d` block of its Cholesky factor is the Cholesky factor of the
  Schur complement :math:`(\Sigma_Y+\xi I)-\Sigma_{YP}(\Sigma_P+\xi I)^{-1}\Sigma_{PY} = M_\xi+\xi I`,
  so :math:`\ell = \frac1d\sum_{k=d}^{2d-1}\log L_{kk}`. No explicit inverse, no NaN: ``J + ξI``
  is positive definite for any ξ > 0, even for constant predictions or absent classes. Like the
  official code, ξ therefore regularises both Σ_P (before the "inverse") and M; the paper's
  exact :math:`\Sigma_P^{-1}` is the limit ξ → 0, which does not exist for a constant prediction.
* The joint covariance is a custom autograd function that never keeps the ``2d × n`` region
  vectors alive: the forward pass builds them chunk by chunk, multiplies and drops them; the
  backward pass rebuilds them and folds the gradient back onto the pixels. Extra memory held for
  backward is the pooled maps only; the transient peak is one chunk of region vectors.
* Everything between the probabilities and the loss value runs in float64 [RMI, Sec. 4].

Defaults follow the paper (average pooling 4×4 / stride 4, R = 3, ξ = 1e-6 on the normalised
covariance, λ = 0.5, sigmoid probabilities); :meth:`RMILoss.official` returns the official code's
choices (padding ``size // 2``, ξ = 5e-4 on unnormalised scatter matrices). The pairwise baseline the chapter compares
against is :func:`pixelbook.losses.affinity_loss`, the chapter's small DeepLab-style model
:class:`pixelbook.models.MiniDeepLab`; the region vectors and their memory-lean joint covariance are
building blocks in :mod:`pixelbook.ops.covariance` (importable from here too).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import IGNORE_INDEX, check_choice, check_dtype, check_finite, check_labels, check_int, check_shape
from ._moved import moved_attribute
from .ops.covariance import joint_covariance, region_vectors  # noqa: F401  (the chapter's building blocks)

__all__ = ["downsample", "rmi_from_covariance", "rmi_lower_bound", "rmi_loss", "RMILoss", "POOL_WAYS"]

#: Pooling ways before RMI: average, max, or interpolation (nearest for labels, bilinear for
#: probabilities) [RMI, Table 3a].
POOL_WAYS = ("avg", "max", "interp")


def downsample(x: torch.Tensor, pool: str = "avg", size: int = 4, stride: int | None = None,
               padding: int = 0, kind: str = "probs") -> torch.Tensor:
    r"""Down-sample probabilities or one-hot labels before RMI [RMI, Sec. 4 "Downsampling"; Table 3a].

    Memory of the region vectors shrinks by :math:`\mathcal{DF}^2`; with float64 vectors for both
    maps RMI needs :math:`2R^2/\mathcal{DF}^2` times the float32 probability tensor (1.125 for
    R = 3, DF = 4 [RMI, Sec. 5.3.1]).

    Args:
        x: ``(N, C, H, W)`` float maps.
        pool: ``"avg"`` (the paper's choice, Table 1), ``"max"`` or ``"interp"`` (nearest
            interpolation for labels, bilinear with ``align_corners=True`` for probabilities, as in
            the official code; output size ``(H // stride, W // stride)``).
        size: pooling kernel size (the paper's DF = 4). ``size == stride == 1`` returns ``x``.
        stride: pooling stride; ``None`` means ``size`` (the paper and the official code use
            kernel = stride).
        padding: zero padding of the pooling window; the paper states none, the official code uses
            ``size // 2`` (and averages the padded zeros in, ``count_include_pad=True``).
        kind: ``"probs"`` or ``"labels"``; only matters for ``"interp"``.

    Returns:
        ``(N, C, h, w)`` down-sampled maps.

    Example:
        >>> downsample(torch.ones(1, 2, 8, 8), "avg", 4).shape
        torch.Size([1, 2, 2, 2])
    """
    check_shape(x, "x", "N C H W")
    check_dtype(x, "x", "float")
    check_choice(pool, "pool", POOL_WAYS)
    check_choice(kind, "kind", ("probs", "labels"))
    size = check_int(size, "size", low=1)
    stride = size if stride is None else check_int(stride, "stride", low=1)
    padding = check_int(padding, "padding", low=0)
    if padding > size // 2:
        raise ValueError(f"`padding`: expected at most size // 2 = {size // 2}, got {padding}")
    if size == 1 and stride == 1 and pool != "interp":
        return x
    if pool == "avg":
        return F.avg_pool2d(x, size, stride, padding)
    if pool == "max":
        return F.max_pool2d(x, size, stride, padding)
    H, W = x.shape[-2:]
    out = (max(1, H // stride), max(1, W // stride))
    if kind == "labels":
        return F.interpolate(x, size=out, mode="nearest")
    return F.interpolate(x, size=out, mode="bilinear", align_corners=True)


def rmi_from_covariance(cov: torch.Tensor, xi: float = 1e-6) -> torch.Tensor:
    r""":math:`\ell = \frac{1}{2d}\log\det(M+\xi I)` from a joint covariance of :math:`[P;Y]` [RMI, Eqs. 12, 14-15].

    With :math:`J = \begin{pmatrix}\Sigma_P & \Sigma_{PY}\\ \Sigma_{YP} & \Sigma_Y\end{pmatrix}`
    and :math:`J + \xi I = LL^\top`, the lower-right block of :math:`L` is the Cholesky factor of the
    Schur complement :math:`(\Sigma_Y+\xi I) - \Sigma_{YP}(\Sigma_P+\xi I)^{-1}\Sigma_{PY}`, so
    :math:`\log\det(M+\xi I) = 2\sum_{k\ge d}\log L_{kk}` (Eq. 15's "Tr log" without an inverse or
    an underflowing determinant). Computed in float64.

    Args:
        cov: ``(..., 2d, 2d)`` symmetric positive semi-definite, P's block first.
        xi: :math:`\xi \ge 0` added to the whole diagonal (to :math:`\Sigma_P` and to :math:`M`).

    Returns:
        ``(...)`` float64 tensor of :math:`\ell`.

    Raises:
        ValueError: odd or non-square last dimensions, ``xi < 0``, or a singular matrix with ``xi = 0``.

    Example:
        >>> cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])  # d = 1, correlation 0.8
        >>> round(float(rmi_from_covariance(cov, xi=0.0)), 6)  # 0.5 * ln(1 - 0.8**2)
        -0.510826
    """
    if not torch.is_tensor(cov) or cov.ndim < 2 or cov.shape[-1] != cov.shape[-2] or cov.shape[-1] % 2:
        got = tuple(cov.shape) if torch.is_tensor(cov) else type(cov).__name__
        raise ValueError(f"`cov`: expected shape (..., 2d, 2d), got {got}")
    check_dtype(cov, "cov", "float")
    check_finite(cov, "cov")
    if not (isinstance(xi, (int, float)) and math.isfinite(xi) and xi >= 0):
        raise ValueError(f"`xi`: expected a finite number >= 0, got {xi!r}")
    d = cov.shape[-1] // 2
    S = cov.to(torch.float64)
    if xi > 0:
        S = S + xi * torch.eye(2 * d, dtype=S.dtype, device=S.device)
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info != 0).any()):
        raise ValueError("`xi`: the joint covariance of the region vectors is singular; use xi > 0 "
                         "(the paper uses 1e-6)")
    return L.diagonal(dim1=-2, dim2=-1)[..., d:].log().sum(-1) / d


def rmi_lower_bound(probs: torch.Tensor, target: torch.Tensor, radius: int = 3, xi: float = 1e-6,
                    normalize: bool = True) -> torch.Tensor:
    r"""Per-(image, class) RMI terms :math:`\ell = -I_l = \frac{1}{2d}\log\det(M + \xi I)` [RMI, Eqs. 13-15].

    :math:`M` is the residual covariance of the linear regression of Y on P (Eq. 12) of the
    region vectors (:func:`joint_covariance`), turned into :math:`\ell` by :func:`rmi_from_covariance`.
    Lower is better. Properties (tested): :math:`\ell \ge \tfrac12\ln\xi`, with equality and an
    exactly zero gradient for a constant target map (absent class, all-void image); replacing P by
    :math:`1-P` changes nothing; for R = 1, ξ = 0 it is :math:`\tfrac12\ln(\sigma_Y^2(1-\rho^2))`.

    Args:
        probs: ``(N, C, h, w)`` probabilities (after down-sampling).
        target: ``(N, C, h, w)`` float label maps (after the same down-sampling).
        radius: :math:`R`; each point has :math:`d=R^2` coordinates. Paper: 3.
        xi: :math:`\xi \ge 0`; the paper's "1e-6 in practice". ``xi = 0`` is allowed for checks on
            non-singular data and raises on a singular covariance.
        normalize: covariances divided by the number of points (paper) or raw sums (official
            code; shifts ℓ by :math:`\tfrac12\ln n` when ξ = 0).

    Returns:
        ``(N, C)`` float64 tensor of :math:`\ell_{b,c}`.

    Raises:
        ValueError: bad shapes, non-finite input, ``xi < 0``, or a singular covariance with ``xi = 0``.

    Example:
        >>> y = (torch.rand(1, 1, 16, 16) > 0.5).float()
        >>> bool(rmi_lower_bound(y, y, 3) < rmi_lower_bound(torch.rand(1, 1, 16, 16), y, 3))
        True
    """
    if not (isinstance(xi, (int, float)) and math.isfinite(xi) and xi >= 0):
        raise ValueError(f"`xi`: expected a finite number >= 0, got {xi!r}")
    check_shape(probs, "probs", "N C H W")
    check_finite(probs, "probs")
    check_finite(target, "target")
    return rmi_from_covariance(joint_covariance(probs, target, radius, normalize), xi)


def _onehot(labels: torch.Tensor, num_classes: int, valid: torch.Tensor | None, dtype) -> torch.Tensor:
    """(N, C, H, W) one-hot of ``labels``, all-zero at void pixels (``valid`` False)."""
    safe = labels if valid is None else torch.where(valid, labels, torch.zeros_like(labels))
    y = torch.zeros(labels.shape[0], num_classes, *labels.shape[1:], dtype=dtype, device=labels.device)
    src = torch.ones_like(safe, dtype=dtype) if valid is None else valid.to(dtype)
    return y.scatter_(1, safe[:, None], src[:, None])


def _pooled_onehot(labels, num_classes, valid, pool, size, stride, padding, dtype):
    """``downsample(_onehot(labels), ...)`` without building the full-resolution one-hot.

    With kernel = stride, average pooling of a one-hot map is a per-cell histogram of the labels
    divided by the kernel area (padded zeros count, as ``avg_pool2d`` does by default), and max
    pooling is "the class occurs in the cell"; nearest interpolation picks one label per cell.
    Other settings fall back to the one-hot. Equality with the one-hot route is tested.
    """
    N, H, W = labels.shape
    stride = size if stride is None else stride
    if pool == "interp" and not (size == 1 and stride == 1):
        h, w = max(1, H // stride), max(1, W // stride)
        small = F.interpolate(labels[:, None].to(torch.float64), size=(h, w), mode="nearest")[:, 0].long()
        v = None if valid is None else F.interpolate(valid[:, None].to(torch.float64), size=(h, w),
                                                        mode="nearest")[:, 0] > 0.5
        return _onehot(small, num_classes, v, dtype)
    if size != stride or (size == 1 and pool != "interp"):
        return downsample(_onehot(labels, num_classes, valid, dtype), pool, size, stride, padding, kind="labels")
    h, w = (H + 2 * padding - size) // stride + 1, (W + 2 * padding - size) // stride + 1
    rows = torch.div(torch.arange(H, device=labels.device) + padding, stride, rounding_mode="floor")
    cols = torch.div(torch.arange(W, device=labels.device) + padding, stride, rounding_mode="floor")
    inside = (rows < h)[:, None] & (cols < w)[None, :]                      # floor mode drops the rest
    cell = (rows.clamp(max=h - 1)[:, None] * w + cols.clamp(max=w - 1)[None, :])  # (H, W)
    keep = inside[None].expand(N, H, W) if valid is None else inside[None] & valid
    safe = labels if valid is None else torch.where(valid, labels, torch.zeros_like(labels))
    index = (torch.arange(N, device=labels.device)[:, None, None] * num_classes + safe) * (h * w) + cell
    trash = N * num_classes * h * w  # dropped pixels (void, or outside the floor-mode grid) land here
    index = torch.where(keep, index, torch.full_like(index, trash)).flatten()
    counts = torch.zeros(trash + 1, dtype=dtype, device=labels.device)
    counts.index_add_(0, index, torch.ones((), dtype=dtype, device=labels.device).expand(index.numel()))
    counts = counts[:trash].reshape(N, num_classes, h, w)
    return counts / (size * size) if pool == "avg" else (counts > 0).to(dtype)


def rmi_loss(logits: torch.Tensor, labels: torch.Tensor, *, radius: int = 3, pool: str = "avg",
             pool_size: int = 4, pool_stride: int | None = None, pool_padding: int = 0, xi: float = 1e-6,
             normalize: bool = True, ce_weight: float = 0.5, activation: str = "sigmoid",
             ignore_index: int | None = IGNORE_INDEX, reduction: str = "mean") -> torch.Tensor:
    r"""Region Mutual Information loss with its cross-entropy term [RMI, Eq. 16].

    .. math::
        \mathcal L = \lambda\,\mathrm{CE} + (1-\lambda)\frac1B\sum_{b=1}^B\sum_{c=1}^C
        \tfrac{1}{2d}\log\det(M_{b,c}+\xi I)

    The probabilities are down-sampled (``pool``, ``pool_size``) with the one-hot labels, then
    each (image, class) pair gives one term of :func:`rmi_lower_bound`; terms are summed over
    classes and averaged over images. Void pixels (``ignore_index``) get an all-zero one-hot label
    and a zero probability, so they stay in the point cloud as agreeing zeros (the official code's
    convention; the paper is silent) and are excluded from the CE term. Extra memory held for
    backward ≈ ``2 R²/DF²`` × ``logits`` in float64 (the pooled maps); the region vectors are never
    stored (see :func:`joint_covariance`). Memory and time are linear in the number of pixels.

    Args:
        logits: ``(N, C, H, W)`` scores before the sigmoid/softmax, at label resolution (the paper
            up-samples the logits before the loss, Sec. 5.1).
        labels: ``(N, H, W)`` int64 in ``[0, C)`` or ``ignore_index``.
        radius: :math:`R`; paper 3 (Table 1).
        pool: ``"avg"`` (paper), ``"max"`` or ``"interp"`` (Table 3a).
        pool_size: DF, kernel size of the pooling; paper 4 (Table 1). 1 means no down-sampling.
        pool_stride: stride of the pooling, default ``pool_size`` (paper and official code).
        pool_padding: padding of the pooling; paper 0 (not mentioned), official code ``pool_size // 2``.
        xi: :math:`\xi`; paper 1e-6 (Sec. 4). The official code uses 5e-4 with ``normalize=False``.
            Labels average-pooled by ``pool_size`` lie on a lattice of spacing
            :math:`\Delta = 1/\mathcal{DF}^2`; the loss is a term of a valid lower bound on their
            mutual information only for :math:`\xi \ge \Delta^2/12` (a uniform dither of the labels;
            Chapter 4, :func:`pixelbook.experiments.rmi.dither_xi`), which the paper's 1e-6 is not.
        normalize: covariance as a mean over points (paper's :math:`\mathbb E`, default) or a raw
            sum (official code).
        ce_weight: :math:`\lambda` in Eq. 16; paper 0.5. 0 gives RMI alone, 1 the CE alone.
        activation: ``"sigmoid"`` (paper Sec. 4: per-class probabilities, CE is the binary CE summed
            over classes and averaged over valid pixels, as in the official code) or ``"softmax"``
            (CE is the usual softmax cross-entropy, Eq. 1, and RMI uses softmax probabilities).
        ignore_index: label value of void pixels (VOC: 255), or ``None``.
        reduction: ``"mean"`` (Eq. 16: CE averaged over all valid pixels of the batch, RMI averaged
            over images), ``"sum"`` (CE summed over pixels, RMI summed over images) or ``"none"``
            (``(N,)`` per-image losses, CE averaged over each image's valid pixels). An image whose
            pixels are all void contributes 0 to both terms (its RMI term would otherwise be the
            constant :math:`\tfrac C2\ln\xi`) and is left out of the RMI mean over images, so an
            all-void batch gives 0 with a zero gradient.

    Returns:
        Scalar tensor (``(N,)`` for ``reduction="none"``) in the dtype of ``logits``.

    Raises:
        ValueError: mismatched shapes, labels out of range, NaN/Inf logits, bad options, or maps
            smaller than ``radius`` after down-sampling; the message names the argument.

    Example:
        >>> rmi_loss(torch.rand(1, 2, 32, 32), torch.randint(0, 2, (1, 32, 32))).shape
        torch.Size([])
    """
    dims = check_shape(logits, "logits", "N C H W")
    check_shape(labels, "labels", "N H W", dims)
    check_dtype(logits, "logits", "float")
    check_finite(logits, "logits")
    N, C = logits.shape[:2]
    check_labels(labels, "labels", C, ignore_index)
    check_choice(activation, "activation", ("sigmoid", "softmax"))
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if not (isinstance(ce_weight, (int, float)) and 0.0 <= ce_weight <= 1.0):
        raise ValueError(f"`ce_weight`: expected a number in [0, 1], got {ce_weight!r}")
    if activation == "softmax" and C < 2:
        raise ValueError(f"`logits`: softmax needs at least 2 classes, got C={C}")
    lam = float(ce_weight)
    valid = None
    if ignore_index is not None:
        valid = labels != ignore_index
        if bool(valid.all()):
            valid = None  # no void pixel: skip every masking multiply
    safe = labels if valid is None else torch.where(valid, labels, torch.zeros_like(labels))
    zero = logits.new_zeros(N) if reduction == "none" else logits.new_zeros(())

    ce = zero
    if lam > 0:
        if activation == "sigmoid":
            # binary CE summed over classes: sum_c softplus(x_c) - x_label  (= BCE-with-logits on the one-hot)
            per_pixel = F.softplus(logits).sum(1) - logits.gather(1, safe[:, None])[:, 0]
        else:
            per_pixel = F.cross_entropy(logits, safe, reduction="none")
        if valid is not None:
            per_pixel = per_pixel * valid.to(per_pixel.dtype)
        count = (valid.sum((1, 2)) if valid is not None else labels.new_full((N,), labels[0].numel()))
        if reduction == "none":
            ce = per_pixel.sum((1, 2)) / count.clamp(min=1).to(per_pixel.dtype)
        elif reduction == "sum":
            ce = per_pixel.sum()
        else:
            ce = per_pixel.sum() / count.sum().clamp(min=1).to(per_pixel.dtype)

    rmi = zero
    if lam < 1:
        R = check_int(radius, "radius", low=1)
        probs = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, 1)
        if valid is not None:
            probs = probs * valid[:, None].to(probs.dtype)
        p = downsample(probs, pool, pool_size, pool_stride, pool_padding, kind="probs")
        with torch.no_grad():
            y = _pooled_onehot(labels, C, valid, pool, pool_size, pool_stride, pool_padding, torch.float64)
        if min(p.shape[-2:]) < R:
            raise ValueError(f"`radius`: expected at most {min(p.shape[-2:])} (the size of the maps after "
                             f"down-sampling {tuple(logits.shape[-2:])} by {pool_size}), got {R}")
        if p.device.type == "mps":  # MPS has no float64 [RMI, Sec. 4 needs double precision]
            terms = rmi_lower_bound(p.cpu(), y.cpu(), R, xi, normalize).to(p.device)
        else:
            terms = rmi_lower_bound(p, y, R, xi, normalize)
        per_image = terms.sum(1).to(logits.dtype)
        labelled = None if valid is None else valid.flatten(1).any(1)
        if labelled is not None:  # an all-void image counts 0 and leaves the mean (ignored-input convention)
            per_image = torch.where(labelled, per_image, torch.zeros_like(per_image))
        if reduction == "none":
            rmi = per_image
        elif reduction == "sum":
            rmi = per_image.sum()
        elif labelled is None or bool(labelled.all()):
            rmi = per_image.mean()
        else:
            rmi = per_image.sum() / labelled.sum().clamp(min=1).to(per_image.dtype)
    return lam * ce + (1.0 - lam) * rmi


class RMILoss(nn.Module):
    r"""Module form of :func:`rmi_loss` [RMI, Eq. 16]: stores the hyperparameters, calls the function.

    Names ↔ symbols: ``radius`` = :math:`\mathcal R` (d = R²), ``pool_size`` = :math:`\mathcal{DF}`,
    ``xi`` = :math:`\xi`, ``ce_weight`` = :math:`\lambda`. Defaults are the paper's (avg pooling 4/4,
    R = 3, ξ = 1e-6, λ = 0.5, sigmoid); :meth:`official` gives the official code's.

    Example:
        >>> loss = RMILoss(radius=2, pool_size=2)
        >>> labels = torch.randint(0, 3, (2, 16, 16))
        >>> perfect = 20.0 * torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() - 10.0
        >>> bool(loss(perfect, labels) < loss(torch.zeros(2, 3, 16, 16), labels))
        True
    """

    def __init__(self, radius: int = 3, pool: str = "avg", pool_size: int = 4, pool_stride: int | None = None,
                 pool_padding: int = 0, xi: float = 1e-6, normalize: bool = True, ce_weight: float = 0.5,
                 activation: str = "sigmoid", ignore_index: int | None = IGNORE_INDEX,
                 reduction: str = "mean"):
        super().__init__()
        check_int(radius, "radius", low=1)
        check_choice(pool, "pool", POOL_WAYS)
        check_choice(activation, "activation", ("sigmoid", "softmax"))
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        if not (isinstance(xi, (int, float)) and math.isfinite(xi) and xi >= 0):
            raise ValueError(f"`xi`: expected a finite number >= 0, got {xi!r}")
        if not (isinstance(ce_weight, (int, float)) and 0.0 <= ce_weight <= 1.0):
            raise ValueError(f"`ce_weight`: expected a number in [0, 1], got {ce_weight!r}")
        self.radius, self.pool, self.pool_size, self.pool_stride = radius, pool, pool_size, pool_stride
        self.pool_padding, self.xi, self.normalize, self.ce_weight = pool_padding, xi, normalize, ce_weight
        self.activation, self.ignore_index, self.reduction = activation, ignore_index, reduction

    @classmethod
    def official(cls, **overrides) -> "RMILoss":
        """The official code's settings (ZJULearning/RMI ``script/train.sh`` and ``rmi.py``):
        avg pooling 4/4 with padding 2, R = 3, ξ = 5e-4 on unnormalised scatter matrices."""
        kw = dict(radius=3, pool="avg", pool_size=4, pool_padding=2, xi=5e-4, normalize=False, ce_weight=0.5,
                  activation="sigmoid", ignore_index=IGNORE_INDEX)
        kw.update(overrides)
        return cls(**kw)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return rmi_loss(logits, labels, radius=self.radius, pool=self.pool, pool_size=self.pool_size,
                        pool_stride=self.pool_stride, pool_padding=self.pool_padding, xi=self.xi,
                        normalize=self.normalize, ce_weight=self.ce_weight, activation=self.activation,
                        ignore_index=self.ignore_index, reduction=self.reduction)

    def extra_repr(self) -> str:
        return (f"radius={self.radius}, pool={self.pool!r}, pool_size={self.pool_size}, xi={self.xi}, "
                f"normalize={self.normalize}, ce_weight={self.ce_weight}, activation={self.activation!r}")


__getattr__ = moved_attribute(__name__, {"MiniDeepLab": "pixelbook.models", "affinity_loss": "pixelbook.losses"})
