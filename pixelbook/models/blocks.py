"""Shared building blocks of the networks: conv-norm-ReLU layers, a dilatable residual block.

``conv_bn_relu`` (BatchNorm: the ResNet-style encoders) and ``conv_gn_relu`` (GroupNorm:
batch-independent statistics, for the U-Net) are the two 3×3 layers every network here is made
of; :class:`BasicBlock` is torchvision's residual block with the dilation torchvision refuses.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

__all__ = ["conv_bn_relu", "conv_gn_relu", "BasicBlock", "count_parameters"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def conv_bn_relu(cin: int, cout: int, dilation: int = 1, stride: int = 1) -> nn.Sequential:
    """3×3 convolution (padding = dilation, no bias), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def conv_gn_relu(cin: int, cout: int, groups: int) -> nn.Sequential:
    """3×3 convolution (padding 1, no bias), GroupNorm with ``min(groups, cout)`` groups, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                         nn.GroupNorm(min(groups, cout), cout), nn.ReLU(inplace=True))


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
