"""scikit-image's sample images as float tensors, offline.

scikit-image ships most of its sample images inside the wheel; a few (``eagle``, ``cells3d``,
``brain``, ``skin``, ...) are fetched with ``pooch`` on first use. :func:`list_images` offers only
images whose file is present in the installed package, so :func:`load_image` never touches the
network; asking for any other name raises a ``ValueError`` listing the valid ones.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice

__all__ = ["list_images", "load_image", "load_stereo_motorcycle"]

#: name -> file inside ``skimage/data`` of the scikit-image function of the same name
#: (``cat`` is scikit-image's alias of ``chelsea``).
_SHIPPED = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "cat": "chelsea.png",
    "cell": "cell.png",
    "checkerboard": "chessboard_GRAY.png",
    "chelsea": "chelsea.png",
    "clock": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "colorwheel": "color.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "horse": "horse.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "logo": "logo.png",
    "microaneurysms": "microaneurysms.png",
    "moon": "moon.png",
    "page": "page.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "shepp_logan_phantom": "phantom.png",
    "text": "text.png",
}
_STEREO = ("motorcycle_left.png", "motorcycle_right.png", "motorcycle_disp.npz")


def _data_dir() -> str:
    import skimage.data

    return skimage.data.data_dir  # the folder of images shipped inside the package


@functools.lru_cache(maxsize=1)
def list_images() -> tuple[str, ...]:
    """Names of the scikit-image sample images available offline (shipped with the package).

    Example:
        >>> {"astronaut", "camera", "coins", "brick"} <= set(list_images())
        True
    """
    root = _data_dir()
    return tuple(sorted(n for n, f in _SHIPPED.items() if os.path.isfile(os.path.join(root, f))))


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 / bool / float image (H, W[, C]) -> float32 (C, H, W) in [0, 1]."""
    if img.dtype == np.bool_:
        x = img.astype(np.float32)
    elif img.dtype == np.uint8:
        x = img.astype(np.float32) / 255.0
    elif np.issubdtype(img.dtype, np.floating):
        x = np.clip(img.astype(np.float32), 0.0, 1.0)
    else:  # pragma: no cover - no shipped image has another dtype
        raise TypeError(f"unsupported image dtype {img.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(x))
    return x[None] if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def _resize(x: torch.Tensor, size, name: str = "size") -> torch.Tensor:
    if size is None:
        return x
    H, W = x.shape[-2:]
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size < 1:
            raise ValueError(f"`{name}`: expected a positive int or (H, W), got {size}")
        s = size / min(H, W)
        hw = (max(1, round(H * s)), max(1, round(W * s)))
    elif (
        isinstance(size, (tuple, list)) and len(size) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size)
    ):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"`{name}`: expected None, a positive int (shorter side) or (H, W), got {size!r}")
    if hw == (H, W):
        return x
    y = F.interpolate(x[None], size=hw, mode="bilinear", align_corners=False, antialias=True)[0]
    return y.clamp(0, 1)


def load_image(name: str, size=None, gray: bool = False) -> torch.Tensor:
    """A scikit-image sample image as a float32 tensor in [0, 1].

    Args:
        name: one of :func:`list_images` (e.g. ``"astronaut"``, ``"camera"``, ``"coins"``,
            ``"horse"`` (a binary silhouette), ``"brick"``, ``"grass"``, ``"gravel"``).
        size: ``None`` (native), an int (the shorter side, aspect kept) or ``(H, W)``;
            resized bilinearly with antialiasing.
        gray: return one luminance channel (ITU-R 709 weights, as ``skimage.color.rgb2gray``).

    Returns:
        ``(3, H, W)`` (grey images replicated to three channels) or ``(1, H, W)`` if ``gray``.
        RGBA images (``logo``) are composited over white.

    Raises:
        ValueError: unknown or not-shipped name (the message lists the valid ones), bad size.

    Example:
        >>> x = load_image("camera", size=64)
        >>> tuple(x.shape), x.dtype, float(x.min()) >= 0 and float(x.max()) <= 1
        ((3, 64, 64), torch.float32, True)
        >>> tuple(load_image("astronaut", size=(32, 48), gray=True).shape)
        (1, 32, 48)
    """
    check_choice(name, "name", list_images())
    import skimage.color
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 3 and img.shape[-1] == 4:  # RGBA -> RGB over white
        rgba = img.astype(np.float32) / 255.0
        img = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    x = _to_tensor(img)
    if gray and x.shape[0] == 3:
        x = torch.from_numpy(skimage.color.rgb2gray(x.permute(1, 2, 0).numpy()).astype(np.float32))[None]
    elif not gray and x.shape[0] == 1:
        x = x.expand(3, -1, -1).contiguous()
    return _resize(x, size)


def load_stereo_motorcycle() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Middlebury 2014 "motorcycle" stereo pair shipped with scikit-image.

    Returns:
        ``(left (3, H, W), right (3, H, W), disparity (1, H, W))`` float32, images in [0, 1],
        disparity in pixels of the left image (``x_right = x_left - d``). Pixels without ground
        truth (non-finite in the file) are set to 0; every valid disparity is > 0, so use
        ``disparity > 0`` as the validity mask.

    Example:
        >>> left, right, disp = load_stereo_motorcycle()
        >>> tuple(left.shape), tuple(disp.shape), bool((disp >= 0).all())
        ((3, 500, 741), (1, 500, 741), True)
    """
    root = _data_dir()
    missing = [f for f in _STEREO if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise FileNotFoundError(
            f"load_stereo_motorcycle: files {missing} are not in this scikit-image installation ({root})"
        )
    import skimage.data

    left, right, disp = skimage.data.stereo_motorcycle()
    d = np.where(np.isfinite(disp), disp, 0.0).astype(np.float32)
    return _to_tensor(left), _to_tensor(right), torch.from_numpy(d)[None]
