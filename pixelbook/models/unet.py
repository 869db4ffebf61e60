"""A small U-Net: the initial contour and the regression baseline of Chapter 2 [NODE-LS, §4.4]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_shape
from .blocks import conv_gn_relu

__all__ = ["UNet"]


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
        >>> from pixelbook.models import count_parameters
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
            self.down.append(nn.Sequential(conv_gn_relu(cin, c, groups), conv_gn_relu(c, c, groups)))
            cin = c
        self.up = nn.ModuleList(
            nn.Sequential(conv_gn_relu(ch[level + 1] + ch[level], ch[level], groups),
                          conv_gn_relu(ch[level], ch[level], groups))
            for level in reversed(range(depth)))
        self.out = nn.Conv2d(ch[0], out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` → ``(N, out_channels, H, W)``."""
        check_shape(image, "image", f"N {self.in_channels} H W")
        x, skips = image, []
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
