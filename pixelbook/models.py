"""Shared networks: the unified fully-convolutional model of Chapter 1 and its building blocks.

``PixelNet`` is the thesis' "unified framework" [Kong thesis, Ch. 2]: one ResNet encoder whose last
two down-samplings are replaced by dilated convolutions (output stride 8, as in DeepLab), and one
light head per task. Only the last layer and the loss differ between tasks. Heads up-sample first
and then convolve twice, which the thesis found better than up-sampling the final scores
[Kong thesis, §4.4]. The model returns a dict, one entry per task (torchvision's convention).

Two encoders: ``"tiny"`` (our CPU-sized dilated ResNet, a few hundred thousand parameters, for
``small`` scale) and ``"resnet50"`` (torchvision's ResNet-50 with
``replace_stride_with_dilation=[False, True, True]``, the thesis' backbone, for ``full`` scale).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_finite, check_shape

__all__ = ["BasicBlock", "TinyDilatedResNet", "PixelNet", "TASKS", "count_parameters", "UNet"]

#: The four tasks of Chapter 1 and the number of output channels of each head.
TASKS = ("seg", "boundary", "depth", "normals")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _conv_bn_relu(cin: int, cout: int, dilation: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """Residual block ``relu(x + bn(conv(relu(bn(conv(x))))))`` with optional stride and dilation.

    torchvision's ``BasicBlock`` refuses ``dilation > 1``; the dilated stages of a small ResNet need it.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.skip(x) + self.bn2(self.conv2(y)), inplace=True)


class TinyDilatedResNet(nn.Module):
    """A five-stage ResNet sized for a CPU, output stride 8 through dilation [Kong thesis, §2.2].

    Stages (``widths`` = channels per stage): stem (stride 2) → stage 2 (stride 2) → stage 3
    (stride 2) → stage 4 (dilation 2) → stage 5 (dilation 4). A full ResNet down-samples 32×; the
    thesis removes the last two 2×2 poolings and dilates the following convolutions by 2 and 4 so
    the receptive field keeps growing while the output stays at 1/8 of the input.

    ``forward`` returns the list of the five stage outputs (the boundary head taps four of them).
    """

    def __init__(self, widths: Sequence[int] = (24, 32, 48, 64, 64), in_channels: int = 3):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"`widths`: expected 5 stage widths, got {len(widths)}")
        w = list(widths)
        self.stem = _conv_bn_relu(in_channels, w[0], stride=2)                       # 1/2
        self.stage2 = BasicBlock(w[0], w[1], stride=2)                               # 1/4
        self.stage3 = BasicBlock(w[1], w[2], stride=2)                               # 1/8
        self.stage4 = BasicBlock(w[2], w[3], dilation=2)                             # 1/8, dilation 2
        self.stage5 = BasicBlock(w[3], w[4], dilation=4)                             # 1/8, dilation 4
        self.out_channels = w

    def forward(self, x):
        feats = [self.stem(x)]
        for stage in (self.stage2, self.stage3, self.stage4, self.stage5):
            feats.append(stage(feats[-1]))
        return feats


class _ResNet50Encoder(nn.Module):
    """torchvision ResNet-50 with dilation in the last two stages (output stride 8)."""

    def __init__(self, pretrained: bool = False):
        super().__init__()
        from torchvision.models import ResNet50_Weights, resnet50

        net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2 if pretrained else None,
                       replace_stride_with_dilation=[False, True, True])
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.out_channels = [64, 256, 512, 1024, 2048]

    def forward(self, x):
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class _Head(nn.Module):
    """Reduce, up-sample, refine with a 3×3 conv-BN-ReLU, then a 1×1 task layer [thesis §4.4].

    The refinement runs at ``1/stride`` of the input size and the task layer's output is
    up-sampled bilinearly the rest of the way (``stride=1``: refine at full resolution).
    """

    def __init__(self, cin: int, cout: int, width: int, stride: int = 1):
        super().__init__()
        self.reduce = _conv_bn_relu(cin, width)
        self.refine = _conv_bn_relu(width, width)
        self.out = nn.Conv2d(width, cout, 1)
        self.stride = stride

    def forward(self, x, size):
        x = self.reduce(x)
        x = F.interpolate(x, size=(size[0] // self.stride, size[1] // self.stride), mode="bilinear", align_corners=False)
        x = self.out(self.refine(x))
        return x if self.stride == 1 else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class PixelNet(nn.Module):
    """One fully-convolutional network, one head per task [Kong thesis, Ch. 2].

    Args:
        num_classes: number of semantic classes :math:`K` (for the ``seg`` head).
        tasks: any subset of ``("seg", "boundary", "depth", "normals")``; a single task gives the
            single-task baseline with the same encoder.
        encoder: ``"tiny"`` (CPU-sized, see :class:`TinyDilatedResNet`) or ``"resnet50"``.
        widths: stage widths of the tiny encoder.
        head_width: channels inside each head.
        head_stride: the heads refine at ``1/head_stride`` of the input size, then up-sample their
            output bilinearly (ours: 2 halves the cost of the heads on a CPU with little loss;
            1 refines at full resolution).
        pretrained: ImageNet weights for ``"resnet50"`` (downloaded by torchvision on demand).

    ``forward(image)`` takes ``(N, 3, H, W)`` and returns a dict with, for each task present,
    ``seg``: ``(N, K, H, W)`` logits; ``boundary``: ``(N, 1, H, W)`` fused logits and
    ``boundary_sides``: the four side outputs plus the fused map (HED-style deep supervision);
    ``depth``: ``(N, 1, H, W)`` predicted **log**-depth; ``normals``: ``(N, 3, H, W)`` unit vectors
    (the thesis' final L2-normalisation layer).

    Example:
        >>> net = PixelNet(num_classes=5).eval()
        >>> out = net(torch.rand(2, 3, 32, 32))
        >>> sorted(out), tuple(out["seg"].shape), tuple(out["normals"].shape)
        (['boundary', 'boundary_sides', 'depth', 'normals', 'seg'], (2, 5, 32, 32), (2, 3, 32, 32))
    """

    def __init__(self, num_classes: int, tasks: Sequence[str] = TASKS, encoder: str = "tiny",
                 widths: Sequence[int] = (24, 32, 48, 64, 64), head_width: int = 32, head_stride: int = 2,
                 pretrained: bool = False):
        super().__init__()
        tasks = tuple(tasks)
        if not tasks:
            raise ValueError("`tasks`: expected at least one of " + ", ".join(TASKS))
        for t in tasks:
            check_choice(t, "tasks", TASKS)
        check_choice(encoder, "encoder", ("tiny", "resnet50"))
        if "seg" in tasks and num_classes < 2:
            raise ValueError(f"`num_classes`: expected >= 2 for the seg head, got {num_classes}")
        self.tasks, self.num_classes = tasks, num_classes
        self.encoder = TinyDilatedResNet(widths) if encoder == "tiny" else _ResNet50Encoder(pretrained)
        c = self.encoder.out_channels
        out_ch = {"seg": num_classes, "boundary": 1, "depth": 1, "normals": 3}
        if head_stride not in (1, 2, 4, 8):
            raise ValueError(f"`head_stride`: expected 1, 2, 4 or 8, got {head_stride}")
        self.heads = nn.ModuleDict({t: _Head(c[-1], out_ch[t], head_width, head_stride) for t in tasks})
        if "boundary" in tasks:
            # Side outputs at four "macro building blocks" (stages 2–5) and a fusion layer [thesis, Eq. 2.2].
            self.sides = nn.ModuleList([nn.Conv2d(ch, 1, 1) for ch in c[1:]])
            self.fuse = nn.Conv2d(len(self.sides) + 1, 1, 1)

    def forward(self, image: torch.Tensor) -> dict:
        check_shape(image, "image", "N 3 H W")
        size = image.shape[-2:]
        feats = self.encoder(image)
        out = {}
        for task, head in self.heads.items():
            y = head(feats[-1], size)
            if task == "normals":
                y = F.normalize(y, dim=1, eps=1e-6)  # the thesis' final L2-normalisation layer
            if task == "boundary":
                sides = [F.interpolate(s(f), size=size, mode="bilinear", align_corners=False)
                         for s, f in zip(self.sides, feats[1:])]
                fused = self.fuse(torch.cat(sides + [y], 1))
                out["boundary_sides"] = sides + [fused]
                y = fused
            out[task] = y
        return out

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> dict:
        """Evaluation-mode predictions in the units of the metrics: ``seg`` labels ``(N,H,W)``,
        ``boundary`` probabilities ``(N,H,W)``, ``depth`` in metres ``(N,1,H,W)``, unit ``normals``."""
        check_finite(image, "image")
        was = self.training
        self.eval()
        out = self(image)
        self.train(was)
        pred = {}
        if "seg" in out:
            pred["seg"] = out["seg"].argmax(1)
        if "boundary" in out:
            pred["boundary"] = torch.sigmoid(out["boundary"][:, 0])
        if "depth" in out:
            pred["depth"] = out["depth"].exp()
        if "normals" in out:
            pred["normals"] = out["normals"]
        return pred


# --- U-Net (Chapter 2: the initial contour and the regression baseline of [NODE-LS, §4.4]) -------------

def _conv_gn_relu(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                         nn.GroupNorm(min(groups, cout), cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """A small U-Net [Ronneberger et al. 2015] with GroupNorm, for any input size.

    Level ``l`` (0 = full resolution) has ``width * 2**l`` channels and two 3×3 conv-GN-ReLU
    layers; the encoder halves the resolution ``depth`` times with 2×2 max-pooling, the decoder
    up-samples bilinearly to the skip's size (so odd sizes work), concatenates the skip and applies
    two more conv layers; a 1×1 conv gives ``out_channels``. GroupNorm instead of BatchNorm follows
    [NODE-LS, §3.5] (batch-independent statistics); the paper gives no depth or widths for its
    5M/15M UNets, so ``width`` and ``depth`` are ours.

    Args:
        in_channels: image channels.
        out_channels: output channels (1 for a distance-map regression).
        width: channels at full resolution.
        depth: number of down-samplings.
        groups: GroupNorm groups (capped at the channel count).

    Example:
        >>> net = UNet(1, 1, width=8, depth=2)
        >>> tuple(net(torch.rand(2, 1, 30, 30)).shape), count_parameters(net)
        ((2, 1, 30, 30), 29777)
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 16, depth: int = 3,
                 groups: int = 4):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width),
                        ("groups", groups)):
            if int(v) < 1:
                raise ValueError(f"`{name}`: expected a positive integer, got {v}")
        if int(depth) < 0:
            raise ValueError(f"`depth`: expected >= 0, got {depth}")
        ch = [width * 2 ** level for level in range(depth + 1)]
        self.in_channels, self.depth = in_channels, depth
        self.down = nn.ModuleList()
        cin = in_channels
        for c in ch:
            self.down.append(nn.Sequential(_conv_gn_relu(cin, c, groups), _conv_gn_relu(c, c, groups)))
            cin = c
        self.up = nn.ModuleList(
            nn.Sequential(_conv_gn_relu(ch[level + 1] + ch[level], ch[level], groups),
                          _conv_gn_relu(ch[level], ch[level], groups))
            for level in reversed(range(depth)))
        self.out = nn.Conv2d(ch[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, "x", f"N {self.in_channels} H W")
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.out(x)
