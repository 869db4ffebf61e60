"""Widgets: a static figure for the built book, then a live ipywidgets control over the same function.

The rendered book has no kernel, so a widget alone would show nothing there. Each interactive
section therefore calls ``interactive_figure(fn, static=[...], **controls)``, which

1. draws ``fn`` at 3–4 fixed settings into one static Figure and displays it (the built book
   shows this), then
2. builds one widget per control and displays them above an ``ipywidgets.Image`` that shows
   ``fn`` at the current values, redrawn whenever a control changes.

``fn(**kwargs)`` returns a matplotlib Figure (pyplot-managed or not) or an image (an RGB array,
an image tensor). Each result is rasterised to PNG and every figure ``fn`` opened is closed at
once, so redrawing never accumulates pyplot figures. Everything works without a widget
front-end (tests, papermill, ``jupyter nbconvert --execute``): the controls are real widget
objects whose ``.value`` can be set from code, which is how the tests drive them.
"""

from __future__ import annotations

import inspect
import io
import sys
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._checks import check_choice
from .viz import DPI, show_grid, tensor_to_image

__all__ = ["InteractiveFigure", "interactive_figure", "time_slider", "figure_to_array"]

_MIN_PANEL = 2.0  # ours: inches; a 64-pixel image at 80 dpi would otherwise be under an inch wide


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
    from matplotlib.figure import Figure

    if isinstance(result, Figure):
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


def _png(result) -> bytes:
    """PNG bytes of a Figure or an image (single-channel images in grey, by their min and max)."""
    if not _is_figure(result):  # an image: shown like a static panel, at least _MIN_PANEL wide
        img = _result_to_array(result, "`fn`")
        result = show_grid([img], size=max(img.shape[1] / DPI, _MIN_PANEL), dpi=DPI)
    buf = io.BytesIO()
    result.savefig(buf, format="png", dpi=result.dpi, bbox_inches="tight", pad_inches=0.02)
    return buf.getvalue()


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


def _setting_title(setting: Mapping[str, Any]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in setting.items())


class InteractiveFigure:
    """What ``interactive_figure`` returns: the static figure and the live widgets.

    Attributes:
        figure: the static ``matplotlib.figure.Figure`` (one panel per static setting).
        controls: ``{parameter name: widget}``; set ``controls[name].value`` to redraw.
        image: the ``ipywidgets.Image`` holding the PNG of ``fn`` at the current values.
        status: an ``ipywidgets.HTML`` line that shows the error if a redraw fails.
        box: the ``ipywidgets.VBox`` of controls, image and status.
        calls: the keyword arguments of each live call of ``fn``, oldest first.

    Displaying it (e.g. as the last expression of a cell) shows the static figure and the box,
    unless ``interactive_figure`` already displayed them, so nothing is ever shown twice.
    """

    def __init__(self, fn, figure, controls, fixed, image, status, box):
        self.fn, self.figure, self.controls, self.image, self.status, self.box = fn, figure, controls, image, status, box
        self._fixed = dict(fixed)
        self.calls: list[dict] = []
        self._displayed = False

    @property
    def values(self) -> dict:
        """The keyword arguments ``fn`` gets now: the controls' values (and ``fixed`` ones)."""
        return {**self._fixed, **{k: w.value for k, w in self.controls.items()}}

    def redraw(self, change=None) -> None:
        """Call ``fn`` at the current values and show the result; an error goes to ``status``."""
        kwargs = self.values
        self.calls.append(kwargs)
        try:
            png = _call(self.fn, kwargs, _png)
        except Exception as exc:  # a callback's traceback would be invisible in a notebook
            import html

            self.status.value = f"<pre style='color:#b00'>{html.escape(f'{type(exc).__name__}: {exc}')}</pre>"
            return
        self.status.value = ""
        self.image.value = png

    def _ipython_display_(self):
        if not self._displayed:
            self.show()

    def show(self) -> None:
        """Display the static figure, then the controls (the book shows the figure)."""
        from IPython.display import display

        self._displayed = True
        display(self.figure)
        display(self.box)

    def __repr__(self):
        return (f"InteractiveFigure(fn={_fn_name(self.fn)}, "
                f"controls={list(self.controls)}, panels={len(self.figure.axes)})")


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


def _settings(static, static_values) -> list[dict]:
    """Normalise ``static`` (list of dicts) or ``static_values`` ({name: [values]}) to a list."""
    if static is not None and static_values is not None:
        raise ValueError("`static`: give either `static` or `static_values`, not both")
    spec = static if static is not None else static_values
    if spec is None:
        return [{}]
    if isinstance(spec, Mapping):  # {name: [v1, v2, ...]} or a single setting {name: v}
        seqs = {k: v for k, v in spec.items() if isinstance(v, (list, tuple))}
        if not seqs:
            return [dict(spec)]
        lengths = {len(v) for v in seqs.values()}
        if len(lengths) != 1:
            raise ValueError(f"`static_values`: expected lists of equal length, got lengths "
                             f"{ {k: len(v) for k, v in seqs.items()} }")
        n = lengths.pop()
        return [{k: (v[i] if k in seqs else v) for k, v in spec.items()} for i in range(n)]
    if isinstance(spec, (list, tuple)) and all(isinstance(s, Mapping) for s in spec) and spec:
        return [dict(s) for s in spec]
    raise ValueError(f"`static`: expected a non-empty list of dicts of keyword arguments, got {spec!r}")


def interactive_figure(fn: Callable, static: Sequence[Mapping[str, Any]] | None = None, *,
                       static_values: Mapping[str, Any] | None = None, layout: str = "row",
                       titles: Sequence[str] | None = None, display: bool = True,
                       **controls) -> InteractiveFigure:
    """A static figure of a few settings of ``fn``, then live widgets over the same ``fn``.

    Args:
        fn: ``fn(**kwargs)`` returns a matplotlib Figure (it may use ``plt.subplots``; every
            figure it opens is closed after rasterising) or an image (array ``(H, W[, 3])`` or
            tensor ``(C, H, W)``; RGB values are clipped to [0, 1] for display). Live calls
            should answer in well under a second.
        static: the settings of the static figure, e.g. ``[{"alpha": 0.1}, {"alpha": 0.5},
            {"alpha": 0.9}]``; each is merged over the controls' initial values.
        static_values: alternative to ``static``: ``{"alpha": [0.1, 0.5, 0.9]}`` (several keys
            with equal-length lists vary together; scalars are shared by every panel).
        layout: ``"row"`` (panels side by side) or ``"column"`` (stacked).
        titles: panel titles; default ``"name=value, ..."`` of each setting.
        display: display the static figure and the widgets now (in a notebook).
        **controls: parameter name -> an ipywidgets widget, or an abbreviation as ``interact``
            takes it: ``(0.0, 1.0, 0.05)`` a float slider, ``(1, 9)`` an int slider, a list of
            options a dropdown, ``True`` a checkbox, ``ipywidgets.fixed(v)`` a constant. A
            slider built from an abbreviation starts at ``fn``'s default for that parameter (else
            its midpoint) and has ``continuous_update=False`` (redraw on release); widgets you
            pass in are used as they are.

    Returns:
        ``InteractiveFigure``: ``.figure`` (static Figure), ``.controls``, ``.image``, ``.calls``.

    Raises:
        ValueError: a control or static key that is not a parameter of ``fn``, an abbreviation
            ipywidgets cannot turn into a widget, a bad ``static``/``layout``.

    Example:
        >>> def fn(k=2):
        ...     return np.full((4, 4), k / 10.0)
        >>> w = interactive_figure(fn, static=[{"k": 1}, {"k": 5}], k=(0, 10), display=False)
        >>> len(w.figure.axes), w.controls["k"].value
        (2, 2)
        >>> w.controls["k"].value = 7
        >>> w.calls[-1]
        {'k': 7}
    """
    import ipywidgets as widgets
    from ipywidgets.widgets.interaction import fixed, interactive

    check_choice(layout, "layout", ("row", "column"))
    if not callable(fn):
        raise TypeError(f"`fn`: expected a callable, got {type(fn).__name__}")
    names, var_kw = _parameters(fn)
    accepted = names if not var_kw else None
    defaults = _defaults(fn)

    built: dict[str, Any] = {}
    fixed_values: dict[str, Any] = {}
    for name, abbrev in controls.items():
        if accepted is not None:
            check_choice(name, f"controls (parameters of {_fn_name(fn)})", accepted)
        if isinstance(abbrev, fixed):
            fixed_values[name] = abbrev.value
            continue
        if isinstance(abbrev, widgets.ValueWidget):
            built[name] = abbrev
            continue
        widget = interactive.widget_from_abbrev(abbrev, defaults.get(name, inspect.Parameter.empty))
        if widget is None or not isinstance(widget, widgets.ValueWidget):
            raise ValueError(f"`{name}`: expected an ipywidgets widget or an abbreviation such as "
                             f"(0.0, 1.0, 0.05) or a list of options, got {abbrev!r}")
        if widget.has_trait("continuous_update"):
            widget.continuous_update = False
        if not widget.description:
            widget.description = name
        built[name] = widget

    settings = _settings(static, static_values)
    for s in settings:
        for key in s:
            if accepted is not None:
                check_choice(key, f"static (parameters of {_fn_name(fn)})", accepted)
    if titles is not None and len(titles) != len(settings):
        raise ValueError(f"`titles`: expected {len(settings)} titles (one per static setting), got {len(titles)}")

    base = {**fixed_values, **{k: w.value for k, w in built.items()}}
    panels = [_call(fn, {**base, **s}, lambda r: _result_to_array(r, "`fn`")) for s in settings]
    h, w = panels[0].shape[:2]
    figure = show_grid(panels, titles=list(titles) if titles is not None else [_setting_title(s) for s in settings],
                       ncols=len(panels) if layout == "row" else 1, size=max(w / DPI, _MIN_PANEL), dpi=DPI)

    image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
    status = widgets.HTML("")
    box = widgets.VBox([*built.values(), image, status])
    out = InteractiveFigure(fn, figure, built, fixed_values, image, status, box)
    for widget in built.values():
        widget.observe(out.redraw, names="value")
    out.redraw()
    if display:
        out.show()
    return out


def time_slider(frames: Sequence, titles: Sequence[str] | None = None, n_static: int = 4,
                description: str = "index", size: float = 3.0, display: bool = True) -> InteractiveFigure:
    """Scrub through a sequence of images or Figures (training epochs, an evolving contour, ...).

    All frames are rasterised once up front (Figures are closed), so scrubbing only swaps PNGs.
    The static figure shows ``n_static`` evenly spaced frames, first and last included.

    Args:
        frames: images (arrays ``(H, W[, 3])``, tensors ``(C, H, W)``) or matplotlib Figures.
        titles: one title per frame (e.g. ``"epoch 3"``); default ``"frame i"``.
        n_static: frames in the static figure.
        description: the slider's label.
        size: width of a frame in inches in the live view.
        display: display now (see ``interactive_figure``).

    Returns:
        ``InteractiveFigure`` whose ``controls["index"]`` is an ``IntSlider`` over frame indices.

    Example:
        >>> frames = [np.full((4, 4), v) for v in (0.0, 0.5, 1.0)]
        >>> w = time_slider(frames, display=False)
        >>> w.controls["index"].max, len(w.figure.axes)
        (2, 3)
    """
    import ipywidgets as widgets

    if not isinstance(frames, (list, tuple)) or not frames:
        raise ValueError(f"`frames`: expected a non-empty list of images or Figures, got {type(frames).__name__}")
    n = len(frames)
    titles = [f"frame {i}" for i in range(n)] if titles is None else list(titles)
    if len(titles) != n:
        raise ValueError(f"`titles`: expected {n} titles (one per frame), got {len(titles)}")
    if not isinstance(n_static, int) or n_static < 1:
        raise ValueError(f"`n_static`: expected an integer >= 1, got {n_static!r}")
    images = []
    for i, f in enumerate(frames):
        images.append(_call(lambda f=f: f, {}, lambda r, i=i: _result_to_array(r, f"`frames[{i}]`")))

    def frame(index: int = 0):
        return show_grid([images[index]], titles=[titles[index]], size=size)

    picks = sorted(set(np.linspace(0, n - 1, min(n_static, n)).round().astype(int).tolist()))
    slider = widgets.IntSlider(value=0, min=0, max=n - 1, step=1, description=description,
                               continuous_update=False)
    # each static panel is a frame() figure that carries its own title, so the grid adds none
    return interactive_figure(frame, static=[{"index": i} for i in picks], titles=[""] * len(picks),
                              display=display, index=slider)
