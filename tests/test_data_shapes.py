"""Tests of pixelbook.data.shapes: the noisy 2-D scenes of the STD chapter."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from pixelbook.data.shapes import SHAPE_KINDS, class_means, make_shape_scenes
from pixelbook.std import star_violations


class TestMakeShapeScenes:
    def test_shapes_dtypes_and_determinism(self):
        a = make_shape_scenes(3, 24, "mixed", noise=0.5, distractors=1, notches=1, seed=4)
        b = make_shape_scenes(3, 24, "mixed", noise=0.5, distractors=1, notches=1, seed=4)
        assert a["image"].shape == (3, 1, 24, 24) and a["image"].dtype == torch.float32
        assert a["labels"].shape == (3, 24, 24) and a["labels"].dtype == torch.int64 and a["center"].shape == (3, 2)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["labels"], b["labels"])
        assert not torch.equal(a["image"], make_shape_scenes(3, 24, "mixed", 0.5, 1, 1, seed=5)["image"])

    def test_clean_image_is_the_class_intensity_without_clutter(self):
        for kind in ("star", "ellipse", "holes", "annulus", "c_shape"):
            d = make_shape_scenes(2, 32, kind, noise=0.0, seed=1)
            assert torch.equal(d["clean"][:, 0], d["labels"].float()) and torch.equal(d["image"], d["clean"])
        v = make_shape_scenes(2, 32, "voronoi", noise=0.0, num_classes=4, seed=1)
        torch.testing.assert_close(v["clean"][:, 0], class_means(4)[v["labels"]])

    def test_stars_and_ellipses_are_star_shaped_about_their_centre_up_to_rasterisation(self):
        """The continuous shapes are star-shaped; rounding rays to pixels costs a few pixels at thin arms."""
        for kind in ("star", "ellipse"):
            d = make_shape_scenes(6, 48, kind, seed=2)
            area = (d["labels"] == 1).sum((1, 2))
            assert bool((star_violations(d["labels"] == 1, d["center"]) <= 0.05 * area).all())  # annuli: > 20 %

    def test_annuli_and_c_shapes_are_not(self):
        for kind in ("annulus", "c_shape"):
            d = make_shape_scenes(4, 48, kind, seed=3)
            area = (d["labels"] == 1).sum((1, 2))
            assert bool((star_violations(d["labels"] == 1, d["center"]) > 0.2 * area).all())

    def test_distractors_are_background_with_foreground_intensity_apart_from_the_object(self):
        d = make_shape_scenes(4, 48, "ellipse", noise=0.0, distractors=3, seed=6)
        bright_bg = (d["clean"][:, 0] == 1) & (d["labels"] == 0)
        assert bool(bright_bg.flatten(1).any(1).all())
        for i in range(4):
            grown = ndimage.binary_dilation(d["labels"][i].numpy() == 1, iterations=2)
            assert not (grown & bright_bg[i].numpy()).any()

    def test_notches_are_dark_pixels_inside_the_object(self):
        d = make_shape_scenes(4, 48, "star", noise=0.0, notches=2, seed=7)
        dark_fg = (d["clean"][:, 0] == 0) & (d["labels"] == 1)
        assert bool(dark_fg.flatten(1).any(1).all())

    def test_voronoi_has_every_class(self):
        d = make_shape_scenes(5, 32, "voronoi", num_classes=4, seed=8)
        for lab in d["labels"]:
            assert sorted(lab.unique().tolist()) == [0, 1, 2, 3]

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`kind`: expected one of"):
            make_shape_scenes(1, kind="triangle")
        with pytest.raises(ValueError, match="`num_classes`: kind 'star' is binary"):
            make_shape_scenes(1, kind="star", num_classes=3)
        with pytest.raises(ValueError, match="`noise`"):
            make_shape_scenes(1, noise=-1.0)
        with pytest.raises(ValueError, match="`size`"):
            make_shape_scenes(1, size=4)
        assert set(SHAPE_KINDS) >= {"star", "voronoi"} and np.isclose(float(class_means(2)[1]), 1.0)
