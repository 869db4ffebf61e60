"""Notebook tests: the lint of every chapter, nbval at `small` scale, papermill at `smoke` scale,
and the tooling itself (tools/nbtools.py) on a throw-away chapter.

The runs marked ``notebook`` execute chapters and take minutes; ``-m "not notebook"`` skips them.
Their wall times are printed (``-s`` or ``-rA`` shows them); the budgets (`small` <= 150 s,
`smoke` <= 30 s on a 2-core CPU) are reported, not asserted; the hard timeouts only catch hangs.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402
from fakes import FAKE_DATASETS  # noqa: E402  (tests/fakes.py)

# Extra papermill runs at `smoke` scale, per chapter (notebook stem -> list of parameter dicts),
# for options the `small` run does not cover: other datasets (on fake archives), devices, kernels.
# Chapter authors add their entries here, e.g.
#   "04_rmi": [{"DOWNSAMPLING": "max"}, {"USE_LOG_TRACE": False}],
# A value "fake:<name>" is replaced by the folder of a fake dataset with the real layout, built for
# the run by fakes.FAKE_DATASETS[<name>](folder), which returns the folder to pass (tests/fakes.py,
# the builders the data tests use), so a smoke run can take the `full`-scale code path of a chapter
# without any download.
SMOKE_VARIANTS: dict[str, list[dict]] = {
    "04_region_mutual_information": [{"POOL": "interp", "ACTIVATION": "softmax"}],
    "01_pixel_level_prediction": [
        {"DATASET": "nyuv2", "DATA_ROOT": "fake:nyuv2", "BOUNDARY_DATASET": "bsds500", "BSDS_ROOT": "fake:bsds500"},
    ],
    "02_neural_ode_levelsets": [
        {"TRAIN_METHOD": "rk4", "TRAIN_STEP": 0.5},
        {"DATASET": "saliency", "DATA_ROOT": "fake:sod_ch2"},
    ],
    "03_soft_threshold_dynamics": [
        {"SIGMA": 5.0},  # the paper's 7x7, sigma = 5 kernel (not PSD)
        {"DATA_ROOT": "fake:isic2018"},  # the full-scale experiment (ISIC) on a fake folder, tiny sizes
    ],
    "07_predictive_filter_flow": [{"LIVE_TASKS": ["jpeg", "sr"]}],  # the free-form tasks trained live
}


def _resolve_fakes(params: dict, folder) -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, str) and value.startswith("fake:"):
            target = folder / "fake" / value[5:]
            target.mkdir(parents=True, exist_ok=True)
            value = str(FAKE_DATASETS[value[5:]](target))
        out[key] = value
    return out
if torch.cuda.is_available():  # on a GPU machine every chapter also runs on CUDA
    for _stem in nbtools.chapter_stems(ROOT):
        SMOKE_VARIANTS.setdefault(_stem, []).append({"DEVICE": "cuda"})

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NO_NOTEBOOKS = pytest.param(None, marks=pytest.mark.skip(reason="no notebooks in notebooks/ yet"))
SMALL_TIMEOUT_S = 900  # a hung kernel fails the test; the budget itself is 150 s (reported)
SMOKE_TIMEOUT_S = 600


def _id(value):
    return value.stem if isinstance(value, Path) else None


# ----------------------------------------------------------------------------------------------
# The committed chapters
# ----------------------------------------------------------------------------------------------


# Style notes known to be open, each with who fixes it: the test of that chapter and check is
# expected to fail (strict: once fixed it passes, and the test fails until its entry is removed).
STYLE_NOTES_OPEN: dict = {}


def _lint_cases():
    cases = []
    for nb in NOTEBOOKS:
        for check in list(nbtools.CHECKS) + list(nbtools.NOTES):
            reason = STYLE_NOTES_OPEN.get((nb.stem, check))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(nb, check, marks=marks, id=f"{nb.stem}-{check}"))
    return cases or [pytest.param(None, None, marks=pytest.mark.skip(reason="no notebooks yet"))]


@pytest.mark.parametrize("nb, check", _lint_cases())
def test_lint(nb, check):
    """Every check, the style notes (code width, cell length, figures) included: a chapter that
    regresses on what the reader sees fails CI as `make lint` does."""
    assert nbtools.lint_notebook(nb, nbtools.load_config(ROOT), checks=[check]) == []


def test_open_style_notes_name_existing_chapters_and_notes():
    stems = set(nbtools.chapter_stems(ROOT))
    assert all(stem in stems and check in nbtools.NOTES for stem, check in STYLE_NOTES_OPEN)


def test_every_jupytext_source_is_rendered():
    missing = [f"notebooks/{s}.ipynb" for s in nbtools.chapter_stems(ROOT) if not (ROOT / "notebooks" / f"{s}.ipynb").exists()]
    assert missing == [], "run `make render NB=...` for each"


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOKS or [NO_NOTEBOOKS], ids=_id)
def test_small_scale_reproduces_committed_outputs(nb, tmp_path):
    """nbval --nbval-lax: cells marked ``# NBVAL_CHECK_OUTPUT`` must reproduce their committed
    output and no cell may raise (so the claim checks pass)."""
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
           f"--nbval-cell-timeout={SMALL_TIMEOUT_S}", "-q", "--rootdir", str(tmp_path), str(nb)]
    start = time.perf_counter()
    with nbtools.notebook_env(cache=tmp_path / "cache", scale="small") as env:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SMALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{nb.name}: no result after {SMALL_TIMEOUT_S} s (hung kernel?)")
    seconds = time.perf_counter() - start
    print(f"{nb.name}: small scale (nbval) {seconds:.1f} s (budget 150 s)")
    assert proc.returncode == 0, f"nbval failed on {nb.name}:\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}"


def _smoke_cases():
    """One papermill run per entry of SMOKE_VARIANTS. A chapter's default options are already
    executed at `small` scale by nbval, so a plain `smoke` run would only repeat that coverage
    (DESIGN.md: papermill `smoke` runs are for the *other* options); a chapter without variants
    gets one plain `smoke` run so that its `smoke` path and budget are still exercised."""
    cases = []
    for nb in NOTEBOOKS:
        for params in SMOKE_VARIANTS.get(nb.stem) or [{}]:
            label = ",".join(f"{k}={v}" for k, v in params.items()) or "default"
            cases.append(pytest.param(nb, params, id=f"{nb.stem}-{label}"))
    return cases or [pytest.param(None, {}, marks=pytest.mark.skip(reason="no notebooks in notebooks/ yet"))]


@pytest.mark.notebook
@pytest.mark.parametrize("nb, params", _smoke_cases())
def test_smoke_scale_runs(nb, params, tmp_path):
    import papermill

    start = time.perf_counter()
    with nbtools.notebook_env(cache=tmp_path / "cache", scale="smoke"):
        params = _resolve_fakes(params, tmp_path)
        papermill.execute_notebook(str(nb), str(tmp_path / nb.name), parameters={"SCALE": "smoke", **params},
                                   kernel_name="python3", cwd=str(nb.parent), progress_bar=False,
                                   log_output=False, execution_timeout=SMOKE_TIMEOUT_S)
    print(f"{nb.name} {params or ''}: smoke scale {time.perf_counter() - start:.1f} s (budget 30 s)")


def test_no_variant_names_a_missing_chapter():
    stems = set(nbtools.chapter_stems(ROOT))
    assert sorted(set(SMOKE_VARIANTS) - stems) == []


# ----------------------------------------------------------------------------------------------
# The tooling, on a throw-away chapter in a temporary project
# ----------------------------------------------------------------------------------------------

STEM = "07_example"


@pytest.fixture
def project(tmp_path):
    """A project folder with the real _config.yml and one clean, unexecuted chapter pair."""
    import jupytext

    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "notebooks").mkdir()
    cfg = nbtools.load_config(tmp_path)
    py = tmp_path / "notebooks" / f"{STEM}.py"
    py.write_text(nbtools.new_chapter_text(STEM, "Chapter 7. Example", cfg), encoding="utf-8")
    jupytext.write(nbtools.read_py(py), str(py.with_suffix(".ipynb")))
    return tmp_path


def _lint(project):
    return nbtools.lint(None, project)


def _edit_ipynb(path, fn):
    nb = nbtools.read_ipynb(path)
    fn(nb)
    nbtools.write_ipynb(nb, path)


def _cell(nb, tag=None, containing=None):
    for cell in nb.cells:
        if (tag is None or tag in nbtools.tags(cell)) and (containing is None or containing in cell.source):
            return cell
    raise LookupError(tag or containing)


class TestLint:
    def test_clean_chapter_has_no_problems(self, project):
        assert _lint(project) == []

    def test_wrong_badge_url_is_reported(self, project):
        ipynb = project / "notebooks" / f"{STEM}.ipynb"
        _edit_ipynb(ipynb, lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source.replace("07_example", "08_other")))
        assert [p for p in _lint(project) if "[badge]" in p]

    def test_missing_badge_is_reported(self, project):
        ipynb = project / "notebooks" / f"{STEM}.ipynb"
        _edit_ipynb(ipynb, lambda nb: setattr(nb.cells[0], "source", "# Chapter 7. Example"))
        assert any("[badge] no Colab badge" in p for p in _lint(project))

    def test_config_change_is_reported_until_sync(self, project):
        cfg = (project / "_config.yml").read_text().replace("pixelbook-org/pixelbook", "someone/fork")
        (project / "_config.yml").write_text(cfg)
        problems = _lint(project)
        assert any("[badge]" in p for p in problems) and any("[setup]" in p for p in problems)
        nbtools.sync(None, project)
        assert _lint(project) == []
        text = (project / "notebooks" / f"{STEM}.py").read_text()
        assert "github/someone/fork/blob/main/notebooks/07_example.ipynb" in text
        assert "git+https://github.com/someone/fork@main" in text

    def test_edited_setup_cell_is_reported(self, project):
        ipynb = project / "notebooks" / f"{STEM}.ipynb"
        _edit_ipynb(ipynb, lambda nb: setattr(_cell(nb, containing="google.colab"), "source",
                                              'import sys\nif "google.colab" in sys.modules:\n    pass'))
        assert any("[setup]" in p for p in _lint(project))

    @pytest.mark.parametrize("edit, message", [
        (lambda c: c.metadata.update(tags=[]), "found 0"),
        (lambda c: setattr(c, "source", c.source.replace('"auto")', '"small")')), "lacks the line"),
        (lambda c: setattr(c, "source", c.source + "\nSCALE = pb.runtime.resolve_scale(SCALE)"), "resolve_"),
    ])
    def test_bad_parameters_cell_is_reported(self, project, edit, message):
        ipynb = project / "notebooks" / f"{STEM}.ipynb"
        _edit_ipynb(ipynb, lambda nb: edit(_cell(nb, tag="parameters")))
        assert any("[parameters]" in p and message in p for p in _lint(project))

    def test_two_parameters_cells_are_reported(self, project):
        ipynb = project / "notebooks" / f"{STEM}.ipynb"
        _edit_ipynb(ipynb, lambda nb: nb.cells[-1].metadata.update(tags=["parameters"]))
        assert any("[parameters] expected exactly one" in p and "found 2" in p for p in _lint(project))

    def test_error_output_is_reported(self, project):
        import nbformat

        error = nbformat.v4.new_output("error", ename="AssertionError", evalue="claim failed", traceback=[])
        _edit_ipynb(project / "notebooks" / f"{STEM}.ipynb", lambda nb: nb.cells[-1].outputs.append(error))
        assert any("[errors]" in p and "claim failed" in p for p in _lint(project))

    def test_progress_bar_output_is_reported(self, project):
        import nbformat

        bar = nbformat.v4.new_output("stream", name="stderr", text="train:  50%|#####     | 5/10 [00:01<00:01, 4.9it/s]")
        _edit_ipynb(project / "notebooks" / f"{STEM}.ipynb", lambda nb: nb.cells[-1].outputs.append(bar))
        assert any("[spam]" in p for p in _lint(project))

    def test_ordinary_output_is_not_reported_as_spam(self, project):
        import nbformat

        text = nbformat.v4.new_output("stream", name="stdout", text="mIoU 0.734 (paper: 0.421, NYUv2, full scale)\n")
        _edit_ipynb(project / "notebooks" / f"{STEM}.ipynb", lambda nb: nb.cells[-1].outputs.append(text))
        assert _lint(project) == []

    def test_oversized_notebook_is_reported(self, project):
        import nbformat

        png = nbformat.v4.new_output("display_data", data={"text/plain": "big", "image/png": "A" * (nbtools.MAX_BYTES + 1)})
        _edit_ipynb(project / "notebooks" / f"{STEM}.ipynb", lambda nb: nb.cells[-1].outputs.append(png))
        assert any("[size]" in p for p in _lint(project))

    def test_unsynced_pair_is_reported(self, project):
        py = project / "notebooks" / f"{STEM}.py"
        py.write_text(py.read_text().replace("SEED = 0", "SEED = 1"))
        assert any("[pair] out of sync" in p for p in _lint(project))

    def test_missing_jupytext_source_is_reported(self, project):
        (project / "notebooks" / f"{STEM}.py").unlink()
        assert any("[pair] no jupytext source" in p for p in _lint(project))

    def test_unrendered_source_is_reported(self, project):
        (project / "notebooks" / f"{STEM}.ipynb").unlink()
        assert any("[pair] not rendered" in p for p in _lint(project))

    def test_command_exits_nonzero_on_problems(self, project):
        tool = [sys.executable, str(ROOT / "tools" / "nbtools.py"), "--root", str(project), "lint"]
        assert subprocess.run(tool, capture_output=True).returncode == 0
        _edit_ipynb(project / "notebooks" / f"{STEM}.ipynb", lambda nb: nb.cells[-1].metadata.update(tags=["parameters"]))
        proc = subprocess.run(tool, capture_output=True, text=True)
        assert proc.returncode == 1 and "found 2" in proc.stdout

    def test_no_notebooks_is_not_an_error(self, tmp_path):
        shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
        for command in ("lint", "sync", "render"):
            assert nbtools.main(["--root", str(tmp_path), command]) == 0


class TestSync:
    OLD_STYLE = '''\
# %% [markdown]
# # Chapter 7. Example
#
# Text.

# %% tags=["hide-cell"]
# Setup: hand-written.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "pixelbook[colab] @ git+https://github.com/pixelbook-org/pixelbook"], check=True)

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")
'''

    def test_adds_badge_and_rewrites_setup_cell(self, project):
        py = project / "notebooks" / f"{STEM}.py"
        py.write_text(self.OLD_STYLE)
        (project / "notebooks" / f"{STEM}.ipynb").unlink()
        nbtools.sync(None, project)
        nb = nbtools.read_py(py)
        cfg = nbtools.load_config(project)
        assert nb.cells[0].source == f"# Chapter 7. Example\n\n{nbtools.badge(cfg, STEM)}\n\nText."
        assert nb.cells[1].source == nbtools.setup_source(cfg) and nbtools.tags(nb.cells[1]) == ["hide-cell"]
        assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
        assert nbtools.tags(nb.cells[2]) == ["parameters"]

    def test_inserts_missing_setup_cell_after_title(self, project):
        py = project / "notebooks" / f"{STEM}.py"
        py.write_text("# %% [markdown]\n# # Chapter 7. Example\n\n# %%\nx = 1\n")
        nbtools.sync([str(py)], project)
        nb = nbtools.read_py(py)
        assert [c.source for c in nb.cells][1:] == [nbtools.setup_source(nbtools.load_config(project)), "x = 1"]

    def test_is_idempotent(self, project):
        py = project / "notebooks" / f"{STEM}.py"
        py.write_text(self.OLD_STYLE)
        nbtools.sync([str(py)], project)
        once = py.read_text()
        assert nbtools.sync([str(py)], project) == [] and py.read_text() == once

    def test_keeps_outputs_of_the_ipynb(self, project):
        import nbformat

        ipynb = project / "notebooks" / f"{STEM}.ipynb"
        out = nbformat.v4.new_output("stream", name="stdout", text="kept\n")
        _edit_ipynb(ipynb, lambda nb: (nb.cells[-1].outputs.append(out),
                                       setattr(nb.cells[0], "source", nb.cells[0].source.replace("07_example", "x"))))
        assert nbtools.sync(None, project) == [ipynb]
        assert nbtools.read_ipynb(ipynb).cells[-1].outputs[0]["text"] == "kept\n"
        assert _lint(project) == []


class TestConfig:
    def test_colab_url_matches_the_books_launch_button(self):
        # sphinx-book-theme builds {colab_url}/github/{org}/{repo}/blob/{branch}/{path_to_book/}{page}.ipynb
        cfg = nbtools.load_config(ROOT)
        assert nbtools.colab_url(cfg, "notebooks/01_x.py") == (
            "https://colab.research.google.com/github/pixelbook-org/pixelbook/blob/main/notebooks/01_x.ipynb")

    def test_setup_cell_installs_from_the_configured_repository(self):
        src = nbtools.setup_source(nbtools.load_config(ROOT))
        assert '"pixelbook[colab] @ git+https://github.com/pixelbook-org/pixelbook@main"' in src
        assert 'if "google.colab" in sys.modules:' in src
        compile(src, "setup", "exec")

    def test_rejects_a_non_github_url(self):
        with pytest.raises(ValueError, match="repository.url"):
            nbtools.repository({"repository": {"url": "https://example.org/x"}})

    def test_helper_modules_in_notebooks_are_not_chapters(self, tmp_path):
        (tmp_path / "notebooks").mkdir()
        for name in ("01_a.py", "01_a.ipynb", "_helpers.py", "02_b.py"):
            (tmp_path / "notebooks" / name).write_text("")
        assert nbtools.chapter_stems(tmp_path) == ["01_a", "02_b"]


@pytest.mark.notebook
def test_render_executes_in_place_and_strips_timings(project, capsys):
    ipynb = project / "notebooks" / f"{STEM}.ipynb"
    assert nbtools.render([str(ipynb)], project) == 0
    nb = nbtools.read_ipynb(ipynb)
    report = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "scale        small" in report  # executed at small scale
    assert all("execution" not in c.metadata for c in nb.cells)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert _lint(project) == []
    assert f"{STEM}.ipynb" in capsys.readouterr().out  # the wall time line


class TestReaderChecks:
    """What issue 11 found in the book: dead widget state, the kernelspec, math in headings, nbval
    comments on the page; and the style notes (failing `lint` unless --lenient)."""

    def test_saved_widget_state_and_views_are_reported_and_render_strips_them(self, project):
        import nbformat

        ipynb = project / "notebooks" / f"{STEM}.ipynb"

        def add_widgets(nb):
            nb.metadata["widgets"] = {nbtools.WIDGET_STATE: {"state": {"a": {"model_name": "VBoxModel"}}}}
            cell = _cell(nb, tag="parameters")
            cell.outputs = [nbformat.from_dict(
                {"output_type": "display_data", "metadata": {},
                 "data": {nbtools.WIDGET_VIEW: {"model_id": m}, **extra}})
                for m, extra in (("a", {"text/plain": "VBox(...)"}), ("b", {"text/html": "<b>kept</b>"}))]

        _edit_ipynb(ipynb, add_widgets)
        problems = [p for p in _lint(project) if "[widgets]" in p]
        assert len(problems) == 2  # the metadata, and the cell with views
        nb = nbtools.read_ipynb(ipynb)
        nbtools.strip_volatile(nb)
        assert "widgets" not in nb.metadata
        assert [o["data"] for o in _cell(nb, tag="parameters").outputs] == [{"text/html": "<b>kept</b>"}]

    def test_other_kernelspec_is_reported(self, project):
        ipynb = project / "notebooks" / f"{STEM}.ipynb"
        _edit_ipynb(ipynb, lambda nb: nb.metadata.update(kernelspec={"name": "python3", "display_name": "Python 3",
                                                                     "language": "python"}))
        assert any("[kernelspec]" in p for p in _lint(project))

    def test_math_in_a_heading_is_reported_but_not_in_a_code_block(self, project):
        ipynb = project / "notebooks" / f"{STEM}.ipynb"
        _edit_ipynb(ipynb, lambda nb: nb.cells[-2].update(source="## 7. The limit $\\varepsilon\\to0$\n\n```python\n# $x$\n```"))
        found = [p for p in _lint(project) if "[headings]" in p]
        assert len(found) == 1 and "The limit" in found[0]

    def test_nbval_comment_is_reported_tag_is_not(self, project):
        ipynb = project / "notebooks" / f"{STEM}.ipynb"
        _edit_ipynb(ipynb, lambda nb: setattr(nb.cells[-1], "source", "# NBVAL_CHECK_OUTPUT\n" + nb.cells[-1].source))
        assert any("[markers]" in p for p in _lint(project))
        _edit_ipynb(ipynb, lambda nb: (setattr(nb.cells[-1], "source", nb.cells[-1].source.split("\n", 1)[1]),
                                       nb.cells[-1].metadata.update(tags=[nbtools.NBVAL_TAG])))
        assert not any("[markers]" in p for p in _lint(project))

    def test_a_new_chapter_has_no_style_notes(self, project):
        # the template's cells and the setup cell `sync` writes fit the book's 88-character column
        assert nbtools.style_notes(None, project) == []
        assert nbtools.main(["--root", str(project), "lint"]) == 0

    def test_style_notes_report_long_lines_long_cells_and_wide_figures(self, project):
        import base64
        import io

        import nbformat
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 2), dpi=80)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        png = base64.b64encode(buf.getvalue()).decode()
        ipynb = project / "notebooks" / f"{STEM}.ipynb"

        def edit(nb):
            cell = nb.cells[-1]
            cell.source = "x = 1  # " + "y" * 90 + "\n" + "\n".join(f"a{i} = {i}" for i in range(45))
            cell.outputs = [nbformat.from_dict({"output_type": "display_data", "metadata": {},
                                                "data": {"image/png": png}})]

        _edit_ipynb(ipynb, edit)
        import jupytext

        jupytext.write(nbtools.read_ipynb(ipynb), str(ipynb.with_suffix(".py")), fmt="py:percent")
        notes = nbtools.style_notes(None, project)
        assert any("[code-width]" in n and "longest 99" in n for n in notes)
        assert any("[cell-length]" in n and "46 lines" in n for n in notes)
        assert any("[figures]" in n and "720 px wide" in n for n in notes)
        assert any("[figures]" in n and "at 80 dpi" in n for n in notes)
        assert not any(n in p for p in _lint(project) for n in ("[code-width]", "[cell-length]", "[figures]"))
        assert nbtools.main(["--root", str(project), "lint"]) == 1  # notes alone fail `lint`...
        assert nbtools.main(["--root", str(project), "lint", "--strict"]) == 1  # (the old spelling)
        assert nbtools.main(["--root", str(project), "lint", "--lenient"]) == 0  # ...unless --lenient

    def test_glued_figures_and_explorer_frames_are_measured_too(self, project):
        """The book shows a glued figure (placed by {glue:figure}) and an explorer's frames as
        well as a displayed figure: a wide one is shrunk just the same."""
        import base64
        import io

        import nbformat
        from matplotlib.figure import Figure

        def png(width_in, dpi):
            buf = io.BytesIO()
            Figure(figsize=(width_in, 1), dpi=dpi).savefig(buf, format="png", dpi=dpi)
            return base64.b64encode(buf.getvalue()).decode()

        wide, narrow = png(8, 110), png(5, 110)  # 880 and 550 px
        glued = {"application/papermill.record/image/png": wide, "text/plain": "<Figure>"}
        html = "".join(f'<img src="data:image/png;base64,{p}">' for p in (narrow, wide, narrow))
        explorer = {"application/papermill.record/text/html": html}
        ipynb = project / "notebooks" / f"{STEM}.ipynb"

        def edit(nb):
            nb.cells[-1].outputs = [
                nbformat.from_dict({"output_type": "display_data", "data": data,
                                    "metadata": {"scrapbook": {"name": name}}})
                for name, data in (("fig", glued), ("explorer", explorer))]

        _edit_ipynb(ipynb, edit)
        notes = nbtools.style_notes(None, project)
        assert sum("glued figure 880 px wide" in n for n in notes) == 1
        assert sum("explorer frame 880 px wide" in n for n in notes) == 1  # one note, not one a frame
        assert len(notes) == 2
        _edit_ipynb(ipynb, lambda nb: setattr(nb.cells[-1], "outputs", [nbformat.from_dict(
            {"output_type": "display_data", "metadata": {},
             "data": {"application/papermill.record/image/png": narrow}})]))
        assert nbtools.style_notes(None, project) == []
