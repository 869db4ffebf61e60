r"""Multigrid Predictive Filter Flow (mgPFF): self-supervised flow from video [KONG, Ch. 7].

A network sees two frames, a *target* :math:`I_A` and a *source* :math:`I_B`, and predicts at every
pixel of the target a softmax :math:`k\times k` filter :math:`T_{B\to A}` that reconstructs it from
the source, :math:`I_A \approx T_{B\to A}\cdot I_B` [KONG, Eqs. 7.1–7.3]. Large motion is handled
by a product of small residual operators over an image pyramid [KONG, Eqs. 7.4–7.5],

.. math:: T = T_1\,U_{2\times}\,T_{1/2} \cdots U_{2\times}\,T_{1/2^{L-1}},

estimated coarse to fine with **one** network shared by all levels: level :math:`l` sees the target
and the source *pre-warped* by everything the coarser levels found, and predicts what is left.
The maximum displacement is :math:`r\,(2^L - 1)` pixels for filters of radius :math:`r = \lfloor
k/2\rfloor` (:func:`max_displacement`), with :math:`\sum_{l<L} 4^{-l} < 4/3` times the
coefficients of the finest level (:func:`coefficient_ratio`).

Training is self-supervised: the Charbonnier photometric loss in both directions plus three terms
that make the filters flow-like [KONG, §7.2.5, Eq. 7.8] — :func:`photometric_loss`,
:func:`flow_warp_loss`, :func:`forward_backward_loss`, :func:`flow_smoothness_loss`, combined by
:func:`mgpff_loss` (and returned one by one by :func:`mgpff_terms`). The flow is read out as the composition of the levels' expected flows
(:func:`multigrid_flow`), and masks are carried along a clip by the filters or by that flow
(:func:`propagate_labels`) [KONG, §7.3.1, App. E.2].

Where the thesis and its released code differ (documented in each function, and in the chapter):

* pre-warping: ``prewarp="flow"`` (default) warps the finer source by the accumulated expected
  flow, bilinearly, as the code and App. E.2 do; ``prewarp="filter"`` applies the coarser filters
  themselves (nearest-upsampled, dilated), the literal operator product of Eq. 7.5;
* levels are detached from each other by default (the code back-propagates each level's loss
  separately); the thesis is silent;
* the loss weights are the thesis' :math:`\lambda_{flow}=\lambda_{fb}=\lambda_{sm}=1`, the
  smoothness term is the thesis' :math:`\|\nabla F\|_1` on the flow; the code's filter-map
  smoothness (whose multi-range version returns only its last range, a bug) is
  :func:`filter_smoothness_loss`, fixed.

Reference: [KONG] S. Kong, *Pixel-Level Prediction: Models and Applications*, PhD thesis, UC Irvine,
2019, Ch. 7 (= Kong & Fowlkes, "Multigrid Predictive Filter Flow for Unsupervised Learning on
Videos", arXiv:1904.01693).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_dtype, check_finite, check_float, check_int, check_shape
from ..ops.filter_flow import apply_filter_flow, expected_flow, filter_size
from ..ops.warp import compose_flows, flow_warp, upsample_flow

__all__ = [
    "MultigridPFF", "MultigridOutput", "PREWARPS", "HEADS",
    "max_displacement", "coefficient_ratio", "image_pyramid", "multigrid_apply", "multigrid_flow",
    "charbonnier", "photometric_loss", "flow_warp_loss", "forward_backward_loss", "flow_smoothness_loss",
    "filter_smoothness_loss", "mgpff_terms", "mgpff_loss", "MultigridPFFLoss",
    "propagate_labels", "long_range_error",
]

#: How a finer level's source is pre-warped by the coarser levels (see :class:`MultigridPFF`).
PREWARPS = ("flow", "filter")

#: How the filter logits are computed from the two frames' embeddings (see :class:`MultigridPFF`).
HEADS = ("correlation", "concat")

#: The Charbonnier constant of [KONG, §7.2.2]: :math:`\phi(s) = \sqrt{s^2 + 0.001^2}`.
CHARBONNIER_EPSILON = 1e-3

#: The mask threshold of [KONG, §7.3.1]: "we threshold with 0.8 the propagated masks at each update".
MASK_THRESHOLD = 0.8


# --------------------------------------------------------------------------------------------------
# Input checks


def _image(x, name: str, dims: dict | None = None, spec: str = "N C H W") -> dict:
    """Check a non-empty, finite float tensor of shape ``spec`` (``check_shape`` rejects empty axes)."""
    dims = check_shape(x, name, spec, dims)
    check_dtype(x, name, "float")
    check_finite(x, name)
    return dims


# --------------------------------------------------------------------------------------------------
# Multigrid arithmetic


def max_displacement(kernel_size: int, levels: int) -> int:
    r"""The largest displacement (pixels, per axis) that ``levels`` levels of ``kernel_size`` filters represent.

    Level :math:`l` (0 = finest) moves by :math:`c_l\,2^l` with :math:`|c_l| \le r = \lfloor k/2\rfloor`,
    so the reachable displacements are all integers in :math:`[-r(2^L-1),\ r(2^L-1)]`
    [KONG, §7.2.4; App. E.5 quotes "D = 88" for 11×11 at 16×, which is the 80×80-kernel example of
    §7.2.4 (11·8), not this sum: 5·31 = 155].

    Example:
        >>> max_displacement(5, 3), max_displacement(11, 5)
        (14, 155)
    """
    k, L = check_int(kernel_size, "kernel_size", low=1), check_int(levels, "levels", low=1)
    if k % 2 == 0:
        raise ValueError(f"`kernel_size`: expected an odd integer, got {k}")
    return (k // 2) * (2 ** L - 1)


def coefficient_ratio(levels: int) -> float:
    r"""Filter coefficients of an ``levels``-level pyramid over those of its finest level: :math:`\sum_{l<L} 4^{-l}`.

    Each coarser level has a quarter of the pixels and the same :math:`k^2` taps, so the ratio is
    :math:`\tfrac43(1 - 4^{-L}) < \tfrac43` [KONG, §7.2.4].

    Example:
        >>> coefficient_ratio(1), coefficient_ratio(5)
        (1.0, 1.33203125)
    """
    L = check_int(levels, "levels", low=1)
    return sum(4.0 ** -l for l in range(L))


def image_pyramid(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    r"""``[image at 1/2^{L-1}, …, image at 1/2, image]`` (coarse to fine) by 2×2 average pooling.

    The thesis' :math:`\mathbf{D}_{1/2}` is not specified [KONG, Eq. 7.4]; averaging 2×2 blocks is
    the simplest anti-aliased choice and the exact adjoint (up to 1/4) of nearest-neighbour
    upsampling. ``H`` and ``W`` must be divisible by :math:`2^{L-1}`.
    """
    L = check_int(levels, "levels", low=1)
    _, _, H, W = image.shape
    if H % 2 ** (L - 1) or W % 2 ** (L - 1):
        raise ValueError(f"`image`: expected H and W divisible by 2^(levels-1) = {2 ** (L - 1)}, got {(H, W)}")
    out = [image]
    for _ in range(L - 1):
        out.append(F.avg_pool2d(out[-1], 2))
    return out[::-1]


def _factor(coarse: torch.Tensor, fine_hw: tuple[int, int], name: str) -> int:
    h, w = coarse.shape[-2:]
    H, W = fine_hw
    if H % h or W % w or H // h != W // w or (H // h) & (H // h - 1):
        raise ValueError(f"`{name}`: expected a power-of-two fraction of the size {(H, W)}, got {(h, w)}")
    return H // h


def multigrid_flow(level_flows: list[torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
    r"""Compose per-level residual flows (coarse to fine) into one flow at full resolution.

    With :math:`D_l` the flow accumulated up to level :math:`l` (at that level's resolution):
    :math:`D_l(p) = f_l(p) + U D_{l-1}(p + f_l(p))`, where :math:`U` is nearest-neighbour upsampling
    that also doubles the vectors (:func:`pixelbook.ops.upsample_flow`) and the second term is
    sampled bilinearly (:func:`pixelbook.ops.compose_flows`) — "accumulate all the filter flows … and
    transform into a coordinate flow" [KONG, App. E.2]. Exact for integer flows.

    Args:
        level_flows: ``(N, 2, H/2^l, W/2^l)`` flows, coarsest first, each level twice the size of
            the previous one (or any power-of-two step).
        size: ``(H, W)`` of the result; default the last flow's size (then upsampled if larger).

    Returns:
        ``(N, 2, H, W)``.
    """
    if not isinstance(level_flows, (list, tuple)) or not level_flows:
        raise ValueError("`level_flows`: expected a non-empty list of (N, 2, h, w) flows")
    acc = None
    for i, f in enumerate(level_flows):
        check_shape(f, f"level_flows[{i}]", "N 2 H W")
        if acc is not None:
            acc = upsample_flow(acc, _factor(acc, f.shape[-2:], f"level_flows[{i - 1}]"))
            acc = compose_flows(f, acc)
        else:
            acc = f
    if size is not None and tuple(size) != tuple(acc.shape[-2:]):
        acc = upsample_flow(acc, _factor(acc, tuple(size), "level_flows[-1]"))
    return acc


def _prewarp(image: torch.Tensor, level_filters: list[torch.Tensor], prewarp: str) -> torch.Tensor:
    """Apply *all* of ``level_filters`` (coarse to fine, each coarser than or as large as ``image``)."""
    if not level_filters:
        return image
    H, W = image.shape[-2:]
    if prewarp == "filter":
        x = image
        for i, T in enumerate(level_filters):
            s = _factor(T, (H, W), f"level_filters[{i}]")
            up = T if s == 1 else F.interpolate(T, scale_factor=s, mode="nearest")
            x = apply_filter_flow(x, up, dilation=s)
        return x
    flow = multigrid_flow([expected_flow(T) for T in level_filters], size=(H, W))
    return flow_warp(image, flow, padding="zeros")[0]


def multigrid_apply(image: torch.Tensor, level_filters: list[torch.Tensor], *, prewarp: str = "flow") -> torch.Tensor:
    r"""Apply a multigrid filter flow (the operator of Eq. 7.5) to ``image`` at full resolution.

    ``level_filters`` are the residual filters of the levels, coarsest first, the last one at the
    resolution of ``image``. With ``prewarp="filter"`` every level acts as a filter flow: level
    :math:`l` at :math:`1/s` of the resolution becomes, at full resolution, the nearest-upsampled
    filters applied with dilation :math:`s` (each coarse weight covers an :math:`s\times s` block
    and its taps are :math:`s` pixels apart) [KONG, Eq. 7.5]; the coarsest acts first. With
    ``prewarp="flow"`` the coarser levels act through their composed expected flow (a bilinear
    warp) and only the finest through its filters — the operator :class:`MultigridPFF` uses with that
    setting. Both are exact for one-hot filters of an integer translation away from the borders.
    Near a border the filter product can lose content that the composed flow keeps: every level
    reads a zero-padded *intermediate* image, so a path such as :math:`2 = 8 - 4 - 2` px that
    leaves the frame on the way returns zeros (the thesis' "artifacts due to information loss",
    App. E.2).

    Args:
        image: ``(N, C, H, W)`` float (frames, or one-hot masks).
        level_filters: list of ``(N, k*k, H/s, W/s)`` filters, coarse to fine, the last with ``s = 1``.
        prewarp: ``"flow"`` or ``"filter"``.

    Returns:
        ``(N, C, H, W)``.

    Example:
        >>> one_hot = lambda t, hw: torch.nn.functional.one_hot(torch.full((1, *hw), t), 25).permute(0, 3, 1, 2).float()
        >>> x = torch.rand(1, 3, 16, 16)
        >>> T = [one_hot(14, (8, 8)), one_hot(14, (16, 16))]  # (dy, dx) = (0, +2) at 1/2, then (0, +2)
        >>> out = multigrid_apply(x, T, prewarp="filter")
        >>> torch.equal(out[..., :10], x[..., 6:])   # moved by 2·2 + 2 = 6 pixels
        True
    """
    dims = _image(image, "image")
    check_choice(prewarp, "prewarp", PREWARPS)
    if not isinstance(level_filters, (list, tuple)) or not level_filters:
        raise ValueError("`level_filters`: expected a non-empty list of (N, k*k, h, w) filters")
    for i, T in enumerate(level_filters):
        check_shape(T, f"level_filters[{i}]", "N T h w", {"N": dims["N"]})
        filter_size(T, f"level_filters[{i}]")
    if tuple(level_filters[-1].shape[-2:]) != tuple(image.shape[-2:]):
        raise ValueError(f"`level_filters`: expected the last (finest) filters at the size of `image` "
                         f"{tuple(image.shape[-2:])}, got {tuple(level_filters[-1].shape[-2:])}")
    if prewarp == "filter":
        return _prewarp(image, list(level_filters), "filter")
    x = _prewarp(image, list(level_filters[:-1]), "flow")
    return apply_filter_flow(x, level_filters[-1])


# --------------------------------------------------------------------------------------------------
# The model


def _local_correlation(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    r"""``(N, k*k, H, W)``: :math:`\langle a(p), b(p + t)\rangle` for the taps of a :math:`k\times k` window
    (tap order and zero padding as :func:`pixelbook.ops.apply_filter_flow`).

    One shifted product per tap, each vectorised over pixels and channels: on one CPU thread about
    ten times faster, forward and backward, than ``unfold`` followed by a per-pixel ``einsum``.
    """
    H, W = a.shape[-2:]
    r = k // 2
    bp = F.pad(b, (r, r, r, r))
    return torch.stack([(a * bp[:, :, i:i + H, j:j + W]).sum(1) for i in range(k) for j in range(k)], 1)


class _Encoder(nn.Module):
    """Per-frame pixel embedding: a full-resolution stream and a half-resolution stream (U-shape in miniature)."""

    def __init__(self, in_channels: int, width: int, embed_dim: int):
        super().__init__()
        self.full = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True))
        self.coarse = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(3 * width, embed_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.full(x)  # (N, w, H, W)
        b = F.interpolate(self.coarse(a), size=a.shape[-2:], mode="nearest")  # (N, 2w, H, W)
        return self.out(torch.cat([a, b], 1))  # (N, D, H, W)


@dataclass
class MultigridOutput:
    """What :class:`MultigridPFF` returns for a (target, source) pair; lists run coarse to fine.

    Attributes:
        targets: the target at each level, ``(N, C, H/2^l, W/2^l)``.
        sources: the source at each level, pre-warped by the coarser levels.
        filters: :math:`T_{B\\to A}` per level, ``(N, k*k, h, w)`` softmax filters reconstructing the
            level's target from its pre-warped source.
        reverse_filters: :math:`T_{A\\to B}` per level (same pair, reversed order), for
            :math:`\\ell_{fb}`.
        flows: the expected flow of ``filters`` per level, ``(N, 2, h, w)`` (pixels of that level).
        flow: the composed flow at full resolution, ``(N, 2, H, W)``: the target pixel ``p``
            corresponds to the source pixel ``p + flow(p)`` (the forward optical flow of the target).
        reconstruction: the finest level's filter reconstruction of the target, ``(N, C, H, W)``.
        prewarp: the pre-warp mode that produced it.
    """

    targets: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    filters: list = field(default_factory=list)
    reverse_filters: list = field(default_factory=list)
    flows: list = field(default_factory=list)
    flow: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    prewarp: str = "flow"


class MultigridPFF(nn.Module):
    r"""Multigrid Predictive Filter Flow [KONG, §7.2.4–7.2.6].

    A siamese encoder embeds each frame (``embed_dim`` channels per pixel); a head reads the two
    embeddings concatenated — target first for :math:`T_{B\to A}`, source first for
    :math:`T_{A\to B}` — and outputs :math:`k^2` logits per pixel, turned into non-negative,
    sum-to-one filters by a softmax [KONG, §7.2.5]. The same weights serve every level.

    Forward pass, coarse to fine over an ``levels``-level pyramid (:func:`image_pyramid`): level
    :math:`l`'s source is pre-warped by the coarser levels (``prewarp="flow"``: by their composed
    expected flow, bilinearly, as the released code and App. E.2; ``"filter"``: by their filters,
    the operator product of Eq. 7.5), then the head predicts the residual filters. With
    ``detach_levels=True`` (the released code) no gradient flows from a level into the coarser
    levels' predictions.

    Sizes are ours (a CPU-sized model for 64×64 clips): the thesis uses a cut ResNet-18 with
    channels [32, 64, 128, 196], embeddings D = 16, 11×11 filters and 5 levels (4.6 MB).

    ``head="correlation"`` (ours, the default): the logit of tap :math:`t` at pixel :math:`p` is
    :math:`\tau\,\langle e_A(p), e_B(p + t)\rangle` for unit embeddings (a cost volume restricted to
    the filter window, learned temperature :math:`\tau`, starting at 10) plus the concatenation head
    below as a residual that starts at zero. The thesis' head sees only the concatenated embeddings
    (``head="concat"``) and explicitly has no correlation layer [KONG, §7.2.6]; trained for a few
    hundred steps on the sprites it learned only the average blur (sprite EPE unchanged at 3.42 px after
    300 steps, reconstruction 0.92× the copy error), while the correlation head starts learning at once
    (3.66 → 2.70 px in 40 steps, in a prototype). The thesis trains for 500K iterations on a GPU; a
    CPU budget of ~10³ steps needs the inductive bias. The filters remain softmax filters over the
    window, so everything else (losses, multigrid, the 1-D argument) is unchanged.

    ``head_norm`` (ours, default on): the features entering the last layer are normalised to zero
    mean and unit variance over each image (instance normalisation), and the last layer starts at
    zero, so every filter starts uniform. Without it, Adam raises every weight of the tap that is best
    *on average* (the centre: motions are symmetric) by about the learning rate per step; with
    non-negative (ReLU) inputs that raises that tap's logit at every pixel, the softmax saturates on the
    identity within ~50 steps, and the other taps' gradients, proportional to their weights, vanish
    (observed on the sprites: the reconstruction equals the copied frame). With zero-mean inputs only
    the bias can express a global preference, and Adam moves it by at most the learning rate per step.

    Args:
        kernel_size: :math:`k`, odd (default 5; the thesis: 11).
        levels: :math:`L \ge 1` (default 3; the thesis: 5).
        in_channels: image channels (3).
        width: encoder width (full-resolution stream; the half-resolution one has twice as many).
        embed_dim: :math:`D`, the per-pixel embedding (16, as the thesis).
        head_width: hidden channels of the head.
        prewarp: ``"flow"`` (default) or ``"filter"``.
        detach_levels: stop gradients between levels (default ``True``).
        head: ``"correlation"`` (default) or ``"concat"`` (the thesis' design), see above.
        head_norm: normalise the last layer's input features and start that layer at zero
            (default ``True``, see above).

    Example:
        >>> model = MultigridPFF(kernel_size=5, levels=3)
        >>> out = model(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
        >>> [tuple(T.shape) for T in out.filters], tuple(out.flow.shape)
        ([(2, 25, 8, 8), (2, 25, 16, 16), (2, 25, 32, 32)], (2, 2, 32, 32))
    """

    def __init__(self, kernel_size: int = 5, levels: int = 3, in_channels: int = 3, width: int = 24,
                 embed_dim: int = 16, head_width: int = 48, prewarp: str = "flow", detach_levels: bool = True,
                 head: str = "correlation", head_norm: bool = True):
        super().__init__()
        self.kernel_size = check_int(kernel_size, "kernel_size", low=1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size`: expected an odd integer, got {kernel_size}")
        self.levels = check_int(levels, "levels", low=1)
        in_channels = check_int(in_channels, "in_channels", low=1)
        width, embed_dim, head_width = (check_int(v, n, low=1) for v, n in ((width, "width"), (embed_dim, "embed_dim"),
                                                                    (head_width, "head_width")))
        check_choice(prewarp, "prewarp", PREWARPS)
        if not isinstance(detach_levels, bool):
            raise TypeError(f"`detach_levels`: expected a bool, got {detach_levels!r}")
        self.prewarp, self.detach_levels, self.in_channels = prewarp, detach_levels, in_channels
        self.encoder = _Encoder(in_channels, width, embed_dim)
        k2 = self.kernel_size ** 2
        if not isinstance(head_norm, bool):
            raise TypeError(f"`head_norm`: expected a bool, got {head_norm!r}")
        check_choice(head, "head", HEADS)
        self.head_norm, self.head_kind = head_norm, head
        # the correlation head's temperature (learned, starts at 10: cosines in [-1, 1] -> logits in [-10, 10])
        self.log_temperature = nn.Parameter(torch.tensor(math.log(10.0))) if head == "correlation" else None
        layers = [nn.Conv2d(2 * embed_dim, head_width, 3, padding=1), nn.ReLU(inplace=True),
                  nn.Conv2d(head_width, head_width, 3, padding=1), nn.ReLU(inplace=True)]
        if head_norm:  # each feature zero-mean over the image: see the class docstring
            layers.append(nn.GroupNorm(head_width, head_width, affine=False))
        last = nn.Conv2d(head_width, k2, 3, padding=1)
        if head_norm or head == "correlation":  # concat: uniform filters at the start; correlation: a residual
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.head = nn.Sequential(*layers, last)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, levels={self.levels}, prewarp={self.prewarp!r}, "
                f"detach_levels={self.detach_levels}, head={self.head_kind!r}, head_norm={self.head_norm}")

    def pair_filters(self, target: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""One level: :math:`(T_{B\to A}, T_{A\to B})` for target :math:`A` and source :math:`B`.

        Args:
            target, source: ``(N, C, H, W)`` float.

        Returns:
            two ``(N, k*k, H, W)`` softmax filter maps: the first reconstructs ``target`` from
            ``source`` (``apply_filter_flow(source, T)``), the second ``source`` from ``target``.
        """
        n = target.shape[0]
        e = self.encoder(torch.cat([target, source]))  # siamese: one encoder, both frames
        if self.head_kind == "correlation":
            e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-6)  # unit embeddings: cosine similarities
        ea, eb = e[:n], e[n:]
        logits = self.head(torch.cat([torch.cat([ea, eb], 1), torch.cat([eb, ea], 1)]))
        if self.head_kind == "correlation":
            corr = torch.cat([_local_correlation(ea, eb, self.kernel_size), _local_correlation(eb, ea, self.kernel_size)])
            logits = logits + self.log_temperature.exp() * corr
        filters = logits.softmax(dim=1)
        return filters[:n], filters[n:]

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> MultigridOutput:
        """Predict the multigrid filter flow reconstructing ``target`` from ``source``.

        Args:
            target: ``(N, C, H, W)`` float, ``H, W`` divisible by ``2^(levels-1)``.
            source: ``(N, C, H, W)`` float.

        Returns:
            :class:`MultigridOutput`.
        """
        dims = _image(target, "target")
        _image(source, "source", dims)
        if dims["C"][0] != self.in_channels:
            raise ValueError(f"`target`: expected C={self.in_channels} channels (the model's in_channels), "
                             f"got {dims['C'][0]}")
        pyr_a, pyr_b = image_pyramid(target, self.levels), image_pyramid(source, self.levels)
        out = MultigridOutput(prewarp=self.prewarp)
        used = []  # the filters coarser levels pass on (detached or not)
        for a, b in zip(pyr_a, pyr_b):
            src = _prewarp(b, used, self.prewarp)
            T, T_rev = self.pair_filters(a, src)
            out.targets.append(a)
            out.sources.append(src)
            out.filters.append(T)
            out.reverse_filters.append(T_rev)
            out.flows.append(expected_flow(T))
            used.append(T.detach() if self.detach_levels else T)
        out.flow = multigrid_flow(out.flows)
        out.reconstruction = apply_filter_flow(out.sources[-1], out.filters[-1])
        return out

    def flow(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The composed full-resolution flow, ``(N, 2, H, W)`` (no gradient; for evaluation)."""
        with torch.no_grad():
            return self(target, source).flow


# --------------------------------------------------------------------------------------------------
# Losses [KONG, §7.2.2, §7.2.5, Eq. 7.8]


def charbonnier(x: torch.Tensor, epsilon: float = CHARBONNIER_EPSILON, valid: torch.Tensor | None = None) -> torch.Tensor:
    r"""Charbonnier penalty :math:`\phi(s) = \frac{1}{|\mathcal I|}\sum_i \sqrt{s_i^2 + \epsilon^2}` [KONG, §7.2.2].

    Args:
        x: ``(N, C, H, W)`` residuals.
        epsilon: :math:`\epsilon` (the thesis' 0.001).
        valid: optional ``(N, H, W)`` bool: the mean runs over these pixels (all channels); no valid
            pixel gives 0 (a tensor that keeps the graph).

    Returns:
        scalar tensor (the mean over ``N·C·H·W`` elements, or over the valid ones).

    Example:
        >>> round(float(charbonnier(torch.zeros(1, 1, 2, 2))), 6)
        0.001
    """
    _image(x, "x")
    eps = check_float(epsilon, "epsilon", low=0.0)
    phi = torch.sqrt(x * x + eps * eps)
    if valid is None:
        return phi.mean()
    check_shape(valid, "valid", "N H W", {"N": (x.shape[0], "x"), "H": (x.shape[2], "x"), "W": (x.shape[3], "x")})
    if valid.dtype != torch.bool:
        raise TypeError(f"`valid`: expected a bool mask, got {valid.dtype}")
    count = valid.sum() * x.shape[1]
    if int(count) == 0:
        return phi.sum() * 0.0
    return (phi * valid[:, None]).sum() / count


def photometric_loss(target: torch.Tensor, source: torch.Tensor, filters: torch.Tensor,
                     epsilon: float = CHARBONNIER_EPSILON) -> torch.Tensor:
    r""":math:`\ell_{rec} = \phi(I_A - T_{B\to A}\cdot I_B)` [KONG, Eq. 7.3] (mean over ``N·C·H·W``).

    Args:
        target: :math:`I_A`, ``(N, C, H, W)``.
        source: :math:`I_B`, ``(N, C, H, W)``.
        filters: :math:`T_{B\to A}`, ``(N, k*k, H, W)``.
        epsilon: Charbonnier :math:`\epsilon` (0.001).

    Example:
        >>> x = torch.rand(1, 3, 8, 8); identity = torch.zeros(1, 9, 8, 8); identity[:, 4] = 1
        >>> round(float(photometric_loss(x, x, identity)), 6)
        0.001
    """
    dims = _image(target, "target")
    _image(source, "source", dims)
    return charbonnier(target - apply_filter_flow(source, filters), epsilon)


def flow_warp_loss(target: torch.Tensor, source: torch.Tensor, flow: torch.Tensor,
                   epsilon: float = CHARBONNIER_EPSILON) -> torch.Tensor:
    r""":math:`\ell_{flow}`: the photometric loss of warping the source with the flow [KONG, §7.2.5].

    :math:`\phi(I_A - \mathrm{warp}(I_B, F(T)))` with bilinear backward warping
    (:func:`pixelbook.ops.flow_warp`), averaged over the pixels whose sample lies inside the source.
    (The released code zeroes the outside samples but still divides by all pixels, which rewards a
    flow that points out of the frame; we average over the inside ones.)

    Args:
        target, source: ``(N, C, H, W)``.
        flow: ``(N, 2, H, W)`` pixels, e.g. ``expected_flow(filters)``.
        epsilon: Charbonnier :math:`\epsilon`.
    """
    dims = _image(target, "target")
    _image(source, "source", dims)
    warped, inside = flow_warp(source, flow)
    return charbonnier(target - warped, epsilon, valid=inside)


def _unit_scale(flow: torch.Tensor, normalize: bool) -> torch.Tensor | float:
    """1 (pixels), or ``(1/(W-1), 1/(H-1))`` per component: positions as fractions of the image (the released code)."""
    if not normalize:
        return 1.0
    H, W = flow.shape[-2:]
    return flow.new_tensor([1.0 / max(W - 1, 1), 1.0 / max(H - 1, 1)]).view(1, 2, 1, 1)


def forward_backward_loss(forward: torch.Tensor, backward: torch.Tensor,
                          epsilon: float = CHARBONNIER_EPSILON, normalize: bool = False) -> torch.Tensor:
    r"""Forward–backward consistency :math:`\ell_{fb}(f, b)` [KONG, Eq. 7.7].

    Following ``forward`` from :math:`p` and then ``backward`` must return to :math:`p`:

    .. math:: \ell_{fb} = \frac{1}{|\mathcal I|}\sum_{p}
        \sqrt{\big\|f(p) + b\big(p + f(p)\big)\big\|^2 + \epsilon^2},

    the thesis' :math:`\phi(p - b(f(p)))`. The thesis does not say in which units positions are
    measured; the released code divides them by the image size minus one (``normalize=True``: the
    residual's x and y are divided by :math:`W-1` and :math:`H-1` of this level), which makes the term
    about :math:`W` times weaker than in pixels (``normalize=False``). :math:`b` is sampled
    bilinearly; the mean runs over the pixels whose :math:`p + f(p)` is inside the frame. Occlusions
    are not handled, as in the thesis.

    Args:
        forward: :math:`f = F(T_{B\to A})`, ``(N, 2, H, W)``.
        backward: :math:`b = F(T_{A\to B})`, ``(N, 2, H, W)``.
        epsilon: Charbonnier :math:`\epsilon`; ``0`` makes a consistent pair score exactly 0.
        normalize: measure the residual in fractions of the image (the released code) instead of pixels.

    Example:
        >>> f = torch.zeros(1, 2, 8, 8); f[:, 0] = 2.0
        >>> float(forward_backward_loss(f, -f, epsilon=0.0)), float(forward_backward_loss(f, f, epsilon=0.0))
        (0.0, 4.0)
    """
    dims = check_shape(forward, "forward", "N 2 H W")
    check_shape(backward, "backward", "N 2 H W", dims)
    for x, name in ((forward, "forward"), (backward, "backward")):
        check_dtype(x, name, "float")
        check_finite(x, name)
    eps = check_float(epsilon, "epsilon", low=0.0)
    if not isinstance(normalize, bool):
        raise TypeError(f"`normalize`: expected a bool, got {normalize!r}")
    b_at, inside = flow_warp(backward, forward, padding="border")
    r = (forward + b_at) * _unit_scale(forward, normalize)
    phi = torch.sqrt((r * r).sum(1) + eps * eps)  # (N, H, W)
    count = inside.sum()
    if int(count) == 0:
        return phi.sum() * 0.0
    return (phi * inside).sum() / count


def flow_smoothness_loss(flow: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    r""":math:`\ell_{sm} = \|\nabla F\|_1` [KONG, §7.2.5]: mean :math:`|\partial_x F|` + mean :math:`|\partial_y F|`.

    Forward differences of both flow components, averaged over the differences (anisotropic TV-L1).
    ``normalize=True`` measures the flow in fractions of the image, as :func:`forward_backward_loss`
    (x divided by :math:`W-1`, y by :math:`H-1`).

    Example:
        >>> f = torch.zeros(1, 2, 4, 4); f[:, 0, :, 2:] = 1.0   # a unit step in x
        >>> round(float(flow_smoothness_loss(f)), 6)   # 4 of the 2·4·3 x-differences are 1
        0.166667
    """
    check_shape(flow, "flow", "N 2 H W")
    check_dtype(flow, "flow", "float")
    check_finite(flow, "flow")
    if not isinstance(normalize, bool):
        raise TypeError(f"`normalize`: expected a bool, got {normalize!r}")
    flow = flow * _unit_scale(flow, normalize)
    dx = (flow[..., :, 1:] - flow[..., :, :-1]).abs().mean() if flow.shape[-1] > 1 else flow.sum() * 0.0
    dy = (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean() if flow.shape[-2] > 1 else flow.sum() * 0.0
    return dx + dy


def filter_smoothness_loss(filters: torch.Tensor, max_range: int = 3, epsilon: float = CHARBONNIER_EPSILON) -> torch.Tensor:
    r"""The released code's smoothness of the filter maps, over ranges :math:`d = 1 … R-1`, **fixed**.

    For every range :math:`d` the Charbonnier penalty of the horizontal and the vertical differences
    :math:`X(p + d\,e) - X(p)` of the :math:`k^2` filter channels, each summed and divided by
    :math:`N k^2 H W` (as the code), then averaged over the :math:`R-1` ranges. The released
    ``Loss4FilterSmoothMultiScale`` accumulates the ranges but returns only the last one divided by
    :math:`R-1` (a bug: ``return (vloss+hloss)…`` instead of ``(vLOSS+hLOSS)``); this function returns
    what its loop computes. The code calls it with :math:`R = 3` at the coarsest level and one more
    per finer level. Not used by :func:`mgpff_loss`, which follows the thesis.

    Args:
        filters: ``(N, k*k, H, W)``.
        max_range: :math:`R \ge 2` (the code's ``maxRangePixel``).
        epsilon: Charbonnier :math:`\epsilon`.
    """
    dims = check_shape(filters, "filters", "N T H W")
    check_dtype(filters, "filters", "float")
    check_finite(filters, "filters")
    R = check_int(max_range, "max_range", low=2)
    eps = check_float(epsilon, "epsilon", low=0.0)
    N, K, H, W = filters.shape
    if R - 1 >= min(H, W):
        raise ValueError(f"`max_range`: expected max_range - 1 < min(H, W) = {min(H, W)}, got {R}")
    del dims
    total = filters.new_zeros(())
    for d in range(1, R):
        h = torch.sqrt((filters[..., d:] - filters[..., :-d]) ** 2 + eps * eps).sum()
        v = torch.sqrt((filters[..., d:, :] - filters[..., :-d, :]) ** 2 + eps * eps).sum()
        total = total + (h + v) / (N * K * H * W)
    return total / (R - 1)


def mgpff_terms(model: MultigridPFF, target: torch.Tensor, source: torch.Tensor, *,
                epsilon: float = CHARBONNIER_EPSILON, both_directions: bool = True,
                normalize_flows: bool = True) -> dict:
    r"""The four unweighted terms of Eq. 7.8, each summed over levels and directions (to log them).

    "and also those from A to B": the model is run on (target, source) and, with
    ``both_directions``, on (source, target); at each level the source is the pre-warped one and
    :math:`f^l, b^l` are the expected flows of the level's :math:`T_{B\to A}` and :math:`T_{A\to B}`
    for that same pair.

    Args:
        model: a :class:`MultigridPFF`.
        target, source: ``(N, C, H, W)`` frames in [0, 1].
        epsilon: Charbonnier :math:`\epsilon` (0.001).
        both_directions: also the A→B direction (default, as the thesis).
        normalize_flows: measure the flows of :math:`\ell_{fb}` and :math:`\ell_{sm}` in fractions of
            the level's size, as the released code does for :math:`\ell_{fb}` (default ``True``); in
            pixels (``False``) the two terms are ~W times stronger.

    Returns:
        dict of scalar tensors ``rec``, ``flow``, ``fb``, ``smooth``.
    """
    if not isinstance(model, MultigridPFF):
        raise TypeError(f"`model`: expected a MultigridPFF, got {type(model).__name__}")
    if not isinstance(normalize_flows, bool):
        raise TypeError(f"`normalize_flows`: expected a bool, got {normalize_flows!r}")
    pairs = [(target, source), (source, target)] if both_directions else [(target, source)]
    terms = {}
    for a, b in pairs:
        out = model(a, b)
        for A, B, T, T_rev, f in zip(out.targets, out.sources, out.filters, out.reverse_filters, out.flows):
            level = {"rec": photometric_loss(A, B, T, epsilon),
                     "flow": flow_warp_loss(A, B, f, epsilon),
                     "fb": forward_backward_loss(f, expected_flow(T_rev), epsilon, normalize_flows),
                     "smooth": flow_smoothness_loss(f, normalize_flows)}
            terms = {k: terms.get(k, 0.0) + v for k, v in level.items()}
    return terms


def mgpff_loss(model: MultigridPFF, target: torch.Tensor, source: torch.Tensor, *, flow_weight: float = 1.0,
               fb_weight: float = 1.0, smooth_weight: float = 1.0, epsilon: float = CHARBONNIER_EPSILON,
               both_directions: bool = True, normalize_flows: bool = True) -> torch.Tensor:
    r"""The mgPFF training objective [KONG, Eq. 7.8], summed over levels and both directions.

    .. math:: \sum_{l=1}^{L} \ell_{rec}(I_B^l, I_A^l) + \lambda_{flow}\,\ell_{flow}(I_B^l, I_A^l)
        + \lambda_{fb}\,\ell_{fb}(f^l, b^l) + \lambda_{sm}\,\ell_{sm}(f^l)

    (see :func:`mgpff_terms` for the terms and the arguments they share).

    Args:
        model: a :class:`MultigridPFF`.
        target, source: ``(N, C, H, W)`` frames in [0, 1].
        flow_weight, fb_weight, smooth_weight: :math:`\lambda_{flow}, \lambda_{fb}, \lambda_{sm}`
            (the thesis: 1, 1, 1; the released code: 3, 0.1 in normalised units, 1 on filter maps).
        epsilon, both_directions, normalize_flows: as :func:`mgpff_terms`.

    Returns:
        scalar tensor.

    Example:
        >>> model = MultigridPFF(levels=2, width=4, embed_dim=4, head_width=4)
        >>> mgpff_loss(model, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)).shape
        torch.Size([])
    """
    lam_flow = check_float(flow_weight, "flow_weight", low=0.0)
    lam_fb = check_float(fb_weight, "fb_weight", low=0.0)
    lam_sm = check_float(smooth_weight, "smooth_weight", low=0.0)
    t = mgpff_terms(model, target, source, epsilon=epsilon, both_directions=both_directions,
                    normalize_flows=normalize_flows)
    return t["rec"] + lam_flow * t["flow"] + lam_fb * t["fb"] + lam_sm * t["smooth"]


class MultigridPFFLoss(nn.Module):
    """:func:`mgpff_loss` as a module: stores the weights; ``forward(model, target, source)`` -> scalar tensor."""

    def __init__(self, flow_weight: float = 1.0, fb_weight: float = 1.0, smooth_weight: float = 1.0,
                 epsilon: float = CHARBONNIER_EPSILON, both_directions: bool = True, normalize_flows: bool = True):
        super().__init__()
        self.flow_weight = check_float(flow_weight, "flow_weight", low=0.0)
        self.fb_weight = check_float(fb_weight, "fb_weight", low=0.0)
        self.smooth_weight = check_float(smooth_weight, "smooth_weight", low=0.0)
        self.epsilon = check_float(epsilon, "epsilon", low=0.0)
        self.both_directions = bool(both_directions)
        self.normalize_flows = normalize_flows

    def forward(self, model: MultigridPFF, target: torch.Tensor, source: torch.Tensor):
        return mgpff_loss(model, target, source, flow_weight=self.flow_weight, fb_weight=self.fb_weight,
                          smooth_weight=self.smooth_weight, epsilon=self.epsilon,
                          both_directions=self.both_directions, normalize_flows=self.normalize_flows)


# --------------------------------------------------------------------------------------------------
# Using the flow: mask / label propagation and long-range reconstruction [KONG, §7.3]


def _transport(model, targets: torch.Tensor, sources: torch.Tensor, payload: torch.Tensor, mode: str) -> torch.Tensor:
    """Carry ``payload`` (aligned with ``sources``) onto ``targets`` with the model's filters or flow."""
    out = model(targets, sources)
    if mode == "flow":
        return flow_warp(payload, out.flow, padding="zeros")[0]
    return multigrid_apply(payload, [T.detach() for T in out.filters], prewarp=out.prewarp)


def propagate_labels(model, frames: torch.Tensor, labels: torch.Tensor, *, num_classes: int | None = None,
                     window: int = 1, use_first: bool = False, threshold: float = MASK_THRESHOLD,
                     mode: str = "filter") -> torch.Tensor:
    r"""Propagate a first-frame segmentation through a clip with a filter-flow model [KONG, §7.3.1].

    For each frame :math:`t \ge 1` the labels of the reference frames — the ``window`` previous frames
    (:math:`K` in the thesis), plus frame 0 if ``use_first`` (the thesis' "1st" variants) — are
    one-hot encoded and carried to frame :math:`t` by the model's filter flow from that reference to
    frame :math:`t` (``mode="filter"``: :func:`multigrid_apply`; the propagated masks are soft because
    the filters are sum-to-one) or by its composed flow (``mode="flow"``, bilinear, as App. E.2). The
    references' soft masks are averaged (the thesis does not say how it combines them), and a pixel
    takes the object with the largest soft value if that value reaches ``threshold`` (0.8, "this helps
    prevent foreground mask pixels from diffusing to the background"), else the background 0.
    Several clips are propagated together (one model call per frame for all of them).

    Args:
        model: a :class:`MultigridPFF` (or any callable ``model(target, source)`` returning a
            :class:`MultigridOutput`).
        frames: ``(T, C, H, W)`` one clip, or ``(N, T, C, H, W)`` clips.
        labels: ``(H, W)`` (or ``(N, H, W)``) int64 labels of frame 0: 0 = background, ``1 … K`` = objects.
        num_classes: ``K + 1``; default ``labels.max() + 1``.
        window: :math:`K \ge 1` previous frames.
        use_first: also propagate from frame 0 (its given labels) at every step.
        threshold: in (0, 1].
        mode: ``"filter"`` or ``"flow"``.

    Returns:
        ``(T, H, W)`` (or ``(N, T, H, W)``) int64 labels, frame 0 = ``labels``.
    """
    with torch.no_grad():
        single = torch.is_tensor(frames) and frames.ndim == 4
        if single:
            frames = frames[None]
            labels = labels[None] if torch.is_tensor(labels) and labels.ndim == 2 else labels
        dims = _image(frames, "frames", spec="N T C H W")
        check_shape(labels, "labels", "N H W", dims)
        check_dtype(labels, "labels", "int")
        K1 = int(labels.max()) + 1 if num_classes is None else check_int(num_classes, "num_classes", low=1)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= K1):
            raise ValueError(f"`labels`: expected values in [0, {K1}), got [{int(labels.min())}, {int(labels.max())}]")
        window = check_int(window, "window", low=1)
        thr = check_float(threshold, "threshold", low=0.0, high=1.0, low_open=True)
        check_choice(mode, "mode", ("filter", "flow"))
        N, T = frames.shape[:2]
        out = torch.zeros(N, T, *labels.shape[-2:], dtype=torch.long, device=labels.device)
        out[:, 0] = labels
        for t in range(1, T):
            refs = sorted({max(t - j, 0) for j in range(1, window + 1)} | ({0} if use_first else set()))
            R = len(refs)
            payload = F.one_hot(out[:, refs], K1).permute(0, 1, 4, 2, 3).to(frames.dtype)  # (N, R, K+1, H, W)
            targets = frames[:, t:t + 1].expand(-1, R, -1, -1, -1)
            soft = _transport(model, targets.flatten(0, 1), frames[:, refs].flatten(0, 1), payload.flatten(0, 1), mode)
            soft = soft.view(N, R, K1, *soft.shape[-2:]).mean(1)  # (N, K+1, H, W)
            if K1 == 1:
                continue
            best, arg = soft[:, 1:].max(1)
            out[:, t] = torch.where(best >= thr, arg + 1, torch.zeros_like(arg))
        return out[0] if single else out


def long_range_error(model, frames: torch.Tensor, gap: int) -> float:
    r"""Long-range reconstruction error [KONG, §7.3.3, Table 7.2].

    For every pair :math:`(I_t, I_{t+m})` of the clip(s), the composed flow from the model reconstructs
    :math:`I_{t+m}` by warping :math:`I_t`; the warped frame is rounded to integers in [0, 255] and
    the mean absolute difference to :math:`I_{t+m}` (in [0, 255]) is returned (the Table 7.2 caption;
    the text's "between :math:`I_t` and :math:`\hat I_{t+m}`" is a slip).

    Args:
        model: a :class:`MultigridPFF`.
        frames: ``(N, T, C, H, W)`` clips in [0, 1] (or ``(T, C, H, W)``).
        gap: :math:`m \ge 1`, ``< T``.

    Returns:
        float, the mean over pairs, channels and pixels.
    """
    with torch.no_grad():
        if torch.is_tensor(frames) and frames.ndim == 4:
            frames = frames[None]
        _image(frames, "frames", spec="N T C H W")
        m = check_int(gap, "gap", low=1)
        if m >= frames.shape[1]:
            raise ValueError(f"`gap`: expected < T = {frames.shape[1]}, got {m}")
        target = frames[:, m:].flatten(0, 1)
        source = frames[:, :-m].flatten(0, 1)
        errs = []
        for i in range(0, target.shape[0], 32):  # bounded memory
            tgt, src = target[i:i + 32], source[i:i + 32]
            warped, _ = flow_warp(src, model(tgt, src).flow)
            errs.append(((warped * 255).round().clamp(0, 255) - tgt * 255).abs().flatten(1).mean(1))
        return float(torch.cat(errs).mean())
