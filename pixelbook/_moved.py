"""A clear error for names that moved out of a method module into models/, losses/ or metrics/."""

from __future__ import annotations


def moved_attribute(module: str, moved: dict[str, str]):
    """A module-level ``__getattr__`` (PEP 562) raising ``AttributeError`` that says where a name went.

    ``moved`` maps an old attribute name to its new module, e.g. ``{"MiniDeepLab": "pixelbook.models"}``.
    """

    def __getattr__(name: str):
        if name in moved:
            raise AttributeError(f"`{module}.{name}` moved to `{moved[name]}.{name}` (issue 9: one place per "
                                 f"network, loss and metric); import it from there")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
