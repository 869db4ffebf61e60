"""Private scalar checks of :mod:`pixelbook.std`."""

from __future__ import annotations

import math

import numpy as np
import torch


def _check_number(value, name: str, low: float | None = None, strict: bool = False) -> None:
    """A float or 0-dim tensor, finite, >= low (> low if strict)."""
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"`{name}`: expected a number or a 1-element tensor, got shape {tuple(value.shape)}")
        v = float(value.detach())
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        v = float(value)
    else:
        raise TypeError(f"`{name}`: expected a number, got {type(value).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"`{name}`: expected a finite number, got {v}")
    if low is not None and (v <= low if strict else v < low):
        raise ValueError(f"`{name}`: expected a number {'>' if strict else '>='} {low}, got {v}")


def _check_int(value, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}`: expected an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"`{name}`: expected an int >= {low}, got {value}")
    return int(value)
