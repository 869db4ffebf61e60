"""pixelbook.filterflow.pff against independent computations: the documented defaults and
architecture, the initial filters from the softmax closed form, boundary sizes (k = 1, levels = 0),
dilated filters and envelopes against hand-made references, and the errors of bad input.
Complements tests/test_filterflow.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pixelbook.filterflow import pff
from pixelbook.models import count_parameters

SMALL = dict(width=8, fullres_width=4, levels=2)


def test_constants_and_defaults():
    assert pff.FILTER_NORMALIZATIONS == ("softmax", "none")
    model = pff.PredictiveFilterFlow()
    # kernel 17 (the thesis' deblurring), softmax, dilation 1, identity weight 0.9 (ours)
    assert (model.kernel_size, model.normalize, model.dilation, model.identity_weight) == (17, "softmax", 1, 0.9)
    assert repr(model).startswith("PredictiveFilterFlow(\n  kernel_size=17, normalize='softmax', dilation=1")
    net = model.net
    # TwoStreamNet defaults: 3 -> 289 channels, width 32, two levels, one block, full-res 16 x 3
    assert net.stem[0].in_channels == 3 and net.head.out_channels == 17 * 17
    assert net.stem[0].out_channels == 32 and net.levels == 2 and len(net.down) == 2
    assert [sum(isinstance(m, pff._Residual) for m in d) for d in net.down] == [1, 1]
    assert net.fullres[0][0].out_channels == 16 and len(net.fullres) == 3
    assert pff.TwoStreamNet().head.out_channels == 3 and pff.DirectCNN().net.head.out_channels == 3


def test_two_stream_widths_double_per_level_and_fuse():
    net = pff.TwoStreamNet(2, 5, width=4, levels=3, blocks=2, fullres_width=3, fullres_layers=2)
    convs = [d[1][0] for d in net.down]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(4, 8), (8, 16), (16, 32)]
    assert [len(d) for d in net.down] == [4, 4, 4]  # pool, conv, two residual blocks
    assert [(u[0].in_channels, u[0].out_channels) for u in net.up] == [(32, 16), (16, 8), (8, 4)]
    assert net.fuse[0].in_channels == 4 + 3 and net.fuse[0].out_channels == 4
    assert len(net.fullres) == 2 and net.fullres[0][0].in_channels == 2
    # every 3x3 conv is followed by BatchNorm then ReLU [KONG, §6.3.2]
    block = net.stem
    assert isinstance(block[0], torch.nn.Conv2d) and block[0].kernel_size == (3, 3) and block[0].padding == (1, 1)
    assert block[0].bias is None and isinstance(block[1], torch.nn.BatchNorm2d) and isinstance(block[2], torch.nn.ReLU)
    assert net.eval()(torch.rand(1, 2, 8, 8)).shape == (1, 5, 8, 8)


def test_residual_block_is_relu_of_x_plus_body():
    torch.manual_seed(0)
    block = pff._Residual(3).eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(x + block.body(x)))


def test_levels_zero_is_a_plain_full_resolution_net():
    net = pff.TwoStreamNet(1, 1, width=4, levels=0, fullres_width=2).eval()
    assert len(net.down) == 0 and len(net.up) == 0
    assert net(torch.rand(1, 1, 5, 7)).shape == (1, 1, 5, 7)  # any size: nothing to divide


def test_deep_stream_output_adds_the_skips():
    # the forward pass against the documented architecture written out by hand: encoder skips,
    # bilinear x2 up-sampling, conv, skip added; then fusion with the full-resolution stream
    torch.manual_seed(1)
    net = pff.TwoStreamNet(1, 2, width=4, levels=2, fullres_width=2).eval()
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        skips = [net.stem(x)]
        for d in net.down:
            skips.append(d(skips[-1]))
        y = skips[2]
        y = skips[1] + net.up[0](F.interpolate(y, size=(4, 4), mode="bilinear", align_corners=False))
        y = skips[0] + net.up[1](F.interpolate(y, size=(8, 8), mode="bilinear", align_corners=False))
        ref = net.head(net.fuse(torch.cat([y, net.fullres(x)], 1)))
        torch.testing.assert_close(net(x), ref)


def test_initial_softmax_filters_closed_form():
    # softmax of a centre logit a = log(p (T - 1) / (1 - p)) and zeros elsewhere puts p on the centre
    for k, p in ((3, 0.9), (5, 0.3)):
        model = pff.PredictiveFilterFlow(1, kernel_size=k, identity_weight=p, **SMALL).eval()
        T = k * k
        assert abs(float(model.identity[0, T // 2, 0, 0]) - math.log(p * (T - 1) / (1 - p))) < 1e-5
        f = model.filters(torch.rand(1, 1, 4, 4))
        torch.testing.assert_close(f[0, :, 1, 2], torch.tensor([(1 - p) / (T - 1)] * (T // 2) + [p]
                                                               + [(1 - p) / (T - 1)] * (T // 2)))


def test_kernel_size_one():
    x = torch.rand(2, 3, 8, 8)
    for normalize in pff.FILTER_NORMALIZATIONS:
        res = pff.PredictiveFilterFlow(3, kernel_size=1, normalize=normalize, **SMALL).eval()(x)
        assert res["filters"].shape == (2, 1, 8, 8)
        torch.testing.assert_close(res["filters"], torch.ones(2, 1, 8, 8))
        torch.testing.assert_close(res["out"], x)


def test_free_form_filters_are_the_raw_outputs():
    torch.manual_seed(2)
    model = pff.PredictiveFilterFlow(1, kernel_size=3, normalize="none", **SMALL).eval()
    torch.nn.init.normal_(model.net.head.weight)
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        raw = model.net(x) + model.identity
        torch.testing.assert_close(model.filters(x), raw)
    assert float(model.filters(x).detach().min()) < 0  # not normalised


def test_dilated_filters_read_every_other_pixel():
    # free-form, at the identity, with the head's bias moved from the centre to the right-hand tap:
    # with dilation 2 the output at (y, x) is the input at (y, x + 2), zero beyond the border
    model = pff.PredictiveFilterFlow(1, kernel_size=3, normalize="none", dilation=2, **SMALL).eval()
    with torch.no_grad():
        model.net.head.bias[4] = -1.0
        model.net.head.bias[5] = 1.0
    x = torch.rand(1, 1, 8, 8)
    expected = torch.zeros_like(x)
    expected[..., :-2] = x[..., 2:]
    torch.testing.assert_close(model(x)["out"], expected)
    assert "dilation=2" in repr(model)


def test_direct_cnn_is_residual():
    torch.manual_seed(3)
    cnn = pff.DirectCNN(2, **SMALL).eval()
    torch.nn.init.normal_(cnn.net.head.weight)
    x = torch.rand(1, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(cnn(x)["out"], x + cnn.net(x))
    with pytest.raises(TypeError, match="`x`: expected a floating-point"):
        cnn(torch.ones(1, 2, 8, 8, dtype=torch.long))
    assert count_parameters(cnn) == count_parameters(pff.TwoStreamNet(2, 2, **SMALL))


def test_local_envelope_with_dilation_against_a_loop():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 2, 6, 7, generator=g) + 1  # positive: the zero padding is the minimum at borders
    low, high = pff.local_envelope(x, 3, dilation=2)
    pad = F.pad(x, [2, 2, 2, 2])
    for yy in range(6):
        for xx in range(7):
            win = pad[0, :, yy:yy + 5:2, xx:xx + 5:2].reshape(2, -1)
            torch.testing.assert_close(high[0, :, yy, xx], win.max(1).values)
            torch.testing.assert_close(low[0, :, yy, xx], win.min(1).values)
    # k = 1: the image itself
    low, high = pff.local_envelope(x, 1)
    assert torch.equal(low, x) and torch.equal(high, x)


def test_local_envelope_bad_input():
    with pytest.raises(ValueError, match="`image`: expected shape"):
        pff.local_envelope(torch.rand(2, 4, 4), 3)
    with pytest.raises(TypeError, match="`image`: expected a floating-point"):
        pff.local_envelope(torch.ones(1, 1, 4, 4, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="`kernel_size`"):
        pff.local_envelope(torch.rand(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="`dilation`"):
        pff.local_envelope(torch.rand(1, 1, 4, 4), 3, dilation=0)


def test_filter_pca_energy_default_and_errors():
    g = torch.Generator().manual_seed(5)
    filters = torch.rand(1, 121, 4, 4, generator=g)  # k = 11: more taps than the default 10 components
    X = filters.double().permute(0, 2, 3, 1).reshape(-1, 121)
    s2 = torch.linalg.svdvals(X) ** 2
    e = pff.filter_pca_energy(filters)
    assert e.shape == (10,) and e.dtype == torch.float64
    torch.testing.assert_close(e, (s2.cumsum(0) / s2.sum())[:10])
    with pytest.raises(ValueError, match="`filters`: expected finite"):
        pff.filter_pca_energy(torch.full((1, 9, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="`num_components`"):
        pff.filter_pca_energy(filters, 0)


@pytest.mark.parametrize("kwargs,err,name", [
    (dict(in_channels=0), ValueError, "in_channels"), (dict(out_channels=0), ValueError, "out_channels"),
    (dict(levels=-1), ValueError, "levels"), (dict(blocks=-1), ValueError, "blocks"),
    (dict(fullres_width=0), ValueError, "fullres_width"), (dict(fullres_layers=0), ValueError, "fullres_layers"),
])
def test_two_stream_bad_hyperparameters(kwargs, err, name):
    with pytest.raises(err, match=f"^`{name}`"):
        pff.TwoStreamNet(**kwargs)


def test_two_stream_accepts_the_smallest_sizes():
    net = pff.TwoStreamNet(1, 1, width=1, levels=0, blocks=0, fullres_width=1, fullres_layers=1)
    assert net(torch.rand(1, 1, 3, 3)).shape == (1, 1, 3, 3)
    with pytest.raises(ValueError, match="`x`: expected shape"):
        net(torch.rand(1, 3, 3))


def test_pff_bad_arguments():
    with pytest.raises(ValueError, match="`kernel_size`"):
        pff.PredictiveFilterFlow(kernel_size=0)
    with pytest.raises(ValueError, match="`identity_weight`"):
        pff.PredictiveFilterFlow(kernel_size=3, identity_weight=0.0, **SMALL)
    with pytest.raises(ValueError, match="`dilation`"):
        pff.PredictiveFilterFlow(kernel_size=3, dilation=0, **SMALL)


def test_layer_counts_and_checkpoint_contents():
    # a residual block is conv-BN-ReLU, conv (no bias), BN: 2 * 9 w^2 weights + 2 * 2 w BN parameters
    assert sum(p.numel() for p in pff._Residual(4).parameters()) == 18 * 16 + 4 * 4
    assert pff.TwoStreamNet().stem[0].in_channels == 3
    # the identity offset is a fixed buffer, not part of a checkpoint
    model = pff.PredictiveFilterFlow(1, kernel_size=3, **SMALL)
    assert "identity" not in model.state_dict() and "identity" in dict(model.named_buffers())
    assert pff.filter_pca_energy(torch.rand(1, 9, 2, 2), 1).shape == (1,)  # one component is allowed


def test_two_stream_and_envelope_messages():
    net = pff.TwoStreamNet(3, 3, width=4, fullres_width=2, levels=3)
    with pytest.raises(ValueError, match=r"^`x`: expected H and W divisible by 2\*\*levels = 8, got 16×12$"):
        net(torch.rand(1, 3, 16, 12))
    net2 = pff.TwoStreamNet(3, 3, **SMALL)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*levels = 4, got 16×18$"):
        net2(torch.rand(1, 3, 16, 18))
    with pytest.raises(ValueError, match=r"^`x`: expected shape \(N, C, H, W\)"):
        net2(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match=r"^`image`: expected shape \(N, C, H, W\)"):
        pff.local_envelope(torch.rand(4, 4), 3)
    for f in (lambda: pff.local_envelope(torch.rand(1, 1, 4, 4), -1), lambda: pff.PredictiveFilterFlow(kernel_size=-1)):
        with pytest.raises(ValueError, match=r"^`kernel_size`: expected an integer in \[1, inf\]"):
            f()
    with pytest.raises(ValueError, match=r"^`filters`: all zero, the energy fractions are undefined$"):
        pff.filter_pca_energy(torch.zeros(1, 9, 2, 2), 3)
