"""The four pixel-level losses of the unified framework [Kong thesis, Ch. 2, Eqs. 2.1–2.4].

One network, four tasks: only the last layer and the loss change between tasks. Every function
here is pure, takes the network's raw output for its task, and returns a scalar (or per-pixel map
with ``reduction="none"``). ``multitask_loss`` combines them with weights for the chapter's model.

Reduction: the thesis writes each loss as a *sum* over pixels; we average over the valid pixels
(``reduction="mean"``) so that loss weights and learning rates do not depend on the image size.
The two differ by a constant factor per batch, which changes nothing but the step size.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_dtype, check_finite, check_labels, check_range, check_shape

__all__ = [
    "segmentation_loss", "balanced_bce_loss", "boundary_loss", "log_depth_loss", "normal_loss",
    "multitask_loss", "DEPTH_GAMMA", "NORMAL_LAMBDA",
]

DEPTH_GAMMA = 2.0  # [Kong thesis, Eq. 2.3]: "γ = 2"; robust for γ in [1, 5]
NORMAL_LAMBDA = 4.0  # [Kong thesis, Eq. 2.4]: "we set λ = 4 throughout our experiments"
_ACOS_EPS = 1e-6  # ours: d/dx acos(x) = -1/sqrt(1-x^2) is infinite at |x| = 1; clamp keeps it finite


def _reduce(per_pixel: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if reduction == "none":
        return per_pixel * mask
    total = (per_pixel * mask).sum()
    if reduction == "sum":
        return total
    # An all-void batch contributes zero loss (and zero gradient) rather than 0/0 = NaN.
    return total / mask.sum().clamp_min(1)


def _mask(valid, like: torch.Tensor, dims: dict) -> torch.Tensor:
    """``valid`` as a float mask like ``like`` (all ones when ``None``), shape-checked."""
    if valid is None:
        return torch.ones_like(like)
    check_shape(valid, "valid", "N H W", dims)
    return valid.to(like.dtype)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255,
                      reduction: str = "mean") -> torch.Tensor:
    r"""Pixel-wise cross-entropy [Kong thesis, Eq. 2.1].

    .. math:: \ell_{semantic} = -\sum_i \sum_{c=1}^{K} \mathbb{1}[y_i = c]\,\log C_{i,c}

    where :math:`C_{i,c}` is the softmax probability of class :math:`c` at pixel :math:`i`
    (the thesis writes :math:`C_i`).

    Args:
        logits: ``(N, K, H, W)`` class scores before the softmax.
        labels: ``(N, H, W)`` int64 in ``[0, K)`` or ``ignore_index``.
        ignore_index: label of void pixels, which contribute nothing.
        reduction: ``"mean"`` over non-void pixels, ``"sum"`` or ``"none"`` (per pixel).

    Example:
        >>> logits = torch.zeros(1, 4, 2, 2)
        >>> round(segmentation_loss(logits, torch.zeros(1, 2, 2, dtype=torch.long)).item(), 4)  # ln 4
        1.3863
    """
    d = check_shape(logits, "logits", "N K H W")
    check_shape(labels, "labels", "N H W", d)
    check_dtype(logits, "logits", "float")
    check_finite(logits, "logits")
    check_labels(labels, "labels", logits.shape[1], ignore_index)
    valid = labels != ignore_index
    per_pixel = F.cross_entropy(logits, labels.masked_fill(~valid, 0), reduction="none")
    return _reduce(per_pixel, valid.to(per_pixel.dtype), reduction)


def balanced_bce_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None,
                      reduction: str = "mean") -> torch.Tensor:
    r"""Class-balanced logistic loss of one boundary map [Kong thesis, Eq. 2.2; HED].

    .. math::
        -\beta \sum_{j \in Y_+} \log P(y_j{=}1) - (1-\beta)\sum_{j\in Y_-}\log P(y_j{=}0),
        \qquad \beta = \frac{|Y_-|}{|Y_- \cup Y_+|}

    :math:`\beta` is computed per image (as in HED), so an image with few boundary pixels weighs
    each of them more. More than 80 % of pixels are non-boundary, hence the balancing.

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, H, W)`` boundary scores before the sigmoid.
        targets: same spatial shape, values in ``{0, 1}`` (bool or float).
        valid: optional bool mask of pixels that count.
        reduction: ``"mean"`` over valid pixels, ``"sum"`` or ``"none"``.
    """
    if logits.ndim == 4:
        check_shape(logits, "logits", "N 1 H W")
        logits = logits[:, 0]
    d = check_shape(logits, "logits", "N H W")
    check_shape(targets, "targets", "N H W", d)
    check_finite(logits, "logits")
    t = targets.to(logits.dtype)
    check_range(t, "targets", 0.0, 1.0)
    mask = _mask(valid, t, d)
    pos = (t * mask).flatten(1).sum(1)
    total = mask.flatten(1).sum(1).clamp_min(1)
    beta = (1 - pos / total).view(-1, 1, 1)  # |Y-| / |Y|, per image
    # log P(y=1) = logsigmoid(z), log P(y=0) = logsigmoid(-z): stable for any z.
    per_pixel = -(beta * t * F.logsigmoid(logits) + (1 - beta) * (1 - t) * F.logsigmoid(-logits))
    return _reduce(per_pixel, mask, reduction)


def boundary_loss(side_logits: Sequence[torch.Tensor], targets: torch.Tensor,
                  valid: torch.Tensor | None = None) -> torch.Tensor:
    """Deep supervision: the sum of :func:`balanced_bce_loss` over side outputs and the fused one.

    The thesis uses "four prediction branches at macro building blocks in ResNet and a final fusion
    layer", i.e. five terms [Kong thesis, Eq. 2.2, sum over :math:`b \\in \\mathcal{B}`].
    """
    if len(side_logits) == 0:
        raise ValueError("`side_logits`: expected at least one boundary map, got an empty list")
    return sum(balanced_bce_loss(z, targets, valid) for z in side_logits)


def log_depth_loss(pred_log_depth: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor | None = None,
                   gamma: float = DEPTH_GAMMA, reduction: str = "mean") -> torch.Tensor:
    r"""Mixed L2 + L1 loss on log-depth [Kong thesis, Eq. 2.3].

    .. math:: \ell_{depth} = \sum_i \big(\log D_i - \log \hat D_i\big)^2
              + \gamma\,\big|\log D_i - \log \hat D_i\big|

    The L2 term punishes large errors quadratically; the L1 term keeps a gradient of constant size
    :math:`\gamma` as the residual goes to zero, so small errors keep shrinking.

    Args:
        pred_log_depth: ``(N, 1, H, W)`` the network's output, read as :math:`\log D`.
        depth: ``(N, 1, H, W)`` ground-truth depth :math:`\hat D`, positive where valid.
        valid: ``(N, 1, H, W)`` or ``(N, H, W)`` bool; default ``depth > 0`` (Kinect holes are 0).
        gamma: :math:`\gamma`, weight of the L1 term (thesis: 2).
    """
    d = check_shape(pred_log_depth, "pred_log_depth", "N 1 H W")
    check_shape(depth, "depth", "N 1 H W", d)
    check_finite(pred_log_depth, "pred_log_depth")
    check_finite(depth, "depth")
    if valid is None:
        valid = depth > 0
    elif valid.ndim == 3:
        valid = valid[:, None]
    check_shape(valid, "valid", "N 1 H W", d)
    if bool((depth[valid] <= 0).any()):
        raise ValueError("`depth`: expected positive values at valid pixels, got values <= 0")
    r = pred_log_depth - torch.log(torch.where(valid, depth, torch.ones_like(depth)))
    return _reduce(r.pow(2) + gamma * r.abs(), valid.to(r.dtype), reduction)


def normal_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
                lam: float = NORMAL_LAMBDA, normalize: bool = True, reduction: str = "mean") -> torch.Tensor:
    r"""Cosine plus inverse-cosine loss for surface normals [Kong thesis, Eq. 2.4].

    .. math:: \ell_{normal} = \sum_i -\mathbf n_i^\top \hat{\mathbf n}_i
              + \lambda \cos^{-1}(\mathbf n_i^\top \hat{\mathbf n}_i)

    In terms of the angle :math:`\theta_i` between prediction and truth this is
    :math:`-\cos\theta_i + \lambda\theta_i`: the cosine term's slope :math:`\sin\theta` vanishes
    as the error goes to zero, the angle term's slope stays :math:`\lambda`.

    Args:
        pred: ``(N, 3, H, W)`` predicted normals; L2-normalised here when ``normalize`` (the
            thesis' "final L2 normalization layer").
        target: ``(N, 3, H, W)`` unit ground-truth normals.
        valid: optional ``(N, H, W)`` bool mask.
        lam: :math:`\lambda` (thesis: 4).
    """
    d = check_shape(pred, "pred", "N 3 H W")
    check_shape(target, "target", "N 3 H W", d)
    check_finite(pred, "pred")
    check_finite(target, "target")
    if normalize:
        pred = F.normalize(pred, dim=1, eps=1e-12)
    cos = (pred * target).sum(1).clamp(-1 + _ACOS_EPS, 1 - _ACOS_EPS)
    mask = _mask(valid, cos, d)
    return _reduce(-cos + lam * torch.acos(cos), mask, reduction)


def multitask_loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                   weights: Mapping[str, float], ignore_index: int = 255, gamma: float = DEPTH_GAMMA,
                   lam: float = NORMAL_LAMBDA):
    """Weighted sum of the task losses for the heads present in ``outputs``.

    Args:
        outputs: the model's dict: ``seg`` ``(N,K,H,W)``, ``boundary_sides`` (list of
            ``(N,1,H,W)``, the fused map last), ``depth`` (log-depth ``(N,1,H,W)``), ``normals``.
        batch: ``labels``, ``boundaries``, ``depth``, ``normals`` and optionally ``valid``.
        weights: per-task weights, e.g. ``{"seg": 1, "boundary": 1, "depth": 1, "normals": 1}``;
            a task missing from ``weights`` gets weight 1.
        gamma: γ of the depth loss (:func:`log_depth_loss`; thesis: 2, 0 = L2 only).
        lam: λ of the normal loss (:func:`normal_loss`; thesis: 4, 0 = cosine only).

    Returns:
        ``(total, logs)`` where ``logs`` maps each task to its (unweighted) loss value.
    """
    valid = batch.get("valid")
    terms = {}
    if "seg" in outputs:
        labels = batch["labels"] if valid is None else batch["labels"].masked_fill(~valid, ignore_index)
        terms["seg"] = segmentation_loss(outputs["seg"], labels, ignore_index=ignore_index)
    if "boundary_sides" in outputs:
        terms["boundary"] = boundary_loss(outputs["boundary_sides"], batch["boundaries"], valid)
    if "depth" in outputs:
        terms["depth"] = log_depth_loss(outputs["depth"], batch["depth"], None if valid is None else valid[:, None],
                                        gamma=gamma)
    if "normals" in outputs:
        terms["normals"] = normal_loss(outputs["normals"], batch["normals"], valid, lam=lam)
    if not terms:
        raise ValueError(f"`outputs`: expected at least one of seg/boundary_sides/depth/normals, got {list(outputs)}")
    unknown = set(weights) - {"seg", "boundary", "depth", "normals"}
    if unknown:
        raise ValueError(f"`weights`: unknown tasks {sorted(unknown)}; expected seg, boundary, depth, normals")
    total = sum(float(weights.get(k, 1.0)) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}
