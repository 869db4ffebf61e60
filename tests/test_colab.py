"""The Colab path, simulated as far as this machine allows.

A fresh virtual environment stands in for a Colab runtime: it sees the packages Colab preinstalls
(torch, torchvision, numpy, scipy, matplotlib, scikit-image, tqdm, h5py, the Jupyter kernel stack,
and ipywidgets **7.7.1**, the version Colab ships and whose front end does not support ipywidgets 8)
as an outside site directory, as Colab's system site-packages are. The chapter's setup cell runs
unchanged except that the repository URL points at a local clone (``git+file://``), under a fake
``google.colab`` module. pip runs offline (``PIP_NO_INDEX``), so the environment also holds what
the ``colab`` extra legitimately adds (torchdiffeq, torchmetrics, myst-nb and their requirements):
if pixelbook required anything Colab's preinstalled packages do not satisfy — a newer ipywidgets or
torch, a newer ipykernel — pip would have to download it and the test fails naming it.

Then: nothing but pixelbook was installed into the environment (torch and the Jupyter stack were
not reinstalled or upgraded), and a chapter runs at ``smoke`` scale on a kernel of that
environment, with live widgets (``PIXELBOOK_OUTPUT`` unset, as on Colab).

The ipywidgets 7.7.1 wheels come from ``make setup`` (``.venv/colab-wheels``, a few hundred KB);
without them the test says so and uses the installed ipywidgets.
"""

import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

pytestmark = pytest.mark.colab

CHAPTER = "04_region_mutual_information"  # one chapter at `smoke` scale
# What a Colab runtime has before the setup cell runs (names as pip knows them).
COLAB_PREINSTALLED = ["torch", "torchvision", "numpy", "scipy", "matplotlib", "scikit-image", "tqdm", "h5py",
                      "pyyaml", "ipykernel", "ipython", "nbformat", "nbclient", "pip", "setuptools", "wheel"]
# Colab also has the classic Notebook server (6.5), which widgetsnbextension 3.6 requires; its code
# is never imported here, so the simulated runtime carries only its metadata, for pip's resolver.
COLAB_METADATA_ONLY = {"notebook": "6.5.5"}
# Colab's widget stack (ipywidgets 7.7.1 and what it needs), from .venv/colab-wheels when present.
COLAB_WIDGET_WHEELS = ["ipywidgets", "widgetsnbextension", "jupyterlab-widgets", "ipython-genutils"]
WHEELS = Path(sys.prefix) / "colab-wheels"


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _closure(roots: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions of ``roots`` and everything they require, extras included
    (torch's ``cuda-toolkit[cublas, ...]`` brings the nvidia packages)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, str]] = set()
    todo = [(root, "") for root in roots]
    while todo:
        name, extra = todo.pop()
        name = _norm(name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            dist = found.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform dependency that is not installed here
        found[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(req.name, "")] + [(req.name, e) for e in req.extras]
    return found


def _link_distribution(dist: metadata.Distribution, site: Path) -> None:
    """Symlink a distribution's top-level files and folders (and its .dist-info) into ``site``."""
    base = Path(dist.locate_file(""))
    tops = {Path(str(f)).parts[0] for f in dist.files or []}
    for top in tops:
        src = base / top
        if top.endswith(".pth") or top in ("..", "bin", "__pycache__") or not src.exists():
            continue
        dst = site / top
        if not dst.exists():
            dst.symlink_to(src)


def _colab_requirements() -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["colab"]


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A fresh environment with Colab's preinstalled packages outside it, then the setup cell run."""
    from packaging.requirements import Requirement

    tmp = tmp_path_factory.mktemp("colab")
    start = time.perf_counter()
    venv, site = tmp / "venv", tmp / "colab-site"
    site.mkdir()
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    # Colab's packages plus what the colab extra adds, but not pixelbook and not the widget stack.
    extra = [Requirement(r).name for r in _colab_requirements()]
    dists = _closure(COLAB_PREINSTALLED + extra)
    widgets_from_wheels = WHEELS.is_dir() and any(WHEELS.glob("ipywidgets-7*.whl"))
    for name, dist in dists.items():
        if name == "pixelbook" or (widgets_from_wheels and name in COLAB_WIDGET_WHEELS):
            continue
        _link_distribution(dist, site)
    if widgets_from_wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--find-links",
                        str(WHEELS), "--target", str(site), "ipywidgets==7.7.1", "widgetsnbextension",
                        "jupyterlab-widgets", "ipython-genutils"], check=True)
        for name, version in COLAB_METADATA_ONLY.items():
            info = site / f"{name}-{version}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
            (info / "RECORD").write_text("")
    else:
        print(f"colab: no ipywidgets 7.7.1 wheels in {WHEELS} (make setup downloads them); "
              "using the installed ipywidgets")
    (Path(venv_site) / "colab-preinstalled.pth").write_text(str(site) + "\n")

    # The repository as Colab would fetch it: a clone of this commit.
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    cfg = nbtools.load_config(ROOT)
    url, branch, _ = nbtools.repository(cfg)
    setup = nbtools.setup_source(cfg)
    assert f"git+{url}@{branch}" in setup
    setup = setup.replace(f"git+{url}@{branch}", f"git+file://{clone}@{commit}")
    fake_colab = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "MPLBACKEND", "PIXELBOOK_", "JUPYTER"))}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_BUILD_ISOLATION="0")
    before = sorted(p.name for p in Path(venv_site).iterdir())
    proc = subprocess.run([str(python), "-c", fake_colab + setup], env=env, capture_output=True, text=True)
    after = sorted(p.name for p in Path(venv_site).iterdir())
    seconds = time.perf_counter() - start
    print(f"colab: environment and setup cell {seconds:.1f} s")
    return {"python": python, "site": venv_site, "proc": proc, "new": sorted(set(after) - set(before)),
            "env": env, "tmp": tmp, "widgets_7": widgets_from_wheels}


def test_setup_cell_installs_pixelbook_offline_over_colabs_packages(colab):
    proc = colab["proc"]
    assert proc.returncode == 0, ("the setup cell needs something Colab's preinstalled packages do not "
                                  f"satisfy (pip, offline):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def test_setup_cell_installs_only_pixelbook(colab):
    # torch, ipywidgets, ipykernel, ... stay Colab's: nothing reinstalled or upgraded into the runtime
    others = [n for n in colab["new"] if not n.startswith(("pixelbook", "__pycache__"))]
    assert others == [] and any(n.startswith("pixelbook") for n in colab["new"]), colab["new"]


def test_colabs_widget_stack_is_unchanged(colab):
    code = ("import ipywidgets, ipykernel, torch, pixelbook.widgets; "
            "print(ipywidgets.__version__, ipywidgets.__file__)")
    out = subprocess.run([str(colab["python"]), "-c", code], env=colab["env"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    version, where = out.stdout.split()
    assert str(colab["site"]) not in where  # still the preinstalled copy
    if colab["widgets_7"]:
        assert version == "7.7.1"


def test_chapter_runs_at_smoke_scale_with_live_widgets(colab):
    from nbclient import NotebookClient

    start = time.perf_counter()
    nb = nbtools.read_ipynb(ROOT / "notebooks" / f"{CHAPTER}.ipynb")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    kernels = colab["tmp"] / "kernels" / "python3"
    kernels.mkdir(parents=True, exist_ok=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(colab["python"]), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(colab["env"])
        os.environ.update(JUPYTER_PATH=str(colab["tmp"]), PIXELBOOK_SCALE="smoke", PIXELBOOK_PROGRESS="0",
                          PIXELBOOK_CACHE=str(colab["tmp"] / "cache"))
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    views = [o for c in nb.cells for o in c.get("outputs", []) if nbtools.WIDGET_VIEW in o.get("data", {})]
    print(f"colab: {CHAPTER} at smoke scale {time.perf_counter() - start:.1f} s, {len(views)} live widget view(s)")
    assert views, "the explorer showed no live widget"
