"""Tests of pixelbook.data.msra10k on a fake archive with MSRA10K's layout, and of pixelbook.data.kits19."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import make_kits_cases, make_msra10k_archive, make_sod_folder
from pixelbook.data.kits19 import KITS19_TRAIN_CASES, KITS19_VAL_CASES, kits19_case_dir, load_kits19_slices
from pixelbook.data.msra10k import MSRA10K, MSRA10KDataset, msra10k_pairs, with_sdf
from pixelbook.data.registry import DatasetError, fetch, get_spec


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


class TestMSRA10KDataset:
    def test_reads_the_official_layout_from_a_fake_archive(self, cache):
        make_msra10k_archive(cache / "staging")
        ds = MSRA10KDataset(size=8, download=False)
        assert len(ds) == 3 and [p[0].stem for p in ds.pairs] == ["100", "101", "102"]
        s = ds[2]
        assert s["image"].shape == (3, 8, 8) and s["mask"].shape == (8, 8) and s["mask"].dtype == torch.bool
        assert s["id"] == "102" and 0 < int(s["mask"].sum()) < 64

    def test_with_sdf_adds_a_signed_distance_positive_inside(self, cache):
        make_msra10k_archive(cache / "staging")
        s = MSRA10KDataset(size=None, standardize=False, transform=with_sdf)[0]
        assert s["phi"].shape == (1, 10, 14) and torch.equal(s["phi"][0] > 0, s["mask"])
        assert int(s["mask"].sum()) == 36

    def test_missing_archive_says_where_to_get_it(self, cache):
        with pytest.raises(FileNotFoundError, match="MSRA10K_Imgs_GT.zip.*mmcheng.net"):
            MSRA10KDataset(download=False)

    def test_no_checksum_published(self, cache):
        make_msra10k_archive(cache / "staging")
        assert get_spec("msra10k_zip").sha256 is None and MSRA10K.count == 10000
        with pytest.raises(DatasetError, match="no sha256 is registered"):
            fetch("msra10k_zip", verify=True)

    def test_mask_without_image_raises(self, tmp_path):
        imgs = tmp_path / "Imgs"
        imgs.mkdir()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(imgs / "7.png")
        with pytest.raises(FileNotFoundError, match="1 masks have no image"):
            msra10k_pairs(tmp_path)
        with pytest.raises(ValueError, match="`size`"):
            MSRA10KDataset(root=tmp_path, size=0)


class TestFakeSodFolder:
    def test_every_loader_reads_it(self, tmp_path):
        from pixelbook.data.saliency import SaliencyDataset

        make_sod_folder(tmp_path, n=3)
        s = MSRA10KDataset(root=tmp_path / "msra10k", size=16, transform=with_sdf)[0]
        assert s["phi"].shape == (1, 16, 16) and bool(s["mask"].any())
        for name in ("ecssd", "pascal_s", "hku_is"):
            ds = SaliencyDataset(name, root=tmp_path / name, size=16)
            assert len(ds) == 3 and bool(ds[2]["mask"].any())


class TestLoadKits19Slices:
    def test_prunes_slices_without_kidney_windows_and_resizes(self, tmp_path):
        reader = make_kits_cases(tmp_path, [168, 169])
        d = load_kits19_slices(tmp_path, cases=[168, 169], size=10, reader=reader)
        assert d["image"].shape == (4, 1, 10, 10) and d["masks"].shape == (4, 10, 10)
        assert d["slice"].tolist() == [1, 2, 1, 2] and d["case"].tolist() == [168, 168, 169, 169]
        assert 0.0 <= float(d["image"].min()) and float(d["image"].max()) <= 1.0
        assert float(d["image"][0, 0, 0, 0]) == 0.0                  # -1000 HU clipped to the window's low end
        tumour = load_kits19_slices(tmp_path, cases=[168], size=10, target="tumour", reader=reader)
        assert tumour["slice"].tolist() == [2]

    def test_missing_case_says_how_to_get_the_data(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="git clone https://github.com/neheller/kits19"):
            kits19_case_dir(tmp_path, 3)

    def test_paper_split_sizes_and_bad_arguments(self, tmp_path):
        assert len(KITS19_TRAIN_CASES) == 168 and len(KITS19_VAL_CASES) == 42
        assert not set(KITS19_TRAIN_CASES) & set(KITS19_VAL_CASES)
        with pytest.raises(ValueError, match="`target`: expected one of"):
            load_kits19_slices(tmp_path, cases=[], target="liver")
        with pytest.raises(ValueError, match="`window`"):
            load_kits19_slices(tmp_path, cases=[], window=(10, 0))


class TestKits19NiftiReader:
    def _write_case(self, root, case):
        nibabel = pytest.importorskip("nibabel", reason="the kits19 extra (nibabel) writes the NIfTI files")
        reader = make_kits_cases(root, [case])
        for name in ("imaging.nii.gz", "segmentation.nii.gz"):
            path = root / f"case_{case:05d}" / name
            nibabel.Nifti1Image(reader(path), affine=np.eye(4)).to_filename(path)
        return reader

    def test_default_reader_reads_real_nifti_files(self, tmp_path):
        reader = self._write_case(tmp_path, 170)
        via_nibabel = load_kits19_slices(tmp_path, cases=[170], size=10)
        via_memory = load_kits19_slices(tmp_path, cases=[170], size=10, reader=reader)
        assert via_nibabel["slice"].tolist() == [1, 2]
        torch.testing.assert_close(via_nibabel["image"], via_memory["image"])
        assert torch.equal(via_nibabel["masks"], via_memory["masks"])

    def test_without_nibabel_the_error_says_what_to_install(self, tmp_path, monkeypatch):
        self._write_case(tmp_path, 171)
        monkeypatch.setitem(sys.modules, "nibabel", None)
        with pytest.raises(ImportError, match=r'pip install "pixelbook\[kits19\]"'):
            load_kits19_slices(tmp_path, cases=[171])
