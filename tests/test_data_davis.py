"""DAVIS 2017 loader (Chapter 8, full scale) on a fake archive with the official layout."""

import pytest
import torch
from fakes import make_davis_archive

from pixelbook.data.davis import DAVIS2017
from pixelbook.data.registry import DatasetError, fetch, get_spec


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


class TestDAVIS2017:
    def test_reads_the_official_layout_from_a_fake_archive(self, cache):
        make_davis_archive(cache / "staging")
        ds = DAVIS2017(split="val", verify=False)
        assert len(ds) == 2 and ds.names == ["bear", "dog"]
        s = ds[0]
        assert s["frames"].shape == (3, 3, 12, 20) and s["labels"].shape == (3, 12, 20)
        assert s["labels"].dtype == torch.long and set(s["labels"].unique().tolist()) == {0, 1, 2}
        assert int((s["labels"][1] == 2).sum()) == 12 and s["name"] == "bear"
        assert float(s["frames"][2].mean()) == pytest.approx(40 / 255, abs=2 / 255)

    def test_resize_and_max_frames(self, cache):
        make_davis_archive(cache / "staging")
        s = DAVIS2017(split="val", size=6, max_frames=2, verify=False)[1]
        assert s["frames"].shape == (2, 3, 6, 10) and s["labels"].shape == (2, 6, 10)
        assert set(s["labels"].unique().tolist()) <= {0, 1}

    def test_missing_archive_and_checksum(self, cache):
        with pytest.raises(FileNotFoundError, match="DAVIS-2017-trainval-480p.zip"):
            DAVIS2017(split="val")
        make_davis_archive(cache / "staging")
        assert get_spec("davis2017").sha256 is None
        with pytest.raises(DatasetError, match="no sha256 is registered"):
            fetch("davis2017", verify=True)

    def test_bad_layout_and_arguments(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no DAVIS 2017"):
            DAVIS2017(root=tmp_path)
        with pytest.raises(ValueError, match="`split`"):
            DAVIS2017(root=tmp_path, split="test")
        with pytest.raises(ValueError, match="`size`"):
            DAVIS2017(root=tmp_path, size=0)
