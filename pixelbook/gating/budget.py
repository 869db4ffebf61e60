r"""The computation budget of PAG: Bernoulli-KL sparsity loss, ponder maps and exact FLOP counts.

The user sets a target fraction :math:`\rho` of pixels that each gated layer computes. With the
layer's empirical density :math:`g_l = \frac{1}{HW}\sum_{h,w}\mathbf G_{h,w}` [KONG, §4.3.3],

.. math:: \mathrm{KL}(\rho\,\|\,g) = \rho\log\frac{\rho}{g} + (1-\rho)\log\frac{1-\rho}{1-g}
          \qquad [KONG, Eq. 4.5]

.. math:: \ell = \ell_{task} + \lambda\sum_{l=1}^{L}\mathrm{KL}(\rho\,\|\,g_l)  \qquad [KONG, Eq. 4.6]

with :math:`\lambda = 10^{-4}` for task losses *summed* over pixels (the thesis; with mean-reduced
losses :math:`\lambda` must be larger by about the pixel count). Penalising only the total density
:math:`\frac1L\sum_l g_l` "results in trivial, non-dynamic solutions, e.g. completely skipping a
subset of layers" [KONG, §4.3.3]: ``mode="total"`` implements it for that comparison.

The *ponder map* sums the binary masks of all gated layers: the number of layers computed at each
pixel. FLOPs are counted from the realised masks (:func:`count_flops`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import check_choice, check_dtype, check_finite, check_float, check_shape
from .pag import PAGBottleneck

__all__ = ["bernoulli_kl", "budget_kl_loss", "BudgetKLLoss", "pag_blocks", "gate_densities", "ponder_map",
           "FlopCount", "count_flops", "KL_EPS"]

#: Densities are clamped to [KL_EPS, 1 − KL_EPS] so that the KL stays finite at g ∈ {0, 1} (ours).
KL_EPS = 1e-6


def bernoulli_kl(rho: float, g: torch.Tensor, eps: float = KL_EPS) -> torch.Tensor:
    r"""Elementwise :math:`\mathrm{KL}(\rho\,\|\,g)` between Bernoulli distributions [KONG, Eq. 4.5].

    Args:
        rho: target density :math:`\rho \in [0, 1]` (``0·log 0 = 0``).
        g: densities, any shape, values in [0, 1]; clamped to ``[eps, 1 − eps]``.
        eps: the clamp (default :data:`KL_EPS`).

    Returns:
        A tensor shaped like ``g``, ≥ 0, zero where ``g == rho``.

    Example:
        >>> bernoulli_kl(0.5, torch.tensor([0.5, 0.25]))
        tensor([0.0000, 0.1438])
    """
    rho = check_float(rho, "rho", 0, 1)
    check_dtype(g, "g", "float")
    check_finite(g, "g")
    lo, hi = (float(g.detach().min()), float(g.detach().max())) if g.numel() else (0.0, 1.0)
    if lo < 0 or hi > 1:
        raise ValueError(f"`g`: expected densities in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    g = g.clamp(eps, 1 - eps)
    kl = torch.zeros_like(g)
    if rho > 0:
        kl = kl + rho * (torch.log(torch.as_tensor(rho, dtype=g.dtype)) - torch.log(g))
    if rho < 1:
        kl = kl + (1 - rho) * (torch.log(torch.as_tensor(1 - rho, dtype=g.dtype)) - torch.log1p(-g))
    return kl


def budget_kl_loss(densities: torch.Tensor, rho: float, mode: str = "per_layer", over: str = "image",
                   reduction: str = "mean") -> torch.Tensor:
    r"""The sparsity loss :math:`\sum_l \mathrm{KL}(\rho\,\|\,g_l)` [KONG, Eqs. 4.5–4.6] (without :math:`\lambda`).

    Args:
        densities: ``(N, L)`` per-image densities of ``L`` gated layers (from :func:`gate_densities`),
            or ``(L,)`` for one image / already batch-averaged.
        rho: target density :math:`\rho`.
        mode: ``"per_layer"`` (default, the thesis): :math:`\sum_l \mathrm{KL}(\rho\|g_l)`;
            ``"total"``: :math:`\mathrm{KL}(\rho\,\|\,\frac1L\sum_l g_l)`, the alternative the thesis
            rejects.
        over: ``"image"`` (default; the thesis' :math:`g` is per mask, i.e. per image): one KL per
            image; ``"batch"``: :math:`g_l` averaged over the batch first (needed for per-image
            gates, whose per-image density is 0 or 1).
        reduction: over images (``over="image"``): ``"mean"`` (default), ``"sum"`` or ``"none"``
            (``(N,)``).

    Returns:
        Scalar tensor (or ``(N,)`` for ``reduction="none"``).

    Example:
        >>> d = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
        >>> budget_kl_loss(d, 0.5), budget_kl_loss(d, 0.5, mode="total")
        (tensor(0.5108), tensor(0.))
    """
    check_dtype(densities, "densities", "float")
    if densities.ndim == 1:
        densities = densities[None]
    check_shape(densities, "densities", "N L")  # also rejects no image or no layer
    check_choice(mode, "mode", ("per_layer", "total"))
    check_choice(over, "over", ("image", "batch"))
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if over == "batch":
        densities = densities.mean(0, keepdim=True)
    if mode == "total":
        per_image = bernoulli_kl(rho, densities.mean(1))
    else:
        per_image = bernoulli_kl(rho, densities).sum(1)
    if reduction == "none":
        return per_image
    return per_image.mean() if reduction == "mean" else per_image.sum()


class BudgetKLLoss(nn.Module):
    r"""``weight · budget_kl_loss(gate_densities(model), rho)``: the second term of [KONG, Eq. 4.6].

    Args:
        rho: target density.
        weight: :math:`\lambda` (default 1e-4, the thesis, for summed task losses).
        mode, over: as in :func:`budget_kl_loss`.
        statistic: as in :func:`gate_densities` (default ``"mask"``).

    ``forward(model)`` reads the gates' last masks, so call it after the model's forward pass.

    Example:
        >>> net = nn.Sequential(PAGBottleneck(8, 2), PAGBottleneck(8, 2))
        >>> _ = net(torch.randn(2, 8, 6, 6))
        >>> float(BudgetKLLoss(0.5, weight=1.0)(net).detach()) > 0
        True
    """

    def __init__(self, rho: float, weight: float = 1e-4, mode: str = "per_layer", over: str = "image",
                 statistic: str = "mask"):
        super().__init__()
        self.rho = check_float(rho, "rho", 0, 1)
        self.weight = check_float(weight, "weight", 0)
        check_choice(mode, "mode", ("per_layer", "total"))
        check_choice(over, "over", ("image", "batch"))
        check_choice(statistic, "statistic", ("mask", "prob"))
        self.mode, self.over, self.statistic = mode, over, statistic

    def forward(self, model: nn.Module) -> torch.Tensor:
        d = gate_densities(model, self.statistic)
        return self.weight * budget_kl_loss(d, self.rho, self.mode, self.over)

    def extra_repr(self) -> str:
        return f"rho={self.rho:g}, weight={self.weight:g}, mode={self.mode!r}, over={self.over!r}"


def pag_blocks(model: nn.Module) -> list:
    """The gated :class:`PAGBottleneck` modules of ``model`` in registration order (MultiPool and
    ``granularity="none"`` blocks excluded)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model`: expected an nn.Module, got {type(model).__name__}")
    return [m for m in model.modules() if isinstance(m, PAGBottleneck) and m.granularity != "none"]


def gate_densities(model: nn.Module, statistic: str = "mask") -> torch.Tensor:
    r"""Per-image density :math:`g_l` of every PAG block's last mask: ``(N, L)``.

    Args:
        model: a module containing :class:`PAGBottleneck` blocks, after a forward pass.
        statistic: ``"mask"`` (default, the thesis: the mean of the binary mask; in training its
            gradient is the straight-through one) or ``"prob"`` (the mean of the clean probability
            of "compute", the released code's statistic; smooth, never exactly 0 or 1).

    Returns:
        ``(N, L)`` tensor (differentiable in training).

    Raises:
        ValueError: no PAG block, or a block that has not run yet.
    """
    check_choice(statistic, "statistic", ("mask", "prob"))
    blocks = pag_blocks(model)
    if not blocks:
        raise ValueError("`model`: no PAGBottleneck found")
    cols = []
    for i, b in enumerate(blocks):
        t = b.last_mask if statistic == "mask" else b.last_prob
        if t is None:
            raise ValueError(f"`model`: PAG block {i} has no mask yet; run the model forward first")
        cols.append(t.mean((1, 2, 3)))
    return torch.stack(cols, 1)


def ponder_map(model: nn.Module, size=None) -> torch.Tensor:
    r"""The number of gated layers computed at each pixel, :math:`\sum_l \mathbf G_l` [KONG, §4.3.3].

    MultiPool masks are not included (as in the thesis' figures). Masks at a lower resolution
    (strided blocks) are up-sampled by nearest neighbour.

    Args:
        model: after a forward pass.
        size: ``(H, W)`` of the map (default: the largest mask).

    Returns:
        ``(N, H, W)`` float tensor with integer values in ``[0, L]`` (in eval; in training the masks
        are straight-through samples, also 0/1).
    """
    blocks = pag_blocks(model)
    if not blocks or any(b.last_mask is None for b in blocks):
        raise ValueError("`model`: expected PAG blocks that have run forward")
    masks = [b.last_mask.detach() for b in blocks]
    if size is None:
        size = max((m.shape[-2:] for m in masks), key=lambda s: s[0] * s[1])
    size = tuple(int(s) for s in size)
    total = 0
    for m in masks:
        total = total + nn.functional.interpolate(m.float(), size=size, mode="nearest")[:, 0]
    return total


@dataclass
class FlopCount:
    """Result of :func:`count_flops` (FLOPs = 2 × multiply-adds of convolutions and linear layers).

    Attributes:
        total: FLOPs actually needed, skipped pixels not counted.
        dense: FLOPs if every gated convolution ran at every pixel.
        per_module: ``{qualified name: FLOPs}`` for every counted layer (gated ones with their realised
            cost; a tied kernel used by several branches is listed once with the sum).
    """

    total: int
    dense: int
    per_module: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """``total / dense``: the consumption of [KONG, Table 4.2] (1.0 when nothing is gated)."""
        return self.total / self.dense if self.dense else 1.0


def _conv_macs_per_pixel(conv: nn.Conv2d) -> int:
    kh, kw = conv.kernel_size
    return conv.out_channels * (conv.in_channels // conv.groups) * kh * kw


def count_flops(model: nn.Module, *inputs, **kwargs) -> FlopCount:
    r"""Exact FLOPs of one forward pass, counted from the masks the gates realise [KONG, Table 4.2].

    Runs ``model(*inputs, **kwargs)`` once in eval mode (deterministic gates) without gradients.
    Convention (that of ``torch.utils.flop_counter.FlopCounterMode``): 2 FLOPs per multiply-add of
    every ``Conv2d`` and ``Linear``; biases, BatchNorm, ReLU, pooling and the gate products are not
    counted. A gated convolution (reported by a module's ``flop_convs()``: PAG blocks, MultiPool,
    depth-aware pooling) costs its per-pixel multiply-adds times the number of pixels where its mask
    is 1; every other layer is counted densely. The gate heads are counted (they run everywhere).

    Args:
        model: any module; gated modules report their convolutions through ``flop_convs()``.
        *inputs: positional inputs of ``model``.
        **kwargs: keyword inputs of ``model``.

    Returns:
        :class:`FlopCount` with ``total``, ``dense`` and ``per_module``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), PAGBottleneck(8, 2))
        >>> c = count_flops(net, torch.randn(1, 3, 4, 4))
        >>> c.total == c.dense  # at the initial gate bias every pixel computes
        True
    """
    with torch.no_grad():
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model`: expected an nn.Module, got {type(model).__name__}")
        names = {m: n for n, m in model.named_modules()}
        dense_macs: dict = {}

        def hook(module, args, out):
            if isinstance(module, nn.Conv2d):
                macs = _conv_macs_per_pixel(module) * out.shape[0] * out.shape[-2] * out.shape[-1]
            else:  # Linear
                macs = module.in_features * module.out_features * (out.numel() // module.out_features)
            dense_macs[module] = dense_macs.get(module, 0) + macs

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        was_training = model.training
        model.eval()
        try:
            for m in model.modules():  # forget masks of earlier calls
                if hasattr(m, "flop_convs") and hasattr(m, "last_mask"):
                    m.last_mask = None
                if hasattr(m, "flop_convs") and hasattr(m, "last_gate"):
                    m.last_gate = None
            model(*inputs, **kwargs)
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        gated_total: dict = {}
        gated_dense: dict = {}
        for m in model.modules():
            if hasattr(m, "flop_convs"):
                for conv, mask in m.flop_convs():
                    per_px = _conv_macs_per_pixel(conv)
                    gated_total[conv] = gated_total.get(conv, 0) + per_px * int((mask != 0).sum())
                    gated_dense[conv] = gated_dense.get(conv, 0) + per_px * mask.numel()
        per_module, total, dense = {}, 0, 0
        for module in set(dense_macs) | set(gated_total):
            if module in gated_total:
                t, d = gated_total[module], gated_dense[module]
            else:
                t = d = dense_macs[module]
            per_module[names.get(module, type(module).__name__)] = 2 * t
            total, dense = total + 2 * t, dense + 2 * d
        return FlopCount(total=total, dense=dense, per_module=dict(sorted(per_module.items())))
