"""Tests of pixelbook.data.cityscapes on fake archives with the official layout (no network, no real data)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import fakes
from pixelbook.data import cityscapes as cs
from pixelbook.data.registry import get_spec

IDS = ("aachen_000000_000019", "aachen_000001_000019")


def _write_split(root, split="train", camera=True, with_disparity=True):
    rng = np.random.default_rng(0)
    for i in IDS:
        city = i.split("_")[0]
        fakes.save_image(root / "leftImg8bit" / split / city / f"{i}_leftImg8bit.png",
                         rng.integers(0, 256, (8, 12, 3), dtype=np.uint8))
        ids = np.full((8, 12), 7, np.uint8)  # road
        ids[:, 6:] = 26  # car
        ids[0, 0] = 0    # unlabeled -> 255
        fakes.save_label_png(root / "gtFine" / split / city / f"{i}_gtFine_labelIds.png", ids)
        if with_disparity:
            disp = np.full((8, 12), 1 + 256 * 20, np.uint16)
            disp[:, :3] = 0  # no stereo measurement
            path = root / "disparity" / split / city / f"{i}_disparity.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(disp).save(path)
        if camera:
            path = root / "camera" / split / city / f"{i}_camera.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"extrinsic": {"baseline": 0.2}, "intrinsic": {"fx": 2000.0}}))


class TestCityscapes:
    def test_reads_the_official_layout(self, tmp_path):
        _write_split(tmp_path)
        ds = cs.CityscapesSegDepth(tmp_path, "train")
        assert len(ds) == 2 and ds.ids == sorted(IDS)
        item = ds[0]
        assert item["image"].shape == (3, 8, 12) and item["image"].dtype == torch.float32
        assert item["labels"][1, 0] == 0 and item["labels"][1, 7] == 13 and item["labels"][0, 0] == 255
        assert bool(item["valid"][:, 3:].all()) and not bool(item["valid"][:, :3].any())
        torch.testing.assert_close(item["depth"][0, 0, 5], torch.tensor(0.2 * 2000.0 / 20.0))
        assert float(item["depth"][0, 0, 0]) == 0.0

    def test_typical_camera_without_camera_files(self, tmp_path):
        _write_split(tmp_path, camera=False)
        d = cs.CityscapesSegDepth(tmp_path, "train")[1]["depth"][0, 0, 8]
        torch.testing.assert_close(d, torch.tensor(cs.CITYSCAPES_BASELINE * cs.CITYSCAPES_FX / 20.0))

    def test_resize(self, tmp_path):
        _write_split(tmp_path)
        item = cs.CityscapesSegDepth(tmp_path, "train", size=(4, 6))[0]
        assert item["image"].shape == (3, 4, 6) and item["labels"].dtype == torch.int64
        assert set(item["labels"].unique().tolist()) <= {0, 13, 255} and item["valid"].dtype == torch.bool

    def test_from_archives_in_the_cache(self, tmp_path):
        for kind, name in (("leftImg8bit", "cityscapes_leftimg8bit"), ("gtFine", "cityscapes_gtfine"),
                           ("disparity", "cityscapes_disparity")):
            staging = tmp_path / kind
            _write_split(staging, "val", camera=False)
            # the official zips hold the top folder itself (leftImg8bit/val/<city>/...): zip the
            # staging folder with only this kind in it
            only = tmp_path / f"only_{kind}"
            (only / kind).parent.mkdir(parents=True, exist_ok=True)
            (staging / kind).rename(only / kind)
            fakes.zip_into_cache(only, name)
        ds = cs.CityscapesSegDepth(None, "val")
        assert len(ds) == 2 and ds[1]["labels"].shape == (8, 12)

    def test_missing_archive_says_where_to_put_it(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path))  # an empty cache
        with pytest.raises(FileNotFoundError, match="leftImg8bit_trainvaltest.zip"):
            cs.cityscapes_root()

    def test_errors_name_what_is_missing(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no leftImg8bit/val"):
            _write_split(tmp_path, "train")
            cs.CityscapesSegDepth(tmp_path, "val")
        other = tmp_path / "nodisp"
        _write_split(other, with_disparity=False)
        with pytest.raises(FileNotFoundError, match="_disparity.png"):
            cs.CityscapesSegDepth(other, "train")
        with pytest.raises(ValueError, match="`split`"):
            cs.CityscapesSegDepth(tmp_path, "test")

    def test_train_id_table_and_disparity_formula(self):
        assert cs.cityscapes_train_ids(torch.tensor([7, 8, 33, 34, 6])).tolist() == [0, 1, 18, 255, 255]
        assert len(cs.CITYSCAPES_CLASSES) == 19 and cs.CITYSCAPES_CLASSES[13] == "car"
        depth, valid = cs.disparity_to_depth(torch.tensor([0, 1, 257]), baseline=1.0, fx=100.0)
        assert valid.tolist() == [False, False, True] and depth.tolist() == [0.0, 0.0, 100.0]
        with pytest.raises(ValueError, match="`label_ids`"):
            cs.cityscapes_train_ids(torch.tensor([300]))
