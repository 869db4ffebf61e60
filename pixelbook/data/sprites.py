r"""Moving-sprite clips with exact flow, occlusions and masks (Chapter 8, multigrid PFF).

Each clip shows a smooth random colour texture (the background) drifting by an integer velocity, and
1–3 textured sprites (disks or squares) moving in straight lines with integer velocities, stacked in
a fixed depth order so that they occlude each other and the background. Everything moves by whole
pixels and nothing is resampled, so the ground truth is exact:

* ``instances[n, t]``: the id of the visible layer at every pixel (0 = background, ``s + 1`` =
  sprite ``s``; a larger id is nearer the camera);
* :meth:`SpriteClips.flow`: the forward flow from frame ``t0`` to frame ``t1`` (a pixel ``p`` of frame
  ``t0`` is at ``p + flow(p)`` in frame ``t1``), and ``valid``: the point is inside the frame at ``t1``
  and not hidden there by a nearer layer (decided exactly through the instance maps).

Velocities are uniform integers in :math:`[-v_{max}, v_{max}]^2`. With the default
:math:`v_{max} = 4`, about 70 % of the sprites move faster than the :math:`\pm 2` px that one
level of :math:`5\times 5` filters can represent (``1 - (5/9)^2``), which is the point of the
multigrid chapter. The recipe is ours; the thesis trains on real video [KONG, §7.3.1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_int

__all__ = ["SpriteClips", "make_sprite_clips"]


def _int_range(value, name: str, low: int) -> tuple[int, int]:
    """An int ``a`` or a pair ``(a, b)`` with ``low <= a <= b``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"`{name}`: expected an int or a pair (min, max), got {value!r}")
        a, b = check_int(value[0], name, low=low), check_int(value[1], name, low=low)
        if a > b:
            raise ValueError(f"`{name}`: expected min <= max, got {value!r}")
        return a, b
    a = check_int(value, name, low=low)
    return a, a


def _smooth_texture(n: int, size: int, sigma: float, g: torch.Generator) -> torch.Tensor:
    """``(n, 3, size, size)`` uniform noise blurred by a Gaussian (periodic), rescaled to [0, 1] per image."""
    x = torch.rand(n * 3, 1, size, size, generator=g)
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="circular"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="circular"), k.view(1, 1, -1, 1))
    x = x.view(n, 3, size, size)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-6)


@dataclass(frozen=True)
class SpriteClips:
    """A batch of sprite clips (see the module docstring).

    Attributes:
        frames: ``(N, T, 3, H, W)`` float32 in [0, 1].
        instances: ``(N, T, H, W)`` int64, 0 = background, ``s + 1`` = sprite ``s`` (depth order).
        velocities: ``(N, S, 2)`` int64 sprite velocities in pixels per frame, ``(x, y)``; rows of
            sprites a clip does not have are 0 (see ``active``).
        active: ``(N, S)`` bool, which sprites each clip has.
        background_velocity: ``(N, 2)`` int64 ``(x, y)`` per frame.
    """

    frames: torch.Tensor
    instances: torch.Tensor
    velocities: torch.Tensor
    active: torch.Tensor
    background_velocity: torch.Tensor

    @property
    def num_frames(self) -> int:
        return self.frames.shape[1]

    def flow(self, t0: int, t1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact forward flow from frame ``t0`` to frame ``t1`` and where it is observable.

        Args:
            t0, t1: frame indices in ``[0, T)`` (any order; ``t1 < t0`` gives the backward flow).

        Returns:
            ``flow`` ``(N, 2, H, W)`` float32 (channel 0 = x, 1 = y): the pixel ``p`` of frame ``t0``
            is at ``p + flow(p)`` in frame ``t1``; ``valid`` ``(N, H, W)`` bool: that position is
            inside frame ``t1`` and shows the same layer there (not occluded, not out of view).
            Reconstructing frame ``t0`` from frame ``t1`` by backward warping with ``flow`` is
            exact on ``valid`` pixels.
        """
        T = self.num_frames
        t0, t1 = check_int(t0, "t0", low=0), check_int(t1, "t1", low=0)
        if t0 >= T or t1 >= T:
            raise ValueError(f"`t0`, `t1`: expected frame indices in [0, {T}), got {t0}, {t1}")
        ids = self.instances[:, t0]  # (N, H, W)
        N, H, W = ids.shape
        layer_v = torch.cat([self.background_velocity[:, None], self.velocities], 1)  # (N, S+1, 2)
        disp = (t1 - t0) * torch.gather(layer_v, 1, ids.view(N, -1, 1).expand(-1, -1, 2))  # (N, HW, 2)
        disp = disp.view(N, H, W, 2)
        yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        qx, qy = xx + disp[..., 0], yy + disp[..., 1]
        inside = (qx >= 0) & (qx < W) & (qy >= 0) & (qy < H)
        q = (qy.clamp(0, H - 1) * W + qx.clamp(0, W - 1)).view(N, -1)
        same = torch.gather(self.instances[:, t1].reshape(N, -1), 1, q).view(N, H, W) == ids
        flow = disp.permute(0, 3, 1, 2).to(torch.float32)
        return flow, inside & same


def make_sprite_clips(num_clips: int, num_frames: int = 12, size: int = 64, num_sprites=(1, 3), max_speed: int = 4,
                      background_speed: int = 1, radius=(6, 12), seed: int = 0) -> SpriteClips:
    r"""Draw ``num_clips`` clips of textured sprites moving over a drifting texture.

    Recipe (ours, for Chapter 8): background = uniform noise blurred with :math:`\sigma = 2` px,
    rescaled to [0, 1]; each sprite = a disk or a square (probability 1/2) of radius (half side)
    uniform in ``radius``, filled with its own texture (:math:`\sigma = 1` px), centred uniformly in
    ``[r, size - r)`` at frame 0; integer velocities uniform in :math:`[-v_{max}, v_{max}]^2` for the
    sprites and :math:`[-v_{bg}, v_{bg}]^2` for the background. Sprites may leave the frame. A
    deterministic function of the arguments (a private ``torch.Generator`` seeded with ``seed``).

    Args:
        num_clips: ``N >= 1``.
        num_frames: ``T >= 2``.
        size: frame side ``H = W >= 16``.
        num_sprites: an int or ``(min, max)``: sprites per clip, uniform (default 1–3).
        max_speed: :math:`v_{max} \ge 0` in px/frame per axis (default 4: most sprites exceed the
            ±2 px of one 5×5 level, all stay within the 14 px of three).
        background_speed: :math:`v_{bg} \ge 0` (default 1).
        radius: an int or ``(min, max)`` sprite radius in pixels, ``1 <= min``, ``2·max < size``.
        seed: random seed.

    Returns:
        :class:`SpriteClips`.

    Raises:
        ValueError / TypeError naming the argument.

    Example:
        >>> clips = make_sprite_clips(2, num_frames=4, size=32, radius=(4, 6))
        >>> tuple(clips.frames.shape), tuple(clips.instances.shape)
        ((2, 4, 3, 32, 32), (2, 4, 32, 32))
        >>> flow, valid = clips.flow(0, 1)
        >>> tuple(flow.shape), valid.dtype
        ((2, 2, 32, 32), torch.bool)
    """
    N = check_int(num_clips, "num_clips", low=1)
    T = check_int(num_frames, "num_frames", low=2)
    size = check_int(size, "size", low=16)
    s_lo, s_hi = _int_range(num_sprites, "num_sprites", 0)
    vmax = check_int(max_speed, "max_speed", low=0)
    vbg = check_int(background_speed, "background_speed", low=0)
    r_lo, r_hi = _int_range(radius, "radius", 1)
    if 2 * r_hi >= size:
        raise ValueError(f"`radius`: expected 2*max < size={size}, got {r_hi}")
    seed = check_int(seed, "seed", low=0)
    g = torch.Generator().manual_seed(seed)

    S = max(s_hi, 1)  # sprite slots; inactive ones are never drawn
    count = torch.randint(s_lo, s_hi + 1, (N,), generator=g)
    active = torch.arange(S)[None] < count[:, None]  # (N, S)
    velocities = torch.randint(-vmax, vmax + 1, (N, S, 2), generator=g) * active[..., None]
    background_velocity = torch.randint(-vbg, vbg + 1, (N, 2), generator=g)
    radii = torch.randint(r_lo, r_hi + 1, (N, S), generator=g)
    square = torch.rand(N, S, generator=g) < 0.5
    lo, span = radii, size - 2 * radii  # centre in [r, size - r)
    centre = lo[..., None] + (torch.rand(N, S, 2, generator=g) * span[..., None]).long()

    pad = vbg * (T - 1)
    canvas = _smooth_texture(N, size + 2 * pad, 2.0, g)  # (N, 3, size + 2 pad, size + 2 pad)
    D = 2 * r_hi + 1
    textures = _smooth_texture(N * S, D, 1.0, g).view(N, S, 3, D, D)

    frames = torch.empty(N, T, 3, size, size)
    instances = torch.zeros(N, T, size, size, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    n_idx = torch.arange(N)[:, None, None]
    for t in range(T):
        # The frame shows the canvas from origin o_t = pad - t·v_bg: a background point at p moves to p + v_bg.
        oy, ox = pad - t * background_velocity[:, 1], pad - t * background_velocity[:, 0]
        rows = (oy[:, None] + torch.arange(size)[None])[:, :, None].expand(N, size, size)
        cols = (ox[:, None] + torch.arange(size)[None])[:, None, :].expand(N, size, size)
        frame = canvas[n_idx, :, rows, cols].permute(0, 3, 1, 2)  # (N, 3, H, W)
        ids = torch.zeros(N, size, size, dtype=torch.long)
        for s in range(S):  # back to front
            c = centre[:, s] + t * velocities[:, s]  # (N, 2) = (x, y)
            dy = yy[None] - c[:, 1, None, None]
            dx = xx[None] - c[:, 0, None, None]
            r = radii[:, s, None, None]
            disk = dx ** 2 + dy ** 2 <= r ** 2
            box = (dx.abs() <= r) & (dy.abs() <= r)
            inside = torch.where(square[:, s, None, None], box, disk) & active[:, s, None, None]
            ly, lx = (dy + r_hi).clamp(0, D - 1), (dx + r_hi).clamp(0, D - 1)
            colour = textures[:, s][n_idx, :, ly, lx].permute(0, 3, 1, 2)  # (N, 3, H, W)
            frame = torch.where(inside[:, None], colour, frame)
            ids = torch.where(inside, torch.full_like(ids, s + 1), ids)
        frames[:, t] = frame
        instances[:, t] = ids
    return SpriteClips(frames=frames.contiguous(), instances=instances, velocities=velocities, active=active,
                       background_velocity=background_velocity)

