r"""Pixel embeddings and recurrent mean-shift grouping of instances [Kong thesis, Ch. 5, App. C].

A network maps every pixel to a unit vector; a pairwise loss pulls pixels of one instance together
and pushes pixels of different instances below a margin; Gaussian blurring mean shift (GBMS) with a
von Mises–Fisher kernel, unrolled as a recurrent layer without learned parameters, collapses the
embeddings onto one mode per instance, and the loss is applied after every iteration.

**Bandwidth convention.** We use Chapter 5's: the kernel on unit vectors is
:math:`K(\mathbf x, \mathbf y) = \exp(\delta\,\mathbf x^\top\mathbf y)` [Kong thesis, §5.4.1], so
``delta`` is the vMF concentration and the ``scale`` of
:func:`torch.nn.functional.scaled_dot_product_attention`; a larger ``delta`` is a *narrower*
kernel. Appendix C writes :math:`\exp(\delta^2\mathbf x^\top\mathbf y)` [Kong thesis, Eq. C.4] and
the official code :math:`\exp((\mathbf x^\top\mathbf y - 1)/\delta^2)` with δ = 0.1, so
``delta`` (ours) = δ_C² = 1/δ_code². The thesis' rule :math:`1/\delta = (1-\alpha)/3` with
α = 0.5 gives ``delta = 6`` here (36 read with App. C's kernel); the code's δ = 0.1 is ``delta = 100``.

**One GBMS step is softmax attention.** With the thesis' :math:`\mathbf X\in\mathbb R^{D\times N}`
(points are columns), :math:`\mathbf K = \exp(\delta\mathbf X^\top\mathbf X)` and
:math:`\mathbf D = \operatorname{diag}(\mathbf K^\top\mathbf 1)` (column sums), one step is
:math:`\mathbf X \leftarrow \mathbf X\mathbf K\mathbf D^{-1}` [Kong thesis, Eq. 5.3, η = 1]:
:math:`\mathbf K\mathbf D^{-1}` is *column*-stochastic and new point :math:`j` is the
:math:`K_{ij}/d_j`-weighted mean of all points :math:`i`. Transposed to rows (``points`` of shape
``(B, P, D)``, the attention layout) and because :math:`\mathbf K` is symmetric,
:math:`(\mathbf X\mathbf K\mathbf D^{-1})^\top = \mathbf D^{-1}\mathbf K\mathbf X^\top =
\operatorname{softmax}_{\text{row}}(\delta\,\mathbf X^\top\mathbf X)\,\mathbf X^\top`, i.e.
``scaled_dot_product_attention(q=x, k=x, v=x, scale=delta)``. The column normalisation of the
thesis *is* the row normalisation of the softmax, but only because queries and keys coincide (a
symmetric kernel). The fused kernels never store the ``P × P`` matrix: memory O(P) instead of
O(P²) (``benchmarks/bench_meanshift.py`` measures both). Which kernel runs is PyTorch's choice:
on the CPU the flash kernel takes float32 and float64 (measured: 2.8 / 5.5 MiB at P = 4096, D = 8,
forward + backward, against 384 / 769 MiB for the explicit form); on CUDA the flash and
memory-efficient kernels cover float16/bfloat16/float32, while float64 falls back to the math
path, which builds the matrix.

Three implementations of a step (``impl=``): ``"explicit"`` builds K and D as the thesis writes
them (teaching; O(P²) memory), ``"attention"`` calls SDPA (O(P) memory; first-order gradients
only, the fused CPU kernel has no double backward), ``"appendix"`` is the explicit forward with the
hand-derived backward of App. C.1.1 — corrected, see :func:`gbms_backward_appendix`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_dtype, check_finite, check_float, check_int, check_shape

__all__ = [
    "ALPHA", "DELTA", "GBMS_IMPLS", "WEIGHTINGS",
    "calibrated_similarity", "pair_weights", "sample_pixels", "pairwise_embedding_loss",
    "embedding_loss", "EmbeddingLoss",
    "kernel_matrix", "gbms_step", "gbms", "GBMS", "gbms_backward_appendix",
    "gaussian_blurring_mean_shift",
    "margin_bound", "tammes_similarity", "antipodal_embedding",
    "flatten_embeddings", "group_modes", "segment", "score_segments", "propose", "spherical_kmeans",
    "instance_boundaries", "gradient_map",
    "three_gaussians_toy",
]

#: Margin on the calibrated similarity [Kong thesis, §5.3.2]: "we adopt this setting (α = 0.5,
#: D = 64) for the majority of experiments".
ALPHA = 0.5
#: vMF bandwidth in Ch. 5's convention, from the thesis' rule 1/δ = (1 − α)/3 with α = 0.5
#: [Kong thesis, §5.4.1].
DELTA = 6.0
#: Implementations of one GBMS step (see the module docstring).
GBMS_IMPLS = ("explicit", "attention", "appendix")
#: Pixel weightings of the pairwise loss: ``"instance"`` ``w_i = 1/|I_q|`` [Kong thesis, §5.3.1], or
#: ``"uniform"`` w_i = 1 (the ablation).
WEIGHTINGS = ("instance", "uniform")


# --------------------------------------------------------------------------------------------
# Similarity and the pairwise loss
# --------------------------------------------------------------------------------------------


def _check_points(x, name: str, spec: str = "B P D") -> dict:
    d = check_shape(x, name, spec)
    check_dtype(x, name, "float")
    check_finite(x, name)
    return d


def calibrated_similarity(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    r"""Cosine similarity mapped to [0, 1] [Kong thesis, Eq. 5.1].

    .. math:: s_{ij} = \tfrac12\Big(1 + \frac{\mathbf x_i^\top\mathbf x_j}{\|\mathbf x_i\|\,\|\mathbf x_j\|}\Big)

    Invariant to a positive rescaling of either vector. A zero vector has similarity 0.5 to
    everything (``F.normalize`` leaves it at zero). Rounding can put a cosine a few ulps above 1;
    the result is clamped to [0, 1].

    Args:
        x: ``(..., P, D)`` vectors (rows).
        y: ``(..., Q, D)`` vectors; ``None`` means ``x``.

    Returns:
        ``(..., P, Q)`` similarities in [0, 1].

    Example:
        >>> calibrated_similarity(torch.tensor([[1., 0.], [0., 2.], [-3., 0.]]))
        tensor([[1.0000, 0.5000, 0.0000],
                [0.5000, 1.0000, 0.5000],
                [0.0000, 0.5000, 1.0000]])
    """
    lead = " ".join(f"A{i}" for i in range(x.ndim - 2)) if torch.is_tensor(x) and x.ndim > 2 else ""
    d = _check_points(x, "x", f"{lead} P D")
    if y is None:
        y = x
    else:
        check_shape(y, "y", f"{lead} Q D", d)
        check_dtype(y, "y", "float")
        check_finite(y, "y")
    xn, yn = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (0.5 * (1 + xn @ yn.transpose(-1, -2))).clamp(0, 1)


def pair_weights(ids: torch.Tensor, mask: torch.Tensor | None = None, weighting: str = "instance") -> torch.Tensor:
    r"""Normalised pixel-pair weights :math:`W_{ij} \propto w_i w_j` of the pairwise loss [Kong thesis, §5.3.1].

    ``"instance"``: :math:`w_i = 1/|\mathcal I_q|` for pixel :math:`i` of instance :math:`q` (counted
    among the pixels where ``mask`` is true, as the official code counts within the sample), so
    the positive block of every instance sums to :math:`\sum_{i,j\in\mathcal I_q} w_iw_j = 1`
    whatever its size, and all pairs sum to :math:`Q^2`. ``"uniform"``: :math:`w_i = 1`. Either
    way the returned weights are divided by their per-image total, so each image's weights sum to
    1 (the code's normalisation; the thesis divides by :math:`N_k` instead, which would tie the
    loss to the image size again). Memory: ``(B, P, P)``.

    Args:
        ids: ``(B, P)`` int64 instance ids (background is one more group).
        mask: ``(B, P)`` bool, the pixels that count; ``None`` = all.
        weighting: ``"instance"`` or ``"uniform"``.

    Returns:
        ``(B, P, P)`` float32 weights, zero where either pixel is masked out; an image without any
        pixel gets all-zero weights.

    Example:
        >>> W = pair_weights(torch.tensor([[0, 0, 0, 1]]))
        >>> [round(float(v), 6) for v in (W[0, :3, :3].sum(), W[0, 3, 3], W.sum())]  # each instance 1/Q^2
        [0.25, 0.25, 1.0]
    """
    d = check_shape(ids, "ids", "B P")
    check_dtype(ids, "ids", "int")
    check_choice(weighting, "weighting", WEIGHTINGS)
    if mask is None:
        mask = torch.ones_like(ids, dtype=torch.bool)
    check_shape(mask, "mask", "B P", d)
    if mask.dtype != torch.bool:
        raise TypeError(f"`mask`: expected a bool tensor, got {mask.dtype}")
    m = mask.float()
    if weighting == "instance":
        same = (ids[:, :, None] == ids[:, None, :]).float()  # (B, P, P)
        counts = (same * m[:, None, :]).sum(-1)  # |I_q| of each pixel's instance, within the mask
        w = m / counts.clamp_min(1)
    else:
        w = m
    W = w[:, :, None] * w[:, None, :]
    return W / W.sum((1, 2), keepdim=True).clamp_min(torch.finfo(W.dtype).tiny)


def sample_pixels(instances: torch.Tensor, num_samples: int, valid: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random pixels per image, without replacement, among the valid ones [Kong thesis, §5.3.1].

    The thesis samples uniformly ("set based on available GPU memory"; the official code samples
    ``floor(h*w*ratio)`` pixels, at most 4000). Vectorised: each pixel gets a uniform key, invalid
    pixels a key below all valid ones, and the ``num_samples`` largest keys are taken.

    Args:
        instances: ``(N, H, W)`` int64 instance ids (only the shape is used).
        num_samples: pixels per image; capped at ``H * W``.
        valid: ``(N, H, W)`` bool, the pixels that may be drawn; ``None`` = all.
        generator: optional ``torch.Generator`` (on the CPU) for reproducible draws.

    Returns:
        ``(index, mask)``: ``(N, n)`` int64 flat pixel indices and ``(N, n)`` bool, false where an
        image had fewer than ``n`` valid pixels (those slots hold invalid pixels and must not count).

    Example:
        >>> idx, m = sample_pixels(torch.zeros(2, 4, 4, dtype=torch.long), 5, generator=torch.Generator().manual_seed(0))
        >>> idx.shape, bool(m.all())
        (torch.Size([2, 5]), True)
    """
    d = check_shape(instances, "instances", "N H W")
    num_samples = check_int(num_samples, "num_samples", low=1)
    N, H, W = instances.shape
    n = min(num_samples, H * W)
    if valid is None:
        valid = torch.ones(N, H, W, dtype=torch.bool, device=instances.device)
    check_shape(valid, "valid", "N H W", d)
    if valid.dtype != torch.bool:
        raise TypeError(f"`valid`: expected a bool tensor, got {valid.dtype}")
    keys = torch.rand(N, H * W, generator=generator, device="cpu" if generator is not None else instances.device)
    keys = keys.to(instances.device)
    flat_valid = valid.reshape(N, -1)
    keys = torch.where(flat_valid, keys, torch.full_like(keys, -1.0))
    index = keys.topk(n, dim=1).indices
    return index, flat_valid.gather(1, index)


def pairwise_embedding_loss(points: torch.Tensor, ids: torch.Tensor, alpha: float = ALPHA,
                            weighting: str = "instance", mask: torch.Tensor | None = None,
                            reduction: str = "mean") -> torch.Tensor:
    r"""The pairwise max-margin loss on the sphere for sets of points [Kong thesis, Eq. 5.2].

    .. math::
        \ell = \sum_{i,j} W_{ij}\Big(\mathbb 1_{\{y_i=y_j\}}(1-s_{ij})
               + \mathbb 1_{\{y_i\neq y_j\}}\,[s_{ij}-\alpha]_+\Big)

    with :math:`s_{ij}` the calibrated similarity (Eq. 5.1) and :math:`W` from :func:`pair_weights`
    (summing to 1 per image, so :math:`\ell\in[0,1]`). The diagonal :math:`i=j` is included, as in
    the thesis' sum (it costs nothing: :math:`s_{ii}=1`). The margin acts on *calibrated*
    similarity: negatives pay when their angle is below :math:`\cos^{-1}(2\alpha-1)` (90° for
    α = 0.5). Memory: ``(B, P, P)``.

    Args:
        points: ``(B, P, D)`` embeddings (any norm; only directions count).
        ids: ``(B, P)`` int64 instance ids.
        alpha: margin α in [0, 1]; default 0.5 [Kong thesis, §5.3.2].
        weighting: ``"instance"`` (default, [Kong thesis, §5.3.1]) or ``"uniform"``.
        mask: ``(B, P)`` bool, the points that count; ``None`` = all.
        reduction: ``"mean"`` over images (default), ``"sum"`` (the thesis' sum over images) or
            ``"none"`` (``(B,)``).

    Returns:
        The loss tensor.

    Example:
        >>> x = torch.tensor([[[1., 0.], [1., 0.], [0., 1.]]])  # a perfect embedding of 2 instances
        >>> float(pairwise_embedding_loss(x, torch.tensor([[1, 1, 2]])))
        0.0
    """
    d = _check_points(points, "points")
    check_shape(ids, "ids", "B P", d)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    W = pair_weights(ids, mask, weighting).to(points.dtype)
    s = calibrated_similarity(points)
    same = ids[:, :, None] == ids[:, None, :]
    per_pair = torch.where(same, 1 - s, (s - alpha).clamp_min(0))
    per_image = (W * per_pair).sum((1, 2))
    if reduction == "none":
        return per_image
    return per_image.sum() if reduction == "sum" else per_image.mean()


def flatten_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
    """``(N, D, H, W)`` embeddings → ``(N, H*W, D)`` unit-norm points (row-major pixel order).

    Example:
        >>> flatten_embeddings(torch.ones(1, 2, 3, 3)).shape
        torch.Size([1, 9, 2])
    """
    check_shape(embeddings, "embeddings", "N D H W")
    check_dtype(embeddings, "embeddings", "float")
    return F.normalize(embeddings.flatten(2).transpose(1, 2), dim=-1)


def embedding_loss(embeddings: torch.Tensor, instances: torch.Tensor, alpha: float = ALPHA, *,
                   weighting: str = "instance", num_samples: int | None = None,
                   valid: torch.Tensor | None = None, delta: float = DELTA, num_iters: int = 0,
                   eta: float = 1.0, impl: str = "attention", loss_at: str = "all", gbms_on: str = "all",
                   generator: torch.Generator | None = None, reduction: str = "mean") -> torch.Tensor:
    r"""Pairwise embedding loss with optional recurrent GBMS grouping [Kong thesis, Eq. 5.2, §5.4.2].

    With ``num_iters = T > 0`` the embeddings pass through ``T`` GBMS iterations (:func:`gbms`) —
    those of *all* pixels of each image (``gbms_on="all"``, as the official code groups the whole
    stride-8 map), or only the sampled ones (``gbms_on="sampled"``: the density is estimated from
    the sample, (n/P)² of the cost) — and the loss is evaluated on the sampled pixels after each one:
    :math:`\ell = \sum_{t=0}^{T}\ell^t` with :math:`t=0` the initial embedding (the thesis writes
    :math:`\sum_{t=1}^T` "including the initial embedding regression"), or only :math:`\ell^T`
    with ``loss_at="last"`` [Kong thesis, App. C.1.2 (g)]. ``num_iters = 0`` is Eq. 5.2 alone.

    Args:
        embeddings: ``(N, D, H, W)`` network outputs (normalised here).
        instances: ``(N, H, W)`` int64 instance ids; background (0) is one more group, as in the
            official code.
        alpha: margin on calibrated similarity; 0.5 [Kong thesis, §5.3.2].
        weighting: ``"instance"`` (``w = 1/|I_q|``, [Kong thesis, §5.3.1]) or ``"uniform"``.
        num_samples: pixels sampled per image for the loss (uniformly, :func:`sample_pixels`);
            ``None`` = all valid pixels. The loss needs ``(N, n, n)`` memory.
        valid: ``(N, H, W)`` bool; invalid pixels (e.g. VOC's void) never enter the loss but do
            take part in GBMS.
        delta: GBMS bandwidth in Ch. 5's convention (kernel exp(δ xᵀy)); 6 from 1/δ = (1−α)/3.
        num_iters: GBMS iterations ``T`` unrolled in the loss; 0 = none.
        eta: GBMS step size η (1 = GBMS) [Kong thesis, Eq. 5.3].
        impl: GBMS implementation, see :data:`GBMS_IMPLS`.
        loss_at: ``"all"`` (every iteration, the thesis' choice) or ``"last"``.
        gbms_on: ``"all"`` pixels or the ``"sampled"`` ones (same when ``num_samples`` is None).
        generator: ``torch.Generator`` for the pixel sample.
        reduction: ``"mean"``/``"sum"`` over images or ``"none"`` (``(N,)``).

    Returns:
        The loss tensor.

    Example:
        >>> emb = torch.zeros(1, 2, 4, 4); emb[:, 0, :, :2] = 1; emb[:, 0, :, 2:] = -1
        >>> inst = torch.zeros(1, 4, 4, dtype=torch.long); inst[:, :, 2:] = 1
        >>> float(embedding_loss(emb, inst, num_iters=2))  # antipodal groups: zero before and after GBMS
        0.0
    """
    d = check_shape(embeddings, "embeddings", "N D H W")
    check_dtype(embeddings, "embeddings", "float")
    check_finite(embeddings, "embeddings")
    check_shape(instances, "instances", "N H W", d)
    check_dtype(instances, "instances", "int")
    if valid is not None:
        check_shape(valid, "valid", "N H W", d)
        if valid.dtype != torch.bool:
            raise TypeError(f"`valid`: expected a bool tensor, got {valid.dtype}")
    num_iters = check_int(num_iters, "num_iters", low=0)
    check_choice(loss_at, "loss_at", ("all", "last"))
    check_choice(gbms_on, "gbms_on", ("all", "sampled"))
    check_choice(weighting, "weighting", WEIGHTINGS)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    N = embeddings.shape[0]
    x = flatten_embeddings(embeddings)  # (N, P, D)
    ids_all = instances.reshape(N, -1)
    if num_samples is None:
        index = None
        mask = None if valid is None else valid.reshape(N, -1)
    else:
        index, mask = sample_pixels(instances, num_samples, valid, generator)
    ids = ids_all if index is None else ids_all.gather(1, index)
    pick = (lambda t: t) if index is None else (lambda t: t.gather(1, index[:, :, None].expand(-1, -1, t.shape[-1])))
    if gbms_on == "sampled":  # group the sample itself; the loss then needs no gather
        x, pick = pick(x), (lambda t: t)
    states = [x] if num_iters == 0 else gbms(x, delta, num_iters, eta=eta, impl=impl, return_all=True)
    if loss_at == "last":
        states = states[-1:]
    total = 0
    for xt in states:
        total = total + pairwise_embedding_loss(pick(xt), ids, alpha, weighting, mask, reduction)
    return total


class EmbeddingLoss(nn.Module):
    """Module form of :func:`embedding_loss`; stores the hyperparameters [Kong thesis, Eq. 5.2, §5.4.2].

    Example:
        >>> loss = EmbeddingLoss(num_samples=8, num_iters=1)
        >>> loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))).shape
        torch.Size([])
    """

    def __init__(self, alpha: float = ALPHA, *, weighting: str = "instance", num_samples: int | None = None,
                 delta: float = DELTA, num_iters: int = 0, eta: float = 1.0, impl: str = "attention",
                 loss_at: str = "all", gbms_on: str = "all", reduction: str = "mean"):
        super().__init__()
        check_choice(weighting, "weighting", WEIGHTINGS)
        check_choice(impl, "impl", GBMS_IMPLS)
        check_choice(loss_at, "loss_at", ("all", "last"))
        check_choice(gbms_on, "gbms_on", ("all", "sampled"))
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        self.alpha = check_float(alpha, "alpha", 0.0, 1.0)
        self.weighting, self.impl, self.loss_at, self.reduction = weighting, impl, loss_at, reduction
        self.gbms_on = gbms_on
        self.num_samples = None if num_samples is None else check_int(num_samples, "num_samples", low=1)
        self.delta = check_float(delta, "delta", 0.0, low_open=True)
        self.num_iters = check_int(num_iters, "num_iters", low=0)
        self.eta = check_float(eta, "eta", 0.0, 1.0, low_open=True)

    def forward(self, embeddings, instances, valid=None, generator=None):
        return embedding_loss(embeddings, instances, self.alpha, weighting=self.weighting,
                              num_samples=self.num_samples, valid=valid, delta=self.delta,
                              num_iters=self.num_iters, eta=self.eta, impl=self.impl, loss_at=self.loss_at,
                              gbms_on=self.gbms_on, generator=generator, reduction=self.reduction)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, weighting={self.weighting!r}, num_samples={self.num_samples}, "
                f"delta={self.delta}, num_iters={self.num_iters}, eta={self.eta}, impl={self.impl!r}, "
                f"loss_at={self.loss_at!r}, gbms_on={self.gbms_on!r}")


# --------------------------------------------------------------------------------------------
# Gaussian blurring mean shift with the vMF kernel
# --------------------------------------------------------------------------------------------


def kernel_matrix(points: torch.Tensor, delta: float = DELTA) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The vMF kernel matrix and degrees of the thesis' matrix form [Kong thesis, §5.4.1].

    :math:`\mathbf K = \exp(\delta(\mathbf X^\top\mathbf X - 1))` (the constant :math:`e^{-\delta}`
    cancels in :math:`\mathbf K\mathbf D^{-1}` and keeps every entry in (0, 1] for unit vectors) and
    :math:`\mathbf d = \mathbf K^\top\mathbf 1`. Memory O(P²): for teaching.

    Args:
        points: ``(B, P, D)`` unit vectors.
        delta: bandwidth δ (Ch. 5 convention).

    Returns:
        ``(K, d)``: ``(B, P, P)`` symmetric kernel and ``(B, P)`` degrees (column sums).

    Example:
        >>> K, d = kernel_matrix(torch.eye(2)[None], 6.0)
        >>> abs(K[0, 0, 1].item() - math.exp(-6.0)) < 1e-9, d.shape
        (True, torch.Size([1, 2]))
    """
    _check_points(points, "points")
    delta = check_float(delta, "delta", 0.0, low_open=True)
    K = torch.exp(delta * (points @ points.transpose(-1, -2) - 1))
    return K, K.sum(-2)


def _step_explicit(x: torch.Tensor, delta) -> torch.Tensor:
    K = torch.exp(delta * (x @ x.transpose(-1, -2) - 1))  # (B, P, P), symmetric
    P = K / K.sum(-2, keepdim=True)  # K D^{-1}: columns sum to 1
    return P.transpose(-1, -2) @ x  # rows of (X K D^{-1})^T


def _step_attention(x: torch.Tensor, delta) -> torch.Tensor:
    q = x.unsqueeze(1)  # (B, 1, P, D): one head; queries = keys = values
    return F.scaled_dot_product_attention(q, q, q, scale=float(delta)).squeeze(1)


def gbms_backward_appendix(x: torch.Tensor, grad_y: torch.Tensor, delta: float = DELTA, eta: float = 1.0,
                           renormalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Hand-derived backward of one GBMS step [Kong thesis, App. C.1.1, Eq. C.6], corrected.

    Forward, in the thesis' :math:`D\times N` layout (points are columns, :math:`\mathbf X` unit):
    :math:`\mathbf S=\mathbf X^\top\mathbf X`, :math:`\mathbf K=\exp(\delta\mathbf S)`,
    :math:`\mathbf d=\mathbf K^\top\mathbf 1`, :math:`\mathbf q=\mathbf d^{-1}`,
    :math:`\mathbf P=\eta\,\mathbf K\operatorname{diag}(\mathbf q)+(1-\eta)\mathbf I`,
    :math:`\mathbf Y=\mathbf X\mathbf P`, then :math:`\mathbf Z=\mathbf Y/\|\mathbf Y\|` per column.
    With :math:`\bar{\mathbf A}=\partial\ell/\partial\mathbf A`:

    .. math::
        \bar{\mathbf Y} &= (\bar{\mathbf Z} - \mathbf Z\operatorname{diag}(\mathbf 1^\top(\mathbf Z\odot\bar{\mathbf Z})))
                           \operatorname{diag}(\|\mathbf Y\|)^{-1} \\
        \bar{\mathbf P} &= \mathbf X^\top\bar{\mathbf Y}, \qquad
        \bar{\mathbf q} = \eta\,(\bar{\mathbf P}\odot\mathbf K)^\top\mathbf 1, \qquad
        \bar{\mathbf d} = -\bar{\mathbf q}\odot\mathbf d^{-2} \\
        \bar{\mathbf K} &= \eta\,\bar{\mathbf P}\odot(\mathbf 1\mathbf q^\top) + \mathbf 1\bar{\mathbf d}^\top, \qquad
        \bar{\mathbf S} = \delta\,\mathbf K\odot\bar{\mathbf K} \\
        \bar{\mathbf X} &= \bar{\mathbf Y}\mathbf P^\top + \mathbf X(\bar{\mathbf S}+\bar{\mathbf S}^\top), \qquad
        \bar\delta = \textstyle\sum_{ij} S_{ij}K_{ij}\bar K_{ij}

    What Eq. C.6 prints differs: matrix products where the chain rule needs elementwise ones
    (:math:`\eta\bar{\mathbf P}(\mathbf q\mathbf 1^\top)`, :math:`\eta\bar{\mathbf P}^\top\mathbf K\mathbf 1`),
    :math:`2\mathbf X\bar{\mathbf S}` for :math:`\mathbf X(\bar{\mathbf S}+\bar{\mathbf S}^\top)`
    (:math:`\bar{\mathbf S}` is not symmetric), the two contributions to :math:`\bar{\mathbf K}`
    and to :math:`\bar{\mathbf X}` written as separate equations instead of added, and no
    renormalisation Jacobian. In App. C's kernel :math:`\exp(\delta^2\mathbf S)` the factors δ
    become δ² and :math:`\bar\delta` gains the factor 2δ (which Eq. C.6 has). Memory O(P²).

    Args:
        x: ``(B, P, D)`` unit vectors (the rows are the thesis' columns).
        grad_y: ``(B, P, D)`` upstream gradient of the step's output.
        delta: bandwidth (Ch. 5 convention).
        eta: step size η.
        renormalize: whether the step's output was renormalised onto the sphere.

    Returns:
        ``(grad_x, grad_delta)``: ``(B, P, D)`` and a scalar tensor.
    """
    d = _check_points(x, "x")
    check_shape(grad_y, "grad_y", "B P D", d)
    delta = check_float(delta, "delta", 0.0, low_open=True)
    eta = check_float(eta, "eta", 0.0, 1.0, low_open=True)
    X = x.transpose(-1, -2)  # (B, D, N): the thesis' layout
    Gy = grad_y.transpose(-1, -2)
    N = X.shape[-1]
    eye = torch.eye(N, dtype=x.dtype, device=x.device)
    S = X.transpose(-1, -2) @ X
    K = torch.exp(delta * S)
    dd = K.sum(-2)  # d = K^T 1, (B, N)
    q = 1 / dd
    P = eta * K * q[:, None, :] + (1 - eta) * eye
    Y = X @ P
    if renormalize:
        norm = Y.norm(dim=-2, keepdim=True)  # (B, 1, N)
        Z = Y / norm
        Gy = (Gy - Z * (Z * Gy).sum(-2, keepdim=True)) / norm
    Gp = X.transpose(-1, -2) @ Gy  # (B, N, N)
    Gq = eta * (Gp * K).sum(-2)  # (B, N)
    Gd = -Gq / dd ** 2
    Gk = eta * Gp * q[:, None, :] + Gd[:, None, :]
    Gs = delta * K * Gk
    Gx = Gy @ P.transpose(-1, -2) + X @ (Gs + Gs.transpose(-1, -2))
    grad_delta = (S * K * Gk).sum()
    return Gx.transpose(-1, -2), grad_delta


class _GBMSStepAppendix(torch.autograd.Function):
    """One renormalised GBMS step: explicit forward, App. C backward (corrected)."""

    @staticmethod
    def forward(ctx, x, delta, eta):
        ctx.save_for_backward(x)
        ctx.delta, ctx.eta = delta, eta
        return F.normalize(eta * _step_explicit(x, delta) + (1 - eta) * x, dim=-1)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        gx, _ = gbms_backward_appendix(x, grad_out, ctx.delta, ctx.eta)
        return gx, None, None


def gbms_step(points: torch.Tensor, delta: float = DELTA, eta: float = 1.0, impl: str = "attention") -> torch.Tensor:
    r"""One GBMS iteration on the sphere, renormalised [Kong thesis, Eq. 5.3, App. C.1].

    :math:`\mathbf X \leftarrow \operatorname{normalize}\big(\mathbf X(\eta\mathbf K\mathbf D^{-1}
    + (1-\eta)\mathbf I)\big)` with :math:`\mathbf K = \exp(\delta\mathbf X^\top\mathbf X)`. In rows:
    ``normalize(eta * softmax(delta * x @ x.T) @ x + (1 - eta) * x)``.

    Args:
        points: ``(B, P, D)`` unit vectors (normalise first; :func:`gbms` does).
        delta: bandwidth δ > 0, Ch. 5's convention (= SDPA's ``scale``); default 6.
        eta: step size η in (0, 1]; 1 = GBMS (the official code's value).
        impl: ``"attention"`` (default; O(P) memory), ``"explicit"`` (O(P²), as printed in the
            thesis) or ``"appendix"`` (explicit, with App. C's corrected hand-written backward).

    Returns:
        ``(B, P, D)`` unit vectors.

    Example:
        >>> x = F.normalize(torch.randn(1, 50, 3), dim=-1)
        >>> torch.allclose(gbms_step(x, impl="attention"), gbms_step(x, impl="explicit"), atol=1e-5)
        True
    """
    _check_points(points, "points")
    delta = check_float(delta, "delta", 0.0, low_open=True)
    eta = check_float(eta, "eta", 0.0, 1.0, low_open=True)
    check_choice(impl, "impl", GBMS_IMPLS)
    if impl == "appendix":
        return _GBMSStepAppendix.apply(points, delta, eta)
    y = _step_attention(points, delta) if impl == "attention" else _step_explicit(points, delta)
    if eta != 1.0:
        y = eta * y + (1 - eta) * points
    return F.normalize(y, dim=-1)


def gbms(points: torch.Tensor, delta: float = DELTA, num_iters: int = 10, *, eta: float = 1.0,
         impl: str = "attention", return_all: bool = False):
    r"""Recurrent Gaussian blurring mean shift with the vMF kernel [Kong thesis, §5.4, Eq. 5.3].

    The input is L2-normalised, then :func:`gbms_step` runs ``num_iters`` times; the kernel is
    recomputed every iteration (*blurring* mean shift: the data move and the density is
    re-estimated [Carreira-Perpiñán 2006]). Run long enough, GBMS merges everything into one point;
    a finite ``num_iters`` is part of the model.

    Args:
        points: ``(B, P, D)`` embeddings (any norm).
        delta: bandwidth (Ch. 5 convention); default 6.
        num_iters: iterations T ≥ 0; the thesis' figures use 10.
        eta: step size η (1 = GBMS).
        impl: see :func:`gbms_step`.
        return_all: return the list of the T + 1 states (t = 0 is the normalised input).

    Returns:
        ``(B, P, D)`` unit vectors after T iterations, or the list of states.

    Example:
        >>> x = torch.tensor([[[1., 0.1], [1., -0.1], [0., 1.]]])
        >>> y = gbms(x, 6.0, 5)  # the first two points merge, the third stays apart
        >>> float(y[0, 0] @ y[0, 1]) > 0.9999, float(y[0, 0] @ y[0, 2]) < 0.1
        (True, True)
        >>> y = gbms(x, 6.0, 50)  # run long enough, GBMS merges everything
        >>> float(y[0, 0] @ y[0, 2]) > 0.9999
        True
    """
    _check_points(points, "points")
    num_iters = check_int(num_iters, "num_iters", low=0)
    x = F.normalize(points, dim=-1)
    states = [x]
    for _ in range(num_iters):
        x = gbms_step(x, delta, eta, impl)
        states.append(x)
    return states if return_all else x


class GBMS(nn.Module):
    """Recurrent GBMS grouping layer, no learned parameters [Kong thesis, Fig. 5.3].

    Takes ``(B, P, D)`` points or ``(N, D, H, W)`` embedding maps (returned in the same layout).

    Example:
        >>> layer = GBMS(delta=6.0, num_iters=3)
        >>> layer(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(self, delta: float = DELTA, num_iters: int = 10, eta: float = 1.0, impl: str = "attention"):
        super().__init__()
        self.delta = check_float(delta, "delta", 0.0, low_open=True)
        self.num_iters = check_int(num_iters, "num_iters", low=0)
        self.eta = check_float(eta, "eta", 0.0, 1.0, low_open=True)
        check_choice(impl, "impl", GBMS_IMPLS)
        self.impl = impl

    def forward(self, x: torch.Tensor, return_all: bool = False):
        if torch.is_tensor(x) and x.ndim == 4:
            N, D, H, W = x.shape
            out = gbms(flatten_embeddings(x), self.delta, self.num_iters, eta=self.eta, impl=self.impl,
                       return_all=True)
            out = [s.transpose(1, 2).reshape(N, D, H, W) for s in out]
            return out if return_all else out[-1]
        return gbms(x, self.delta, self.num_iters, eta=self.eta, impl=self.impl, return_all=return_all)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, num_iters={self.num_iters}, eta={self.eta}, impl={self.impl!r}"


def gaussian_blurring_mean_shift(x: torch.Tensor, sigma: float, num_iters: int = 10, *, eta: float = 1.0,
                                 impl: str = "attention", return_all: bool = False):
    r"""Euclidean GBMS with the Gaussian kernel :math:`\exp(-\|\mathbf x-\mathbf y\|^2/2\sigma^2)` [Carreira-Perpiñán 2006].

    The 1-D toy of [Kong thesis, App. C.1.2] ("bandwidth 0.2") lives on the real line, not on a
    sphere. Its attention form appends one coordinate: with queries :math:`[\mathbf x/\sigma, 1]`
    and keys :math:`[\mathbf x/\sigma, -\|\mathbf x\|^2/2\sigma^2]` the logits are
    :math:`-\|\mathbf x_i-\mathbf x_j\|^2/2\sigma^2 + \|\mathbf x_i\|^2/2\sigma^2`, and the last term is
    constant along each softmax row. No renormalisation.

    Args:
        x: ``(B, P, D)`` points.
        sigma: kernel width σ > 0.
        num_iters: iterations.
        eta: step size η in (0, 1].
        impl: ``"attention"`` or ``"explicit"``.
        return_all: return the list of states.

    Returns:
        ``(B, P, D)`` points (or the list of the ``num_iters + 1`` states).

    Example:
        >>> x = torch.tensor([[[0.], [0.1], [5.]]])
        >>> [round(v, 3) for v in gaussian_blurring_mean_shift(x, 0.5, 20).flatten().tolist()]
        [0.05, 0.05, 5.0]
    """
    _check_points(x, "x")
    sigma = check_float(sigma, "sigma", 0.0, low_open=True)
    num_iters = check_int(num_iters, "num_iters", low=0)
    eta = check_float(eta, "eta", 0.0, 1.0, low_open=True)
    check_choice(impl, "impl", ("attention", "explicit"))
    states = [x]
    for _ in range(num_iters):
        if impl == "explicit":
            K = torch.exp(-torch.cdist(x, x).pow(2) / (2 * sigma ** 2))
            y = (K / K.sum(-2, keepdim=True)).transpose(-1, -2) @ x
        else:
            ones = torch.ones_like(x[..., :1])
            q = torch.cat([x / sigma, ones], -1).unsqueeze(1)
            k = torch.cat([x / sigma, -(x * x).sum(-1, keepdim=True) / (2 * sigma ** 2)], -1).unsqueeze(1)
            y = F.scaled_dot_product_attention(q, k, x.unsqueeze(1), scale=1.0).squeeze(1)
        x = eta * y + (1 - eta) * x
        states.append(x)
    return states if return_all else x


# --------------------------------------------------------------------------------------------
# Margin selection: spherical packing
# --------------------------------------------------------------------------------------------


def margin_bound(n: int) -> float:
    r"""Prop. 5.2's margin :math:`1 - 2\pi/(\sqrt3\,n)` for ``n`` instances on the 2-sphere [Kong thesis, Eq. C.2].

    From the asymptotic Tammes bound :math:`d \le (8\pi/(\sqrt3 n))^{1/2}` [Habicht & van der
    Waerden 1951] and :math:`\|\mathbf x-\mathbf y\|^2 = 4(1-s)`: the closest pair of *any* n unit
    vectors in :math:`\mathbb R^3` has :math:`s \ge` this value (asymptotically), so a margin α
    below it makes some negative pair pay even for a perfect embedding. The thesis prints
    :math:`2\pi/\sqrt{3N}` in Prop. 5.2 and C.2 but its numbers (0.093, 0.274, 0.395, 0.482 for
    n = 4…7) follow :math:`2\pi/(\sqrt3 N)`, which is what the derivation gives. For small n the
    true optimum (:func:`tammes_similarity`) is much higher. The other side of Eq. C.2 involves
    an unknown constant C; with C = 0 it coincides with this value.

    Example:
        >>> [round(margin_bound(n), 4) for n in (4, 5, 6, 7)]
        [0.0931, 0.2745, 0.3954, 0.4818]
    """
    n = check_int(n, "n", low=2)
    return 1 - 2 * math.pi / (math.sqrt(3) * n)


def tammes_similarity(n: int, dim: int = 3, steps: int = 1500, restarts: int = 8, seed: int = 0):
    r"""Numerically packed ``n`` unit vectors in :math:`\mathbb R^{dim}` and their largest pairwise similarity.

    Minimises a soft maximum (log-sum-exp with growing sharpness) of the pairwise cosines by
    projected gradient descent, keeps the best of ``restarts`` random starts, and returns the
    points and :math:`\max_{i\ne j}s_{ij}` (calibrated, Eq. 5.1) — the smallest margin α for which a
    zero-loss embedding of ``n`` instances exists in that dimension [Kong thesis, §5.3.2]. Known
    optima on :math:`S^2`: n = 4 tetrahedron 1/3, n = 5 and 6 0.5, n = 7 ≈ 0.6052.

    Returns:
        ``(points (n, dim) float64, max_similarity float)``.

    Example:
        >>> round(tammes_similarity(4)[1], 3)  # regular tetrahedron: cos = -1/3
        0.333
    """
    n = check_int(n, "n", low=2)
    dim = check_int(dim, "dim", low=2)
    steps = check_int(steps, "steps", low=1)
    restarts = check_int(restarts, "restarts", low=1)
    g = torch.Generator().manual_seed(check_int(seed, "seed", low=0))
    off = ~torch.eye(n, dtype=torch.bool)
    # all restarts at once: (R, n, dim)
    x = F.normalize(torch.randn(restarts, n, dim, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.02)
    for t in range(steps):
        beta = 5.0 + 495.0 * t / max(steps - 1, 1)  # sharpen the soft maximum as we go
        xn = F.normalize(x, dim=-1)
        c = (xn @ xn.transpose(1, 2))[:, off]  # (R, n(n-1))
        loss = (torch.logsumexp(beta * c, 1) / beta).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        xn = F.normalize(x, dim=-1)
        worst = (xn @ xn.transpose(1, 2))[:, off].max(1).values  # (R,)
        r = int(worst.argmin())
    return xn[r].detach(), float(0.5 * (1 + worst[r]))


def antipodal_embedding(n: int, dim: int | None = None) -> torch.Tensor:
    r"""``n`` unit vectors :math:`\pm\mathbf e_k` on :math:`\lceil n/2\rceil` axes [Kong thesis, §5.3.2].

    The thesis' "safe" choice: pairs of groups antipodal on orthogonal axes, so every pair has
    calibrated similarity 0 (antipodal) or 0.5 (orthogonal) and α = 0.5 allows zero loss with
    D = n/2 dimensions.

    Example:
        >>> antipodal_embedding(3)
        tensor([[ 1.,  0.],
                [-1.,  0.],
                [ 0.,  1.]])
    """
    n = check_int(n, "n", low=1)
    need = (n + 1) // 2
    dim = need if dim is None else check_int(dim, "dim", low=need)
    x = torch.zeros(n, dim)
    k = torch.arange(n)
    x[k, k // 2] = torch.where(k % 2 == 0, 1.0, -1.0)
    return x


# --------------------------------------------------------------------------------------------
# Read-out: modes -> segments -> proposals; k-means baseline
# --------------------------------------------------------------------------------------------


def group_modes(points: torch.Tensor, threshold: float = 0.9, min_size: int = 1) -> torch.Tensor:
    r"""Greedy mode merging of (converged) unit vectors into segments (ours; the thesis leaves it open).

    Repeat until every point is assigned: take the first unassigned point as a seed, collect the
    unassigned points with cosine > ``threshold`` to it, re-centre on their normalised mean and
    collect again. Segments with fewer than ``min_size`` points then join the kept segment whose
    centre is most similar. The loop runs once per segment (not per point), O(P·D) each.

    Args:
        points: ``(B, P, D)`` unit vectors, typically after :func:`gbms`.
        threshold: cosine similarity that merges a point into a mode; 0.9 (ours; after GBMS
            same-instance points sit at cosine ≈ 1).
        min_size: smallest segment kept.

    Returns:
        ``(B, P)`` int64 segment ids ``0..K-1`` per image, numbered by decreasing size.

    Example:
        >>> group_modes(torch.tensor([[[1., 0.], [0., 1.], [1., 0.01]]]))
        tensor([[0, 1, 0]])
    """
    _check_points(points, "points")
    threshold = check_float(threshold, "threshold", -1.0, 1.0)
    min_size = check_int(min_size, "min_size", low=1)
    x = F.normalize(points.detach(), dim=-1)
    out = torch.empty(x.shape[:2], dtype=torch.long, device=x.device)
    for b in range(x.shape[0]):
        xb = x[b]
        labels = torch.full((xb.shape[0],), -1, dtype=torch.long, device=x.device)
        centres = []
        while True:
            free = (labels < 0).nonzero()[:, 0]
            if free.numel() == 0:
                break
            members = free[(xb[free] @ xb[free[0]]) > threshold]
            if members.numel():
                centre = F.normalize(xb[members].mean(0), dim=0)
                refined = free[(xb[free] @ centre) > threshold]
                members = refined if refined.numel() else members
            else:  # threshold >= 1: every point is its own segment
                centre, members = xb[free[0]], free[:1]
            labels[members] = len(centres)
            centres.append(xb[members].mean(0))
        C = F.normalize(torch.stack(centres), dim=-1)
        sizes = torch.bincount(labels, minlength=len(centres))
        keep = sizes >= min_size
        if not bool(keep.any()):
            keep = sizes == sizes.max()
        if not bool(keep.all()):
            small = ~keep[labels]
            kept_ids = keep.nonzero()[:, 0]
            labels[small] = kept_ids[(xb[small] @ C[kept_ids].T).argmax(1)]
            sizes = torch.bincount(labels, minlength=len(centres))
        order = torch.argsort(sizes, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel(), device=x.device)
        out[b] = rank[labels]
    return out


def segment(embeddings: torch.Tensor, delta: float = DELTA, num_iters: int = 10, threshold: float = 0.9,
            min_size: int = 1, impl: str = "attention") -> torch.Tensor:
    """Instance segments from embedding maps: GBMS, then :func:`group_modes` [Kong thesis, §5.4].

    Args:
        embeddings: ``(N, D, H, W)``.
        delta: GBMS bandwidth (Ch. 5 convention).
        num_iters: GBMS iterations (the thesis' figures: 10).
        threshold: mode-merging cosine.
        min_size: smallest segment (pixels).
        impl: GBMS implementation.

    Returns:
        ``(N, H, W)`` int64 segment ids (0 = the largest segment of each image).

    Example:
        >>> emb = torch.zeros(1, 2, 4, 4); emb[:, 0, :, :2] = 1; emb[:, 1, :, 2:] = 1
        >>> segment(emb)[0, 0].tolist()
        [0, 0, 1, 1]
    """
    check_shape(embeddings, "embeddings", "N D H W")
    N, _, H, W = embeddings.shape
    with torch.no_grad():
        x = gbms(flatten_embeddings(embeddings), delta, num_iters, impl=impl)
    return group_modes(x, threshold, min_size).reshape(N, H, W)


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU between two stacks of flat bool masks ``(K, P)`` and ``(L, P)`` → ``(K, L)``."""
    a, b = a.double(), b.double()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return inter / union.clamp_min(1)


def score_segments(embeddings: torch.Tensor, segments: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    r"""Each segment as a mask with a score, by decreasing score (ours; the thesis' re-scorer is unspecified).

    The score of a segment is the mean cosine of its pixels' embeddings to their normalised mean:
    1 for a segment whose pixels share one direction, lower when it merges several directions.

    Args:
        embeddings: ``(N, D, H, W)`` embeddings the segments came from (before GBMS).
        segments: ``(N, H, W)`` int64 segment ids.

    Returns:
        Per image, ``(masks, scores)``: ``(K, H, W)`` bool and ``(K,)`` float32.

    Example:
        >>> emb = torch.zeros(1, 2, 1, 3); emb[0, 0, 0, :2] = 1; emb[0, 1, 0, 1:] = 1
        >>> masks, scores = score_segments(emb, torch.tensor([[[0, 0, 1]]]))[0]  # 0.9239 = cos 22.5 deg
        >>> masks.tolist(), [round(v, 4) for v in scores.tolist()]
        ([[[False, False, True]], [[True, True, False]]], [1.0, 0.9239])
    """
    d = check_shape(embeddings, "embeddings", "N D H W")
    check_shape(segments, "segments", "N H W", {"N": d["N"], "H": d["H"], "W": d["W"]})
    check_dtype(segments, "segments", "int")
    N, _, H, W = embeddings.shape
    x0 = flatten_embeddings(embeddings.detach()).double()  # (N, P, D)
    out = []
    for b in range(N):
        ids = torch.unique(segments[b])
        masks = segments[b].reshape(1, -1) == ids[:, None]  # (K, P)
        m = masks.double()
        centre = F.normalize(m @ x0[b], dim=1)  # normalised mean of each segment
        scores = (m * (x0[b] @ centre.T).T).sum(1) / m.sum(1)
        order = torch.argsort(scores, descending=True, stable=True)
        out.append((masks[order].reshape(-1, H, W), scores[order].float()))
    return out


def propose(embeddings: torch.Tensor, deltas: Sequence[float] = (DELTA,), num_iters: int = 10,
            threshold: float = 0.9, min_size: int = 1, dedupe_iou: float = 0.9,
            impl: str = "attention") -> list[tuple[torch.Tensor, torch.Tensor]]:
    r"""Scored instance proposals from several bandwidths [Kong thesis, §5.5.3 footnote].

    "We run the mean shift grouping with multiple smaller bandwidth parameters, pool the results,
    and remove redundant proposals." Here: :func:`segment` for each δ, every segment becomes a
    proposal scored by :func:`score_segments`, and a proposal whose IoU with a higher-scoring one
    exceeds ``dedupe_iou`` is dropped.

    Args:
        embeddings: ``(N, D, H, W)``.
        deltas: bandwidths (Ch. 5 convention).
        num_iters, threshold, min_size, impl: as in :func:`segment`.
        dedupe_iou: IoU above which a lower-scoring proposal is a duplicate (1 keeps all).

    Returns:
        Per image, ``(masks, scores)``: ``(K, H, W)`` bool and ``(K,)`` float, by decreasing score.
    """
    check_shape(embeddings, "embeddings", "N D H W")
    if len(deltas) == 0:
        raise ValueError("`deltas`: expected at least one bandwidth, got none")
    dedupe_iou = check_float(dedupe_iou, "dedupe_iou", 0.0, 1.0)
    N, _, H, W = embeddings.shape
    scored = [score_segments(embeddings, segment(embeddings, delta, num_iters, threshold, min_size, impl))
              for delta in deltas]
    out = []
    for b in range(N):
        masks = torch.cat([sc[b][0] for sc in scored]).reshape(-1, H * W)
        scores = torch.cat([sc[b][1] for sc in scored])
        order = torch.argsort(scores, descending=True, stable=True)
        masks, scores = masks[order], scores[order]
        iou = _mask_iou(masks, masks)
        keep = torch.ones(len(masks), dtype=torch.bool)
        for k in range(1, len(masks)):
            if bool((iou[k, :k][keep[:k]] > dedupe_iou).any()):
                keep[k] = False
        out.append((masks[keep].reshape(-1, H, W), scores[keep]))
    return out


def spherical_kmeans(points: torch.Tensor, k: int, num_iters: int = 50, restarts: int = 3,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Spherical k-means (cosine) with k-means++ seeding: the baseline that is *given* the count.

    Args:
        points: ``(P, D)`` vectors (normalised here).
        k: number of clusters (the true number of groups, background included).
        num_iters: Lloyd iterations per restart.
        restarts: keep the restart with the highest total cosine to the centres.
        generator: ``torch.Generator`` for the seeding.

    Returns:
        ``(P,)`` int64 cluster ids in ``[0, k)``.

    Example:
        >>> x = torch.tensor([[1., 0.], [0.9, 0.1], [0., 1.], [0.1, 0.9]])
        >>> spherical_kmeans(x, 2, generator=torch.Generator().manual_seed(0)).tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])
        True
    """
    _check_points(points, "points", "P D")
    k = check_int(k, "k", low=1, high=points.shape[0])
    num_iters = check_int(num_iters, "num_iters", low=1)
    restarts = check_int(restarts, "restarts", low=1)
    x = F.normalize(points.detach().double(), dim=1)
    best, best_obj = None, -float("inf")
    for _ in range(restarts):
        idx = [int(torch.randint(x.shape[0], (1,), generator=generator))]
        for _ in range(1, k):  # k-means++ on the cosine distance 1 - cos
            dist = (1 - (x @ x[idx].T).max(1).values).clamp_min(0)
            p = dist / dist.sum() if float(dist.sum()) > 0 else torch.full_like(dist, 1 / len(dist))
            idx.append(int(torch.multinomial(p, 1, generator=generator)))
        C = x[idx]
        for _ in range(num_iters):
            labels = (x @ C.T).argmax(1)
            sums = torch.zeros_like(C).index_add_(0, labels, x)
            empty = sums.norm(dim=1) == 0
            C = torch.where(empty[:, None], C, F.normalize(sums, dim=1))
        labels = (x @ C.T).argmax(1)
        obj = float((x * C[labels]).sum())
        if obj > best_obj:
            best, best_obj = labels, obj
    return best


def instance_boundaries(instances: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Pixels within ``width`` pixels (chessboard distance) of a pixel with another instance id.

    Args:
        instances: ``(N, H, W)`` int64 ids.
        width: band half-width in pixels.

    Returns:
        ``(N, H, W)`` bool.

    Example:
        >>> instance_boundaries(torch.tensor([[[0, 0, 0, 1]]]))[0, 0].tolist()
        [False, False, True, True]
    """
    check_shape(instances, "instances", "N H W")
    check_dtype(instances, "instances", "int")
    width = check_int(width, "width", low=1)
    x = instances[:, None].double()
    k = 2 * width + 1
    hi = F.max_pool2d(F.pad(x, (width,) * 4, mode="replicate"), k, stride=1)
    lo = -F.max_pool2d(F.pad(-x, (width,) * 4, mode="replicate"), k, stride=1)
    return (hi != lo)[:, 0]


def gradient_map(embeddings: torch.Tensor, instances: torch.Tensor, num_iters: int = 1, loss_at: str = "last",
                 **loss_kwargs) -> torch.Tensor:
    r"""Per-pixel norm of the loss gradient w.r.t. the (unit) embeddings [Kong thesis, Fig. 5.5].

    The thesis compares the gradients "with and without one loop of grouping": ``num_iters=0``
    gives :math:`\|\partial\ell^0/\partial\mathbf x_i\|`, ``num_iters=1`` (with the default
    ``loss_at="last"``) the gradient of the loss after one GBMS iteration, back-propagated through
    it. The loss runs on all pixels (no sampling) and is summed over images.

    Args:
        embeddings: ``(N, D, H, W)``; normalised first (gradients are taken w.r.t. unit vectors).
        instances: ``(N, H, W)`` int64 ids.
        num_iters: GBMS loops between the embeddings and the loss.
        loss_at: ``"last"`` (the default here) or ``"all"``.
        **loss_kwargs: passed to :func:`embedding_loss` (``alpha``, ``weighting``, ``delta``, ...).

    Returns:
        ``(N, H, W)`` gradient norms.

    Example:
        >>> emb = torch.zeros(1, 2, 2, 2); emb[:, 0, :, 0] = 1; emb[:, 0, :, 1] = -1
        >>> float(gradient_map(emb, torch.tensor([[[1, 2], [1, 2]]])).max())  # perfect embedding: no gradient
        0.0
    """
    check_shape(embeddings, "embeddings", "N D H W")
    check_dtype(embeddings, "embeddings", "float")
    if "num_samples" in loss_kwargs or "reduction" in loss_kwargs:
        raise ValueError("`loss_kwargs`: gradient_map uses every pixel and sums over images; "
                         "do not pass num_samples or reduction")
    e = F.normalize(embeddings.detach(), dim=1).requires_grad_(True)
    with torch.enable_grad():
        loss = embedding_loss(e, instances, num_iters=num_iters, loss_at=loss_at, reduction="sum", **loss_kwargs)
        (g,) = torch.autograd.grad(loss, e)
    return g.norm(dim=1)


# --------------------------------------------------------------------------------------------
# Data of App. C.1.2 and the embedding network
# --------------------------------------------------------------------------------------------


def three_gaussians_toy(n_per: int = 100, seed: int = 0, middle_label: int = 2):
    r"""The 1-D toy of [Kong thesis, App. C.1.2]: three Gaussians (μ, σ) = (3, 0.2), (4, 0.3), (5, 0.1).

    Targets are labels 1 (μ = 3) and 2 (μ = 5) for the fixed regressor :math:`y = 0.5x - 0.5`, whose
    ideal inputs are 3 and 5. Which label the μ = 4 points carry is not stated; ``middle_label``
    chooses it (1 or 2).

    Returns:
        ``(x, component, target)``: ``(3 n_per,)`` float64 points, component index 0/1/2 and target
        label (1. or 2.).

    Example:
        >>> x, c, y = three_gaussians_toy(5)
        >>> x.shape, c.tolist()[:6], y.tolist()[:6]
        (torch.Size([15]), [0, 0, 0, 0, 0, 1], [1.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    """
    n_per = check_int(n_per, "n_per", low=1)
    middle_label = check_int(middle_label, "middle_label", low=1, high=2)
    g = torch.Generator().manual_seed(check_int(seed, "seed", low=0))
    mu = torch.tensor([3.0, 4.0, 5.0], dtype=torch.float64)
    sd = torch.tensor([0.2, 0.3, 0.1], dtype=torch.float64)
    comp = torch.arange(3).repeat_interleave(n_per)
    x = mu[comp] + sd[comp] * torch.randn(3 * n_per, generator=g, dtype=torch.float64)
    target = torch.tensor([1.0, float(middle_label), 2.0], dtype=torch.float64)[comp]
    return x, comp, target
