"""The built book in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright,
with every request outside the book's folder blocked, as a reader offline would see it.

Each page is checked for: math typeset (no raw ``\\(``/``\\[`` left), tables rendered as tables, every
image loaded, explorers that switch frames when a control moves, no JavaScript error, no request
leaving the book's folder. Screenshots of each chapter go to ``_build/screenshots/`` for review.

Needs ``chromium`` (``make setup`` installs it where it can, see the Makefile) and the ``playwright``
package (dev extra); without them the tests are skipped with the reason. The book is built once per
session (``book_build`` in conftest.py).
"""

import os
import re
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("PIXELBOOK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# The flags that work on a root CI machine with no network (see the project's machine notes).
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BOOK_PAGES = ["book/intro", "book/how_to_run", "book/notation", "book/datasets", "book/results", "book/errata"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make setup` installs Debian's chromium as root "
                    "(apt-get install chromium chromium-driver), or set PIXELBOOK_CHROMIUM")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """A page opened offline: records console errors, page errors and every request."""

    def __init__(self, browser, folder: Path, viewport=(1280, 900)):
        self.folder_uri = folder.resolve().as_uri() + "/"
        self.page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        # the network is blocked: anything outside the book's folder fails (and is recorded above)
        self.page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(self.folder_uri)
                        else route.abort("blockedbyclient"))

    def open(self, path: Path):
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")
        # MathJax typesets after load; wait for it when the page has it
        self.page.evaluate("""async () => {
            if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
        }""")
        return self

    @property
    def outside(self):
        return sorted({u for u in self.requests if not u.startswith(self.folder_uri) and not u.startswith("data:")})

    def close(self):
        self.page.close()


# Text the reader sees in the article, without code blocks, scripts and typeset math.
READER_TEXT = """() => {
    const article = document.querySelector("article") || document.body;
    const copy = article.cloneNode(true);
    copy.querySelectorAll("pre, code, script, style, mjx-container, .pb-explorer script").forEach(e => e.remove());
    return copy.innerText;
}"""

IMAGES = """async () => {
    const imgs = Array.from(document.querySelectorAll("article img"));
    await Promise.all(imgs.map(img => img.complete ? null : new Promise(r => {
        img.addEventListener("load", r); img.addEventListener("error", r); img.loading = "eager"; })));
    return imgs.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src.slice(0, 80));
}"""

# For each explorer: for each control that is enabled at the initial setting, does some other value
# change the displayed frame? Returns [{id, controls: {name: changed?}}]; restores each control.
EXPLORERS = """() => {
    const out = [];
    document.querySelectorAll(".pb-explorer").forEach(root => {
        const img = root.querySelector("img.pb-x-frame");
        const result = {id: root.id, ready: root.getAttribute("data-ready") === "1", controls: {}};
        root.querySelectorAll(".pb-x-control").forEach(ctrl => {
            const name = ctrl.querySelector(".pb-x-name").textContent;
            if (ctrl.getAttribute("aria-disabled") === "true") { return; }
            const before = img.src;
            let changed = false;
            const range = ctrl.querySelector("input[type=range]");
            if (range) {
                const start = range.value;
                for (let v = Number(range.min); v <= Number(range.max) && !changed; v++) {
                    if (String(v) === start) { continue; }
                    range.value = v; range.dispatchEvent(new Event("input"));
                    changed = img.src !== before;
                }
                range.value = start; range.dispatchEvent(new Event("input"));
            } else {
                const buttons = Array.from(ctrl.querySelectorAll("button"));
                const pressed = buttons.find(b => b.getAttribute("aria-pressed") === "true");
                for (const b of buttons) {
                    if (b === pressed || changed) { continue; }
                    b.click();
                    changed = img.src !== before;
                }
                if (pressed) { pressed.click(); }
            }
            result.controls[name] = changed;
        });
        result.restored = true;
        out.push(result);
    });
    return out;
}"""


def _check_page(page: Page) -> dict:
    text = page.page.evaluate(READER_TEXT)
    raw_math = re.findall(r"\\\(|\\\[|\\begin\{|\$\$", text)
    pipe_rows = [line for line in text.splitlines() if re.match(r"^\s*\|.*\|.*\|\s*$", line) or "|---" in line]
    return {
        "raw math": raw_math[:5],
        "tables as text": pipe_rows[:3],
        "broken images": page.page.evaluate(IMAGES),
        "errors": page.errors,
        "requests outside the book": page.outside,
    }


def _problems(found: dict) -> dict:
    return {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("name", BOOK_PAGES)
def test_book_page_renders_offline(chromium, book_build, name):
    page = Page(chromium, book_build.index.parent).open(book_build.index.parent / f"{name}.html")
    try:
        found = _check_page(page)
        if name == "book/notation":
            assert page.page.locator("mjx-container").count() > 20  # the symbol column is typeset
        assert _problems(found) == {}
    finally:
        page.close()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_renders_offline_with_working_explorers(chromium, book_build, nb):
    start = time.perf_counter()
    html = book_build.index.parent
    page = Page(chromium, html).open(html / "notebooks" / f"{nb.stem}.html")
    try:
        found = _check_page(page)
        tables = page.page.locator("article table").count()
        explorers = page.page.evaluate(EXPLORERS)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(SCREENSHOTS / f"{nb.stem}.png"))
        for i, box in enumerate(page.page.locator(".pb-explorer").all()):
            box.scroll_into_view_if_needed()
            box.screenshot(path=str(SCREENSHOTS / f"{nb.stem}-explorer{i + 1}.png"))
        for i, table in enumerate(page.page.locator("article .cell_output table").all()):
            table.scroll_into_view_if_needed()
            table.screenshot(path=str(SCREENSHOTS / f"{nb.stem}-table{i + 1}.png"))
        found["errors"] = page.errors  # anything the explorers' scripts raised while being moved
        print(f"{nb.stem}: {tables} table(s), {len(explorers)} explorer(s), "
              f"{time.perf_counter() - start:.1f} s")
        assert _problems(found) == {}
        assert explorers, f"{nb.name}: no explorer (pb.widgets.explorer) on the page"
        for box in explorers:
            assert box["ready"], f"{box['id']}: its script did not run"
            assert box["controls"], f"{box['id']}: no active control"
            dead = [name for name, changed in box["controls"].items() if not changed]
            assert dead == [], f"{box['id']}: moving {dead} does not change the figure"
    finally:
        page.close()


def test_explorer_html_switches_frames_and_disables_inactive_controls(chromium, tmp_path):
    """The explorer's own HTML/JS, without a book build: frames switch, inactive controls are
    disabled with the reason, and nothing is requested."""
    import numpy as np

    from pixelbook.widgets import explorer

    def fn(loss="CE", p=0.0, level=0.2):
        img = np.full((8, 8, 3), level)
        img[:4, :4, 0] = p if loss == "CE" else 1.0
        return img

    x = explorer(fn, {"loss": ["CE", "CAS"], "p": [0.0, 0.5], "level": [0.2, 0.4, 0.6, 0.8]}, mode="book",
                 display=False, active={"p": (lambda s: s["loss"] == "CE", "CE only")})
    (tmp_path / "x.html").write_text(f"<!doctype html><html><body>{x.html}</body></html>", encoding="utf-8")
    page = Page(chromium, tmp_path).open(tmp_path / "x.html")
    try:
        first = page.page.locator("img.pb-x-frame").get_attribute("src")
        page.page.locator("input[type=range]").fill("3")  # level: a slider (numbers, > 3 values)
        after_level = page.page.locator("img.pb-x-frame").get_attribute("src")
        page.page.get_by_role("button", name="CAS").click()
        p_control = page.page.locator(".pb-x-control", has_text="p").first
        assert first != after_level
        assert p_control.get_attribute("aria-disabled") == "true"
        assert page.page.get_by_role("button", name="0.5").is_disabled()
        assert "p: CE only" in page.page.locator(".pb-x-note").inner_text()
        assert page.errors == [] and page.outside == []
    finally:
        page.close()
