r"""Spatially varying pooling: depth-aware gating [KONG, Ch. 3] and PAG MultiPool [KONG, §4.3.4].

Both modules compute ``K`` pooled maps :math:`\mathbf M_k` of the same input — a 3×3 convolution
(+ BN + ReLU) at dilation :math:`r_k`, or the input itself for :math:`r_k = 0` ("a dilation rate of
0 means the input feature is simply copied", [KONG, §4.3.4]) — and combine them per pixel:

.. math:: \mathbf O = \sum_{k=1}^{K} \mathbf G_k \odot \mathbf M_k .

What differs is the gate :math:`\mathbf G` (``(N, K, H, W)``, summing to 1 over ``k``):

* ``average``: :math:`1/K` everywhere ("avg", [KONG, App. A]);
* ``true``: the one-hot of the quantised true depth bin, :math:`1/K` where the depth is missing
  ("we assign equal weight on the missing entries", [KONG, §3.6.3]);
* ``predicted``: the softmax of a K-way depth-bin classifier trained with cross-entropy on the
  quantised depth ([KONG, §3.3]; the caller adds that loss, the logits are in ``last_logits``);
* ``learned``: the same head and softmax trained by the task loss only ("attention", [KONG, §3.6.4]);
* PAG: the one-hot straight-through Gumbel sample of the head's logits (:class:`PAGMultiPool`,
  [KONG, §4.3.4]).

``tied=True`` uses one 3×3 kernel at every dilation ("tied"), ``tied=False`` one kernel per branch
("untied", the thesis' final model). Each branch keeps its own BatchNorm in both cases (ours: the
statistics of a dilation-1 and a dilation-16 response differ).

The thesis writes no gating formula in Ch. 3; the one above is the text's "multiplicatively gate
between a set of feature maps ... and summed". Depth is quantised so that **near pixels select
large dilations**: objects look larger when closer ([KONG, §3.3]); :func:`quantize_depth` numbers the
bins from far (0, smallest dilation) to near (K − 1, largest dilation).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (check_choice, check_dtype, check_finite, check_float, check_int, check_labels,
                       check_shape, IGNORE_INDEX)
from ..ops.gated_conv import gated_conv2d
from .gumbel import GumbelGate

__all__ = ["depth_bin_edges", "quantize_depth", "DepthAwareGatedPool", "PAGMultiPool"]


def depth_bin_edges(depth: torch.Tensor, num_bins: int, valid: torch.Tensor | None = None,
                    spacing: str = "log") -> torch.Tensor:
    r"""``num_bins − 1`` increasing depth thresholds that split ``depth`` into ``num_bins`` bins.

    The thesis does not publish its bin edges (its code hard-codes millimetre edges for NYUv2 and
    log-disparity edges for Cityscapes). Ours: ``"log"`` puts the edges at equal ratios between the
    smallest and largest valid depth (equal steps of apparent scale, since size ∝ 1/depth);
    ``"quantile"`` at equal pixel counts.

    Args:
        depth: ``(N, 1, H, W)`` or ``(N, H, W)`` positive depths.
        num_bins: :math:`K \ge 2`.
        valid: optional ``(N, H, W)`` bool, the pixels with a depth.
        spacing: ``"log"`` (default) or ``"quantile"``.

    Returns:
        ``(num_bins − 1,)`` increasing thresholds, on ``depth``'s device and dtype.

    Example:
        >>> depth_bin_edges(torch.tensor([[[1.0, 16.0]]]), 4)
        tensor([2., 4., 8.])
    """
    depth = _depth_nhw(depth)
    check_finite(depth, "depth")
    num_bins = check_int(num_bins, "num_bins", 2)
    check_choice(spacing, "spacing", ("log", "quantile"))
    values = depth[_valid_or_all(valid, depth)]
    if values.numel() == 0:
        raise ValueError("`valid`: expected at least one valid depth, got none")
    if bool((values <= 0).any()):
        raise ValueError(f"`depth`: expected positive depths, got min {float(values.min()):.4g}")
    t = torch.arange(1, num_bins, dtype=depth.dtype, device=depth.device) / num_bins
    if spacing == "quantile":
        return torch.quantile(values.double(), t.double()).to(depth.dtype)
    lo, hi = values.min().log(), values.max().log()
    return torch.exp(lo + (hi - lo) * t)


def _depth_nhw(depth):
    if torch.is_tensor(depth) and depth.ndim == 4:
        check_shape(depth, "depth", "N 1 H W")
        depth = depth[:, 0]
    check_shape(depth, "depth", "N H W")
    check_dtype(depth, "depth", "float")
    return depth


def _valid_or_all(valid, depth):
    if valid is None:
        return torch.ones_like(depth, dtype=torch.bool)
    check_shape(valid, "valid", "N H W", {"N": (depth.shape[0], "depth"), "H": (depth.shape[1], "depth"),
                                          "W": (depth.shape[2], "depth")})
    if valid.dtype != torch.bool:
        raise TypeError(f"`valid`: expected a bool tensor, got {valid.dtype}")
    return valid


def quantize_depth(depth: torch.Tensor, edges: torch.Tensor, valid: torch.Tensor | None = None,
                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    r"""Depth bins numbered from far to near: bin ``K − 1`` holds the nearest pixels [KONG, §3.3].

    Bin ``k`` selects branch ``k`` of a pooling module whose dilations increase with ``k``, so far
    pixels get small pooling fields and near ones large fields ("if a region of an image has a
    larger depth values, the windows over which features are pooled should be smaller").

    Args:
        depth: ``(N, 1, H, W)`` or ``(N, H, W)`` float depths.
        edges: ``(K − 1,)`` increasing thresholds (e.g. from :func:`depth_bin_edges`).
        valid: optional ``(N, H, W)`` bool; invalid pixels get ``ignore_index``.
        ignore_index: label of missing depth (default 255, the package's one ignore label).

    Returns:
        ``(N, H, W)`` int64 ``labels`` in ``[0, K)`` or ``ignore_index``.

    Example:
        >>> quantize_depth(torch.tensor([[[1.0, 3.0, 9.0]]]), torch.tensor([2.0, 4.0]))
        tensor([[[2, 1, 0]]])
    """
    depth = _depth_nhw(depth)
    check_finite(depth, "depth")
    check_shape(edges, "edges", "E")
    if edges.numel() and bool((edges[1:] <= edges[:-1]).any()):
        raise ValueError("`edges`: expected strictly increasing thresholds")
    mask = _valid_or_all(valid, depth)
    K = edges.numel() + 1
    far_index = torch.bucketize(depth, edges.to(depth), right=True)  # 0 = nearest ... K-1 = farthest
    bins = (K - 1) - far_index
    return torch.where(mask, bins, torch.full_like(bins, ignore_index))


def _check_dilations(dilations) -> tuple[int, ...]:
    if isinstance(dilations, (str, bytes)) or not hasattr(dilations, "__iter__"):
        raise TypeError(f"`dilations`: expected a sequence of ints, got {type(dilations).__name__}")
    out = tuple(check_int(d, "dilations", 0) for d in dilations)
    if len(out) < 1:
        raise ValueError("`dilations`: expected at least one dilation, got none")
    return out


class _Branches(nn.Module):
    """``K`` conv3×3-BN-ReLU branches at the given dilations (0 = identity), tied or untied kernels."""

    def __init__(self, channels: int, out_channels: int, dilations: Sequence[int], tied: bool):
        super().__init__()
        self.dilations = dilations
        convs = sum(d > 0 for d in dilations)
        if 0 in dilations and out_channels != channels:
            raise ValueError(f"`out_channels`: a dilation-0 (identity) branch needs out_channels == channels "
                             f"({channels}), got {out_channels}")
        n_kernels = min(convs, 1) if tied else convs
        self.convs = nn.ModuleList(nn.Conv2d(channels, out_channels, 3, bias=False) for _ in range(n_kernels))
        self.norms = nn.ModuleList(nn.BatchNorm2d(out_channels) for _ in range(convs))
        # branch k -> index into convs / norms (None for the identity)
        self.index, j = [], 0
        for d in dilations:
            self.index.append(None if d == 0 else j)
            j += d > 0
        self.tied = tied

    def conv(self, k: int) -> nn.Conv2d:
        return self.convs[0 if self.tied else self.index[k]]

    def forward_branch(self, k: int, x: torch.Tensor) -> torch.Tensor:
        d = self.dilations[k]
        if d == 0:
            return x
        y = F.conv2d(x, self.conv(k).weight, padding=d, dilation=d)
        return F.relu(self.norms[self.index[k]](y))

    def folded(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode BN folded into the kernel: ``(weight, bias)`` with bn(conv(x)) = conv(x; w) + b."""
        bn = self.norms[self.index[k]]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return self.conv(k).weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale


class _GateHead(nn.Sequential):
    """1×1 conv → BN → ReLU → 3×3 conv → BN → ReLU → 1×1 conv to ``K`` logits (the released code's head)."""

    def __init__(self, channels: int, num_options: int, widths: Sequence[int]):
        layers, cin = [], channels
        for i, w in enumerate(widths):
            k = 1 if i == 0 else 3
            layers += [nn.Conv2d(cin, w, k, padding=k // 2, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            cin = w
        layers.append(nn.Conv2d(cin, num_options, 1))
        super().__init__(*layers)


def _check_pool_args(channels, out_channels, dilations, tied, head_widths):
    channels = check_int(channels, "channels", 1)
    out_channels = channels if out_channels is None else check_int(out_channels, "out_channels", 1)
    dilations = _check_dilations(dilations)
    if not isinstance(tied, bool):
        raise TypeError(f"`tied`: expected a bool, got {type(tied).__name__}")
    head_widths = tuple(check_int(w, "head_widths", 1) for w in head_widths)
    return channels, out_channels, dilations, head_widths


class DepthAwareGatedPool(nn.Module):
    r"""Multi-dilation pooling combined by an average, a true-depth gate, a predicted-depth gate or attention.

    ``forward(x, depth_bins=None)`` returns :math:`\mathbf O = \sum_k \mathbf G_k\odot\mathbf M_k`
    [KONG, §3.3, App. A] (see the module docstring for the gates). After a call, ``last_gate`` holds
    :math:`\mathbf G` ``(N, K, H, W)`` and, for ``"predicted"``/``"learned"``, ``last_logits`` the
    head's logits (train ``"predicted"`` with ``F.cross_entropy(last_logits, depth_bins,
    ignore_index=255)``). All ``K`` branches are computed at every pixel.

    Args:
        channels: input channels ``C``.
        dilations: one per branch, increasing with the bin index (default ``(1, 2, 4, 8, 16)``,
            [KONG, App. A]); 0 is the identity branch.
        gate: ``"average"``, ``"true"``, ``"predicted"`` (default, the thesis' final model) or
            ``"learned"``.
        tied: one shared kernel for all dilations (default ``False``, "untied").
        out_channels: output channels (default ``C``).
        head_widths: hidden widths of the gate head for ``"predicted"``/``"learned"`` (default
            ``(128, 32)``, from the released PAG code; the Ch. 3 code uses a 1×1 classifier).

    Shapes:
        ``x``: ``(N, C, H, W)``; ``depth_bins`` (``gate="true"`` only): ``(N, H, W)`` int64 in
        ``[0, K)`` or 255 for missing depth; output ``(N, out_channels, H, W)``.

    Example:
        >>> pool = DepthAwareGatedPool(8, dilations=(1, 2), gate="true").eval()
        >>> x, bins = torch.randn(1, 8, 6, 6), torch.randint(0, 2, (1, 6, 6))
        >>> y = pool(x, bins)
        >>> torch.allclose(y, torch.where(bins[:, None] == 1, pool.branch(1, x), pool.branch(0, x)))
        True
    """

    GATES = ("average", "true", "predicted", "learned")

    def __init__(self, channels: int, dilations: Sequence[int] = (1, 2, 4, 8, 16), gate: str = "predicted",
                 tied: bool = False, out_channels: int | None = None, head_widths: Sequence[int] = (128, 32)):
        super().__init__()
        channels, out_channels, dilations, head_widths = _check_pool_args(
            channels, out_channels, dilations, tied, head_widths)
        check_choice(gate, "gate", self.GATES)
        self.channels, self.out_channels, self.dilations, self.gate, self.tied = (
            channels, out_channels, dilations, gate, tied)
        self.branches = _Branches(channels, out_channels, dilations, tied)
        self.head = _GateHead(channels, len(dilations), head_widths) if gate in ("predicted", "learned") else None
        self.last_gate: torch.Tensor | None = None
        self.last_logits: torch.Tensor | None = None

    @property
    def num_branches(self) -> int:
        return len(self.dilations)

    def branch(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """The pooled map :math:`\\mathbf M_k` of branch ``k`` (``(N, out_channels, H, W)``)."""
        k = check_int(k, "k", 0, self.num_branches - 1)
        return self.branches.forward_branch(k, x)

    def _gate(self, x, depth_bins):
        N, _, H, W = x.shape
        K = self.num_branches
        if self.gate == "average":
            return x.new_full((N, K, H, W), 1.0 / K)
        if self.gate == "true":
            if depth_bins is None:
                raise ValueError("`depth_bins`: gate='true' needs the quantised depth (N, H, W), got None")
            check_shape(depth_bins, "depth_bins", "N H W", {"N": (N, "x"), "H": (H, "x"), "W": (W, "x")})
            check_labels(depth_bins, "depth_bins", K, IGNORE_INDEX)
            missing = depth_bins == IGNORE_INDEX
            onehot = F.one_hot(depth_bins.masked_fill(missing, 0), K).permute(0, 3, 1, 2).to(x.dtype)
            return torch.where(missing[:, None], torch.full_like(onehot, 1.0 / K), onehot)
        self.last_logits = self.head(x)
        return self.last_logits.softmax(1)

    def forward(self, x: torch.Tensor, depth_bins: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(x, "x", f"N {self.channels} H W")
        check_finite(x, "x")
        gate = self._gate(x, depth_bins)
        self.last_gate = gate
        out = 0
        for k in range(self.num_branches):
            out = out + gate[:, k:k + 1] * self.branches.forward_branch(k, x)
        return out

    def flop_convs(self) -> list:
        """The convolutions this module runs itself, each with the pixels it ran at (all of them)."""
        if self.last_gate is None:
            return []
        ones = self.last_gate.new_ones(self.last_gate[:, :1].shape)
        return [(self.branches.conv(k), ones) for k, d in enumerate(self.dilations) if d > 0]


class PAGMultiPool(nn.Module):
    r"""PAG MultiPool: one pooling branch per pixel, chosen by a straight-through Gumbel gate [KONG, §4.3.4].

    :math:`\mathbf O = \sum_i \mathbf W_i \odot \mathbf M_i` with :math:`\mathbf W` one-hot per pixel,
    "learned in a latent manner using the task-specific loss (no additional sparsity loss)". In
    training every branch is computed (the straight-through gradient to the gate needs every
    :math:`\mathbf M_i` at every pixel); in eval, ``execution="sparse"`` computes branch ``i`` only at
    the pixels that selected it (:func:`pixelbook.ops.gated_conv2d`, BN folded into the kernel), so
    the cost is about one branch per pixel. ``last_gate`` holds :math:`\mathbf W` ``(N, P, H, W)``.

    Args:
        channels: input (= output) channels ``C``.
        dilations: the branch set (default ``(0, 1, 2, 4, 6, 8, 10)``, [KONG, §4.3.4]; 0 = copy).
        tied: one kernel for all dilations (default ``False``).
        head_widths: hidden widths of the gate head (default ``(128, 32)``, released code).
        tau: initial temperature (default 1.0; anneal with :func:`set_temperature`).
        execution: ``"dense"`` (default) or ``"sparse"`` (eval only; training is always dense).
        force: ``None`` (default) or a branch index ``k``: every pixel takes branch ``k`` (ablation).

    Example:
        >>> mp = PAGMultiPool(8, dilations=(0, 1, 4), head_widths=(8,)).eval()
        >>> x = torch.randn(2, 8, 10, 10)
        >>> y = mp(x)
        >>> tuple(y.shape), bool((mp.last_gate.sum(1) == 1).all())
        ((2, 8, 10, 10), True)
    """

    def __init__(self, channels: int, dilations: Sequence[int] = (0, 1, 2, 4, 6, 8, 10), tied: bool = False,
                 head_widths: Sequence[int] = (128, 32), tau: float = 1.0, execution: str = "dense",
                 force: int | None = None):
        super().__init__()
        channels, _, dilations, head_widths = _check_pool_args(channels, None, dilations, tied, head_widths)
        if len(dilations) < 2:
            raise ValueError(f"`dilations`: PAG MultiPool needs at least 2 branches, got {len(dilations)}")
        check_choice(execution, "execution", ("dense", "sparse"))
        self.channels, self.dilations, self.tied, self.execution = channels, dilations, tied, execution
        self.branches = _Branches(channels, channels, dilations, tied)
        self.head = _GateHead(channels, len(dilations), head_widths)
        self.gumbel = GumbelGate(tau)
        self.force = None if force is None else check_int(force, "force", 0, len(dilations) - 1)
        self.last_gate: torch.Tensor | None = None

    @property
    def num_branches(self) -> int:
        return len(self.dilations)

    def branch(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """The pooled map :math:`\\mathbf M_k` of branch ``k``."""
        k = check_int(k, "k", 0, self.num_branches - 1)
        return self.branches.forward_branch(k, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, "x", f"N {self.channels} H W")
        check_finite(x, "x")
        logits = self.head(x)
        if self.force is None:
            gate = self.gumbel(logits)
        else:
            gate = torch.zeros_like(logits)
            gate[:, self.force] = 1.0
        self.last_gate = gate
        if self.execution == "sparse" and not self.training:
            return self._sparse(x, gate.detach())
        out = 0
        for k in range(self.num_branches):
            out = out + gate[:, k:k + 1] * self.branches.forward_branch(k, x)
        return out

    def _sparse(self, x, gate):
        out = torch.zeros_like(x)
        for k, d in enumerate(self.dilations):
            mask = gate[:, k:k + 1]
            if d == 0:
                out = out + mask * x
                continue
            w, b = self.branches.folded(k)
            out = out + F.relu(gated_conv2d(x, w, mask, b, dilation=d, impl="sparse"))
        return out

    def flop_convs(self) -> list:
        """``(conv, mask)`` per convolutional branch: branch ``i`` costs only where :math:`\\mathbf W_i = 1`."""
        if self.last_gate is None:
            return []
        gate = self.last_gate.detach()
        return [(self.branches.conv(k), gate[:, k:k + 1]) for k, d in enumerate(self.dilations) if d > 0]
