"""Tests of pixelbook.data.instances: overlapping same-coloured shapes with instance ids."""

from __future__ import annotations

import pytest
import torch

from fakes import make_voc_sbd_instances_folder
from pixelbook.data.instances import PALETTE, make_instance_scenes


@pytest.fixture(scope="module")
def mixed():
    return make_instance_scenes(60, size=32, seed=3)


@pytest.fixture(scope="module")
def unequal():
    return make_instance_scenes(60, size=32, seed=3, sizes="unequal")


def _palette_index(d, b):
    """Each instance's palette entry: the majority vote of its pixels, each matched to the nearest
    fill colour or outline shade (small shapes are mostly outline)."""
    palette = torch.tensor(PALETTE, dtype=torch.float32)
    refs = torch.cat([palette, palette * 0.45])  # fill colours, then outline shades
    inst = d["instances"][b]
    out = []
    for i in range(1, int(d["num_instances"][b]) + 1):
        pix = d["image"][b][:, inst == i].T  # (n, 3)
        nearest = torch.cdist(pix, refs).argmin(1) % len(palette)
        out.append(int(torch.bincount(nearest, minlength=len(palette)).argmax()))
    return out


class TestMakeInstanceScenes:
    def test_shapes_dtypes_ranges(self, mixed):
        assert mixed["image"].shape == (60, 3, 32, 32) and mixed["image"].dtype == torch.float32
        assert float(mixed["image"].min()) >= 0 and float(mixed["image"].max()) <= 1
        for key in ("instances", "labels"):
            assert mixed[key].shape == (60, 32, 32) and mixed[key].dtype == torch.int64
        assert set(torch.unique(mixed["labels"]).tolist()) <= {0, 1, 2, 3}
        assert torch.equal(mixed["labels"] == 0, mixed["instances"] == 0)

    def test_ids_contiguous_counts_and_visibility(self, mixed, unequal):
        for d, min_visible in ((mixed, 12), (unequal, 6)):
            for b in range(60):
                k = int(d["num_instances"][b])
                assert 2 <= k <= 5
                counts = torch.bincount(d["instances"][b].flatten(), minlength=k + 1)
                assert len(counts) == k + 1 and int(counts[1:].min()) >= min_visible

    def test_colour_alone_cannot_separate(self, mixed):
        # every image has two instances whose fill colours are (nearly) the same palette colour
        for b in range(60):
            idx = _palette_index(mixed, b)
            assert len(set(idx)) < len(idx)

    def test_shapes_overlap(self, mixed):
        # occlusion: in most images some instance touches another one (4-neighbourhood)
        inst = mixed["instances"]
        h = (inst[:, :, 1:] != inst[:, :, :-1]) & (inst[:, :, 1:] > 0) & (inst[:, :, :-1] > 0)
        v = (inst[:, 1:] != inst[:, :-1]) & (inst[:, 1:] > 0) & (inst[:, :-1] > 0)
        touching = h.flatten(1).any(1) | v.flatten(1).any(1)
        assert float(touching.float().mean()) > 0.6

    def test_unequal_sizes(self, unequal):
        ratios = []
        for b in range(60):
            counts = torch.bincount(unequal["instances"][b].flatten())[1:].float()
            ratios.append(float(counts.max() / counts.min()))
        # the large shape may be clipped by the border or occluded: >= 3x always, ~25x typically
        assert min(ratios) >= 3 and sorted(ratios)[30] >= 10

    def test_reproducible_and_splits_differ(self):
        a = make_instance_scenes(3, seed=1)
        b = make_instance_scenes(5, seed=1)
        assert torch.equal(a["image"], b["image"][:3])  # an image does not depend on n
        c = make_instance_scenes(3, seed=1, split="test")
        assert not torch.equal(a["instances"], c["instances"])

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`size`"):
            make_instance_scenes(2, size=8)
        with pytest.raises(ValueError, match="`sizes`"):
            make_instance_scenes(2, sizes="huge")
        with pytest.raises(ValueError, match="`num_shapes`"):
            make_instance_scenes(2, num_shapes=3)
        with pytest.raises(ValueError, match=r"`num_shapes\[0\]`"):
            make_instance_scenes(2, num_shapes=(1, 3))
        with pytest.raises(ValueError, match="`split`"):
            make_instance_scenes(2, split="dev")
        with pytest.raises(TypeError, match="`n`"):
            make_instance_scenes(2.0)


class TestVOCInstances:
    def test_val_reads_voc_object_masks(self, tmp_path):
        from pixelbook.data.instances import VOCInstances

        make_voc_sbd_instances_folder(tmp_path)
        ds = VOCInstances(tmp_path, split="val")
        assert ds.ids == ["2007_000003"] and len(ds) == 1
        s = ds[0]
        assert s["image"].shape == (3, 5, 7) and s["instances"].dtype == torch.int64
        assert s["instances"][0].tolist() == [1, 1, 1, 255, 2, 2, 2]
        assert s["labels"][0].tolist() == [7, 7, 7, 255, 7, 7, 7]
        assert s["valid"][0].tolist() == [True, True, True, False, True, True, True]

    def test_train_aug_is_union_minus_val_with_voc_first(self, tmp_path):
        from pixelbook.data.instances import VOCInstances

        make_voc_sbd_instances_folder(tmp_path)
        ds = VOCInstances(tmp_path, split="train_aug")
        assert ds.ids == ["2007_000001", "2007_000002", "2008_000010", "2008_000011"]
        assert int(ds[1]["instances"][0, 3]) == 255  # VOC's mask wins for an image in both
        sbd = ds[2]
        assert sbd["instances"][:, 0].tolist() == [1, 1, 0, 2, 2]
        assert sbd["labels"][:, 0].tolist() == [12, 12, 0, 15, 15] and bool(sbd["valid"].all())
        with pytest.raises(IndexError):
            ds[4]

    def test_missing_folders_name_root(self, tmp_path):
        from pixelbook.data.instances import VOCInstances

        with pytest.raises(FileNotFoundError, match="`root`: no .*SegmentationObject"):
            VOCInstances(tmp_path, split="val")
        with pytest.raises(ValueError, match="`split`"):
            VOCInstances(tmp_path, split="test")
