"""Shared test setup: headless plots, a throw-away cache, ``tests/`` importable (``import fakes``), a ``device``
fixture, the doctest namespace."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

if "MUTANT_UNDER_TEST" in os.environ:  # tools/mutation.py: mutmut runs the tests repeatedly in one process
    from hypothesis import HealthCheck, settings

    settings.register_profile("mutmut", suppress_health_check=[HealthCheck.differing_executors], database=None)
    settings.load_profile("mutmut")

# Headless plotting for every test: no display, no GUI event loop (set before pyplot is imported).
os.environ["MPLBACKEND"] = "Agg"
# Unit tests never read or write the user's cache (~/.cache/pixelbook): one fresh folder per session.
_CACHE = tempfile.mkdtemp(prefix="pixelbook-test-cache-")
os.environ["PIXELBOOK_CACHE"] = _CACHE
os.environ.setdefault("PIXELBOOK_PROGRESS", "0")
# Without a GPU the Triton kernels are tested in Triton's CPU interpreter, which must be chosen
# before triton is first imported -- and torchvision and torchmetrics import it while pytest
# collects the other test files, before a kernel's own test file could set it.
if not __import__("torch").cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
# `import fakes` (tests/fakes.py, the fake-dataset builders) works from every test module, whatever
# pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _devices():
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=_devices())
def device(request):
    """Each test using it runs on the CPU, and on CUDA when available."""
    import torch

    return torch.device(request.param)


def _namespace():
    import torch

    import pixelbook

    return {"torch": torch, "pb": pixelbook}


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(_namespace())


def pytest_collection_modifyitems(items):
    """Give ``torch`` and ``pb`` to doctests collected outside tests/ (``--doctest-modules pixelbook``),
    which the fixture above does not reach (conftest fixtures apply below their own folder)."""
    doctests = [item for item in items if type(item).__name__ == "DoctestItem"]
    if doctests:
        names = _namespace()
        for item in doctests:
            for key, value in names.items():
                item.dtest.globs.setdefault(key, value)


@pytest.fixture(scope="session")
def book_build(tmp_path_factory):
    """One build of the book from the committed outputs, shared by tests/test_book.py and
    tests/test_browser.py (``nbtools.BuildResult``: returncode, seconds, index, log, warnings)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import nbtools

    result = nbtools.build(output=tmp_path_factory.mktemp("book"))
    print(f"book build: {result.seconds:.1f} s")
    return result
