r"""Simulated image degradations: free supervision for image restoration [KONG, §6.3.1, §6.4].

"Given a pool of high quality images, we can automatically generate low-resolution, blurred or
JPEG degraded counterparts to use in training" [KONG, §6.3.1]. This module simulates the three
degradations of the thesis' Chapter 6 on ``(N, C, H, W)`` images in [0, 1]:

* **Non-uniform motion blur** — :func:`motion_kernel` rasterises a linear motion (length in
  pixels, orientation in degrees, as the thesis' random linear kernels [KONG, §6.4.2]);
  :func:`nonuniform_motion_blur` blurs with two kernels and blends the results per pixel with a
  smooth random mask (:func:`smooth_random_mask`), so the blur varies over the image;
  :func:`random_nonuniform_motion_blur` draws all of it from a generator.
* **JPEG** — :func:`jpeg_compress` encodes and decodes with Pillow at a given quality factor
  [KONG, §6.4.3].
* **Bicubic down-sampling** — :func:`bicubic_degrade` down-samples by 2 or 4 with anti-aliasing
  and up-samples back with bicubic interpolation; the up-sampled image is the network's input
  [KONG, §6.4.4].

:func:`random_crops` cuts training patches from a pool of images (the thesis trains on 64 × 64
crops [KONG, §6.3.2]). Everything takes a ``torch.Generator`` so that a seed fixes the data.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_dtype, check_finite, check_float, check_int, check_range, check_shape

__all__ = ["motion_kernel", "random_motion_kernels", "smooth_random_mask", "blur", "nonuniform_motion_blur",
           "random_nonuniform_motion_blur", "jpeg_compress", "bicubic_degrade", "random_crops"]


def _check_image(image, name: str = "image", unit: bool = True) -> dict:
    dims = check_shape(image, name, "N C H W")
    check_dtype(image, name, "float")
    check_finite(image, name)
    if unit:
        check_range(image, name, 0.0, 1.0)
    return dims


def motion_kernel(length: float, angle: float, size: int | None = None) -> torch.Tensor:
    r"""A linear motion-blur kernel: a centred segment of ``length`` pixels at ``angle`` degrees.

    The segment is sampled at 8 points per pixel of length and splatted bilinearly onto the grid,
    so fractional lengths and any angle give a smooth family of kernels; the kernel sums to one and
    is point-symmetric about its centre (so correlation and convolution with it agree). ``angle`` is
    counter-clockwise from the x axis as the image is seen (y points down), in degrees; the thesis
    draws it uniformly in [0°, 180°) and the length uniformly in [1, 30] px [KONG, §6.4.2].

    Args:
        length: segment length in pixels, ``>= 0`` (0 is the identity).
        angle: orientation in degrees.
        size: odd side of the kernel; default the smallest odd size holding the segment,
            ``2·ceil(length / 2) + 1``.

    Returns:
        ``(size, size)`` float32 tensor, non-negative, summing to 1.

    Example:
        >>> k = pb.data.degradations.motion_kernel(4, 0, size=7)
        >>> k.sum().item(), k[3].sum().item()  # horizontal: all mass on the centre row
        (1.0, 1.0)
    """
    length = check_float(length, "length", low=0.0)
    angle = check_float(angle, "angle")
    need = 2 * math.ceil(length / 2) + 1
    size = need if size is None else check_int(size, "size", low=1)
    if size % 2 == 0:
        raise ValueError(f"`size`: expected an odd kernel side, got {size}")
    if size < need:
        raise ValueError(f"`size`: expected at least {need} to hold a segment of length {length:g}, got {size}")
    r = size // 2
    theta = math.radians(angle)
    steps = max(2, int(math.ceil(8 * length)) + 1)
    s = torch.linspace(-length / 2, length / 2, steps, dtype=torch.float64)
    x, y = r + s * math.cos(theta), r - s * math.sin(theta)  # y down: counter-clockwise on screen
    x0, y0 = x.floor(), y.floor()
    kernel = torch.zeros(size + 1, size + 1, dtype=torch.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            w = (1 - (x - x0 - dx).abs()) * (1 - (y - y0 - dy).abs())
            kernel.index_put_(((y0 + dy).long(), (x0 + dx).long()), w, accumulate=True)
    kernel = kernel[:size, :size]
    return (kernel / kernel.sum()).float()


def random_motion_kernels(n: int, size: int, min_length: float = 1.0, max_length: float | None = None,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` motion kernels with length ~ U[min_length, max_length] and angle ~ U[0°, 180°).

    Args:
        n: number of kernels.
        size: odd kernel side; ``max_length`` defaults to ``size - 1`` (the longest that fits).
        min_length: shortest motion in pixels; default 1 as the thesis' U[1, 30] [KONG, §6.4.2].
        max_length: longest motion in pixels.
        generator: random source.

    Returns:
        ``(kernels (n, size, size), lengths (n,), angles (n,))``.
    """
    n = check_int(n, "n", low=1)
    size = check_int(size, "size", low=1)
    max_length = float(size - 1) if max_length is None else check_float(max_length, "max_length", low=0.0)
    min_length = check_float(min_length, "min_length", low=0.0)
    if min_length > max_length:
        raise ValueError(f"`min_length`: expected <= max_length = {max_length:g}, got {min_length:g}")
    lengths = min_length + (max_length - min_length) * torch.rand(n, generator=generator, dtype=torch.float64)
    angles = 180.0 * torch.rand(n, generator=generator, dtype=torch.float64)
    kernels = torch.stack([motion_kernel(float(L), float(a), size) for L, a in zip(lengths, angles)])
    return kernels, lengths.float(), angles.float()


def smooth_random_mask(n: int, height: int, width: int, cells: int = 3,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Smooth random blending masks in [0, 1]: uniform noise on a ``cells × cells`` grid, up-sampled
    bicubically to ``height × width`` and stretched to span exactly [0, 1] in each image.

    ``cells`` sets the smoothness (ours: 3 gives one or two transitions across a patch, so both
    kernels of :func:`nonuniform_motion_blur` show in most patches).

    Returns:
        ``(n, 1, height, width)`` float32.
    """
    n, height, width = (check_int(v, name, low=1) for v, name in ((n, "n"), (height, "height"), (width, "width")))
    cells = check_int(cells, "cells", low=2)
    noise = torch.rand(n, 1, cells, cells, generator=generator)
    mask = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=True)
    low = mask.amin(dim=(2, 3), keepdim=True)
    high = mask.amax(dim=(2, 3), keepdim=True)
    return (mask - low) / (high - low).clamp_min(1e-12)


def blur(image: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own kernel (the same for all its channels), reflect padding.

    Args:
        image: ``(N, C, H, W)`` float.
        kernels: ``(N, k, k)`` or ``(k, k)`` (one for all), ``k`` odd and ``k // 2 < min(H, W)``.

    Returns:
        ``(N, C, H, W)``: cross-correlation with the kernel (= convolution for the point-symmetric
        kernels of :func:`motion_kernel`).
    """
    dims = _check_image(image, unit=False)
    if torch.is_tensor(kernels) and kernels.ndim == 2:
        kernels = kernels.expand(dims["N"][0], *kernels.shape)
    check_shape(kernels, "kernels", "N k k", dims)
    check_dtype(kernels, "kernels", "float")
    N, C, H, W = image.shape
    k = kernels.shape[-1]
    if k % 2 == 0 or k // 2 >= min(H, W):
        raise ValueError(f"`kernels`: expected an odd side k with k // 2 < min(H, W) = {min(H, W)}, got {k}")
    r = k // 2
    padded = F.pad(image.reshape(1, N * C, H, W), (r, r, r, r), mode="reflect")
    weight = kernels.to(image).repeat_interleave(C, dim=0).unsqueeze(1)  # (N*C, 1, k, k)
    return F.conv2d(padded, weight, groups=N * C).reshape(N, C, H, W)


def nonuniform_motion_blur(image: torch.Tensor, kernel_a: torch.Tensor, kernel_b: torch.Tensor,
                           mask: torch.Tensor) -> torch.Tensor:
    r"""Spatially varying blur: ``mask · (image ⋆ a) + (1 − mask) · (image ⋆ b)``.

    Each output pixel is a convex combination of two motion blurs, so the effective kernel at pixel
    p is :math:`m_p a + (1-m_p) b`, which changes smoothly over the image — a filter flow that is
    not a convolution [KONG, Eq. 6.1].

    Args:
        image: ``(N, C, H, W)`` in [0, 1].
        kernel_a: ``(N, k, k)`` kernels (see :func:`blur`).
        kernel_b: ``(N, k, k)``.
        mask: ``(N, 1, H, W)`` weights in [0, 1].

    Returns:
        ``(N, C, H, W)`` in [0, 1].
    """
    dims = _check_image(image)
    check_shape(mask, "mask", "N 1 H W", dims)
    check_range(mask, "mask", 0.0, 1.0)
    mask = mask.to(image)
    return mask * blur(image, kernel_a) + (1 - mask) * blur(image, kernel_b)


def random_nonuniform_motion_blur(image: torch.Tensor, size: int = 17, min_length: float = 1.0,
                                  max_length: float | None = None, cells: int = 3,
                                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Blur each image with two random motion kernels blended by a smooth random mask.

    Args:
        image: ``(N, C, H, W)`` in [0, 1], ``min(H, W) > size // 2``.
        size: odd kernel side (default 17, the thesis' filter size for deblurring [KONG, §6.4.2]).
        min_length: shortest motion in pixels.
        max_length: longest motion in pixels (default ``size - 1``).
        cells: smoothness of the mask (:func:`smooth_random_mask`).
        generator: random source.

    Returns:
        ``(blurred, info)``; ``info`` maps ``"kernel_a"`` and ``"kernel_b"`` to the ``(N, size, size)``
        kernels, ``"length_a"``, ``"length_b"``, ``"angle_a"`` and ``"angle_b"`` to ``(N,)`` tensors, and
        ``"mask"`` to the ``(N, 1, H, W)`` blend mask.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(2, 3, 32, 32, generator=g)
        >>> y, info = pb.data.degradations.random_nonuniform_motion_blur(x, size=9, generator=g)
        >>> tuple(y.shape), tuple(info["mask"].shape)
        ((2, 3, 32, 32), (2, 1, 32, 32))
    """
    _check_image(image)
    N, _, H, W = image.shape
    size = check_int(size, "size", low=1)
    if size % 2 == 0 or size // 2 >= min(H, W):
        raise ValueError(f"`size`: expected an odd kernel side with size // 2 < min(H, W) = {min(H, W)}, got {size}")
    ka, la, aa = random_motion_kernels(N, size, min_length, max_length, generator)
    kb, lb, ab = random_motion_kernels(N, size, min_length, max_length, generator)
    mask = smooth_random_mask(N, H, W, cells, generator).to(image.device)
    out = nonuniform_motion_blur(image, ka.to(image.device), kb.to(image.device), mask)
    info = {"kernel_a": ka, "kernel_b": kb, "length_a": la, "length_b": lb, "angle_a": aa, "angle_b": ab,
            "mask": mask}
    return out.clamp(0, 1), info


def jpeg_compress(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode with Pillow's JPEG at ``quality`` (1-95), as the thesis' on-the-fly
    compression [KONG, §6.4.3]; quality factors 10, 20, 40 are the thesis' test settings (Table 6.2).

    Images are rounded to 8 bits first. One-channel images are encoded as greyscale; three-channel
    images as RGB with Pillow's default chroma sub-sampling (4:2:0), as most JPEG files are.
    Not differentiable (data generation).

    Args:
        image: ``(N, 1 or 3, H, W)`` in [0, 1].
        quality: JPEG quality factor, integer in [1, 95] (Pillow's useful range).

    Returns:
        ``(N, C, H, W)`` in [0, 1], on ``image``'s device and dtype.

    Example:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> y = pb.data.degradations.jpeg_compress(x, 10)
        >>> tuple(y.shape), bool((y - x).abs().mean() > 0.01)
        ((1, 3, 16, 16), True)
    """
    dims = _check_image(image)
    if dims["C"][0] not in (1, 3):
        raise ValueError(f"`image`: expected 1 or 3 channels for JPEG, got {dims['C'][0]}")
    quality = check_int(quality, "quality", low=1, high=95)
    from PIL import Image

    arrays = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for a in arrays:
        pil = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a, mode="L" if a.shape[-1] == 1 else "RGB")
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(pil.mode))
        out.append(decoded.reshape(a.shape))
    result = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(image.dtype) / 255.0
    return result.to(image.device)


def bicubic_degrade(image: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Down-sample by ``scale`` (bicubic, anti-aliased), then up-sample back by bicubic interpolation.

    The thesis' super-resolution input: "downsample 1/4× and upsample 4× again using bicubic
    interpolation (with anti-aliasing)" [KONG, §6.4.4]. PyTorch's bicubic uses the kernel parameter
    a = −0.75 where MATLAB's ``imresize`` (used by most SR benchmarks) uses a = −0.5, so absolute
    PSNRs differ slightly from published "Bicubic" columns.

    Args:
        image: ``(N, C, H, W)`` in [0, 1], ``H`` and ``W`` divisible by ``scale``.
        scale: 2 or 4 (any integer >= 2 works).

    Returns:
        ``(upsampled (N, C, H, W), low (N, C, H/scale, W/scale))``, both clamped to [0, 1].

    Example:
        >>> up, low = pb.data.degradations.bicubic_degrade(torch.rand(1, 3, 16, 16), 4)
        >>> tuple(up.shape), tuple(low.shape)
        ((1, 3, 16, 16), (1, 3, 4, 4))
    """
    _check_image(image)
    scale = check_int(scale, "scale", low=2)
    H, W = image.shape[-2:]
    if H % scale or W % scale:
        raise ValueError(f"`image`: expected H and W divisible by scale={scale}, got {H}×{W}")
    low = F.interpolate(image, size=(H // scale, W // scale), mode="bicubic", align_corners=False, antialias=True)
    up = F.interpolate(low, size=(H, W), mode="bicubic", align_corners=False)
    return up.clamp(0, 1), low.clamp(0, 1)


def random_crops(images, n: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` random ``size × size`` crops from a pool of images (uniform image, uniform position).

    Args:
        images: a sequence of ``(C, H, W)`` tensors (same ``C``), each at least ``size`` on both sides.
        n: number of crops.
        size: crop side (the thesis trains on 64 × 64 [KONG, §6.3.2]).
        generator: random source.

    Returns:
        ``(n, C, size, size)``.
    """
    n, size = check_int(n, "n", low=1), check_int(size, "size", low=1)
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError(f"`images`: expected a non-empty list of (C, H, W) tensors, got {type(images).__name__}")
    channels = None
    for i, img in enumerate(images):
        d = check_shape(img, f"images[{i}]", "C H W")
        if d["H"][0] < size or d["W"][0] < size:
            raise ValueError(f"`images[{i}]`: expected both sides >= size={size}, got {tuple(img.shape)}")
        if channels is not None and d["C"][0] != channels:
            raise ValueError(f"`images[{i}]`: expected C={channels} (as in `images[0]`), got {d['C'][0]}")
        channels = d["C"][0]
    which = torch.randint(len(images), (n,), generator=generator)
    u = torch.rand(n, 2, generator=generator)
    crops = []
    for j, i in enumerate(which.tolist()):
        H, W = images[i].shape[-2:]
        y, x = int(u[j, 0] * (H - size + 1)), int(u[j, 1] * (W - size + 1))
        crops.append(images[i][:, y:y + size, x:x + size])
    return torch.stack(crops)
