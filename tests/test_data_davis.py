"""DAVIS 2017 loader (Chapter 8, full scale) on a fake archive with the official layout."""

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from pixelbook.data.davis import DAVIS2017
from pixelbook.data.registry import DatasetError, fetch, get_spec


def _fake_davis(cache, seqs=(("bear", 3, 2), ("dog", 4, 1)), val=("bear", "dog"), train=()):
    """DAVIS-2017-trainval-480p.zip: JPEGImages/480p, Annotations/480p (palette PNGs), ImageSets/2017."""
    staging = cache / "staging" / "DAVIS"
    for name, T, K in seqs:
        (staging / "JPEGImages" / "480p" / name).mkdir(parents=True)
        (staging / "Annotations" / "480p" / name).mkdir(parents=True)
        for t in range(T):
            Image.fromarray(np.full((12, 20, 3), 20 * t, dtype=np.uint8)).save(
                staging / "JPEGImages" / "480p" / name / f"{t:05d}.jpg")
            ids = np.zeros((12, 20), dtype=np.uint8)
            for k in range(1, K + 1):
                ids[2:6, 4 * k + t: 4 * k + t + 3] = k
            im = Image.fromarray(ids, mode="P")
            im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
            im.save(staging / "Annotations" / "480p" / name / f"{t:05d}.png")
    (staging / "ImageSets" / "2017").mkdir(parents=True)
    (staging / "ImageSets" / "2017" / "val.txt").write_text("\n".join(val) + "\n")
    (staging / "ImageSets" / "2017" / "train.txt").write_text("\n".join(train) + "\n")
    target = cache / "cache" / "datasets" / "davis2017" / get_spec("davis2017").filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as zf:
        for p in sorted(staging.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(staging.parent).as_posix())
    return target


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


class TestDAVIS2017:
    def test_reads_the_official_layout_from_a_fake_archive(self, cache):
        _fake_davis(cache)
        ds = DAVIS2017(split="val", verify=False)
        assert len(ds) == 2 and ds.names == ["bear", "dog"]
        s = ds[0]
        assert s["frames"].shape == (3, 3, 12, 20) and s["labels"].shape == (3, 12, 20)
        assert s["labels"].dtype == torch.long and set(s["labels"].unique().tolist()) == {0, 1, 2}
        assert int((s["labels"][1] == 2).sum()) == 12 and s["name"] == "bear"
        assert float(s["frames"][2].mean()) == pytest.approx(40 / 255, abs=2 / 255)

    def test_resize_and_max_frames(self, cache):
        _fake_davis(cache)
        s = DAVIS2017(split="val", size=6, max_frames=2, verify=False)[1]
        assert s["frames"].shape == (2, 3, 6, 10) and s["labels"].shape == (2, 6, 10)
        assert set(s["labels"].unique().tolist()) <= {0, 1}

    def test_missing_archive_and_checksum(self, cache):
        with pytest.raises(FileNotFoundError, match="DAVIS-2017-trainval-480p.zip"):
            DAVIS2017(split="val")
        _fake_davis(cache)
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
