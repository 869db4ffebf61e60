r"""Pixel-wise Attentional Gating inside a ResNet bottleneck [KONG, §4.3.1, Eqs. 4.1–4.2].

A gated residual block computes its residual only where a binary mask :math:`\mathbf G` is 1:

.. math:: \mathbf O = \bar{\mathbf G}\odot\mathbf I + \mathbf G\odot(\mathcal F_{\mathbf G}(\mathbf I) + \mathbf I)
          = \mathbf I + \mathbf G \odot \mathcal F_{\mathbf G}(\mathbf I)   \qquad [KONG, Eq. 4.1]

In a bottleneck :math:`\mathcal F = \mathcal F^3\circ\mathcal F^2\circ\mathcal F^1` (1×1 reduce, 3×3,
1×1 restore) the gate is computed from :math:`\mathbf I` *in parallel with* :math:`\mathcal F^1`, so
gating does not delay the block, and :math:`\mathcal F^2, \mathcal F^3` run only where
:math:`\mathbf G = 1` [KONG, Eq. 4.2]:

.. math:: \mathbf X = \mathcal F^1(\mathbf I),\ \mathbf G = \mathcal G(\mathbf I);\quad
          \mathbf Y = \mathcal F^2_{\mathbf G}(\mathbf X);\quad
          \mathbf Z = \mathcal F^3_{\mathbf G}(\bar{\mathbf G}\odot\mathbf X + \mathbf G\odot\mathbf Y);\quad
          \mathbf O = \mathbf I + \mathbf Z .

Because :math:`\mathcal F^3_{\mathbf G}` is evaluated only where :math:`\mathbf G = 1`, its input there is
:math:`\mathbf Y` and :math:`\mathbf Z = \mathbf G\odot\mathcal F^3(\mathbf Y)`: the
:math:`\bar{\mathbf G}\odot\mathbf X` term never reaches the output and Eq. 4.2 is Eq. 4.1. We implement
exactly that. (The released MatConvNet code instead runs :math:`\mathcal F^3` densely on
:math:`\bar{\mathbf G}\odot\mathbf X + \mathbf G\odot\mathbf Y`, so skipped pixels still receive
:math:`\mathcal F^3(\mathbf X)`; its FLOP count would then gate only :math:`\mathcal F^2`.) With
torchvision's bottleneck, which applies a ReLU after the sum and a projection shortcut
:math:`\mathcal P` where the shape changes, the block computes
:math:`\mathbf O = \mathrm{ReLU}(\mathcal P(\mathbf I) + \mathbf G\odot\mathcal F(\mathbf I))`, so
:math:`\mathbf G \equiv 1` is torchvision's block exactly.

The gate :math:`\mathcal G` is a 1×1 convolution of :math:`\mathbf I` to two logits {skip, compute}
with the block's stride (released code), followed by a :class:`~pixelbook.gating.gumbel.GumbelGate`.
``granularity="image"`` replaces it by one decision per image from the globally averaged input, the
layer-skipping baseline of [KONG, Table 4.2] (after ConvNet-AIG [327], simplified to one linear
layer, stored as the same 1×1 convolution applied to the averaged input, so the two kinds of gate
have the same parameters, initialised alike).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_finite, check_float, check_int, check_shape
from ..ops.gated_conv import gated_conv2d
from .gumbel import GumbelGate

__all__ = ["PAGBottleneck", "insert_pag", "INIT_COMPUTE_PROB"]

#: Initial probability that a gate computes (ours): the gate bias starts at logit(0.9), so a gate
#: inserted into a trained network starts (in eval: exactly) as the plain block.
INIT_COMPUTE_PROB = 0.9


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm folded into the preceding bias-free convolution: ``(weight, bias)``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale[:, None, None, None], bias


class PAGBottleneck(nn.Module):
    r"""A ResNet bottleneck whose residual is computed only at the pixels its gate selects [KONG, Eq. 4.2].

    Same layers and names as ``torchvision.models.resnet.Bottleneck`` (``conv1 bn1 conv2 bn2 conv3
    bn3 downsample``, output ``planes·expansion`` channels, stride and dilation on ``conv2``), plus
    ``gate`` (logits) and ``gumbel``. ``forward(I)`` returns
    :math:`\mathrm{ReLU}(\mathcal P(\mathbf I) + \mathbf G\odot\mathcal F(\mathbf I))` and records
    ``last_mask`` :math:`\mathbf G` ``(N, 1, H_out, W_out)`` (straight-through sample in training,
    deterministic argmax in eval) and ``last_prob`` (the clean probability of "compute").

    Args:
        inplanes: input channels.
        planes: bottleneck width; output has ``planes·expansion`` channels.
        stride: of ``conv2`` and the gate (default 1).
        dilation: of ``conv2`` (default 1).
        expansion: output / bottleneck width (default 4, ResNet-50).
        granularity: ``"pixel"`` (default, PAG), ``"image"`` (one gate per image: layer skipping) or
            ``"none"`` (no gate: the plain bottleneck, for dense and truncated baselines).
        execution: ``"dense"`` (default; ``G ⊙ F(I)``, needed for training) or ``"sparse"``
            (eval only: ``conv2``/``conv3`` with BN folded run through
            :func:`pixelbook.ops.gated_conv2d` at the active pixels only).
        tau: initial Gumbel temperature (default 1.0).
        init_compute_prob: initial P(compute) of the gate bias (default :data:`INIT_COMPUTE_PROB`).

    Attributes:
        force: ``None`` (default) or a number / ``(N, 1, H_out, W_out)`` tensor used as
            :math:`\mathbf G` instead of the gate (``1.0``: the plain block; ``0.0``: skip). The
            gate's logits are still computed (``last_prob``), but no Gumbel noise is drawn.

    Example:
        >>> block = PAGBottleneck(16, 4).eval()
        >>> y = block(torch.randn(2, 16, 8, 8))
        >>> tuple(y.shape), tuple(block.last_mask.shape)
        ((2, 16, 8, 8), (2, 1, 8, 8))
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, expansion: int = 4,
                 granularity: str = "pixel", execution: str = "dense", tau: float = 1.0,
                 init_compute_prob: float = INIT_COMPUTE_PROB):
        super().__init__()
        inplanes, planes = check_int(inplanes, "inplanes", 1), check_int(planes, "planes", 1)
        stride, dilation = check_int(stride, "stride", 1), check_int(dilation, "dilation", 1)
        self.expansion = check_int(expansion, "expansion", 1)
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (None if stride == 1 and inplanes == out else
                           nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out)))
        self.stride = stride
        self._init_gate(inplanes, granularity, execution, tau, init_compute_prob)

    def _init_gate(self, inplanes, granularity, execution, tau, init_compute_prob):
        check_choice(granularity, "granularity", ("pixel", "image", "none"))
        check_choice(execution, "execution", ("dense", "sparse"))
        p = check_float(init_compute_prob, "init_compute_prob", 0, 1, low_open=True, high_open=True)
        self.granularity, self.execution, self.inplanes = granularity, execution, inplanes
        if granularity == "none":  # a plain bottleneck (G = 1), for dense and truncated baselines
            self.gate, self.gumbel = None, None
        else:
            # one 1x1 convolution either way: per pixel, or on the averaged input (per image)
            self.gate = nn.Conv2d(inplanes, 2, 1, stride=self.stride if granularity == "pixel" else 1)
            nn.init.zeros_(self.gate.weight)  # ours: the bias alone sets the start (every pixel alike)
            with torch.no_grad():
                self.gate.bias.copy_(torch.tensor([0.0, math.log(p / (1 - p))]))
            self.gumbel = GumbelGate(tau)
        self.force = None
        self.last_mask: torch.Tensor | None = None
        self.last_prob: torch.Tensor | None = None

    @classmethod
    def from_bottleneck(cls, block: nn.Module, granularity: str = "pixel", execution: str = "dense",
                        tau: float = 1.0, init_compute_prob: float = INIT_COMPUTE_PROB) -> "PAGBottleneck":
        """A PAG block sharing the layers (and weights) of a ``torchvision.models.resnet.Bottleneck``."""
        needed = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample")
        if not all(hasattr(block, a) for a in needed):
            raise TypeError(f"`block`: expected a torchvision Bottleneck (with {', '.join(needed)}), "
                            f"got {type(block).__name__}")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        for name in needed:
            setattr(self, name, getattr(block, name))
        self.relu = nn.ReLU(inplace=True)
        self.stride = self.conv2.stride[0]
        self.expansion = self.conv3.out_channels // self.conv1.out_channels
        self._init_gate(self.conv1.in_channels, granularity, execution, tau, init_compute_prob)
        return self.to(block.conv1.weight.device)

    def _mask(self, I: torch.Tensor, out_hw) -> torch.Tensor:
        if self.granularity == "none":
            G = I.new_ones(I.shape[0], 1, *out_hw)
            self.last_prob = G
        else:
            if self.granularity == "pixel":
                logits = self.gate(I)                                   # (N, 2, H_out, W_out)
            else:
                logits = self.gate(I.mean((2, 3), keepdim=True))       # (N, 2, 1, 1)
            if self.force is None:
                G = self.gumbel(logits)[:, 1:2]
            else:  # the decision is replaced: nothing to sample (so no random numbers are drawn)
                check_finite(logits, "gate logits")
                self.gumbel.last_prob = logits.softmax(1)
            self.last_prob = self.gumbel.last_prob[:, 1:2].expand(-1, -1, *out_hw)
        if self.force is not None:  # the gate still runs (and costs); only its decision is replaced
            force = self.force
            if not torch.is_tensor(force):
                force = I.new_full((I.shape[0], 1, *out_hw), float(force))
            check_shape(force, "force", "N 1 H W", {"N": (I.shape[0], "I"), "H": (out_hw[0], "output"),
                                                   "W": (out_hw[1], "output")})
            return force.to(I.dtype)
        return G.expand(-1, -1, *out_hw) if self.granularity == "image" else G

    def forward(self, I: torch.Tensor) -> torch.Tensor:
        check_shape(I, "I", f"N {self.conv1.in_channels} H W")
        check_finite(I, "I")
        X = self.relu(self.bn1(self.conv1(I)))                          # F1, dense (runs beside the gate)
        self.conv1_hw = tuple(X.shape[-2:])
        s = self.stride
        out_hw = ((I.shape[-2] - 1) // s + 1, (I.shape[-1] - 1) // s + 1)
        G = self._mask(I, out_hw)
        self.last_mask = G
        shortcut = I if self.downsample is None else self.downsample(I)
        if self.execution == "sparse" and not self.training:
            if self.conv2.groups != 1:
                raise ValueError("`execution`: the sparse path supports groups=1 only")
            mask = G.detach()
            w2, b2 = _fold(self.conv2, self.bn2)
            Y = F.relu(gated_conv2d(X, w2, mask, b2, stride=s, dilation=self.conv2.dilation[0], impl="sparse"))
            w3, b3 = _fold(self.conv3, self.bn3)
            Z = gated_conv2d(Y, w3, mask, b3, impl="sparse")            # exactly 0 where G = 0
            return F.relu(shortcut + Z)
        Y = self.relu(self.bn2(self.conv2(X)))                          # F2
        Z = self.bn3(self.conv3(Y))                                     # F3
        return F.relu(shortcut + G * Z)                                 # Eq. 4.1

    def flop_convs(self) -> list:
        """``(conv, mask)`` for the gated convolutions: ``conv2`` and ``conv3`` cost only where G = 1.

        With ``granularity="image"`` the decision is known before the block starts, so a skipped
        image skips ``conv1`` too (layer skipping skips the whole residual branch).
        """
        if self.last_mask is None:
            return []
        mask = self.last_mask.detach()
        gated = [(self.conv2, mask), (self.conv3, mask)]
        if self.granularity == "none":
            return []
        if self.granularity == "image":
            H, W = self.conv1_hw
            gated.append((self.conv1, mask[:, :, :1, :1].expand(-1, -1, H, W)))
        return gated

    def extra_repr(self) -> str:
        return f"granularity={self.granularity!r}, execution={self.execution!r}"


def insert_pag(model: nn.Module, layers=("layer1", "layer2", "layer3", "layer4"), granularity: str = "pixel",
               execution: str = "dense", tau: float = 1.0,
               init_compute_prob: float = INIT_COMPUTE_PROB) -> list:
    """Replace, in place, every torchvision ``Bottleneck`` under ``model.<layer>`` by a :class:`PAGBottleneck`.

    The new blocks share the old blocks' layers (weights, BN statistics), so with gates forced to 1
    (or, in eval, at the initial gate bias) the network computes what it computed before. The
    thesis inserts the gates "layer-by-layer" and fine-tunes after each [KONG, §4.3.3]; call this
    with one layer name at a time to do the same.

    Args:
        model: a torchvision ResNet (or any module with those children).
        layers: names of the children to convert (default: all four stages).
        granularity, execution, tau, init_compute_prob: passed to :class:`PAGBottleneck`.

    Returns:
        The list of inserted blocks, in network order.

    Example:
        >>> import torchvision
        >>> net = torchvision.models.resnet50(weights=None)
        >>> len(insert_pag(net, layers=("layer4",)))
        3
    """
    from torchvision.models.resnet import Bottleneck

    if isinstance(layers, str):
        layers = (layers,)
    inserted = []
    for name in layers:
        stage = getattr(model, name, None)
        if not isinstance(stage, nn.Module):
            raise ValueError(f"`layers`: `model` has no submodule {name!r}")
        for child_name, child in list(stage.named_children()):
            if isinstance(child, Bottleneck):
                block = PAGBottleneck.from_bottleneck(child, granularity, execution, tau, init_compute_prob)
                setattr(stage, child_name, block)
                inserted.append(block)
    if not inserted:
        raise ValueError(f"`layers`: no torchvision Bottleneck found under {tuple(layers)}")
    return inserted
