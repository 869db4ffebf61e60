"""Private validation and counting helpers shared by the metric modules (scalars, masks, thresholds)."""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_dtype, check_finite, check_int, check_range, check_shape


def _check_nonempty(x: torch.Tensor, name: str) -> None:
    if x.numel() == 0:
        raise ValueError(f"`{name}`: expected a non-empty tensor, got shape {tuple(x.shape)}")


def _check_same_device(x: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if x.device != ref.device:
        raise ValueError(f"`{name}`: expected a tensor on {ref.device} (as `{ref_name}`), got {x.device}")


def _check_prob_map(x, name: str, spec: str, dims: dict | None = None) -> dict:
    """Shape, float dtype, non-empty, finite, values in [0, 1]."""
    dims = check_shape(x, name, spec, dims)
    check_dtype(x, name, "float")
    _check_nonempty(x, name)
    check_finite(x, name)
    check_range(x, name, 0.0, 1.0)
    return dims


def _binary_mask(m, name: str, spec: str, dims: dict, ref: torch.Tensor, ref_name: str) -> torch.Tensor:
    """Accept a bool mask, or an integer/float tensor holding only 0 and 1; return it as bool."""
    check_shape(m, name, spec, dims)
    _check_same_device(m, name, ref, ref_name)
    if m.dtype == torch.bool:
        return m
    if m.is_complex():
        raise TypeError(f"`{name}`: expected a bool (or 0/1) mask, got {m.dtype}")
    check_finite(m, name)
    bad = (m != 0) & (m != 1)
    if bool(bad.any()):
        raise ValueError(
            f"`{name}`: expected a bool mask or values in {{0, 1}}, got {int(bad.sum())} other values "
            f"(e.g. {m[bad][0].item():.4g})"
        )
    return m != 0


def _valid_mask(valid, dims: dict, ref: torch.Tensor, ref_name: str) -> torch.Tensor:
    """`valid` as a bool ``(N, H, W)`` mask; ``(N, 1, H, W)`` is squeezed."""
    if torch.is_tensor(valid) and valid.ndim == 4:
        check_shape(valid, "valid", "N 1 H W", dims)
        valid = valid[:, 0]
    check_shape(valid, "valid", "N H W", dims)
    _check_same_device(valid, "valid", ref, ref_name)
    if valid.dtype != torch.bool:
        raise TypeError(f"`valid`: expected a bool mask, got {valid.dtype}")
    return valid


def _valid_or_default(valid, default: torch.Tensor, what: str, dims: dict, pred: torch.Tensor) -> torch.Tensor:
    """``valid`` checked against ``pred`` (or ``default`` when ``None``); raise if it selects nothing."""
    if valid is None:
        if not bool(default.any()):
            raise ValueError(f"`target`: expected {what} (the default valid mask), got none")
        return default
    valid = _valid_mask(valid, dims, pred, "pred")
    if not bool(valid.any()):
        raise ValueError("`valid`: expected at least one valid pixel, got none")
    return valid


def _thresholds(thresholds, name: str, interior: bool) -> torch.Tensor:
    """Ascending float64 CPU thresholds in [0, 1], from an int count or an explicit sequence.

    ``interior=True``: :math:`k/(T+1)`, :math:`k = 1..T`, as the BSDS benchmark
    (``evaluation_bdry_image.m``); ``interior=False``: :math:`k/(T-1)`, :math:`k = 0..T-1`, i.e. exactly
    k/255 for T = 256 as PySODMetrics' uint8 histogram. Each threshold is one correctly rounded
    division, so it equals the Python float ``k / 255`` (``linspace`` computes ``k * (1/255)`` and
    lands one ulp off for some k).
    """
    if isinstance(thresholds, (int, np.integer)) and not isinstance(thresholds, bool):
        count = check_int(thresholds, name, low=1 if interior else 2)
        if interior:
            return torch.arange(1, count + 1, dtype=torch.float64) / (count + 1)
        return torch.arange(count, dtype=torch.float64) / (count - 1)
    if torch.is_tensor(thresholds) or isinstance(thresholds, (list, tuple, np.ndarray)):
        t = torch.as_tensor(thresholds).detach().to("cpu", torch.float64)
        if t.ndim != 1 or t.numel() == 0:
            raise ValueError(f"`{name}`: expected an int or a non-empty 1-D sequence, got shape {tuple(t.shape)}")
        check_finite(t, name)
        check_range(t, name, 0.0, 1.0)
        if t.numel() > 1 and not bool((t[1:] > t[:-1]).all()):
            raise ValueError(f"`{name}`: expected strictly increasing thresholds")
        return t
    raise TypeError(f"`{name}`: expected an int or a 1-D sequence of thresholds, got {type(thresholds).__name__}")


def _counts_at_least(values: torch.Tensor, mask: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """``out[n, k] = #{i : mask[n, i] and values[n, i] >= thr[k]}`` for ascending ``thr``, in one pass.

    Each value is binned by how many thresholds it reaches (``searchsorted``), the bins are counted
    with ``bincount`` and a reversed cumulative sum turns "in bin k" into "reaches threshold k". No loop
    over thresholds or pixels. values ``(N, P)`` float64, mask ``(N, P)`` bool, thr ``(T,)`` float64.
    """
    n_img, n_thr = values.shape[0], thr.numel()
    b = torch.searchsorted(thr.to(values.device), values.contiguous(), right=True) - 1  # (N, P) in [-1, T-1]
    keep = mask & (b >= 0)
    flat = (torch.arange(n_img, device=values.device)[:, None] * n_thr + b)[keep]
    hist = torch.bincount(flat, minlength=n_img * n_thr).reshape(n_img, n_thr)
    return hist.flip(1).cumsum(1).flip(1)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, and 0 where den == 0 (then num == 0 too: a count of an empty set)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))
