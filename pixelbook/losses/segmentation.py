r"""Segmentation losses: pixel-wise cross-entropy [Kong thesis, Eq. 2.1], the affinity-field baseline of
Chapter 4 [AAF; RMI, Sec. 5.2] and the symmetrised (class-agnostic) cross-entropy of Chapter 9 [CAS, §4.2].
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import IGNORE_INDEX, check_choice, check_dtype, check_finite, check_labels, check_int, check_shape
from ..ops.regions import _check_labels_tensor, _onehot, canonical_regions
from ._reduction import _reduce

__all__ = [
    "segmentation_loss", "SegmentationLoss", "affinity_loss", "AffinityLoss", "symmetric_cross_entropy",
    "SymmetricCrossEntropy",
]

_ENUMERATE_MAX = 5040  # ours: up to 7! labellings are enumerated; beyond, the Hungarian method


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = IGNORE_INDEX,
                      reduction: str = "mean") -> torch.Tensor:
    r"""Pixel-wise cross-entropy [Kong thesis, Eq. 2.1].

    .. math:: \ell_{semantic} = -\sum_i \sum_{c=1}^{K} \mathbb{1}[y_i = c]\,\log C_{i,c}

    where :math:`C_{i,c}` is the softmax probability of class :math:`c` at pixel :math:`i`
    (the thesis writes :math:`C_i`).

    Args:
        logits: ``(N, K, H, W)`` class scores before the softmax.
        labels: ``(N, H, W)`` int64 in ``[0, K)`` or ``ignore_index``.
        ignore_index: label of void pixels, which contribute nothing (``None``: no void label).
        reduction: ``"mean"`` over non-void pixels, ``"sum"`` or ``"none"`` (per pixel, 0 at void
            pixels). An all-void batch gives 0 with a zero gradient.

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
    valid = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
    per_pixel = F.cross_entropy(logits, labels.masked_fill(~valid, 0), reduction="none")
    return _reduce(per_pixel, valid.to(per_pixel.dtype), reduction)


# Half of the eight neighbours of the 3x3 region of [AAF] ("we set the region size to be 3x3",
# [RMI, Sec. 5.2]); each offset serves both directions of its pair (i -> j and j -> i).
_HALF_NEIGHBOURS = ((0, 1), (1, -1), (1, 0), (1, 1))


def affinity_loss(logits: torch.Tensor, labels: torch.Tensor, margin: float = 3.0,
                  ignore_index: int | None = IGNORE_INDEX, dilation: int = 1) -> torch.Tensor:
    r"""Pairwise affinity-field loss, the baseline RMI is compared with [AAF; RMI, Sec. 5.2].

    For each pixel i and each of its 8 neighbours j (3×3 region, at distance ``dilation``), with
    softmax probabilities :math:`p`:

    .. math::
        \ell_{ij} = \begin{cases} \mathrm{KL}(p_i\,\|\,p_j) & y_i = y_j \ \text{(grouping force)}\\
        \max(0,\ m - \mathrm{KL}(p_i\,\|\,p_j)) & y_i \ne y_j \ \text{(separating force)}\end{cases}

    averaged over the pairs whose two labels are valid. This is the non-adaptive affinity field
    of Ke et al. (2018) as summarised by the RMI paper; the paper does not give its margin or
    weights, and ``margin = 3`` is our choice.

    Args:
        logits: ``(N, C, H, W)`` scores (softmax over C).
        labels: ``(N, H, W)`` int64 in ``[0, C)`` or ``ignore_index``.
        margin: :math:`m`, the KL margin of the separating force.
        ignore_index: void label, or ``None``.
        dilation: neighbour distance in pixels.

    Returns:
        Scalar tensor (0, with a zero gradient, when no valid pair exists: e.g. an all-void batch).

    Example:
        >>> float(affinity_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)))
        0.0
    """
    dims = check_shape(logits, "logits", "N C H W")
    check_shape(labels, "labels", "N H W", dims)
    check_dtype(logits, "logits", "float")
    check_finite(logits, "logits")
    check_labels(labels, "labels", logits.shape[1], ignore_index)
    if not (isinstance(margin, (int, float)) and margin > 0):
        raise ValueError(f"`margin`: expected a number > 0, got {margin!r}")
    k = check_int(dilation, "dilation", low=1)
    H, W = labels.shape[-2:]
    if H <= k and W <= k:
        raise ValueError(f"`dilation`: expected less than max(H, W) = {max(H, W)} (no pair of pixels), got {k}")
    logp = torch.log_softmax(logits, 1)
    p = logp.exp()
    valid = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
    total, count = logits.new_zeros(()), logits.new_zeros(())
    for di, dj in _HALF_NEIGHBOURS:
        di, dj = di * k, dj * k
        a = (slice(0, H - di), slice(max(0, -dj), W - max(0, dj)))   # pixel i
        b = (slice(di, H), slice(max(0, dj), W + min(0, dj)))          # neighbour j = i + (di, dj)
        pi, pj, lpi, lpj = p[..., a[0], a[1]], p[..., b[0], b[1]], logp[..., a[0], a[1]], logp[..., b[0], b[1]]
        diff = lpi - lpj
        kl_ij, kl_ji = (pi * diff).sum(1), -(pj * diff).sum(1)       # KL(p_i||p_j), KL(p_j||p_i)
        same = (labels[..., a[0], a[1]] == labels[..., b[0], b[1]]).to(kl_ij.dtype)
        ok = (valid[..., a[0], a[1]] & valid[..., b[0], b[1]]).to(kl_ij.dtype)
        pair = same * (kl_ij + kl_ji) + (1 - same) * (F.relu(margin - kl_ij) + F.relu(margin - kl_ji))
        total = total + (pair * ok).sum()
        count = count + 2 * ok.sum()
    return total / count.clamp(min=1)


def _labelling_table(logits, labels, ignore_index):
    """``A[b, k, c] = sum over region k of log softmax channel c`` and the labelled-pixel counts."""
    ids, n = canonical_regions(labels, ignore_index)
    R = max(int(n.max()), 1)
    B, M = logits.shape[:2]
    logp = F.log_softmax(logits, 1).reshape(B, M, -1)
    onehot = _onehot(ids.reshape(B, -1), R, logp.dtype)                    # (B, P, R)
    A = torch.bmm(logp, onehot).transpose(1, 2)                              # (B, R, M)
    return A, onehot.sum((1, 2)), n, R


def symmetric_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int | None = IGNORE_INDEX,
                            reduction: str = "mean", method: str = "auto") -> torch.Tensor:
    r"""Cross-entropy minimised over labellings, per image: the paper's "class-agnostic CE" (CACE).

    .. math:: \mathrm{CACE} = \min_{\pi}\; -\frac{1}{|P|}\sum_{x} \log s^{\pi(k(x))}(x)

    over the injective maps :math:`\pi` from the :math:`N` regions of the image to the :math:`M`
    channels [CAS, §4.2, read per image as in Chapter 9; the paper writes the binary case]. Written
    naively it costs :math:`M!/(M-N)!` full cross-entropies ("increases combinatorially"). We first
    form the :math:`N\times M` table :math:`A_{kc}=\sum_{x\in r_k}\log s^c(x)` in one pass over the
    pixels; each labelling then costs :math:`N` additions, and beyond :data:`_ENUMERATE_MAX`
    labellings the minimum is a linear assignment problem solved by the Hungarian method
    (``scipy.optimize.linear_sum_assignment``, :math:`O(M^3)`). The gradient is that of the
    cross-entropy of the minimising labelling.

    Args:
        logits: ``(N, M, H, W)`` scores before the softmax.
        labels: ``(N, H, W)`` integer region labels; only the partition matters; at most ``M``
            regions per image.
        ignore_index: label of pixels excluded from the loss, or ``None``.
        reduction: ``"mean"`` over the images with a labelled pixel, ``"sum"``, or ``"none"`` for
            ``(N,)``. An image whose pixels are all void contributes 0 (with a zero gradient) and is
            left out of the mean; an all-void batch gives 0.
        method: ``"auto"``, ``"enumerate"`` (all labellings) or ``"hungarian"``.

    Returns: scalar tensor (or ``(N,)``). Raises: ValueError naming the bad argument.

    Example:
        >>> logits = torch.tensor([[[[4.0, -4.0]], [[-4.0, 4.0]]]])       # predicts [0, 1]
        >>> a = symmetric_cross_entropy(logits, torch.tensor([[[0, 1]]]))
        >>> b = symmetric_cross_entropy(logits, torch.tensor([[[1, 0]]]))  # swapped labels
        >>> bool(a == b), round(float(a), 5)
        (True, 0.00034)
    """
    d = check_shape(logits, "logits", "N C H W")
    check_dtype(logits, "logits", "float")
    check_finite(logits, "logits")
    _check_labels_tensor(labels, "labels", d)
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    check_choice(method, "method", ("auto", "enumerate", "hungarian"))
    A, npix, n, R = _labelling_table(logits, labels, ignore_index)
    B, M = logits.shape[:2]
    if int(n.max()) > M:
        b = int(n.argmax())
        raise ValueError(f"`labels`: image {b} has {int(n[b])} regions but `logits` has only M={M} channels; "
                         f"a labelling needs M >= number of regions")
    count = math.perm(M, R)
    if method == "enumerate" or (method == "auto" and count <= _ENUMERATE_MAX):
        perms = torch.tensor(list(itertools.permutations(range(M), R)), device=A.device)  # (K, R)
        # score[b, p] = sum_k A[b, k, perms[p, k]]; padding rows of A are 0
        score = A[:, torch.arange(R, device=A.device)[None, :], perms].sum(-1)  # (B, K)
        best = score.detach().argmax(1)
        chosen = perms[best]                                                  # (B, R)
    else:
        from scipy.optimize import linear_sum_assignment

        table = A.detach().cpu().double().numpy()
        rows = []
        for b in range(B):
            r, c = linear_sum_assignment(table[b], maximize=True)  # R <= M: every region gets a channel
            perm = torch.empty(R, dtype=torch.long)
            perm[torch.as_tensor(r)] = torch.as_tensor(c, dtype=torch.long)
            rows.append(perm)
        chosen = torch.stack(rows).to(A.device)
    ll = A.gather(2, chosen[..., None])[..., 0].sum(1)                        # (B,)
    labelled = npix > 0
    loss = torch.where(labelled, -ll / npix.clamp_min(1), torch.zeros_like(ll))  # all-void image: 0
    if reduction == "none":
        return loss
    if reduction == "sum" or bool(labelled.all()):
        return loss.sum() if reduction == "sum" else loss.mean()
    return loss.sum() / labelled.sum().clamp_min(1)


class SymmetricCrossEntropy(nn.Module):
    """Module form of :func:`symmetric_cross_entropy` (CACE); ``forward(logits, labels)``.

    Example:
        >>> SymmetricCrossEntropy()(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))).shape
        torch.Size([])
    """

    def __init__(self, ignore_index: int | None = IGNORE_INDEX, reduction: str = "mean", method: str = "auto"):
        super().__init__()
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        check_choice(method, "method", ("auto", "enumerate", "hungarian"))
        self.ignore_index, self.reduction, self.method = ignore_index, reduction, method

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return symmetric_cross_entropy(logits, labels, ignore_index=self.ignore_index,
                                       reduction=self.reduction, method=self.method)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, method={self.method!r}"


class SegmentationLoss(nn.Module):
    """Module form of :func:`segmentation_loss`; ``forward(logits, labels)``.

    Example:
        >>> SegmentationLoss()(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)).shape
        torch.Size([])
    """

    def __init__(self, ignore_index: int | None = IGNORE_INDEX, reduction: str = "mean"):
        super().__init__()
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(logits, labels, ignore_index=self.ignore_index, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class AffinityLoss(nn.Module):
    """Module form of :func:`affinity_loss`; ``forward(logits, labels)``.

    Example:
        >>> float(AffinityLoss()(torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)))
        0.0
    """

    def __init__(self, margin: float = 3.0, ignore_index: int | None = IGNORE_INDEX, dilation: int = 1):
        super().__init__()
        if not (isinstance(margin, (int, float)) and margin > 0):
            raise ValueError(f"`margin`: expected a number > 0, got {margin!r}")
        self.margin, self.ignore_index, self.dilation = margin, ignore_index, check_int(dilation, "dilation", low=1)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return affinity_loss(logits, labels, margin=self.margin, ignore_index=self.ignore_index,
                             dilation=self.dilation)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, ignore_index={self.ignore_index}, dilation={self.dilation}"
