"""Reduction over valid pixels, shared by the pixel-wise losses."""

from __future__ import annotations

import torch

from .._checks import check_choice, check_shape


def _reduce(per_pixel: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if reduction == "none":
        return per_pixel * mask
    total = (per_pixel * mask).sum()
    if reduction == "sum":
        return total
    # An all-void batch contributes zero loss (and zero gradient) rather than 0/0 = NaN.
    return total / mask.sum().clamp_min(1)


def _mask(valid, like: torch.Tensor, dims: dict) -> torch.Tensor:
    """``valid`` as a float mask like ``like`` (all ones when ``None``), shape-checked."""
    if valid is None:
        return torch.ones_like(like)
    check_shape(valid, "valid", "N H W", dims)
    return valid.to(like.dtype)
