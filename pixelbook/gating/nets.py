r"""The two small networks of Chapter 5's experiments, built from the gating modules.

* :class:`GatedPoolNet` (Task A, perspective scenes): a shallow stem with a small receptive field,
  one pooling module (any gate of :class:`~pixelbook.gating.pooling.DepthAwareGatedPool`, or
  :class:`~pixelbook.gating.pooling.PAGMultiPool`), a 1×1 classifier. Nearly all spatial context
  comes from the pooling module, so its dilations decide what each pixel can see.
* :class:`PAGResNet` (Task B, grating scenes): a stem and a stack of stride-1
  :class:`~pixelbook.gating.pag.PAGBottleneck` blocks with dilations, per-pixel gates (PAG),
  per-image gates (layer skipping) or none (the dense and truncated baselines).
* :class:`PAGResNet50` (``full`` scale): the thesis' network of Ch. 4 — a torchvision ResNet-50 at
  output stride 8 with a MultiPool module in Res5-2 and PAG (or layer-skipping) gates in the other
  bottlenecks, optionally truncated, with a two-layer head.

All return a dict (torchvision's convention): ``"seg"`` logits ``(N, K, H, W)`` and, where a gate
head exists, ``"gate_logits"``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .._checks import check_choice, check_finite, check_int, check_shape
from .pag import PAGBottleneck
from .pooling import DepthAwareGatedPool, PAGMultiPool

__all__ = ["GatedPoolNet", "PAGResNet", "PAGResNet50", "RESNET50_BLOCKS", "IMAGENET_MEAN", "IMAGENET_STD"]


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

    On a CPU, ``net.to(memory_format=torch.channels_last)`` lets oneDNN run every convolution
    without layout reorders: a training step of the width-16 Task-A networks (batch 16, 64×64, one
    thread) took 45–66 ms instead of 57–90 ms, with the same outputs up to float rounding (Chapter 5's
    experiment does this; its test compares the two layouts).

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


#: The bottlenecks of a ResNet-50 per stage (Res2-Res5 in the thesis' MatConvNet names): 16 in all.
RESNET50_BLOCKS = (("layer1", 3), ("layer2", 4), ("layer3", 6), ("layer4", 3))
#: The normalisation of torchvision's ImageNet weights (applied inside :class:`PAGResNet50`).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PAGResNet50(nn.Module):
    r"""ResNet-50 with Pixel-wise Attentional Gating for per-pixel labelling, as in [KONG, Ch. 4].

    The backbone is torchvision's ``resnet50`` with ``replace_stride_with_dilation=[False, True,
    True]`` (output stride 8, dilations 2 and 4 in Res4/Res5, [KONG, §3.5, §4.4]). Then:

    - **MultiPool** (``pool``): the 3×3 convolution of one bottleneck, by default the second-to-last
      one (Res5-2 of the full network, [KONG, §4.3.4, Table 4.1]), is replaced by a pooling module
      over ``pool_dilations`` (0 = copy): ``"pag"`` (:class:`PAGMultiPool`, one branch per pixel),
      ``"learned"`` (:class:`DepthAwareGatedPool` with a softmax gate: the weighted average "w-Avg."
      of Table 4.3) or ``"none"`` (the plain convolution: the baseline). Every branch starts as a copy
      of the pretrained 3×3 kernel and its BatchNorm (the released code does the same).
    - **Gates** (``gates``): every other bottleneck becomes a :class:`PAGBottleneck` sharing its
      layers: ``"pixel"`` (PAG), ``"image"`` (layer skipping, [KONG, Table 4.2]) or ``"none"``
      (plain blocks). The MultiPool block has no gate (the released code leaves Res5-2 ungated).
    - **Truncation** (``blocks``): only the first ``blocks`` of the 16 bottlenecks are kept (the
      "truncated" baseline of Table 4.2); the MultiPool goes into the second-to-last kept block.
    - **Head**: two 3×3 conv-BN-ReLU layers of ``head_width`` channels on top of the backbone (the
      "two additional 3×3-kernel layers" of [KONG, §3.5]), a 1×1 classifier, and bilinear
      up-sampling of the scores to the input size ([KONG, §3.5]).

    With ``freeze_bn`` the BatchNorm layers of the backbone (and the MultiPool branches copied from
    them) keep their ImageNet moments in training, as the thesis trains with a batch of one image
    ("we fix the batch normalization, using the same constant global moments in both training and
    testing", [KONG, §4.4]); their affine parameters still train. The gate heads and the head use
    ordinary BatchNorm. The frozen layers are found by name, so they stay frozen after
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` (several GPUs).

    Args:
        num_classes: output classes.
        gates: ``"pixel"`` (default), ``"image"`` or ``"none"``.
        pool: ``"pag"`` (default), ``"learned"`` or ``"none"``.
        pool_dilations: MultiPool branches (default ``(0, 1, 2, 4, 6, 8, 10)``, [KONG, §4.3.4]).
        blocks: bottlenecks kept, 2..16 (default 16, the whole network).
        head_width: channels of the head's two layers (default 512, ours; the thesis operates "on
            small 512-dimension feature maps", [KONG, §2]).
        pool_head_widths: hidden widths of the MultiPool gate head (default ``(128, 32)``, released code).
        weights: torchvision weights of the backbone (``"IMAGENET1K_V1"``, ``"DEFAULT"``, an enum, or
            ``None`` for random initialisation); ImageNet weights are downloaded by torchvision.
        freeze_bn: keep the backbone's BatchNorm moments fixed (default ``True``).

    ``forward(image)`` takes ``(N, 3, H, W)`` in [0, 1] (normalised inside with ImageNet's mean and
    std) and returns ``{"seg": (N, num_classes, H, W)}``.

    Example:
        >>> net = PAGResNet50(5, blocks=4, head_width=8).eval()
        >>> tuple(net(torch.rand(1, 3, 32, 40))["seg"].shape), len(pb.gating.pag_blocks(net))
        ((1, 5, 32, 40), 3)
    """

    POOLS = ("pag", "learned", "none")

    def __init__(self, num_classes: int, gates: str = "pixel", pool: str = "pag",
                 pool_dilations: Sequence[int] = (0, 1, 2, 4, 6, 8, 10), blocks: int = 16, head_width: int = 512,
                 pool_head_widths: Sequence[int] = (128, 32), weights=None, freeze_bn: bool = True):
        super().__init__()
        import torchvision

        num_classes = check_int(num_classes, "num_classes", 2)
        check_choice(gates, "gates", ("pixel", "image", "none"))
        check_choice(pool, "pool", self.POOLS)
        total = sum(n for _, n in RESNET50_BLOCKS)
        blocks = check_int(blocks, "blocks", 2, total)
        head_width = check_int(head_width, "head_width", 1)
        if not isinstance(freeze_bn, bool):
            raise TypeError(f"`freeze_bn`: expected a bool, got {type(freeze_bn).__name__}")
        self.gates, self.pool_kind, self.blocks, self.freeze_bn = gates, pool, blocks, freeze_bn
        net = torchvision.models.resnet50(weights=weights, replace_stride_with_dilation=[False, True, True])
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        kept, left = [], blocks
        for name, n in RESNET50_BLOCKS:
            if left <= 0:
                break
            stage = getattr(net, name)
            kept.append((name, nn.Sequential(*list(stage.children())[:min(n, left)])))
            left -= n
        self.stages = nn.ModuleDict(kept)
        flat = [(f"stages.{name}.{i}", b) for name, stage in kept for i, b in enumerate(stage)]
        # BatchNorm layers with ImageNet moments (frozen by name; see the class docstring)
        self._frozen = {f"stem.{n}" for n, m in self.stem.named_modules() if isinstance(m, nn.BatchNorm2d)}
        self._frozen |= {f"{q}.{n}" for q, b in flat for n, m in b.named_modules() if isinstance(m, nn.BatchNorm2d)}
        self.pool_block = blocks - 2 if pool != "none" else None
        self._pool_at = None  # (stage, index) of the MultiPool's host block; `pool` reads it from there
        if pool != "none":
            qual, host = flat[self.pool_block]
            conv, bn = host.conv2, host.bn2
            d = tuple(pool_dilations)
            if pool == "pag":
                mp = PAGMultiPool(conv.in_channels, d, head_widths=tuple(pool_head_widths))
            else:
                mp = DepthAwareGatedPool(conv.in_channels, d, gate="learned", head_widths=tuple(pool_head_widths))
            with torch.no_grad():  # every branch starts as the pretrained 3x3 kernel and its BatchNorm
                for c in mp.branches.convs:
                    c.weight.copy_(conv.weight)
                for norm in mp.branches.norms:
                    norm.load_state_dict(bn.state_dict())
            host.conv2, host.bn2 = mp, nn.Identity()  # the branches end in BN + ReLU; relu(relu(x)) = relu(x)
            self._frozen.discard(f"{qual}.bn2")
            self._frozen |= {f"{qual}.conv2.branches.norms.{i}" for i in range(len(mp.branches.norms))}
            self._pool_at = (qual.split(".")[1], int(qual.split(".")[2]))
        if gates != "none":
            for i, (qual, block) in enumerate(flat):
                if i == self.pool_block:
                    continue
                _, stage_name, index = qual.split(".")
                self.stages[stage_name][int(index)] = PAGBottleneck.from_bottleneck(block, granularity=gates)
        cin = flat[-1][1].conv3.out_channels
        self.head = nn.Sequential(*_conv_bn_relu(cin, head_width, 3), *_conv_bn_relu(head_width, head_width, 3),
                                  nn.Conv2d(head_width, num_classes, 1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.train()

    @property
    def pool(self) -> nn.Module | None:
        """The MultiPool module (``None`` with ``pool="none"``); it lives in its host block as ``conv2``."""
        if self._pool_at is None:
            return None
        stage, index = self._pool_at
        return self.stages[stage][index].conv2

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_bn:
            for name, m in self.named_modules():
                if name in self._frozen:
                    m.eval()
        return self

    def forward(self, image: torch.Tensor) -> dict:
        check_shape(image, "image", "N 3 H W")
        check_finite(image, "image")
        x = self.stem((image - self.mean) / self.std)
        for stage in self.stages.values():
            x = stage(x)
        seg = self.head(x)
        return {"seg": nn.functional.interpolate(seg, size=image.shape[-2:], mode="bilinear", align_corners=False)}
