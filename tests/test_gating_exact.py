"""pixelbook.gating.gumbel and pixelbook.gating.pag against independent computations: the Gumbel
transform of the uniform draws, clamps at the ends of the unit interval, the documented defaults,
the initial gate probability, the block's equations in float64 (BatchNorm folded with biased
convolutions, sparse = dense), the FLOP bookkeeping of each granularity, and the errors of bad
input (anchored on the argument). Complements tests/test_gating.py."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from pixelbook.gating import gumbel as gb
from pixelbook.gating import pag
from fakes import randomize_batchnorm as _bn_random

f64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------
# Gumbel
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_gumbel_noise_is_the_transform_of_the_uniform_draws(dtype):
    m = gb.gumbel_noise((2, 3), _gen(4), dtype=dtype)
    u = torch.rand((2, 3), generator=_gen(4), dtype=dtype)
    assert m.dtype == dtype and m.shape == (2, 3)
    torch.testing.assert_close(m, -torch.log(-torch.log(u)), rtol=0, atol=0)


def test_gumbel_noise_clamps_exactly_at_tiny_and_one_minus_eps(monkeypatch):
    for dtype in (torch.float32, f64):
        info = torch.finfo(dtype)
        monkeypatch.setattr(torch, "rand", lambda *a, dtype=dtype, **k: torch.tensor([0.0, 1.0, 0.5], dtype=dtype))
        m = gb.gumbel_noise((3,), dtype=dtype)
        expected = [-math.log(-math.log(info.tiny)), -math.log(-math.log(1 - info.eps)), -math.log(-math.log(0.5))]
        assert max(abs(a - b) for a, b in zip(m.tolist(), expected)) < 1e-4


def test_gumbel_softmax_defaults_and_tau():
    logits = torch.randn(2, 3, 4, generator=_gen(1), dtype=f64)
    noise = gb.gumbel_noise(logits.shape, _gen(2), dtype=f64)
    # defaults: tau 1, options on dim 1, hard
    torch.testing.assert_close(gb.gumbel_softmax_st(logits, hard=False, noise=noise), torch.softmax(logits + noise, 1))
    y = gb.gumbel_softmax_st(logits, noise=noise)
    assert torch.equal(y, F.one_hot((logits + noise).argmax(1), 3).permute(0, 2, 1).to(f64))
    soft = gb.gumbel_softmax_st(logits, 0.25, hard=False, noise=noise)
    torch.testing.assert_close(soft, torch.softmax((logits + noise) / 0.25, 1), rtol=0, atol=1e-15)
    # the generator is used when no noise is given
    a = gb.gumbel_softmax_st(logits, 0.5, hard=False, generator=_gen(3))
    torch.testing.assert_close(a, torch.softmax((logits + gb.gumbel_noise(logits.shape, _gen(3), dtype=f64)) / 0.5, 1))
    # dim = -1 and the last valid negative dim
    y = gb.gumbel_softmax_st(logits, dim=-1, noise=noise)
    assert torch.equal(y.argmax(-1), (logits + noise).argmax(-1))
    y = gb.gumbel_softmax_st(logits, dim=-3, noise=noise)
    assert torch.equal(y.argmax(0), (logits + noise).argmax(0))


def test_gumbel_gate_defaults_repr_and_eval_probability():
    gate = gb.GumbelGate()
    assert (gate.tau, gate.hard, gate.dim, gate.sample_in_eval) == (1.0, True, 1, False) and gate.last_prob is None
    assert repr(gate) == "GumbelGate(tau=1, hard=True, dim=1)"
    assert repr(gb.GumbelGate(0.25, hard=False, dim=-1)) == "GumbelGate(tau=0.25, hard=False, dim=-1)"
    logits = torch.randn(2, 3, 4, generator=_gen(5))
    y = gb.GumbelGate(dim=-1).eval()(logits)
    assert torch.equal(y, F.one_hot(logits.argmax(-1), 4).float())
    g = gb.GumbelGate(dim=-1).eval()
    g(logits)
    torch.testing.assert_close(g.last_prob, logits.softmax(-1))
    # soft gate in training: the relaxation, rows sum to one, values strictly inside (0, 1)
    soft = gb.GumbelGate(0.5, hard=False).train()(torch.zeros(1, 2, 3, 3), generator=_gen(6))
    torch.testing.assert_close(soft, gb.gumbel_softmax_st(torch.zeros(1, 2, 3, 3), 0.5, hard=False, generator=_gen(6)))
    assert bool(((soft > 0) & (soft < 1)).all()) and torch.allclose(soft.sum(1), torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match=r"^`logits`: expected finite"):
        gb.GumbelGate().eval()(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(TypeError, match=r"^`logits`: expected a floating-point"):
        gb.GumbelGate().eval()(torch.ones(1, 2, dtype=torch.long))


def test_temperature_schedule_defaults_and_end_equal_to_start():
    # defaults: 1.0 -> 0.1, exponential
    assert math.isclose(gb.temperature_schedule(1, 2), math.sqrt(0.1))
    assert math.isclose(gb.temperature_schedule(1, 4, 2.0, 0.5), 2.0 * 0.25 ** 0.25)
    assert gb.temperature_schedule(3, 5, 0.7, 0.7) == 0.7 and gb.temperature_schedule(3, 5, 0.7, 0.7, "linear") == 0.7
    assert gb.temperature_schedule(0, 1) == 1.0 and math.isclose(gb.temperature_schedule(1, 1), 0.1)


_BAD = [
    (lambda: gb.gumbel_softmax_st(torch.zeros(2, 3), dim=-3), ValueError, r"^`dim`: expected an integer in \[-2, 1\]"),
    (lambda: gb.gumbel_softmax_st(torch.zeros(2, 3), tau=-1.0), ValueError, r"^`tau`: expected a finite number in \(0, inf\)"),
    (lambda: gb.GumbelGate(tau=0.0), ValueError, r"^`tau`: expected a finite number in \(0, inf\)"),
    (lambda: gb.GumbelGate(hard=1), TypeError, r"^`hard`: expected a bool, got int$"),
    (lambda: gb.temperature_schedule(-1, 10), ValueError, r"^`step`: expected an integer in \[0, inf\]"),
    (lambda: gb.temperature_schedule(0, 0), ValueError, r"^`total_steps`: expected an integer in \[1, inf\]"),
    (lambda: gb.temperature_schedule(0, 10, start=0.0), ValueError, r"^`start`: expected a finite number in \(0, inf\)"),
    (lambda: gb.temperature_schedule(0, 10, end=0.0), ValueError, r"^`end`: expected a finite number in \(0, inf\)"),
    (lambda: gb.temperature_schedule(0, 10, 0.5, 0.6), ValueError, r"^`end`: expected <= start=0.5, got 0.6$"),
    (lambda: gb.temperature_schedule(0, 10, shape="cos"), ValueError, r"^`shape`: expected one of"),
    (lambda: gb.set_temperature(nn.Linear(1, 1), -1.0), ValueError, r"^`tau`: expected a finite number in \(0, inf\)"),
    (lambda: gb.set_temperature(object(), 1.0), TypeError, r"^`model`: expected an nn.Module, got object$"),
    (lambda: pag.PAGBottleneck(0, 2), ValueError, r"^`inplanes`: expected an integer in \[1, inf\]"),
    (lambda: pag.PAGBottleneck(8, 0), ValueError, r"^`planes`: expected an integer in \[1, inf\]"),
    (lambda: pag.PAGBottleneck(8, 2, stride=0), ValueError, r"^`stride`: expected an integer in \[1, inf\]"),
    (lambda: pag.PAGBottleneck(8, 2, dilation=0), ValueError, r"^`dilation`: expected an integer in \[1, inf\]"),
    (lambda: pag.PAGBottleneck(8, 2, expansion=0), ValueError, r"^`expansion`: expected an integer in \[1, inf\]"),
    (lambda: pag.PAGBottleneck(8, 2, granularity="layer"), ValueError, r"^`granularity`: expected one of"),
    (lambda: pag.PAGBottleneck(8, 2, execution="fast"), ValueError, r"^`execution`: expected one of"),
    (lambda: pag.PAGBottleneck(8, 2, init_compute_prob=0.0), ValueError,
     r"^`init_compute_prob`: expected a finite number in \(0, 1\)"),
    (lambda: pag.PAGBottleneck(8, 2, init_compute_prob=1.0), ValueError,
     r"^`init_compute_prob`: expected a finite number in \(0, 1\)"),
    (lambda: pag.PAGBottleneck(8, 2, tau=0.0), ValueError, r"^`tau`: expected a finite number in \(0, inf\)"),
    (lambda: pag.PAGBottleneck(8, 2)(torch.zeros(1, 8, 4)), ValueError, r"^`I`: expected shape \(N, 8, H, W\)"),
    (lambda: pag.PAGBottleneck(8, 2)(torch.full((1, 8, 2, 2), float("inf"))), ValueError, r"^`I`: expected finite"),
    (lambda: pag.PAGBottleneck.from_bottleneck(nn.Conv2d(1, 1, 1)), TypeError,
     r"^`block`: expected a torchvision Bottleneck \(with conv1, bn1, conv2, bn2, conv3, bn3, downsample\), got Conv2d$"),
    (lambda: pag.insert_pag(torchvision.models.resnet18(weights=None), "layer1"), ValueError,
     r"^`layers`: no torchvision Bottleneck found under \('layer1',\)$"),
    (lambda: pag.insert_pag(nn.Sequential(), ("fc",)), ValueError, r"^`layers`: `model` has no submodule 'fc'$"),
]


def _ids(cases):
    """Plain test ids (argument name and position): mutmut selects tests by id."""
    return [f"{i}_" + re.sub(r"\W", "", re.search(r"`([^`]*)`", pat).group(1)) for i, (_, _, pat) in enumerate(cases)]

@pytest.mark.parametrize("thunk,err,pattern", _BAD, ids=_ids(_BAD))
def test_bad_argument_names_itself(thunk, err, pattern):
    with pytest.raises(err, match=pattern):
        thunk()


def test_set_temperature_counts_nested_gates():
    net = nn.Sequential(gb.GumbelGate(), nn.Sequential(gb.GumbelGate(0.3), nn.ReLU()), nn.Linear(1, 1))
    assert gb.set_temperature(net, 0.2) == 2 and net[0].tau == 0.2 and net[1][0].tau == 0.2
    assert gb.set_temperature(nn.ReLU(), 0.2) == 0


# ------------------------------------------------------------------------------------------------
# PAG bottleneck
# ------------------------------------------------------------------------------------------------


def test_defaults_layers_and_initial_gate():
    assert pag.INIT_COMPUTE_PROB == 0.9
    b = pag.PAGBottleneck(8, 2)
    assert (b.stride, b.expansion, b.granularity, b.execution, b.gumbel.tau) == (1, 4, "pixel", "dense", 1.0)
    assert b.conv2.dilation == (1, 1) and b.conv2.padding == (1, 1) and b.conv3.out_channels == 8
    assert b.downsample is None and "granularity='pixel', execution='dense'" in repr(b)
    # the gate: a 1x1 conv to {skip, compute} with zero weights and bias (0, logit p)
    assert b.gate.kernel_size == (1, 1) and b.gate.out_channels == 2 and float(b.gate.weight.detach().abs().sum()) == 0
    torch.testing.assert_close(b.gate.bias.detach(), torch.tensor([0.0, math.log(0.9 / 0.1)]))
    b.eval()(torch.randn(1, 8, 3, 3, generator=_gen(0)))
    torch.testing.assert_close(b.last_prob, torch.full((1, 1, 3, 3), 0.9))  # exactly P(compute) = 0.9
    c = pag.PAGBottleneck(8, 2, init_compute_prob=0.25, tau=0.5).eval()
    c(torch.randn(1, 8, 3, 3, generator=_gen(1)))
    torch.testing.assert_close(c.last_prob, torch.full((1, 1, 3, 3), 0.25))
    assert c.gumbel.tau == 0.5 and bool((c.last_mask == 0).all())  # below 1/2: skip everywhere
    # expansion, stride and a projection shortcut
    d = pag.PAGBottleneck(8, 3, stride=2, dilation=2, expansion=2)
    assert d.conv3.out_channels == 6 and d.conv2.stride == (2, 2) and d.gate.stride == (2, 2)
    assert d.conv2.dilation == (2, 2) and d.conv2.padding == (2, 2)
    assert d.downsample[0].stride == (2, 2) and d.downsample[0].out_channels == 6
    assert pag.PAGBottleneck(8, 2, stride=2).downsample is not None


def _block(granularity="pixel", stride=1, inplanes=8, planes=2, seed=0, conv_bias=False):
    torch.manual_seed(seed)
    b = pag.PAGBottleneck(inplanes, planes, stride=stride, granularity=granularity)
    if conv_bias:
        for name in ("conv2", "conv3"):
            old = getattr(b, name)
            new = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                            old.dilation, bias=True)
            with torch.no_grad():
                new.weight.copy_(old.weight)
                new.bias.normal_()
            setattr(b, name, new)
    return _bn_random(b, seed).double().eval()


def test_dense_block_is_eq_4_1_written_out():
    b = _block(stride=2, seed=2)
    x = torch.randn(2, 8, 7, 7, generator=_gen(3), dtype=f64)
    G = (torch.rand(2, 1, 4, 4, generator=_gen(4)) < 0.5).double()
    b.force = G
    X = F.relu(b.bn1(b.conv1(x)))
    Z = b.bn3(b.conv3(F.relu(b.bn2(b.conv2(X)))))
    torch.testing.assert_close(b(x), F.relu(b.downsample(x) + G * Z), rtol=0, atol=1e-12)
    assert b.conv1_hw == (7, 7) and torch.equal(b.last_mask, G)


@pytest.mark.parametrize("conv_bias", [False, True])
def test_sparse_equals_dense_in_float64_with_folded_batchnorm(conv_bias):
    b = _block(stride=2, seed=5, conv_bias=conv_bias)
    x = torch.randn(2, 8, 9, 9, generator=_gen(6), dtype=f64)
    b.force = (torch.rand(2, 1, 5, 5, generator=_gen(7)) < 0.5).double()
    dense = b(x)
    b.execution = "sparse"
    torch.testing.assert_close(b(x), dense, rtol=0, atol=1e-12)


def test_sparse_path_needs_ungrouped_convolutions():
    resnext = torchvision.models.resnext50_32x4d(weights=None)
    blk = pag.PAGBottleneck.from_bottleneck(resnext.layer1[0], execution="sparse").eval()
    with pytest.raises(ValueError, match=r"^`execution`: the sparse path supports groups=1 only$"):
        blk(torch.randn(1, 64, 4, 4))
    blk.train()  # training is always dense
    assert blk(torch.randn(2, 64, 4, 4)).shape == (2, 256, 4, 4)


def test_from_bottleneck_shares_layers_and_reads_stride_and_expansion():
    tv = torchvision.models.resnet50(weights=None).layer2[0]
    b = pag.PAGBottleneck.from_bottleneck(tv, granularity="image", tau=0.3, init_compute_prob=0.6)
    assert b.conv1 is tv.conv1 and b.downsample is tv.downsample and b.stride == 2 and b.expansion == 4
    assert isinstance(b.gate, nn.Linear) and b.gate.in_features == 256 and b.gumbel.tau == 0.3
    torch.testing.assert_close(b.gate.bias.detach(), torch.tensor([0.0, math.log(0.6 / 0.4)]))
    none = pag.PAGBottleneck.from_bottleneck(tv, granularity="none")
    assert none.gate is None and none.gumbel is None and none.force is None and none.last_mask is None


def test_image_and_none_granularity():
    b = _block("image", seed=8)
    x = torch.randn(3, 8, 4, 4, generator=_gen(9), dtype=f64)
    with torch.no_grad():
        b.gate.weight.copy_(torch.randn(2, 8, generator=_gen(10), dtype=f64))
    b(x)
    logits = b.gate(x.mean((2, 3)))
    G = (logits[:, 1] > logits[:, 0]).double()[:, None, None, None].expand(3, 1, 4, 4)
    assert torch.equal(b.last_mask, G)
    torch.testing.assert_close(b.last_prob, logits.softmax(1)[:, 1, None, None, None].expand(3, 1, 4, 4))
    n = _block("none", seed=11)
    out = n(x)
    assert torch.equal(n.last_mask, torch.ones(3, 1, 4, 4, dtype=f64)) and torch.equal(n.last_prob, n.last_mask)
    n.force = 0.0
    torch.testing.assert_close(n(x), F.relu(x))  # the gate-less block can still be forced off
    assert out.shape == (3, 8, 4, 4)


def test_flop_convs_per_granularity():
    x = torch.randn(2, 8, 5, 6, generator=_gen(12), dtype=f64)
    assert _block().flop_convs() == []  # before any forward pass
    b = _block()
    b(x)
    convs = b.flop_convs()
    assert [c for c, _ in convs] == [b.conv2, b.conv3] and all(torch.equal(m, b.last_mask) for _, m in convs)
    n = _block("none")
    n(x)
    assert n.flop_convs() == []
    i = _block("image")
    i.force = torch.tensor([1.0, 0.0], dtype=f64)[:, None, None, None].expand(2, 1, 5, 6)
    i(x)
    convs = i.flop_convs()
    assert [c for c, _ in convs] == [i.conv2, i.conv3, i.conv1]
    assert convs[2][1].shape == (2, 1, 5, 6) and convs[2][1][:, 0, 0, 0].tolist() == [1.0, 0.0]


def test_force_shapes_and_values():
    b = _block(stride=2)
    x = torch.randn(1, 8, 5, 5, generator=_gen(13), dtype=f64)
    b.force = 0.0
    torch.testing.assert_close(b(x), F.relu(b.downsample(x)))
    assert torch.equal(b.last_mask, torch.zeros(1, 1, 3, 3, dtype=f64))
    b.force = torch.ones(2, 1, 3, 3, dtype=f64)
    with pytest.raises(ValueError, match=r"^`force`: expected N=1 \(as in `I`\), got 2$"):
        b(x)
    b.force = torch.ones(1, 1, 3, 4, dtype=f64)
    with pytest.raises(ValueError, match=r"^`force`: expected W=3 \(as in `output`\), got 4$"):
        b(x)
    b.force = torch.ones(1, 1, 3, 3)  # float32 force: cast to the input's dtype
    assert b(x).dtype == f64 and b.last_mask.dtype == f64


def test_insert_pag_settings_and_a_single_name():
    net = torchvision.models.resnet50(weights=None)
    blocks = pag.insert_pag(net, "layer4", granularity="image", execution="sparse", tau=0.4, init_compute_prob=0.7)
    assert len(blocks) == 3 and blocks[0] is net.layer4[0]
    assert all(b.granularity == "image" and b.execution == "sparse" and b.gumbel.tau == 0.4 for b in blocks)
    torch.testing.assert_close(blocks[0].gate.bias.detach(), torch.tensor([0.0, math.log(0.7 / 0.3)]))
    assert len(pag.insert_pag(torchvision.models.resnet50(weights=None))) == 16  # default: all four stages


def test_same_layers_as_torchvision_plus_the_gate():
    from torchvision.models.resnet import Bottleneck

    for stride, inplanes in ((1, 8), (2, 8), (1, 16)):
        down = None
        if stride != 1 or inplanes != 8:
            down = nn.Sequential(nn.Conv2d(inplanes, 8, 1, stride, bias=False), nn.BatchNorm2d(8))
        tv = Bottleneck(inplanes, 2, stride, down)
        b = pag.PAGBottleneck(inplanes, 2, stride=stride)
        n_tv = sum(p.numel() for p in tv.parameters())
        assert sum(p.numel() for p in b.parameters()) == n_tv + 2 * inplanes + 2  # + the 1x1 gate
        assert {n for n, _ in tv.named_parameters()} <= {n for n, _ in b.named_parameters()}
    assert pag.PAGBottleneck(1, 1, expansion=1).conv3.out_channels == 1  # the lower bounds are valid
    assert pag.PAGBottleneck(8, 2).last_prob is None and pag.PAGBottleneck(8, 2).last_mask is None


def test_from_bottleneck_and_insert_pag_defaults():
    tv = torchvision.models.resnet50(weights=None).layer1[0]
    b = pag.PAGBottleneck.from_bottleneck(tv)
    assert (b.granularity, b.execution, b.gumbel.tau) == ("pixel", "dense", 1.0) and type(b.expansion) is int
    net = torchvision.models.resnet50(weights=None)
    blocks = pag.insert_pag(net, "layer1")
    assert all(x.gumbel.tau == 1.0 and x.granularity == "pixel" for x in blocks)


def test_force_height_and_rank_errors():
    b = _block(stride=2)
    x = torch.randn(1, 8, 5, 5, generator=_gen(14), dtype=f64)
    b.force = torch.ones(1, 1, 4, 3, dtype=f64)
    with pytest.raises(ValueError, match=r"^`force`: expected H=3 \(as in `output`\), got 4$"):
        b(x)
    b.force = torch.ones(1, 3, 3, dtype=f64)
    with pytest.raises(ValueError, match=r"^`force`: expected shape \(N, 1, H, W\)"):
        b(x)
