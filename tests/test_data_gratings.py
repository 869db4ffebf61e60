"""Tests of pixelbook.data.gratings: orientations, labels, boundaries, determinism, bad input."""

import math

import pytest
import torch

from pixelbook.data.gratings import GRATING_CLASSES, make_grating_scenes


class TestGratingScenes:
    def test_shapes_and_classes(self):
        d = make_grating_scenes(20, size=32, seed=0)
        assert d["image"].shape == (20, 3, 32, 32) and d["labels"].shape == (20, 32, 32)
        assert set(d["labels"].unique().tolist()) == {0, 1, 2} and len(GRATING_CLASSES) == 3
        assert float(d["image"].min()) >= 0 and float(d["image"].max()) <= 1

    def test_background_is_flat_up_to_noise(self):
        d = make_grating_scenes(4, size=32, seed=1, noise=0.0)
        for i in range(4):
            bg = d["image"][i][:, d["labels"][i] == 0]
            assert float(bg.std(1).max()) < 1e-6

    def test_grating_orientation_per_class(self):
        # the image gradient inside a blob is perpendicular to the stripes' direction (angle + 90°)
        d = make_grating_scenes(30, size=48, seed=2, noise=0.0, angle=0.0, angle_gap=60.0)
        gray = d["image"].mean(1)
        gy, gx = torch.gradient(gray, dim=(1, 2))
        for cls, expected in ((1, 0.0), (2, 60.0)):
            inside = d["labels"] == cls
            inside[:, :, :2] = inside[:, :, -2:] = inside[:, :2] = inside[:, -2:] = False
            # doubled-angle average of the gradient direction (sign-free)
            ang = torch.atan2(gy[inside], gx[inside])
            w = gx[inside] ** 2 + gy[inside] ** 2
            mean = 0.5 * torch.atan2((w * torch.sin(2 * ang)).sum(), (w * torch.cos(2 * ang)).sum())
            diff = (math.degrees(float(mean)) - expected + 90) % 180 - 90
            assert abs(diff) < 5, (cls, math.degrees(float(mean)))

    def test_boundaries_mark_label_changes(self):
        d = make_grating_scenes(3, size=32, seed=3)
        lab, b = d["labels"], d["boundaries"]
        change = torch.zeros_like(b)
        change[:, :, 1:] |= lab[:, :, 1:] != lab[:, :, :-1]
        assert bool(b[change].all())
        interior = (lab[:, 1:-1, 1:-1] == lab[:, :-2, 1:-1]) & (lab[:, 1:-1, 1:-1] == lab[:, 2:, 1:-1]) & \
                   (lab[:, 1:-1, 1:-1] == lab[:, 1:-1, :-2]) & (lab[:, 1:-1, 1:-1] == lab[:, 1:-1, 2:])
        assert not bool(b[:, 1:-1, 1:-1][interior].any())

    def test_deterministic_and_splits_differ(self):
        a, b = make_grating_scenes(2, size=24, seed=4), make_grating_scenes(2, size=24, seed=4)
        assert torch.equal(a["image"], b["image"])
        assert not torch.equal(a["image"], make_grating_scenes(2, size=24, seed=4, split="val")["image"])

    @pytest.mark.parametrize("kw,match", [(dict(n=0), "`n`"), (dict(angle_gap=0.0), "`angle_gap`"),
                                          (dict(period=1.0), "`period`"), (dict(num_blobs=(3, 1)), "`num_blobs`"),
                                          (dict(split="x"), "`split`"), (dict(radius=(0.3, 0.1)), "`radius`")])
    def test_errors(self, kw, match):
        args = dict(n=1, size=24)
        args.update(kw)
        with pytest.raises((ValueError, TypeError), match=match):
            make_grating_scenes(**args)
