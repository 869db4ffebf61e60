"""DeepLabv3-style networks: a CPU-sized one (Chapter 4's ``small``/``medium``: output stride 4, ASPP-lite
[RMI, Sec. 5.1; DeepLabv3]) and torchvision's DeepLabV3-ResNet50 for the ``full`` scale of Chapters 3, 4 and 6."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_shape
from .blocks import BasicBlock

__all__ = ["MiniDeepLab", "deeplabv3_resnet50", "DEEPLAB_WEIGHTS", "BACKBONE_WEIGHTS"]

#: Whole-network weights :func:`deeplabv3_resnet50` accepts (torchvision's ``DeepLabV3_ResNet50_Weights``):
#: trained on a COCO subset with the 20 PASCAL VOC categories, output stride 8 (a 161 MB download).
DEEPLAB_WEIGHTS = ("COCO_WITH_VOC_LABELS_V1",)
#: ImageNet weights of the ResNet-50 trunk (torchvision's ``ResNet50_Weights``; a 98 MB download).
BACKBONE_WEIGHTS = ("IMAGENET1K_V1", "IMAGENET1K_V2")


class _ASPPLite(nn.Module):
    """ASPP-lite: 1×1, two dilated 3×3 and image pooling branches, concatenated and fused by a 1×1."""

    def __init__(self, cin: int, width: int, rates=(2, 4)):
        super().__init__()

        def cbr(k, r):
            return nn.Sequential(nn.Conv2d(cin, width, k, padding=r if k == 3 else 0, dilation=r, bias=False),
                                 nn.BatchNorm2d(width), nn.ReLU(inplace=True))

        self.branches = nn.ModuleList([cbr(1, 1)] + [cbr(3, r) for r in rates])
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, width, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(nn.Conv2d(width * (len(rates) + 2), width, 1, bias=False),
                                     nn.BatchNorm2d(width), nn.ReLU(inplace=True))

    def forward(self, x):
        feats = [b(x) for b in self.branches]
        feats.append(self.image_pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(feats, 1))


class MiniDeepLab(nn.Module):
    r"""A CPU-sized DeepLabv3-style network: output stride 4, ASPP-lite, bilinear up-sampling of logits.

    stem conv 3×3/2 → conv 3×3/2 (output stride 4) → residual blocks with dilation 1 and 2 →
    ASPP-lite (1×1, 3×3 at rates 2 and 4, image pooling) → 1×1 classifier → bilinear ×4 to the input
    size, before the loss, as the paper does with DeepLabv3 at output stride 16 [RMI, Sec. 5.1;
    DeepLabv3]. A coarse output plus a per-pixel loss is where thin structures suffer.

    Args:
        num_classes: output channels.
        width: channels of the backbone and the ASPP branches.
        in_channels: input image channels.

    Example:
        >>> MiniDeepLab(3, width=16)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, num_classes: int, width: int = 32, in_channels: int = 3):  # noqa: D107
        super().__init__()
        check_int(num_classes, "num_classes", low=1)
        w = check_int(width, "width", low=1)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(w // 2), nn.ReLU(inplace=True),
            nn.Conv2d(w // 2, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(BasicBlock(w, w, dilation=1), BasicBlock(w, w, dilation=2))
        self.aspp = _ASPPLite(w, w)
        self.classifier = nn.Conv2d(w, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` → logits ``(N, num_classes, H, W)``."""
        check_shape(image, "image", "N C H W")
        size = image.shape[-2:]
        logits = self.classifier(self.aspp(self.blocks(self.stem(image))))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class _Logits(nn.Module):
    """torchvision's segmentation models return ``{"out": ...}``; this returns the tensor."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, num_classes, H, W)`` (bilinearly up-sampled to the input size)."""
        return self.net(image)["out"]


def deeplabv3_resnet50(num_classes: int, *, output_stride: int = 8, weights: str | None = None,
                       weights_backbone: str | None = None, frozen_batchnorm: bool = False) -> nn.Module:
    r"""torchvision's DeepLabV3 with a ResNet-50 trunk, returning the logits tensor (``full`` scale).

    The trunk's last stages are dilated instead of strided [DeepLabv3]: ``output_stride=8`` is
    torchvision's own network (``layer3`` and ``layer4`` dilated 2 and 4, ASPP rates 12, 24, 36);
    ``output_stride=16`` dilates ``layer4`` only, with ASPP rates 6, 12, 18 — DeepLabv3's training
    setting and RMI's [RMI, Sec. 5.1]. The ASPP head ends in a 1×1 classifier; the scores are
    bilinearly up-sampled to the input size. No auxiliary head.

    Args:
        num_classes: output channels (classes, or the embedding dimension of Chapter 6).
        output_stride: 8 or 16.
        weights: ``None`` or one of :data:`DEEPLAB_WEIGHTS` (the whole network; output stride 8
            only). With ``num_classes != 21`` the last 1×1 classifier is replaced by a freshly
            initialised one.
        weights_backbone: ``None`` or one of :data:`BACKBONE_WEIGHTS` (ImageNet ResNet-50), when
            ``weights`` is ``None``.
        frozen_batchnorm: every BatchNorm layer (trunk and ASPP head) becomes a
            ``torchvision.ops.FrozenBatchNorm2d`` with its current statistics and affine parameters,
            fixed: "BatchNorm frozen (global moments used in train and test)", for training with
            batch 1 [Kong thesis, §5.5.1]. A fresh head's layers are then identities. Without it, the
            head's image-pooling branch cannot train on a batch of one image.

    Downloads the weights on first use (torchvision's cache); ``None`` for both builds offline.

    Example:
        >>> net = deeplabv3_resnet50(3, output_stride=16)
        >>> net(torch.rand(2, 3, 33, 33)).shape
        torch.Size([2, 3, 33, 33])
    """
    from torchvision.models import ResNet50_Weights, resnet50
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights
    from torchvision.models.segmentation import deeplabv3_resnet50 as tv_deeplabv3_resnet50
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

    from .._checks import check_choice

    num_classes = check_int(num_classes, "num_classes", low=1)
    check_choice(output_stride, "output_stride", (8, 16))
    if weights is not None:
        check_choice(weights, "weights", DEEPLAB_WEIGHTS)
        if output_stride != 8:
            raise ValueError(f"`output_stride`: the {weights} weights were trained at output stride 8, "
                             f"got {output_stride}")
        if weights_backbone is not None:
            raise ValueError(f"`weights_backbone`: give it or `weights` (which includes the trunk), not both; "
                             f"got {weights_backbone!r} and {weights!r}")
        net = tv_deeplabv3_resnet50(weights=DeepLabV3_ResNet50_Weights[weights])
        net.aux_classifier = None
        if num_classes != 21:
            net.classifier[-1] = nn.Conv2d(net.classifier[-1].in_channels, num_classes, 1)
    else:
        if weights_backbone is not None:
            check_choice(weights_backbone, "weights_backbone", BACKBONE_WEIGHTS)
        trunk = resnet50(weights=ResNet50_Weights[weights_backbone] if weights_backbone else None,
                         replace_stride_with_dilation=[False, output_stride == 8, True])
        backbone = IntermediateLayerGetter(trunk, return_layers={"layer4": "out"})
        rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
        net = DeepLabV3(backbone, DeepLabHead(2048, num_classes, atrous_rates=rates))
    if frozen_batchnorm:
        _freeze_batchnorm(net)
    return _Logits(net)


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` inside ``module`` by a ``FrozenBatchNorm2d`` with its statistics, in place."""
    from torchvision.ops import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):  # (with torch.no_grad: the copies are not part of any graph)
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)
