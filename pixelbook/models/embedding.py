"""Chapter 6's pixel-embedding networks: a small one with coordinate channels (ours) and the thesis'
BSDS500 boundary network on a ResNet-50."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_shape

__all__ = ["EmbeddingNet", "BoundaryEmbeddingNet"]


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


class BoundaryEmbeddingNet(nn.Module):
    """The thesis' BSDS500 boundary network [Kong thesis, §5.5.2]: ResNet-50 branches embed, a fusion layer scores.

    torchvision's ResNet-50 with ``layer3`` and ``layer4`` dilated (output stride 8); after each of
    ``layer1`` ... ``layer4`` (ResBlock 2-5) a 1 x 1 convolution to ``dim`` channels, up-sampled
    bilinearly to the input size and L2-normalised per pixel; a 1 x 1 convolution of the ``4 dim``
    concatenated embeddings gives the boundary logit. A ``step`` buffer counts training steps (the
    two-stage loss reads it; saved with the weights, so a resumed run continues its schedule).

    ``forward(image)`` returns ``{"embeddings": [four (N, dim, H, W)], "boundary": (N, 1, H, W) logits}``.

    Args:
        dim: the embedding dimension (3 in the thesis).
        weights_backbone: ``None`` (random, offline) or a ``ResNet50_Weights`` name, e.g. ``"IMAGENET1K_V1"``.
        frozen_batchnorm: every BatchNorm of the trunk a ``FrozenBatchNorm2d`` ("we fix the batch
            normalization in ResNet backbone", §5.5.1).
    """

    STAGE_CHANNELS = (256, 512, 1024, 2048)

    def __init__(self, dim: int = 3, *, weights_backbone: str | None = None, frozen_batchnorm: bool = True):
        super().__init__()
        from torchvision.models import ResNet50_Weights, resnet50
        from torchvision.ops import FrozenBatchNorm2d

        dim = check_int(dim, "dim", low=1)
        weights = None if weights_backbone is None else ResNet50_Weights[weights_backbone]
        trunk = resnet50(weights=weights, replace_stride_with_dilation=[False, True, True],
                         norm_layer=FrozenBatchNorm2d if frozen_batchnorm else None)
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool)
        self.stages = nn.ModuleList([trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4])
        self.branches = nn.ModuleList([nn.Conv2d(c, dim, 1) for c in self.STAGE_CHANNELS])
        self.fuse = nn.Conv2d(len(self.STAGE_CHANNELS) * dim, 1, 1)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def advance(self) -> int:
        """The current training step; counts it (called once per training step by the loss)."""
        step = int(self.step)
        self.step += 1
        return step

    def forward(self, image: torch.Tensor) -> dict:
        check_shape(image, "image", "N 3 H W")
        size = image.shape[-2:]
        x, embeddings = self.stem(image), []
        for stage, branch in zip(self.stages, self.branches):
            x = stage(x)
            e = F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False)
            embeddings.append(F.normalize(e, dim=1))
        return {"embeddings": embeddings, "boundary": self.fuse(torch.cat(embeddings, 1))}
