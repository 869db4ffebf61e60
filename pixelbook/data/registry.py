"""A registry of real datasets: where each file comes from, its checksum and where it is cached.

``fetch(name)`` returns the path of a verified local copy, downloading it on demand:

1. A cached file that matches the registered sha256 is returned at once (the verification is
   remembered in ``<file>.sha256`` beside it, keyed by size and modification time).
2. Otherwise the file is downloaded to ``<file>.part``. An existing ``.part`` is *resumed* with an
   HTTP ``Range`` request; a server that ignores ``Range`` makes the download start over.
3. The finished ``.part`` is checked against ``sha256`` (and ``size_bytes`` when known), then
   renamed atomically to ``<file>``. On a mismatch the file is kept and only its verification
   marker is removed (so no marker outlives a failed check); the error names the file, the
   expected and actual checksums and the two ways out (delete it and fetch again, or put a good
   copy there by hand). A ``.part`` never gets a marker.

Datasets whose checksum nobody has published are registered with ``sha256=None``. ``fetch``
refuses to trust such a file unless the caller passes ``verify=False`` (the error prints the
file's actual sha256 so it can be recorded). Files live in
``pixelbook.runtime.cache_dir("datasets", name)`` (``$PIXELBOOK_CACHE`` or
``~/.cache/pixelbook``). ``download=False`` never touches the network and, when the file is
missing, says where to put it and where to get it.

:func:`extract` unpacks ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` and ``.tar.bz2`` archives into
a folder member by member, refusing any member that would land outside it (also through
links unpacked before it), and reports a truncated or corrupt archive as such.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..runtime import cache_dir

__all__ = [
    "DatasetSpec",
    "DatasetError",
    "ChecksumError",
    "ArchiveError",
    "register",
    "get_spec",
    "list_datasets",
    "dataset_dir",
    "sha256sum",
    "fetch",
    "extract",
]

_CHUNK = 1 << 20  # 1 MiB read/write blocks
_TIMEOUT_S = 60  # ours: socket timeout of one download request
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class DatasetError(RuntimeError):
    """A dataset file is missing, unverifiable or could not be downloaded."""


class ChecksumError(DatasetError):
    """A downloaded or cached file does not match its registered sha256 or size."""


class ArchiveError(DatasetError):
    """An archive is truncated, corrupt, of an unknown type or would write outside its folder."""


@dataclass(frozen=True)
class DatasetSpec:
    """One downloadable file of a dataset.

    Attributes:
        name: registry key, lower case (``"bsds500"``); also the cache sub-folder.
        url: ``http(s)://`` or ``file://`` address of the file.
        sha256: lower-case hex digest, or ``None`` when no published checksum is known (then
            :func:`fetch` needs ``verify=False``).
        filename: the file's name in the cache folder (no directories).
        size_bytes: exact size when known (checked after download), else ``None``.
        description, licence, homepage: shown in errors and in the book's dataset page.
    """

    name: str
    url: str
    sha256: str | None
    filename: str
    size_bytes: int | None = None
    description: str = ""
    licence: str = ""
    homepage: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"`name`: expected lower-case letters, digits, '_' or '-', got {self.name!r}")
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://", "file://")):
            raise ValueError(f"`url`: expected an http://, https:// or file:// address, got {self.url!r}")
        if self.sha256 is not None and (not isinstance(self.sha256, str) or not _SHA_RE.match(self.sha256)):
            raise ValueError(f"`sha256`: expected 64 lower-case hex digits or None, got {self.sha256!r}")
        if (
            not isinstance(self.filename, str) or not self.filename or self.filename in (".", "..")
            or "/" in self.filename or "\\" in self.filename
        ):
            raise ValueError(f"`filename`: expected a bare file name, got {self.filename!r}")
        if self.size_bytes is not None and (
            isinstance(self.size_bytes, bool) or not isinstance(self.size_bytes, int) or self.size_bytes <= 0
        ):
            raise ValueError(f"`size_bytes`: expected a positive int or None, got {self.size_bytes!r}")


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec, *, overwrite: bool = False) -> DatasetSpec:
    """Add ``spec`` to the registry; registering an identical spec again is a no-op.

    Raises:
        ValueError: a different spec is already registered under ``spec.name`` (pass
            ``overwrite=True`` to replace it).
    """
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"`spec`: expected a DatasetSpec, got {type(spec).__name__}")
    old = _REGISTRY.get(spec.name)
    if old is not None and old != spec and not overwrite:
        raise ValueError(f"`spec`: a different dataset is already registered as {spec.name!r}; pass overwrite=True")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    """The registered spec called ``name``; a ``ValueError`` lists the registered names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"`name`: unknown dataset {name!r}; registered: {list_datasets()}") from None


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def dataset_dir(name: str) -> Path:
    """The cache folder of dataset ``name`` (created on demand)."""
    get_spec(name)
    return Path(cache_dir("datasets", name))


def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
        >>> _ = p.write_bytes(b"abc")
        >>> sha256sum(p)[:16]
        'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _verified(path: Path, digest: str) -> bool:
    """Whether ``path`` was already verified against ``digest`` (a stamp file remembers it)."""
    try:
        return _marker(path).read_text().split("\n")[:2] == [digest, _stamp(path)]
    except OSError:
        return False


def _remember(path: Path, digest: str) -> None:
    _marker(path).write_text(f"{digest}\n{_stamp(path)}\n")


def _mismatch(spec: DatasetSpec, path: Path, actual: str | None, size: int, what: str) -> ChecksumError:
    exp = f"sha256 {spec.sha256}" if actual is not None else f"{spec.size_bytes} bytes"
    got = f"sha256 {actual}" if actual is not None else f"{size} bytes"
    return ChecksumError(
        f"dataset {spec.name!r}: {what} {path} is corrupt or incomplete: expected {exp}, got {got} "
        f"({size} bytes). The file was kept. Fix it by deleting the file (rm '{path}') and calling "
        f"fetch({spec.name!r}) again, or by placing a correct copy of {spec.filename} (from {spec.url}) "
        f"at '{path.with_name(spec.filename)}'."
    )


def _check_file(spec: DatasetSpec, path: Path, what: str, remember: bool) -> None:
    """Raise ``ChecksumError`` unless ``path`` matches the spec's size and sha256; with
    ``remember``, write the marker that lets the next call skip the hash.

    A mismatch deletes the file's verification marker (never the file): a marker that outlived
    the check could vouch for a bad file that later gets the old size and modification time.
    """
    size = path.stat().st_size
    if spec.size_bytes is not None and size != spec.size_bytes:
        _marker(path).unlink(missing_ok=True)
        raise _mismatch(spec, path, None, size, what)
    if _verified(path, spec.sha256):
        return
    actual = sha256sum(path)
    if actual != spec.sha256:
        _marker(path).unlink(missing_ok=True)
        raise _mismatch(spec, path, actual, size, what)
    if remember:
        _remember(path, actual)


def _urlopen(request: urllib.request.Request, timeout: float):
    """The one network call of the registry (tests replace it)."""
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URLs come from the registry


def _download(spec: DatasetSpec, part: Path, progress: bool) -> None:
    """Download ``spec.url`` into ``part``, resuming from its current size when possible."""
    from tqdm.auto import tqdm

    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(spec.url, headers={"User-Agent": "pixelbook"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = _urlopen(request, _TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # range past the end: the .part is already complete
            return
        raise DatasetError(f"dataset {spec.name!r}: downloading {spec.url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(
            f"dataset {spec.name!r}: cannot reach {spec.url} ({exc}). Check the connection and call fetch "
            f"again, or download the file by hand and place it at '{part.with_name(spec.filename)}'."
        ) from exc
    with response:
        status = getattr(response, "status", None) or response.getcode()
        resumed = bool(start) and status == 206
        length = response.headers.get("Content-Length")
        total = (int(length) + (start if resumed else 0)) if length and length.isdigit() else spec.size_bytes
        done = start if resumed else 0
        with open(part, "ab" if resumed else "wb") as out, tqdm(
            total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
            desc=spec.filename, disable=not progress, leave=False,
        ) as bar:
            try:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            except (OSError, urllib.error.URLError) as exc:  # connection dropped mid-way
                raise DatasetError(
                    f"dataset {spec.name!r}: the download of {spec.url} stopped after {out.tell()} bytes ({exc}). "
                    f"The partial file '{part}' is kept; call fetch({spec.name!r}) again to resume."
                ) from exc


def fetch(name: str, *, download: bool = True, progress: bool = True, verify: bool = True) -> Path:
    """The local path of dataset file ``name``, downloaded and verified on demand.

    Args:
        name: a registered dataset (:func:`list_datasets`).
        download: allow a download when the file is not cached; with ``False`` a missing file
            raises ``FileNotFoundError`` saying where to put it.
        progress: show a ``tqdm`` progress bar while downloading.
        verify: check the sha256. Specs without a registered checksum need ``verify=False``.

    Returns:
        Path of the verified file in :func:`dataset_dir`.

    Raises:
        ValueError: unknown name. FileNotFoundError: missing with ``download=False``.
        ChecksumError: a cached or downloaded file fails its checksum or size (the file is kept,
            its verification marker removed).
        DatasetError: no checksum registered and ``verify=True``; network failure (a partial
        download is kept and resumed by the next call).
    """
    spec = get_spec(name)
    folder = dataset_dir(name)
    path = folder / spec.filename
    part = folder / (spec.filename + ".part")
    if verify and spec.sha256 is None:
        where = f"the cached file '{path}' (sha256 {sha256sum(path)})" if path.exists() else f"'{path}'"
        raise DatasetError(
            f"dataset {name!r}: no sha256 is registered for {spec.filename}, so {where} cannot be verified. "
            f"Call fetch({name!r}, verify=False) to download and use it unverified."
        )
    if path.exists():
        if verify:
            _check_file(spec, path, "the cached file", remember=True)
        return path
    if not download:
        raise FileNotFoundError(
            f"dataset {name!r}: '{path}' not found and download=False. Download {spec.url}"
            f"{f' (see {spec.homepage})' if spec.homepage else ''} and place it at that path, "
            f"or call fetch({name!r}) with download=True."
        )
    _marker(path).unlink(missing_ok=True)  # a marker without its file vouches for nothing
    _download(spec, part, progress)
    if verify:
        _check_file(spec, part, "the downloaded file", remember=False)  # no marker for a .part
    os.replace(part, path)  # atomic on one file system
    if verify:
        _remember(path, spec.sha256)
    return path


# --------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------

_DONE = ".pixelbook-extracted"
_SUFFIXES = (".tar.gz", ".tar.bz2", ".tgz", ".tar", ".zip")
# What a damaged archive raises while it is read (gzip's BadGzipFile and bz2's "Invalid data
# stream" are OSErrors).
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


def _archive_stem(path: Path) -> str:
    """``path``'s name without its archive suffix; ``ArchiveError`` for an unknown type."""
    for suffix in _SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    raise ArchiveError(f"`path`: expected a .zip, .tar, .tar.gz, .tgz or .tar.bz2 archive, got '{path}'")


def _contained(root: Path, target: Path, member: str) -> Path:
    if target != root and root not in target.parents:
        raise ArchiveError(f"archive member {member!r} would be written outside '{root}'; refusing to extract")
    return target


def _inside(root: Path, name: str, member: str) -> Path:
    """``root / name`` with every symlink *already on disk* resolved; ``ArchiveError`` unless it
    stays in ``root``. Called just before each member is written, so a link unpacked earlier
    (``a -> .``, then ``a/b -> ..``) is followed exactly as the file system will follow it."""
    if not name or os.path.isabs(name) or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"archive member {member!r} would be written outside '{root}'; refusing to extract")
    return _contained(root, (root / name).resolve(), member)


def _new_entry(root: Path, name: str) -> Path:
    """Where member ``name`` (not a folder) goes: its folder resolved and checked, anything already
    at that name removed, so that a file is never written *through* an earlier symlink."""
    parent = _inside(root, os.path.dirname(name.rstrip("/")) or ".", name)
    target = parent / os.path.basename(name.rstrip("/"))
    if target.is_symlink() or target.is_file():
        target.unlink()
    parent.mkdir(parents=True, exist_ok=True)
    return target


def _write(src, target: Path) -> None:
    with open(target, "xb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _unpack_tar(path: Path, root: Path) -> None:
    """Write each member of a tar archive with our own checks; ``tarfile``'s extraction filters are
    not used, so the same rules hold on every Python (with or without ``tarfile.data_filter``)."""
    with tarfile.open(path, "r:*") as tf:
        for member in tf:  # streams through the whole archive: finds truncation
            name = member.name
            if member.isdir():
                _inside(root, name, name).mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target = _new_entry(root, name)
                _write(tf.extractfile(member), target)
                if member.mode & 0o100:  # keep scripts executable (BSR_full's benchmark code)
                    target.chmod(target.stat().st_mode | 0o100)
            elif member.issym():
                target = _new_entry(root, name)
                if os.path.isabs(member.linkname):
                    raise ArchiveError(f"archive member {name!r} links to the absolute path {member.linkname!r}; refusing")
                _contained(root, (target.parent / member.linkname).resolve(), name)  # where it points now
                os.symlink(member.linkname, target)
            elif member.islnk():  # a hard link names an earlier member; copy what it resolves to
                source = _inside(root, member.linkname, name)
                if not source.is_file():
                    raise ArchiveError(f"archive member {name!r} is a hard link to {member.linkname!r}, "
                                       "which is not a file unpacked before it; refusing")
                target = _new_entry(root, name)
                with open(source, "rb") as src:
                    _write(src, target)
            else:
                raise ArchiveError(f"archive member {name!r} is not a file, folder or link; refusing")


def _unpack_zip(path: Path, root: Path) -> None:
    """Write each member of a zip archive (CRCs are checked while reading); links are refused."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError(f"archive member {name!r} is a symbolic link; links in zip archives are refused")
            if info.is_dir():
                _inside(root, name, name).mkdir(parents=True, exist_ok=True)
                continue
            target = _new_entry(root, name)
            with zf.open(info) as src:
                _write(src, target)


def _check_links(root: Path) -> None:
    """Every symlink left in ``root`` must resolve inside it. A link can be safe when it is written
    and escape later (``x -> y/..`` before ``y -> .``); this final walk catches that."""
    for folder, dirs, files in os.walk(root):
        for entry in dirs + files:
            p = Path(folder) / entry
            if p.is_symlink():
                _contained(root, p.resolve(), p.relative_to(root).as_posix())


def _done_text(path: Path) -> str:
    return f"{path.name}\n{_stamp(path)}\n"


def extract(path: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Unpack a ``.zip`` / ``.tar`` / ``.tar.gz`` / ``.tgz`` / ``.tar.bz2`` archive into ``dest``.

    The archive is unpacked into a temporary sibling folder that is renamed to ``dest`` only
    when every member was read, so a failed extraction leaves no half-filled ``dest``. A completed
    one is marked with the archive's name, size and modification time: later calls return at once,
    and a *different* archive at ``path`` (size or time changed) replaces the folder.

    Members are written one at a time by this module (the same rules on every Python, with or
    without ``tarfile.data_filter``). Refused: absolute names, names that lead outside ``dest``
    through ``..`` or through links unpacked earlier (``a -> .``, then ``a/b -> ..``, then
    ``a/b/evil``), symlinks that end outside ``dest`` once everything is unpacked, hard links to
    anything but an earlier file, devices and FIFOs, and symlinks in zip archives.

    Args:
        path: the archive. dest: the folder to create (default: ``path`` without its suffix).

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        FileNotFoundError: no archive at ``path``.
        ArchiveError: unknown type, truncated/corrupt archive, an unsafe member, or a ``dest``
            that exists and was not made by :func:`extract`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path`: no archive at '{path}'")
    stem = _archive_stem(path)
    dest = Path(dest) if dest is not None else path.with_name(stem)
    marker = dest / _DONE
    if marker.is_file() and marker.read_text() == _done_text(path):
        return dest
    if dest.exists() and not marker.is_file() and not (dest.is_dir() and not any(dest.iterdir())):
        raise ArchiveError(
            f"`dest`: '{dest}' already exists and was not made by extract(); delete it or choose another "
            "folder (nothing was overwritten)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".partial-", dir=dest.parent))
    try:
        root = tmp.resolve()
        unpack = _unpack_zip if path.name.endswith(".zip") else _unpack_tar
        try:
            unpack(path, root)
        except _CORRUPT as exc:
            raise ArchiveError(
                f"archive '{path}' is truncated or corrupt ({type(exc).__name__}: {exc}). Delete it and fetch it "
                "again (or replace it with a good copy); nothing was extracted."
            ) from exc
        _check_links(root)
        (root / _DONE).unlink(missing_ok=True)
        (root / _DONE).write_text(_done_text(path))
        if dest.exists():  # empty, or an extraction of an older archive at `path`
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
