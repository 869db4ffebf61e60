"""Tests of pixelbook.data.isic on fake archives with the real ISIC 2018 Task 1 layout."""

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import ISIC_KINDS, isic_mask, make_isic_archives, make_isic_folder
from pixelbook.data import isic
from pixelbook.data.registry import DatasetError, fetch, get_spec

KINDS = ISIC_KINDS


def _fake_archives(tmp_path):
    make_isic_archives(tmp_path / "staging")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


class TestISIC2018:
    def test_reads_the_official_layout_from_fake_archives(self, cache):
        _fake_archives(cache)
        ds = isic.ISIC2018(size=16, normalize=False)
        assert ds.ids == list(KINDS)
        s = ds[0]
        assert s["image"].shape == (3, 16, 16) and s["labels"].shape == (16, 16) and s["labels"].dtype == torch.int64
        assert set(s["labels"].unique().tolist()) == {0, 1} and s["id"] == "ISIC_0000000"
        assert float(s["image"].max()) <= 1.0

    def test_center_and_volume_are_the_oracle_priors(self, cache):
        _fake_archives(cache)
        s = isic.ISIC2018(size=30, normalize=False, ids=["ISIC_0000002"])[0]
        fg = s["labels"] == 1
        rows, cols = fg.nonzero(as_tuple=True)
        torch.testing.assert_close(s["center"], torch.stack([rows.float().mean(), cols.float().mean()]))
        assert s["volume"].tolist() == [900 - int(fg.sum()), int(fg.sum())]

    def test_train_flips_are_reproducible_and_keep_labels_aligned(self, cache):
        _fake_archives(cache)
        a = isic.ISIC2018(size=30, train=True, normalize=False, generator=torch.Generator().manual_seed(1))
        b = isic.ISIC2018(size=30, train=True, normalize=False, generator=torch.Generator().manual_seed(1))
        plain = isic.ISIC2018(size=30, normalize=False)
        flipped = 0
        for i in range(4):
            sa, sb, sp = a[i], b[i], plain[i]
            assert torch.equal(sa["labels"], sb["labels"]) and torch.equal(sa["image"], sb["image"])
            assert int(sa["labels"].sum()) == int(sp["labels"].sum())
            flipped += not torch.equal(sa["labels"], sp["labels"])
            # the image moved with the labels: the same flip maps both
            dims = [d for d in ((), (-1,), (-2,), (-1, -2)) if torch.equal(sa["image"], sp["image"].flip(d))]
            assert len(dims) == 1 and torch.equal(sa["labels"], sp["labels"].flip(dims[0]))
        assert flipped > 0

    def test_star_subset_keeps_star_shaped_lesions_only(self, cache):
        _fake_archives(cache)
        keep = isic.isic2018_star_subset(size=30, verbose=False)
        assert keep == ["ISIC_0000000", "ISIC_0000002"]
        assert isic.isic2018_star_subset(size=30, max_violation=1.0, verbose=False) == list(KINDS)

    def test_splits_are_disjoint_and_cover_the_subset(self, cache):
        _fake_archives(cache)
        train, val = isic.isic2018_star_splits(size=16, val_fraction=0.5, seed=3)
        assert sorted(train.ids + val.ids) == ["ISIC_0000000", "ISIC_0000002"] and len(val) == 1
        assert train.train and not val.train

    def test_missing_archive_says_where_to_get_it(self, cache):
        with pytest.raises(FileNotFoundError, match="ISIC2018_Task1-2_Training_Input.zip.*isic-archive"):
            isic.ISIC2018()

    def test_no_checksum_published(self, cache):
        _fake_archives(cache)
        assert get_spec("isic2018_task1_gt").sha256 is None
        with pytest.raises(DatasetError, match="no sha256 is registered"):
            fetch("isic2018_task1_gt", verify=True)

    def test_mask_without_image_and_bad_mask_values_raise(self, tmp_path):
        gt = tmp_path / "ISIC2018_Task1_Training_GroundTruth"
        gt.mkdir()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(gt / "ISIC_0000009_segmentation.png")
        with pytest.raises(FileNotFoundError, match="1 masks have no image"):
            isic.isic2018_pairs(tmp_path)
        inp = tmp_path / "ISIC2018_Task1-2_Training_Input"
        inp.mkdir()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(inp / "ISIC_0000009.jpg")
        Image.fromarray(np.full((4, 4), 7, np.uint8)).save(gt / "ISIC_0000009_segmentation.png")
        with pytest.raises(ValueError, match="expected a lesion mask of 0 and 255"):
            isic.ISIC2018(tmp_path, size=8)[0]
        with pytest.raises(ValueError, match="`size`"):
            isic.ISIC2018(tmp_path, size=0)
        with pytest.raises(ValueError, match="`ids`: 1 ids not in the data"):
            isic.ISIC2018(tmp_path, ids=["ISIC_9999999"])


def test_fake_folder_for_the_notebook_has_a_star_subset(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
    root = make_isic_folder(tmp_path / "isic", n=8)
    train, val = isic.isic2018_star_splits(root, size=16)
    assert len(train) + len(val) == 6 and len(val) == 1


class TestStarFraction:
    def test_star_and_non_star_masks(self):
        assert isic.star_fraction(torch.from_numpy(isic_mask("disk") > 0), size=30) == 0.0
        assert isic.star_fraction(torch.from_numpy(isic_mask("ring") > 0), size=30) > 0.5
        assert isic.star_fraction(torch.zeros(5, 5, dtype=torch.bool)) == 1.0
