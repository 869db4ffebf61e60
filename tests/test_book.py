"""The book: configuration, API coverage, citations, and a full build with warnings as errors."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def public_modules(package: Path = ROOT / "pixelbook", prefix: str = "pixelbook") -> list[str]:
    """Dotted names of every public module: files and subpackages not starting with ``_``, recursively."""
    names = []
    for path in sorted(package.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.suffix == ".py":
            names.append(f"{prefix}.{path.stem}")
        elif (path / "__init__.py").exists():
            names.append(f"{prefix}.{path.name}")
            names += public_modules(path, f"{prefix}.{path.name}")
    return names


def bib_keys() -> set[str]:
    text = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    return set(re.findall(r"^@\w+\{([^,\s]+),", text, flags=re.M))


CITE_RE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


class TestApiPage:
    def test_documents_every_public_module(self):
        text = (ROOT / "book" / "api.md").read_text(encoding="utf-8")
        documented = set(re.findall(r"\.\. automodule:: ([\w.]+)", text))
        missing = [m for m in public_modules() if m not in documented]
        assert missing == [], f"add to book/api.md: {missing}"

    def test_documents_only_modules_that_exist(self):
        text = (ROOT / "book" / "api.md").read_text(encoding="utf-8")
        absent = [m for m in re.findall(r"\.\. automodule:: ([\w.]+)", text)
                  if importlib.util.find_spec(m) is None]
        assert absent == [], f"book/api.md documents modules that do not exist: {absent}"


class TestReferences:
    def test_keys_are_unique(self):
        text = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
        keys = re.findall(r"^@\w+\{([^,\s]+),", text, flags=re.M)
        assert sorted(set(keys)) == sorted(keys)

    def test_every_cited_key_exists(self):
        sources = list((ROOT / "book").glob("*.md")) + list((ROOT / "notebooks").glob("*.py"))
        cited = {key.strip() for path in sources for group in CITE_RE.findall(path.read_text(encoding="utf-8"))
                 for key in group.split(",")}
        assert sorted(cited - bib_keys()) == []

    def test_source_papers_are_present(self):
        assert {"kong2019thesis", "valle2019node", "liu2020std", "zhao2019rmi", "sharma2021cas"} <= bib_keys()


class TestPages:
    def test_headings_carry_no_math(self):
        # headings become the table of contents and the browser title, where math stays raw LaTeX
        found = [f"{path.name}: {line}" for path in sorted((ROOT / "book").glob("*.md"))
                 for line in nbtools.strip_fences(path.read_text(encoding="utf-8")).splitlines()
                 if re.match(r"#{1,6} ", line) and re.search(r"\$|\\\(", line)]
        assert found == []

    def test_markdown_outputs_are_parsed_as_myst(self):
        cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
        assert cfg["sphinx"]["config"]["nb_render_markdown_format"] == "myst"  # tables render as tables


class TestTableOfContents:
    def test_every_listed_file_exists(self):
        toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
        files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"] if "file" in c]
        missing = [f for f in files if not any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]
        assert missing == []

    def test_chapters_are_globbed(self):
        toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
        globs = [c["glob"] for part in toc["parts"] for c in part["chapters"] if "glob" in c]
        assert globs == ["notebooks/*"]

    def test_build_never_executes_notebooks(self):
        cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
        assert cfg["execute"]["execute_notebooks"] == "off"


GLUE_REF_RE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+\.ipynb)::([A-Za-z_][\w]*)(?::[^`]*)?`")
# a cross-document reference without a format spec: ``{glue:text}`../notebooks/X.ipynb::key` ``
BARE_GLUE_REF_RE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+\.ipynb::[A-Za-z_]\w*)`")


def glue_keys(notebook: Path) -> set[str]:
    """The keys a committed notebook glues (myst-nb's ``scrapbook`` output metadata)."""
    import json

    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return {o["metadata"]["scrapbook"]["name"] for c in nb["cells"] for o in c.get("outputs", [])
            if "scrapbook" in o.get("metadata", {})}


class TestCrossDocumentGlue:
    def test_every_pasted_number_exists_in_its_notebook(self):
        # Pages such as the errata paste numbers from the chapters ({glue:text}`../notebooks/X.ipynb::key`);
        # the build fails on a missing key too, but this says which page and key, in a second.
        missing = []
        for page in sorted((ROOT / "book").glob("*.md")):
            for rel, key in GLUE_REF_RE.findall(page.read_text(encoding="utf-8")):
                nb = (page.parent / rel).resolve()
                if not nb.exists() or key not in glue_keys(nb):
                    missing.append(f"{page.name}: {rel}::{key}")
        assert missing == []

    def test_every_pasted_number_carries_a_format_spec(self):
        # Without one, myst-nb splits 'path::key' at its last colon and the book build fails; this names
        # the page and the key in a second (the spec also fixes how many digits the page quotes).
        bare = [f"{page.name}: {ref}" for page in sorted((ROOT / "book").glob("*.md"))
                for ref in BARE_GLUE_REF_RE.findall(page.read_text(encoding="utf-8"))]
        assert bare == []

    def test_a_bare_reference_is_recognised(self):
        text = ("{glue:text}`../notebooks/01_x.ipynb::k` and {glue:text}`../notebooks/01_x.ipynb::k:.3f` "
                "and {glue:text}`local_key`")
        assert BARE_GLUE_REF_RE.findall(text) == ["../notebooks/01_x.ipynb::k"]

    def test_the_errata_page_pastes_measured_numbers(self):
        assert len(GLUE_REF_RE.findall((ROOT / "book" / "errata.md").read_text(encoding="utf-8"))) >= 5


@pytest.fixture(scope="module")
def result(book_build):
    """The session's build of the book from the committed outputs (conftest.py), into a temporary folder."""
    return book_build


@pytest.mark.book
class TestBuild:
    def test_succeeds(self, result):
        assert result.returncode == 0, result.log[-5000:]

    def test_has_no_warnings(self, result):
        assert result.warnings == []

    def test_writes_index(self, result):
        assert result.index.exists()

    def test_has_one_page_per_notebook(self, result):
        html = result.index.parent
        missing = [nb.name for nb in NOTEBOOKS if not (html / "notebooks" / f"{nb.stem}.html").exists()]
        assert missing == []

    def test_has_the_api_reference(self, result):
        page = (result.index.parent / "book" / "api.html").read_text(encoding="utf-8")
        missing = [m for m in public_modules() if f'id="module-{m}"' not in page]
        assert missing == []

    def test_pages_load_nothing_from_the_web(self, result):
        # JS, CSS, fonts and MathJax are served from _static (MathJax from the sphinx-mathjax-offline
        # package); nbtools.build runs with dead HTTP proxies, so a fetch at build time fails it.
        html = result.index.parent
        pages = [html / "book" / "intro.html"] + [html / "notebooks" / f"{nb.stem}.html" for nb in NOTEBOOKS]
        remote = {page.name: re.findall(r'<(?:link|script|img)[^>]+(?:href|src)="(https?://[^"]+)"',
                                        page.read_text(encoding="utf-8")) for page in pages}
        assert {k: v for k, v in remote.items() if v} == {}

    def test_mathjax_is_shipped_in_static(self, result):
        page = (result.index.parent / "book" / "notation.html").read_text(encoding="utf-8")
        assert re.search(r'<script[^>]+src="\.\./_static/mathjax/tex-chtml\.js', page)
        assert (result.index.parent / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()

    def test_each_inline_script_is_emitted_once(self, result):
        page = (result.index.parent / "book" / "intro.html").read_text(encoding="utf-8")
        bodies = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
        assert sorted(b for b in set(bodies) if bodies.count(b) > 1) == []
        assert page.count("const THEBE_JS_URL") <= 1

    def test_no_top_bar_with_a_second_search_button(self, result):
        page = (result.index.parent / "book" / "intro.html").read_text(encoding="utf-8")
        header = re.search(r'<header id="pst-header".*?</header>', page, flags=re.S)
        assert header is None or "search-button" not in header.group(0)

    def test_colab_badge_is_a_local_image(self, result):
        for nb in NOTEBOOKS:
            page = (result.index.parent / "notebooks" / f"{nb.stem}.html").read_text(encoding="utf-8")
            assert re.search(r'<img alt="Open In Colab" src="\.\./_images/colab-badge[^"]*\.svg"', page), nb.name

    def test_landing_page_lists_each_chapter_with_a_link(self, result):
        page = (result.index.parent / "book" / "intro.html").read_text(encoding="utf-8")
        table = page[page.index('id="the-chapters"'):]
        table = table[:table.index("</table>")]
        links = re.findall(r'href="\.\./notebooks/(\w+)\.html"', table)
        assert links == [nb.stem for nb in NOTEBOOKS]

    def test_no_widget_state_or_remote_widget_manager(self, result):
        for nb in NOTEBOOKS:
            page = (result.index.parent / "notebooks" / f"{nb.stem}.html").read_text(encoding="utf-8")
            assert "widget-state+json" not in page and "embed-amd" not in page, nb.name

    def test_plumbing_is_hidden_from_the_code_on_the_page(self, result):
        for nb in NOTEBOOKS:
            page = (result.index.parent / "notebooks" / f"{nb.stem}.html").read_text(encoding="utf-8")
            assert "NBVAL_CHECK_OUTPUT" not in page, nb.name
            assert re.search(r"glue</span><span class=\"p\">\(.{0,400}?display</span><span class=\"o\">=</span>"
                             r"<span class=\"kc\">False", page) is None, nb.name


class TestChapterTable:
    def test_rows_come_from_the_notebooks(self):
        sys.path.insert(0, str(ROOT / "book" / "_ext"))
        import pixelbook_book

        rows = pixelbook_book.chapter_rows(ROOT)
        assert [r["docname"] for r in rows] == [f"notebooks/{nb.stem}" for nb in NOTEBOOKS]
        assert all(r["title"] and r["line"].endswith((".", "!", "?")) for r in rows)

    def test_first_sentence_skips_title_and_badge(self):
        sys.path.insert(0, str(ROOT / "book" / "_ext"))
        import pixelbook_book

        text = "# Chapter 7. X\n\n[![Open In Colab](b.svg)](u)\n\nOne line, e.g. this. Two.\n"
        assert pixelbook_book._first_sentence(text) == "One line, e.g. this."


class TestVisibleSource:
    def test_drops_markers_and_hidden_glue_statements_only(self):
        src = ('x = 1\n# NBVAL_CHECK_OUTPUT\nglue("a", x, display=False)\nglue("b",\n     x, display=False)\n'
               'glue("c", x)\nprint(x)  # glue("d", x, display=False)')
        assert nbtools.visible_source(src) == 'x = 1\nglue("c", x)\nprint(x)  # glue("d", x, display=False)'

    def test_blocks_of_hidden_glue_go_blocks_with_other_code_stay(self):
        src = ('for k, v in d.items():\n    glue(k, v, display=False)\nif x:\n    y = 1\n    glue("y", y, display=False)\n'
               'if z:\n    glue("z", z, display=False)\nelse:\n    w = 2')
        assert nbtools.visible_source(src) == "if x:\n    y = 1\nif z:\n    glue(\"z\", z, display=False)\nelse:\n    w = 2"

    def test_a_cell_of_hidden_glue_shows_nothing(self):
        assert nbtools.visible_source('glue("a", 1, display=False)\nfor k in "bc":\n    glue(k, 2, display=False)') == ""

    def test_trailing_markers_are_dropped_from_the_line(self):
        assert nbtools.visible_source('print(x)  # NBVAL_CHECK_OUTPUT\ny = "#"') == 'print(x)\ny = "#"'

    def test_magics_keep_everything_but_markers(self):
        assert nbtools.visible_source("%timeit f()\n# NBVAL_SKIP") == "%timeit f()"


@pytest.mark.parametrize("nb", NOTEBOOKS or [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks yet"))],
                         ids=lambda p: p.stem if p else "none")
def test_committed_notebook_has_no_error_output(nb):
    cfg = nbtools.load_config(ROOT)
    assert nbtools.lint_notebook(nb, cfg, checks=["errors"]) == []
