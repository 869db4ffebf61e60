"""Tests of pixelbook.data.synthetic: the ray-cast scene generator and its camera geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pixelbook.data.synthetic import (
    MAX_OBJECTS,
    OBJECT_CLASSES,
    SCENE_CLASSES,
    backproject,
    intrinsics,
    layout_from_objects,
    make_scene_splits,
    make_scenes,
    normals_from_depth,
    render_scenes,
    sample_layouts,
    scene_class_names,
)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(24, size=64, seed=7)


@pytest.fixture(scope="module")
def big_scenes():
    return make_scenes(6, size=128, seed=3, num_objects=(4, 6))


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between unit vectors along dim 1."""
    return torch.rad2deg(torch.arccos((a * b).sum(1).clamp(-1, 1)))


def _segments(s):
    return s["labels"] * (MAX_OBJECTS + 1) + s["instances"]


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


class TestSceneClassNames:
    def test_floor_wall_then_at_least_four_object_classes(self):
        assert scene_class_names() == SCENE_CLASSES
        assert SCENE_CLASSES[:2] == ("floor", "wall")
        assert len(OBJECT_CLASSES) >= 4 and isinstance(SCENE_CLASSES, tuple)


class TestMakeScenes:
    def test_keys_shapes_dtypes_and_ranges(self, scenes):
        s, N, H, W = scenes, 24, 64, 64
        assert s["image"].shape == (N, 3, H, W) and s["image"].dtype == torch.float32
        assert float(s["image"].min()) >= 0 and float(s["image"].max()) <= 1
        assert s["labels"].shape == (N, H, W) and s["labels"].dtype == torch.int64
        assert s["instances"].shape == (N, H, W) and s["instances"].dtype == torch.int64
        assert s["boundaries"].shape == (N, H, W) and s["boundaries"].dtype == torch.bool
        assert s["depth"].shape == (N, 1, H, W) and s["depth"].dtype == torch.float32
        assert s["normals"].shape == (N, 3, H, W) and s["normals"].dtype == torch.float32
        assert s["valid"].shape == (N, H, W) and bool(s["valid"].all())
        assert bool((s["depth"] > 0).all()) and bool(torch.isfinite(s["depth"]).all())
        assert int(s["labels"].min()) >= 0 and int(s["labels"].max()) < len(SCENE_CLASSES)

    def test_non_square_size(self):
        s = make_scenes(2, size=(32, 48), seed=1)
        assert s["image"].shape == (2, 3, 32, 48) and s["depth"].shape == (2, 1, 32, 48)

    def test_same_seed_identical_different_seed_differs(self):
        a, b, c = make_scenes(3, 32, seed=5), make_scenes(3, 32, seed=5), make_scenes(3, 32, seed=6)
        for key in a:
            assert torch.equal(a[key], b[key]), key
        assert not torch.equal(a["image"], c["image"])
        assert not torch.equal(a["labels"], c["labels"])

    def test_scene_does_not_depend_on_how_many_are_drawn(self):
        few, many = make_scenes(2, 32, seed=4), make_scenes(5, 32, seed=4)
        tail = make_scenes(3, 32, seed=4, first_index=2)
        assert torch.equal(few["image"], many["image"][:2])
        assert torch.equal(tail["depth"], many["depth"][2:])

    def test_does_not_touch_global_random_state(self):
        torch.manual_seed(0)
        np.random.seed(0)
        expected_t, expected_np = torch.rand(3), np.random.rand(3)
        torch.manual_seed(0)
        np.random.seed(0)
        make_scenes(2, 32, seed=1, noise=0.1)
        assert torch.equal(torch.rand(3), expected_t)
        assert np.array_equal(np.random.rand(3), expected_np)

    def test_normals_are_unit_and_face_the_camera(self, scenes):
        n = scenes["normals"]
        torch.testing.assert_close(n.norm(dim=1), torch.ones_like(n[:, 0]), atol=1e-5, rtol=0)
        P = backproject(scenes["depth"], scenes["K"])
        assert bool(((n * P).sum(1) < 0).all())

    def test_floor_depth_and_normal_follow_the_plane_formula(self, scenes):
        s = scenes
        H = s["depth"].shape[-2]
        f, cy = s["K"][:, 1, 1], s["K"][:, 1, 2]
        th, h = s["pitch"].double(), s["camera_height"].double()
        vb = (torch.arange(H, dtype=torch.float64)[None, :] - cy[:, None]) / f[:, None]  # (N, H)
        z_plane = h[:, None] / (vb * torch.cos(th)[:, None] + torch.sin(th)[:, None])
        floor = s["labels"] == 0
        assert floor.sum() > 1000
        z_expected = z_plane[:, :, None].expand_as(floor)
        torch.testing.assert_close(s["depth"][:, 0][floor].double(), z_expected[floor], rtol=1e-5, atol=0)
        n_expected = torch.stack([torch.zeros_like(th), -torch.cos(th), -torch.sin(th)], 1).float()
        n_floor = s["normals"].permute(0, 2, 3, 1)[floor]
        idx = floor.nonzero()[:, 0]
        torch.testing.assert_close(n_floor, n_expected[idx], atol=1e-6, rtol=0)

    def test_wall_depth_follows_the_plane_formula(self):
        lay = sample_layouts(4, seed=2)
        s = render_scenes(lay, size=48)
        th, zw = torch.as_tensor(lay.pitch), torch.as_tensor(lay.wall_z)
        f, cy = float(s["K"][0, 1, 1]), float(s["K"][0, 1, 2])
        vb = (torch.arange(48, dtype=torch.float64) - cy) / f
        z_plane = zw[:, None] / (torch.cos(th)[:, None] - torch.sin(th)[:, None] * vb[None])  # (N, H)
        wall = s["labels"] == 1
        got = s["depth"][:, 0][wall].double()
        torch.testing.assert_close(got, z_plane[:, :, None].expand_as(wall)[wall], rtol=1e-5, atol=0)

    @pytest.mark.parametrize("method", ["cross", "plane"])
    def test_normals_from_depth_agree_on_smooth_interiors(self, big_scenes, method):
        s = big_scenes
        est, ok = normals_from_depth(s["depth"], s["K"], method=method, window=3)
        seg = _segments(s)
        n = s["normals"]
        same = torch.ones_like(ok)
        smooth = torch.ones_like(ok)
        for dy in (-1, 0, 1):  # interior of one surface: 3 x 3 neighbours on the same segment
            for dx in (-1, 0, 1):  # and no crease (box edge, cylinder rim) inside the window
                sh_seg = torch.roll(seg, (dy, dx), (1, 2))
                sh_n = torch.roll(n, (dy, dx), (2, 3))
                same &= sh_seg == seg
                smooth &= _angle_deg(sh_n, n) < 30
        interior = ok & same & smooth
        interior[:, [0, -1]] = False
        interior[:, :, [0, -1]] = False
        ang = _angle_deg(est, n)
        for cls in range(len(SCENE_CLASSES)):
            m = interior & (s["labels"] == cls)
            assert m.sum() > 30, SCENE_CLASSES[cls]
            assert float(ang[m].median()) < 5.0, (SCENE_CLASSES[cls], float(ang[m].median()))
            assert float(ang[m].quantile(0.9)) < 5.0, (SCENE_CLASSES[cls], float(ang[m].quantile(0.9)))

    def test_boundaries_are_exactly_one_side_of_each_segment_change(self, scenes):
        s = scenes
        seg, b, z = _segments(s), s["boundaries"], s["depth"][:, 0]
        # every boundary pixel has a 4-neighbour on another segment
        change = torch.zeros_like(b)
        for a, c, sl_a, sl_c in (
            (seg[:, :, :-1], seg[:, :, 1:], (slice(None), slice(None), slice(0, -1)), (slice(None), slice(None), slice(1, None))),
            (seg[:, :-1], seg[:, 1:], (slice(None), slice(0, -1)), (slice(None), slice(1, None))),
        ):
            d = a != c
            change[sl_a] |= d
            change[sl_c] |= d
            # of each differing adjacent pair, the nearer pixel is marked
            za, zc = z[sl_a], z[sl_c]
            ba, bc = b[sl_a], b[sl_c]
            assert bool((ba | ~(d & (za <= zc))).all())
            assert bool((bc | ~(d & (zc < za))).all())
        assert bool((~b | change).all())
        assert b.float().mean() < 0.15  # thin: a 1-px line, not a band

    def test_instances_nest_in_labels_and_are_numbered_consecutively(self, scenes):
        s = scenes
        stuff = s["instances"] == 0
        assert bool((s["labels"][stuff] <= 1).all()) and bool((s["labels"][~stuff] >= 2).all())
        for i in range(len(s["labels"])):
            ids = s["instances"][i].unique()
            k = int(s["num_instances"][i])
            assert ids.tolist() == list(range(k + 1))
            for j in range(1, k + 1):
                assert s["labels"][i][s["instances"][i] == j].unique().numel() == 1

    def test_classes_restrict_the_objects_drawn(self):
        s = make_scenes(6, 32, seed=0, classes=("floor", "wall", "sphere"), num_objects=3)
        assert set(s["labels"].unique().tolist()) <= {0, 1, 2}
        assert (s["labels"] == 2).any()

    def test_num_objects_zero_gives_floor_and_wall_only(self):
        s = make_scenes(2, 32, num_objects=0)
        assert set(s["labels"].unique().tolist()) == {0, 1} and int(s["instances"].max()) == 0

    def test_noise_changes_pixels_not_labels(self):
        a, b = make_scenes(2, 32, seed=1), make_scenes(2, 32, seed=1, noise=0.1)
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["depth"], b["depth"])
        assert 0.03 < float((a["image"] - b["image"]).abs().mean()) < 0.1
        assert float(b["image"].min()) >= 0 and float(b["image"].max()) <= 1

    def test_shadows_only_darken(self):
        lay = sample_layouts(4, seed=9, num_objects=4)
        lit, shaded = render_scenes(lay, 48, shadows=False), render_scenes(lay, 48)
        assert bool((shaded["image"] <= lit["image"] + 1e-6).all())
        assert float((lit["image"] - shaded["image"]).max()) > 0.1

    def test_pixel_count_shrinks_with_depth_in_random_scenes(self):
        s = make_scenes(100, 32, seed=11, num_objects=1)
        area, depth = [], []
        for i in range(100):
            m = s["instances"][i] == 1
            if m.sum() > 0:
                area.append(int(m.sum()))
                depth.append(float(s["depth"][i, 0][m].median()))
        assert len(area) > 80
        assert _spearman(np.array(area), np.array(depth)) < -0.6

    def test_bad_arguments_raise_naming_them(self):
        with pytest.raises(ValueError, match=r"`n`: expected an integer in \[1, inf\]"):
            make_scenes(0)
        with pytest.raises(ValueError, match="`size`: expected each side >= 16"):
            make_scenes(1, size=8)
        with pytest.raises(ValueError, match="`size`: expected an int or a pair"):
            make_scenes(1, size=(32, 32, 3))
        with pytest.raises(ValueError, match=r"`classes`: unknown class names \['dragon'\]"):
            make_scenes(1, classes=("sphere", "dragon"))
        with pytest.raises(ValueError, match="`classes`: expected at least one object class"):
            make_scenes(1, classes=("floor",))
        with pytest.raises(ValueError, match="`num_objects`: expected 0 <= min <= max"):
            make_scenes(1, num_objects=(3, 2))
        with pytest.raises(ValueError, match=r"`noise`: expected a float in \[0, 1\]"):
            make_scenes(1, noise=-0.1)
        with pytest.raises(ValueError, match="`split`: expected one of"):
            make_scenes(1, split="dev")
        with pytest.raises(ValueError, match=r"`seed`: expected an integer in \[0, inf\]"):
            make_scenes(1, seed=-1)
        with pytest.raises(TypeError, match="`seed`"):
            make_scenes(1, seed=1.5)


class TestMakeSceneSplits:
    def test_splits_are_disjoint_and_independent_of_each_others_size(self):
        tr, va = make_scene_splits(20, 5, size=32, seed=0)
        for v in va["image"]:
            assert not any(torch.equal(v, t) for t in tr["image"])
        _, va2 = make_scene_splits(3, 5, size=32, seed=0)
        assert torch.equal(va["image"], va2["image"])
        assert torch.equal(make_scenes(5, 32, seed=0, split="val")["labels"], va["labels"])

    def test_rejects_split_arguments(self):
        with pytest.raises(ValueError, match="`split`: set by make_scene_splits"):
            make_scene_splits(2, 2, split="val")


class TestLayoutFromObjects:
    @staticmethod
    def _sphere(z, x=0.0, r=0.5):
        return {"class": "sphere", "x": x, "z": z, "radius": r}

    def test_sphere_image_area_follows_perspective(self):
        size, r = 256, 0.5
        lay = layout_from_objects([[self._sphere(4.0, r=r)], [self._sphere(8.0, r=r)]])
        s = render_scenes(lay, size=size)
        f = float(s["K"][0, 0, 0])
        th, h = float(lay.pitch[0]), float(lay.camera_height[0])
        areas = []
        for i, z in enumerate((4.0, 8.0)):
            c = np.array([0.0, r - h, z])  # sphere centre relative to the camera (world axes)
            d = np.linalg.norm(c)
            axis = np.array([0.0, -math.sin(th), math.cos(th)])
            cos_a = c @ axis / d
            solid = 2 * math.pi * (1 - math.sqrt(1 - (r / d) ** 2))
            expected = f * f * solid / cos_a**3  # pixel area of a small solid angle off-axis
            got = int((s["instances"][i] == 1).sum())
            areas.append(got)
            assert abs(got / expected - 1) < 0.05, (z, got, expected)
        assert 3.5 < areas[0] / areas[1] < 4.5  # ~ (8 / 4)^2

    def test_farther_objects_are_higher_in_the_image(self):
        s = render_scenes(layout_from_objects([[self._sphere(3.0)], [self._sphere(9.0)]]), size=96)
        bottom = [int((s["instances"][i] == 1).nonzero()[:, 0].max()) for i in range(2)]
        assert bottom[1] < bottom[0]

    def test_nearer_object_occludes_farther_one(self):
        pair = layout_from_objects([[self._sphere(4.0), self._sphere(7.0, r=0.6)], [self._sphere(7.0, r=0.6)]])
        s = render_scenes(pair, size=96)
        front, back_alone = s["instances"][0] == 1, s["instances"][1] == 1
        back = s["instances"][0] == 2
        assert bool((back & front).sum() == 0) and int(back.sum()) < int(back_alone.sum())
        assert bool((s["depth"][0, 0][front] < s["depth"][1, 0][front]).all())  # z-buffer kept nearest

    def test_sphere_depth_at_its_centre_pixel_is_the_analytic_surface(self):
        lay = layout_from_objects([[self._sphere(5.0)]], pitch_deg=0.0, camera_height=0.5)
        s = render_scenes(lay, size=65)  # optical axis through the pixel (32, 32) and the centre
        assert float(s["depth"][0, 0, 32, 32]) == pytest.approx(5.0 - 0.5, abs=1e-5)
        torch.testing.assert_close(s["normals"][0, :, 32, 32], torch.tensor([0.0, 0.0, -1.0]), atol=1e-5, rtol=0)

    def test_every_class_renders_with_its_label(self):
        objs = [
            {"class": "sphere", "x": -1.5, "z": 5.0, "radius": 0.4},
            {"class": "box", "x": -0.5, "z": 5.5, "half_extents": (0.3, 0.3, 0.3), "yaw": 0.5},
            {"class": "cylinder", "x": 0.5, "z": 5.0, "radius": 0.3, "height": 0.8},
            {"class": "cone", "x": 1.5, "z": 5.5, "radius": 0.4, "height": 1.0},
        ]
        s = render_scenes(layout_from_objects([objs]), size=96)
        assert set(s["labels"].unique().tolist()) == set(range(len(SCENE_CLASSES)))

    def test_bad_object_raises_naming_it(self):
        with pytest.raises(ValueError, match=r"`scenes\[0\]\[0\]\['class'\]`: expected one of"):
            layout_from_objects([[{"class": "torus", "x": 0, "z": 5}]])
        with pytest.raises(ValueError, match=r"`scenes\[0\]\[0\]`: a cone needs key 'height'"):
            layout_from_objects([[{"class": "cone", "x": 0, "z": 5, "radius": 0.3}]])
        with pytest.raises(ValueError, match="expected positive dimensions"):
            layout_from_objects([[{"class": "sphere", "x": 0, "z": 5, "radius": -1}]])


class TestRenderScenes:
    def test_rejects_non_layout(self):
        with pytest.raises(TypeError, match="`layout`: expected a SceneLayout"):
            render_scenes({"kind": []})

    def test_layout_indexing_renders_the_same_scene(self):
        lay = sample_layouts(3, seed=1)
        torch.testing.assert_close(render_scenes(lay[1], 32)["image"][0], render_scenes(lay, 32)["image"][1])


class TestBackproject:
    def test_centre_pixel_lies_on_the_optical_axis(self):
        P = backproject(torch.full((1, 1, 17, 17), 3.0), intrinsics(17))
        torch.testing.assert_close(P[0, :, 8, 8], torch.tensor([0.0, 0.0, 3.0]))

    def test_error_names_argument(self):
        with pytest.raises(ValueError, match=r"`depth`: expected shape \(N, 1, H, W\)"):
            backproject(torch.ones(1, 16, 16), intrinsics(16))


class TestNormalsFromDepth:
    @pytest.mark.parametrize("method", ["cross", "plane"])
    def test_tilted_plane_is_recovered_exactly(self, method):
        K = intrinsics(32).double()
        n_true = torch.tensor([0.3, -0.5, -0.8], dtype=torch.float64)
        n_true = n_true / n_true.norm()
        v, u = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        ray = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)]).double()
        z = -4.0 / (n_true[:, None, None] * ray).sum(0)  # plane n . P = -4
        n, ok = normals_from_depth(z[None, None], K, method=method)
        assert bool(ok[0, 1:-1, 1:-1].all()) and not bool(ok[0, 0].any())
        err = _angle_deg(n[:, :, ok[0]], n_true.float()[None, :, None])
        assert float(err.max()) < 0.05

    def test_invalid_pixels_spoil_their_neighbourhood(self):
        z = torch.full((1, 1, 16, 16), 2.0)
        valid = torch.ones(1, 16, 16, dtype=torch.bool)
        valid[0, 8, 8] = False
        _, ok = normals_from_depth(z, intrinsics(16), window=5, valid=valid)
        assert not bool(ok[0, 6:11, 6:11].any()) and bool(ok[0, 3, 3])

    def test_bad_window_and_method(self):
        with pytest.raises(ValueError, match="`window`: expected an odd int >= 3"):
            normals_from_depth(torch.ones(1, 1, 8, 8), intrinsics(16), window=4)
        with pytest.raises(ValueError, match="`method`: expected one of"):
            normals_from_depth(torch.ones(1, 1, 8, 8), intrinsics(16), method="sobel")
        with pytest.raises(ValueError, match="`depth`: expected finite values"):
            normals_from_depth(torch.full((1, 1, 8, 8), float("nan")), intrinsics(16))
