"""Private input checks shared by the level-set operators here and :mod:`pixelbook.levelset`."""

from __future__ import annotations

import torch

from .._checks import check_dtype, check_finite, check_shape


def _check_phi(phi, name: str = "phi", dims: dict | None = None) -> dict:
    d = check_shape(phi, name, "N C H W", dims)
    check_dtype(phi, name, "float")
    check_finite(phi, name)
    return d


def _check_masks(masks, name: str = "mask", dims: dict | None = None) -> dict:
    d = check_shape(masks, name, "N H W", dims)
    if masks.dtype != torch.bool:
        if masks.is_complex():
            raise TypeError(f"`{name}`: expected a bool or 0/1 tensor, got {masks.dtype}")
        bad = (masks != 0) & (masks != 1)
        if bool(bad.any()):
            vals = masks[bad]
            raise ValueError(f"`{name}`: expected binary values {{0, 1}} (or bool), got {int(bad.sum())} other "
                             f"values in [{float(vals.min()):.4g}, {float(vals.max()):.4g}]")
    return d
