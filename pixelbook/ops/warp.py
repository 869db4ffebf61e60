r"""Backward warping by a flow field, flow composition and flow upsampling (bilinear, differentiable).

Conventions (the book's): ``flow`` is ``(N, 2, H, W)`` in pixels, channel 0 = x (right), channel 1 =
y (down). :func:`flow_warp` *reads* the image at ``p + flow(p)``, the same direction as
:func:`pixelbook.ops.apply_filter_flow` and :func:`pixelbook.ops.expected_flow`: a one-hot filter at
offset ``(dx, dy)`` and a constant flow ``(dx, dy)`` give the same output. Positions are pixel centres
(``grid_sample(..., align_corners=True)``), and an integer flow moves pixels exactly, without blur.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_dtype, check_finite, check_int, check_shape

__all__ = ["flow_warp", "compose_flows", "upsample_flow", "flow_grid"]


def flow_grid(flow: torch.Tensor) -> torch.Tensor:
    """The sampling positions ``p + flow(p)`` as an ``(N, 2, H, W)`` tensor in pixels (x, y)."""
    _, _, H, W = flow.shape
    ys = torch.arange(H, dtype=flow.dtype, device=flow.device).view(1, H, 1).expand(1, H, W)
    xs = torch.arange(W, dtype=flow.dtype, device=flow.device).view(1, 1, W).expand(1, H, W)
    return flow + torch.cat([xs, ys])[None]


def _check_flow(flow, name: str = "flow", dims: dict | None = None) -> dict:
    dims = check_shape(flow, name, "N 2 H W", dims)
    check_dtype(flow, name, "float")
    check_finite(flow, name)
    return dims


def flow_warp(image: torch.Tensor, flow: torch.Tensor, *, padding: str = "zeros") -> tuple[torch.Tensor, torch.Tensor]:
    r"""Backward-warp ``image`` by ``flow``: :math:`\mathrm{out}(p) = \mathrm{image}(p + \mathrm{flow}(p))`.

    Bilinear interpolation between the four nearest pixels (the semantics of ``F.grid_sample`` with
    ``align_corners=True``, written with ``gather`` so that integer flows move pixels *exactly*: the
    normalised coordinates of ``grid_sample`` round a position such as 13 to 12.9999…);
    differentiable with respect to both inputs. This is the "grid sampling" /
    spatial-transformer warp of unsupervised optical flow, used by the thesis' flow-warp loss
    :math:`\ell_{flow}` [KONG, §7.2.5].

    Args:
        image: ``(N, C, H, W)`` float, ``H, W >= 2``.
        flow: ``(N, 2, H, W)`` float, pixels (x, y).
        padding: ``"zeros"`` (outside the image reads 0, as the thesis' code) or ``"border"``
            (the nearest edge pixel).

    Returns:
        ``(warped, inside)``: ``(N, C, H, W)`` and an ``(N, H, W)`` bool mask of the pixels whose
        sampling position lies inside the image, :math:`[0, W-1]\times[0, H-1]`.

    Raises:
        ValueError / TypeError naming the argument (shapes, dtype, NaN/Inf, ``padding``).

    Example:
        >>> image = torch.arange(12.0).view(1, 1, 3, 4)
        >>> flow = torch.zeros(1, 2, 3, 4); flow[:, 0] = 1.0   # read the right neighbour
        >>> warped, inside = pb.ops.flow_warp(image, flow)
        >>> warped[0, 0, 0].tolist(), inside[0, 0].tolist()
        ([1.0, 2.0, 3.0, 0.0], [True, True, True, False])
    """
    dims = check_shape(image, "image", "N C H W")
    check_dtype(image, "image", "float")
    check_finite(image, "image")
    _check_flow(flow, "flow", dims)
    check_choice(padding, "padding", ("zeros", "border"))
    if flow.device != image.device:
        raise ValueError(f"`flow`: expected a tensor on {image.device} (as `image`), got {flow.device}")
    N, C, H, W = image.shape
    if H < 2 or W < 2:
        raise ValueError(f"`image`: expected H, W >= 2, got {(H, W)}")
    dtype = torch.promote_types(image.dtype, flow.dtype)
    image, flow = image.to(dtype), flow.to(dtype)
    pos = flow_grid(flow)  # (N, 2, H, W) pixels
    x, y = pos[:, 0], pos[:, 1]
    inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    if padding == "border":  # as grid_sample: clamp the position, then interpolate
        x, y = x.clamp(0, W - 1), y.clamp(0, H - 1)
    x0, y0 = x.detach().floor(), y.detach().floor()
    wx, wy = x - x0, y - y0  # exactly 0 at integer positions: integer flows move pixels exactly
    flat = image.reshape(N, C, H * W)
    warped = image.new_zeros(N, C, H * W)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        w = (wx if dx else 1 - wx) * (wy if dy else 1 - wy)  # (N, H, W)
        ok = (xi >= 0) & (xi <= W - 1) & (yi >= 0) & (yi <= H - 1)
        idx = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)).long().view(N, 1, H * W).expand(N, C, H * W)
        warped = warped + (w * ok).view(N, 1, H * W) * flat.gather(2, idx)
    return warped.view(N, C, H, W), inside


def compose_flows(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    r"""The flow of warping by ``inner`` first and then by ``outer``.

    ``flow_warp(flow_warp(x, inner), outer)`` reads :math:`x` at
    :math:`p + \mathrm{outer}(p) + \mathrm{inner}(p + \mathrm{outer}(p))`, so the composed flow is

    .. math:: D(p) = \mathrm{outer}(p) + \mathrm{inner}\big(p + \mathrm{outer}(p)\big),

    with ``inner`` sampled bilinearly (border padding). Exact for integer flows. This is how the
    multigrid flow is accumulated: ``inner`` = the coarser levels' flow, ``outer`` = the residual
    flow of the finer level [KONG, §7.2.4, App. E.2].

    Args:
        outer, inner: ``(N, 2, H, W)`` float flows in pixels.

    Returns:
        ``(N, 2, H, W)``.

    Example:
        >>> a = torch.zeros(1, 2, 4, 4); a[:, 0] = 1.0
        >>> b = torch.zeros(1, 2, 4, 4); b[:, 1] = -2.0
        >>> pb.ops.compose_flows(a, b)[0, :, 2, 1].tolist()
        [1.0, -2.0]
    """
    dims = _check_flow(outer, "outer")
    _check_flow(inner, "inner", dims)
    sampled, _ = flow_warp(inner, outer, padding="border")
    return outer + sampled


def upsample_flow(flow: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling of a flow by an integer ``factor``; the vectors are scaled by it too.

    Nearest neighbour, as the thesis' :math:`\\mathbf{U}_{2\\times}` [KONG, §7.2.4]: one coarse vector
    covers a ``factor × factor`` block.

    Example:
        >>> pb.ops.upsample_flow(torch.ones(1, 2, 2, 2), 2).shape, float(pb.ops.upsample_flow(torch.ones(1, 2, 2, 2), 2).max())
        (torch.Size([1, 2, 4, 4]), 2.0)
    """
    _check_flow(flow)
    factor = check_int(factor, "factor", low=1)
    if factor == 1:
        return flow
    return factor * F.interpolate(flow, scale_factor=factor, mode="nearest")
