"""Moving-sprite clips (Chapter 8): shapes, determinism, exact flow and occlusion, velocities, bad input."""

import pytest
import torch

from pixelbook.data.sprites import SpriteClips, make_sprite_clips


@pytest.fixture(scope="module")
def clips():
    return make_sprite_clips(16, num_frames=6, size=48, radius=(5, 10), seed=3)


def _gather(frames_t, flow):
    """frames_t (N, C, H, W) read at p + flow(p) (integer flow), clamped to the frame."""
    N, C, H, W = frames_t.shape
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    qx = (xx + flow[:, 0].long()).clamp(0, W - 1)
    qy = (yy + flow[:, 1].long()).clamp(0, H - 1)
    return frames_t[torch.arange(N)[:, None, None], :, qy, qx].permute(0, 3, 1, 2)


class TestSpriteClips:
    def test_shapes_dtypes_ranges(self, clips):
        assert isinstance(clips, SpriteClips)
        assert clips.frames.shape == (16, 6, 3, 48, 48) and clips.frames.dtype == torch.float32
        assert clips.instances.shape == (16, 6, 48, 48) and clips.instances.dtype == torch.long
        assert 0.0 <= float(clips.frames.min()) and float(clips.frames.max()) <= 1.0
        assert clips.velocities.shape == (16, 3, 2) and clips.active.shape == (16, 3)
        assert int(clips.instances.max()) <= 3

    def test_deterministic_in_the_seed(self):
        a, b = make_sprite_clips(3, num_frames=3, size=32, radius=(4, 6), seed=7), make_sprite_clips(
            3, num_frames=3, size=32, radius=(4, 6), seed=7)
        c = make_sprite_clips(3, num_frames=3, size=32, radius=(4, 6), seed=8)
        assert torch.equal(a.frames, b.frames) and torch.equal(a.instances, b.instances)
        assert not torch.equal(a.frames, c.frames)

    @pytest.mark.parametrize("t0, t1", [(0, 1), (2, 5), (4, 1)])
    def test_flow_reconstructs_frame_t0_exactly_on_valid_pixels(self, clips, t0, t1):
        flow, valid = clips.flow(t0, t1)
        rec = _gather(clips.frames[:, t1], flow)
        assert torch.equal(rec.permute(0, 2, 3, 1)[valid], clips.frames[:, t0].permute(0, 2, 3, 1)[valid])
        assert 0.5 < float(valid.float().mean()) < 1.0  # occlusions and exits exist, most pixels are valid

    def test_flow_is_the_layer_velocity_times_the_gap(self, clips):
        flow, _ = clips.flow(1, 4)
        ids = clips.instances[:, 1]
        for n in range(4):
            for s in range(3):
                on = ids[n] == s + 1
                if on.any():
                    assert torch.equal(flow[n][:, on], 3 * clips.velocities[n, s].float()[:, None].expand(2, int(on.sum())))
            bg = ids[n] == 0
            assert torch.equal(flow[n][:, bg], 3 * clips.background_velocity[n].float()[:, None].expand(2, int(bg.sum())))

    def test_occluded_pixels_are_not_valid(self):
        # one clip, two sprites on a collision course: the lower one gets covered
        found = False
        for seed in range(40):
            c = make_sprite_clips(4, num_frames=8, size=48, num_sprites=2, radius=(8, 10), seed=seed)
            flow, valid = c.flow(0, 7)
            low = (c.instances[:, 0] == 1) & ~valid
            inside = low & (c.instances[:, 7] == 2)  # covered by sprite 2 at the end
            if inside.any():
                found = True
                break
        assert found

    def test_most_sprites_exceed_one_5x5_level(self):
        c = make_sprite_clips(200, num_frames=2, size=32, radius=(4, 6), seed=0)
        speed = c.velocities[c.active].abs().amax(1)
        assert int(speed.max()) == 4
        assert 0.6 < float((speed > 2).float().mean()) < 0.8  # 1 - (5/9)^2 = 0.69
        n = c.active.sum(1)
        assert set(n.tolist()) == {1, 2, 3}


class TestBadInput:
    def test_errors_name_the_argument(self):
        with pytest.raises(ValueError, match="`num_frames`"):
            make_sprite_clips(2, num_frames=1)
        with pytest.raises(ValueError, match="`radius`: expected 2\\*max < size"):
            make_sprite_clips(2, size=16, radius=(4, 8))
        with pytest.raises(TypeError, match="`max_speed`"):
            make_sprite_clips(2, max_speed=2.5)
        with pytest.raises(ValueError, match="`num_sprites`: expected min <= max"):
            make_sprite_clips(2, num_sprites=(3, 1))
        c = make_sprite_clips(1, num_frames=3, size=16, radius=(3, 4))
        with pytest.raises(ValueError, match="`t0`, `t1`"):
            c.flow(0, 3)
