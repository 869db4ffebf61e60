"""pixelbook.filterflow.multigrid against independent computations: the multigrid arithmetic at its
boundaries, the composed flow and the operator product by hand, the encoder and the heads layer by
layer, the losses in hand-computed cases (one pixel, one range, one level, empty masks), the
training terms rebuilt from the model's outputs, label propagation and the long-range error on
hand-made clips, and the exact error message of every bad argument.
Complements tests/test_mgpff.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pixelbook.filterflow import multigrid as mg
from pixelbook.filterflow.multigrid import (MultigridOutput, MultigridPFF, MultigridPFFLoss, charbonnier,
                                            filter_smoothness_loss, flow_smoothness_loss, flow_warp_loss,
                                            forward_backward_loss, image_pyramid, max_displacement, mgpff_loss,
                                            mgpff_terms, multigrid_apply, multigrid_flow, photometric_loss,
                                            propagate_labels)
from pixelbook.ops import apply_filter_flow, expected_flow, flow_warp

TINY = dict(width=3, embed_dim=4, head_width=5)


def one_hot(dx: int, dy: int, n: int, h: int, w: int, k: int = 3) -> torch.Tensor:
    """(n, k*k, h, w) filters reading the input at offset (dx, dy)."""
    r = k // 2
    f = torch.zeros(n, k * k, h, w)
    f[:, (dy + r) * k + (dx + r)] = 1.0
    return f


def random_filters(n, h, w, k=3, seed=0, sharp=3.0):
    g = torch.Generator().manual_seed(seed)
    return (sharp * torch.randn(n, k * k, h, w, generator=g)).softmax(1)


def busy_model(seed=0, **kw):
    """A small model whose last head layer is random, so that its filters are far from uniform."""
    torch.manual_seed(seed)
    model = MultigridPFF(**{**TINY, **kw})
    torch.nn.init.normal_(model.head[-1].weight, std=0.5)
    torch.nn.init.normal_(model.head[-1].bias, std=0.5)
    return model


def test_constants():
    assert mg.PREWARPS == ("flow", "filter") and mg.HEADS == ("correlation", "concat")
    assert mg.CHARBONNIER_EPSILON == 1e-3 and mg.MASK_THRESHOLD == 0.8


# --------------------------------------------------------------------------------------------------
# Multigrid arithmetic


def test_max_displacement_at_its_boundaries():
    assert max_displacement(1, 4) == 0  # a 1x1 filter never moves
    assert max_displacement(3, 1) == 1 and max_displacement(3, 2) == 3 and max_displacement(7, 2) == 9
    assert isinstance(max_displacement(5, 3), int)
    with pytest.raises(ValueError, match=r"^`kernel_size`: expected an integer in \[1, inf\], got 0$"):
        max_displacement(0, 2)
    with pytest.raises(ValueError, match=r"^`levels`: expected an integer in \[1, inf\], got 0$"):
        max_displacement(3, 0)
    with pytest.raises(ValueError, match=r"^`kernel_size`: expected an odd integer, got 4$"):
        max_displacement(4, 2)
    with pytest.raises(TypeError, match="^`levels`"):
        max_displacement(3, 2.0)


def test_coefficient_ratio_needs_a_level():
    assert mg.coefficient_ratio(2) == 1.25 and isinstance(mg.coefficient_ratio(1), float)
    with pytest.raises(ValueError, match=r"^`levels`: expected an integer in \[1, inf\], got 0$"):
        mg.coefficient_ratio(0)


def test_image_pyramid_levels_and_sizes():
    x = torch.rand(2, 3, 8, 12)
    (only,) = image_pyramid(x, 1)
    assert only is x
    p = image_pyramid(x, 3)
    assert [t.shape[-2:] for t in p] == [(2, 3), (4, 6), (8, 12)] and p[-1] is x
    torch.testing.assert_close(p[0], x.view(2, 3, 2, 4, 3, 4).mean((3, 5)))  # 4x4 block means
    with pytest.raises(ValueError, match=r"^`image`: expected H and W divisible by 2\^\(levels-1\) = 4, got \(8, 6\)$"):
        image_pyramid(torch.rand(1, 1, 8, 6), 3)
    with pytest.raises(ValueError, match=r"^`image`: expected H and W divisible by 2\^\(levels-1\) = 8, got \(16, 12\)$"):
        image_pyramid(torch.rand(1, 1, 16, 12), 4)
    with pytest.raises(ValueError, match=r"^`levels`: expected an integer in \[1, inf\], got 0$"):
        image_pyramid(x, 0)


@pytest.mark.parametrize("coarse, fine", [((3, 2), (4, 2)), ((2, 3), (2, 4)), ((2, 2), (4, 8)), ((2, 2), (6, 6))])
def test_a_level_that_is_not_a_power_of_two_fraction_is_named(coarse, fine):
    # one failing condition at a time: H % h, W % w, different factors, a factor of 3
    flows = [torch.zeros(1, 2, *coarse), torch.zeros(1, 2, *fine)]
    with pytest.raises(ValueError, match=rf"^`level_flows\[0\]`: expected a power-of-two fraction of the size "
                                         rf"\({fine[0]}, {fine[1]}\), got \({coarse[0]}, {coarse[1]}\)$"):
        multigrid_flow(flows)


def test_multigrid_flow_arguments():
    with pytest.raises(ValueError, match=r"^`level_flows`: expected a non-empty list of \(N, 2, h, w\) flows$"):
        multigrid_flow([])
    with pytest.raises(ValueError, match=r"^`level_flows`: expected a non-empty list"):
        multigrid_flow(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"^`level_flows\[1\]`: expected shape \(N, 2, H, W\), got \(1, 3, 4, 4\)$"):
        multigrid_flow([torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 4, 4)])
    # the level named is the coarser one of the pair that does not fit
    with pytest.raises(ValueError, match=r"^`level_flows\[1\]`: expected a power-of-two fraction"):
        multigrid_flow([torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 12, 12)])
    with pytest.raises(ValueError, match=r"^`level_flows\[-1\]`: expected a power-of-two fraction of the size \(12, 12\)"):
        multigrid_flow([torch.zeros(1, 2, 4, 4)], size=(12, 12))


def test_multigrid_flow_by_hand():
    # D(p) = f(p) + 2 D0(floor((p + f(p)) / 2)) for an integer finer flow f
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(1, 2, 3, 4, generator=g)
    fine = torch.zeros(1, 2, 6, 8)
    fine[:, 0, :, :4], fine[:, 1, 3:] = 1.0, -2.0
    ours = multigrid_flow((coarse, fine))  # a tuple is a list
    expected = torch.empty(1, 2, 6, 8)
    for y in range(6):
        for x in range(8):
            fx, fy = int(fine[0, 0, y, x]), int(fine[0, 1, y, x])
            qx, qy = min(max(x + fx, 0), 7), min(max(y + fy, 0), 5)  # the coarse flow is read with border padding
            expected[0, :, y, x] = fine[0, :, y, x] + 2 * coarse[0, :, qy // 2, qx // 2]
    torch.testing.assert_close(ours, expected)
    # one level: the flow itself, upsampled (vectors scaled) when a larger size is asked for
    assert multigrid_flow([coarse]) is coarse and multigrid_flow([coarse], size=[3, 4]) is coarse
    up = multigrid_flow([coarse], size=(12, 16))
    torch.testing.assert_close(up, 4 * coarse.repeat_interleave(4, 2).repeat_interleave(4, 3))
    # four-fold steps between levels are allowed
    torch.testing.assert_close(multigrid_flow([torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 8, 8)]), torch.full((1, 2, 8, 8), 4.0))


# --------------------------------------------------------------------------------------------------
# The operator


def test_multigrid_apply_filter_product_by_hand():
    x = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    T = [random_filters(2, 4, 4, seed=2), random_filters(2, 8, 8, seed=3), random_filters(2, 16, 16, seed=4)]
    ours = multigrid_apply(x, T, prewarp="filter")
    ref = apply_filter_flow(x, T[0].repeat_interleave(4, 2).repeat_interleave(4, 3), dilation=4)
    ref = apply_filter_flow(ref, T[1].repeat_interleave(2, 2).repeat_interleave(2, 3), dilation=2)
    ref = apply_filter_flow(ref, T[2])
    torch.testing.assert_close(ours, ref)


def test_multigrid_apply_flow_mode_warps_with_zero_padding_then_filters():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    T = [random_filters(1, 2, 2, seed=6, sharp=8.0), random_filters(1, 4, 4, seed=7, sharp=8.0),
         random_filters(1, 8, 8, seed=8)]
    flow = multigrid_flow([expected_flow(T[0]), expected_flow(T[1])], size=(8, 8))
    ours = multigrid_apply(x, tuple(T))  # "flow" is the default
    torch.testing.assert_close(ours, apply_filter_flow(flow_warp(x, flow, padding="zeros")[0], T[2]))
    border = apply_filter_flow(flow_warp(x, flow, padding="border")[0], T[2])
    assert not torch.allclose(ours, border)  # the coarse flow leaves the frame somewhere
    # one level: the filters alone, in both modes
    for prewarp in ("flow", "filter"):
        torch.testing.assert_close(multigrid_apply(x, [T[2]], prewarp=prewarp), apply_filter_flow(x, T[2]))


def test_multigrid_apply_arguments():
    x, T = torch.rand(2, 1, 8, 8), random_filters(2, 8, 8)
    with pytest.raises(ValueError, match=r"^`prewarp`: expected one of \('flow', 'filter'\), got 'bilinear'$"):
        multigrid_apply(x, [T], prewarp="bilinear")
    for bad in ([], T):
        with pytest.raises(ValueError, match=r"^`level_filters`: expected a non-empty list of \(N, k\*k, h, w\) filters$"):
            multigrid_apply(x, bad)
    with pytest.raises(ValueError, match=r"^`level_filters\[1\]`: expected N=2 \(as in `image`\), got 1$"):
        multigrid_apply(x, [random_filters(2, 4, 4), T[:1]])
    with pytest.raises(ValueError, match=r"^`level_filters\[0\]`: expected k\*k channels with k odd"):
        multigrid_apply(x, [T[:, :8], T])
    with pytest.raises(ValueError, match=r"^`level_filters`: expected the last \(finest\) filters at the size of "
                                         r"`image` \(8, 8\), got \(4, 4\)$"):
        multigrid_apply(x, [T, random_filters(2, 4, 4)])
    with pytest.raises(ValueError, match=r"^`level_filters`: expected the last \(finest\) filters at the size of "
                                         r"`image` \(8, 8\), got \(2, 2\)$"):
        multigrid_apply(x, [random_filters(2, 4, 4), T, random_filters(2, 2, 2)])
    with pytest.raises(ValueError, match=r"^`level_filters\[1\]`: expected shape \(N, T, h, w\), got \(9, 8, 8\)$"):
        multigrid_apply(x, [random_filters(2, 4, 4), T[0]])
    with pytest.raises(ValueError, match=r"^`level_filters\[0\]`: expected a power-of-two fraction of the size \(8, 8\), got \(3, 3\)$"):
        multigrid_apply(x, [random_filters(2, 3, 3), T], prewarp="filter")
    with pytest.raises(TypeError, match=r"^`image`: expected a floating-point tensor"):
        multigrid_apply(x.long(), [T])


# --------------------------------------------------------------------------------------------------
# The model


def _correlation_by_hand(a, b, k):
    N, C, H, W = a.shape
    r = k // 2
    out = torch.zeros(N, k * k, H, W, dtype=a.dtype)
    for i in range(k):
        for j in range(k):
            for y in range(H):
                for x in range(W):
                    yy, xx = y + i - r, x + j - r
                    if 0 <= yy < H and 0 <= xx < W:
                        out[:, i * k + j, y, x] = (a[:, :, y, x] * b[:, :, yy, xx]).sum(1)
    return out


@pytest.mark.parametrize("k", [1, 3, 5])
def test_local_correlation_by_hand(k):
    g = torch.Generator().manual_seed(k)
    a, b = torch.randn(2, 3, 4, 6, generator=g), torch.randn(2, 3, 4, 6, generator=g)
    torch.testing.assert_close(mg._local_correlation(a, b, k), _correlation_by_hand(a, b, k))


def test_encoder_layers_and_forward_by_hand():
    enc = mg._Encoder(2, 3, 4)
    convs = [enc.full[0], enc.full[2], enc.coarse[0], enc.coarse[2], enc.out]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(2, 3), (3, 3), (3, 6), (6, 6), (9, 4)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 5 and [c.padding for c in convs] == [(1, 1)] * 5
    assert [c.stride for c in convs] == [(1, 1), (1, 1), (2, 2), (1, 1), (1, 1)]
    assert all(isinstance(m, torch.nn.ReLU) for m in (enc.full[1], enc.full[3], enc.coarse[1], enc.coarse[3]))
    assert len(enc.full) == len(enc.coarse) == 4
    x = torch.randn(2, 2, 6, 8, generator=torch.Generator().manual_seed(0))
    a = F.relu(F.conv2d(F.relu(F.conv2d(x, enc.full[0].weight, enc.full[0].bias, padding=1)),
                        enc.full[2].weight, enc.full[2].bias, padding=1))
    b = F.relu(F.conv2d(a, enc.coarse[0].weight, enc.coarse[0].bias, stride=2, padding=1))
    b = F.relu(F.conv2d(b, enc.coarse[2].weight, enc.coarse[2].bias, padding=1))
    b = b.repeat_interleave(2, 2).repeat_interleave(2, 3)  # nearest, back to 6 x 8
    ref = F.conv2d(torch.cat([a, b], 1), enc.out.weight, enc.out.bias, padding=1)
    torch.testing.assert_close(enc(x), ref)


def test_model_defaults_and_architecture():
    m = MultigridPFF()
    assert (m.kernel_size, m.levels, m.in_channels, m.prewarp, m.detach_levels, m.head_kind, m.head_norm) == \
        (5, 3, 3, "flow", True, "correlation", True)
    assert m.encoder.full[0].in_channels == 3 and m.encoder.full[0].out_channels == 24
    assert m.encoder.coarse[0].out_channels == 48 and m.encoder.out.out_channels == 16
    assert m.log_temperature.item() == pytest.approx(math.log(10.0)) and m.log_temperature.requires_grad
    head = m.head
    assert len(head) == 6
    assert (head[0].in_channels, head[0].out_channels, head[2].in_channels, head[2].out_channels) == (32, 48, 48, 48)
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in (head[0], head[2], head[5]))
    assert isinstance(head[1], torch.nn.ReLU) and isinstance(head[3], torch.nn.ReLU)
    norm = head[4]
    assert isinstance(norm, torch.nn.GroupNorm) and (norm.num_groups, norm.num_channels, norm.affine) == (48, 48, False)
    assert (head[5].in_channels, head[5].out_channels) == (48, 25)
    assert not head[5].weight.any() and not head[5].bias.any()
    assert m.extra_repr() == ("kernel_size=5, levels=3, prewarp='flow', detach_levels=True, "
                              "head='correlation', head_norm=True")


def test_model_options_change_the_head():
    torch.manual_seed(0)
    concat = MultigridPFF(kernel_size=3, levels=2, in_channels=1, head="concat", head_norm=False, prewarp="filter",
                          detach_levels=False, **TINY)
    assert concat.log_temperature is None and len(concat.head) == 5  # no normalisation layer
    assert concat.head[-1].weight.abs().sum() > 0  # the default initialisation: filters not uniform at the start
    assert concat.encoder.full[0].in_channels == 1 and concat.head[-1].out_channels == 9
    assert concat.extra_repr() == ("kernel_size=3, levels=2, prewarp='filter', detach_levels=False, "
                                   "head='concat', head_norm=False")
    corr = MultigridPFF(head_norm=False, **TINY)
    assert len(corr.head) == 5 and not corr.head[-1].weight.any() and not corr.head[-1].bias.any()
    norm = MultigridPFF(head="concat", **TINY)
    assert len(norm.head) == 6 and not norm.head[-1].weight.any()


@pytest.mark.parametrize("kw, exc, message", [
    ({"kernel_size": 0}, ValueError, r"`kernel_size`: expected an integer in \[1, inf\], got 0"),
    ({"kernel_size": 4}, ValueError, r"`kernel_size`: expected an odd integer, got 4"),
    ({"levels": 0}, ValueError, r"`levels`: expected an integer in \[1, inf\], got 0"),
    ({"in_channels": 0}, ValueError, r"`in_channels`: expected an integer in \[1, inf\], got 0"),
    ({"width": 0}, ValueError, r"`width`: expected an integer in \[1, inf\], got 0"),
    ({"embed_dim": 0}, ValueError, r"`embed_dim`: expected an integer in \[1, inf\], got 0"),
    ({"head_width": 0}, ValueError, r"`head_width`: expected an integer in \[1, inf\], got 0"),
    ({"prewarp": "nearest"}, ValueError, r"`prewarp`: expected one of \('flow', 'filter'\), got 'nearest'"),
    ({"detach_levels": 1}, TypeError, r"`detach_levels`: expected a bool, got 1"),
    ({"head_norm": 1}, TypeError, r"`head_norm`: expected a bool, got 1"),
    ({"head": "cost"}, ValueError, r"`head`: expected one of \('correlation', 'concat'\), got 'cost'"),
])
def test_model_arguments(kw, exc, message):
    with pytest.raises(exc, match=f"^{message}$"):
        MultigridPFF(**kw)


def test_a_one_by_one_model_is_the_identity_at_every_level():
    model = MultigridPFF(kernel_size=1, levels=2, **TINY)
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    out = model(a, b)
    assert all(torch.equal(T, torch.ones(1, 1, *T.shape[-2:])) for T in out.filters)
    torch.testing.assert_close(out.reconstruction, b)


def _pair_filters_by_hand(model, a, b):
    n = a.shape[0]
    e = model.encoder(torch.cat([a, b]))
    if model.head_kind == "correlation":
        e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-6)
    ea, eb = e[:n], e[n:]
    logits = model.head(torch.cat([torch.cat([ea, eb], 1), torch.cat([eb, ea], 1)]))
    if model.head_kind == "correlation":
        k = model.kernel_size
        corr = torch.cat([_correlation_by_hand(ea, eb, k), _correlation_by_hand(eb, ea, k)])
        logits = logits + model.log_temperature.exp() * corr
    f = logits.softmax(1)
    return f[:n], f[n:]


@pytest.mark.parametrize("head", ["correlation", "concat"])
def test_pair_filters_by_hand(head):
    model = busy_model(kernel_size=3, levels=1, head=head)
    if head == "correlation":
        with torch.no_grad():
            model.log_temperature.fill_(math.log(3.0))
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 6, 4, generator=g), torch.rand(2, 3, 6, 4, generator=g)
    with torch.no_grad():
        T, T_rev = model.pair_filters(a, b)
        ref, ref_rev = _pair_filters_by_hand(model, a, b)
    torch.testing.assert_close(T, ref)
    torch.testing.assert_close(T_rev, ref_rev)


def test_tiny_embeddings_are_normalised_with_a_floor():
    # embeddings of norm 2e-7 are divided by 1e-6, not by their norm: correlations of 0.04, logits of 0.4
    model = MultigridPFF(kernel_size=3, levels=1, **TINY)
    with torch.no_grad():
        model.encoder.out.weight.zero_()
        model.encoder.out.bias.fill_(1e-7)
        T, _ = model.pair_filters(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
    inside = torch.ones(1, 9, 4, 4)
    inside[:, [0, 1, 2], 0], inside[:, [6, 7, 8], -1] = 0, 0  # taps reading the zero padding
    inside[:, [0, 3, 6], :, 0], inside[:, [2, 5, 8], :, -1] = 0, 0
    logits = 10.0 * 4 * (1e-7 / 1e-6) ** 2 * inside
    torch.testing.assert_close(T, logits.softmax(1))


def test_forward_levels_by_hand():
    for prewarp in ("flow", "filter"):
        model = busy_model(seed=1, kernel_size=3, levels=3, prewarp=prewarp)
        g = torch.Generator().manual_seed(2)
        a, b = torch.rand(2, 3, 16, 8, generator=g), torch.rand(2, 3, 16, 8, generator=g)
        with torch.no_grad():
            out = model(a, b)
            assert isinstance(out, MultigridOutput) and out.prewarp == prewarp
            pa, pb_ = image_pyramid(a, 3), image_pyramid(b, 3)
            assert all(torch.equal(x, y) for x, y in zip(out.targets, pa)) and len(out.targets) == 3
            assert torch.equal(out.sources[0], pb_[0])
            for lvl in range(3):
                src = mg._prewarp(pb_[lvl], out.filters[:lvl], prewarp)
                torch.testing.assert_close(out.sources[lvl], src)
                T, T_rev = model.pair_filters(pa[lvl], src)
                torch.testing.assert_close(out.filters[lvl], T)
                torch.testing.assert_close(out.reverse_filters[lvl], T_rev)
                torch.testing.assert_close(out.flows[lvl], expected_flow(T))
            assert not torch.equal(out.sources[2], pb_[2])  # the coarser levels did move the source
            torch.testing.assert_close(out.flow, multigrid_flow(out.flows))
            torch.testing.assert_close(out.reconstruction, apply_filter_flow(out.sources[2], out.filters[2]))
        flow = model.flow(a, b)
        assert not flow.requires_grad and torch.equal(flow, out.flow)


def test_forward_arguments():
    model = MultigridPFF(levels=2, **TINY)
    with pytest.raises(ValueError, match=r"^`target`: expected C=3 channels \(the model's in_channels\), got 2$"):
        model(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"^`source`: expected N=1 \(as in `target`\), got 2$"):
        model(torch.rand(1, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"^`target`: expected finite values"):
        model(torch.full((1, 3, 8, 8), float("inf")), torch.rand(1, 3, 8, 8))


# --------------------------------------------------------------------------------------------------
# Losses


def test_charbonnier_by_hand():
    x = torch.tensor([3.0, -4.0, 0.0, 1.0]).view(1, 1, 2, 2)
    assert float(charbonnier(x, epsilon=0.0)) == pytest.approx(2.0)
    assert float(charbonnier(x, epsilon=4.0)) == pytest.approx((5 + math.sqrt(32) + 4 + math.sqrt(17)) / 4)
    x3 = torch.stack([x[:, 0], 2 * x[:, 0], 0 * x[:, 0]], 1)  # three channels: the mean counts all of them
    valid = torch.tensor([[[True, True], [False, False]]])
    assert float(charbonnier(x3, epsilon=0.0, valid=valid)) == pytest.approx((3 + 4 + 6 + 8) / 6)
    one = torch.tensor([[[False, True], [False, False]]])
    assert float(charbonnier(x3, epsilon=0.0, valid=one)) == pytest.approx((4 + 8) / 3)
    assert float(charbonnier(x, epsilon=0.0, valid=one)) == pytest.approx(4.0)  # one element counted


def test_charbonnier_of_no_valid_pixel_is_a_connected_zero():
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    loss = charbonnier(x, valid=torch.zeros(2, 4, 4, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_charbonnier_arguments():
    x = torch.rand(2, 1, 4, 5)
    for shape, axis, value, got in (((1, 4, 5), "N", 2, 1), ((2, 3, 5), "H", 4, 3), ((2, 4, 4), "W", 5, 4)):
        with pytest.raises(ValueError, match=rf"^`valid`: expected {axis}={value} \(as in `x`\), got {got}$"):
            charbonnier(x, valid=torch.ones(shape, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"^`valid`: expected a bool mask, got torch.float32$"):
        charbonnier(x, valid=torch.ones(2, 4, 5))
    with pytest.raises(ValueError, match=r"^`epsilon`: expected a finite number in \[0, inf\), got -0.1$"):
        charbonnier(x, epsilon=-0.1)
    with pytest.raises(TypeError, match=r"^`x`: expected a floating-point tensor"):
        charbonnier(x.long())
    with pytest.raises(ValueError, match=r"^`x`: expected shape \(N, C, H, W\), got \(1, 4, 5\)$"):
        charbonnier(x[0])


def test_photometric_and_flow_warp_loss_by_hand():
    g = torch.Generator().manual_seed(3)
    A, B = torch.rand(1, 2, 4, 4, generator=g), torch.rand(1, 2, 4, 4, generator=g)
    T = one_hot(1, 0, 1, 4, 4)  # read the right neighbour; zero beyond the last column
    rec = torch.cat([B[..., 1:], torch.zeros(1, 2, 4, 1)], -1)
    assert float(photometric_loss(A, B, T, epsilon=0.0)) == pytest.approx(float((A - rec).abs().mean()))
    assert float(photometric_loss(A, B, T, 0.5)) == pytest.approx(float(torch.sqrt((A - rec) ** 2 + 0.25).mean()))
    # the warp loss averages over the pixels whose sample is inside: columns 0..2
    flow = expected_flow(T)
    assert float(flow_warp_loss(A, B, flow, epsilon=0.0)) == pytest.approx(float((A - rec)[..., :3].abs().mean()))
    assert float(flow_warp_loss(A, B, flow, 0.5)) == pytest.approx(
        float(torch.sqrt((A - rec)[..., :3] ** 2 + 0.25).mean()))
    with pytest.raises(ValueError, match=r"^`source`: expected H=4 \(as in `target`\), got 2$"):
        photometric_loss(A, B[..., :2, :], T)
    with pytest.raises(ValueError, match=r"^`source`: expected W=4 \(as in `target`\), got 2$"):
        flow_warp_loss(A, B[..., :2], flow)


def test_unit_scale():
    f = torch.zeros(1, 2, 5, 3)
    assert mg._unit_scale(f, False) == 1.0
    torch.testing.assert_close(mg._unit_scale(f, True), torch.tensor([0.5, 0.25]).view(1, 2, 1, 1))
    # a single column or row is not divided by zero
    torch.testing.assert_close(mg._unit_scale(torch.zeros(1, 2, 1, 1), True), torch.ones(1, 2, 1, 1))


def test_forward_backward_loss_by_hand():
    f = torch.zeros(1, 2, 4, 4)
    f[:, 0] = 1.0
    b = torch.zeros(1, 2, 4, 4)
    b[:, 1] = 2.0  # residual (1, 2) everywhere: |r| = sqrt(5)
    assert float(forward_backward_loss(f, b, epsilon=0.0)) == pytest.approx(math.sqrt(5))
    assert float(forward_backward_loss(f, b, 2.0)) == pytest.approx(3.0)
    # normalised: (1/3, 2/3) for a 4 x 4 level
    assert float(forward_backward_loss(f, b, 0.0, True)) == pytest.approx(math.sqrt(5) / 3)
    # the backward flow is read at p + f(p) with border padding, and only the inside pixels count
    b2 = torch.zeros(1, 2, 4, 4)
    b2[:, 0, :, 3] = -1.0  # right at the target of the last inside column (column 2 reads column 3)
    ours = forward_backward_loss(f, b2, epsilon=0.0)
    assert float(ours) == pytest.approx(2 / 3)  # columns 0, 1: residual 1; column 2: 0; column 3: outside


def test_forward_backward_loss_when_every_pixel_leaves_the_frame():
    f = torch.full((1, 2, 4, 4), 9.0, requires_grad=True)
    loss = forward_backward_loss(f, torch.zeros(1, 2, 4, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))


def test_forward_backward_loss_arguments():
    f = torch.zeros(1, 2, 4, 4)
    with pytest.raises(TypeError, match=r"^`normalize`: expected a bool, got 1$"):
        forward_backward_loss(f, f, normalize=1)
    with pytest.raises(TypeError, match=r"^`forward`: expected a floating-point tensor"):
        forward_backward_loss(f.long(), f)
    with pytest.raises(TypeError, match=r"^`backward`: expected a floating-point tensor"):
        forward_backward_loss(f, f.long())
    with pytest.raises(ValueError, match=r"^`backward`: expected finite values"):
        forward_backward_loss(f, torch.full_like(f, float("nan")))
    with pytest.raises(ValueError, match=r"^`forward`: expected finite values"):
        forward_backward_loss(torch.full_like(f, float("nan")), f)
    with pytest.raises(ValueError, match=r"^`forward`: expected shape \(N, 2, H, W\), got \(1, 3, 4, 4\)$"):
        forward_backward_loss(torch.zeros(1, 3, 4, 4), f)
    with pytest.raises(ValueError, match=r"^`epsilon`: expected a finite number in \[0, inf\), got -1.0$"):
        forward_backward_loss(f, f, -1.0)
    with pytest.raises(ValueError, match=r"^`backward`: expected shape \(N, 2, H, W\), got \(2, 4, 4\)$"):
        forward_backward_loss(f, torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"^`backward`: expected N=1 \(as in `forward`\), got 2$"):
        forward_backward_loss(f, torch.zeros(2, 2, 4, 4))


def test_flow_smoothness_by_hand_on_thin_flows():
    # one column: no x-differences; the y-differences of x scaled by 1 (not 1/0), of y by 1/2
    f = torch.tensor([[0.0, 4.0, 4.0], [0.0, 2.0, 2.0]]).view(1, 2, 3, 1)
    assert float(flow_smoothness_loss(f)) == pytest.approx(6 / 4)
    assert float(flow_smoothness_loss(f, normalize=True)) == pytest.approx(5 / 4)
    # one row, two columns: one x-difference per component, no y-differences
    g = torch.tensor([[1.0, 4.0], [0.0, -2.0]]).view(1, 2, 1, 2)
    assert float(flow_smoothness_loss(g)) == pytest.approx((3 + 2) / 2)
    assert float(flow_smoothness_loss(g, True)) == pytest.approx((3 + 2) / 2)  # x / 1, y / max(0, 1)
    # two rows, three columns: x-differences 1, 2 (row 0) and 0, 0 of x, 0 of y, over 2 * 2 * 2;
    # y-differences 0, 1, 3 of x and 0 of y, over 2 * 1 * 3
    h = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 3.0]], [[5.0] * 3, [5.0] * 3]]).view(1, 2, 2, 3)
    assert float(flow_smoothness_loss(h)) == pytest.approx(3 / 8 + 4 / 6)
    # a single pixel: zero, still connected to the input
    one = torch.ones(1, 2, 1, 1, requires_grad=True)
    loss = flow_smoothness_loss(one)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(one.grad, torch.zeros_like(one))
    with pytest.raises(TypeError, match=r"^`normalize`: expected a bool, got 0$"):
        flow_smoothness_loss(f, normalize=0)
    with pytest.raises(ValueError, match=r"^`flow`: expected shape \(N, 2, H, W\), got \(1, 3, 3, 1\)$"):
        flow_smoothness_loss(torch.zeros(1, 3, 3, 1))
    with pytest.raises(TypeError, match=r"^`flow`: expected a floating-point tensor"):
        flow_smoothness_loss(f.long())
    with pytest.raises(ValueError, match=r"^`flow`: expected finite values"):
        flow_smoothness_loss(f / 0)


def test_filter_smoothness_by_hand():
    X = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0], [5.0, 2.0, 2.0]]).view(1, 1, 3, 3)
    # range 1: horizontal |1|+|2|+0+0+|3|+0 = 6, vertical |2|+|1|+|1|+|3|+0+0 = 7, over N K H W = 9
    assert float(filter_smoothness_loss(X, max_range=2, epsilon=0.0)) == pytest.approx(13 / 9)
    # range 2: horizontal |3|+0+|3| = 6, vertical |5|+|1|+|1| = 7: the mean of the two ranges
    assert float(filter_smoothness_loss(X, 3, 0.0)) == pytest.approx((13 / 9 + 13 / 9) / 2)
    # epsilon: every one of the 2 * 6 range-1 differences gets it
    eps = 2.0
    d1 = torch.tensor([1.0, 2.0, 0.0, 0.0, 3.0, 0.0, 2.0, 1.0, 1.0, 3.0, 0.0, 0.0])
    assert float(filter_smoothness_loss(X, 2, eps)) == pytest.approx(float(torch.sqrt(d1 ** 2 + eps ** 2).sum() / 9))
    # the default: three ranges need min(H, W) > 2 and epsilon = 0.001
    Y = torch.rand(2, 4, 4, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(filter_smoothness_loss(Y), filter_smoothness_loss(Y, 3, 1e-3))
    assert float(filter_smoothness_loss(Y, 4)) > 0  # max_range - 1 = 3 < 4 is allowed
    with pytest.raises(ValueError, match=r"^`max_range`: expected max_range - 1 < min\(H, W\) = 4, got 5$"):
        filter_smoothness_loss(Y, 5)
    with pytest.raises(ValueError, match=r"^`max_range`: expected an integer in \[2, inf\], got 1$"):
        filter_smoothness_loss(Y, 1)
    with pytest.raises(ValueError, match=r"^`epsilon`: expected a finite number in \[0, inf\), got -1.0$"):
        filter_smoothness_loss(Y, 2, -1.0)
    with pytest.raises(TypeError, match=r"^`filters`: expected a floating-point tensor"):
        filter_smoothness_loss(Y.long())
    with pytest.raises(ValueError, match=r"^`filters`: expected finite values"):
        filter_smoothness_loss(Y / 0)
    with pytest.raises(ValueError, match=r"^`filters`: expected shape \(N, T, H, W\)"):
        filter_smoothness_loss(Y[0])


# --------------------------------------------------------------------------------------------------
# The training objective


def _terms_by_hand(model, a, b, eps, both, normalize):
    terms = {"rec": 0.0, "flow": 0.0, "fb": 0.0, "smooth": 0.0}
    for A0, B0 in ([(a, b), (b, a)] if both else [(a, b)]):
        out = model(A0, B0)
        for lvl in range(model.levels):
            A, B, T, f = out.targets[lvl], out.sources[lvl], out.filters[lvl], out.flows[lvl]
            terms["rec"] += photometric_loss(A, B, T, eps)
            terms["flow"] += flow_warp_loss(A, B, f, eps)
            terms["fb"] += forward_backward_loss(f, expected_flow(out.reverse_filters[lvl]), eps, normalize)
            terms["smooth"] += flow_smoothness_loss(f, normalize)
    return terms


@pytest.mark.parametrize("kw", [{}, {"epsilon": 0.05, "both_directions": False, "normalize_flows": False}])
def test_terms_and_loss_rebuilt_from_the_models_outputs(kw):
    model = busy_model(seed=3, kernel_size=3, levels=2)
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(1, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    with torch.no_grad():
        terms = mgpff_terms(model, a, b, **kw)
        ref = _terms_by_hand(model, a, b, kw.get("epsilon", 1e-3), kw.get("both_directions", True),
                             kw.get("normalize_flows", True))
        assert sorted(terms) == ["fb", "flow", "rec", "smooth"]
        for k in ref:
            torch.testing.assert_close(terms[k], ref[k])
            assert float(ref[k]) > 0
        weights = dict(flow_weight=2.0, fb_weight=3.0, smooth_weight=5.0)
        torch.testing.assert_close(mgpff_loss(model, a, b, **weights, **kw),
                                   ref["rec"] + 2 * ref["flow"] + 3 * ref["fb"] + 5 * ref["smooth"])
        torch.testing.assert_close(MultigridPFFLoss(**weights, **kw)(model, a, b),
                                   ref["rec"] + 2 * ref["flow"] + 3 * ref["fb"] + 5 * ref["smooth"])
        if not kw:  # unit weights by default
            torch.testing.assert_close(mgpff_loss(model, a, b), sum(ref.values()))
            torch.testing.assert_close(MultigridPFFLoss()(model, a, b), sum(ref.values()))


def test_objective_arguments():
    model = MultigridPFF(levels=1, **TINY)
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(TypeError, match=r"^`model`: expected a MultigridPFF, got Linear$"):
        mgpff_terms(torch.nn.Linear(1, 1), x, x)
    with pytest.raises(TypeError, match=r"^`normalize_flows`: expected a bool, got 1$"):
        mgpff_terms(model, x, x, normalize_flows=1)
    for name in ("flow_weight", "fb_weight", "smooth_weight"):
        with pytest.raises(ValueError, match=rf"^`{name}`: expected a finite number in \[0, inf\), got -1.0$"):
            mgpff_loss(model, x, x, **{name: -1.0})
        with pytest.raises(ValueError, match=rf"^`{name}`: expected a finite number in \[0, inf\), got -1.0$"):
            MultigridPFFLoss(**{name: -1.0})
    with pytest.raises(ValueError, match=r"^`epsilon`: expected a finite number in \[0, inf\), got -1.0$"):
        MultigridPFFLoss(epsilon=-1.0)
    loss = MultigridPFFLoss()
    assert (loss.flow_weight, loss.fb_weight, loss.smooth_weight, loss.epsilon, loss.both_directions,
            loss.normalize_flows) == (1.0, 1.0, 1.0, 1e-3, True, True)
    loss = MultigridPFFLoss(2, 3, 4, 0.5, 0, False)
    assert (loss.flow_weight, loss.fb_weight, loss.smooth_weight, loss.epsilon, loss.both_directions,
            loss.normalize_flows) == (2.0, 3.0, 4.0, 0.5, False, False)


# --------------------------------------------------------------------------------------------------
# Label propagation and the long-range error


class _Shift:
    """Stands in for MultigridPFF: filters reading the source at p + (dx, dy) at the finest level
    (identity at the coarser one); records the (target, source) pairs it is called with."""

    def __init__(self, dx=0, dy=0, prewarp="flow", flow_dx=None):
        self.d, self.prewarp, self.flow_dx, self.calls = (dx, dy), prewarp, flow_dx, []

    def __call__(self, target, source):
        self.calls.append((target.clone(), source.clone()))
        N, _, H, W = target.shape
        filters = [one_hot(0, 0, N, H // 2, W // 2), one_hot(*self.d, N, H, W)]
        flow = torch.zeros(N, 2, H, W)
        flow[:, 0] = self.d[0] if self.flow_dx is None else self.flow_dx
        flow[:, 1] = self.d[1]
        return MultigridOutput(filters=filters, flow=flow, prewarp=self.prewarp)


def test_transport_by_filters_or_by_flow():
    payload = torch.rand(2, 3, 4, 6, generator=torch.Generator().manual_seed(5))
    x = torch.rand(2, 3, 4, 6)
    moved = torch.cat([payload[..., 1:], torch.zeros(2, 3, 4, 1)], -1)  # read at p + (1, 0), zero outside
    for prewarp in ("flow", "filter"):
        torch.testing.assert_close(mg._transport(_Shift(1, 0, prewarp), x, x, payload, "filter"), moved)
    # soft filters: the filter path follows the model's pre-warp mode, which changes the result
    soft = [random_filters(2, 2, 3, seed=9), random_filters(2, 4, 6, seed=10)]
    for prewarp in ("flow", "filter"):
        model = lambda t, s_, p=prewarp: MultigridOutput(filters=[T.clone().requires_grad_() for T in soft], prewarp=p)
        ours = mg._transport(model, x, x, payload, "filter")
        torch.testing.assert_close(ours, multigrid_apply(payload, soft, prewarp=prewarp))
        assert not ours.requires_grad  # the filters are detached
    assert not torch.allclose(multigrid_apply(payload, soft, prewarp="flow"), multigrid_apply(payload, soft, prewarp="filter"))
    # the flow path: bilinear, zero padding (half a pixel to the right: the last column reads half a zero)
    half = mg._transport(_Shift(1, 0, flow_dx=0.5), x, x, payload, "flow")
    torch.testing.assert_close(half, torch.cat([(payload[..., :-1] + payload[..., 1:]) / 2, payload[..., -1:] / 2], -1))


def test_propagation_references_targets_and_threshold():
    frames = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    labels = torch.zeros(4, 4, dtype=torch.long)
    labels[1, 1] = 1
    model = _Shift(0, 0)
    out = propagate_labels(model, frames, labels)  # window 1, no first frame, threshold 0.8, filters
    assert out.shape == (4, 4, 4) and out.dtype == torch.long and torch.equal(out, labels.expand(4, 4, 4))
    assert len(model.calls) == 3
    for t, (target, source) in enumerate(model.calls, start=1):  # frame t from frame t - 1
        assert torch.equal(target, frames[t:t + 1]) and torch.equal(source, frames[t - 1:t])


def test_propagation_averages_the_references_and_compares_with_the_threshold():
    # frame 0 has the object at (1, 1); the model moves it one pixel left per frame: at t = 2 the
    # first frame carried once and frame 1 carried once disagree, each pixel gets 1/2
    frames = torch.rand(3, 3, 4, 4)
    labels = torch.zeros(4, 4, dtype=torch.long)
    labels[1, 1] = 2
    out = propagate_labels(_Shift(1, 0), frames, labels, num_classes=3, use_first=True, threshold=0.5)
    assert out[1].nonzero().tolist() == [[1, 0]] and int(out[1, 1, 0]) == 2
    assert out[2].nonzero().tolist() == [[1, 0]]  # frame 1's object read at +1 leaves the frame: 1/2 at (1, 0)
    assert int(out[2, 1, 0]) == 2
    strict = propagate_labels(_Shift(1, 0), frames, labels, num_classes=3, use_first=True, threshold=0.51)
    assert not strict[2].any() and int(strict[1, 1, 0]) == 2
    full = propagate_labels(_Shift(1, 0), frames, labels, num_classes=3, use_first=True, threshold=1.0)
    assert torch.equal(full, strict)  # a threshold of 1 is allowed: only full agreement counts


def test_propagation_of_background_only_and_of_one_clip_given_as_a_batch():
    frames = torch.rand(3, 3, 4, 4)
    out = propagate_labels(_Shift(1, 0), frames, torch.zeros(4, 4, dtype=torch.long))
    assert torch.equal(out, torch.zeros(3, 4, 4, dtype=torch.long))
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 2, 2] = 1
    out = propagate_labels(_Shift(0, 0), frames, labels, mode="flow")  # (1, H, W) labels for a 4-D clip
    assert out.shape == (3, 4, 4) and torch.equal(out, labels.expand(3, 4, 4))
    out = propagate_labels(_Shift(0, 0), frames[None].double(), labels, num_classes=4)
    assert out.shape == (1, 3, 4, 4) and torch.equal(out[0], labels.expand(3, 4, 4))


def test_propagation_arguments():
    frames, labels = torch.rand(3, 3, 4, 4), torch.zeros(4, 4, dtype=torch.long)
    labels[0, 0] = 2
    with pytest.raises(ValueError, match=r"^`labels`: expected values in \[0, 2\), got \[0, 2\]$"):
        propagate_labels(_Shift(), frames, labels, num_classes=2)
    negative = labels.clone()
    negative[1, 1] = -1
    with pytest.raises(ValueError, match=r"^`labels`: expected values in \[0, 3\), got \[-1, 2\]$"):
        propagate_labels(_Shift(), frames, negative)
    with pytest.raises(ValueError, match=r"^`num_classes`: expected an integer in \[1, inf\], got 0$"):
        propagate_labels(_Shift(), frames, labels, num_classes=0)
    with pytest.raises(ValueError, match=r"^`window`: expected an integer in \[1, inf\], got 0$"):
        propagate_labels(_Shift(), frames, labels, window=0)
    with pytest.raises(ValueError, match=r"^`threshold`: expected a finite number in \(0, 1\], got 1.5$"):
        propagate_labels(_Shift(), frames, labels, threshold=1.5)
    with pytest.raises(ValueError, match=r"^`mode`: expected one of \('filter', 'flow'\), got 'nearest'$"):
        propagate_labels(_Shift(), frames, labels, mode="nearest")
    with pytest.raises(ValueError, match=r"^`labels`: expected W=4 \(as in `frames`\), got 3$"):
        propagate_labels(_Shift(), frames, labels[:, :3])
    with pytest.raises(TypeError, match=r"^`labels`: expected an integer tensor"):
        propagate_labels(_Shift(), frames, labels.float())
    with pytest.raises(ValueError, match=r"^`frames`: expected shape \(N, T, C, H, W\), got \(3, 4, 4\)$"):
        propagate_labels(_Shift(), frames[0], labels)


def test_long_range_error_by_hand():
    # every pair is reconstructed by reading the earlier frame one pixel to the right
    frames = torch.rand(1, 3, 1, 2, 4, generator=torch.Generator().manual_seed(7))
    frames[0, 0, 0, 0, 0] = 1.3  # above 1: the rounded warp is clamped to 255
    model = _Shift(1, 0)
    errs = []
    for t in range(2):  # gap 1: pairs (0, 1) and (1, 2)
        src, tgt = frames[0, t], frames[0, t + 1]
        warped = torch.cat([src[..., 1:], torch.zeros(1, 2, 1)], -1)
        errs.append(((warped * 255).round().clamp(0, 255) - tgt * 255).abs().mean())
    assert mg.long_range_error(model, frames, 1) == pytest.approx(float(sum(errs) / 2), rel=1e-6)
    assert mg.long_range_error(model, frames[0], 1) == pytest.approx(float(sum(errs) / 2), rel=1e-6)
    # the model sees (target, source) = (frame t + m, frame t)
    model.calls.clear()
    mg.long_range_error(model, frames, 2)
    ((target, source),) = model.calls
    assert torch.equal(target, frames[0, 2:]) and torch.equal(source, frames[0, :1])
    with pytest.raises(ValueError, match=r"^`gap`: expected < T = 3, got 3$"):
        mg.long_range_error(model, frames, 3)
    with pytest.raises(ValueError, match=r"^`gap`: expected an integer in \[1, inf\], got 0$"):
        mg.long_range_error(model, frames, 0)
    with pytest.raises(ValueError, match=r"^`frames`: expected shape \(N, T, C, H, W\)"):
        mg.long_range_error(model, frames[0, 0], 1)


def test_long_range_error_in_chunks_of_32_pairs():
    frames = torch.rand(2, 20, 1, 2, 4, generator=torch.Generator().manual_seed(8))  # 2 * 19 = 38 pairs
    model = _Shift(1, 0)
    value = mg.long_range_error(model, frames, 1)
    assert [c[0].shape[0] for c in model.calls] == [32, 6]
    src, tgt = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)
    warped = torch.cat([src[..., 1:], torch.zeros(38, 1, 2, 1)], -1)
    assert value == pytest.approx(float(((warped * 255).round() - tgt * 255).abs().mean()), rel=1e-6)
