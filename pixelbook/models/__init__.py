"""Generic networks: the unified multi-task model of Chapter 1, a U-Net, a DeepLab-style net, FCNs.

Every network is an ``nn.Module`` that maps an image ``(N, C, H, W)`` to outputs at the input's
size. Files by family:

=========================================  ==========================================================
module                                     contents
=========================================  ==========================================================
:mod:`~pixelbook.models.blocks`            :func:`conv_bn_relu`, :func:`conv_gn_relu`, :class:`BasicBlock`,
                                           :func:`count_parameters`
:mod:`~pixelbook.models.pixelnet`          :class:`PixelNet` (Ch. 1, one encoder, one head per task),
                                           :class:`TinyDilatedResNet`, :data:`TASKS`
:mod:`~pixelbook.models.unet`              :class:`UNet` (Ch. 2)
:mod:`~pixelbook.models.deeplab`           :class:`MiniDeepLab` (Ch. 4), :func:`deeplabv3_resnet50`
:mod:`~pixelbook.models.fcn`               :func:`small_fcn`, :func:`resnet_fcn`, :func:`paper_model` (Ch. 9)
:mod:`~pixelbook.models.embedding`         :class:`EmbeddingNet` (Ch. 6, unit pixel embeddings, CoordConv),
                                           :class:`BoundaryEmbeddingNet` (Ch. 6 full scale, BSDS500)
=========================================  ==========================================================

The Neural-ODE models of Chapter 2 (:class:`pixelbook.levelset.ContourEvolution`,
:class:`pixelbook.levelset.ImageEvolution`) are the level-set *method* and live there.
"""

from __future__ import annotations

from .blocks import BasicBlock, conv_bn_relu, conv_gn_relu, count_parameters
from .deeplab import MiniDeepLab, deeplabv3_resnet50
from .embedding import BoundaryEmbeddingNet, EmbeddingNet
from .fcn import paper_model, resnet_fcn, small_fcn
from .pixelnet import TASKS, PixelNet, TinyDilatedResNet
from .unet import UNet

__all__ = [
    "BasicBlock", "conv_bn_relu", "conv_gn_relu", "count_parameters", "PixelNet", "TinyDilatedResNet", "TASKS",
    "UNet", "MiniDeepLab", "deeplabv3_resnet50", "small_fcn", "resnet_fcn", "paper_model", "EmbeddingNet",
    "BoundaryEmbeddingNet",
]
