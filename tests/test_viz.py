import math

import matplotlib

matplotlib.use("Agg")  # headless, whatever conftest does

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import pixelbook.viz as pb_viz  # noqa: E402
from pixelbook.training import History  # noqa: E402
from pixelbook.viz import (  # noqa: E402
    colorize_boundaries, colorize_depth, colorize_flow, colorize_labels, colorize_normals, draw_contours,
    embedding_to_rgb, flow_legend, label_colors, overlay_mask, plot_history, show_grid, tensor_to_image,
)


def _rgb_ok(out, h, w):
    assert isinstance(out, np.ndarray) and out.shape == (h, w, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


class TestTensorToImage:
    def test_tensor_is_channel_first_array_channel_last(self):
        t = torch.rand(3, 4, 5)
        np.testing.assert_allclose(tensor_to_image(t), t.permute(1, 2, 0).numpy())
        np.testing.assert_allclose(tensor_to_image(t.permute(1, 2, 0).numpy()), t.permute(1, 2, 0).numpy())

    def test_uint8_scaled_single_channel_squeezed_batch_dropped(self):
        assert tensor_to_image(np.array([[0, 255]], dtype=np.uint8)).tolist() == [[0.0, 1.0]]
        assert tensor_to_image(torch.ones(1, 1, 4, 6)).shape == (4, 6)

    def test_alpha_channel_dropped(self):
        assert tensor_to_image(np.zeros((4, 5, 4))).shape == (4, 5, 3)

    def test_normalize_maps_min_max_to_unit_interval(self):
        out = tensor_to_image(torch.tensor([[2.0, 4.0, 3.0]]), normalize=True)
        assert out.tolist() == [[0.0, 1.0, 0.5]]

    def test_two_channels_rejected(self):
        with pytest.raises(ValueError, match=r"`image channels \(C of \(C, H, W\)\)`: expected one of \(1, 3\), got 2"):
            tensor_to_image(torch.zeros(2, 4, 4))

    def test_non_array_rejected(self):
        with pytest.raises(TypeError, match="`image`: expected a torch.Tensor or numpy.ndarray, got list"):
            tensor_to_image([[0.0]])


class TestLabelColors:
    def test_voc_values(self):
        bytes_ = np.rint(label_colors(21) * 255).astype(int)
        # PASCAL VOC devkit colour map: 1 aeroplane, 2 bicycle, 4 boat, 15 person, 20 tv/monitor
        assert bytes_[1].tolist() == [128, 0, 0]
        assert bytes_[2].tolist() == [0, 128, 0]
        assert bytes_[4].tolist() == [0, 0, 128]
        assert bytes_[15].tolist() == [192, 128, 128]
        assert bytes_[20].tolist() == [0, 64, 128]

    def test_first_256_colours_distinct(self):
        assert len(np.unique(label_colors(256), axis=0)) == 256

    def test_bad_count(self):
        with pytest.raises(ValueError, match="`num_classes`: expected an integer >= 1, got 0"):
            label_colors(0)


class TestColorizeLabels:
    def test_palette_lookup_and_ignore_black(self):
        labels = torch.tensor([[0, 1], [15, 255]])
        out = colorize_labels(labels, num_classes=21)
        _rgb_ok(out, 2, 2)
        pal = label_colors(21)
        np.testing.assert_array_equal(out[0, 1], pal[1])
        np.testing.assert_array_equal(out[1, 0], pal[15])
        assert out[1, 1].tolist() == [0.0, 0.0, 0.0]

    def test_numpy_and_batch_of_one_accepted(self):
        a = np.array([[0, 2], [1, 1]])
        np.testing.assert_array_equal(colorize_labels(a), colorize_labels(torch.from_numpy(a)[None]))

    def test_label_out_of_range(self):
        with pytest.raises(ValueError, match=r"`labels`: expected labels in \[0, 3\) or ignore_index=255, got values in \[0, 7\]"):
            colorize_labels(torch.tensor([[0, 7]]), num_classes=3)

    def test_float_labels_rejected(self):
        with pytest.raises(TypeError, match="`labels`: expected an integer tensor"):
            colorize_labels(torch.zeros(2, 2))


class TestOverlayMask:
    def test_bool_mask_blends_colour(self):
        img = torch.full((3, 2, 2), 0.2)
        mask = torch.tensor([[True, False], [False, True]])
        out = overlay_mask(img, mask, alpha=0.25, color=(0.0, 1.0, 0.0))
        _rgb_ok(out, 2, 2)
        np.testing.assert_allclose(out[0, 0], [0.15, 0.4, 0.15], atol=1e-6)   # 0.75*0.2 + 0.25*c
        np.testing.assert_allclose(out[0, 1], [0.2, 0.2, 0.2], atol=1e-6)

    def test_soft_mask_weights_alpha_per_pixel(self):
        out = overlay_mask(np.zeros((1, 2)), np.array([[0.5, 1.0]]), alpha=0.5, color="white")
        np.testing.assert_allclose(out[0, :, 0], [0.25, 0.5], atol=1e-6)

    def test_label_map_uses_palette_and_skips_background_and_ignore(self):
        img = torch.rand(3, 3, 3)
        labels = torch.tensor([[0, 1, 2], [2, 255, 0], [1, 1, 0]])
        out = overlay_mask(img, labels, alpha=0.6, background=0)
        base = img.permute(1, 2, 0).numpy()
        pal = label_colors(3)
        np.testing.assert_allclose(out[0, 1], 0.4 * base[0, 1] + 0.6 * pal[1], atol=1e-6)
        np.testing.assert_allclose(out[0, 2], 0.4 * base[0, 2] + 0.6 * pal[2], atol=1e-6)
        np.testing.assert_allclose(out[0, 0], base[0, 0], atol=1e-6)   # background
        np.testing.assert_allclose(out[1, 1], base[1, 1], atol=1e-6)   # ignore_index

    def test_grey_uint8_image_accepted(self):
        out = overlay_mask(np.full((2, 2), 255, dtype=np.uint8), np.zeros((2, 2), dtype=bool))
        assert out.tolist() == np.ones((2, 2, 3)).tolist()

    def test_size_mismatch_names_both_arguments(self):
        with pytest.raises(ValueError, match=r"`mask`: expected H=4 \(as in `image`\), got 3"):
            overlay_mask(torch.zeros(3, 4, 4), torch.zeros(3, 4, dtype=torch.bool))

    def test_image_out_of_range(self):
        with pytest.raises(ValueError, match="`image`: expected values <= 1.0, got max 2"):
            overlay_mask(torch.full((3, 2, 2), 2.0), torch.zeros(2, 2, dtype=torch.bool))

    def test_nan_mask(self):
        with pytest.raises(ValueError, match="`mask`: expected finite values, got 1 NaN/Inf"):
            overlay_mask(torch.zeros(3, 2, 2), torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))


class TestDrawContours:
    def test_matches_skimage_inner_boundaries(self):
        from skimage.segmentation import find_boundaries

        rng = np.random.default_rng(0)
        mask = np.zeros((24, 24), dtype=bool)
        mask[2:-2, 2:-2] = rng.random((20, 20)) > 0.4   # ragged blobs, away from the border
        out = draw_contours(np.zeros((24, 24)), mask, color="white")
        expected = find_boundaries(mask, connectivity=1, mode="inner")
        np.testing.assert_array_equal(out[..., 0] == 1.0, expected)

    def test_level_zero_of_signed_distance_is_circle_of_right_radius(self):
        y, x = np.mgrid[0:41, 0:41]
        phi = 10.0 - np.hypot(x - 20, y - 20)          # > 0 inside a disc of radius 10
        out = draw_contours(np.zeros((41, 41)), phi, levels=(0.0,), color="white")
        ys, xs = np.nonzero(out[..., 0])
        r = np.hypot(xs - 20, ys - 20)
        assert len(r) > 40 and r.min() > 8.9 and r.max() <= 10.0

    def test_one_colour_per_level_and_thickness(self):
        m = np.zeros((9, 9))
        m[2:7, 2:7] = 0.6
        m[4, 4] = 0.9
        out = draw_contours(np.zeros((9, 9, 3)), m, color=["red", "blue"], levels=(0.5, 0.8))
        assert out[2, 2].tolist() == [1.0, 0.0, 0.0] and out[4, 4].tolist() == [0.0, 0.0, 1.0]
        thick = draw_contours(np.zeros((9, 9)), m, thickness=2)
        assert thick[1, 1, 0] == 1.0 and out[1, 1, 0] == 0.0

    def test_constant_mask_draws_nothing(self):
        img = np.full((5, 5), 0.3)
        np.testing.assert_allclose(draw_contours(img, np.ones((5, 5))), 0.3, atol=1e-7)

    def test_colour_count_must_match_levels(self):
        with pytest.raises(ValueError, match=r"`color`: expected one colour per level \(1\), got 2"):
            draw_contours(np.zeros((3, 3)), np.zeros((3, 3)), color=["red", "blue"])

    def test_bad_colour(self):
        with pytest.raises(ValueError, match="`color`: expected a matplotlib colour"):
            draw_contours(np.zeros((3, 3)), np.zeros((3, 3)), color=(255, 0, 0))


class TestColorizeBoundaries:
    def test_black_on_white_without_image(self):
        out = colorize_boundaries(torch.tensor([[0.0, 0.25, 1.0]]))
        np.testing.assert_allclose(out[0, :, 1], [1.0, 0.75, 0.0])

    def test_painted_onto_image_with_probability_weight(self):
        out = colorize_boundaries(np.array([[0.0, 0.5]]), image=np.zeros((1, 2)), color="red")
        np.testing.assert_allclose(out[0], [[0, 0, 0], [0.5, 0, 0]], atol=1e-6)

    def test_out_of_range(self):
        with pytest.raises(ValueError, match="`boundaries`: expected values <= 1.0, got max 3"):
            colorize_boundaries(torch.tensor([[3.0]]))


class TestColorizeDepth:
    def test_near_is_cmap_start_far_is_cmap_end(self):
        cmap = matplotlib.colormaps["magma_r"]
        out = colorize_depth(torch.tensor([[[1.0, 2.0, 5.0]]]))
        _rgb_ok(out, 1, 3)
        np.testing.assert_allclose(out[0, 0], cmap(0.0)[:3], atol=1e-6)
        np.testing.assert_allclose(out[0, 1], cmap(0.25)[:3], atol=1e-6)
        np.testing.assert_allclose(out[0, 2], cmap(1.0)[:3], atol=1e-6)
        assert out[0, 0].sum() > out[0, 2].sum()   # near is bright by default

    def test_vmin_vmax_clip(self):
        cmap = matplotlib.colormaps["viridis"]
        out = colorize_depth(np.array([[0.0, 3.0, 10.0]]), vmin=2.0, vmax=4.0, cmap="viridis")
        np.testing.assert_allclose(out[0], [cmap(0.0)[:3], cmap(0.5)[:3], cmap(1.0)[:3]], atol=1e-6)

    def test_log_puts_geometric_mean_in_the_middle(self):
        cmap = matplotlib.colormaps["magma_r"]
        out = colorize_depth(torch.tensor([[1.0, 10.0, 100.0]]), log=True)
        np.testing.assert_allclose(out[0, 1], cmap(0.5)[:3], atol=1e-6)

    def test_invalid_pixels_black_and_excluded_from_range(self):
        cmap = matplotlib.colormaps["magma_r"]
        depth = torch.tensor([[0.0, 2.0, 4.0]])
        out = colorize_depth(depth, valid=depth > 0)
        assert out[0, 0].tolist() == [0.0, 0.0, 0.0]
        np.testing.assert_allclose(out[0, 1], cmap(0.0)[:3], atol=1e-6)

    def test_log_needs_positive_depth(self):
        with pytest.raises(ValueError, match="`depth`: expected values >= "):
            colorize_depth(torch.tensor([[0.0, 1.0]]), log=True)

    def test_vmax_not_above_vmin(self):
        with pytest.raises(ValueError, match="`vmax`: expected vmax > vmin, got vmin=3, vmax=3"):
            colorize_depth(torch.ones(2, 2), vmin=3.0, vmax=3.0)

    def test_nan_rejected(self):
        with pytest.raises(ValueError, match=r"`depth`: expected finite values, got 1 NaN/Inf \(first at index \(0, 1\)\)"):
            colorize_depth(torch.tensor([[1.0, float("nan")]]))

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match=r"`depth`: expected shape \(H, W\), got \(2, 3, 4\)"):
            colorize_depth(torch.ones(2, 3, 4))


class TestColorizeNormals:
    def test_standard_mapping(self):
        n = torch.tensor([[0.0, -1.0], [0.0, 0.0], [1.0, 0.0]]).view(3, 1, 2)
        out = colorize_normals(n)
        _rgb_ok(out, 1, 2)
        assert out[0, 0].tolist() == [0.5, 0.5, 1.0]
        assert out[0, 1].tolist() == [0.0, 0.5, 0.5]

    def test_numpy_channel_last_and_normalize(self):
        n = np.zeros((1, 1, 3))
        n[0, 0, 2] = 2.0
        assert colorize_normals(n, normalize=True)[0, 0].tolist() == [0.5, 0.5, 1.0]

    def test_unnormalised_input_rejected(self):
        with pytest.raises(ValueError, match="`normals`: expected values <= 1.001, got max 2"):
            colorize_normals(torch.tensor([0.0, 0.0, 2.0]).view(3, 1, 1))

    def test_wrong_channel_count_tensor(self):
        with pytest.raises(ValueError, match=r"`normals`: expected shape \(3, H, W\), got \(2, 4, 4\)"):
            colorize_normals(torch.zeros(2, 4, 4))

    def test_channel_first_numpy_explains_layout(self):
        with pytest.raises(ValueError, match=r"expected shape \(H, W, 3\), got \(3, 4, 5\) \(tensors are channel-first"):
            colorize_normals(np.zeros((3, 4, 5)))

    def test_nan(self):
        n = torch.zeros(3, 2, 2)
        n[1, 1, 0] = float("nan")
        with pytest.raises(ValueError, match=r"`normals`: expected finite values, got 1 NaN/Inf \(first at index \(1, 0, 1\)\)"):
            colorize_normals(n)


def _flow_at_angle(k, ncols=55):
    """A unit flow whose wheel position is exactly k (inverting a = atan2(-v, -u) / pi)."""
    theta = math.pi * (2.0 * k / (ncols - 1) - 1.0)
    return torch.tensor([-math.cos(theta), -math.sin(theta)]).view(2, 1, 1)


class TestColorizeFlow:
    def test_cardinal_directions_get_middlebury_hues(self):
        # image axes: u to the right, v down. Expected colours by hand from the wheel:
        # right -> k=0 red; down -> k=13.5 between RY entries 13 and 14 (G = 221, 238);
        # left -> k=27, CB entry 2 (G = 255 - floor(255*2/11) = 209); up -> k=40.5, between BM
        # entries 4 and 5 (R = floor(255*4/13) = 78, floor(255*5/13) = 98).
        flow = torch.tensor([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]]).view(2, 1, 4)
        out = colorize_flow(flow)
        _rgb_ok(out, 1, 4)
        np.testing.assert_allclose(out[0, 0], [1.0, 0.0, 0.0], atol=1e-6)
        np.testing.assert_allclose(out[0, 1], [1.0, (221 + 238) / 2 / 255, 0.0], atol=1e-6)
        np.testing.assert_allclose(out[0, 2], [0.0, 209 / 255, 1.0], atol=1e-6)
        np.testing.assert_allclose(out[0, 3], [(78 + 98) / 2 / 255, 0.0, 1.0], atol=1e-6)

    @pytest.mark.parametrize("k, rgb", [(15, (1, 1, 0)), (21, (0, 1, 0)), (25, (0, 1, 1)),
                                        (36, (0, 0, 1)), (49, (1, 0, 1))])
    def test_segment_starts_are_primary_and_secondary_colours(self, k, rgb):
        # segment lengths 15, 6, 4, 11, 13, 6 -> yellow at 15, green 21, cyan 25, blue 36, magenta 49
        np.testing.assert_allclose(colorize_flow(_flow_at_angle(k))[0, 0], rgb, atol=1e-5)

    def test_zero_flow_is_white(self):
        assert colorize_flow(torch.zeros(2, 3, 3)).tolist() == np.ones((3, 3, 3)).tolist()

    def test_saturation_by_magnitude_and_overflow_darkened(self):
        out = colorize_flow(np.array([[[0.5, 0.0], [2.0, 0.0]]]), max_mag=1.0)
        np.testing.assert_allclose(out[0, 0], [1.0, 0.5, 0.5], atol=1e-6)
        np.testing.assert_allclose(out[0, 1], [0.75, 0.0, 0.0], atol=1e-6)

    @settings(max_examples=25, deadline=None)
    @given(st.integers(0, 2**31 - 1), st.floats(0.1, 100.0))
    def test_default_scale_is_invariant_to_flow_magnitude(self, seed, scale):
        flow = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        a, b = colorize_flow(flow), colorize_flow(scale * flow)
        _rgb_ok(a, 3, 4)
        np.testing.assert_allclose(a, b, atol=1e-5)

    def test_numpy_channel_last_equals_tensor_channel_first(self):
        flow = torch.randn(2, 4, 5)
        np.testing.assert_array_equal(colorize_flow(flow), colorize_flow(flow.permute(1, 2, 0).numpy()))

    def test_three_channels_rejected(self):
        with pytest.raises(ValueError, match=r"`flow`: expected shape \(2, H, W\), got \(3, 4, 4\)"):
            colorize_flow(torch.zeros(3, 4, 4))

    def test_bad_max_mag(self):
        with pytest.raises(ValueError, match="`max_mag`: expected a positive finite number, got 0"):
            colorize_flow(torch.zeros(2, 4, 4), max_mag=0)


class TestFlowLegend:
    def test_centre_white_right_red_left_cyan_blue(self):
        key = flow_legend(33)
        _rgb_ok(key, 33, 33)
        assert key[16, 16].tolist() == [1.0, 1.0, 1.0]
        np.testing.assert_allclose(key[16, 32], [1.0, 0.0, 0.0], atol=1e-6)
        np.testing.assert_allclose(key[16, 0], [0.0, 209 / 255, 1.0], atol=1e-6)


class TestEmbeddingToRgb:
    def test_two_clusters_get_two_distinct_colours(self):
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
        emb = torch.empty(16, 8, 8)
        emb[:, :, :4] = a[:, None, None]
        emb[:, :, 4:] = b[:, None, None]
        emb += 0.01 * torch.randn(16, 8, 8, generator=g)
        out = embedding_to_rgb(emb)
        _rgb_ok(out, 8, 8)
        left, right = out[:, :4].reshape(-1, 3), out[:, 4:].reshape(-1, 3)
        gap = np.linalg.norm(left.mean(0) - right.mean(0))
        spread = max(np.linalg.norm(left - left.mean(0), axis=1).max(), np.linalg.norm(right - right.mean(0), axis=1).max())
        # the first component separates the clusters end to end (red 0 on one side, 1 on the other);
        # the noise directions share its scale, so they barely tint either cluster
        assert gap > 0.9 and spread < 0.1 * gap

    def test_ramp_along_one_direction_maps_linearly_to_red(self):
        v = torch.tensor([0.6, 0.8, 0.0])
        emb = (torch.arange(5.0)[None, None, :] * v[:, None, None]).expand(3, 2, 5)   # (D, H, W)
        out = embedding_to_rgb(emb)
        np.testing.assert_allclose(out[0, :, 0], [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)
        np.testing.assert_allclose(out[..., 1:], 0.5)   # no other variance

    @settings(max_examples=20, deadline=None)
    @given(st.integers(0, 2**31 - 1))
    def test_colour_distances_proportional_to_embedding_distances_for_d3(self, seed):
        # with D = 3 the PCA basis is a rotation (up to signs) and the scale is shared by all three
        # channels, so pairwise distances are preserved up to one factor
        emb = torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        rgb = embedding_to_rgb(emb).reshape(-1, 3).astype(np.float64)
        e = emb.reshape(3, -1).T.numpy()
        d_rgb = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
        d_emb = np.linalg.norm(e[:, None] - e[None], axis=-1)
        ratio = d_rgb[d_emb > 0] / d_emb[d_emb > 0]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)

    def test_numpy_channel_last_equals_tensor(self):
        emb = torch.randn(5, 4, 6)
        np.testing.assert_allclose(embedding_to_rgb(emb), embedding_to_rgb(emb.permute(1, 2, 0).numpy()), atol=1e-6)

    def test_unknown_method(self):
        with pytest.raises(ValueError, match=r"`method`: expected one of \('pca',\), got 'tsne'"):
            embedding_to_rgb(torch.zeros(4, 2, 2), method="tsne")

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match=r"`embeddings`: expected shape \(D, H, W\), got \(4, 4\)"):
            embedding_to_rgb(torch.zeros(4, 4))


class TestShowGrid:
    def test_one_axes_per_image_with_titles(self):
        imgs = [torch.rand(3, 6, 8), np.zeros((6, 8)), torch.rand(1, 6, 8), np.ones((6, 8, 3)), torch.rand(6, 8)]
        before = plt.get_fignums()
        fig = show_grid(imgs, titles=list("abcde"), ncols=2, suptitle="grid")
        assert isinstance(fig, Figure) and len(fig.axes) == 5
        assert [ax.get_title() for ax in fig.axes] == list("abcde")
        assert plt.get_fignums() == before   # built outside pyplot: nothing to close

    def test_batch_tensor_and_default_columns(self):
        fig = show_grid(torch.rand(6, 3, 4, 4))
        assert len(fig.axes) == 6
        xs = sorted({round(ax.get_position().x0, 3) for ax in fig.axes})
        assert len(xs) == 4   # default ncols = min(n, 4)

    def test_jupyter_shows_it_as_png_without_pyplot(self):
        # the inline backend's PNG printer only exists once pyplot has loaded a backend
        png = show_grid([np.zeros((4, 4))])._repr_png_()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"

    def test_book_dpi_and_style_fonts(self):
        fig = show_grid([np.zeros((4, 4))], titles=["a"])
        assert fig.dpi == 110 >= 110  # issue 11: >= 110 dpi in the book
        assert fig.axes[0].title.get_fontsize() == pb_viz.STYLE["axes.titlesize"]

    def test_rgb_out_of_range_suggests_normalize(self):
        with pytest.raises(ValueError, match=r"`images\[1\] \(RGB; pass normalize=True to rescale\)`: expected values <= 1.0"):
            show_grid([np.zeros((4, 4)), np.full((4, 4, 3), 2.0)])

    def test_titles_length(self):
        with pytest.raises(ValueError, match=r"`titles`: expected 2 titles \(one per image\), got 1"):
            show_grid([np.zeros((4, 4))] * 2, titles=["a"])

    def test_bad_image_named_by_index(self):
        with pytest.raises(ValueError, match=r"`images\[0\]`: expected shape"):
            show_grid([torch.zeros(2, 2, 2, 2, 2)])


class TestPlotHistory:
    def test_history_epochs_on_x_axis_including_sparse_metrics(self):
        h = History(records=[{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5, "miou": 0.3},
                             {"epoch": 3, "train_loss": 0.4}, {"epoch": 4, "train_loss": 0.3, "miou": 0.6}])
        fig = plot_history(h, ["train_loss", "miou"])
        assert isinstance(fig, Figure) and len(fig.axes) == 2
        x, y = fig.axes[1].lines[0].get_data()
        assert list(x) == [2, 4] and list(y) == [0.3, 0.6]

    def test_tuple_shares_a_panel_and_default_keys_skip_epoch_and_time(self):
        h = History(records=[{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "time": 0.1},
                             {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7, "time": 0.2}])
        assert len(plot_history(h, [("train_loss", "val_loss")]).axes[0].lines) == 2
        assert [ax.get_title() for ax in plot_history(h).axes] == ["train_loss", "val_loss"]

    def test_ncols_wraps_panels_into_rows_of_the_given_width(self):
        h = {k: [1.0, 0.5, 0.25] for k in "abcde"}
        fig = plot_history(h, list("abcde"), ncols=3, size=(2.0, 1.5))
        assert [ax.get_title() for ax in fig.axes] == list("abcde")  # the empty sixth axes is gone
        assert tuple(fig.get_size_inches()) == (6.0, 3.0)  # 3 panels wide, 2 rows
        rows = sorted({round(ax.get_position().y0, 3) for ax in fig.axes})
        assert len(rows) == 2
        assert tuple(plot_history(h, ["a", "b"], ncols=5, size=(2.0, 1.5)).get_size_inches()) == (4.0, 1.5)
        with pytest.raises(ValueError, match="`ncols`"):
            plot_history(h, ["a"], ncols=0)

    def test_unknown_key(self):
        with pytest.raises(ValueError, match=r"`keys`: expected one of \('loss',\), got 'acc'"):
            plot_history({"loss": [1.0, 0.5]}, "acc")


def test_demo_grid_shows_every_panel_in_its_place():
    """One figure of every colouriser on a synthetic scene: each axes holds its own panel, under its
    title, and the rendered pixels of that axes have the panel's mean colour (nothing dropped,
    swapped or left blank)."""
    h = w = 48
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    image = np.stack([x / w, y / h, 0.5 * np.ones((h, w))], axis=-1)
    disc = np.hypot(x - 24, y - 24) < 14
    labels = disc.astype(np.int64) + (x > 36) * 2
    depth = 1.0 + y / h * 4
    normals = np.stack([(x - 24) / 30, (y - 24) / 30, np.ones((h, w))], -1)
    flow = np.stack([-(y - 24), x - 24], -1)   # rotation
    emb = np.concatenate([np.stack([disc, ~disc, x > 36], -1).astype(float), 0.05 * np.random.default_rng(0).random((h, w, 5))], -1)
    panels = [overlay_mask(image, labels), draw_contours(image, disc), colorize_depth(depth),
              colorize_normals(normals, normalize=True), colorize_flow(flow), embedding_to_rgb(emb)]
    titles = ["overlay", "contours", "depth", "normals", "flow", "embedding"]
    fig = show_grid(panels, titles=titles, ncols=3)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3] / 255.0
    height = pixels.shape[0]
    assert [ax.get_title() for ax in fig.axes] == titles
    means = []
    for ax, panel in zip(fig.axes, panels):
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), panel)
        x0, y0, x1, y1 = ax.get_window_extent().extents  # display pixels, origin at the bottom left
        region = pixels[int(height - y1) + 2: int(height - y0) - 2, int(x0) + 2: int(x1) - 2]
        assert region.shape[0] > 100 and region.shape[1] > 100
        means.append(region.mean((0, 1)))
        np.testing.assert_allclose(means[-1], panel.mean((0, 1)), atol=0.02)
    assert min(np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1:]) > 0.02  # panels differ


class TestStyle:
    def test_use_style_sets_book_dpi_and_fonts_globally(self):
        with matplotlib.rc_context():
            pb_viz.use_style()
            fig = plt.figure()
            try:
                assert fig.dpi == pb_viz.DPI >= 110
                assert matplotlib.rcParams["axes.titlesize"] >= 10
            finally:
                plt.close(fig)

    def test_style_context_restores_previous_settings(self):
        with matplotlib.rc_context({"font.size": 5.0}):
            with pb_viz.style():
                assert matplotlib.rcParams["font.size"] == pb_viz.STYLE["font.size"]
            assert matplotlib.rcParams["font.size"] == 5.0

    def test_page_width_fits_the_book_column_at_book_dpi(self):
        assert pb_viz.PAGE_WIDTH * pb_viz.DPI <= 700  # ~690 px text column of the book's theme


class TestLabelLegend:
    def test_patches_use_colorize_labels_colours(self):
        ax = Figure().subplots()
        leg = pb_viz.label_legend(ax, ["void", "wire", "pole"])
        colours = np.array([h.get_facecolor()[:3] for h in leg.legend_handles])
        np.testing.assert_allclose(colours, label_colors(3), atol=1e-6)
        assert [t.get_text() for t in leg.get_texts()] == ["void", "wire", "pole"]

    def test_figure_legend_and_bad_colours(self):
        fig = Figure()
        fig.subplots()
        assert pb_viz.label_legend(fig, ["a", "b"]) in fig.legends
        with pytest.raises(ValueError, match="`colors`: expected shape \\(2, 3\\)"):
            pb_viz.label_legend(fig.axes[0], ["a", "b"], colors=[[0, 0, 0]])
        with pytest.raises(ValueError, match="`names`"):
            pb_viz.label_legend(fig.axes[0], [])
