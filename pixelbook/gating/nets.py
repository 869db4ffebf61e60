r"""The two small networks of Chapter 5's experiments, built from the gating modules.

* :class:`GatedPoolNet` (Task A, perspective scenes): a shallow stem with a small receptive field,
  one pooling module (any gate of :class:`~pixelbook.gating.pooling.DepthAwareGatedPool`, or
  :class:`~pixelbook.gating.pooling.PAGMultiPool`), a 1×1 classifier. Nearly all spatial context
  comes from the pooling module, so its dilations decide what each pixel can see.
* :class:`PAGResNet` (Task B, grating scenes): a stem and a stack of stride-1
  :class:`~pixelbook.gating.pag.PAGBottleneck` blocks with dilations, per-pixel gates (PAG),
  per-image gates (layer skipping) or none (the dense and truncated baselines).

Both return a dict (torchvision's convention): ``"seg"`` logits ``(N, K, H, W)`` and, where a gate
head exists, ``"gate_logits"``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .._checks import check_choice, check_finite, check_int, check_shape
from .pag import PAGBottleneck
from .pooling import DepthAwareGatedPool, PAGMultiPool

__all__ = ["GatedPoolNet", "PAGResNet"]


def _conv_bn_relu(cin, cout, k):
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class GatedPoolNet(nn.Module):
    r"""Stem (3×3 then 1×1 conv, receptive field 3 px) → pooling module → 1×1 classifier (Task A).

    Args:
        num_classes: output classes.
        pool: ``"average"``, ``"true"``, ``"predicted"``, ``"learned"`` (a
            :class:`DepthAwareGatedPool` gate) or ``"pag"`` (:class:`PAGMultiPool`).
        dilations: the branches; for ``"pag"`` a leading 0 adds the identity branch. A single
            dilation ``d`` for every branch (e.g. ``(1, 1, 1, 1)``) with ``pool="average"`` is the
            single-scale baseline with the same parameters as the multi-scale ones.
        tied: shared branch kernel (default ``False``).
        width: channels of the stem, the branches and the classifier (default 32; ours).
        head_widths: gate-head widths (default ``(16, 8)``; ours, the released code's (128, 32)
            scaled to the width).
        in_channels: image channels.

    ``forward(image, depth_bins=None)``: ``image`` ``(N, C, H, W)``; ``depth_bins`` ``(N, H, W)``
    int64 for ``pool="true"``. Returns ``{"seg": (N, K, H, W), "gate": (N, B, H, W)}`` (the
    per-pixel branch weights) plus ``"gate_logits"`` for ``"predicted"``/``"learned"`` (train
    ``"predicted"`` with cross-entropy against the bins).

    Example:
        >>> net = GatedPoolNet(3, pool="pag", dilations=(0, 1, 4)).eval()
        >>> out = net(torch.rand(2, 3, 16, 16))
        >>> sorted(out), tuple(out["gate"].shape)
        (['gate', 'seg'], (2, 3, 16, 16))
    """

    POOLS = ("average", "true", "predicted", "learned", "pag")

    def __init__(self, num_classes: int, pool: str = "predicted", dilations: Sequence[int] = (1, 2, 4, 8),
                 tied: bool = False, width: int = 32, head_widths: Sequence[int] = (16, 8), in_channels: int = 3):
        super().__init__()
        num_classes = check_int(num_classes, "num_classes", 2)
        width, in_channels = check_int(width, "width", 1), check_int(in_channels, "in_channels", 1)
        check_choice(pool, "pool", self.POOLS)
        self.pool_kind, self.in_channels = pool, in_channels
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, width, 3), *_conv_bn_relu(width, width, 1))
        if pool == "pag":
            self.pool = PAGMultiPool(width, dilations, tied=tied, head_widths=head_widths)
        else:
            self.pool = DepthAwareGatedPool(width, dilations, gate=pool, tied=tied, head_widths=head_widths)
        self.classifier = nn.Sequential(*_conv_bn_relu(width, width, 1), nn.Conv2d(width, num_classes, 1))

    def forward(self, image: torch.Tensor, depth_bins: torch.Tensor | None = None) -> dict:
        check_shape(image, "image", f"N {self.in_channels} H W")
        check_finite(image, "image")
        feats = self.stem(image)
        pooled = self.pool(feats) if self.pool_kind == "pag" else self.pool(feats, depth_bins)
        out = {"seg": self.classifier(pooled)}
        if self.pool_kind in ("predicted", "learned"):
            out["gate_logits"] = self.pool.last_logits
        out["gate"] = self.pool.last_gate
        return out


class PAGResNet(nn.Module):
    r"""A stride-1 residual network of bottleneck blocks, each gated per pixel, per image, or not at all (Task B).

    Stem: 3×3 conv-BN-ReLU to ``width`` channels; then ``len(dilations)`` :class:`PAGBottleneck`
    blocks (``width → width/expansion → width``, dilation ``dilations[i]``); a 1×1 classifier.

    Args:
        num_classes: output classes.
        gates: ``"pixel"`` (PAG), ``"image"`` (layer skipping, one gate per image) or ``"none"``
            (plain bottlenecks without gates: the dense model; with fewer ``dilations`` the
            truncated baseline).
        dilations: one per block (default ``(1, 1, 2, 2, 4, 4, 1, 1)``, the note's Task-B design).
        width: channels between blocks (default 64); the bottleneck has ``width // 4``.
        in_channels: image channels.

    ``forward(image)`` returns ``{"seg": (N, K, H, W)}``. After a call, the blocks hold their masks
    (:func:`~pixelbook.gating.budget.gate_densities`, :func:`~pixelbook.gating.budget.ponder_map`).

    Example:
        >>> net = PAGResNet(3, dilations=(1, 2)).eval()
        >>> tuple(net(torch.rand(1, 3, 12, 12))["seg"].shape)
        (1, 3, 12, 12)
    """

    def __init__(self, num_classes: int, gates: str = "pixel", dilations: Sequence[int] = (1, 1, 2, 2, 4, 4, 1, 1),
                 width: int = 64, in_channels: int = 3):
        super().__init__()
        num_classes = check_int(num_classes, "num_classes", 2)
        width, in_channels = check_int(width, "width", 4), check_int(in_channels, "in_channels", 1)
        if width % 4:
            raise ValueError(f"`width`: expected a multiple of 4 (bottleneck width/4), got {width}")
        check_choice(gates, "gates", ("pixel", "image", "none"))
        dilations = tuple(check_int(d, "dilations", 1) for d in dilations)
        if not dilations:
            raise ValueError("`dilations`: expected at least one block")
        self.gates, self.in_channels, self.dilations = gates, in_channels, dilations
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, width, 3))
        self.blocks = nn.ModuleList(PAGBottleneck(width, width // 4, dilation=d, granularity=gates)
                                    for d in dilations)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, image: torch.Tensor) -> dict:
        check_shape(image, "image", f"N {self.in_channels} H W")
        check_finite(image, "image")
        x = self.stem(image)
        for block in self.blocks:
            x = block(x)
        return {"seg": self.classifier(x)}
