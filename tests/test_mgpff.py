"""Multigrid Predictive Filter Flow (Chapter 8): oracle multigrid, losses, model, propagation, bad input."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from pixelbook.filterflow import multigrid as mg
from pixelbook.filterflow.multigrid import (MultigridOutput, MultigridPFF, MultigridPFFLoss, charbonnier,
                                            coefficient_ratio, filter_smoothness_loss, flow_smoothness_loss,
                                            flow_warp_loss, forward_backward_loss, image_pyramid, max_displacement,
                                            mgpff_loss, multigrid_apply, multigrid_flow, photometric_loss,
                                            propagate_labels)
from pixelbook.ops import apply_filter_flow, expected_flow, flow_warp

K = 5
R = K // 2


def one_hot_filters(dx: int, dy: int, n: int, h: int, w: int, k: int = K) -> torch.Tensor:
    """(n, k*k, h, w) one-hot filters reading the input at offset (dx, dy)."""
    r = k // 2
    f = torch.zeros(n, k * k, h, w)
    f[:, (dy + r) * k + (dx + r)] = 1.0
    return f


def decompose(v: int, levels: int = 3, r: int = R) -> tuple[int, ...]:
    """Digits c_0 (finest) … c_{L-1} with |c_l| <= r, sum c_l 2^l = v, all of the sign of v.

    Same-sign digits keep every intermediate image of the filter product inside the frame wherever
    the final result is (a mixed-sign path such as 2 = 8 - 4 - 2 reads outside and zero padding
    loses those pixels near the border).
    """
    for cs in itertools.product(range(-r, r + 1), repeat=levels):
        if sum(c * 2 ** l for l, c in enumerate(cs)) == v and all(c * v >= 0 for c in cs):
            return cs
    raise ValueError(f"{v} is not reachable")


def oracle_levels(vx: int, vy: int, n: int, H: int, W: int, levels: int = 3) -> list[torch.Tensor]:
    """Coarse-to-fine one-hot filters whose multigrid product reads the input at p + (vx, vy)."""
    cx, cy = decompose(vx, levels), decompose(vy, levels)
    return [one_hot_filters(cx[l], cy[l], n, H >> l, W >> l) for l in reversed(range(levels))]


def translate(x: torch.Tensor, vx: int, vy: int) -> torch.Tensor:
    """out(p) = x(p + (vx, vy)), zero outside."""
    out = torch.zeros_like(x)
    H, W = x.shape[-2:]
    ys, yd = (slice(vy, H), slice(0, H - vy)) if vy >= 0 else (slice(0, H + vy), slice(-vy, H))
    xs, xd = (slice(vx, W), slice(0, W - vx)) if vx >= 0 else (slice(0, W + vx), slice(-vx, W))
    out[..., yd, xd] = x[..., ys, xs]
    return out


class TestMultigridArithmetic:
    def test_reachable_displacements_are_exactly_the_interval(self):
        for L, r in [(1, 2), (2, 2), (3, 2), (3, 1), (2, 5)]:
            reach = {sum(c * 2 ** l for l, c in enumerate(cs)) for cs in itertools.product(range(-r, r + 1), repeat=L)}
            D = max_displacement(2 * r + 1, L)
            assert reach == set(range(-D, D + 1))
        assert max_displacement(5, 3) == 14 and max_displacement(11, 5) == 155

    def test_15_pixels_is_out_of_reach_of_three_5x5_levels(self):
        with pytest.raises(ValueError):
            decompose(15)

    @pytest.mark.parametrize("L, expected", [(1, 1.0), (2, 1.25), (3, 1.3125), (4, 1.328125), (5, 1.33203125)])
    def test_coefficient_ratio(self, L, expected):
        assert coefficient_ratio(L) == expected
        assert coefficient_ratio(L) < 4 / 3

    @pytest.mark.parametrize("L", [1, 2, 3, 4])
    def test_coefficient_ratio_counts_the_models_filters(self, L):
        model = MultigridPFF(kernel_size=3, levels=L, width=4, embed_dim=4, head_width=4)
        out = model(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
        total = sum(T.numel() for T in out.filters)
        assert total / out.filters[-1].numel() == coefficient_ratio(L)


class TestOracleMultigrid:
    @pytest.mark.parametrize("prewarp", ["filter", "flow"])
    def test_three_levels_recover_13_minus_9_exactly(self, prewarp):
        torch.manual_seed(0)
        B = torch.rand(2, 3, 64, 64)
        levels = oracle_levels(13, -9, 2, 64, 64)
        assert [tuple(T.shape[-2:]) for T in levels] == [(16, 16), (32, 32), (64, 64)]
        out = multigrid_apply(B, levels, prewarp=prewarp)
        expected = translate(B, 13, -9)
        interior = (..., slice(9, 64), slice(0, 64 - 13))
        assert torch.equal(out[interior], expected[interior])

    def test_composed_flow_is_the_translation_everywhere(self):
        levels = oracle_levels(13, -9, 1, 64, 64)
        flow = multigrid_flow([expected_flow(T) for T in levels])
        assert torch.equal(flow[:, 0], torch.full((1, 64, 64), 13.0))
        assert torch.equal(flow[:, 1], torch.full((1, 64, 64), -9.0))

    def test_one_level_cannot_and_the_product_is_not_a_sum_of_levels(self):
        # The finest level alone moves by c_0 only; the product of all three is needed.
        levels = oracle_levels(13, -9, 1, 64, 64)
        assert expected_flow(levels[-1])[0, :, 0, 0].tolist() == [1.0, -1.0]

    def test_filter_product_equals_dilated_application(self):
        # Level at 1/4 upsampled by nearest neighbour = the same weights over 4x4 blocks, taps 4 px apart.
        torch.manual_seed(1)
        x = torch.rand(1, 2, 16, 16)
        T = torch.rand(1, 9, 4, 4).softmax(1)
        ours = multigrid_apply(x, [T, one_hot_filters(0, 0, 1, 16, 16, 3)], prewarp="filter")
        up = T.repeat_interleave(4, 2).repeat_interleave(4, 3)
        torch.testing.assert_close(ours, apply_filter_flow(x, up, dilation=4))


class TestLosses:
    def test_forward_backward_zero_for_a_consistent_translation(self):
        f = torch.zeros(2, 2, 16, 16)
        f[:, 0], f[:, 1] = 3.0, -2.0
        assert float(forward_backward_loss(f, -f, epsilon=0.0)) == 0.0
        assert float(forward_backward_loss(f, -f)) == pytest.approx(1e-3, abs=1e-9)  # phi(0) = epsilon

    def test_forward_backward_hand_value_for_an_inconsistent_pair(self):
        f = torch.zeros(1, 2, 8, 8)
        f[:, 0] = 1.0
        assert float(forward_backward_loss(f, f, epsilon=0.0)) == pytest.approx(2.0)
        # a backward flow that is right on half the image: residual 2 there, 0 elsewhere
        b = -f.clone()
        b[:, 0, :, 4:] = 1.0  # p + f(p) lands in columns 1..7 (inside); columns 4..7 of b are wrong
        inside = torch.arange(8) + 1 <= 7
        wrong = ((torch.arange(8) + 1) >= 4) & inside
        assert float(forward_backward_loss(f, b, epsilon=0.0)) == pytest.approx(2.0 * wrong.sum().item() / inside.sum().item())

    def test_normalized_units_divide_by_the_size_minus_one(self):
        torch.manual_seed(0)
        f = torch.randn(1, 2, 9, 17) * 2
        b = torch.randn(1, 2, 9, 17)
        scale = torch.tensor([1 / 16, 1 / 8]).view(1, 2, 1, 1)
        pix = (f + flow_warp(b, f, padding="border")[0]) * scale
        inside = flow_warp(b, f)[1]
        expected = (torch.sqrt((pix ** 2).sum(1)) * inside).sum() / inside.sum()
        torch.testing.assert_close(forward_backward_loss(f, b, epsilon=0.0, normalize=True), expected)
        torch.testing.assert_close(flow_smoothness_loss(f, normalize=True), flow_smoothness_loss(f * scale))

    def test_photometric_and_flow_losses_are_epsilon_for_the_oracle(self):
        torch.manual_seed(0)
        B = torch.rand(1, 3, 16, 16)
        A = translate(B, 2, -1)
        T = one_hot_filters(2, -1, 1, 16, 16)
        valid = torch.zeros(1, 16, 16, dtype=torch.bool)
        valid[:, 1:, :14] = True
        rec = apply_filter_flow(B, T)
        assert float(charbonnier(A - rec, valid=valid)) == pytest.approx(1e-3, rel=1e-5)
        assert float(photometric_loss(A, B, T)) == pytest.approx(1e-3, rel=1e-5)  # zero padding agrees too
        assert float(flow_warp_loss(A, B, expected_flow(T))) == pytest.approx(1e-3, rel=1e-5)

    def test_flow_smoothness_hand_values(self):
        f = torch.full((1, 2, 4, 5), 7.0)
        assert float(flow_smoothness_loss(f)) == 0.0
        f[:, 1, 2:, :] = 9.0  # a step of 2 in y, 5 of the 2*3*5 y-differences
        assert float(flow_smoothness_loss(f)) == pytest.approx(2.0 * 5 / 30)

    def test_filter_smoothness_is_the_mean_over_ranges_not_the_last_range(self):
        torch.manual_seed(0)
        X = torch.rand(2, 9, 12, 12)
        single = [filter_smoothness_loss(X, max_range=2) * 1]  # range 1 alone
        # range d alone = R * loss(R) - (R - 1) * loss(R - 1) ... check by direct computation
        def one_range(d, eps=1e-3):
            N, K, H, W = X.shape
            h = torch.sqrt((X[..., d:] - X[..., :-d]) ** 2 + eps ** 2).sum()
            v = torch.sqrt((X[..., d:, :] - X[..., :-d, :]) ** 2 + eps ** 2).sum()
            return (h + v) / (N * K * H * W)
        fixed = filter_smoothness_loss(X, max_range=5)
        torch.testing.assert_close(fixed, sum(one_range(d) for d in range(1, 5)) / 4)
        released = one_range(4) / 4  # what the released Loss4FilterSmoothMultiScale returns
        assert not torch.allclose(fixed, released)
        torch.testing.assert_close(single[0], one_range(1))

    def test_gradcheck_float64(self):
        torch.manual_seed(0)
        f = (torch.rand(1, 2, 5, 6, dtype=torch.float64) * 2 - 1).mul(1.3).requires_grad_()
        b = (torch.rand(1, 2, 5, 6, dtype=torch.float64) * 2 - 1).requires_grad_()
        assert torch.autograd.gradcheck(lambda f, b: forward_backward_loss(f, b), (f, b))
        x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x: charbonnier(x), (x,))
        assert torch.autograd.gradcheck(lambda s, fl: flow_warp(s, fl)[0], (x, f))
        assert torch.autograd.gradcheck(lambda fl: flow_smoothness_loss(fl), (f,))

    def test_module_equals_function(self):
        torch.manual_seed(0)
        model = MultigridPFF(kernel_size=3, levels=2, width=4, embed_dim=4, head_width=4)
        a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
        l1 = mgpff_loss(model, a, b, flow_weight=2.0, fb_weight=0.5, smooth_weight=0.1)
        l2 = MultigridPFFLoss(flow_weight=2.0, fb_weight=0.5, smooth_weight=0.1)(model, a, b)
        torch.testing.assert_close(l1, l2)
        t = mg.mgpff_terms(model, a, b)
        torch.testing.assert_close(l1, t["rec"] + 2.0 * t["flow"] + 0.5 * t["fb"] + 0.1 * t["smooth"])
        # one direction, one level by hand
        one = MultigridPFF(kernel_size=3, levels=1, width=4, embed_dim=4, head_width=4)
        out = one(a, b)
        f, r = out.flows[0], expected_flow(out.reverse_filters[0])
        by_hand = (photometric_loss(a, b, out.filters[0]) + flow_warp_loss(a, b, f)
                   + forward_backward_loss(f, r, normalize=True) + flow_smoothness_loss(f, normalize=True))
        torch.testing.assert_close(mgpff_loss(one, a, b, both_directions=False), by_hand)

    def test_loss_trains_the_shared_network(self):
        torch.manual_seed(0)
        model = MultigridPFF(kernel_size=3, levels=2, width=4, embed_dim=4, head_width=4)
        loss = mgpff_loss(model, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


class TestModel:
    def test_shared_weights_parameter_count_does_not_depend_on_levels(self):
        counts = {sum(p.numel() for p in MultigridPFF(levels=L).parameters()) for L in (1, 2, 3, 4)}
        assert len(counts) == 1

    def test_coarsest_level_is_the_single_level_network_on_the_downsampled_pair(self):
        torch.manual_seed(0)
        model = MultigridPFF(levels=3).eval()
        a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
        out = model(a, b)
        T, _ = model.pair_filters(F.avg_pool2d(a, 4), F.avg_pool2d(b, 4))
        torch.testing.assert_close(out.filters[0], T)

    def test_swapping_the_frames_swaps_the_pair_filters(self):
        torch.manual_seed(0)
        model = MultigridPFF(levels=1, width=4, embed_dim=4, head_width=4)
        a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
        f_ab, r_ab = model.pair_filters(a, b)
        f_ba, r_ba = model.pair_filters(b, a)
        torch.testing.assert_close(f_ab, r_ba)
        torch.testing.assert_close(r_ab, f_ba)

    @pytest.mark.parametrize("prewarp", ["flow", "filter"])
    def test_multigrid_apply_reproduces_the_models_reconstruction(self, prewarp):
        torch.manual_seed(0)
        model = MultigridPFF(levels=3, width=4, embed_dim=4, head_width=4, prewarp=prewarp)
        a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
        out = model(a, b)
        torch.testing.assert_close(multigrid_apply(b, out.filters, prewarp=prewarp), out.reconstruction)
        assert sum(T.sum(1).sub(1).abs().max() for T in out.filters) < 1e-5  # sum-to-one

    def test_detached_levels_block_gradients_to_coarser_predictions(self):
        torch.manual_seed(0)
        for detach, expect_grad in ((True, False), (False, True)):
            model = MultigridPFF(levels=2, width=4, embed_dim=4, head_width=4, detach_levels=detach)
            out = model(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
            out.filters[0].retain_grad()
            out.reconstruction.sum().backward()
            assert (out.filters[0].grad is not None and bool(out.filters[0].grad.abs().sum() > 0)) == expect_grad

    def test_pyramid_is_average_pooling(self):
        x = torch.arange(16.0).view(1, 1, 4, 4)
        coarse, fine = image_pyramid(x, 2)
        assert torch.equal(fine, x) and coarse[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


class _OracleModel:
    """Stands in for MultigridPFF: every call reads the source at p + (vx, vy) (whole-frame translation)."""

    def __init__(self, vx, vy, levels=3, prewarp="filter"):
        self.v, self.levels, self.prewarp = (vx, vy), levels, prewarp

    def __call__(self, target, source):
        N, _, H, W = target.shape
        filters = oracle_levels(*self.v, N, H, W, self.levels)
        flows = [expected_flow(T) for T in filters]
        return MultigridOutput(filters=filters, reverse_filters=filters, flows=flows, flow=multigrid_flow(flows),
                               prewarp=self.prewarp)


class TestPropagation:
    @pytest.mark.parametrize("mode", ["filter", "flow"])
    def test_oracle_filters_move_a_mask_exactly(self, mode):
        torch.manual_seed(0)
        T, H, W, v = 5, 64, 64, (3, -2)  # content moves by v per frame
        big = torch.rand(3, H + 40, W + 40)
        mask_big = torch.zeros(H + 40, W + 40, dtype=torch.long)
        mask_big[40:60, 30:55] = 1
        mask_big[25:32, 60:70] = 2
        # frame t shows the canvas from origin (20 - t*vy, 20 - t*vx): content at p moves to p + v
        frames = torch.stack([big[:, 20 - t * v[1]: 20 - t * v[1] + H, 20 - t * v[0]: 20 - t * v[0] + W] for t in range(T)])
        truth = torch.stack([mask_big[20 - t * v[1]: 20 - t * v[1] + H, 20 - t * v[0]: 20 - t * v[0] + W] for t in range(T)])
        model = _OracleModel(-v[0], -v[1])  # frame t reads frame t-1 at p - v
        out = propagate_labels(model, frames, truth[0], num_classes=3, mode=mode)
        assert out.dtype == torch.long and set(out.unique().tolist()) <= {0, 1, 2}
        assert torch.equal(out, truth)

    def test_window_and_first_frame_references(self):
        calls = []

        class Recorder(_OracleModel):
            def __call__(self, target, source):
                calls.append(source.shape[0])
                return super().__call__(target, source)

        frames = torch.rand(6, 3, 16, 16)
        labels = torch.zeros(16, 16, dtype=torch.long)
        labels[4:10, 4:10] = 1
        out = propagate_labels(Recorder(0, 0, levels=2), frames, labels, window=3, use_first=True)
        assert calls == [1, 2, 3, 4, 4]  # refs {0}, {0,1}, {0,1,2}, {0,1,2,3}, {0,2,3,4}
        assert torch.equal(out, labels.expand(6, -1, -1))  # zero motion keeps the mask


class TestBadInput:
    def test_model_arguments(self):
        with pytest.raises(ValueError, match="`kernel_size`: expected an odd"):
            MultigridPFF(kernel_size=4)
        with pytest.raises(ValueError, match="`levels`"):
            MultigridPFF(levels=0)
        with pytest.raises(ValueError, match="`prewarp`"):
            MultigridPFF(prewarp="bilinear")
        with pytest.raises(TypeError, match="`levels`"):
            MultigridPFF(levels=2.5)

    def test_forward_inputs(self):
        model = MultigridPFF(levels=3, width=4, embed_dim=4, head_width=4)
        with pytest.raises(ValueError, match="divisible by 2\\^\\(levels-1\\) = 4"):
            model(torch.rand(1, 3, 30, 32), torch.rand(1, 3, 30, 32))
        with pytest.raises(ValueError, match="`source`: expected H=32"):
            model(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 16, 32))
        with pytest.raises(ValueError, match="`target`: expected C=3"):
            model(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
        bad = torch.rand(1, 3, 32, 32)
        bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="`source`: expected finite"):
            model(torch.rand(1, 3, 32, 32), bad)
        with pytest.raises(TypeError, match="`target`"):
            model(torch.zeros(1, 3, 32, 32, dtype=torch.long), torch.rand(1, 3, 32, 32))

    def test_loss_and_propagation_arguments(self):
        f = torch.zeros(1, 2, 8, 8)
        with pytest.raises(ValueError, match="`backward`: expected H=8"):
            forward_backward_loss(f, torch.zeros(1, 2, 4, 8))
        with pytest.raises(ValueError, match="`epsilon`"):
            forward_backward_loss(f, f, epsilon=-1.0)
        with pytest.raises(ValueError, match="`max_range`"):
            filter_smoothness_loss(torch.rand(1, 9, 8, 8), max_range=1)
        with pytest.raises(ValueError, match="`fb_weight`"):
            mgpff_loss(MultigridPFF(levels=1), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), fb_weight=-1)
        frames, labels = torch.rand(3, 3, 16, 16), torch.zeros(16, 16, dtype=torch.long)
        model = _OracleModel(0, 0, levels=2)
        with pytest.raises(ValueError, match="`threshold`"):
            propagate_labels(model, frames, labels, threshold=0.0)
        with pytest.raises(ValueError, match="`window`"):
            propagate_labels(model, frames, labels, window=0)
        with pytest.raises(TypeError, match="`labels`"):
            propagate_labels(model, frames, labels.float())
        with pytest.raises(ValueError, match="`labels`: expected H=16"):
            propagate_labels(model, frames, labels[:8])
        with pytest.raises(ValueError, match="`mode`"):
            propagate_labels(model, frames, labels, mode="nearest")
        with pytest.raises(ValueError, match="`level_filters`: expected the last"):
            multigrid_apply(torch.rand(1, 3, 16, 16), [torch.rand(1, 25, 8, 8)])
        with pytest.raises(ValueError, match=r"`level_filters\[0\]`: expected k\*k"):
            multigrid_apply(torch.rand(1, 3, 16, 16), [torch.rand(1, 24, 16, 16)])


def test_module_names_are_exported():
    for name in mg.__all__:
        assert hasattr(mg, name)


class TestExperiment:
    def test_identity_arm_scores_the_baselines(self):
        from pixelbook.experiments.mgpff import EXPERIMENT as exp  # registered once its notebook exists

        run = exp.run("identity", seed=0, scale="smoke", cache=False)
        m = run.metrics
        assert m["rec.ratio"] == 1.0 and m["stereo.ratio"] == 1.0
        assert m["flow.epe_sprites"] > m["flow.epe_all"] > 0.5  # sprites move faster than the background
        assert 0.0 <= m["vos.J_mean"] <= 1.0 and m["longrange.m3"] > m["longrange.m2"] > 0

    def test_untrained_arm_is_the_trained_arms_starting_point(self):
        from pixelbook.experiments.mgpff import EXPERIMENT as exp
        from pixelbook.runtime import seed_all

        cfg_u, cfg_t = exp.run_config("untrained", 0, "smoke"), exp.run_config("mgpff", 0, "smoke")
        assert cfg_u.train is None and dict(cfg_u.model) == dict(cfg_t.model)
        seed_all(0)
        a = exp.model(cfg_t, None)
        seed_all(0)
        b = exp.model(cfg_u, None)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))

    def test_stereo_pair_ground_truth_aligns_the_images(self):
        from pixelbook.experiments.mgpff import stereo_pair

        s = stereo_pair()
        assert s["left"].shape == (1, 3, 100, 148) and s["disparity"].shape == (1, 100, 148)
        flow = torch.zeros(1, 2, 100, 148)
        flow[:, 0] = -s["disparity"]
        warped, inside = flow_warp(s["right"], flow)
        ok = s["valid"] & inside
        err_gt = (warped - s["left"]).abs().mean(1)[ok].mean()
        err_copy = (s["right"] - s["left"]).abs().mean(1)[ok].mean()
        assert err_gt < 0.5 * err_copy
        d = s["disparity"][s["valid"]]
        assert 1.0 < float(d.min()) and float(d.max()) < max_displacement(5, 3)  # inside three 5x5 levels


def test_propagation_of_several_clips_equals_one_by_one():
    torch.manual_seed(0)
    model = MultigridPFF(levels=2, width=4, embed_dim=4, head_width=4).eval()
    frames = torch.rand(3, 4, 3, 16, 16)
    labels = torch.zeros(3, 16, 16, dtype=torch.long)
    labels[:, 4:12, 3:9] = 1
    labels[1, 0:3, 0:16] = 2
    for kw in ({}, {"window": 2, "use_first": True, "threshold": 0.3}, {"mode": "flow", "threshold": 0.5}):
        together = propagate_labels(model, frames, labels, num_classes=3, **kw)
        apart = torch.stack([propagate_labels(model, frames[n], labels[n], num_classes=3, **kw) for n in range(3)])
        assert torch.equal(together, apart)


class TestCorrelationHead:
    def test_local_correlation_peaks_at_the_displacement(self):
        torch.manual_seed(0)
        a = torch.randn(1, 8, 12, 12)
        a = a / a.norm(dim=1, keepdim=True)
        b = translate(a, -2, 1)  # b(p + (2, -1)) = a(p)
        c = mg._local_correlation(a, b, 5)  # tap t: <a(p), b(p + t)>
        tap = (-1 + 2) * 5 + (2 + 2)
        inner = (slice(None), slice(None), slice(2, 10), slice(2, 10))
        assert bool((c[inner].argmax(1) == tap).all())
        torch.testing.assert_close(c[:, tap][..., 2:10, 2:10], torch.ones(1, 8, 8))

    def test_both_heads_give_softmax_filters_and_swap_with_the_frames(self):
        torch.manual_seed(0)
        a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
        for head in ("correlation", "concat"):
            model = MultigridPFF(levels=1, width=4, embed_dim=4, head_width=4, head=head)
            f_ab, r_ab = model.pair_filters(a, b)
            f_ba, r_ba = model.pair_filters(b, a)
            torch.testing.assert_close(f_ab, r_ba)
            torch.testing.assert_close(f_ab.sum(1), torch.ones(1, 8, 8))
        with pytest.raises(ValueError, match="`head`"):
            MultigridPFF(head="cost_volume")

    def test_concat_head_starts_from_uniform_filters(self):
        model = MultigridPFF(levels=1, width=4, embed_dim=4, head_width=4, head="concat")
        f, _ = model.pair_filters(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
        torch.testing.assert_close(f, torch.full_like(f, 1 / 25))
