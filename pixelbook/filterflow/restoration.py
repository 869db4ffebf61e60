"""The three restoration tasks of [KONG, §6.4] as functions: degrade, predict, measure.

* :data:`TASKS` — ``"deblur"`` (non-uniform motion blur; softmax filters in the thesis),
  ``"jpeg"`` (JPEG artefacts; free-form), ``"sr"`` (bicubic ×s super-resolution; free-form).
* :func:`degrade` — one call for all three, driven by a parameter dict (what an experiment config
  stores), seeded by a ``torch.Generator``.
* :func:`predict` — a model's outputs (and PFF's filters) on a tensor of inputs, in batches.
* :func:`image_metrics` — PSNR and SSIM per image (data range 1).
* :func:`flow_edge_ratio` — how much larger the expected flow is on strong edges of the input
  than on flat regions, the thesis' qualitative reading of its flow maps [KONG, §6.4.2].
"""

from __future__ import annotations

import torch

from .._checks import check_choice, check_float, check_int, check_shape
from ..data import degradations as dg
from ..ops.filter_flow import expected_flow

__all__ = ["TASKS", "degrade", "predict", "image_metrics", "flow_edge_ratio"]

#: The tasks of [KONG, §6.4]: name -> the filter normalisation the thesis uses for it.
TASKS = {"deblur": "softmax", "jpeg": "none", "sr": "none"}


def degrade(task: str, clean: torch.Tensor, params: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Simulate ``task``'s degradation on clean images in [0, 1].

    Args:
        task: one of :data:`TASKS`.
        clean: ``(N, C, H, W)`` in [0, 1].
        params: ``deblur``: ``{"size", "min_length", "max_length", "cells"}`` (see
            :func:`pixelbook.data.degradations.random_nonuniform_motion_blur`); ``jpeg``:
            ``{"qualities": [...]}``, one drawn uniformly per image, or ``{"quality": q}``;
            ``sr``: ``{"scale": s}``.
        generator: random source (blur kernels, masks, JPEG qualities).

    Returns:
        ``(degraded (N, C, H, W), info)``; ``info`` holds the per-image parameters:
        ``deblur``: ``"length"`` (the larger of the two motion lengths) and ``"angle_a"``; ``jpeg``:
        ``"quality"``; ``sr``: ``"scale"``.

    Example:
        >>> x = torch.rand(4, 1, 16, 16)
        >>> y, info = pb.filterflow.restoration.degrade("jpeg", x, {"qualities": [10, 40]})
        >>> tuple(y.shape), sorted(set(info["quality"].tolist())) <= [10, 40]
        ((4, 1, 16, 16), True)
    """
    check_choice(task, "task", tuple(TASKS))
    check_shape(clean, "clean", "N C H W")
    if task == "deblur":
        out, info = dg.random_nonuniform_motion_blur(clean, size=params["size"], min_length=params["min_length"],
                                                     max_length=params["max_length"], cells=params["cells"],
                                                     generator=generator)
        return out, {"length": torch.maximum(info["length_a"], info["length_b"]), "angle_a": info["angle_a"]}
    if task == "jpeg":
        if "quality" in params:
            qualities = torch.full((clean.shape[0],), int(params["quality"]))
        else:
            choices = torch.tensor([int(q) for q in params["qualities"]])
            qualities = choices[torch.randint(len(choices), (clean.shape[0],), generator=generator)]
        out = torch.empty_like(clean)
        for q in qualities.unique().tolist():
            idx = (qualities == q).nonzero().flatten()
            out[idx] = dg.jpeg_compress(clean[idx], q)
        return out, {"quality": qualities}
    scale = int(params["scale"])
    return dg.bicubic_degrade(clean, scale)[0], {"scale": torch.full((clean.shape[0],), scale)}


def predict(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 64, filters: bool = False):
    """Run ``model`` (eval mode, no grad) on ``inputs`` in batches, on the model's device.

    Args:
        model: returns ``{"out": ...}`` (and ``"filters"`` for PFF), as the models of
            :mod:`pixelbook.filterflow.pff`.
        inputs: ``(N, C, H, W)``.
        batch_size: images per forward pass.
        filters: also return the filters (PFF only).

    Returns:
        ``out (N, C, H, W)`` clamped to [0, 1] on the CPU, or ``(out, filters)``.
    """
    with torch.no_grad():
        batch_size = check_int(batch_size, "batch_size", low=1)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        outs, fils = [], []
        for i in range(0, len(inputs), batch_size):
            res = model(inputs[i:i + batch_size].to(device))
            outs.append(res["out"].clamp(0, 1).cpu())
            if filters:
                fils.append(res["filters"].cpu())
        model.train(was_training)
        out = torch.cat(outs)
        return (out, torch.cat(fils)) if filters else out


def image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """PSNR (dB) and SSIM per image, data range 1, whole image (no border crop).

    Returns:
        ``{"psnr": (N,), "ssim": (N,)}`` float64 tensors.
    """
    from ..metrics import psnr_per_image, ssim_per_image

    return {"psnr": psnr_per_image(pred, target), "ssim": ssim_per_image(pred, target)}


def flow_edge_ratio(filters: torch.Tensor, image: torch.Tensor, top: float = 0.2, bottom: float = 0.5) -> float:
    """Mean expected-flow magnitude on the strongest-gradient pixels over that on the weakest.

    The thesis reads its deblurring flow maps as "large near high contrast boundaries and smaller
    in regions that are already in sharp focus or which are uniform in color" [KONG, §6.4.2]. This
    makes that a number: pixels are ranked by the gradient magnitude of ``image`` (the model's
    input, central differences, summed over channels); the ratio compares the mean ``|flow|`` of the
    top ``top`` fraction with that of the bottom ``bottom`` fraction. Border pixels (one pixel) are
    left out.

    Args:
        filters: ``(N, k*k, H, W)`` predicted filters, ``H, W >= 3``.
        image: ``(N, C, H, W)`` the input they were predicted from.
        top: fraction of pixels counted as strong edges, in (0, 1] (at least one pixel).
        bottom: fraction of pixels counted as flat, in (0, 1] (at least one pixel).

    Returns:
        the ratio (``inf`` if the flat pixels have zero flow).
    """
    dims = check_shape(filters, "filters", "N T H W")
    check_shape(image, "image", "N C H W", {k: dims[k] for k in "NHW"})
    H, W = dims["H"][0], dims["W"][0]
    if H < 3 or W < 3:
        raise ValueError(f"`filters`: expected H, W >= 3 (the border pixel is left out), got {(H, W)}")
    top = check_float(top, "top", low=0.0, high=1.0, low_open=True)
    bottom = check_float(bottom, "bottom", low=0.0, high=1.0, low_open=True)
    flow = expected_flow(filters).norm(dim=1)[:, 1:-1, 1:-1].flatten()                  # (N·h·w,)
    gx = (image[..., 1:-1, 2:] - image[..., 1:-1, :-2]) / 2
    gy = (image[..., 2:, 1:-1] - image[..., :-2, 1:-1]) / 2
    grad = (gx.pow(2) + gy.pow(2)).sum(1).sqrt().flatten()
    order = grad.argsort()
    n = len(order)
    low = flow[order[: max(1, int(bottom * n))]].mean()
    high = flow[order[n - max(1, int(top * n)):]].mean()
    return float(high / low) if float(low) > 0 else float("inf")
