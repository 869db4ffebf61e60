"""Fully-convolutional networks of Chapter 9: two CPU-sized FCNs and the paper's torchvision models [CAS].

:func:`small_fcn` and :func:`resnet_fcn` train on a 2-core CPU; :func:`paper_model` builds the
paper's ``fcn_resnet101`` / ``deeplabv3_resnet101`` for ``full`` scale. All three return modules
whose ``forward`` gives a logits tensor ``(N, out_channels, H, W)`` at the input size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .._checks import check_choice

__all__ = ["small_fcn", "resnet_fcn", "paper_model"]


class _SmallFCN(nn.Module):
    def __init__(self, out_channels, width, in_channels):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=4, dilation=4), nn.ReLU(inplace=True),
            nn.Conv2d(w, out_channels, 1))

    def forward(self, x):
        return F.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


def small_fcn(out_channels: int = 2, width: int = 16, in_channels: int = 3) -> nn.Module:
    """A small fully-convolutional net: a stride-2 3×3 convolution, three 3×3 convolutions with
    dilations 1, 2, 4 at half resolution, a 1×1 classifier and bilinear up-sampling to the input size.

    Receptive field 31×31 input pixels, ≈ ``7 · width²`` parameters (≈ 7k for width 16). Working at
    half resolution makes it about 2.5× cheaper than the same layers at full resolution, which is
    what lets Chapter 9 train dozens of models on a CPU. ``forward`` maps ``(N, in_channels, H, W)``
    to logits ``(N, out_channels, H, W)``.

    Example:
        >>> small_fcn(2)(torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
    """
    return _SmallFCN(out_channels, width, in_channels)


class _OutTensor(nn.Module):
    """torchvision's segmentation models return ``{"out": ...}``; the chapter's losses want a tensor."""

    def __init__(self, fcn):
        super().__init__()
        self.fcn = fcn

    def forward(self, x):
        return self.fcn(x)["out"]


def resnet_fcn(out_channels: int = 2, blocks: tuple[int, int] = (1, 1)) -> nn.Module:
    """torchvision's FCN with a ResNet trunk cut for a CPU (randomly initialised, no download).

    The paper trains torchvision's ``fcn_resnet101`` (official code: ``num_classes=2``,
    ``pretrained=False``). We keep the same family — torchvision's ``ResNet`` stem and
    ``BasicBlock`` stages, ``FCNHead`` and ``FCN`` (bilinear
    up-sampling of the head's scores to the input size) — and cut it to fit a 2-core CPU: stages 1
    and 2 only (``blocks`` residual blocks each, output stride 8, 128 channels), so about 0.7 M
    parameters instead of 51 M. The trunk is cut with torchvision's public
    ``create_feature_extractor`` (only the modules up to ``layer2`` are kept). ``forward`` returns the
    logits tensor (not torchvision's dict).

    Example:
        >>> resnet_fcn(2)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 2, 32, 32])
    """
    from torchvision.models import resnet
    from torchvision.models.feature_extraction import create_feature_extractor
    from torchvision.models.segmentation import FCN
    from torchvision.models.segmentation.fcn import FCNHead

    trunk = resnet.ResNet(resnet.BasicBlock, [blocks[0], blocks[1], 1, 1])
    backbone = create_feature_extractor(trunk, return_nodes={"layer2": "out"})  # drops layer3, layer4, fc
    return _OutTensor(FCN(backbone, FCNHead(128, out_channels)))


def paper_model(name: str = "fcn_resnet101", out_channels: int = 2) -> nn.Module:
    """The paper's networks for ``full`` scale: torchvision's ``fcn_resnet101`` or ``deeplabv3_resnet101``.

    Randomly initialised (``weights=None, weights_backbone=None``), as the paper's "no
    pre-training" models and the official code (``pretrained=False, num_classes=2``); the paper's
    DeepLab models were "pretrained on COCO", which a 2-channel head cannot load as is.
    ``forward`` returns the logits tensor.
    """
    from torchvision.models import segmentation

    check_choice(name, "name", ("fcn_resnet101", "deeplabv3_resnet101"))
    build = getattr(segmentation, name)
    return _OutTensor(build(weights=None, weights_backbone=None, num_classes=out_channels, aux_loss=False))
