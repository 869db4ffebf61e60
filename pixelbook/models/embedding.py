"""A small pixel-embedding network with coordinate channels: Chapter 6's model (ours)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_shape

__all__ = ["EmbeddingNet"]


class EmbeddingNet(nn.Module):
    r"""A small fully convolutional pixel-embedding network with coordinate channels (ours).

    Two channels of normalised x/y coordinates are appended to the image (CoordConv
    [Liu et al. 2018]): a translation-equivariant network maps two identical, separated shapes to
    identical embeddings and cannot tell them apart. Then ``len(dilations)`` 3×3 conv–GroupNorm–ReLU
    layers with the given dilations (default 1, 1, 2, 4, 8, 1: receptive field 35 px, the whole of a
    32 × 32 image) and a 1×1 conv to ``dim`` channels, L2-normalised per pixel [Kong thesis, §5.5.1].
    The network of Chapter 6 (:mod:`pixelbook.meanshift`, :mod:`pixelbook.experiments.meanshift`).

    Args:
        in_channels: image channels.
        dim: embedding dimension D (thesis: 64 on VOC, 3 for plots).
        width: channels of the hidden layers.
        dilations: dilation of each hidden layer.
        coords: append the two coordinate channels.

    Example:
        >>> net = EmbeddingNet(dim=8, width=16)
        >>> e = net(torch.rand(2, 3, 20, 20)); tuple(e.shape), bool(torch.allclose(e.norm(dim=1), torch.ones(2, 20, 20)))
        ((2, 8, 20, 20), True)
    """

    def __init__(self, in_channels: int = 3, dim: int = 8, width: int = 32,
                 dilations: Sequence[int] = (1, 1, 2, 4, 8, 1), coords: bool = True):
        super().__init__()
        in_channels = check_int(in_channels, "in_channels", low=1)
        self.dim = check_int(dim, "dim", low=1)
        width = check_int(width, "width", low=1)
        if len(dilations) == 0:
            raise ValueError("`dilations`: expected at least one layer, got none")
        self.in_channels, self.coords = in_channels, bool(coords)
        layers, cin = [], in_channels + 2 * self.coords
        for i, dil in enumerate(dilations):
            dil = check_int(dil, f"dilations[{i}]", low=1)
            layers += [nn.Conv2d(cin, width, 3, padding=dil, dilation=dil, bias=False),
                       nn.GroupNorm(min(8, width), width), nn.ReLU(inplace=True)]
            cin = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, self.dim, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_shape(image, "image", f"N {self.in_channels} H W")
        if self.coords:
            N, _, H, W = image.shape
            ys = torch.linspace(-1, 1, H, device=image.device, dtype=image.dtype)
            xs = torch.linspace(-1, 1, W, device=image.device, dtype=image.dtype)
            grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")).expand(N, 2, H, W)
            image = torch.cat([image, grid], 1)
        return F.normalize(self.head(self.body(image)), dim=1)
