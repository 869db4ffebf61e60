"""Packaging: environment.yml matches pyproject.toml, and `import pixelbook` stays light."""

import json
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge name -> PyPI name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}
# in environment.yml only: the interpreter, pip itself, and the package installed from this folder
ENV_ONLY = {"python", "pip"}


def normalise(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(text: str) -> tuple[str, frozenset]:
    """``"torch>=2.1"`` -> ``("torch", {">=2.1"})``; conda's ``name=1.0`` reads as ``==1.0``."""
    text = text.split("#", 1)[0].split(";", 1)[0].strip()
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)", text)
    if not m:
        raise ValueError(f"cannot parse requirement {text!r}")
    name, _, spec = m.groups()
    parts = set()
    for piece in filter(None, (p.strip() for p in spec.replace(" ", "").split(","))):
        if re.fullmatch(r"=[^=].*", piece):  # conda "=1.0" (fuzzy) is "==1.0.*" in pip terms
            piece = "==" + piece[1:] + ".*"
        parts.add(piece)
    return normalise(CONDA_TO_PYPI.get(name, name)), frozenset(parts)


def pyproject_requirements() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [r for r in extra if not normalise(r).startswith("pixelbook")]
    return dict(parse_requirement(r) for r in reqs)


def environment_requirements() -> dict:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            reqs += [r for r in dep.get("pip", []) if not r.startswith("-")]
        else:
            reqs.append(dep)
    parsed = dict(parse_requirement(r) for r in reqs)
    return {k: v for k, v in parsed.items() if k not in ENV_ONLY}


class TestEnvironmentYml:
    def test_lists_the_same_packages_as_pyproject(self):
        pip, conda = set(pyproject_requirements()), set(environment_requirements())
        assert pip - conda == set(), f"in pyproject.toml but not in environment.yml: {sorted(pip - conda)}"
        assert conda - pip == set(), f"in environment.yml but not in pyproject.toml: {sorted(conda - pip)}"

    def test_version_bounds_agree(self):
        pip, conda = pyproject_requirements(), environment_requirements()
        differ = {name: (sorted(pip[name]), sorted(conda[name])) for name in pip.keys() & conda.keys()
                  if pip[name] != conda[name]}
        assert differ == {}, f"bounds differ (pyproject, environment.yml): {differ}"

    def test_installs_the_package_itself(self):
        env = yaml.safe_load((ROOT / "environment.yml").read_text())
        pip = [r for dep in env["dependencies"] if isinstance(dep, dict) for r in dep.get("pip", [])]
        assert "-e ." in pip

    def test_python_satisfies_requires_python(self):
        env = yaml.safe_load((ROOT / "environment.yml").read_text())
        python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
        assert len(python) == 1
        version = tuple(int(x) for x in re.findall(r"\d+", python[0])[:2])
        floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
        assert version >= tuple(int(x) for x in re.findall(r"\d+", floor)[:2])


class TestParseRequirement:
    @pytest.mark.parametrize("text, name, spec", [
        ("torch>=2.1", "torch", {">=2.1"}),
        ("pytorch>=2.1", "torch", {">=2.1"}),
        ("jupyter-book>=1.0.4,<2", "jupyter-book", {">=1.0.4", "<2"}),
        ("Jupyter_Book >= 1.0.4, <2", "jupyter-book", {">=1.0.4", "<2"}),
        ("python=3.11", "python", {"==3.11.*"}),
        ("nbval", "nbval", set()),
    ])
    def test_parses_pip_and_conda_specs(self, text, name, spec):
        assert parse_requirement(text) == (name, frozenset(spec))


IMPORT_PROBE = """
import json, sys
import pixelbook
cuda = "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized()
print(json.dumps({"modules": sorted(sys.modules), "cuda": cuda}))
"""
# Importing the package must not draw, reach the network or start a GPU; submodules load lazily.
FORBIDDEN = ("matplotlib.pyplot", "torchvision", "ipywidgets", "requests", "urllib3", "http.client")


@pytest.fixture(scope="module")
def probe():
    """What a fresh interpreter has loaded after `import pixelbook`."""
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


class TestImport:
    def test_imports_no_pyplot_network_or_vision_modules(self, probe):
        loaded = [m for m in FORBIDDEN if m in probe["modules"]]
        assert loaded == [], f"`import pixelbook` imports {loaded}"

    def test_does_not_initialise_cuda(self, probe):
        assert probe["cuda"] is False

    def test_loads_no_submodule_and_not_torch(self, probe):
        # the package __init__ is lazy (PEP 562): nothing heavy happens until a submodule is used
        eager = [m for m in probe["modules"] if m.startswith("pixelbook.") or m in ("torch", "numpy")]
        assert eager == [], f"`import pixelbook` loads {eager}; keep them behind pixelbook.__getattr__"

    def test_every_public_module_is_a_lazy_attribute(self):
        import pixelbook

        modules = {p.stem for p in (ROOT / "pixelbook").iterdir()
                   if not p.name.startswith(("_", ".")) and (p.suffix == ".py" or (p / "__init__.py").exists())}
        missing = sorted(modules - set(pixelbook._SUBMODULES))
        assert missing == [], f"add {missing} to pixelbook._SUBMODULES so that `pb.<name>` works"

    def test_every_lazy_attribute_is_a_module(self):
        import pixelbook

        absent = [name for name in pixelbook._SUBMODULES
                  if not ((ROOT / "pixelbook" / f"{name}.py").exists()
                          or (ROOT / "pixelbook" / name / "__init__.py").exists())]
        assert absent == [], f"pixelbook._SUBMODULES names modules that do not exist: {absent}"


# --------------------------------------------------------------------------------------------------
# Every import is declared
# --------------------------------------------------------------------------------------------------

# Imported, not declared, and why that is right.
UNDECLARED_OK = {
    # pixelbook.ops uses Triton kernels when it is importable and falls back to PyTorch otherwise;
    # torch's Linux wheels install it.
    "triton": "optional, installed with torch on Linux",
}
# Our own modules imported by the tests, tools and notebooks by their bare names.
LOCAL = {"pixelbook", "fakes", "nbtools", "conftest", "pixelbook_book", "ddp_tiny"}  # pixelbook_book: book/_ext


def imported_distributions(*folders: str) -> dict:
    """``{distribution: first file importing it}`` of the absolute imports in ``folders``' .py files."""
    import ast
    import importlib.metadata

    dists = importlib.metadata.packages_distributions()
    found = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            with warnings.catch_warnings():  # a stray escape in some docstring is not this test's concern
                warnings.simplefilter("ignore")
                tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in LOCAL or top.startswith("test_") or top in UNDECLARED_OK:
                        continue
                    assert top in dists, f"{path.relative_to(ROOT)} imports {top!r}, which no installed distribution provides"
                    for dist in dists[top]:
                        found.setdefault(normalise(dist), path.relative_to(ROOT).as_posix())
    return found


class TestDeclaredImports:
    def test_package_imports_are_core_dependencies_or_named_extras(self):
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        core = {parse_requirement(r)[0] for r in project["dependencies"]}
        # kits19: the KiTS19 reader; colab: myst-nb's glue, used by pixelbook.widgets in book mode only
        extras = {parse_requirement(r)[0] for name in ("kits19", "colab") for r in project["optional-dependencies"][name]}
        missing = {d: f for d, f in imported_distributions("pixelbook").items() if d not in core | extras}
        assert missing == {}, f"imported by pixelbook but not a dependency in pyproject.toml: {missing}"

    def test_tests_tools_notebooks_and_benchmarks_imports_are_declared(self):
        declared = set(pyproject_requirements())
        used = imported_distributions("tests", "tools", "notebooks", "benchmarks")
        missing = {d: f for d, f in used.items() if d not in declared}
        assert missing == {}, f"imported but declared in no extra of pyproject.toml: {missing}"

    def test_nibabel_is_only_an_extra(self):
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        assert "nibabel" not in {parse_requirement(r)[0] for r in project["dependencies"]}
        assert "pixelbook[kits19]" in project["optional-dependencies"]["dev"]
