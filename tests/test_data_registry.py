"""Tests of pixelbook.data.registry and the NYUv2 / BSDS500 loaders, on fake files (tests/fakes.py).

Nothing touches the network: downloads are served from local files by a fake opener (or a
``file://`` URL), and an autouse fixture makes any socket connection fail the test.
"""

from __future__ import annotations

import dataclasses
import email.message
import hashlib
import io
import os
import socket
import stat
import sys
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import fakes
from fakes import make_bsds_archive, make_nyu_files, make_tar, symlink_member, write_nyu_small_files
from pixelbook.data import registry
from pixelbook.data.bsds import BSDS500, load_bsds_ground_truth
from pixelbook.data.nyuv2 import IGNORE_INDEX, NYUv2Labeled, load_nyuv2_class40
from pixelbook.data.registry import (
    ArchiveError,
    ChecksumError,
    DatasetError,
    DatasetSpec,
    dataset_dir,
    extract,
    fetch,
    get_spec,
    list_datasets,
    register,
    sha256sum,
)

# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    real_connect = socket.socket.connect

    def guarded(sock, address):  # local (AF_UNIX) sockets of multiprocessing stay allowed
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(sock, address)

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh cache folder and a registry restored after each test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("PIXELBOOK_CACHE", str(root))
    saved = dict(registry._REGISTRY)
    yield root
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, status: int, fail_after: int | None = None):
        super().__init__(data)
        self.status = status
        self.headers = email.message.Message()
        self.headers["Content-Length"] = str(len(data))
        self.fail_after = fail_after

    def getcode(self):
        return self.status

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        if self.fail_after is not None and n > 0:
            n = min(n, self.fail_after - self.tell())
        return super().read(n)


class FakeServer:
    """Serves ``data`` for any URL, honouring (or ignoring) ``Range``; records each request."""

    def __init__(self, data: bytes, ranges: bool = True, fail_after: int | None = None):
        self.data, self.ranges, self.fail_after = data, ranges, fail_after
        self.requests: list[dict] = []
        self.served = 0

    def __call__(self, request, timeout):
        rng = request.get_header("Range")
        self.requests.append({"url": request.full_url, "range": rng})
        start = int(rng.split("=")[1].rstrip("-")) if (rng and self.ranges) else 0
        if start >= len(self.data) and rng and self.ranges:
            raise urllib.error.HTTPError(request.full_url, 416, "Range Not Satisfiable", None, None)
        body = self.data[start:]
        self.served += len(body)
        fail = None if self.fail_after is None else max(0, self.fail_after - start)
        self.fail_after = None  # fail only once
        return FakeResponse(body, 206 if (rng and self.ranges) else 200, fail)


DATA = bytes(range(256)) * 4000  # ~1 MB, not a multiple of the 1 MiB block
SHA = hashlib.sha256(DATA).hexdigest()


def _spec(name="toy", data=DATA, **kw) -> DatasetSpec:
    args = dict(name=name, url=f"https://example.org/{name}.bin", sha256=hashlib.sha256(data).hexdigest(),
                filename=f"{name}.bin", description="toy", licence="CC0", homepage="https://example.org")
    args.update(kw)
    return register(DatasetSpec(**args), overwrite=True)


def _serve(monkeypatch, server: FakeServer) -> FakeServer:
    monkeypatch.setattr(registry, "_urlopen", server)
    return server


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


class TestDatasetSpec:
    def test_is_frozen(self):
        spec = _spec()
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.url = "https://elsewhere"

    @pytest.mark.parametrize(
        "field,value,match",
        [
            ("sha256", "ABC", "`sha256`: expected 64 lower-case hex digits"),
            ("filename", "a/b.bin", "`filename`: expected a bare file name"),
            ("url", "ftp://x/y", "`url`: expected an http://, https:// or file:// address"),
            ("name", "Bad Name", "`name`: expected lower-case letters"),
            ("size_bytes", 0, "`size_bytes`: expected a positive int"),
        ],
    )
    def test_bad_fields_raise_naming_them(self, field, value, match):
        args = dict(name="toy", url="https://example.org/x", sha256=None, filename="x.bin")
        args[field] = value
        with pytest.raises(ValueError, match=match):
            DatasetSpec(**args)


class TestRegister:
    def test_identical_again_is_fine_and_different_needs_overwrite(self):
        spec = _spec()
        assert register(spec) is spec
        other = dataclasses.replace(spec, url="https://example.org/other")
        with pytest.raises(ValueError, match="already registered as 'toy'; pass overwrite=True"):
            register(other)
        register(other, overwrite=True)
        assert get_spec("toy").url == "https://example.org/other"

    def test_builtin_datasets_are_registered(self):
        assert {"nyuv2_labeled", "nyuv2_splits", "nyuv2_class40", "bsds500", "bsds500_full"} <= set(list_datasets())
        assert get_spec("bsds500_full").sha256 is not None and get_spec("nyuv2_labeled").sha256 is None

    def test_unknown_name_lists_registered_ones(self):
        with pytest.raises(ValueError, match=r"`name`: unknown dataset 'nope'; registered: \[.*'bsds500'"):
            get_spec("nope")


class TestDatasetDir:
    def test_lives_under_the_cache_folder(self, cache):
        _spec()
        assert dataset_dir("toy") == cache / "datasets" / "toy" and dataset_dir("toy").is_dir()


class TestFetch:
    def test_downloads_verifies_and_renames(self, monkeypatch):
        server = _serve(monkeypatch, FakeServer(DATA))
        _spec()
        path = fetch("toy", progress=False)
        assert path.read_bytes() == DATA and path.name == "toy.bin"
        assert not path.with_name("toy.bin.part").exists()
        assert server.requests[0]["range"] is None

    def test_cached_file_is_returned_without_downloading(self, monkeypatch):
        server = _serve(monkeypatch, FakeServer(DATA))
        _spec()
        fetch("toy", progress=False)
        fetch("toy", progress=False)
        assert len(server.requests) == 1

    def test_half_written_part_file_is_resumed_not_restarted(self, monkeypatch):
        server = _serve(monkeypatch, FakeServer(DATA))
        _spec()
        half = len(DATA) // 2
        (dataset_dir("toy") / "toy.bin.part").write_bytes(DATA[:half])
        path = fetch("toy", progress=False)
        assert path.read_bytes() == DATA
        assert server.requests[0]["range"] == f"bytes={half}-"
        assert server.served == len(DATA) - half

    def test_server_ignoring_range_restarts_cleanly(self, monkeypatch):
        server = _serve(monkeypatch, FakeServer(DATA, ranges=False))
        _spec()
        (dataset_dir("toy") / "toy.bin.part").write_bytes(b"garbage that must not be kept")
        assert fetch("toy", progress=False).read_bytes() == DATA
        assert server.served == len(DATA)

    def test_complete_part_file_answered_416_is_verified(self, monkeypatch):
        server = _serve(monkeypatch, FakeServer(DATA))
        _spec()
        (dataset_dir("toy") / "toy.bin.part").write_bytes(DATA)
        assert fetch("toy", progress=False).read_bytes() == DATA
        assert server.served == 0

    def test_interrupted_download_keeps_part_and_next_call_resumes(self, monkeypatch):
        server = _serve(monkeypatch, FakeServer(DATA, fail_after=300_000))
        _spec()
        with pytest.raises(DatasetError, match=r"stopped after 300000 bytes.*is kept; call fetch\('toy'\) again"):
            fetch("toy", progress=False)
        part = dataset_dir("toy") / "toy.bin.part"
        assert part.stat().st_size == 300_000
        assert fetch("toy", progress=False).read_bytes() == DATA
        assert server.requests[1]["range"] == "bytes=300000-"

    def test_file_url_works_offline(self, tmp_path):
        src = tmp_path / "src.bin"
        src.write_bytes(DATA)
        _spec(url=src.as_uri())
        assert fetch("toy", progress=False).read_bytes() == DATA

    def test_bad_checksum_raises_clearly_and_deletes_nothing(self, monkeypatch):
        _serve(monkeypatch, FakeServer(DATA[:-10] + b"0123456789"))
        _spec()
        part = dataset_dir("toy") / "toy.bin.part"
        with pytest.raises(ChecksumError, match=r"corrupt or incomplete: expected sha256 [0-9a-f]{64}, got sha256") as err:
            fetch("toy", progress=False)
        msg = str(err.value)
        assert str(part) in msg and "The file was kept" in msg and "rm '" in msg and "placing a correct copy" in msg
        assert part.exists() and not (dataset_dir("toy") / "toy.bin").exists()
        assert sorted(p.name for p in dataset_dir("toy").iterdir()) == ["toy.bin.part"]  # no marker

    def test_successful_download_leaves_only_the_file_and_its_marker(self, monkeypatch):
        _serve(monkeypatch, FakeServer(DATA))
        _spec()
        fetch("toy", progress=False)
        assert sorted(p.name for p in dataset_dir("toy").iterdir()) == ["toy.bin", "toy.bin.sha256"]

    def test_failed_check_removes_the_marker_so_it_cannot_vouch_for_the_file_later(self, monkeypatch):
        """A corrupted copy that gets back the verified size and time (``cp -p``, a restore) is
        still hashed: the failed check deleted the marker that would have vouched for it."""
        _serve(monkeypatch, FakeServer(DATA))
        _spec()
        path = fetch("toy", progress=False)
        st = path.stat()
        bad = bytearray(DATA)
        bad[7] ^= 0xFF
        path.write_bytes(bytes(bad))
        with pytest.raises(ChecksumError):
            fetch("toy", progress=False)
        assert not path.with_name("toy.bin.sha256").exists()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same time as when verified
        with pytest.raises(ChecksumError, match="the cached file"):
            fetch("toy", progress=False)

    def test_wrong_size_removes_the_marker_too(self, monkeypatch):
        _serve(monkeypatch, FakeServer(DATA))
        _spec(size_bytes=len(DATA))
        path = fetch("toy", progress=False)
        path.write_bytes(DATA[:-1])
        with pytest.raises(ChecksumError, match="expected .* bytes"):
            fetch("toy", progress=False)
        assert not path.with_name("toy.bin.sha256").exists()

    def test_truncated_download_is_reported_as_incomplete(self, monkeypatch):
        _serve(monkeypatch, FakeServer(DATA[: len(DATA) // 3]))
        _spec(size_bytes=len(DATA))
        with pytest.raises(ChecksumError, match=rf"expected {len(DATA)} bytes, got {len(DATA) // 3} bytes"):
            fetch("toy", progress=False)

    def test_corrupted_cached_file_is_detected_even_after_verification(self, monkeypatch):
        _serve(monkeypatch, FakeServer(DATA))
        _spec()
        path = fetch("toy", progress=False)
        bad = bytearray(DATA)
        bad[1000] ^= 0xFF
        path.write_bytes(bytes(bad))
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        with pytest.raises(ChecksumError, match="the cached file .* is corrupt or incomplete"):
            fetch("toy", progress=False)
        assert path.exists()

    def test_download_false_says_where_to_put_the_file(self):
        _spec()
        expected = dataset_dir("toy") / "toy.bin"
        with pytest.raises(FileNotFoundError, match="not found and download=False") as err:
            fetch("toy", download=False)
        assert str(expected) in str(err.value) and "https://example.org/toy.bin" in str(err.value)

    def test_unverifiable_spec_needs_verify_false(self, monkeypatch):
        _serve(monkeypatch, FakeServer(DATA))
        _spec(sha256=None)
        with pytest.raises(DatasetError, match=r"no sha256 is registered .* fetch\('toy', verify=False\)"):
            fetch("toy", progress=False)
        path = fetch("toy", progress=False, verify=False)
        assert path.read_bytes() == DATA
        with pytest.raises(DatasetError, match=f"sha256 {SHA}"):  # prints the digest to record
            fetch("toy")

    def test_http_error_is_reported(self, monkeypatch):
        def fail(request, timeout):
            raise urllib.error.HTTPError(request.full_url, 404, "Not Found", None, None)

        monkeypatch.setattr(registry, "_urlopen", fail)
        _spec()
        with pytest.raises(DatasetError, match="HTTP 404 Not Found"):
            fetch("toy", progress=False)

    def test_unknown_dataset(self):
        with pytest.raises(ValueError, match="`name`: unknown dataset 'missing'"):
            fetch("missing")


class TestSha256sum:
    def test_matches_hashlib(self, tmp_path):
        p = tmp_path / "f"
        p.write_bytes(DATA)
        assert sha256sum(p) == SHA


# --------------------------------------------------------------------------------------------
# archives
# --------------------------------------------------------------------------------------------


FILES = {"top/a.txt": b"alpha", "top/sub/b.bin": os.urandom(200_000)}


class TestExtract:
    @pytest.mark.parametrize("suffix,mode", [(".tgz", "w:gz"), (".tar.gz", "w:gz"), (".tar", "w"), (".tar.bz2", "w:bz2")])
    def test_unpacks_tar_archives(self, tmp_path, suffix, mode):
        arc = make_tar(tmp_path / f"arc{suffix}", FILES, mode)
        out = extract(arc)
        assert out == tmp_path / "arc"
        for name, data in FILES.items():
            assert (out / name).read_bytes() == data

    def test_unpacks_zip_archives(self, tmp_path):
        arc = tmp_path / "arc.zip"
        with zipfile.ZipFile(arc, "w") as zf:
            for name, data in FILES.items():
                zf.writestr(name, data)
        out = extract(arc, tmp_path / "dest")
        assert (out / "top/a.txt").read_bytes() == b"alpha"

    def test_second_call_does_not_extract_again(self, tmp_path, monkeypatch):
        arc = make_tar(tmp_path / "arc.tgz", FILES)
        out = extract(arc)

        def boom(*a, **k):
            raise AssertionError("re-extracted")

        monkeypatch.setattr(tarfile, "open", boom)
        assert extract(arc) == out

    @pytest.mark.parametrize("suffix,mode", [(".tgz", "w:gz"), (".tar", "w")])
    def test_truncated_archive_raises_and_leaves_nothing(self, tmp_path, suffix, mode):
        arc = make_tar(tmp_path / f"arc{suffix}", FILES, mode)
        data = arc.read_bytes()
        arc.write_bytes(data[: len(data) // 2])
        with pytest.raises(ArchiveError, match="is truncated or corrupt"):
            extract(arc)
        assert sorted(p.name for p in tmp_path.iterdir()) == [arc.name]

    def test_truncated_zip_raises(self, tmp_path):
        arc = tmp_path / "arc.zip"
        with zipfile.ZipFile(arc, "w") as zf:
            zf.writestr("a.txt", os.urandom(10_000))
        arc.write_bytes(arc.read_bytes()[:5000])
        with pytest.raises(ArchiveError, match="is truncated or corrupt"):
            extract(arc)

    @pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil-abs.txt", "ok/../../evil.txt"])
    def test_path_traversal_is_refused(self, tmp_path, member):
        arc = make_tar(tmp_path / "arc.tgz", {member: b"pwned"})
        with pytest.raises(ArchiveError, match="would be written outside"):
            extract(arc, tmp_path / "a" / "dest")
        assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a" / "evil.txt").exists()

    def test_symlink_escaping_the_folder_is_refused(self, tmp_path):
        arc = make_tar(tmp_path / "arc.tgz", {"top/a.txt": b"x"}, extra=[symlink_member("top/link", "../../outside")])
        with pytest.raises(ArchiveError, match="would be written outside"):
            extract(arc)

    @pytest.mark.parametrize("data_filter", [True, False], ids=["with-data_filter", "without-data_filter"])
    def test_chain_of_symlinks_cannot_escape(self, tmp_path, monkeypatch, data_filter):
        """``a -> .``, ``a/b -> ..``, ``a/b/evil``: each link looks harmless on its own name, but
        on disk ``a/b`` is ``<dest>/..``. Python < 3.11.4 has no ``tarfile.data_filter``."""
        if not data_filter:
            monkeypatch.delattr(tarfile, "data_filter", raising=False)
        elif not hasattr(tarfile, "data_filter"):
            pytest.skip("this Python has no tarfile.data_filter")
        outer = tmp_path / "outer"
        outer.mkdir()
        arc = tmp_path / "chain.tar"
        with tarfile.open(arc, "w") as tf:
            tf.addfile(symlink_member("a", "."))
            tf.addfile(symlink_member("a/b", ".."))
            info = tarfile.TarInfo("a/b/evil")
            info.size = 5
            tf.addfile(info, io.BytesIO(b"pwned"))
        with pytest.raises(ArchiveError, match="outside"):
            extract(arc, outer / "dest")
        assert list(tmp_path.rglob("evil")) == [] and sorted(p.name for p in outer.iterdir()) == []

    @pytest.mark.parametrize("data_filter", [True, False], ids=["with-data_filter", "without-data_filter"])
    def test_link_made_unsafe_by_a_later_link_is_refused(self, tmp_path, monkeypatch, data_filter):
        """``x -> y/..`` is inside while ``y`` does not exist; ``y -> .`` then makes ``x`` the parent."""
        if not data_filter:
            monkeypatch.delattr(tarfile, "data_filter", raising=False)
        arc = tmp_path / "late.tar"
        with tarfile.open(arc, "w") as tf:
            tf.addfile(symlink_member("x", "y/.."))
            tf.addfile(symlink_member("y", "."))
        with pytest.raises(ArchiveError, match="'x' would be written outside"):
            extract(arc, tmp_path / "d" / "dest")
        assert sorted(p.name for p in (tmp_path / "d").iterdir()) == []

    def test_file_replaces_an_earlier_symlink_instead_of_writing_through_it(self, tmp_path):
        arc = tmp_path / "over.tar"
        with tarfile.open(arc, "w") as tf:
            info = tarfile.TarInfo("target.txt")
            info.size = 4
            tf.addfile(info, io.BytesIO(b"orig"))
            tf.addfile(symlink_member("link", "target.txt"))
            info = tarfile.TarInfo("link")
            info.size = 3
            tf.addfile(info, io.BytesIO(b"new"))
        out = extract(arc)
        assert (out / "target.txt").read_bytes() == b"orig"
        assert not (out / "link").is_symlink() and (out / "link").read_bytes() == b"new"

    def test_safe_links_are_kept(self, tmp_path):
        hard = tarfile.TarInfo("top/copy.txt")
        hard.type, hard.linkname = tarfile.LNKTYPE, "top/a.txt"
        arc = make_tar(tmp_path / "arc.tar", {"top/a.txt": b"alpha"}, mode="w",
                        extra=[symlink_member("top/sub/up", "../a.txt"), hard])
        out = extract(arc)
        assert (out / "top/sub/up").is_symlink() and (out / "top/sub/up").read_bytes() == b"alpha"
        assert (out / "top/copy.txt").read_bytes() == b"alpha"

    @pytest.mark.parametrize("linkname", ["../outside.txt", "/etc/hostname"])
    def test_hard_link_outside_is_refused(self, tmp_path, linkname):
        hard = tarfile.TarInfo("h")
        hard.type, hard.linkname = tarfile.LNKTYPE, linkname
        arc = make_tar(tmp_path / "arc.tar", {}, mode="w", extra=[hard])
        with pytest.raises(ArchiveError, match="outside"):
            extract(arc, tmp_path / "d" / "dest")

    def test_absolute_symlink_and_device_are_refused(self, tmp_path):
        arc = make_tar(tmp_path / "abs.tar", {}, mode="w", extra=[symlink_member("l", "/etc")])
        with pytest.raises(ArchiveError, match="absolute path '/etc'"):
            extract(arc)
        dev = tarfile.TarInfo("dev")
        dev.type = tarfile.CHRTYPE
        arc = make_tar(tmp_path / "dev.tar", {}, mode="w", extra=[dev])
        with pytest.raises(ArchiveError, match="not a file, folder or link"):
            extract(arc)

    @pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil-abs-zip.txt", "ok/../../evil.txt"])
    def test_zip_traversal_is_refused(self, tmp_path, member):
        arc = tmp_path / "arc.zip"
        with zipfile.ZipFile(arc, "w") as zf:
            zf.writestr(member, b"x")
        with pytest.raises(ArchiveError, match="would be written outside"):
            extract(arc, tmp_path / "d" / "dest")
        assert not (tmp_path / "d" / "evil.txt").exists() and not Path("/tmp/evil-abs-zip.txt").exists()

    def test_zip_symlink_is_refused(self, tmp_path):
        arc = tmp_path / "arc.zip"
        with zipfile.ZipFile(arc, "w") as zf:
            info = zipfile.ZipInfo("a")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, ".")
        with pytest.raises(ArchiveError, match="symbolic link"):
            extract(arc)

    def test_corrupt_zip_member_is_reported(self, tmp_path):
        arc = tmp_path / "arc.zip"
        with zipfile.ZipFile(arc, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("a.txt", b"A" * 1000)
        data = bytearray(arc.read_bytes())
        data[data.index(b"A" * 1000) + 500] = ord("B")  # CRC mismatch, sizes intact
        arc.write_bytes(bytes(data))
        with pytest.raises(ArchiveError, match="is truncated or corrupt"):
            extract(arc)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["arc.zip"]

    def test_a_new_archive_at_the_same_path_is_extracted_again(self, tmp_path):
        arc = make_tar(tmp_path / "arc.tgz", {"old.txt": b"old"})
        out = extract(arc)
        make_tar(arc, {"new.txt": b"new"})
        os.utime(arc, ns=(arc.stat().st_atime_ns, arc.stat().st_mtime_ns + 10**9))
        assert extract(arc) == out
        assert sorted(p.name for p in out.iterdir()) == [".pixelbook-extracted", "new.txt"]

    def test_existing_foreign_folder_is_not_overwritten(self, tmp_path):
        arc = make_tar(tmp_path / "arc.tgz", FILES)
        (tmp_path / "arc").mkdir()
        (tmp_path / "arc" / "mine.txt").write_text("keep")
        with pytest.raises(ArchiveError, match="already exists and was not made by extract"):
            extract(arc)
        assert (tmp_path / "arc" / "mine.txt").read_text() == "keep"

    def test_bad_paths(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="`path`: no archive at"):
            extract(tmp_path / "none.tgz")
        (tmp_path / "x.rar").write_bytes(b"x")
        with pytest.raises(ArchiveError, match="`path`: expected a .zip, .tar"):
            extract(tmp_path / "x.rar")


# --------------------------------------------------------------------------------------------
# BSDS500 on a fake archive with the real layout
# --------------------------------------------------------------------------------------------


class TestBSDS500:
    def test_loads_fake_archive_with_the_real_layout(self, tmp_path):
        arc, truth = make_bsds_archive(tmp_path)
        ds = BSDS500(extract(arc), split="train")
        assert len(ds) == 2 and ds.ids == ["100075", "2092"]  # sorted ids
        s = ds[1]
        segs, bnds = truth["2092"]
        assert s["id"] == "2092" and s["image"].shape == (3, 12, 16) and s["image"].dtype == torch.float32
        assert s["boundaries_all"].shape == (3, 12, 16) and s["boundaries_all"].dtype == torch.bool
        torch.testing.assert_close(s["boundaries"], torch.from_numpy(bnds.astype(np.float32).mean(0)))
        assert torch.equal(s["segmentations"], torch.from_numpy(segs.astype(np.int64)))
        assert ds[0]["boundaries_all"].shape[0] == 4  # annotator count varies per image
        assert len(BSDS500(extract(arc), split="val")) == 1 and BSDS500(extract(arc), split="val")[0]["image"].shape == (3, 16, 12)

    def test_registry_path_fetches_extracts_and_loads(self, tmp_path):
        arc, _ = make_bsds_archive(tmp_path)
        (dataset_dir("bsds500") / "BSR_bsds500.tgz").write_bytes(arc.read_bytes())
        ds = BSDS500(split="test", archive="bsds500", download=False, verify=False)
        assert len(ds) == 1 and ds[0]["image"].shape == (3, 12, 16)
        assert (dataset_dir("bsds500") / "extracted" / "BSR").is_dir()

    def test_wrong_archive_in_cache_fails_its_checksum(self, tmp_path):
        arc, _ = make_bsds_archive(tmp_path, "BSR_full.tgz")
        (dataset_dir("bsds500_full") / "BSR_full.tgz").write_bytes(arc.read_bytes())
        with pytest.raises(ChecksumError, match="corrupt or incomplete: expected 252190720 bytes"):
            BSDS500(download=False)

    def test_truncated_archive_in_cache_is_reported(self, tmp_path):
        arc, _ = make_bsds_archive(tmp_path)
        data = arc.read_bytes()
        (dataset_dir("bsds500") / "BSR_bsds500.tgz").write_bytes(data[: len(data) // 2])
        with pytest.raises(ArchiveError, match="is truncated or corrupt"):
            BSDS500(archive="bsds500", download=False, verify=False)

    def test_missing_archive_with_download_false(self):
        with pytest.raises(FileNotFoundError, match=r"BSR_full.tgz' not found and download=False"):
            BSDS500(download=False)

    def test_missing_layout_and_bad_split(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"`root`: no BSDS500 data under .*expected the layout BSR/BSDS500/data"):
            BSDS500(tmp_path)
        with pytest.raises(ValueError, match="`split`: expected one of"):
            BSDS500(tmp_path, split="training")

    def test_bad_ground_truth_file(self, tmp_path):
        scipy.io.savemat(tmp_path / "x.mat", {"other": np.zeros(3)})
        with pytest.raises(ValueError, match="expected a non-empty cell array `groundTruth`"):
            load_bsds_ground_truth(tmp_path / "x.mat")
        (tmp_path / "y.mat").write_bytes(b"not a mat file at all")
        with pytest.raises(ValueError, match="not a readable MATLAB v5 file"):
            load_bsds_ground_truth(tmp_path / "y.mat")


# --------------------------------------------------------------------------------------------
# NYUv2 labeled on fake files with the real layout
# --------------------------------------------------------------------------------------------

N_IMG, H, W, PLANE_N = fakes.NYU_N, fakes.NYU_H, fakes.NYU_W, fakes.NYU_PLANE_N


class TestNYUv2Labeled:
    def test_reads_the_transposed_hdf5_layout_and_maps_40_classes(self, tmp_path):
        images, depths, labels = make_nyu_files(tmp_path)
        ds = NYUv2Labeled(tmp_path, split="train")
        assert len(ds) == 3 and len(NYUv2Labeled(tmp_path, split="test")) == 2
        assert len(NYUv2Labeled(tmp_path, split="all", normals=None)) == 5
        s = ds[1]  # trainNdxs[1] = 3 (1-based) -> image 2
        assert s["index"] == 2
        assert s["image"].shape == (3, H, W) and s["depth"].shape == (1, H, W)
        torch.testing.assert_close(s["image"], torch.from_numpy(images[2]).permute(2, 0, 1).float() / 255)
        torch.testing.assert_close(s["depth"][0], torch.from_numpy(depths[2]))
        raw = torch.from_numpy(labels[2].astype(np.int64))
        expected = torch.where(raw == 0, IGNORE_INDEX, (raw - 1) % 40)  # mapClass[c - 1] - 1
        assert torch.equal(s["labels40"], expected) and (s["labels40"] == IGNORE_INDEX).any()
        assert s["labels40"].dtype == torch.int64 and bool(s["valid"].all())

    def test_plane_fit_normals_recover_a_planar_depth_map(self, tmp_path):
        make_nyu_files(tmp_path)
        s = NYUv2Labeled(tmp_path, split="test", window=5)[0]
        ok = s["normals_valid"]
        assert bool(ok[2:-2, 2:-2].all()) and not bool(ok[0].any())
        n = s["normals"][:, ok]
        cos = (n * torch.tensor(PLANE_N, dtype=torch.float32)[:, None]).sum(0)
        assert float(cos.min()) > 0.9999

    def test_works_in_a_dataloader_with_workers(self, tmp_path):
        make_nyu_files(tmp_path)
        ds = NYUv2Labeled(tmp_path, split="train", normals=None)
        ds[0]  # open the file in the parent first: workers must reopen it
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1)))
        assert batch["image"].shape == (3, 3, H, W)

    def test_missing_h5py_gives_a_clear_import_error(self, tmp_path, monkeypatch):
        write_nyu_small_files(tmp_path)
        (tmp_path / "nyu_depth_v2_labeled.mat").write_bytes(b"placeholder")
        monkeypatch.setitem(sys.modules, "h5py", None)
        ds = NYUv2Labeled(tmp_path)
        with pytest.raises(ImportError, match="pip install h5py"):
            ds[0]

    def test_missing_files_are_named(self, tmp_path):
        write_nyu_small_files(tmp_path)
        with pytest.raises(FileNotFoundError, match="nyu_depth_v2_labeled.mat"):
            NYUv2Labeled(tmp_path)

    def test_registry_path_needs_verify_false_then_loads(self, tmp_path):
        with pytest.raises(DatasetError, match="no sha256 is registered"):
            NYUv2Labeled()
        with pytest.raises(FileNotFoundError, match="not found and download=False"):
            NYUv2Labeled(verify=False)
        build = tmp_path / "build"
        build.mkdir()
        make_nyu_files(build)
        for name, fname in (("nyuv2_labeled", "nyu_depth_v2_labeled.mat"), ("nyuv2_splits", "splits.mat"),
                            ("nyuv2_class40", "classMapping40.mat")):
            (dataset_dir(name) / fname).write_bytes((build / fname).read_bytes())
        assert len(NYUv2Labeled(verify=False, normals=None)) == 3

    def test_bad_class_mapping_and_arguments(self, tmp_path):
        write_nyu_small_files(tmp_path, mapclass=np.arange(10)[None] + 1)
        with pytest.raises(ValueError, match="expected `mapClass` of 894 values in 1..40, got 10"):
            load_nyuv2_class40(tmp_path / "classMapping40.mat")
        with pytest.raises(ValueError, match="`split`: expected one of"):
            NYUv2Labeled(tmp_path, split="val")
        with pytest.raises(ValueError, match="`window`: expected an odd int"):
            NYUv2Labeled(tmp_path, window=4)

    def test_splits_file_may_be_v5_or_v73_and_damage_is_reported(self, tmp_path):
        from pixelbook.data.nyuv2 import load_nyuv2_splits

        h5py = pytest.importorskip("h5py", reason="h5py is needed to write a v7.3 (HDF5) .mat file")
        for name, userblock in (("splits73.mat", 512), ("plain_hdf5.mat", 0)):
            with h5py.File(tmp_path / name, "w", userblock_size=userblock) as f:  # v7.3 stores an n x 1 column as (1, n)
                f["trainNdxs"] = np.array([[1, 3, 4]], dtype=np.float64)
                f["testNdxs"] = np.array([[2, 5]], dtype=np.float64)
            if userblock:  # the 128-byte MATLAB header: text, subsystem offset, version 0x0200, "IM"
                with open(tmp_path / name, "r+b") as fh:
                    fh.write(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02" + b"IM")
            sp = load_nyuv2_splits(tmp_path / name)
            assert sp["train"].tolist() == [0, 2, 3] and sp["test"].tolist() == [1, 4]
        (tmp_path / "bad.mat").write_bytes(b"garbage" * 10)
        with pytest.raises(ValueError, match="is not a readable MATLAB file"):
            load_nyuv2_splits(tmp_path / "bad.mat")
        scipy.io.savemat(tmp_path / "zero.mat", {"trainNdxs": np.array([[0], [1]]), "testNdxs": np.array([[2]])})
        with pytest.raises(ValueError, match="`trainNdxs` must hold 1-based indices, got min 0"):
            load_nyuv2_splits(tmp_path / "zero.mat")
