"""Joint image/label transforms for the dataset loaders, on ``torchvision.transforms.v2``.

The image is wrapped as ``tv_tensors.Image`` and the labels as ``tv_tensors.Mask``, so one v2
transform moves both the same way and picks the right kernel for each: bilinear (antialiased)
resizing for the image, nearest for the labels; flips and crops alike. v2 transforms draw from
torch's global random generator; with a ``generator``, :func:`apply_joint` seeds a forked copy of
it from ``generator``, so a loader given a seeded generator is reproducible and leaves the global
random state alone.
"""

from __future__ import annotations

import torch

__all__ = ["apply_joint"]


def apply_joint(transform, image: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``transform(Image(image), Mask(labels))`` returned as two plain tensors.

    Args:
        transform: a ``torchvision.transforms.v2`` transform (or ``v2.Compose``).
        image: ``(C, H, W)`` float. labels: ``(H, W)`` integer or bool.
        generator: seeds the random draws of ``transform`` (``None``: torch's global generator).
    """
    from torchvision import tv_tensors

    inputs = (tv_tensors.Image(image), tv_tensors.Mask(labels))
    if generator is None:
        out = transform(*inputs)
    else:
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = transform(*inputs)
    return out[0].as_subclass(torch.Tensor), out[1].as_subclass(torch.Tensor)
