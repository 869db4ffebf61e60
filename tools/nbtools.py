#!/usr/bin/env python
"""Notebook and book tooling for pixelbook.

    python tools/nbtools.py sync   [paths]   rewrite Colab badges and setup cells from _config.yml
    python tools/nbtools.py lint   [paths]   check notebooks; print every problem and style note,
                                             exit 1 if any (--lenient: notes do not fail; drafts only)
    python tools/nbtools.py render [paths]   sync, convert .py -> .ipynb, execute at small scale in place
    python tools/nbtools.py build            build the HTML book from committed outputs (offline, -W)
    python tools/nbtools.py new NN_topic "Title"   start a chapter from the template

A chapter is ``notebooks/NN_topic.py`` (jupytext ``py:percent``, the source) paired with
``notebooks/NN_topic.ipynb`` (the same cells plus the outputs of a ``small``-scale run). Paths may
name either file of a pair; no paths means every chapter. The repository URL lives only in
``_config.yml``: ``sync`` writes it into every badge and setup cell, ``lint`` fails on a mismatch.
Plain Python, run from the project's environment (``.venv/bin/python tools/nbtools.py ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = "notebooks"
MAX_BYTES = 2 * 1024 * 1024  # a committed notebook is at most 2 MB
CELL_TIMEOUT_S = 900  # render: a cell running longer than this is hung (small scale targets 150 s in all)

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_RE = re.compile(r"\[!\[[^\]]*\]\([^)\s]*colab-badge\.svg\)\]\(([^)\s]*)\)")
SCALE_LINE_RE = re.compile(r'^SCALE = os\.environ\.get\("PIXELBOOK_SCALE", "auto"\)(\s*#.*)?$', re.M)
SETUP_MARKER = '"google.colab" in sys.modules'
PROGRESS_RE = re.compile(r"\d+%\|[^|\n]*\||\bit/s\]|s/it\]|FloatProgress|IntProgress")
PROGRESS_WIDGETS = ("FloatProgressModel", "IntProgressModel")
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# The kernelspec JupyterLab and Colab write for the default Python kernel: saving the same one means
# opening a notebook does not mark it modified.
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
MAX_LINE = 88  # characters: the book's code column shows 88 before it scrolls sideways
MAX_CELL_LINES = 40  # a longer code cell is split, or its plumbing moved into the package
MAX_FIGURE_PX = 700  # the book's text column: a wider PNG is shrunk to fit
MIN_FIGURE_DPI = 110  # pb.viz.DPI: legible figures in the book
NBVAL_TAG = "nbval-check-output"  # nbval reads this tag as it reads the `# NBVAL_CHECK_OUTPUT` comment
NBVAL_COMMENT_RE = re.compile(r"^\s*#\s*NBVAL_[A-Z_]+\s*$")
# after code on the same line nbval does not see it (it reads whole-line comments only): no effect
NBVAL_TRAILING_RE = re.compile(r"(?<=\S)\s*#\s*NBVAL_[A-Z_]+\s*$")

SETUP_TEMPLATE = """\
# Setup, written by `tools/nbtools.py sync` from _config.yml: on Colab, install
# pixelbook from the repository; elsewhere it is already installed (see "How to run").
import sys

if "google.colab" in sys.modules:
    import subprocess

    package = "pixelbook[colab] @ git+{url}@{branch}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)"""


# ----------------------------------------------------------------------------------------------
# Configuration and the strings derived from it
# ----------------------------------------------------------------------------------------------


def load_config(root: Path = ROOT) -> dict:
    """``_config.yml`` as a dict."""
    import yaml

    with open(Path(root) / "_config.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def repository(cfg: dict) -> tuple[str, str, str]:
    """``(url, branch, path_to_book)`` from the ``repository:`` section of ``_config.yml``."""
    repo = cfg.get("repository") or {}
    url = str(repo.get("url", "")).rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"_config.yml: `repository.url` must be https://github.com/<owner>/<repo>, got {url!r}")
    branch = str(repo.get("branch") or "main")
    return url, branch, str(repo.get("path_to_book") or "").strip("/")


def colab_url(cfg: dict, notebook: str | Path) -> str:
    """The Colab link of ``notebooks/<name>.ipynb`` (the same link the book's launch button builds)."""
    url, branch, book = repository(cfg)
    colab = str((cfg.get("launch_buttons") or {}).get("colab_url") or "https://colab.research.google.com").rstrip("/")
    owner_repo = url.split("github.com/", 1)[1]
    rel = "/".join(p for p in (book, NOTEBOOK_DIR, Path(notebook).stem + ".ipynb") if p)
    return f"{colab}/github/{owner_repo}/blob/{branch}/{rel}"


def badge(cfg: dict, notebook: str | Path) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(cfg, notebook)})"


def setup_source(cfg: dict) -> str:
    """The source of the setup cell (without a trailing newline, as jupytext reads it)."""
    url, branch, _ = repository(cfg)
    return SETUP_TEMPLATE.format(url=url, branch=branch)


# ----------------------------------------------------------------------------------------------
# Finding notebooks
# ----------------------------------------------------------------------------------------------


def chapter_stems(root: Path = ROOT) -> list[str]:
    """Stems of all chapters: ``notebooks/*.py`` and ``notebooks/*.ipynb``, except ``_*``."""
    folder = Path(root) / NOTEBOOK_DIR
    if not folder.is_dir():
        return []
    stems = {p.stem for p in folder.iterdir() if p.suffix in (".py", ".ipynb") and not p.name.startswith(("_", "."))}
    return sorted(stems)


def resolve_paths(paths: list[str] | None, root: Path = ROOT) -> list[Path]:
    """Map command-line paths (either file of a pair, or none = all) to ``.ipynb`` paths."""
    folder = Path(root) / NOTEBOOK_DIR
    if not paths:
        return [folder / f"{s}.ipynb" for s in chapter_stems(root)]
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_absolute():  # a bare file name means notebooks/<name>
            p = Path.cwd() / p if len(p.parts) > 1 or (Path.cwd() / p).exists() else folder / p
        if p.suffix not in (".py", ".ipynb"):
            raise SystemExit(f"nbtools: {p}: expected a notebooks/NN_topic.py or .ipynb path")
        out.append(p.with_suffix(".ipynb"))
    return out


def read_ipynb(path: Path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def write_ipynb(nb, path: Path) -> None:
    import nbformat

    nbformat.write(nb, str(path))


def read_py(path: Path):
    import jupytext

    return jupytext.read(str(path), fmt="py:percent")


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


# ----------------------------------------------------------------------------------------------
# sync: badge and setup cell from _config.yml
# ----------------------------------------------------------------------------------------------


def _split_percent(text: str) -> list[list[str]]:
    """Split a py:percent file into chunks of lines; chunk 0 is the header, each other starts with ``# %%``."""
    chunks: list[list[str]] = [[]]
    for line in text.splitlines(keepends=True):
        if line.startswith("# %%"):
            chunks.append([])
        chunks[-1].append(line)
    return chunks


def sync_py_text(text: str, cfg: dict, name: str) -> str:
    """Return ``text`` (a py:percent chapter) with its badge line and setup cell rewritten."""
    want_badge = badge(cfg, name)
    text, n = BADGE_RE.subn(lambda m: want_badge, text)
    chunks = _split_percent(text)
    if n == 0:  # no badge yet: put it under the first markdown title
        for chunk in chunks[1:]:
            if chunk[0].startswith("# %% [markdown]"):
                for i, line in enumerate(chunk[1:], start=1):
                    if line.startswith("# #"):
                        chunk[i + 1:i + 1] = ["#\n", f"# {want_badge}\n"]
                        break
                else:
                    chunk[1:1] = [f"# {want_badge}\n", "#\n"]
                break
    setup = [f"{line}\n" for line in setup_source(cfg).split("\n")]
    new_cell = ['# %% tags=["hide-cell"]\n'] + setup + ["\n"]
    idx = [i for i, c in enumerate(chunks)
           if i > 0 and not c[0].startswith("# %% [markdown]") and any(SETUP_MARKER in line for line in c)]
    if idx:
        i, old = idx[0], chunks[idx[0]]
        blank = 0  # keep the blank lines that separate the cell from the next one
        while blank < len(old) - 1 and not old[-1 - blank].strip():
            blank += 1
        chunks[i] = new_cell[:-1] + ["\n"] * (max(blank, 1) if i < len(chunks) - 1 else blank)
    else:  # no setup cell yet: insert it after the first cell (the title)
        at = 2 if len(chunks) > 1 else 1
        if chunks[at - 1] and chunks[at - 1][-1].strip():
            chunks[at - 1].append("\n")
        chunks.insert(at, new_cell if at < len(chunks) else new_cell[:-1])
    return "".join("".join(c) for c in chunks)


def sync_notebook(nb, cfg: dict, name: str) -> bool:
    """Rewrite badge and setup cell of an in-memory notebook; return whether anything changed."""
    changed = False
    want_badge, want_setup = badge(cfg, name), setup_source(cfg)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and BADGE_RE.search(cell.source):
            new = BADGE_RE.sub(lambda m: want_badge, cell.source)
            changed |= new != cell.source
            cell.source = new
        elif cell.cell_type == "code" and SETUP_MARKER in cell.source:
            if cell.source != want_setup or "hide-cell" not in tags(cell):
                cell.source = want_setup
                cell.metadata["tags"] = sorted(set(tags(cell)) | {"hide-cell"})
                changed = True
    return changed


def sync(paths: list[str] | None = None, root: Path = ROOT, cfg: dict | None = None) -> list[Path]:
    """Rewrite badge and setup cell of each chapter's ``.py`` (and ``.ipynb``, keeping its outputs)."""
    cfg = load_config(root) if cfg is None else cfg
    changed = []
    for ipynb in resolve_paths(paths, root):
        py = ipynb.with_suffix(".py")
        if py.exists():
            old = py.read_text(encoding="utf-8")
            new = sync_py_text(old, cfg, py.stem)
            if new != old:
                py.write_text(new, encoding="utf-8")
                changed.append(py)
        if ipynb.exists():
            nb = read_ipynb(ipynb)
            if sync_notebook(nb, cfg, ipynb.stem):
                write_ipynb(nb, ipynb)
                changed.append(ipynb)
    return changed


# ----------------------------------------------------------------------------------------------
# lint
# ----------------------------------------------------------------------------------------------


def check_badge(nb, path: Path, cfg: dict) -> list[str]:
    found = [m.group(1) for c in nb.cells if c.cell_type == "markdown" for m in BADGE_RE.finditer(c.source)]
    want = colab_url(cfg, path)
    if not found:
        return [f"no Colab badge; expected [![Open In Colab]({BADGE_IMAGE})]({want}) under the title"]
    return [f"Colab badge links to {url}, expected {want} (run `python tools/nbtools.py sync`)" for url in found if url != want]


def check_setup(nb, path: Path, cfg: dict) -> list[str]:
    cells = [c for c in nb.cells if c.cell_type == "code" and SETUP_MARKER in c.source]
    if len(cells) != 1:
        return [f"expected one setup cell (containing {SETUP_MARKER}), found {len(cells)} (run `python tools/nbtools.py sync`)"]
    problems = []
    if cells[0].source != setup_source(cfg):
        problems.append("setup cell differs from the one `python tools/nbtools.py sync` writes from _config.yml")
    if "hide-cell" not in tags(cells[0]):
        problems.append("setup cell is not tagged hide-cell")
    return problems


def check_parameters(nb, path: Path, cfg: dict) -> list[str]:
    cells = [c for c in nb.cells if "parameters" in tags(c)]
    if len(cells) != 1:
        return [f"expected exactly one cell tagged `parameters`, found {len(cells)}"]
    cell, problems = cells[0], []
    if cell.cell_type != "code":
        problems.append("the `parameters` cell is not a code cell")
    if not SCALE_LINE_RE.search(cell.source):
        problems.append('the `parameters` cell lacks the line SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")')
    if "resolve_" in cell.source:
        problems.append("the `parameters` cell calls resolve_*: papermill injects values after this cell, "
                        "so resolve SCALE/DEVICE in the next cell")
    return problems


def check_errors(nb, path: Path, cfg: dict) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: error output {out.get('ename')}: {str(out.get('evalue'))[:120]}")
    return problems


def check_size(nb, path: Path, cfg: dict) -> list[str]:
    size = path.stat().st_size if path.exists() else 0
    if size > MAX_BYTES:
        return [f"{size / 2**20:.2f} MB > {MAX_BYTES / 2**20:.0f} MB (lower figure dpi or size, or show fewer images)"]
    return []


def check_pair(nb, path: Path, cfg: dict) -> list[str]:
    py = path.with_suffix(".py")
    if not py.exists():
        return [f"no jupytext source {py.name} beside the notebook"]
    src = read_py(py)
    a = [(c.cell_type, c.source, tags(c)) for c in src.cells]
    b = [(c.cell_type, c.source, tags(c)) for c in nb.cells]
    if a == b:
        return []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            what = "type" if x[0] != y[0] else ("source" if x[1] != y[1] else "tags")
            return [f"out of sync with {py.name}: cell {i} differs ({what}); "
                    f"run `make render NB={NOTEBOOK_DIR}/{path.name}`"]
    return [f"out of sync with {py.name}: {len(a)} cells in the .py, {len(b)} in the .ipynb; "
            f"run `make render NB={NOTEBOOK_DIR}/{path.name}`"]


def check_spam(nb, path: Path, cfg: dict) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else out.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            if PROGRESS_RE.search(text) or (out.get("output_type") == "stream" and "\r" in text):
                problems.append(f"cell {i}: progress-bar output (render with PIXELBOOK_PROGRESS=0: `make render`)")
                break
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    bars = [k for k, v in state.items() if v.get("model_name") in PROGRESS_WIDGETS]
    if bars:
        problems.append(f"{len(bars)} progress-bar widget(s) saved in the notebook metadata")
    return problems


def check_widgets(nb, path: Path, cfg: dict) -> list[str]:
    """No saved widget state or widget views: in the book they draw dead controls (no kernel), in
    JupyterLab "model not found"; the book gets pre-rendered explorers instead (pb.widgets)."""
    problems = []
    if nb.metadata.get("widgets"):
        n = len(nb.metadata["widgets"].get(WIDGET_STATE, {}).get("state", {}))
        problems.append(f"{n} saved widget model(s) in the notebook metadata (render with `make render`)")
    for i, cell in enumerate(nb.cells):
        if any(WIDGET_VIEW in out.get("data", {}) for out in cell.get("outputs", [])):
            problems.append(f"cell {i}: a widget-view output (dead without a kernel); use pb.widgets.explorer")
    return problems


def check_kernelspec(nb, path: Path, cfg: dict) -> list[str]:
    if dict(nb.metadata.get("kernelspec", {})) != KERNELSPEC:
        return [f"kernelspec {dict(nb.metadata.get('kernelspec', {}))} != {KERNELSPEC} "
                "(JupyterLab marks the notebook modified on opening; `make render` writes it)"]
    return []


HEADING_RE = re.compile(r"^#{1,6} .*(\$|\\\(|\\\[)", re.M)


def check_headings(nb, path: Path, cfg: dict) -> list[str]:
    """Headings carry no math: they become the page's table of contents and browser titles."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for m in HEADING_RE.finditer(strip_fences(cell.source)):
                line = cell.source[m.start():].splitlines()[0]
                problems.append(f"cell {i}: math in a heading (use words or Unicode: \"ε → 0\"): {line[:80]}")
    return problems


def check_markers(nb, path: Path, cfg: dict) -> list[str]:
    """nbval markers are cell tags (invisible to the reader), not comments in the code."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if any(NBVAL_COMMENT_RE.match(line) for line in cell.source.splitlines()):
            problems.append(f"cell {i}: a `# NBVAL_...` comment; tag the cell `{NBVAL_TAG}` instead "
                            f"(`# %% tags=[\"{NBVAL_TAG}\"]`)")
        if any(NBVAL_TRAILING_RE.search(line) for line in cell.source.splitlines()):
            problems.append(f"cell {i}: a `# NBVAL_...` comment after code, which nbval ignores (it reads "
                            f"whole-line comments): tag the cell `{NBVAL_TAG}` for the check to happen")
    return problems


CHECKS = {
    "badge": check_badge,
    "setup": check_setup,
    "parameters": check_parameters,
    "errors": check_errors,
    "size": check_size,
    "pair": check_pair,
    "spam": check_spam,
    "widgets": check_widgets,
    "kernelspec": check_kernelspec,
    "headings": check_headings,
    "markers": check_markers,
}


# Style notes: what the reader sees (code width, cell length, figures). They fail `lint` and the
# CI test of each chapter like the problems above; `lint --lenient` prints them without failing,
# for a chapter in draft.

def strip_fences(text: str) -> str:
    """Markdown without fenced code blocks (a `# comment` in a code block is not a heading)."""
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S)


def visible_source(source: str) -> str:
    """A code cell's source as the book shows it: without nbval marker comments and without
    top-level ``glue(..., display=False)`` statements (plumbing; the notebook keeps both)."""
    import ast

    lines = source.split("\n")
    drop = {i for i, line in enumerate(lines) if NBVAL_COMMENT_RE.match(line)}
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics and the like: drop only the comments
        tree = None

    def is_hidden_glue(stmt) -> bool:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not isinstance(call, ast.Call):
            return False
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
        return name == "glue" and any(k.arg == "display" and isinstance(k.value, ast.Constant)
                                      and k.value.value is False for k in call.keywords)

    def bodies(stmt):
        return [b for b in (getattr(stmt, f, None) for f in ("body", "orelse", "finalbody")) if b]

    def hidden(stmt) -> bool:
        """A hidden glue call, or a block (loop, if, with) holding only hidden statements."""
        if is_hidden_glue(stmt):
            return True
        blocks = bodies(stmt) if isinstance(stmt, (ast.For, ast.If, ast.With, ast.While)) else []
        return bool(blocks) and all(hidden(s) for b in blocks for s in b)

    def visit(body, top: bool = False) -> None:
        # a block is never left empty on the page (a whole cell may be: the book then shows no code)
        keep_some = top or not all(hidden(s) for s in body)
        for stmt in body:
            if hidden(stmt) and keep_some:
                drop.update(range(stmt.lineno - 1, stmt.end_lineno))
            elif not hidden(stmt):
                for block in bodies(stmt):
                    visit(block)

    if tree is not None:
        visit(tree.body, top=True)
    kept = [NBVAL_TRAILING_RE.sub("", line) for i, line in enumerate(lines) if i not in drop]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept))
    return text.strip("\n")


def _png_info(b64: str) -> tuple[int, int, float | None]:
    """``(width, height, dpi or None)`` of a base64 PNG (the dpi from its pHYs chunk)."""
    import base64

    data = base64.b64decode(b64 if isinstance(b64, str) else "".join(b64))
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    at = data.find(b"pHYs")
    dpi = None
    if at > 0 and data[at + 12] == 1:  # unit: metre
        dpi = int.from_bytes(data[at + 4:at + 8], "big") * 0.0254
    return width, height, dpi


def note_code_width(nb, path: Path, cfg: dict) -> list[str]:
    notes = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        long = [len(line) for line in visible_source(cell.source).splitlines() if len(line) > MAX_LINE]
        if long:
            notes.append(f"cell {i}: {len(long)} line(s) over {MAX_LINE} characters (longest {max(long)}): "
                         "wrap, or move plumbing into the package")
    return notes


def note_cell_length(nb, path: Path, cfg: dict) -> list[str]:
    notes = []
    for i, cell in enumerate(nb.cells):
        n = len(visible_source(cell.source).splitlines()) if cell.cell_type == "code" else 0
        shown = cell.cell_type == "code" and not {"remove-cell", "remove-input"} & set(tags(cell))
        if shown and n > MAX_CELL_LINES:
            notes.append(f"cell {i}: {n} lines of code on the page (> {MAX_CELL_LINES}): split it, move plumbing "
                         "into the package, or tag it hide-input/remove-input")
    return notes


HTML_PNG_RE = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _figures(out) -> list[tuple[str, str]]:
    """``(what, base64 PNG)`` of every picture an output shows in the book: a displayed figure
    (``image/png``), a glued one (``application/papermill.record/image/png``, placed by a
    ``{glue:figure}``) and the frames of a pre-rendered explorer (PNGs inside its HTML)."""
    found = []
    for mime, value in out.get("data", {}).items():
        value = "".join(value) if isinstance(value, list) else value
        if mime == "image/png" or mime.endswith("/image/png"):
            found.append(("figure" if mime == "image/png" else "glued figure", value))
        elif mime == "text/html" or mime.endswith("/text/html"):
            found += [("explorer frame", m) for m in HTML_PNG_RE.findall(value)]
    return found


def note_figures(nb, path: Path, cfg: dict) -> list[str]:
    notes = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            widest, low_dpi = {}, {}
            for what, png in _figures(out):
                width, _, dpi = _png_info(png)
                if width > MAX_FIGURE_PX:
                    widest[what] = max(width, widest.get(what, 0))
                if dpi is not None and dpi < MIN_FIGURE_DPI - 1:
                    low_dpi[what] = min(dpi, low_dpi.get(what, dpi))
            for what, width in widest.items():
                notes.append(f"cell {i}: {what} {width} px wide > {MAX_FIGURE_PX} px: the book shrinks it to "
                             f"{100 * MAX_FIGURE_PX / width:.0f} % (draw it at most pb.viz.PAGE_WIDTH wide)")
            for what, dpi in low_dpi.items():
                notes.append(f"cell {i}: {what} at {dpi:.0f} dpi < {MIN_FIGURE_DPI} (call pb.viz.use_style())")
    return notes


NOTES = {
    "code-width": note_code_width,
    "cell-length": note_cell_length,
    "figures": note_figures,
}


def lint_notebook(path: Path, cfg: dict, checks=None) -> list[str]:
    """All problems of one chapter (``path`` is its ``.ipynb``), as ``"<file>: [check] message"``.

    ``checks`` names entries of ``CHECKS`` (default: all of them) or of ``NOTES`` (style notes).
    """
    path = Path(path)
    if not path.exists():
        return [f"{path.name}: [pair] not rendered: run `make render NB={NOTEBOOK_DIR}/{path.name}`"]
    try:
        nb = read_ipynb(path)
    except Exception as exc:  # noqa: BLE001 - report any unreadable notebook as a problem
        return [f"{path.name}: [read] cannot read: {exc}"]
    problems = []
    for name in checks or CHECKS:
        check = CHECKS.get(name) or NOTES[name]
        problems += [f"{path.name}: [{name}] {msg}" for msg in check(nb, path, cfg)]
    return problems


def lint(paths: list[str] | None = None, root: Path = ROOT, checks=None) -> list[str]:
    cfg = load_config(root)
    return [p for nb in resolve_paths(paths, root) for p in lint_notebook(nb, cfg, checks)]


def style_notes(paths: list[str] | None = None, root: Path = ROOT) -> list[str]:
    """The style notes (``NOTES``) of each chapter (see CONTRIBUTING.md, "Code on the page")."""
    return lint(paths, root, list(NOTES))


# ----------------------------------------------------------------------------------------------
# render: execute at small scale, in place
# ----------------------------------------------------------------------------------------------


@contextmanager
def notebook_env(cache: str | None = None, scale: str | None = "small", extra: dict | None = None):
    """Environment for executing chapters: this interpreter as the ``python3`` kernel, no progress
    bars, explorers in ``book`` mode (pre-rendered HTML, as the committed outputs have them).

    A kernel spec pointing at ``sys.executable`` is put first on ``JUPYTER_PATH``, so a ``python3``
    kernel installed elsewhere (e.g. ``~/.local/share/jupyter``) cannot run the notebooks with
    another Python. ``MPLBACKEND`` is removed so that figures are captured inline.
    """
    with tempfile.TemporaryDirectory(prefix="pixelbook-kernel-") as tmp:
        spec = Path(tmp) / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (pixelbook)", "language": "python",
            "metadata": {"debugger": False},
        }))
        new = {
            "JUPYTER_PATH": os.pathsep.join([tmp] + [p for p in [os.environ.get("JUPYTER_PATH")] if p]),
            "PIXELBOOK_PROGRESS": "0",
            "PIXELBOOK_OUTPUT": "book",  # explorers pre-rendered as HTML, no live widgets (pb.widgets)
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            **({"PIXELBOOK_SCALE": scale} if scale else {}),
            **({"PIXELBOOK_CACHE": str(cache)} if cache else {}),
            **(extra or {}),
        }
        old = {k: os.environ.get(k) for k in list(new) + ["MPLBACKEND"]}
        os.environ.update(new)
        os.environ.pop("MPLBACKEND", None)
        try:
            yield dict(os.environ)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def strip_volatile(nb) -> None:
    """Drop what changes on every run without meaning anything (timings, papermill/nbclient stamps)
    and what is dead without a kernel: saved widget state and widget-view outputs (the book shows
    pb.widgets explorers, pre-rendered as HTML; a reader's kernel makes live widgets anew)."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data is not None and WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                if set(data) <= {"text/plain"}:  # only "VBox(children=...)" text was left
                    continue
            outputs.append(out)
        if cell.cell_type == "code":
            cell.outputs = outputs
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)


def render_notebook(ipynb: Path, cfg: dict, keep_cache: bool = False, timeout: int = CELL_TIMEOUT_S) -> float:
    """Sync, convert ``.py`` -> ``.ipynb`` and execute at ``small`` scale; return the wall time (s).

    On failure the partly executed notebook is written to ``_build/render-failed/`` and the
    committed ``.ipynb`` is left untouched.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    py = ipynb.with_suffix(".py")
    if not py.exists():
        raise FileNotFoundError(f"{py}: the jupytext source of {ipynb.name} is missing")
    sync([str(py)], cfg=cfg, root=ipynb.parents[1])
    nb = read_py(py)
    nb.metadata["jupytext"] = {**nb.metadata.get("jupytext", {}), "formats": "ipynb,py:percent"}
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pixelbook-cache-") as tmp:
        cache = os.environ.get("PIXELBOOK_CACHE") if keep_cache else tmp
        with notebook_env(cache=cache, scale="small"):
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                    resources={"metadata": {"path": str(ipynb.parent)}})
            try:
                client.execute()
            except CellExecutionError:
                failed = ipynb.parents[1] / "_build" / "render-failed" / ipynb.name
                failed.parent.mkdir(parents=True, exist_ok=True)
                strip_volatile(nb)
                write_ipynb(nb, failed)
                print(f"render: {ipynb.name} FAILED after {time.perf_counter() - start:.1f} s; "
                      f"partial notebook: {failed}", file=sys.stderr)
                raise
    seconds = time.perf_counter() - start
    strip_volatile(nb)
    write_ipynb(nb, ipynb)
    return seconds


def render(paths: list[str] | None = None, root: Path = ROOT, keep_cache: bool = False,
           timeout: int = CELL_TIMEOUT_S) -> int:
    cfg = load_config(root)
    notebooks = resolve_paths(paths, root)
    if not notebooks:
        print(f"render: no notebooks in {NOTEBOOK_DIR}/")
        return 0
    failures = 0
    for ipynb in notebooks:
        try:
            seconds = render_notebook(ipynb, cfg, keep_cache=keep_cache, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next notebook
            failures += 1
            print(f"render: {ipynb.name}: {type(exc).__name__}: {str(exc)[-2000:]}", file=sys.stderr)
            continue
        size = ipynb.stat().st_size / 2**20
        print(f"render: {os.path.relpath(ipynb, root)}  {seconds:6.1f} s  {size:.2f} MB")
    return 1 if failures else 0


# ----------------------------------------------------------------------------------------------
# build
# ----------------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    returncode: int
    seconds: float
    index: Path
    log: str
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.warnings and self.index.exists()


ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
WARNING_RE = re.compile(r"\bWARNING\b|\bERROR\b|\bCRITICAL\b|\(SEVERE/4\)|\(ERROR/3\)|\(WARNING/2\)")


def jupyter_book_command() -> list[str]:
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    return [sys.executable, "-m", "jupyter_book.cli.main"]


def build(output: Path | None = None, root: Path = ROOT) -> BuildResult:
    """Build the HTML book from the committed outputs: never executes, offline, warnings are errors.

    Notebooks with error outputs stop the build before Sphinx runs. The Sphinx environment is
    rebuilt from scratch (``--all``) so that no warning hides in a cached page. HTTP(S) proxies
    are pointed at a closed local port, so anything that tries to fetch from the network fails
    instead of silently working online.
    """
    root = Path(root)
    out_base = Path(output) if output else root
    index = out_base / "_build" / "html" / "index.html"
    start = time.perf_counter()
    cfg = load_config(root)
    errors = [p for nb in resolve_paths(None, root) if nb.exists() for p in lint_notebook(nb, cfg, ["errors"])]
    if errors:
        log = "Notebooks with error outputs (the book shows committed outputs; re-render them):\n" + "\n".join(errors)
        return BuildResult(1, time.perf_counter() - start, index, log, errors)
    cmd = jupyter_book_command() + ["build", str(root), "--builder", "html", "--all",
                                    "--warningiserror", "--keep-going"]
    if output:
        cmd += ["--path-output", str(out_base)]
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "MPLBACKEND": "Agg", "PIXELBOOK_PROGRESS": "0", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
           "NO_COLOR": "1", "http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
           "no_proxy": "", "NO_PROXY": ""}
    proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    log = ANSI_RE.sub("", proc.stdout)
    warnings = [line for line in log.splitlines() if WARNING_RE.search(line)]
    return BuildResult(proc.returncode, seconds, index, log, warnings)


# ----------------------------------------------------------------------------------------------
# new: a chapter from the template
# ----------------------------------------------------------------------------------------------

TEMPLATE = '''\
# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # {title}
#
# {badge}
#
# One paragraph: what this chapter derives, builds and checks, and the claim it tests.
# Source: {{cite:t}}`kong2019thesis`.

{setup}

# %% tags=["hide-cell"]
import os
import time

import torch
from myst_nb import glue

import pixelbook as pb

pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke|small|medium|full|auto
SEED = 0
DEVICE = "auto"

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()

# %% [markdown]
# ## Summary

# %%
print(pb.runtime.env_report(T0, SCALE, DEVICE))
'''


def new_chapter_text(stem: str, title: str, cfg: dict) -> str:
    setup = '# %% tags=["hide-cell"]\n' + setup_source(cfg)
    return TEMPLATE.format(title=title, badge=badge(cfg, stem), setup=setup)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbtools.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this tool's)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync", help="rewrite Colab badges and setup cells from _config.yml")
    p.add_argument("paths", nargs="*")
    p = sub.add_parser("lint", help="check notebooks; exit 1 on any problem or style note")
    p.add_argument("paths", nargs="*")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--strict", action="store_true",
                      help="style notes (code width, cell length, figures) fail too: the default")
    mode.add_argument("--lenient", action="store_true",
                      help="style notes are printed but do not fail (a chapter in draft; never in CI)")
    p = sub.add_parser("render", help="execute notebooks at small scale in place")
    p.add_argument("paths", nargs="*")
    p.add_argument("--keep-cache", action="store_true",
                   help="use PIXELBOOK_CACHE (or ~/.cache/pixelbook) instead of a fresh empty cache")
    p.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="per-cell timeout in seconds")
    p = sub.add_parser("build", help="build the HTML book (offline, warnings are errors)")
    p.add_argument("--output", type=Path, default=None, help="folder to hold _build/ (default: the repository)")
    p = sub.add_parser("new", help="start notebooks/NN_topic.py from the chapter template")
    p.add_argument("stem", help="e.g. 04_rmi")
    p.add_argument("title", help='e.g. "Chapter 4. Region Mutual Information"')
    args = parser.parse_args(argv)

    root = args.root.resolve()
    if args.command == "sync":
        changed = sync(args.paths, root)
        for path in changed:
            print(f"sync: rewrote {path}")
        print(f"sync: {len(changed)} file(s) changed")
        return 0
    if args.command == "lint":
        notebooks = resolve_paths(args.paths, root)
        if not notebooks:
            print(f"lint: no notebooks in {root / NOTEBOOK_DIR}")
            return 0
        problems = lint(args.paths, root)
        notes = style_notes(args.paths, root)
        for problem in problems:
            print(problem)
        for note in notes:
            print(f"{note}{'  (note)' if args.lenient else ''}")
        print(f"lint: {len(notebooks)} notebook(s), {len(problems)} problem(s), {len(notes)} style note(s)"
              + (" (--lenient: notes do not fail)" if args.lenient else ""))
        return 1 if problems or (notes and not args.lenient) else 0
    if args.command == "render":
        return render(args.paths, root, keep_cache=args.keep_cache, timeout=args.timeout)
    if args.command == "build":
        result = build(args.output, root)
        print(result.log)
        if result.warnings:
            print(f"build: {len(result.warnings)} warning(s)/error(s):", file=sys.stderr)
            for line in result.warnings:
                print(f"  {line}", file=sys.stderr)
        if not result.ok:
            print(f"build: FAILED after {result.seconds:.1f} s", file=sys.stderr)
            return 1
        print(f"build: done in {result.seconds:.1f} s. Open the book at:\n  file://{result.index.resolve()}")
        return 0
    if args.command == "new":
        py = root / NOTEBOOK_DIR / f"{args.stem}.py"
        if py.exists():
            raise SystemExit(f"nbtools: {py} exists")
        py.parent.mkdir(exist_ok=True)
        py.write_text(new_chapter_text(args.stem, args.title, load_config(root)), encoding="utf-8")
        print(f"new: wrote {py}; render it with `make render NB={NOTEBOOK_DIR}/{py.name}`")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
