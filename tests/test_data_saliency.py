"""Tests of pixelbook.data.saliency: the synthetic generators and the SOD loaders on fake archives."""

import numpy as np
import pytest
import torch

from fakes import left_half_pair, make_sod_archives, save_image
from pixelbook.data import saliency
from pixelbook.data.registry import DatasetError, get_spec
from pixelbook.data.saliency import (SOD_DATASETS, SOD_TEST_SETS, SaliencyDataset, make_saliency_scenes,
                                     make_texture_mosaics, sod_pairs)


# ---------------------------------------------------------------------------------------------- generators

class TestMakeSaliencyScenes:
    def test_shapes_labels_and_determinism(self):
        a = make_saliency_scenes(6, size=32, seed=3)
        b = make_saliency_scenes(6, size=32, seed=3)
        assert a["image"].shape == (6, 3, 32, 32) and a["image"].dtype == torch.float32
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["labels"], b["labels"])
        assert set(a["labels"].unique().tolist()) <= {0, 1, 2}
        assert torch.equal(a["mask"], a["labels"] == 1)
        assert bool(a["mask"].flatten(1).any(1).all())                    # every image has its object
        assert not torch.equal(a["image"], make_saliency_scenes(6, size=32, seed=4)["image"])

    def test_standardised_per_image_and_channel(self):
        x = make_saliency_scenes(4, size=24, seed=0)["image"].double()
        torch.testing.assert_close(x.mean((2, 3)), torch.zeros(4, 3, dtype=torch.float64), atol=1e-5, rtol=0)
        torch.testing.assert_close(x.std((2, 3)), torch.ones(4, 3, dtype=torch.float64), atol=1e-5, rtol=0)

    def test_object_size_follows_radius(self):
        small = make_saliency_scenes(64, size=32, seed=1, object_radius=(0.05, 0.08), clutter=0)["mask"]
        large = make_saliency_scenes(64, size=32, seed=1, object_radius=(0.25, 0.3), clutter=0)["mask"]
        frac_small, frac_large = small.float().mean(), large.float().mean()
        # area / S^2 of each shape of radius r (fraction of S): disc pi r^2, square 4 (0.85 r)^2, ellipse
        # >= 0.55 pi r^2. Small: at most pi 0.08^2 = 0.020 (+ pixel rounding); large: at least
        # 0.55 pi 0.25^2 = 0.108 in every image.
        assert float(frac_small) < 0.03 and float(frac_large) > 0.1

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`n`"):
            make_saliency_scenes(0)
        with pytest.raises(ValueError, match="`object_radius`"):
            make_saliency_scenes(2, object_radius=(0.3, 0.1))
        with pytest.raises(ValueError, match="`clutter`"):
            make_saliency_scenes(2, clutter=-1)
        with pytest.raises(ValueError, match="`textures`"):
            make_saliency_scenes(2, textures=("brick",))


class TestMakeTextureMosaics:
    def test_every_region_present_and_balanced(self):
        d = make_texture_mosaics(40, size=32, seed=2)
        assert d["image"].shape == (40, 3, 32, 32)
        counts = torch.stack([(d["labels"] == k).flatten(1).sum(1) for k in range(3)], 1)
        assert int(counts.min()) >= 0.05 * 32 * 32                          # the generator's guarantee
        frac = counts.sum(0).double() / counts.sum()
        assert float(frac.min()) > 0.2                                        # no class is rare
        assert torch.equal(d["labels"], make_texture_mosaics(40, size=32, seed=2)["labels"])

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`radius`"):
            make_texture_mosaics(2, radius=(0.0, 0.2))
        with pytest.raises(ValueError, match="`size`"):
            make_texture_mosaics(2, size=4)


# ---------------------------------------------------------------------------------------------- fake archives

def _build(tmp_path, name, n=3, extra=None):
    make_sod_archives(tmp_path / "staging", name, n, extra)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


class TestSaliencyDataset:
    @pytest.mark.parametrize("name", [n for n in SOD_DATASETS if n != "hku_is"])
    def test_reads_the_official_layout_from_fake_archives(self, cache, name):
        _build(cache, name)
        ds = SaliencyDataset(name, size=8, download=False)
        assert len(ds) == 3
        s = ds[1]
        assert s["image"].shape == (3, 8, 8) and s["image"].dtype == torch.float32
        assert s["mask"].shape == (8, 8) and s["mask"].dtype == torch.bool
        assert torch.equal(s["labels"], s["mask"].long())
        assert bool(s["mask"][:, :3].all()) and not bool(s["mask"][:, 5:].any())  # the left half
        assert s["id"] == "img_001"
        torch.testing.assert_close(s["image"].mean((1, 2)), torch.zeros(3), atol=1e-5, rtol=0)

    def test_all_eight_datasets_and_seven_test_sets_are_registered(self):
        assert set(SOD_TEST_SETS) | {"duts_tr"} == set(SOD_DATASETS)
        assert len(SOD_TEST_SETS) == 7
        for layout in SOD_DATASETS.values():
            for archive in layout.archives:
                assert get_spec(archive).sha256 is None  # none published; documented

    def test_size_none_keeps_the_image_and_values_in_unit_range(self, cache):
        _build(cache, "duts_te")
        s = SaliencyDataset("duts_te", size=None, standardize=False)[0]
        assert s["image"].shape == (3, 12, 16)
        assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
        assert int(s["mask"].sum()) == 12 * 8

    def test_thur15k_leaves_out_images_without_mask(self, cache):
        extra = {"thur15k_zip": {"THUR15000/Butterfly/Src/unlabelled.jpg": np.zeros((12, 16, 3), np.uint8)}}
        _build(cache, "thur15k", extra=extra)
        ds = SaliencyDataset("thur15k", size=8)
        assert len(ds) == 3 and "unlabelled" not in [p[0].stem for p in ds.pairs]

    def test_msra_b_official_split_lists(self, cache):
        extra = {"msra_b_zip": {"MSRA-B/test_cvpr2013.txt": "img_000.jpg\nimg_002.jpg\n",
                                "MSRA-B/train_cvpr2013.txt": "img_001\n"}}
        _build(cache, "msra_b", extra=extra)
        assert [p[0].stem for p in SaliencyDataset("msra_b", split="test").pairs] == ["img_000", "img_002"]
        assert len(SaliencyDataset("msra_b", split="train")) == 1
        with pytest.raises(FileNotFoundError, match="no split list"):
            SaliencyDataset("msra_b", split="val")
        with pytest.raises(ValueError, match="has no official split"):
            sod_pairs("duts_tr", cache / "cache" / "datasets" / "sod" / "msra_b", split="test")

    def test_pascal_s_grey_masks_are_thresholded_at_half(self, cache):
        _build(cache, "pascal_s")
        root = cache / "pascal_root"
        left_half_pair(root / "datasets/imgs/pascal/a.jpg", root / "datasets/masks/pascal/a.png", 0, grey=100)
        ds = SaliencyDataset("pascal_s", root=root, size=None)
        assert int(ds[0]["mask"].sum()) == 0  # 100 / 255 of the annotators: not salient

    def test_hku_is_rar_asks_to_unpack_and_root_works(self, cache):
        rar = cache / "cache" / "datasets" / "hku_is_rar" / get_spec("hku_is_rar").filename
        rar.parent.mkdir(parents=True)
        rar.write_bytes(b"Rar!\x1a\x07\x00")
        with pytest.raises(DatasetError, match="RAR archive"):
            SaliencyDataset("hku_is")
        root = cache / "hkuis"
        for i in range(2):
            left_half_pair(root / f"HKU-IS/imgs/{i:04d}.png", root / f"HKU-IS/gt/{i:04d}.png", i)
        assert len(SaliencyDataset("hku_is", root=root, size=4)) == 2

    def test_errors_name_the_problem(self, cache):
        with pytest.raises(FileNotFoundError, match="download=False"):
            SaliencyDataset("ecssd", download=False)
        with pytest.raises(ValueError, match="`name`"):
            SaliencyDataset("sod")
        with pytest.raises(ValueError, match="`size`"):
            SaliencyDataset("ecssd", root=cache, size=0)
        root = cache / "broken"
        left_half_pair(root / "DUTS-TE/DUTS-TE-Image/a.jpg", root / "DUTS-TE/DUTS-TE-Mask/a.png", 0)
        save_image(root / "DUTS-TE/DUTS-TE-Mask/b.png", np.zeros((4, 4), np.uint8))
        with pytest.raises(FileNotFoundError, match="1 masks have no image"):
            sod_pairs("duts_te", root)
        with pytest.raises(FileNotFoundError, match="no masks found"):
            sod_pairs("ecssd", root)
        save_image(root / "DUTS-TE/DUTS-TE-Image/b.jpg", np.zeros((5, 4, 3), np.uint8))
        with pytest.raises(ValueError, match="differ in size"):
            SaliencyDataset("duts_te", root=root, size=None)[1]
        with pytest.raises(IndexError):
            SaliencyDataset("duts_te", root=root)[5]
