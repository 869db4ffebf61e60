"""Runtime choices made once per notebook: device, seed, scale.

The ``parameters`` cell of every chapter sets ``SCALE``, ``SEED`` and ``DEVICE``; these functions
turn those strings into concrete values, with environment overrides so that the same notebook runs
in CI (``PIXELBOOK_SCALE=smoke``), on a laptop and on Colab.
"""

from __future__ import annotations

import os
import platform
import random
import sys
import time

import numpy as np
import torch

from ._checks import check_choice, check_int

__all__ = ["SCALES", "resolve_scale", "resolve_device", "seed_all", "env_report", "env_info", "scaled",
           "cache_dir"]

#: The four concrete scales, cheapest first; ``"auto"`` resolves to ``small`` or ``medium``.
#:
#: - ``smoke``: seconds; every code path runs, the numbers mean nothing (CI, options).
#: - ``small``: <= 2 minutes on a 2-core CPU; the live demonstration and the committed outputs.
#: - ``medium``: the evidence: converged models, >= 3 seeds per arm, <= 30 minutes per chapter on
#:   a 2-core CPU (about 5 on a GPU); run by ``make results`` (``python -m pixelbook.run``).
#: - ``full``: a GPU and the paper's datasets; never chosen implicitly.
SCALES = ("smoke", "small", "medium", "full")

_MISSING = object()


def resolve_scale(scale: str | None = None) -> str:
    """Resolve a scale name to one of :data:`SCALES`.

    Args:
        scale: ``"smoke"``, ``"small"``, ``"medium"``, ``"full"`` (see :data:`SCALES`) or
            ``"auto"``: ``medium`` when CUDA is available, else ``small``. ``auto`` never gives
            ``full``, which downloads the paper's datasets and trains for hours: ask for it by
            name. ``None`` reads the ``PIXELBOOK_SCALE`` environment variable (default ``"auto"``).

    Raises:
        ValueError: for any other name.
    """
    if scale is None:
        scale = os.environ.get("PIXELBOOK_SCALE", "auto")
    scale = str(scale).strip().lower()
    check_choice(scale, "scale", SCALES + ("auto",))
    if scale == "auto":
        return "medium" if torch.cuda.is_available() else "small"
    return scale


def scaled(scale: str, *, smoke=_MISSING, small=_MISSING, medium=_MISSING, full=_MISSING):
    """Pick the value for ``scale``: ``scaled(SCALE, smoke=2, small=200, medium=2_000, full=20_000)``.

    Only the value of the scale in use is required, so a chapter that has no ``full``
    configuration yet can still run at the other scales; ``None`` is a value like any other.

    Raises:
        ValueError: ``scale`` is not one of :data:`SCALES` (resolve ``"auto"`` first), or no value
            was given for it (the message names the scale).
    """
    check_choice(scale, "scale", SCALES)
    value = {"smoke": smoke, "small": small, "medium": medium, "full": full}[scale]
    if value is _MISSING:
        raise ValueError(f"`scaled`: no value for scale {scale!r}; pass {scale}=... "
                         f"(this code has no {scale}-scale configuration yet)")
    return value


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto"`` to the best available device: CUDA, then Apple MPS, then CPU.

    ``PIXELBOOK_DEVICE`` overrides ``"auto"`` (not an explicit name). An explicit device that is
    not available raises instead of silently falling back.

    Raises:
        ValueError: unknown device name, or a device that this machine does not have.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        device = os.environ.get("PIXELBOOK_DEVICE", "auto")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"`device`: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device`: {device!r} requested but CUDA is not available here; use 'auto' or 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"`device`: {device!r} requested but MPS is not available here; use 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"`device`: expected 'auto', 'cpu', 'cuda' or 'mps', got {device!r}")
    return dev


def seed_all(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); optionally make kernels deterministic.

    With ``deterministic=True`` cuDNN autotuning is off and ``torch.use_deterministic_algorithms``
    is on with ``warn_only=True`` (an op without a deterministic version warns rather than fails),
    and ``CUBLAS_WORKSPACE_CONFIG`` is set as CUDA requires. Returns a CPU ``torch.Generator``
    seeded with ``seed`` for code that wants its own stream.
    """
    seed = check_int(seed, "seed")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def cache_dir(*parts: str) -> str:
    """The pixelbook cache folder (``PIXELBOOK_CACHE``, else ``~/.cache/pixelbook``), created on demand."""
    root = os.environ.get("PIXELBOOK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pixelbook")
    path = os.path.join(root, *parts)
    os.makedirs(path, exist_ok=True)
    return path


_REPORTED_PACKAGES = ("pixelbook", "torch", "torchvision", "torchdiffeq", "torchmetrics", "numpy", "skimage")


def env_info(device=None) -> dict:
    """The machine and software a run used, as a JSON-serialisable dict.

    Keys: ``python``, ``platform``, ``versions`` (package -> version or ``None``), ``device``,
    ``device_name``, ``cpu_count``, ``torch_threads``. Results files store it as provenance;
    :func:`env_report` prints it.
    """
    import importlib

    versions = {}
    for mod in _REPORTED_PACKAGES:
        try:
            versions[mod] = str(importlib.import_module(mod).__version__)
        except Exception:  # pragma: no cover - optional packages
            versions[mod] = None
    dev = resolve_device(device) if device is not None else resolve_device("auto")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu")
    return {"python": sys.version.split()[0], "platform": platform.platform(), "versions": versions,
            "device": str(dev), "device_name": name, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


def env_report(start_time: float | None = None, scale: str | None = None, device=None) -> str:
    """One block of text for a chapter's last cell: versions, device, scale and run time."""
    info = env_info(device)
    lines = [f"python       {info['python']} ({info['platform']})"]
    for mod, version in info["versions"].items():
        lines.append(f"{mod:<13}{version or 'not installed'}")
    name = info["device_name"] if info["device"].startswith("cuda") else f"{info['device_name']}, {info['cpu_count']} cores"
    lines.append(f"device       {info['device']} ({name}), torch threads {info['torch_threads']}")
    if scale is not None:
        lines.append(f"scale        {scale}")
    if start_time is not None:
        lines.append(f"run time     {time.time() - start_time:.1f} s")
    return "\n".join(lines)
