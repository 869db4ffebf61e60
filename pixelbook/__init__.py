"""pixelbook: models, losses, metrics and data for the book *Pixel-level prediction*.

``import pixelbook as pb`` is all the setup a chapter needs. Importing touches no GPU, network or
pyplot; submodules are loaded on first attribute access (``pb.metrics``, ``pb.data``, ...).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "runtime", "training", "metrics", "data", "viz", "widgets", "models", "losses", "multitask",
    "ops", "levelset", "std", "rmi", "cas", "filterflow", "meanshift", "gating",
    "results", "experiments", "run", "distributed",
)
__all__ = list(_SUBMODULES) + ["__version__"]


def __getattr__(name):  # PEP 562: lazy submodules keep `import pixelbook` fast
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pixelbook' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
