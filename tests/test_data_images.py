"""Tests of pixelbook.data.images: scikit-image sample images as tensors, offline."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import skimage.data
import torch

from pixelbook.data.images import list_images, load_image, load_stereo_motorcycle


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    real_connect = socket.socket.connect

    def guarded(sock, address):  # local (AF_UNIX) sockets of multiprocessing stay allowed
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(sock, address)

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection", refuse)


class TestListImages:
    def test_contains_the_images_the_book_uses(self):
        assert {"astronaut", "camera", "coins", "horse", "brick", "grass", "gravel", "rocket", "coffee",
                "chelsea", "text"} <= set(list_images())

    def test_lists_only_files_shipped_with_scikit_image(self):
        names = list_images()
        assert "eagle" not in names and "cells3d" not in names and "brain" not in names  # pooch downloads
        assert names == tuple(sorted(names))


class TestLoadImage:
    def test_every_listed_image_loads_offline_as_float_in_unit_range(self, no_network):
        for name in list_images():
            x = load_image(name)
            assert x.dtype == torch.float32 and x.ndim == 3 and x.shape[0] == 3, name
            assert float(x.min()) >= 0 and float(x.max()) <= 1, name
            assert bool(torch.isfinite(x).all()), name

    def test_values_are_the_uint8_pixels_over_255(self):
        x = load_image("astronaut")
        ref = skimage.data.astronaut()
        assert x.shape == (3, *ref.shape[:2])
        torch.testing.assert_close(x[:, 10, 20], torch.tensor(ref[10, 20], dtype=torch.float32) / 255)

    def test_grey_images_are_replicated_to_three_equal_channels(self):
        x = load_image("camera")
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])

    def test_gray_flag_gives_one_channel(self):
        assert load_image("coffee", gray=True).shape == (1, 400, 600)
        assert load_image("camera", gray=True).shape == (1, 512, 512)

    def test_binary_horse_is_zero_or_one(self):
        assert set(load_image("horse").unique().tolist()) == {0.0, 1.0}

    def test_int_size_sets_the_shorter_side_and_pair_sets_both(self):
        assert load_image("coffee", size=100).shape == (3, 100, 150)  # 400 x 600 -> 100 x 150
        assert load_image("coffee", size=(30, 40)).shape == (3, 30, 40)

    def test_unknown_name_lists_the_valid_ones(self):
        with pytest.raises(ValueError, match=r"`name`: expected one of \(.*'astronaut'.*\), got 'eagle'"):
            load_image("eagle")
        with pytest.raises(ValueError, match="got 'lena'"):
            load_image("lena")

    def test_bad_size_raises_naming_it(self):
        with pytest.raises(ValueError, match="`size`: expected None, a positive int"):
            load_image("camera", size=(0, 10))
        with pytest.raises(ValueError, match="`size`: expected a positive int"):
            load_image("camera", size=-3)


class TestLoadStereoMotorcycle:
    def test_pair_and_disparity_shapes_and_validity(self, no_network):
        left, right, disp = load_stereo_motorcycle()
        assert left.shape == right.shape == (3, 500, 741) and disp.shape == (1, 500, 741)
        assert disp.dtype == torch.float32 and bool(torch.isfinite(disp).all())
        valid = disp > 0
        assert 0.5 < float(valid.float().mean()) < 1.0  # some pixels have no ground truth
        raw = skimage.data.stereo_motorcycle()[2]
        assert int((~valid).sum()) == int((~np.isfinite(raw)).sum())

    def test_disparity_maps_left_pixels_onto_matching_right_pixels(self):
        left, right, disp = load_stereo_motorcycle()
        W = left.shape[-1]
        xs = torch.arange(W).expand_as(disp[0])
        xr = xs - disp[0].round().long()  # x_right = x_left - d
        ok = (disp[0] > 0) & (xr >= 0)
        warped = torch.gather(right, 2, xr.clamp(0, W - 1).expand_as(right))
        err_disp = float((left - warped).abs().mean(0)[ok].mean())
        err_none = float((left - right).abs().mean(0)[ok].mean())
        assert err_disp < 0.5 * err_none

    def test_missing_files_raise_clearly(self, monkeypatch, tmp_path):
        monkeypatch.setattr(skimage.data, "data_dir", str(tmp_path))
        with pytest.raises(FileNotFoundError, match="motorcycle_left.png"):
            load_stereo_motorcycle()
        assert os.path.isdir(tmp_path)
