"""A CPU-sized DeepLabv3-style network (Chapter 4): output stride 4, ASPP-lite [RMI, Sec. 5.1; DeepLabv3]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_shape
from .blocks import BasicBlock

__all__ = ["MiniDeepLab"]


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
