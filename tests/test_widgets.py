import re

import matplotlib

matplotlib.use("Agg")  # headless, whatever conftest does

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pixelbook import widgets as W  # noqa: E402
from pixelbook.widgets import explorer, figure_to_array, output_mode, panels, time_slider  # noqa: E402


class Spy:
    """fn for an explorer: records its calls and draws with pyplot (the leak-prone way)."""

    def __init__(self):
        self.calls = []

    def __call__(self, alpha=0.3, mode="a"):
        self.calls.append({"alpha": alpha, "mode": mode})
        fig, ax = plt.subplots(figsize=(2, 2), dpi=40)
        ax.imshow(np.full((4, 4), alpha), vmin=0, vmax=1)
        ax.set_title(mode)
        return fig


def rgb(level=0.5, loss="CE", p=0.0):
    """An image that depends on `level`, and on `p` only under CE."""
    img = np.full((6, 6, 3), level)
    if loss == "CE":
        img[0, 0] = p
    return img


class TestOutputMode:
    def test_default_live_and_book_from_the_environment(self, monkeypatch):
        monkeypatch.delenv(W.OUTPUT_ENV, raising=False)
        assert output_mode() == "live"
        monkeypatch.setenv(W.OUTPUT_ENV, "book")
        assert output_mode() == "book"
        monkeypatch.setenv(W.OUTPUT_ENV, "html")
        with pytest.raises(ValueError, match="PIXELBOOK_OUTPUT"):
            output_mode()


class TestBookExplorer:
    def test_every_combination_is_mapped_to_a_frame_and_identical_frames_are_stored_once(self):
        spy = Spy()
        x = explorer(spy, {"alpha": [0.0, 0.3, 0.9], "mode": ["a", "b"]}, mode="book", display=False)
        assert sorted(x.table) == [(i, j) for i in range(3) for j in range(2)]
        assert len(spy.calls) == 6 and len(x.frames) == 6
        assert x.table[(1, 0)][0] == 0  # fn's defaults (alpha=0.3, mode="a") are the first frame
        assert all(f.startswith(b"\x89PNG") for f in x.frames)
        assert plt.get_fignums() == []

    def test_duplicate_pictures_share_one_frame(self):
        x = explorer(lambda level=0.5: rgb(round(level)), {"level": [0.1, 0.2, 0.9]}, mode="book", display=False)
        assert len(x.frames) == 2 and x.table[(0,)][0] == x.table[(1,)][0] != x.table[(2,)][0]

    def test_inactive_control_is_drawn_once_and_carries_its_reason(self):
        calls = []

        def fn(loss="CE", p=0.0):
            calls.append((loss, p))
            return rgb(0.5, loss, p)

        x = explorer(fn, {"loss": ["CE", "CAS"], "p": [0.0, 0.5]}, mode="book", display=False,
                     active={"p": (lambda s: s["loss"] == "CE", "p only changes the CE model")})
        assert sorted(calls) == [("CAS", 0.0), ("CE", 0.0), ("CE", 0.5)]  # CAS drawn at p's initial value
        assert x.table[(1, 0)][0] == x.table[(1, 1)][0]
        assert x.table[(1, 1)][1] == {1: "p: p only changes the CE model"}
        assert x.table[(0, 1)][1] == {}

    def test_single_value_control_is_inactive_with_a_reason(self):
        x = explorer(lambda epoch=1: rgb(0.2), {"epoch": [1]}, mode="book", display=False)
        assert x.table[(0,)][1] == {0: "epoch: one value at this scale"}

    def test_single_value_control_with_a_live_range_is_inactive_in_the_book(self):
        # Chapter 5's gate explorer: one block in the book, a 0-7 slider in Jupyter
        x = explorer(lambda block=3, tau=1.0: rgb(0.2, block, tau), {"block": [3], "tau": [1.0, 0.3]},
                     live={"block": (0, 7)}, mode="book", display=False)
        assert x.table[(0, 0)][1] == {0: "block: one value at this scale"}

    def test_html_is_self_contained_and_starts_on_the_initial_frame(self):
        x = explorer(lambda level=0.5: rgb(level), {"level": [0.1, 0.5, 0.9, 1.0]}, mode="book", display=False,
                     alt="grey levels")
        page = x.html
        assert re.findall(r"(?:src|href)=[\"']?https?:", page) == [] and "cdn" not in page.lower()
        first = re.search(r'<img class="pb-x-frame" src="(data:image/png;base64,[^"]+)" width="(\d+)"', page)
        assert first and int(first.group(2)) == W._png_size(x.frames[0])[0]
        assert 'alt="grey levels: level = 0.5"' in page and page.count(first.group(1)) == 1
        assert "<script>" in page and 'id="' + x.uid + '"' in page

    def test_glue_puts_the_explorer_under_the_key_without_displaying_it(self, monkeypatch):
        import myst_nb

        glued = []
        monkeypatch.setattr(myst_nb, "glue", lambda key, obj, display=True: glued.append((key, obj, display)))
        x = explorer(lambda level=0.5: rgb(level), {"level": [0.1, 0.5]}, mode="book", glue="ch0_x")
        assert len(glued) == 1 and glued[0][0] == "ch0_x" and glued[0][2] is False
        assert glued[0][1]._repr_html_() == x.html

    def test_glued_explorer_as_last_expression_of_a_cell_is_not_shown_again(self, monkeypatch):
        import IPython.display
        import myst_nb
        from IPython.core.formatters import format_display_data

        monkeypatch.setattr(myst_nb, "glue", lambda key, obj, display=True: format_display_data(obj))
        shown = []
        monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
        x = explorer(lambda level=0.5: rgb(level), {"level": [0.1, 0.5]}, mode="book", glue="ch0_x")
        x._ipython_display_()
        assert shown == []
        y = explorer(lambda level=0.5: rgb(level), {"level": [0.1, 0.5]}, mode="book", display=False)
        y._ipython_display_()
        y._ipython_display_()
        assert len(shown) == 1 and shown[0]._repr_html_() == y.html

    def test_too_many_frames_or_bytes(self):
        with pytest.raises(ValueError, match="more than max_frames=3"):
            explorer(lambda level=0.5: rgb(level), {"level": [0.1, 0.2, 0.3, 0.4]}, mode="book", display=False,
                     max_frames=3)
        with pytest.raises(ValueError, match="max_bytes"):
            explorer(lambda level=0.5: rgb(level), {"level": [0.1, 0.2]}, mode="book", display=False, max_bytes=10)

    def test_html_needs_book_mode(self):
        x = explorer(lambda level=0.5: rgb(level), {"level": [0.1, 0.5]}, mode="live", display=False)
        with pytest.raises(RuntimeError, match="book-mode"):
            x.html


class TestLiveExplorer:
    def test_changing_a_control_calls_fn_and_updates_the_image(self):
        spy = Spy()
        x = explorer(spy, {"alpha": [0.0, 0.3, 0.6, 0.9], "mode": ["a", "b"]}, mode="live", display=False)
        assert isinstance(x.controls["alpha"], widgets.SelectionSlider)
        assert isinstance(x.controls["mode"], widgets.ToggleButtons)
        first = x.image.value
        x.controls["alpha"].value = 0.9
        assert spy.calls[-1] == {"alpha": 0.9, "mode": "a"} and x.image.value != first
        assert x.controls["alpha"].continuous_update is False
        assert plt.get_fignums() == []

    def test_image_is_sized_to_the_figure_not_the_output_width(self):
        x = explorer(Spy(), {"alpha": [0.0, 0.5]}, mode="live", display=False)
        w, _ = W._png_size(x.image.value)
        assert x.image.layout.width == f"{w}px" and x.image.layout.max_width == "100%"

    def test_live_range_is_finer_than_the_book_grid(self):
        spy = Spy()
        x = explorer(spy, {"alpha": [0.0, 0.5, 1.0]}, live={"alpha": (0.0, 1.0, 0.05)}, mode="live", display=False)
        assert isinstance(x.controls["alpha"], widgets.FloatSlider) and x.controls["alpha"].value == 0.0
        x.controls["alpha"].value = 0.35
        assert spy.calls[-1]["alpha"] == 0.35

    def test_inactive_controls_are_disabled_with_the_reason(self):
        x = explorer(rgb, {"loss": ["CE", "CAS"], "p": [0.0, 0.5], "level": [0.5]}, mode="live", display=False,
                     active={"p": (lambda s: s["loss"] == "CE", "p only changes the CE model")})
        assert not x.controls["p"].disabled and x.controls["level"].disabled
        x.controls["loss"].value = "CAS"
        assert x.controls["p"].disabled and "p only changes the CE model" in x.note.value
        assert "level: one value at this scale" in x.note.value

    def test_error_goes_to_status_and_closes_figures(self):
        def fn(alpha=0.3):
            plt.subplots()
            if alpha > 0.5:
                raise RuntimeError("boom")
            return np.zeros((4, 4, 3))

        x = explorer(fn, {"alpha": [0.3, 0.9]}, mode="live", display=False)
        x.controls["alpha"].value = 0.9
        assert "RuntimeError: boom" in x.status.value and plt.get_fignums() == []

    def test_tensor_results_are_shown(self):
        x = explorer(lambda k=1: torch.full((3, 5, 5), k / 4), {"k": [1, 2]}, mode="live", display=False)
        assert bytes(x.image.value).startswith(b"\x89PNG")


class TestExplorerArguments:
    def test_unknown_names(self):
        with pytest.raises(ValueError, match="grid"):
            explorer(Spy(), {"beta": [1, 2]}, mode="book", display=False)
        with pytest.raises(ValueError, match="`active` keys"):
            explorer(Spy(), {"alpha": [1, 2]}, active={"mode": (bool, "x")}, mode="book", display=False)

    def test_bad_values_labels_and_active(self):
        with pytest.raises(ValueError, match="`grid`: `alpha`: expected a non-empty list"):
            explorer(Spy(), {"alpha": []}, mode="book", display=False)
        with pytest.raises(ValueError, match="`labels`: `alpha`: expected 2 labels"):
            explorer(Spy(), {"alpha": [0.1, 0.2]}, labels={"alpha": ["x"]}, mode="book", display=False)
        with pytest.raises(ValueError, match="`active`: `alpha`: expected \\(predicate, why\\)"):
            explorer(Spy(), {"alpha": [0.1, 0.2]}, active={"alpha": "never"}, mode="book", display=False)
        with pytest.raises(TypeError, match="`fn`"):
            explorer(3, {"alpha": [1]})

    def test_bad_result_type(self):
        with pytest.raises(TypeError, match="expected a matplotlib Figure or an image"):
            explorer(lambda alpha=1: "text", {"alpha": [1]}, mode="book", display=False)


class TestPanels:
    def test_one_panel_per_setting_with_titles(self):
        fig = panels(Spy(), [{"alpha": 0.1}, {"alpha": 0.9, "mode": "b"}])
        assert len(fig.axes) == 2 and fig.axes[1].get_title() == "alpha=0.9, mode=b"
        assert plt.get_fignums() == []

    def test_no_titles_and_errors(self):
        fig = panels(Spy(), [{"alpha": 0.1}, {"alpha": 0.2}], titles=["", ""])
        assert [ax.get_title() for ax in fig.axes] == ["", ""]
        with pytest.raises(ValueError, match="`titles`: expected 2"):
            panels(Spy(), [{"alpha": 0.1}, {"alpha": 0.2}], titles=["x"])
        with pytest.raises(ValueError, match="`settings`"):
            panels(Spy(), [])


class TestTimeSlider:
    def test_frames_become_one_control_with_their_titles(self):
        frames = [np.full((4, 4, 3), v) for v in (0.0, 0.5, 1.0)]
        x = time_slider(frames, titles=["t0", "t1", "t2"], description="time", mode="book", display=False)
        assert len(x.frames) == 3 and '"labels":["t0","t1","t2"]' in x.html and '"description":"time"' in x.html
        live = time_slider(frames, mode="live", display=False)
        live.controls["index"].value = 2
        assert bytes(live.image.value) == x.frames[2]

    def test_figure_frames_are_closed(self):
        figs = [plt.subplots()[0] for _ in range(2)]
        time_slider(figs, mode="book", display=False)
        assert plt.get_fignums() == []

    def test_titles_length_and_empty(self):
        with pytest.raises(ValueError, match="`titles`: expected 2"):
            time_slider([np.zeros((2, 2))] * 2, titles=["a"])
        with pytest.raises(ValueError, match="`frames`"):
            time_slider([])


class TestFigureToArray:
    def test_size_in_pixels_and_not_a_figure(self):
        fig = Figure(figsize=(3, 2), dpi=20)
        fig.patch.set_facecolor("red")
        arr = figure_to_array(fig, tight=False)
        assert arr.shape == (40, 60, 3) and arr.dtype == np.uint8 and arr[0, 0].tolist() == [255, 0, 0]

    def test_tight_crops_empty_margins(self):
        fig = Figure(figsize=(4, 4), dpi=20)
        ax = fig.add_axes((0.25, 0.25, 0.5, 0.5))   # content in the middle half
        ax.set_axis_off()
        ax.imshow(np.zeros((4, 4)), cmap="gray")
        arr = figure_to_array(fig)
        assert 38 <= arr.shape[0] <= 44 and 38 <= arr.shape[1] <= 44   # 40 px of image + 0.02 in pads
        assert arr[arr.shape[0] // 2, arr.shape[1] // 2].tolist() == [0, 0, 0]
        with pytest.raises(TypeError, match="`fig`: expected a matplotlib Figure, got ndarray"):
            figure_to_array(np.zeros((2, 2)))


class TestShow:
    def test_book_mode_glues_without_displaying_live_mode_displays(self, monkeypatch):
        import IPython.display
        import myst_nb

        glued, shown = [], []
        monkeypatch.setattr(myst_nb, "glue", lambda key, obj, display=True: glued.append((key, obj, display)))
        monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
        W.show("fig", glue="ch0_fig", mode="book")
        W.show("fig", glue="ch0_fig", mode="live")
        W.show("other", mode="book")
        assert glued == [("ch0_fig", "fig", False)] and shown == ["fig", "other"]

    def test_pyplot_figure_is_closed_once_shown(self, monkeypatch):
        import IPython.display

        monkeypatch.setattr(IPython.display, "display", lambda obj: None)
        fig, _ = plt.subplots()
        W.show(fig, mode="live")
        assert plt.get_fignums() == []



class TestWords:
    """Words is glued text/plain; the book (myst-nb) shows ``str(ast.literal_eval(text))`` when it can."""

    @pytest.mark.parametrize("text", ["holds", "does not hold", "b_skip", "dilation 1", "b_skip seed 0", "3", "[1, 2]"])
    def test_text_the_book_shows_as_written(self, text):
        from myst_nb.core.variables import format_plain_text

        assert format_plain_text(repr(W.Words(text)), "") == text

    @pytest.mark.parametrize("text, shown", [("0.940, 0.947", "(0.94, 0.947)"), ("+0.017", "0.017"), ("0.50", "0.5")])
    def test_text_the_book_would_change_is_an_error(self, text, shown):
        from myst_nb.core.variables import format_plain_text

        assert format_plain_text(text, "") == shown  # what the book would show
        with pytest.raises(ValueError, match=r"^`text`: the book would show '.*' as '.*'; glue it as a plain str$"):
            W.Words(text)
        assert format_plain_text(repr(text), "") == text  # the plain str is shown as written
