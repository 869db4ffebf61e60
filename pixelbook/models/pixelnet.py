"""PixelNet: the unified fully-convolutional model of Chapter 1, with its two encoders.

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

from .._checks import check_choice, check_finite, check_shape
from .blocks import BasicBlock, conv_bn_relu

__all__ = ["TinyDilatedResNet", "PixelNet", "TASKS"]

#: The four tasks of Chapter 1 and the number of output channels of each head.
TASKS = ("seg", "boundary", "depth", "normals")


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
        self.stem = conv_bn_relu(in_channels, w[0], stride=2)                       # 1/2
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

    def __init__(self, weights=None):
        super().__init__()
        from torchvision.models import ResNet50_Weights, resnet50

        try:
            weights = ResNet50_Weights.verify(weights)
        except (KeyError, TypeError, ValueError) as exc:
            names = ", ".join(["DEFAULT"] + [w.name for w in ResNet50_Weights])
            raise ValueError(f"`weights_backbone`: expected None, a ResNet50_Weights or one of its names ({names}), "
                             f"got {weights!r}") from exc
        net = resnet50(weights=weights, replace_stride_with_dilation=[False, True, True])
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
        self.reduce = conv_bn_relu(cin, width)
        self.refine = conv_bn_relu(width, width)
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
        weights_backbone: torchvision-style weights of the ``"resnet50"`` encoder: ``None`` (random
            initialisation, the default), a ``torchvision.models.ResNet50_Weights`` or its name
            (``"DEFAULT"`` = ``"IMAGENET1K_V2"``; downloaded by torchvision on demand). The tiny
            encoder has no pre-trained weights: it takes ``None`` only.

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
                 weights_backbone=None):
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
        if encoder == "tiny" and weights_backbone is not None:
            raise ValueError(f"`weights_backbone`: the tiny encoder has no pre-trained weights; expected None, "
                             f"got {weights_backbone!r}")
        self.encoder = TinyDilatedResNet(widths) if encoder == "tiny" else _ResNet50Encoder(weights_backbone)
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
