import matplotlib

matplotlib.use("Agg")  # headless, whatever conftest does

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pixelbook.widgets import InteractiveFigure, figure_to_array, interactive_figure, time_slider  # noqa: E402


class Spy:
    """fn for interactive_figure: records its calls and draws with pyplot (the leak-prone way)."""

    def __init__(self):
        self.calls = []

    def __call__(self, alpha=0.3, mode="a"):
        self.calls.append({"alpha": alpha, "mode": mode})
        fig, ax = plt.subplots(figsize=(2, 2), dpi=40)
        ax.imshow(np.full((4, 4), alpha), vmin=0, vmax=1)
        ax.set_title(mode)
        return fig


class TestInteractiveFigure:
    def test_static_figure_has_one_panel_per_setting_merged_over_control_values(self):
        spy = Spy()
        w = interactive_figure(spy, static=[{"alpha": 0.1}, {"alpha": 0.5}, {"alpha": 0.9, "mode": "b"}],
                               alpha=(0.0, 1.0, 0.05), mode=["a", "b"], display=False)
        assert isinstance(w, InteractiveFigure) and isinstance(w.figure, Figure)
        assert len(w.figure.axes) == 3
        assert [ax.get_title() for ax in w.figure.axes] == ["alpha=0.1", "alpha=0.5", "alpha=0.9, mode=b"]
        assert spy.calls[:3] == [{"alpha": 0.1, "mode": "a"}, {"alpha": 0.5, "mode": "a"}, {"alpha": 0.9, "mode": "b"}]

    def test_changing_a_control_calls_fn_with_new_value_and_updates_image(self):
        spy = Spy()
        w = interactive_figure(spy, static=[{"alpha": 0.1}], alpha=(0.0, 1.0, 0.05), mode=["a", "b"], display=False)
        first = w.image.value
        assert first[:8] == b"\x89PNG\r\n\x1a\n"
        w.controls["alpha"].value = 0.8
        assert spy.calls[-1] == {"alpha": 0.8, "mode": "a"} and w.calls[-1] == {"alpha": 0.8, "mode": "a"}
        assert w.image.value != first
        w.controls["mode"].value = "b"
        assert spy.calls[-1] == {"alpha": 0.8, "mode": "b"}

    def test_repeated_redraws_leak_no_pyplot_figures(self):
        before = plt.get_fignums()
        spy = Spy()
        w = interactive_figure(spy, static=[{"alpha": 0.1}, {"alpha": 0.6}], alpha=(0.0, 1.0, 0.05), display=False)
        for v in (0.2, 0.4, 0.6, 0.8, 1.0):
            w.controls["alpha"].value = v
        assert len(spy.calls) == 2 + 1 + 5   # static panels, initial live draw, five changes
        assert plt.get_fignums() == before

    def test_abbreviation_builds_slider_at_fn_default_without_continuous_update(self):
        w = interactive_figure(Spy(), static=[{}], alpha=(0.0, 1.0, 0.05), display=False)
        s = w.controls["alpha"]
        assert isinstance(s, widgets.FloatSlider)
        assert s.value == pytest.approx(0.3) and s.continuous_update is False and s.description == "alpha"

    def test_given_widget_used_as_is_and_fixed_is_constant(self):
        slider = widgets.FloatSlider(value=0.7, min=0, max=1, description="opacity")
        spy = Spy()
        w = interactive_figure(spy, static=[{}], alpha=slider, mode=widgets.fixed("b"), display=False)
        assert w.controls == {"alpha": slider} and slider.description == "opacity"
        assert spy.calls[-1] == {"alpha": 0.7, "mode": "b"}

    def test_static_values_mapping_expands_to_settings(self):
        spy = Spy()
        w = interactive_figure(spy, static_values={"alpha": [0.1, 0.2, 0.3, 0.4], "mode": "b"},
                               alpha=(0.0, 1.0), display=False)
        assert len(w.figure.axes) == 4
        assert spy.calls[3] == {"alpha": 0.4, "mode": "b"}

    def test_column_layout_stacks_panels(self):
        w = interactive_figure(Spy(), static=[{"alpha": 0.1}, {"alpha": 0.9}], layout="column", display=False)
        (a, b) = w.figure.axes
        assert a.get_position().y0 > b.get_position().y0 and a.get_position().x0 == pytest.approx(b.get_position().x0)

    def test_array_results_are_shown(self):
        def fn(level=0.5):
            return torch.full((3, 8, 8), level)

        w = interactive_figure(fn, static=[{"level": 0.0}, {"level": 1.0}], level=(0.0, 1.0, 0.1), display=False)
        img = w.figure.axes[1].get_images()[0].get_array()
        assert np.allclose(img, 1.0)
        old = w.image.value
        w.controls["level"].value = 0.2
        assert w.image.value != old

    def test_error_in_live_redraw_goes_to_status_and_closes_figures(self):
        before = plt.get_fignums()

        def fn(k=1):
            plt.figure()
            if k > 2:
                raise RuntimeError("k too large")
            return np.zeros((4, 4))

        w = interactive_figure(fn, static=[{"k": 1}], k=(0, 5), display=False)
        w.controls["k"].value = 4
        assert "RuntimeError: k too large" in w.status.value
        w.controls["k"].value = 1
        assert w.status.value == ""
        assert plt.get_fignums() == before

    def test_display_shows_figure_and_box_once_without_a_front_end(self, capsys):
        w = interactive_figure(Spy(), static=[{}], alpha=(0.0, 1.0), display=True)
        printed = capsys.readouterr().out   # no IPython shell: display() prints the reprs
        assert "Figure" in printed and "VBox" in printed
        w._ipython_display_()                # already shown: displaying the result adds nothing
        assert capsys.readouterr().out == ""

    def test_unknown_control_name(self):
        with pytest.raises(ValueError, match=r"`controls \(parameters of Spy\)`: expected one of \('alpha', 'mode'\), got 'alpah'"):
            interactive_figure(Spy(), alpah=(0.0, 1.0), display=False)

    def test_unknown_static_key(self):
        def fn(a=1):
            return np.zeros((2, 2))

        with pytest.raises(ValueError, match=r"`static \(parameters of fn\)`: expected one of \('a',\), got 'b'"):
            interactive_figure(fn, static=[{"b": 2}], display=False)

    def test_bad_abbreviation(self):
        def fn(a=1):
            return np.zeros((2, 2))

        with pytest.raises(ValueError, match="`a`: expected an ipywidgets widget or an abbreviation"):
            interactive_figure(fn, a=object(), display=False)

    def test_bad_result_type(self):
        with pytest.raises(TypeError, match="`fn`: expected a matplotlib Figure or an image"):
            interactive_figure(lambda: "not an image", display=False)

    def test_bad_layout(self):
        with pytest.raises(ValueError, match=r"`layout`: expected one of \('row', 'column'\), got 'grid'"):
            interactive_figure(Spy(), layout="grid", display=False)


class TestTimeSlider:
    def test_scrubbing_updates_image_and_static_shows_first_and_last(self):
        frames = [np.full((6, 6), v) for v in np.linspace(0, 1, 7)]
        w = time_slider(frames, titles=[f"epoch {i}" for i in range(7)], display=False)
        s = w.controls["index"]
        assert isinstance(s, widgets.IntSlider) and (s.min, s.max, s.value) == (0, 6, 0)
        assert len(w.figure.axes) == 4   # frames 0, 2, 4, 6
        old = w.image.value
        s.value = 5
        assert w.calls[-1] == {"index": 5} and w.image.value != old

    def test_figure_frames_are_closed(self):
        before = plt.get_fignums()
        frames = []
        for i in range(3):
            fig, ax = plt.subplots(figsize=(1, 1), dpi=30)
            ax.plot([0, i])
            frames.append(fig)
        w = time_slider(frames, n_static=2, display=False)
        w.controls["index"].value = 1
        assert len(w.figure.axes) == 2
        assert plt.get_fignums() == before

    def test_titles_length(self):
        with pytest.raises(ValueError, match=r"`titles`: expected 2 titles \(one per frame\), got 1"):
            time_slider([np.zeros((2, 2))] * 2, titles=["a"], display=False)

    def test_empty(self):
        with pytest.raises(ValueError, match="`frames`: expected a non-empty list"):
            time_slider([], display=False)


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
