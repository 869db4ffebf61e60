"""Tests of pixelbook.data.perspective: pinhole geometry, labels, depth, determinism, bad input."""

import math

import numpy as np
import pytest
import torch

from pixelbook.data.perspective import PERSPECTIVE_CLASSES, make_perspective_scenes, perspective_camera


@pytest.fixture(scope="module")
def scenes():
    return make_perspective_scenes(12, size=48, seed=1)


class TestPerspectiveScenes:
    def test_shapes_dtypes_ranges(self, scenes):
        assert scenes["image"].shape == (12, 3, 48, 48) and scenes["image"].dtype == torch.float32
        assert float(scenes["image"].min()) >= 0 and float(scenes["image"].max()) <= 1
        assert scenes["labels"].dtype == torch.int64 and set(scenes["labels"].unique().tolist()) <= {0, 1, 2}
        assert scenes["depth"].shape == (12, 1, 48, 48) and bool((scenes["depth"] > 0).all())
        assert bool(scenes["valid"].all()) and len(PERSPECTIVE_CLASSES) == 3

    def test_apparent_radius_is_inverse_depth(self, scenes):
        z, r = scenes["object_depth"], scenes["object_radius"]
        ok = ~torch.isnan(z)
        cam = perspective_camera(48)
        torch.testing.assert_close(r[ok] * z[ok], torch.full_like(r[ok], cam["f"] * cam["R"]), rtol=1e-5, atol=1e-4)
        slope = np.polyfit(np.log(z[ok].numpy()), np.log(r[ok].numpy()), 1)[0]
        assert abs(slope + 1) < 1e-4

    def test_nearest_disk_touches_the_bottom_and_has_max_radius(self):
        cam = perspective_camera(64, (1.0, 6.0), 0.375)
        assert math.isclose(cam["f"] * cam["R"] / cam["z_near"], 24.0)
        assert math.isclose(cam["y_h"] + cam["f"] * cam["h"] / cam["z_near"], 63.0)
        assert math.isclose(cam["f"] * cam["R"] / cam["z_far"], 4.0)

    def test_ground_depth_follows_the_pinhole_formula(self):
        d = make_perspective_scenes(1, size=32, num_objects=(0, 0), noise=0.0)
        cam = perspective_camera(32)
        rows = torch.arange(32.0)
        below = rows > cam["y_h"]
        expected = cam["f"] * cam["h"] / (rows[below] - cam["y_h"])
        torch.testing.assert_close(d["depth"][0, 0, below, 5], expected.clamp(max=float(d["depth"].max())))
        assert bool((d["labels"] == 0).all())

    def test_object_pixels_have_their_disks_depth(self, scenes):
        obj = scenes["labels"] > 0
        zs = scenes["object_depth"]
        for i in range(12):
            vals = scenes["depth"][i, 0][obj[i]].unique()
            known = zs[i][~torch.isnan(zs[i])]
            assert bool(torch.isin(vals, known).all())

    def test_both_classes_and_near_and_far_objects_occur(self):
        d = make_perspective_scenes(40, size=48, seed=2)
        counts = torch.bincount(d["labels"].flatten(), minlength=3)
        assert bool((counts > 0).all())
        r = d["object_radius"][~torch.isnan(d["object_radius"])]
        assert float(r.min()) < 0.1 * 48 and float(r.max()) > 0.3 * 48

    def test_deterministic_and_splits_differ(self):
        a = make_perspective_scenes(3, size=32, seed=5)
        b = make_perspective_scenes(3, size=32, seed=5)
        c = make_perspective_scenes(3, size=32, seed=5, split="test")
        assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
        # a scene does not depend on how many are drawn with it
        assert torch.equal(make_perspective_scenes(1, size=32, seed=5)["image"][0], a["image"][0])

    def test_haze_lowers_far_contrast(self):
        clear = make_perspective_scenes(1, size=32, seed=0, haze=0.0, noise=0.0)
        hazy = make_perspective_scenes(1, size=32, seed=0, haze=0.9, noise=0.0)
        far = (clear["depth"][0, 0] > 3) & (clear["labels"][0] > 0)
        assert float(hazy["image"][0][:, far].std()) < float(clear["image"][0][:, far].std())

    @pytest.mark.parametrize("kw,match", [
        (dict(n=0), "`n`: expected an integer in \\[1"),
        (dict(size=8), "`size`: expected an integer in \\[16"),
        (dict(split="dev"), "`split`"),
        (dict(depth_range=(2.0, 1.0)), "`depth_range`: expected near < far"),
        (dict(depth_range=(1.0,)), "`depth_range`: expected \\(near, far\\)"),
        (dict(num_objects=(5, 2)), "`num_objects`: expected min <= max"),
        (dict(haze=1.0), "`haze`"),
        (dict(noise=-0.1), "`noise`"),
        (dict(period_fraction=0.0), "`period_fraction`"),
        (dict(seed=1.5), "`seed`: expected an integer"),
    ])
    def test_errors(self, kw, match):
        args = dict(n=1, size=32)
        args.update(kw)
        with pytest.raises((ValueError, TypeError), match=match):
            make_perspective_scenes(**args)
