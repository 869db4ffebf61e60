r"""Predictive Filter Flow (PFF): a network predicts a filter per pixel [KONG, Ch. 6].

Filter flow writes an image transformation as :math:`I_2 = T I_1` with one local filter per output
pixel [KONG, Eq. 6.1]; estimating :math:`T` for a pair of images is a huge, under-determined
optimisation. PFF *predicts* it from the degraded image alone, :math:`\hat T = f_w(I_1)`
[KONG, Eq. 6.2], and trains :math:`f_w` on simulated pairs with an L1 loss on
:math:`\hat T I_1 - I_2` [KONG, Eq. 6.3]:

* :class:`TwoStreamNet` — the thesis' two-stream predictor [KONG, §6.3.2]: a deep stream with
  residual blocks, pooling and up-sampling (large receptive field) beside a shallow full-resolution
  stream without pooling (against the aliasing of pooling), BatchNorm between convolution and ReLU,
  fused by a final convolution. Ours is ResNet-18-*like*, not ResNet-18: widths and depths are
  arguments so that the ``small`` scale trains on a CPU.
* :class:`PredictiveFilterFlow` — the two-stream net with :math:`k^2` output channels, turned into
  filters by a softmax over the taps (non-negative, summing to one: the thesis' constraint for
  deblurring) or used free-form (JPEG, super-resolution), then applied with
  :func:`pixelbook.ops.apply_filter_flow`.
* :class:`DirectCNN` — the thesis' "CNN" baseline: the same two-stream net trained to output the
  image directly (ours adds the input, a residual output; the thesis does not say).

And the tools of the chapter's derivation and analysis: :func:`local_envelope` (the window's
min/max, which bounds any softmax filter flow), :func:`filter_pca_energy` (how much filter energy
the top principal components hold [KONG, §6.5]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_dtype, check_finite, check_float, check_int, check_shape
from ..ops.filter_flow import _check_dilation, apply_filter_flow, filter_size

__all__ = ["TwoStreamNet", "PredictiveFilterFlow", "DirectCNN", "FILTER_NORMALIZATIONS", "local_envelope",
           "filter_pca_energy"]

#: How the predicted :math:`k^2` channels become filters: ``"softmax"`` (non-negative, sum to one;
#: the thesis' deblurring model) or ``"none"`` (free-form; the thesis' JPEG and SR models) [KONG, §6.3.1].
FILTER_NORMALIZATIONS = ("softmax", "none")


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    # [KONG, §6.3.2]: "Batch normalization is also inserted between a convolution layer and ReLU"
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))``: a ResNet basic block at constant width."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(width, width), nn.Conv2d(width, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width))

    def forward(self, x):
        return F.relu(x + self.body(x))


class TwoStreamNet(nn.Module):
    """The two-stream predictor of PFF [KONG, §6.3.2, Fig. 6.1], sized by its arguments.

    Deep stream: a 3×3 stem, then ``levels`` times (2×2 max-pool, a 3×3 conv doubling the width,
    ``blocks`` residual blocks); then back up, each level a bilinear ×2 up-sampling, a 3×3 conv and
    the skip connection from the encoder at that resolution (added). Full-resolution stream:
    ``fullres_layers`` 3×3 convs at ``fullres_width`` channels, no pooling. Fusion: concatenation,
    a 3×3 conv to ``width`` channels, a 1×1 conv to ``out_channels`` (so two heads with different
    ``out_channels`` differ in parameters only by ``width · Δout_channels``).

    Args:
        in_channels: input channels (3 for RGB).
        out_channels: output channels (``k²`` for PFF, ``C`` for the direct CNN).
        width: channels of the stem and of the fusion layer (ours: 32 at ``small`` scale).
        levels: poolings in the deep stream (the thesis' ResNet-18 has 5 down-samplings; ours 2 for
            48-64 px patches). ``H`` and ``W`` must be divisible by ``2**levels``.
        blocks: residual blocks per level (ResNet-18 has 2).
        fullres_width: channels of the full-resolution stream.
        fullres_layers: convs in the full-resolution stream.

    Example:
        >>> net = pb.filterflow.TwoStreamNet(3, 25, width=8, fullres_width=4)
        >>> tuple(net(torch.rand(2, 3, 16, 16)).shape)
        (2, 25, 16, 16)
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 32, levels: int = 2, blocks: int = 1,
                 fullres_width: int = 16, fullres_layers: int = 3):
        super().__init__()
        in_channels = check_int(in_channels, "in_channels", low=1)
        out_channels = check_int(out_channels, "out_channels", low=1)
        width, levels = check_int(width, "width", low=1), check_int(levels, "levels", low=0)
        blocks = check_int(blocks, "blocks", low=0)
        fullres_width = check_int(fullres_width, "fullres_width", low=1)
        fullres_layers = check_int(fullres_layers, "fullres_layers", low=1)
        self.levels = levels
        self.stem = _conv_bn_relu(in_channels, width)
        widths = [width * 2 ** i for i in range(levels + 1)]
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _conv_bn_relu(widths[i], widths[i + 1]),
                          *[_Residual(widths[i + 1]) for _ in range(blocks)])
            for i in range(levels))
        self.up = nn.ModuleList(_conv_bn_relu(widths[i + 1], widths[i]) for i in reversed(range(levels)))
        self.fullres = nn.Sequential(_conv_bn_relu(in_channels, fullres_width),
                                     *[_conv_bn_relu(fullres_width, fullres_width) for _ in range(fullres_layers - 1)])
        self.fuse = _conv_bn_relu(width + fullres_width, width)
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, "x", "N C H W")
        H, W = x.shape[-2:]
        if H % 2 ** self.levels or W % 2 ** self.levels:
            raise ValueError(f"`x`: expected H and W divisible by 2**levels = {2 ** self.levels}, got {H}×{W}")
        skips = [self.stem(x)]                         # (N, width, H, W)
        for down in self.down:
            skips.append(down(skips[-1]))              # (N, width·2^l, H/2^l, W/2^l)
        y = skips.pop()
        for up in self.up:
            skip = skips.pop()
            y = skip + up(F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False))
        return self.head(self.fuse(torch.cat([y, self.fullres(x)], dim=1)))


class PredictiveFilterFlow(nn.Module):
    r"""Predictive Filter Flow [KONG, Eqs. 6.2-6.3]: ``out = apply_filter_flow(x, T)``, ``T = f_w(x)``.

    The two-stream net predicts :math:`k^2` channels per pixel; ``normalize="softmax"`` makes them
    non-negative weights summing to one (the thesis' deblurring model: brightness is kept and the
    output stays inside the local min/max of the input, see :func:`local_envelope`);
    ``normalize="none"`` leaves them free (JPEG, super-resolution: "so that it is able to enhance
    over block effects" [KONG, §6.3.1]).

    Initialisation (ours; the thesis does not say): the last layer starts at zero and a fixed
    offset is added to its output, so that at step 0 the free-form model is exactly the identity
    filter and the softmax model puts ``identity_weight`` of the mass on the centre tap and the rest
    evenly on the others. Starting from "leave the image as it is" rather than from a box blur
    (what zero logits give) lets a small model improve on its input from the first steps.

    Args:
        in_channels: image channels.
        kernel_size: :math:`k`, odd. Thesis: 17 for deblurring (blur up to 30 px) [KONG, §6.4.2];
            not stated for JPEG and SR.
        normalize: one of :data:`FILTER_NORMALIZATIONS`.
        dilation: tap spacing of the filters (1 in the thesis).
        identity_weight: initial centre-tap weight of the ``"softmax"`` filters, in (0, 1); default
            0.9 (ours). Ignored for ``"none"`` (exact identity).
        **trunk: keyword arguments of :class:`TwoStreamNet` (``width``, ``levels``, ...).

    Returns (forward):
        dict with ``"out"`` ``(N, C, H, W)`` the filtered image and ``"filters"``
        ``(N, k*k, H, W)`` the per-pixel filters.

    Example:
        >>> model = pb.filterflow.PredictiveFilterFlow(3, kernel_size=5, width=8, fullres_width=4)
        >>> x = torch.rand(1, 3, 16, 16)
        >>> res = model.eval()(x)
        >>> tuple(res["filters"].shape), torch.allclose(res["filters"].sum(1), torch.ones(1, 16, 16))
        ((1, 25, 16, 16), True)
    """

    def __init__(self, in_channels: int = 3, kernel_size: int = 17, normalize: str = "softmax", dilation: int = 1,
                 identity_weight: float = 0.9, **trunk):
        super().__init__()
        kernel_size = check_int(kernel_size, "kernel_size", low=1)
        if kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size`: expected an odd integer, got {kernel_size}")
        check_choice(normalize, "normalize", FILTER_NORMALIZATIONS)
        self.kernel_size, self.normalize, self.dilation = kernel_size, normalize, _check_dilation(dilation)
        taps = kernel_size * kernel_size
        self.net = TwoStreamNet(in_channels, taps, **trunk)
        nn.init.zeros_(self.net.head.weight)
        nn.init.zeros_(self.net.head.bias)
        self.identity_weight = check_float(identity_weight, "identity_weight", low=0.0, high=1.0, low_open=True,
                                           high_open=True)
        centre = torch.zeros(taps)
        if normalize == "softmax" and taps > 1:
            # softmax puts p = e^a / (e^a + taps - 1) on a centre logit a: solve for a
            p = self.identity_weight
            centre[taps // 2] = math.log(p * (taps - 1) / (1 - p))
        else:
            centre[taps // 2] = 1.0
        self.register_buffer("identity", centre.view(1, taps, 1, 1), persistent=False)

    def filters(self, x: torch.Tensor) -> torch.Tensor:
        """The per-pixel filters ``(N, k*k, H, W)`` predicted for ``x``."""
        logits = self.net(x) + self.identity
        return torch.softmax(logits, dim=1) if self.normalize == "softmax" else logits

    def forward(self, x: torch.Tensor) -> dict:
        check_dtype(x, "x", "float")
        filters = self.filters(x)
        return {"out": apply_filter_flow(x, filters, dilation=self.dilation), "filters": filters}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, normalize={self.normalize!r}, dilation={self.dilation}"


class DirectCNN(nn.Module):
    """The baseline "CNN" of [KONG, §6.3.2, Table 6.1]: the two-stream net predicting the image.

    ``out = x + f_w(x)`` (a residual output, ours: the thesis says only that the CNN outputs the
    image; the residual form starts at the identity like :class:`PredictiveFilterFlow`). The last
    layer starts at zero.

    Args:
        in_channels: image channels (also the output's).
        **trunk: keyword arguments of :class:`TwoStreamNet`.

    Returns (forward):
        dict with ``"out"`` ``(N, C, H, W)``.
    """

    def __init__(self, in_channels: int = 3, **trunk):
        super().__init__()
        self.net = TwoStreamNet(in_channels, in_channels, **trunk)
        nn.init.zeros_(self.net.head.weight)
        nn.init.zeros_(self.net.head.bias)

    def forward(self, x: torch.Tensor) -> dict:
        check_dtype(x, "x", "float")
        return {"out": x + self.net(x)}


def local_envelope(image: torch.Tensor, kernel_size: int, dilation: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The min and max of each pixel's ``k × k`` window, zeros outside the image included.

    Any softmax filter flow is a convex combination of its window, so its output lies between these
    two maps (with the zero padding of :func:`pixelbook.ops.apply_filter_flow`) [KONG, §6.3.1].

    Args:
        image: ``(N, C, H, W)`` float.
        kernel_size: odd ``k``.
        dilation: tap spacing.

    Returns:
        ``(low, high)``, each ``(N, C, H, W)``.

    Example:
        >>> low, high = pb.filterflow.local_envelope(torch.tensor([[[[1.0, 5.0, 3.0]]]]), 3)
        >>> low.tolist(), high.tolist()
        ([[[[0.0, 0.0, 0.0]]]], [[[[5.0, 5.0, 5.0]]]])
    """
    check_shape(image, "image", "N C H W")
    check_dtype(image, "image", "float")
    k = check_int(kernel_size, "kernel_size", low=1)
    if k % 2 == 0:
        raise ValueError(f"`kernel_size`: expected an odd integer, got {k}")
    d = _check_dilation(dilation)
    padded = F.pad(image, [(k // 2) * d] * 4)
    high = F.max_pool2d(padded, k, stride=1, dilation=d)
    low = -F.max_pool2d(-padded, k, stride=1, dilation=d)
    return low, high


def filter_pca_energy(filters: torch.Tensor, num_components: int = 10, centered: bool = False) -> torch.Tensor:
    r"""Cumulative fraction of filter energy in the top principal components [KONG, §6.5].

    Every pixel's filter is a :math:`k^2`-vector; with the singular values :math:`s_i` of the
    ``(pixels, k²)`` matrix, the top-:math:`m` fraction is :math:`\sum_{i\le m} s_i^2 / \sum_i s_i^2`.
    The thesis reports 99.65 % / 99.99 % / 99.99 % for the top 10 (deblur / JPEG / SR) without saying
    whether the filters were centred; ``centered=False`` (default) measures the energy
    :math:`\sum\|f\|^2` itself, ``centered=True`` the variance around the mean filter.

    Args:
        filters: ``(N, k*k, H, W)`` per-pixel filters (all pixels of all images are pooled).
        num_components: ``m``, how many cumulative fractions to return (at most ``k²``).
        centered: subtract the mean filter first.

    Returns:
        ``(num_components,)`` float64, non-decreasing, the last ``<= 1``.

    Example:
        >>> f = torch.zeros(1, 9, 4, 4); f[:, 4] = 1.0  # every pixel: the identity filter
        >>> pb.filterflow.filter_pca_energy(f, 3).tolist()
        [1.0, 1.0, 1.0]
    """
    taps = filter_size(filters) ** 2
    check_finite(filters, "filters")
    m = check_int(num_components, "num_components", low=1)
    if m > taps:
        raise ValueError(f"`num_components`: expected at most k*k = {taps}, got {m}")
    X = filters.detach().double().permute(0, 2, 3, 1).reshape(-1, taps)  # (pixels, k²)
    if centered:
        X = X - X.mean(0, keepdim=True)
    # squared singular values of X = eigenvalues of the k² × k² Gram matrix (cheap for many pixels)
    energy = torch.linalg.eigvalsh(X.T @ X).flip(0).clamp_min(0)
    total = energy.sum()
    if float(total) == 0:
        raise ValueError("`filters`: all zero, the energy fractions are undefined")
    return (energy.cumsum(0) / total)[:m]
