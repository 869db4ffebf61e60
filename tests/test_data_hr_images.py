"""pixelbook.data.hr_images: DIV2K-layout archives and image folders, tested on fake files."""

import numpy as np
import pytest
import torch

from fakes import SR_SET_COUNTS, make_div2k_archive, make_live_archive, make_sr_benchmark_archive

from pixelbook.data.hr_images import TEST_SETS, HRImages, RestorationTestSet, load_pool, mod_crop, rgb_to_y
from pixelbook.data.registry import dataset_dir, get_spec


class TestHRImages:
    def test_registry_path_with_the_real_layout(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
        arc, arrays = make_div2k_archive(tmp_path)
        (dataset_dir("div2k_train_hr") / "DIV2K_train_HR.zip").write_bytes(arc.read_bytes())
        ds = HRImages(name="div2k_train_hr", download=False)
        assert len(ds) == 3 and ds.ids == ["0001", "0002", "0003"]
        s = ds[1]
        assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 12, 14)
        assert torch.equal(s["image"], torch.from_numpy(arrays["0002"]).permute(2, 0, 1))

    def test_any_folder_and_grey_files(self, tmp_path):
        from PIL import Image

        Image.fromarray(np.full((5, 7), 200, np.uint8)).save(tmp_path / "g.png")
        Image.fromarray(np.zeros((5, 7, 4), np.uint8)).save(tmp_path / "rgba.png")
        (tmp_path / "notes.txt").write_text("not an image")
        ds = HRImages(tmp_path)
        assert ds.ids == ["g", "rgba"]
        assert torch.equal(ds[0]["image"], torch.full((3, 5, 7), 200, dtype=torch.uint8))
        assert ds[1]["image"].shape == (3, 5, 7)

    def test_specs_are_the_official_archives(self):
        for name in ("div2k_train_hr", "div2k_valid_hr"):
            spec = get_spec(name)
            assert spec.url.startswith("https://data.vision.ee.ethz.ch/cvl/DIV2K/") and spec.sha256 is None

    def test_missing_archive_and_empty_folder(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))  # an empty cache
        with pytest.raises(FileNotFoundError, match="not found and download=False"):
            HRImages(name="div2k_valid_hr", download=False)
        with pytest.raises(FileNotFoundError, match="`root`: no image files"):
            HRImages(tmp_path)
        with pytest.raises(ValueError, match="`name`: expected one of"):
            HRImages(tmp_path, name="div2k")


class TestPoolAndLuma:
    def test_rgb_to_y_matches_scikit_image(self):
        from skimage.color import rgb2ycbcr

        x = torch.rand(2, 3, 5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ref = np.stack([rgb2ycbcr(img.permute(1, 2, 0).numpy())[..., 0] / 255 for img in x])
        torch.testing.assert_close(rgb_to_y(x)[:, 0], torch.from_numpy(ref))

    def test_load_pool_grey_and_capped(self, tmp_path):
        arc, arrays = make_div2k_archive(tmp_path)
        from pixelbook.data.registry import extract

        ds = HRImages(extract(arc))
        pool = load_pool(ds, gray=True, max_side=7, limit=2)
        assert len(pool) == 2 and all(p.dtype == torch.uint8 and p.shape[0] == 1 for p in pool)
        assert max(pool[0].shape[-2:]) == 7
        full = load_pool(ds)
        assert torch.equal(full[2], ds[2]["image"])



class TestRestorationTestSets:
    """The thesis' test sets (LIVE1, Set5, Set14, Urban100): registry entries and loaders on fake archives."""

    def test_specs_name_the_sources_and_no_invented_checksum(self):
        sr, live = get_spec("sr_benchmark"), get_spec("live_release2")
        assert sr.url == "https://cv.snu.ac.kr/research/EDSR/benchmark.tar" and sr.filename == "benchmark.tar"
        assert live.url.startswith("http://live.ece.utexas.edu/") and live.filename == "databaserelease2.zip"
        assert sr.sha256 is None and live.sha256 is None  # none is published: the structure is checked instead
        assert {k: v["count"] for k, v in TEST_SETS.items()} == {"live1": 29, "set5": 5, "set14": 14, "urban100": 100}

    def test_sr_sets_from_the_registry_archive(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
        make_sr_benchmark_archive(dataset_dir("sr_benchmark") / "benchmark.tar")
        for name, folder in (("set5", "Set5"), ("set14", "Set14"), ("urban100", "Urban100")):
            ds = RestorationTestSet(name, download=False)
            assert len(ds) == SR_SET_COUNTS[folder] and ds.ids[0] == "img_000"  # HR only, not LR_bicubic
            s = ds[1]
            assert s["image"].dtype == torch.uint8 and s["image"].shape[0] == 3
        assert RestorationTestSet("set14", download=False)[1]["image"].shape[-2:] == (27, 31)

    def test_live1_is_the_29_reference_images(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
        make_live_archive(dataset_dir("live_release2") / "databaserelease2.zip")
        ds = RestorationTestSet("live1", download=False)
        assert len(ds) == 29 and ds.ids[:2] == ["ref00", "ref01"] and ds[0]["image"].shape == (3, 24, 28)

    def test_a_password_protected_live_archive_says_what_to_do(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
        make_live_archive(dataset_dir("live_release2") / "databaserelease2.zip", encrypted=True)
        with pytest.raises(ValueError, match="password protected.*unpack it into '.*extracted'"):
            RestorationTestSet("live1", download=False)
        # unpacked by hand into the cache's folder: found there, the archive is not opened again
        import zipfile

        with zipfile.ZipFile(make_live_archive(tmp_path / "plain.zip")) as zf:
            zf.extractall(dataset_dir("live_release2") / "extracted")
        assert len(RestorationTestSet("live1", download=False)) == 29

    def test_structure_is_verified(self, tmp_path, monkeypatch):
        make_sr_benchmark_archive(tmp_path / "a.tar", counts={"Set5": 4})
        from pixelbook.data.registry import extract

        root = extract(tmp_path / "a.tar")
        with pytest.raises(ValueError, match="holds 4 images; the set5 test set has 5"):
            RestorationTestSet("set5", root)
        with pytest.raises(FileNotFoundError, match="no folder 'Urban100/HR'"):
            RestorationTestSet("urban100", root)
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))  # empty
        with pytest.raises(FileNotFoundError, match="not found and download=False"):
            RestorationTestSet("set14", download=False)
        with pytest.raises(ValueError, match="`name`: expected one of"):
            RestorationTestSet("bsd100")

    def test_mod_crop(self):
        x = torch.arange(2 * 10 * 13).view(1, 2, 10, 13)
        assert torch.equal(mod_crop(x, 4), x[..., :8, :12]) and mod_crop(x, 1).shape == x.shape
        with pytest.raises(ValueError, match="`image`"):
            mod_crop(x, 16)
