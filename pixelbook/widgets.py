"""Explorers: one helper that is a live ipywidgets control in Jupyter and Colab and a self-contained,
no-kernel HTML/JS explorer in the built book.

A chapter's interactive section calls

    pb.widgets.explorer(fn, {"epoch": [1, 5, 10], "task": ["seg", "depth"]}, glue="ch1_epochs")

where ``fn(**settings)`` returns a matplotlib Figure (or an image). What happens depends on where the
notebook runs (``output_mode()``, set by the environment variable ``PIXELBOOK_OUTPUT``):

* ``"live"`` (the default: Jupyter, Colab, any kernel a reader runs): one ipywidgets control per
  parameter over the same values (or a finer range given by ``live=``) above an image of ``fn`` at
  the current values, redrawn on every change. The image is shown at the figure's own pixel size,
  not stretched to the output width. Controls that do nothing for the current setting
  (``active=``) or that have a single value are disabled, and a note under the image says why.
* ``"book"`` (set by ``tools/nbtools.py render``, which makes the committed outputs): ``fn`` is
  drawn at every combination of the grid once, the PNGs are embedded in one HTML block with a few
  lines of plain JavaScript that build the controls and switch frames (no server, no CDN, no
  widget state saved in the notebook), and the block is glued (``myst_nb.glue``) under ``glue`` so
  that a ``{glue:figure}`` directive shows it with a numbered caption. Without JavaScript (an
  untrusted notebook) it is the image of the initial setting and a line naming that setting.

``panels(fn, settings)`` draws a few settings side by side as one static Figure (for prose that
compares them). ``time_slider(frames)`` is ``explorer`` over a list of precomputed images.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import html
import inspect
import io
import itertools
import json
import math
import os
import sys
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._checks import check_choice
from .viz import DPI, show_grid, tensor_to_image

__all__ = ["OUTPUT_ENV", "output_mode", "show", "Words", "Explorer", "explorer", "panels", "time_slider", "figure_to_array"]

OUTPUT_ENV = "PIXELBOOK_OUTPUT"  # "live" (default) or "book" (tools/nbtools.py render sets it)
_MIN_PANEL = 2.0  # ours: inches; a 64-pixel image would otherwise be under an inch wide
_MAX_BUTTONS = 6  # ours: more options than this become a slider (numbers) or a dropdown (live)
_LIVE_CACHE = 128  # ours: PNGs kept in a live session (tens of KB each)


def output_mode() -> str:
    """``"book"`` when rendering the book's committed outputs, else ``"live"`` (see module doc).

    Example:
        >>> output_mode() in ("live", "book")
        True
    """
    mode = os.environ.get(OUTPUT_ENV, "live") or "live"
    check_choice(mode, OUTPUT_ENV, ("live", "book"))
    return mode


class Words:
    """Text for the book's ``{glue:text}`` role without the quotes a ``str``'s repr adds.

    ``glue("key", Words("holds"), display=False)`` puts ``holds`` in the prose; a plain ``"holds"``
    would appear as ``'holds'``.

    The book reads a glued ``text/plain`` with ``ast.literal_eval`` first (myst-nb), so text that is
    a Python literal would change (``0.940, +0.017`` would show as ``(0.94, 0.017)``): that is an
    error here; glue such text as a plain ``str``, whose quotes the book removes.

    Example:
        >>> Words("does not hold")
        does not hold
    """

    def __init__(self, text: str):
        self.text = str(text)
        try:
            shown = str(ast.literal_eval(self.text))
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            shown = self.text
        if shown != self.text:
            raise ValueError(f"`text`: the book would show {self.text!r} as {shown!r}; glue it as a plain str")

    def __repr__(self) -> str:
        return self.text


def show(obj, glue: str | None = None, mode: str | None = None) -> None:
    """Show a figure (or any displayable object) where the reader is.

    In the book (``output_mode() == "book"``) it is glued under ``glue`` and not displayed, so a
    ``{glue:figure}`` directive shows it once, with a numbered caption and a name that prose can
    reference; live (Jupyter, Colab) it is displayed in place. Without ``glue`` it is displayed.

    A pyplot figure is closed once shown, so Jupyter's inline backend does not show it a second
    time at the end of the cell.

    Args:
        obj: a matplotlib Figure, an ``Explorer``, anything IPython can display.
        glue: the key of the ``{glue:figure}`` directive, e.g. ``"ch4_fig_wires"``.
        mode: ``"live"`` or ``"book"``; default ``output_mode()``.
    """
    from IPython.display import display

    mode = output_mode() if mode is None else mode
    check_choice(mode, "mode", ("live", "book"))
    if glue is not None and mode == "book":
        try:
            from myst_nb import glue as myst_glue
        except ImportError:  # pragma: no cover - the book's environment has myst-nb
            raise ImportError("show(glue=...) needs myst-nb (pip install 'pixelbook[colab]')") from None
        myst_glue(glue, obj, display=False)
    else:
        display(obj)
    if _is_figure(obj):  # a pyplot figure left open would be shown again at the end of the cell
        _close_new_figures(_pyplot_fignums(), obj)


# ----------------------------------------------------------------------------------------------
# rasterising what fn returns
# ----------------------------------------------------------------------------------------------


def _pyplot_fignums() -> set:
    """Open pyplot figure numbers; empty when pyplot was never imported (then nothing can leak)."""
    plt = sys.modules.get("matplotlib.pyplot")
    return set(plt.get_fignums()) if plt is not None else set()


def _close_new_figures(before: set, result=None) -> None:
    """Close every pyplot figure opened since ``before`` was taken, and ``result`` if a figure."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in _pyplot_fignums() - before:
        plt.close(num)
    if _is_figure(result):
        plt.close(result)  # a no-op for figures pyplot does not manage


def _is_figure(obj) -> bool:
    from matplotlib.figure import Figure

    return isinstance(obj, Figure)


def figure_to_array(fig, tight: bool = True) -> np.ndarray:
    """Rasterise a matplotlib Figure to a ``uint8`` RGB array ``(H, W, 3)`` at the figure's dpi.

    Args:
        fig: the Figure (pyplot-managed or not; it is not closed here).
        tight: crop the figure's empty margins (``bbox_inches="tight"``), so a panel built from
            it shows the content, not the whitespace around it.

    Example:
        >>> from matplotlib.figure import Figure
        >>> figure_to_array(Figure(figsize=(2, 1), dpi=50), tight=False).shape
        (50, 100, 3)
    """
    if not _is_figure(fig):
        raise TypeError(f"`fig`: expected a matplotlib Figure, got {type(fig).__name__}")
    if not tight:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
    from matplotlib.image import imread

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight", pad_inches=0.02)
    buf.seek(0)
    rgb = imread(buf, format="png")[..., :3]  # float in [0, 1]
    return np.rint(rgb * 255).astype(np.uint8)


def _result_to_array(result, what: str) -> np.ndarray:
    if _is_figure(result):
        return figure_to_array(result)
    try:
        img = tensor_to_image(result)
    except TypeError:
        raise TypeError(f"{what}: expected a matplotlib Figure or an image (array or tensor), "
                        f"got {type(result).__name__}") from None
    return np.clip(img, 0.0, 1.0) if img.ndim == 3 else img


def _small_png(png: bytes) -> bytes:
    """The PNG with an adaptive 256-colour palette when that is smaller (plots rarely need more)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgb = im.convert("RGB")
    buf = io.BytesIO()
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, format="png", optimize=True)
    return buf.getvalue() if buf.tell() < len(png) else png


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png(result) -> bytes:
    """PNG bytes of a Figure or an image (single-channel images in grey, by their min and max);
    PNG bytes pass through."""
    if isinstance(result, (bytes, bytearray)) and bytes(result[:8]) == _PNG_SIGNATURE:
        return bytes(result)
    if not _is_figure(result):  # an image: shown like a static panel, at least _MIN_PANEL wide
        img = _result_to_array(result, "`fn`")
        result = show_grid([img], size=max(img.shape[1] / DPI, _MIN_PANEL), dpi=DPI)
    buf = io.BytesIO()
    result.savefig(buf, format="png", dpi=result.dpi, bbox_inches="tight", pad_inches=0.03)
    return _small_png(buf.getvalue())


def _png_size(png: bytes) -> tuple[int, int]:
    """``(width, height)`` in pixels, from the PNG header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _call(fn: Callable, kwargs: Mapping[str, Any], convert: Callable):
    """``convert(fn(**kwargs))``, closing every pyplot figure the call opened, even on error."""
    before = _pyplot_fignums()
    result = None
    try:
        result = fn(**kwargs)
        return convert(result)
    finally:
        _close_new_figures(before, result)


def _fn_name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _setting_title(setting: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in setting.items())


def _parameters(fn) -> tuple[list[str], bool]:
    """Names ``fn`` accepts as keywords, and whether it takes ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: accept anything
        return [], True
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def _defaults(fn) -> dict:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _check_names(fn, names, what: str) -> None:
    accepted, var_kw = _parameters(fn)
    if var_kw:
        return
    for name in names:
        check_choice(name, f"{what} (parameters of {_fn_name(fn)})", accepted)


# ----------------------------------------------------------------------------------------------
# panels: a few settings side by side, as one static Figure
# ----------------------------------------------------------------------------------------------


def panels(fn: Callable, settings: Sequence[Mapping[str, Any]], titles: Sequence[str] | None = None,
           ncols: int | None = None, size: float | None = None):
    """Draw ``fn`` at a few settings into one static Figure, one panel per setting.

    Args:
        fn: as for ``explorer``: returns a Figure (rasterised, then closed) or an image.
        settings: keyword arguments of each panel, e.g. ``[{"alpha": 0.1}, {"alpha": 0.9}]``.
        titles: panel titles; default ``"name=value, ..."``; ``""`` for none (a Figure from ``fn``
            usually carries its own titles).
        ncols: panels per row; default all in one row (a column when each panel is wide).
        size: width of a panel in inches; default the width ``fn``'s first result has.

    Returns:
        ``matplotlib.figure.Figure`` with one axes per setting.

    Example:
        >>> fig = panels(lambda k=1: np.full((4, 4), k / 4), [{"k": 1}, {"k": 3}])
        >>> [ax.get_title() for ax in fig.axes]
        ['k=1', 'k=3']
    """
    if callable(fn) is False:
        raise TypeError(f"`fn`: expected a callable, got {type(fn).__name__}")
    if not isinstance(settings, (list, tuple)) or not settings or not all(isinstance(s, Mapping) for s in settings):
        raise ValueError(f"`settings`: expected a non-empty list of dicts of keyword arguments, got {settings!r}")
    for s in settings:
        _check_names(fn, s, "settings")
    if titles is not None and len(titles) != len(settings):
        raise ValueError(f"`titles`: expected {len(settings)} titles (one per setting), got {len(titles)}")
    images = [_call(fn, dict(s), lambda r: _result_to_array(r, "`fn`")) for s in settings]
    h, w = images[0].shape[:2]
    width = size or max(w / DPI, _MIN_PANEL)
    if ncols is None:
        ncols = len(images) if width * len(images) <= 6.4 else max(1, int(6.4 // width))
    titles = [_setting_title(s) for s in settings] if titles is None else list(titles)
    return show_grid(images, titles=titles if any(titles) else None, ncols=ncols, size=width, dpi=DPI)


# ----------------------------------------------------------------------------------------------
# the explorer
# ----------------------------------------------------------------------------------------------


class _Control:
    """One parameter of ``fn``: its grid values, their labels, the initial index, when it acts."""

    def __init__(self, name, values, labels, initial, description, active, live):
        self.name, self.values, self.labels = name, values, labels
        self.initial, self.description, self.active, self.live = initial, description, active, live

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                   for v in self.values)

    def reason(self, values: Mapping[str, Any], book: bool = False) -> str | None:
        """Why this control does nothing at ``values`` (None when it acts). In the book a control
        with one value does nothing even when it has a finer ``live`` range for Jupyter."""
        if len(self.values) < 2 and (self.live is None or book):
            return f"{self.description}: one value at this scale"
        if self.active is None:
            return None
        predicate, why = self.active
        return None if predicate(values) else f"{self.description}: {why}"


_CSS = """
.pb-explorer{margin:.5em 0;font-size:.9rem}
.pb-explorer .pb-x-controls{display:flex;flex-wrap:wrap;gap:.3em 1.4em;margin-bottom:.4em;align-items:center}
.pb-explorer .pb-x-control{display:flex;align-items:center;gap:.4em}
.pb-explorer .pb-x-control[aria-disabled=true]{opacity:.45}
.pb-explorer .pb-x-name{font-weight:600}
.pb-explorer .pb-x-value{min-width:3.5em;font-variant-numeric:tabular-nums}
.pb-explorer button{border:1px solid #999;background:#f4f4f4;color:#222;border-radius:3px;padding:.05em .5em;
  cursor:pointer;font:inherit}
.pb-explorer button[aria-pressed=true]{background:#2a6db5;color:#fff;border-color:#2a6db5}
.pb-explorer button:disabled,.pb-explorer input:disabled{cursor:not-allowed}
.pb-explorer img.pb-x-frame{display:block;max-width:100%;height:auto}
.pb-explorer .pb-x-note{color:#666;font-size:.85em;min-height:1.2em}
"""

# Builds the controls (so nothing dead shows where scripts do not run) and switches frames.
_JS = """
(function () {
  var root = document.getElementById("%(id)s");
  if (!root || root.getAttribute("data-ready")) { return; }
  root.setAttribute("data-ready", "1");
  var data = JSON.parse(root.querySelector("script.pb-x-data").textContent);
  var img = root.querySelector("img.pb-x-frame");
  var note = root.querySelector(".pb-x-note");
  var box = root.querySelector(".pb-x-controls");
  var state = data.controls.map(function (c) { return c.initial; });
  var first = data.table[state.join(",")][0];
  data.frames[first] = img.getAttribute("src");
  var parts = data.controls.map(function (c, i) {
    var wrap = document.createElement("div");
    wrap.className = "pb-x-control";
    var name = document.createElement("span");
    name.className = "pb-x-name";
    name.textContent = c.description;
    wrap.appendChild(name);
    var part = {wrap: wrap, inputs: []};
    if (c.kind === "range") {
      var input = document.createElement("input");
      input.type = "range"; input.min = 0; input.max = c.labels.length - 1; input.step = 1;
      input.value = c.initial;
      input.setAttribute("aria-label", c.description);
      var out = document.createElement("span");
      out.className = "pb-x-value";
      input.addEventListener("input", function () { state[i] = Number(input.value); show(); });
      wrap.appendChild(input); wrap.appendChild(out);
      part.inputs.push(input); part.out = out;
    } else {
      c.labels.forEach(function (label, j) {
        var b = document.createElement("button");
        b.type = "button"; b.textContent = label;
        b.addEventListener("click", function () { state[i] = j; show(); });
        wrap.appendChild(b); part.inputs.push(b);
      });
    }
    box.appendChild(wrap);
    return part;
  });
  function show() {
    var entry = data.table[state.join(",")];
    img.src = data.frames[entry[0]];
    img.alt = data.alt + ": " + data.controls.map(function (c, i) {
      return c.description + " = " + c.labels[state[i]]; }).join(", ");
    var reasons = [];
    data.controls.forEach(function (c, i) {
      var part = parts[i], off = entry[1].hasOwnProperty(i);
      if (off) { reasons.push(entry[1][i]); }
      part.wrap.setAttribute("aria-disabled", off ? "true" : "false");
      part.wrap.title = off ? entry[1][i] : "";
      part.inputs.forEach(function (el, j) {
        el.disabled = off;
        if (el.tagName === "BUTTON") { el.setAttribute("aria-pressed", j === state[i] ? "true" : "false"); }
      });
      if (part.out) { part.out.textContent = c.labels[state[i]]; }
    });
    note.textContent = reasons.length ? "Inactive now: " + reasons.join("; ") + "." : "";
  }
  show();
})();
"""


class _HTMLBlock:
    """An HTML output (what the book shows, and what ``glue`` stores) with a short text repr."""

    def __init__(self, html_text: str, text: str):
        self._html, self._text = html_text, text

    def _repr_html_(self):
        return self._html

    def __repr__(self):
        return self._text


class Explorer:
    """What ``explorer`` returns. In ``"book"`` mode it holds the pre-rendered frames and the HTML
    (``html``); in ``"live"`` mode the ipywidgets. Displaying it (e.g. as the last expression of a
    cell) shows it unless ``explorer`` already has.

    Attributes:
        fn: the drawing function.
        mode: ``"book"`` or ``"live"``.
        frames: book mode: the distinct PNGs (bytes), first the initial setting's.
        table: book mode: ``{(i0, i1, ...): (frame index, {control index: why it is inactive})}``
            for every combination of grid indices.
        controls: live mode: ``{parameter name: widget}``; set ``controls[name].value`` to redraw.
        image: live mode: the ``ipywidgets.Image`` showing ``fn`` at the current values.
        note: live mode: an ``ipywidgets.HTML`` line naming inactive controls and why.
        status: live mode: an ``ipywidgets.HTML`` line showing the error if a redraw fails.
        box: live mode: the ``ipywidgets.VBox`` of controls, image, note and status.
        calls: the keyword arguments of each call of ``fn``, oldest first.
    """

    def __init__(self, fn, controls: list[_Control], fixed: Mapping[str, Any], alt: str, uid: str):
        self.fn, self._controls, self._fixed, self.alt, self.uid = fn, controls, dict(fixed), alt, uid
        self.mode = "live"
        self.calls: list[dict] = []
        self.frames: list[bytes] = []
        self.table: dict[tuple, tuple] = {}
        self.controls: dict = {}
        self.image = self.note = self.status = self.box = None
        self._cache: OrderedDict = OrderedDict()  # live: the most recent PNGs, for instant returns
        self._shown = False

    # -- shared ------------------------------------------------------------------------------
    def _kwargs(self, values: Mapping[str, Any]) -> dict:
        return {**self._fixed, **values}

    def _draw(self, values: Mapping[str, Any]) -> bytes:
        kwargs = self._kwargs(values)
        key = repr(sorted(kwargs.items(), key=lambda kv: kv[0]))
        if key not in self._cache:
            self.calls.append(kwargs)
            self._cache[key] = _call(self.fn, kwargs, _png)
            if self.mode == "live" and len(self._cache) > _LIVE_CACHE:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def _reasons(self, values: Mapping[str, Any]) -> dict[int, str]:
        out = {}
        for i, c in enumerate(self._controls):
            why = c.reason(values, book=self.mode == "book")
            if why is not None:
                out[i] = why
        return out

    # -- book mode -----------------------------------------------------------------------------
    def _prerender(self, max_frames: int, max_bytes: int) -> None:
        self.mode = "book"
        sizes = [len(c.values) for c in self._controls]
        combos = list(itertools.product(*[range(n) for n in sizes]))
        initial = tuple(c.initial for c in self._controls)
        combos.remove(initial)
        combos.insert(0, initial)  # the first frame is the initial setting's
        by_hash: dict[str, int] = {}
        canonical: dict[tuple, int] = {}
        for combo in combos:
            values = {c.name: c.values[j] for c, j in zip(self._controls, combo)}
            reasons = self._reasons(values)
            # an inactive control does not change the picture: draw it at its initial value
            canon = tuple(c.initial if i in reasons else j for i, (c, j) in enumerate(zip(self._controls, combo)))
            if canon not in canonical:
                if len(canonical) >= max_frames:
                    raise ValueError(f"`grid`: more than max_frames={max_frames} distinct settings to pre-render "
                                     f"({math.prod(sizes)} combinations of {dict(zip([c.name for c in self._controls], sizes))}); "
                                     f"use fewer values per control or raise max_frames")
                png = self._draw({c.name: c.values[j] for c, j in zip(self._controls, canon)})
                digest = hashlib.sha1(png).hexdigest()
                if digest not in by_hash:
                    by_hash[digest] = len(self.frames)
                    self.frames.append(png)
                canonical[canon] = by_hash[digest]
            self.table[combo] = (canonical[canon], reasons)
        total = sum(len(f) for f in self.frames)
        if total > max_bytes:
            raise ValueError(f"`grid`: {len(self.frames)} frames take {total / 1e6:.2f} MB > max_bytes="
                             f"{max_bytes / 1e6:.2f} MB; use fewer values, smaller figures, or raise max_bytes")

    @property
    def html(self) -> str:
        """The self-contained explorer (book mode): HTML, CSS and JavaScript, frames embedded."""
        if self.mode != "book":
            raise RuntimeError("Explorer.html: only a book-mode explorer has pre-rendered frames "
                               f"(set {OUTPUT_ENV}=book, as tools/nbtools.py render does)")
        uri = [f"data:image/png;base64,{base64.b64encode(f).decode('ascii')}" for f in self.frames]
        first = self.table[tuple(c.initial for c in self._controls)][0]
        data = {
            "alt": self.alt,
            "controls": [{"name": c.name, "description": c.description, "labels": c.labels, "initial": c.initial,
                          "kind": "range" if c.numeric and len(c.values) > 3 else "buttons"}
                         for c in self._controls],
            "frames": ["" if i == first else u for i, u in enumerate(uri)],
            "table": {",".join(map(str, k)): [f, {str(i): why for i, why in r.items()}]
                      for k, (f, r) in self.table.items()},
        }
        blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        setting = ", ".join(f"{c.description} = {c.labels[c.initial]}" for c in self._controls)
        w, h = _png_size(self.frames[first])
        return (f'<div class="pb-explorer" id="{self.uid}">'
                f"<style>{_CSS}</style>"
                f'<div class="pb-x-controls"></div>'
                f'<img class="pb-x-frame" src="{uri[first]}" width="{w}" height="{h}" '
                f'alt="{html.escape(self.alt + ": " + setting, quote=True)}">'
                f'<div class="pb-x-note">Shown: {html.escape(setting)}.</div>'
                f'<script type="application/json" class="pb-x-data">{blob}</script>'
                f"<script>{_JS % {'id': self.uid}}</script></div>")

    def _book_block(self) -> "_HTMLBlock":
        return _HTMLBlock(self.html, repr(self))

    # -- live mode -----------------------------------------------------------------------------
    def _build_live(self) -> None:
        import ipywidgets as widgets
        from ipywidgets.widgets.interaction import interactive

        for c in self._controls:
            start = c.values[c.initial]
            if c.live is not None:
                w = interactive.widget_from_abbrev(c.live, start)
                if w is None or not isinstance(w, widgets.ValueWidget):
                    raise ValueError(f"`live`: `{c.name}`: expected an abbreviation such as (0.0, 1.0, 0.05) "
                                     f"or a list of options, got {c.live!r}")
                try:
                    w.value = start
                except Exception:  # noqa: BLE001 - a start value outside the live range keeps the widget's own
                    pass
            else:
                options = list(zip(c.labels, c.values))
                if c.numeric and len(c.values) > 3:
                    w = widgets.SelectionSlider(options=options, value=start)
                elif len(c.values) <= _MAX_BUTTONS:
                    w = widgets.ToggleButtons(options=options, value=start,
                                              style={"button_width": "auto"})
                else:
                    w = widgets.Dropdown(options=options, value=start)
            if w.has_trait("continuous_update"):
                w.continuous_update = False
            w.description = c.description
            w.style.description_width = "initial"
            self.controls[c.name] = w
        self.image = widgets.Image(format="png")
        self.note = widgets.HTML("")
        self.status = widgets.HTML("")
        self.box = widgets.VBox([*self.controls.values(), self.image, self.note, self.status])
        for w in self.controls.values():
            w.observe(self.redraw, names="value")
        self.redraw()

    @property
    def values(self) -> dict:
        """The keyword arguments ``fn`` gets now (live mode): the controls' values."""
        return {k: w.value for k, w in self.controls.items()}

    def redraw(self, change=None) -> None:
        """Live mode: call ``fn`` at the current values, show it, disable inactive controls."""
        values = self.values
        reasons = self._reasons(values)
        for i, c in enumerate(self._controls):
            self.controls[c.name].disabled = i in reasons
        self.note.value = ("<span style='color:#666'>Inactive now: " + html.escape("; ".join(reasons.values())) + ".</span>"
                           if reasons else "")
        try:
            png = self._draw(values)
        except Exception as exc:  # a callback's traceback would be invisible in a notebook
            self.status.value = f"<pre style='color:#b00'>{html.escape(f'{type(exc).__name__}: {exc}')}</pre>"
            return
        self.status.value = ""
        w, h = _png_size(png)
        # the figure's own size: the output area would otherwise stretch it to its full width
        self.image.layout.width, self.image.layout.max_width = f"{w}px", "100%"
        self.image.layout.height = "auto"
        self.image.value = png

    def _ipython_display_(self):
        """Show it, unless ``explorer`` already did (or glued it): a cell ending with the call
        must not show it twice."""
        if self._shown:
            return
        from IPython.display import display

        display(self._book_block() if self.mode == "book" else self.box)
        self._shown = True

    def __repr__(self):
        grid = {c.name: len(c.values) for c in self._controls}
        extra = f", frames={len(self.frames)}" if self.mode == "book" else ""
        return f"Explorer(fn={_fn_name(self.fn)}, mode={self.mode!r}, grid={grid}{extra})"


def _as_values(name: str, values) -> list:
    if isinstance(values, range):
        values = list(values)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"`grid`: `{name}`: expected a non-empty list of values, got {values!r}")
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def explorer(fn: Callable, grid: Mapping[str, Sequence], *, live: Mapping[str, Any] | None = None,
             active: Mapping[str, tuple[Callable[[dict], bool], str]] | None = None,
             fixed: Mapping[str, Any] | None = None, labels: Mapping[str, Sequence[str]] | None = None,
             descriptions: Mapping[str, str] | None = None, glue: str | None = None, alt: str | None = None,
             display: bool = True, mode: str | None = None, max_frames: int = 96,
             max_bytes: int = 900_000) -> Explorer:
    """Explore ``fn`` over a grid of settings: a live control in Jupyter, pre-rendered in the book.

    Args:
        fn: ``fn(**settings)`` returns a matplotlib Figure (it may use ``plt.subplots``; every
            figure it opens is closed after rasterising) or an image (array ``(H, W[, 3])`` or
            tensor ``(C, H, W)``). Draw it at most ``pb.viz.PAGE_WIDTH`` wide; a live call should
            answer in well under a second.
        grid: parameter name -> the values a reader can choose, e.g. ``{"epoch": [1, 5, 10],
            "task": ["seg", "depth"]}``. The book pre-renders every combination (identical
            frames are stored once), so keep the product small (``max_frames``). The initial
            value is ``fn``'s default when it is in the list, else the first value.
        live: parameter name -> a finer control for live use only, as ``interact`` takes it:
            ``(0.0, 2.0, 0.05)`` a float slider, ``(1, 9)`` an int slider, a list a dropdown.
        active: parameter name -> ``(predicate, why)``: the control acts only when
            ``predicate(settings)`` is true; otherwise it is disabled and the note says
            ``why`` (e.g. ``{"alpha": (lambda s: s["loss"] == "CAS", "α weights the CAS loss
            only")}``). A control with one value is always shown disabled.
        fixed: keyword arguments passed to every call, not shown as controls.
        labels: parameter name -> display labels of its values (default: the values).
        descriptions: parameter name -> its label (default: the name).
        glue: book mode: glue the explorer under this key (``myst_nb.glue``, not displayed) for
            a ``{glue:figure}`` directive with a caption; ``None`` displays it in place.
        alt: the image's alternative text (default: ``fn``'s name); the setting is appended.
        display: show it now (live: the widgets; book: the HTML, unless glued).
        mode: ``"live"`` or ``"book"``; default ``output_mode()``.
        max_frames: book mode: most distinct settings to draw.
        max_bytes: book mode: most bytes of PNG to embed (a notebook must stay under 2 MB).

    Returns:
        ``Explorer``.

    Raises:
        ValueError: a name that is not a parameter of ``fn``, an empty value list, a label list of
            the wrong length, too many frames or bytes.

    Example:
        >>> def fn(k=2):
        ...     return np.full((4, 4, 3), k / 10.0)  # an RGB image
        >>> x = explorer(fn, {"k": [1, 2, 5]}, mode="book", display=False)
        >>> len(x.frames), x.table[(1,)][0]  # k=2 (fn's default) is the first frame
        (3, 0)
        >>> live = explorer(fn, {"k": [1, 2, 5]}, mode="live", display=False)
        >>> live.controls["k"].value = 5
        >>> live.calls[-1]
        {'k': 5}
    """
    if not callable(fn):
        raise TypeError(f"`fn`: expected a callable, got {type(fn).__name__}")
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"`grid`: expected a non-empty dict of parameter name -> list of values, got {grid!r}")
    live, active, fixed = dict(live or {}), dict(active or {}), dict(fixed or {})
    labels, descriptions = dict(labels or {}), dict(descriptions or {})
    _check_names(fn, list(grid) + list(fixed), "grid")
    for what, spec in (("live", live), ("active", active), ("labels", labels), ("descriptions", descriptions)):
        for name in spec:
            check_choice(name, f"`{what}` keys (names in `grid`)", list(grid))
    mode = output_mode() if mode is None else mode
    check_choice(mode, "mode", ("live", "book"))
    defaults = _defaults(fn)
    controls = []
    for name, values in grid.items():
        values = _as_values(name, values)
        shown = [str(x) for x in labels.get(name, [_fmt(v) for v in values])]
        if len(shown) != len(values):
            raise ValueError(f"`labels`: `{name}`: expected {len(values)} labels (one per value), got {len(shown)}")
        initial = values.index(defaults[name]) if name in defaults and defaults[name] in values else 0
        spec = active.get(name)
        if spec is not None and (not isinstance(spec, tuple) or len(spec) != 2 or not callable(spec[0])):
            raise ValueError(f"`active`: `{name}`: expected (predicate, why), got {spec!r}")
        controls.append(_Control(name, values, shown, initial, descriptions.get(name, name), spec, live.get(name)))
    uid = "pbx-" + hashlib.sha1(repr((_fn_name(fn), list(grid), glue, id(fn))).encode()).hexdigest()[:10]
    out = Explorer(fn, controls, fixed, alt or _fn_name(fn), uid)
    if mode == "book":
        out._prerender(max_frames, max_bytes)
        if glue is not None or display:
            show(out._book_block(), glue=glue, mode="book")
            out._shown = True
    else:
        out._build_live()
        if display:
            from IPython.display import display as ipy_display

            ipy_display(out.box)
            out._shown = True
    return out


def time_slider(frames: Sequence, titles: Sequence[str] | None = None, description: str = "frame",
                **kwargs) -> Explorer:
    """An explorer over precomputed frames (training epochs, an evolving contour, ...).

    Every frame is rasterised once; scrubbing only swaps PNGs, live and in the book.

    Args:
        frames: images (arrays ``(H, W[, 3])``, tensors ``(C, H, W)``) or matplotlib Figures.
        titles: one label per frame (e.g. ``"t = 0.5"``), shown beside the slider; default ``0, 1, ...``.
        description: the slider's label.
        **kwargs: passed to ``explorer`` (``glue``, ``alt``, ``display``, ``mode``, ...).

    Returns:
        ``Explorer`` with one control, ``"index"``.

    Example:
        >>> frames = [np.full((4, 4, 3), v) for v in (0.0, 0.5, 1.0)]
        >>> x = time_slider(frames, mode="book", display=False)
        >>> len(x.frames), sorted(x.table)
        (3, [(0,), (1,), (2,)])
    """
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ValueError(f"`frames`: expected a non-empty list of images or Figures, got {type(frames).__name__}")
    n = len(frames)
    titles = [str(i) for i in range(n)] if titles is None else [str(t) for t in titles]
    if len(titles) != n:
        raise ValueError(f"`titles`: expected {n} titles (one per frame), got {len(titles)}")
    pngs = [_call(lambda f=f: f, {}, _png) for f in frames]  # Figures are closed here, once

    def frame(index: int = 0):
        return pngs[index]

    return explorer(frame, {"index": list(range(n))}, labels={"index": titles},
                    descriptions={"index": description}, **kwargs)

