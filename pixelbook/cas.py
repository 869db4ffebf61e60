r"""Class-agnostic segmentation (CAS) loss [CAS, Eq. 1], its symmetrised-CE baseline, and read-out.

CAS scores a softmax output :math:`\mathbf{s}(x)\in\Delta^{M-1}` against a ground-truth
*partition* :math:`r_1,\dots,r_N` of the image, never against label values. With the region means
:math:`\hat{\mathbf{s}}_i = \frac{1}{|r_i|}\sum_{x\in r_i}\mathbf{s}(x)` ("a proxy for class label")

.. math::
    \mathrm{CAS} = \alpha\underbrace{\sum_{i=1}^N \frac{1}{|r_i|}\sum_{x\in r_i}
    \|\mathbf{s}(x)-\hat{\mathbf{s}}_i\|^2}_{U\ \text{(uniformer)}}
    \;-\;(1-\alpha)\underbrace{\sum_{i=1}^N\sum_{j\neq i}
    \|\hat{\mathbf{s}}_i-\hat{\mathbf{s}}_j\|^2}_{D\ \text{(discriminator)}}

computed per image in :math:`O(P\,N\,M)` for :math:`P` pixels. Everything here depends on the
partition only: regions are renumbered in order of first appearance (raster order) before any
arithmetic, so relabelling the regions of an image (``y -> 1 - y``, ``{0, 1} -> {3, 10}``)
leaves every result *bit for bit* unchanged.

Public names:
    :func:`cas_loss`, :class:`CASLoss` — the loss, the paper's form or the official code's variant.
    :func:`cas_terms` — the per-image uniformer :math:`U` and discriminator :math:`D`.
    :func:`cas_bounds` — the correct bounds of Eq. 1 (the paper's are wrong; see Chapter 9).
    :func:`permute_region_labels` — the low-fidelity (LFD) corruption: relabel regions per image.
    :class:`LowFidelityLabels` — the LFD corruption for a ``Dataset`` (full scale).
    :func:`select_channel`, :func:`match_channels` — read a channel out of a permutation-invariant
    output using labelled validation data [CAS, §4.2].

Elsewhere, and importable from here too: :func:`~pixelbook.ops.regions.region_stats` (region sizes,
means and variances: what the notebook draws on the simplex) and
:func:`~pixelbook.ops.regions.canonical_regions` (the label-value-free renumbering used by all of the
above) in :mod:`pixelbook.ops.regions`. Reached only through their own packages: the baseline
:func:`pixelbook.losses.symmetric_cross_entropy` (the paper's "class-agnostic CE", CACE), the
evaluation :func:`pixelbook.metrics.matched_iou` (per-image IoU under the best channel ↔ class
matching) and the networks :func:`pixelbook.models.small_fcn`, :func:`pixelbook.models.resnet_fcn`,
:func:`pixelbook.models.paper_model`.

References:
    [CAS] A. Sharma, N. Khan, M. Mubashar, G. Sundaramoorthi, P. Torr. Class-Agnostic Segmentation
    Loss and Its Application to Salient Object Detection and Segmentation. arXiv:2010.14793, 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import IGNORE_INDEX, check_choice, check_dtype, check_finite, check_shape
from ._moved import moved_attribute
from .ops.regions import RegionStats, _check_labels_tensor, _check_probs, _stats_from_ids, canonical_regions  # noqa: F401
from .ops.regions import region_stats  # noqa: F401  (the chapter's building blocks)

__all__ = [
    "ALPHA", "ALPHA_OFFICIAL", "cas_terms", "cas_loss", "CASLoss", "cas_bounds", "permute_region_labels",
    "LowFidelityLabels", "select_channel", "match_channels",
]

ALPHA = 0.1  # [CAS, §6 "Ablation"]: "α was set to 0.1"
ALPHA_OFFICIAL = 0.5  # official code, config.py: ALPHA = 0.5



# --------------------------------------------------------------------------------------------------
# CAS loss
# --------------------------------------------------------------------------------------------------


def _official_ids(labels, ignore_index):
    """Official-code regions: slot 0 = background (label 0), slot 1 = foreground (label 1)."""
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    vals = labels[valid]
    if vals.numel() and (int(vals.min()) < 0 or int(vals.max()) > 1):
        raise ValueError(f"`labels`: variant='official' needs binary labels (0 = background, 1 = salient), "
                         f"got values in [{int(vals.min())}, {int(vals.max())}]")
    return torch.where(valid, labels.long(), torch.full_like(labels, -1, dtype=torch.long))


def _terms(probs, labels, variant, ignore_index, single_region):
    """``(U, D, left_out)`` per image; ``left_out`` marks images with no labelled pixel (all void: their
    terms are 0, the ignored-input convention) or, with ``single_region="skip"``, a single region."""
    d = _check_probs(probs)
    _check_labels_tensor(labels, "labels", d)
    check_choice(variant, "variant", ("paper", "official"))
    check_choice(single_region, "single_region", ("raise", "skip"))
    if variant == "paper":
        ids, n = canonical_regions(labels, ignore_index)
        R = max(int(n.max()), 1)
    else:
        ids, R = _official_ids(labels, ignore_index), 2
    st = _stats_from_ids(probs, ids, R)
    empty = st.sizes.sum(1) == 0  # every pixel void: no partition to score
    count = st.present.sum(1)
    if variant == "official" and bool(((count < 2) & ~empty).any()):
        b = int(((count < 2) & ~empty).nonzero()[0])
        which = "foreground (label 1)" if not bool(st.present[b, 1]) else "background (label 0)"
        raise ValueError(f"`labels`: image {b} has an empty {which} region; variant='official' needs both")
    single = (count < 2) & ~empty
    if single_region == "raise" and bool(single.any()):
        b = int(single.nonzero()[0])
        raise ValueError(f"`labels`: image {b} has a single region; CAS needs a partition with >= 2 regions "
                         f"(pass single_region='skip' to leave such images out)")
    if variant == "paper":
        U = st.variances.sum(1)
        diff = st.means[:, :, None, :] - st.means[:, None, :, :]           # (B, R, R, M); padding slots 0
        pair = st.present[:, :, None] & st.present[:, None, :]
        D = torch.where(pair, diff.pow(2).sum(-1), torch.zeros_like(diff[..., 0])).sum((1, 2))
    else:
        U = st.variances[:, 1]
        D = (st.means[:, 1] - st.means[:, 0]).pow(2).sum(-1)
    zero, left_out = torch.zeros_like(U), single | empty
    return torch.where(left_out, zero, U), torch.where(left_out, zero, D), left_out


def cas_terms(probs: torch.Tensor, labels: torch.Tensor, *, variant: str = "paper",
              ignore_index: int | None = IGNORE_INDEX, single_region: str = "raise") -> tuple[torch.Tensor, torch.Tensor]:
    r"""The two terms of CAS [CAS, Eq. 1] for each image: uniformer :math:`U` and discriminator :math:`D`.

    ``variant="paper"``: :math:`U=\sum_i V_i` over all regions and :math:`D=\sum_i\sum_{j\ne i}
    \|\hat{\mathbf{s}}_i-\hat{\mathbf{s}}_j\|^2` over *ordered* pairs (each pair twice), as Eq. 1
    is written. ``variant="official"``: the official code (``cas.py``): binary labels, :math:`U` is
    the variance of the foreground region (label 1) only and :math:`D` counts the single unordered
    pair once. (The code also adds ``eps = 3e-5`` to both region indicators; we raise on empty
    regions instead.)

    Args:
        probs: ``(N, M, H, W)`` softmax output, values in [0, 1], ``M >= 2``.
        labels: ``(N, H, W)`` integer region labels (any values for ``"paper"``; 0/1 for ``"official"``).
        variant: ``"paper"`` or ``"official"``.
        ignore_index: label of pixels that belong to no region, or ``None``. An image whose pixels
            are all void has no partition: its terms are 0 (with a zero gradient) and
            :func:`cas_loss` leaves it out of the mean.
        single_region: what to do with an image whose partition has one region (e.g. a THUR15k
            image without salient object): ``"raise"`` (default) or ``"skip"`` (its terms are
            returned as 0 and :func:`cas_loss` leaves it out of the mean).

    Returns:
        ``(U, D)``, each ``(N,)``.

    Raises:
        ValueError: bad shapes/values; an image with one region (unless ``single_region="skip"``);
        an empty foreground or background with ``variant="official"``.

    Example:
        >>> s = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]])
        >>> U, D = cas_terms(s, torch.tensor([[[0, 0], [1, 1]]]))
        >>> U.tolist(), D.tolist()
        ([0.0], [4.0])
    """
    U, D, _ = _terms(probs, labels, variant, ignore_index, single_region)
    return U, D


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha`: expected a number in [0, 1], got {alpha!r}")


def cas_loss(probs: torch.Tensor, labels: torch.Tensor, alpha: float = ALPHA, *, variant: str = "paper",
             ignore_index: int | None = IGNORE_INDEX, reduction: str = "mean",
             single_region: str = "raise") -> torch.Tensor:
    r"""Class-agnostic segmentation loss :math:`\alpha U - (1-\alpha) D` [CAS, Eq. 1], per image.

    Cost :math:`O(P\,R\,M)` per image for :math:`P` pixels, :math:`R` regions, :math:`M` channels
    (the :math:`O(P^2)` pixel-pair loss it equals is never formed). Invariant, bit for bit, to the
    label values of the regions; invariant to permutations of the channels.

    Args:
        probs: ``(N, M, H, W)`` softmax output in [0, 1], ``M >= 2``.
        labels: ``(N, H, W)`` integer region labels; only the partition matters (``"paper"``).
        alpha: :math:`\alpha\in[0,1]`, weight of the uniformer. Default 0.1, the paper's [CAS, §6];
            the official code uses 0.5 (:data:`ALPHA_OFFICIAL`).
        variant: ``"paper"`` (Eq. 1 as written: all regions, ordered pairs) or ``"official"``
            (official ``cas.py``: foreground variance only, one unordered pair; binary labels).
        ignore_index: label of pixels that belong to no region, or ``None``; an all-void image
            counts 0 and is left out of the mean, so an all-void batch gives 0 with a zero gradient.
        reduction: ``"mean"`` over images (the official code divides by the batch size), ``"sum"``,
            or ``"none"`` for the ``(N,)`` per-image losses.
        single_region: ``"raise"`` or ``"skip"`` (such images count 0 and are left out of the mean),
            see :func:`cas_terms`.

    Bounds (``"paper"``, on the simplex): :math:`-2(1-\alpha)N(N-1)\le\mathrm{CAS}\le\alpha N(1-1/M)`
    per image with :math:`N` regions; the lower one is reached exactly by a one-hot output that is
    constant on each region with distinct channels (:func:`cas_bounds`).

    Returns: scalar tensor (or ``(N,)`` with ``reduction="none"``). Raises: ValueError naming the bad argument.

    Example:
        >>> s = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]])
        >>> cas_loss(s, torch.tensor([[[0, 0], [1, 1]]]), alpha=0.1)  # perfect: -2(1-α)N(N-1) = -3.6
        tensor(-3.6000)
    """
    _check_alpha(alpha)
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    U, D, left_out = _terms(probs, labels, variant, ignore_index, single_region)
    loss = alpha * U - (1.0 - alpha) * D
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    kept = int((~left_out).sum())
    if kept == 0:
        if single_region == "skip" and (ignore_index is None or bool((labels != ignore_index).any())):
            raise ValueError("`labels`: every image has a single region; nothing to average")
        return loss.sum()  # all void: 0, with a zero gradient
    return loss.sum() / kept


class CASLoss(nn.Module):
    r"""Module form of :func:`cas_loss` [CAS, Eq. 1]; takes ``logits`` and applies the softmax.

    Args:
        alpha: :math:`\alpha`, default 0.1 [CAS, §6]; the official code uses 0.5.
        variant: ``"paper"`` or ``"official"`` (see :func:`cas_terms`).
        ignore_index, reduction, single_region: as in :func:`cas_loss`.
        from_logits: ``True`` (default): ``forward(logits, labels)`` takes logits ``(N, M, H, W)``
            and applies ``softmax(dim=1)``; ``False``: its first argument is probabilities.

    Example:
        >>> loss = CASLoss(alpha=0.1)
        >>> loss(torch.randn(2, 3, 8, 8), torch.randint(0, 2, (2, 8, 8))).shape
        torch.Size([])
    """

    def __init__(self, alpha: float = ALPHA, variant: str = "paper", ignore_index: int | None = IGNORE_INDEX,
                 reduction: str = "mean", single_region: str = "raise", from_logits: bool = True):
        super().__init__()
        _check_alpha(alpha)
        check_choice(variant, "variant", ("paper", "official"))
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        check_choice(single_region, "single_region", ("raise", "skip"))
        self.alpha, self.variant, self.ignore_index = float(alpha), variant, ignore_index
        self.reduction, self.single_region, self.from_logits = reduction, single_region, from_logits

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.from_logits:
            return cas_loss(logits, labels, self.alpha, variant=self.variant, ignore_index=self.ignore_index,
                            reduction=self.reduction, single_region=self.single_region)
        check_shape(logits, "logits", "N C H W")
        check_finite(logits, "logits")
        probs = logits.softmax(1)
        return cas_loss(probs, labels, self.alpha, variant=self.variant, ignore_index=self.ignore_index,
                        reduction=self.reduction, single_region=self.single_region)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, variant={self.variant!r}, reduction={self.reduction!r}"


def cas_bounds(num_regions: int, num_channels: int, alpha: float = ALPHA, variant: str = "paper") -> tuple[float, float]:
    r"""The interval that holds CAS of one image on the simplex, ``(lower, upper)``.

    ``"paper"`` (Eq. 1 as written): :math:`0\le V_i\le 1-1/M` (because :math:`\|\mathbf{s}\|^2\le1`
    and :math:`\|\hat{\mathbf{s}}\|^2\ge1/M` on the simplex) and :math:`\|\hat{\mathbf{s}}_i-
    \hat{\mathbf{s}}_j\|^2\le2`, so :math:`-2(1-\alpha)N(N-1)\le\mathrm{CAS}\le\alpha N(1-1/M)`.
    The lower bound is attained iff :math:`M\ge N` and the output is one-hot, constant on each
    region, distinct between regions; for :math:`M<N` it is not attainable and we return the exact
    minimum :math:`-2(1-\alpha)(N^2-\sum_k n_k^2)` with the regions spread evenly over the
    :math:`M` vertices (:math:`n_k` regions on vertex :math:`k`).
    ``"official"``: :math:`-2(1-\alpha)\le\mathrm{CAS}\le\alpha(1-1/M)` (binary).

    The paper states ":math:`(\alpha N_i, -(1-\alpha)N_i]`", which is right only for the official
    code's unordered single pair with :math:`N=2`.

    Example:
        >>> cas_bounds(2, 2, alpha=0.1)
        (-3.6, 0.1)
    """
    check_choice(variant, "variant", ("paper", "official"))
    N, M, a = int(num_regions), int(num_channels), float(alpha)
    if N < 1 or M < 2:
        raise ValueError(f"`num_regions`, `num_channels`: expected N >= 1 and M >= 2, got N={N}, M={M}")
    if variant == "official":
        return -2.0 * (1 - a) + 0.0, a * (1 - 1 / M)
    q, r = divmod(N, M)
    sq = r * (q + 1) ** 2 + (M - r) * q ** 2  # sum_k n_k^2 for the most even spread
    dmax = 2.0 * (N * N - sq)
    return round(-(1 - a) * dmax, 12) + 0.0, round(a * N * (1 - 1 / M), 12)



# --------------------------------------------------------------------------------------------------
# Low-fidelity labels
# --------------------------------------------------------------------------------------------------


def _draw_permutations(B: int, K: int, p: float, generator) -> torch.Tensor:
    """``(B, K)`` permutations: identity with probability ``1 - p``, else uniform among the others."""
    flip = torch.rand(B, generator=generator) < p
    perms = torch.argsort(torch.rand(B, K, generator=generator), dim=1)  # uniform over all K!
    ident = torch.arange(K).expand(B, K)
    while True:  # redraw the identities among the flipped ones
        again = flip & (perms == ident).all(1)
        if not bool(again.any()):
            break
        perms[again] = torch.argsort(torch.rand(int(again.sum()), K, generator=generator), dim=1)
    return torch.where(flip[:, None], perms, ident)


def permute_region_labels(labels: torch.Tensor, num_classes: int, p: float = 0.5, *,
                          generator: torch.Generator | None = None,
                          ignore_index: int | None = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Low-fidelity data (LFD): relabel each image's regions with probability ``p`` [CAS, §5.1].

    With probability ``p`` an image's labels go through a uniformly drawn *non-identity*
    permutation of ``[0, num_classes)``; otherwise they are kept. For two classes this is the
    swap ``y -> 1 - y`` (the paper's "probability of incorrect region label of 0.5", read per image
    as in Chapter 9). With ``p = 1 - 1/num_classes!`` every labelling is equally likely. The draw is
    made once (a fixed corrupted dataset), from ``generator``.

    Args:
        labels: ``(N, H, W)`` int labels in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: number of label values :math:`K\ge2`.
        p: probability that an image is relabelled, in [0, 1].

    Returns:
        ``(new_labels, perms)``: the relabelled ``(N, H, W)`` int64 labels and the ``(N, K)``
        permutation applied to each image (``new = perms[n][old]``).

    Example:
        >>> y = torch.tensor([[[0, 1]], [[0, 1]]])
        >>> new, perms = permute_region_labels(y, 2, p=1.0)
        >>> new.tolist()
        [[[1, 0]], [[1, 0]]]
    """
    check_shape(labels, "labels", "N H W")
    check_dtype(labels, "labels", "int")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes`: expected an int >= 2, got {num_classes!r}")
    if not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"`p`: expected a probability in [0, 1], got {p!r}")
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    vals = labels[valid]
    if vals.numel() and (int(vals.min()) < 0 or int(vals.max()) >= num_classes):
        raise ValueError(f"`labels`: expected values in [0, {num_classes}), got [{int(vals.min())}, {int(vals.max())}]")
    B, K = labels.shape[0], num_classes
    perms = _draw_permutations(B, K, p, generator).to(labels.device)
    safe = torch.where(valid, labels.long(), torch.zeros_like(labels, dtype=torch.long))
    new = perms.gather(1, safe.reshape(B, -1)).reshape(labels.shape)
    new = torch.where(valid, new, labels.long())
    return new, perms


class LowFidelityLabels(torch.utils.data.Dataset):
    """A dataset whose samples' ``labels`` are relabelled as by :func:`permute_region_labels` (LFD).

    Wraps any dataset of dict samples with an ``(H, W)`` int ``labels`` entry (e.g.
    :class:`pixelbook.data.saliency.SaliencyDataset`); the permutation of each index is drawn once,
    from ``seed``, so every epoch sees the same corrupted dataset. ``mask`` is left as it is
    (the true salient mask, for evaluation only).

    Example:
        >>> base = [{"labels": torch.tensor([[0, 1]])} for _ in range(4)]
        >>> [d["labels"].tolist() for d in LowFidelityLabels(base, p=1.0)]
        [[[1, 0]], [[1, 0]], [[1, 0]], [[1, 0]]]
    """

    def __init__(self, dataset, num_classes: int = 2, p: float = 0.5, seed: int = 0):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes`: expected an int >= 2, got {num_classes!r}")
        if not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"`p`: expected a probability in [0, 1], got {p!r}")
        self.dataset, self.num_classes = dataset, num_classes
        self.perms = _draw_permutations(len(dataset), num_classes, float(p), torch.Generator().manual_seed(int(seed)))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.dataset[i])
        y = sample["labels"]
        sample["labels"] = self.perms[i].to(y.device)[y.long()]
        return sample



# --------------------------------------------------------------------------------------------------
# Read-out
# --------------------------------------------------------------------------------------------------


def select_channel(probs: torch.Tensor, labels: torch.Tensor) -> int:
    r"""The channel that correlates best with the salient ground truth on labelled validation data [CAS, §4.2].

    "We choose the channel for the salient object label by calculating the correlation of the
    output channels with the saliency map on the validation set and selecting the channel with
    maximum correlation value." Pearson correlation over all pixels of all images.

    Args:
        probs: ``(N, M, H, W)`` outputs of a model trained with a channel-permutation-invariant loss.
        labels: ``(N, H, W)`` binary ground truth (bool or 0/1), not constant.

    Returns: the channel index (int).

    Example:
        >>> s = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> select_channel(s, torch.tensor([[[False, True]]]))
        1
    """
    d = check_shape(probs, "probs", "N C H W")
    check_finite(probs, "probs")
    check_shape(labels, "labels", "N H W", d)
    g = labels.to(torch.float64).reshape(-1)
    if not bool(((g == 0) | (g == 1)).all()):
        raise ValueError("`labels`: expected binary values (bool or 0/1)")
    if float(g.min()) == float(g.max()):
        raise ValueError("`labels`: expected both salient and non-salient pixels, got a constant map")
    s = probs.detach().to(torch.float64).transpose(0, 1).reshape(probs.shape[1], -1)
    sc, gc = s - s.mean(1, keepdim=True), g - g.mean()
    corr = (sc @ gc) / (sc.norm(dim=1) * gc.norm()).clamp_min(torch.finfo(torch.float64).tiny)
    return int(corr.argmax())


def match_channels(probs: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    r"""Assign a distinct output channel to each class from labelled validation data.

    The multi-region generalisation of :func:`select_channel`: builds the table
    :math:`T_{kc}` = mean of channel :math:`c` over the pixels of class :math:`k`, and returns the
    one-to-one assignment that maximises :math:`\sum_k T_{k\pi(k)}` (Hungarian method). Predictions
    are then read as class :math:`k` where channel :math:`\pi(k)` wins: ``probs[:, perm]``.

    Args:
        probs: ``(N, M, H, W)``, ``M >= num_classes``.
        labels: ``(N, H, W)`` int in ``[0, num_classes)`` or ``ignore_index``; every class present.

    Returns: ``(num_classes,)`` int64 channel per class.

    Example:
        >>> s = torch.tensor([[[[0.1, 0.7]], [[0.8, 0.1]], [[0.1, 0.2]]]])
        >>> match_channels(s, torch.tensor([[[0, 1]]]), 2).tolist()
        [1, 0]
    """
    from scipy.optimize import linear_sum_assignment

    d = check_shape(probs, "probs", "N C H W")
    check_finite(probs, "probs")
    check_shape(labels, "labels", "N H W", d)
    check_dtype(labels, "labels", "int")
    M = probs.shape[1]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= M:
        raise ValueError(f"`num_classes`: expected an int in [1, {M}] (the number of channels), got {num_classes!r}")
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    y = labels[valid]
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"`labels`: expected values in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]")
    s = probs.detach().to(torch.float64).permute(0, 2, 3, 1)[valid]           # (P, M)
    onehot = F.one_hot(y.long(), num_classes).to(torch.float64)                # (P, K)
    counts = onehot.sum(0)
    if bool((counts == 0).any()):
        raise ValueError(f"`labels`: class {int((counts == 0).nonzero()[0])} has no pixel; cannot assign it a channel")
    table = (onehot.T @ s) / counts[:, None]                                   # (K, M)
    rows, cols = linear_sum_assignment(table.cpu().numpy(), maximize=True)
    out = torch.empty(num_classes, dtype=torch.long)
    out[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
    return out.to(probs.device)



__getattr__ = moved_attribute(__name__, {
    "symmetric_cross_entropy": "pixelbook.losses", "SymmetricCrossEntropy": "pixelbook.losses",
    "matched_iou": "pixelbook.metrics", "small_fcn": "pixelbook.models", "resnet_fcn": "pixelbook.models",
    "paper_model": "pixelbook.models",
})
