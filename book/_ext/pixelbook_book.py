"""Sphinx extension of the pixelbook book: what makes the built folder work offline.

Loaded through ``sphinx.local_extensions`` in ``_config.yml``. It

* copies the MathJax 3 bundle shipped by the ``sphinx-mathjax-offline`` package (a declared
  dependency of the ``book`` extra) into ``_static/mathjax`` so math renders with no network
  (``mathjax_path`` in ``_config.yml`` points there);
* serves the Colab badge from a local SVG (``book/_static/colab-badge.svg``): the notebooks keep
  Colab's own badge URL, which GitHub and Colab show, and the book swaps in the local copy;
* removes duplicate inline scripts: sphinx-thebe adds its configuration script once per
  ``env-before-read-docs`` and Sphinx keeps both copies, so every page declared
  ``const THEBE_JS_URL`` twice (a ``SyntaxError`` in the console);
* gives images drawn by code an alt text (their figure's caption, or what they are) instead of
  their file path;
* hides plumbing in the code the reader sees: nbval marker comments and top-level
  ``glue(..., display=False)`` statements (``tools/nbtools.py visible_source``); the notebook keeps
  them, so nbval and the glue keys work as before; a cell left empty shows no code at all;
* provides the ``pixelbook-chapters`` directive: the landing page's table of the chapters that
  exist, built from the notebooks (number, title linked to the chapter, the overview's first
  sentence, the source paper's citation).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "/book/_static/colab-badge.svg"  # leading "/": relative to the book's source folder


def _mathjax_folder() -> Path:
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the book needs the package sphinx-mathjax-offline (pip install -e '.[book]')")
    folder = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"
    if not (folder / "tex-chtml.js").exists():
        raise RuntimeError(f"{folder}: no tex-chtml.js in the MathJax bundle")
    return folder


def copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from sphinx.util.fileutil import copy_asset

    copy_asset(str(_mathjax_folder()), str(Path(app.outdir) / "_static" / "mathjax"))


def local_badge(app, doctree) -> None:
    for image in doctree.findall(nodes.image):
        if image.get("uri") == BADGE_IMAGE:
            image["uri"] = LOCAL_BADGE
            image.attributes.pop("candidates", None)


def output_alt_text(app, doctree, docname=None) -> None:
    """Images drawn by code have no alt text, so the page gave their file path: use the figure's
    caption when the image is in a captioned figure, else say what it is."""
    for image in doctree.findall(nodes.image):
        if image.get("alt"):
            continue
        parent = image.parent
        while parent is not None and not isinstance(parent, nodes.figure):
            parent = parent.parent
        caption = next(iter(parent.findall(nodes.caption)), None) if parent is not None else None
        image["alt"] = caption.astext() if caption is not None else "Figure drawn by the code cell above"


def unique_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        # the same file or inline body twice (one copy has filename None, the other "")
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def hide_plumbing(app, doctree) -> None:
    for container in list(doctree.findall(nodes.container)):
        if container.get("nb_element") != "cell_code_source":
            continue
        for block in list(container.findall(nodes.literal_block)):
            text = block.astext()
            shown = nbtools.visible_source(text)
            if shown == text:
                continue
            if not shown.strip():
                container.parent.remove(container)
                break
            block.children = [nodes.Text(shown)]
            block.rawsource = shown


_TITLE_RE = re.compile(r"^#\s+(?:Chapter\s+(\d+)\.\s*)?(.+?)\s*$", re.M)
_CITE_RE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`,]+)")


def _first_sentence(text: str) -> str:
    """The first sentence of the overview: the first paragraph that is not the title or a badge."""
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(line.strip() for line in para.strip().splitlines())
        if not para or para.startswith(("#", "[![", "```", ":::", "{")):
            continue
        match = re.match(r"(.+?[.!?])(?:\s+(?=[A-Z{*$])|$)", para)
        return (match.group(1) if match else para).strip()
    return ""


def chapter_rows(root: Path) -> list[dict]:
    """One row per notebook in ``notebooks/``: number, title, one line, docname, source key."""
    rows = []
    for path in sorted((Path(root) / nbtools.NOTEBOOK_DIR).glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        title = _TITLE_RE.search(text)
        if title is None:
            continue
        first = next(("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"), "")
        cite = _CITE_RE.search(first)
        rows.append({"number": title.group(1) or path.stem.split("_")[0].lstrip("0"), "title": title.group(2),
                     "line": _first_sentence(first), "docname": f"{nbtools.NOTEBOOK_DIR}/{path.stem}",
                     "source": cite.group(1).strip() if cite else None})
    return rows


class ChapterTable(SphinxDirective):
    """``{pixelbook-chapters}``: a table of the chapters that exist, from the notebooks."""

    has_content = False

    def run(self):
        root = Path(self.env.srcdir)
        rows = chapter_rows(root)
        for row in rows:
            self.env.note_dependency(str(root / f"{row['docname']}.ipynb"))
        lines = ["| | chapter | source |", "|---|---|---|"]
        for row in rows:
            title = row["title"].replace("|", "\\|").replace("`", "")
            line = row["line"].replace("|", "\\|")
            source = f"{{cite:t}}`{row['source']}`" if row["source"] else ""
            lines.append(f"| {row['number']} | **{{doc}}`{title} </{row['docname']}>`**<br>{line} | {source} |")
        node = nodes.container(classes=["pixelbook-chapters"])
        self.state.nested_parse(StringList(lines, source="pixelbook-chapters"), self.content_offset, node)
        return node.children


def static_path(app, config) -> None:
    """``book/_static`` (the CSS below and the badge) is copied into the build's ``_static``."""
    folder = str(Path(__file__).resolve().parents[1] / "_static")
    if folder not in config.html_static_path:
        config.html_static_path.append(folder)


def setup(app):
    _mathjax_folder()  # fail at start-up, not after the build, when the bundle is missing
    app.connect("doctree-read", local_badge, priority=100)  # before the image collector (500)
    app.connect("html-page-context", unique_scripts, priority=900)
    app.connect("doctree-read", hide_plumbing)
    app.connect("doctree-resolved", output_alt_text)  # after glue has pasted its figures
    app.connect("build-finished", copy_mathjax)
    app.add_directive("pixelbook-chapters", ChapterTable)
    app.connect("config-inited", static_path)
    app.add_css_file("pixelbook.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}

