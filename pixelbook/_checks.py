"""The one validation helper of pixelbook.

Every public function checks its inputs with these helpers, so error messages name the
argument, what was expected and what was given, in one format::

    ValueError: `labels`: expected H=64 (as in `logits`), got 32

They raise; they never ``assert`` (``python -O`` strips asserts).
"""

from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["IGNORE_INDEX", "check_shape", "check_finite", "check_labels", "check_range", "check_dtype",
           "check_choice", "check_int", "check_float", "check_tensor"]

#: The package's one ``ignore_index`` default: the label of void pixels (PASCAL VOC's 255). Every
#: function with an ``ignore_index`` argument defaults to it; ``None`` means "no void label".
IGNORE_INDEX = 255


def check_shape(x, name: str, spec: str, dims: dict | None = None, allow_empty: str = "") -> dict:
    """Check ``x`` against a shape spec such as ``"N C H W"``.

    Letters name axes; an integer fixes a size (``"N 3 H W"``). The returned dict binds each
    named axis to ``(size, argument)`` so later checks can demand agreement::

        d = check_shape(logits, "logits", "N C H W")
        check_shape(labels, "labels", "N H W", d)

    Every axis must be non-empty: an empty batch or a zero-size image is an error, not a silent 0
    or NaN. ``allow_empty`` names the axes that may be 0 (``"K"``: an image may have no proposal).

    Raises:
        ValueError: naming the argument, the expected shape and the shape given.
    """
    dims = {} if dims is None else dims
    axes = spec.split()
    if not torch.is_tensor(x):
        raise TypeError(f"`{name}`: expected a torch.Tensor of shape ({', '.join(axes)}), got {type(x).__name__}")
    if x.ndim != len(axes):
        raise ValueError(f"`{name}`: expected shape ({', '.join(axes)}), got {tuple(x.shape)}")
    if any(size == 0 and axis not in allow_empty.split() for axis, size in zip(axes, x.shape)):
        raise ValueError(f"`{name}`: expected a non-empty tensor of shape ({', '.join(axes)}), got "
                         f"{tuple(x.shape)} (an empty batch or a zero-size image)")
    for axis, size in zip(axes, x.shape):
        if axis.isdigit():
            if int(axis) != size:
                raise ValueError(f"`{name}`: expected shape ({', '.join(axes)}), got {tuple(x.shape)}")
            continue
        bound, source = dims.setdefault(axis, (size, name))
        if bound != size:
            raise ValueError(f"`{name}`: expected {axis}={bound} (as in `{source}`), got {size}")
    return dims


def check_dtype(x: torch.Tensor, name: str, kind: str) -> None:
    """Check that ``x`` is a floating (``kind="float"``) or integer (``kind="int"``) tensor."""
    if kind == "float" and not x.is_floating_point():
        raise TypeError(f"`{name}`: expected a floating-point tensor, got {x.dtype}")
    if kind == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"`{name}`: expected an integer tensor (e.g. torch.int64), got {x.dtype}")
    if kind not in ("float", "int"):
        raise ValueError(f"check_dtype: unknown kind {kind!r}")


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise if ``x`` holds NaN or ±Inf, saying how many and where the first one is.

    Fast path: one reduction. A sum is finite only if every element is (NaN and ±Inf propagate); a
    non-finite sum of finite values (float overflow) falls through to the exact element-wise test.
    """
    if x.is_floating_point():
        with torch.no_grad():
            if x.numel() == 0 or bool(torch.isfinite(x.sum())):
                return
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            n = int(bad.sum())
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"`{name}`: expected finite values, got {n} NaN/Inf (first at index {first})")


def check_tensor(x, name: str, kind: str = "float", finite: bool = True) -> None:
    """A non-empty tensor of the given kind (``check_dtype``), finite if asked: the checks of an
    elementwise op, whose input may have any shape."""
    if not torch.is_tensor(x):
        raise TypeError(f"`{name}`: expected a torch.Tensor, got {type(x).__name__}")
    if x.numel() == 0:
        raise ValueError(f"`{name}`: expected a non-empty tensor, got shape {tuple(x.shape)}")
    check_dtype(x, name, kind)
    if finite:
        check_finite(x, name)


def check_range(x: torch.Tensor, name: str, low: float | None = None, high: float | None = None) -> None:
    """Raise unless ``low <= x <= high`` everywhere (either bound may be ``None``)."""
    if low is not None and x.numel() and float(x.min()) < low:
        raise ValueError(f"`{name}`: expected values >= {low}, got min {float(x.min()):.4g}")
    if high is not None and x.numel() and float(x.max()) > high:
        raise ValueError(f"`{name}`: expected values <= {high}, got max {float(x.max()):.4g}")


def check_labels(labels: torch.Tensor, name: str, num_classes: int, ignore_index: int | None = None) -> None:
    """Check integer labels lie in ``[0, num_classes)`` or equal ``ignore_index``."""
    check_dtype(labels, name, "int")
    valid = labels if ignore_index is None else labels[labels != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(
            f"`{name}`: expected labels in [0, {num_classes}){extra}, got values in "
            f"[{int(valid.min())}, {int(valid.max())}]"
        )


def check_choice(value, name: str, choices: Iterable) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"`{name}`: expected one of {choices}, got {value!r}")


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as a Python ``int`` if it is an integer in ``[low, high]``; raise otherwise.

    NumPy and 0-d integer tensors count as integers; ``bool`` and ``2.0`` do not.
    """
    import numbers

    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}`: expected an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"`{name}`: expected an integer in [{lo}, {hi}], got {value}")
    return value


def check_float(value, name: str, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a finite Python ``float`` in the given range; raise otherwise.

    Ints, NumPy reals and one-element real tensors (e.g. a learnable parameter) are accepted;
    ``bool``, NaN and ±Inf are not. ``low_open`` /
    ``high_open`` make the bound strict.
    """
    import math
    import numbers

    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.detach().item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}`: expected a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"`{name}`: expected a finite number in {lo}, {hi}, got {value!r}")
    return value
