"""pixelbook.gating (gumbel, pag, budget, pooling, nets) against independent computations: the Gumbel
transform of the uniform draws, clamps at the ends of the unit interval, the documented defaults,
the initial gate probability, the block's equations in float64 (BatchNorm folded with biased
convolutions, sparse = dense), the FLOP bookkeeping of each granularity, the Bernoulli KL and the
budget loss written out in Python floats, depth bins by hand, the pooling branches' kernels, the
networks against their parts (the ResNet-50 against torchvision's backbone), and the errors of bad
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
    assert isinstance(b.gate, nn.Conv2d) and b.gate.in_channels == 256 and b.gate.stride == (1, 1)  # on the mean
    assert b.gumbel.tau == 0.3
    torch.testing.assert_close(b.gate.bias.detach(), torch.tensor([0.0, math.log(0.6 / 0.4)]))
    none = pag.PAGBottleneck.from_bottleneck(tv, granularity="none")
    assert none.gate is None and none.gumbel is None and none.force is None and none.last_mask is None


def test_image_and_none_granularity():
    b = _block("image", seed=8)
    x = torch.randn(3, 8, 4, 4, generator=_gen(9), dtype=f64)
    with torch.no_grad():
        b.gate.weight.copy_(torch.randn(2, 8, 1, 1, generator=_gen(10), dtype=f64))
    b(x)
    logits = x.mean((2, 3)) @ b.gate.weight.detach()[:, :, 0, 0].T + b.gate.bias.detach()  # one linear layer
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


# ------------------------------------------------------------------------------------------------
# Budget: Bernoulli KL, the budget loss, densities, ponder maps, FLOPs
# ------------------------------------------------------------------------------------------------

from pixelbook.gating import budget as bd  # noqa: E402
from pixelbook.gating import pooling as pl  # noqa: E402


def _kl(rho, g):
    """KL(rho || g) of two Bernoulli distributions, written out in Python floats."""
    return rho * math.log(rho / g) + (1 - rho) * math.log((1 - rho) / (1 - g))


def test_bernoulli_kl_float64_to_rounding_and_the_clamp_at_zero():
    g = torch.tensor([0.2, 0.9, 0.0, 1.0], dtype=f64)
    eps = 1e-6  # KL_EPS: g is clamped to [eps, 1 - eps]
    expected = torch.tensor([_kl(0.7, 0.2), _kl(0.7, 0.9), _kl(0.7, eps), _kl(0.7, 1 - eps)], dtype=f64)
    torch.testing.assert_close(bd.bernoulli_kl(0.7, g), expected, rtol=1e-13, atol=0)
    assert bd.bernoulli_kl(0.7, g).dtype == f64
    # rho at the ends: only one of the two terms exists
    torch.testing.assert_close(bd.bernoulli_kl(0.0, g[:2]), -torch.log1p(-g[:2]), rtol=1e-13, atol=0)
    torch.testing.assert_close(bd.bernoulli_kl(1.0, g[:2]), -torch.log(g[:2]), rtol=1e-13, atol=0)


def test_bernoulli_kl_empty_densities_give_an_empty_result():
    out = bd.bernoulli_kl(0.5, torch.empty(0, 3))
    assert out.shape == (0, 3) and out.dtype == torch.float32


def test_budget_kl_loss_over_batch_and_total_hand_computed():
    d = torch.tensor([[0.2, 0.6], [0.4, 0.8]], dtype=f64)
    # over="batch": the layers' batch means 0.3 and 0.7, one KL each, summed over layers
    torch.testing.assert_close(bd.budget_kl_loss(d, 0.5, over="batch"),
                               torch.tensor(_kl(0.5, 0.3) + _kl(0.5, 0.7), dtype=f64), rtol=1e-12, atol=0)
    # mode="total": one KL per image of the mean over layers (0.4 and 0.6)
    torch.testing.assert_close(bd.budget_kl_loss(d, 0.3, mode="total", reduction="none"),
                               torch.tensor([_kl(0.3, 0.4), _kl(0.3, 0.6)], dtype=f64), rtol=1e-12, atol=0)
    # both: the KL of the mean of everything (0.5)
    torch.testing.assert_close(bd.budget_kl_loss(d, 0.3, mode="total", over="batch", reduction="sum"),
                               torch.tensor(_kl(0.3, 0.5), dtype=f64), rtol=1e-12, atol=0)


def _random_gates(net, seed=1):
    """Random gate weights (they start at zero), so that the gates' probabilities differ between
    images and layers and from the masks."""
    g = _gen(seed)
    with torch.no_grad():
        for b in bd.pag_blocks(net):
            b.gate.weight.copy_(torch.randn(b.gate.weight.shape, generator=g) * 3)
    return net


def test_budget_module_defaults_and_every_setting_reaches_the_loss():
    torch.manual_seed(0)
    net = _random_gates(nn.Sequential(pag.PAGBottleneck(8, 2), pag.PAGBottleneck(8, 2))).eval()
    net(torch.randn(3, 8, 6, 6, generator=_gen(20)))
    loss = bd.BudgetKLLoss(0.3)
    assert (loss.rho, loss.weight, loss.mode, loss.over, loss.statistic) == (0.3, 1e-4, "per_layer", "image", "mask")
    assert loss.extra_repr() == "rho=0.3, weight=0.0001, mode='per_layer', over='image'"
    torch.testing.assert_close(loss(net), 1e-4 * bd.budget_kl_loss(bd.gate_densities(net), 0.3))
    prob = bd.gate_densities(net, "prob")
    mask = bd.gate_densities(net, "mask")
    expected = 2.0 * bd.budget_kl_loss(prob, 0.3, "total", "batch")
    # the settings matter for this model: dropping any one of them changes the value
    for other in (bd.budget_kl_loss(mask, 0.3, "total", "batch"), bd.budget_kl_loss(prob, 0.3, "per_layer", "batch"),
                  bd.budget_kl_loss(prob, 0.3, "total", "image")):
        assert abs(float(2.0 * other.detach()) - float(expected.detach())) > 1e-3
    custom = bd.BudgetKLLoss(0.3, weight=2.0, mode="total", over="batch", statistic="prob")
    torch.testing.assert_close(custom(net), expected)
    assert (custom.mode, custom.over, custom.statistic) == ("total", "batch", "prob")
    for rho in (0.0, 1.0):  # the bounds are valid targets
        assert bd.BudgetKLLoss(rho, weight=0.0).rho == rho


def test_pag_blocks_skips_ungated_blocks_and_multipool():
    a, b = pag.PAGBottleneck(8, 2), pag.PAGBottleneck(8, 2, granularity="none")
    net = nn.Sequential(a, b, pl.PAGMultiPool(8, (0, 1), head_widths=(2,)), pag.PAGBottleneck(8, 2, granularity="image"))
    blocks = bd.pag_blocks(net)
    assert blocks[0] is a and blocks[1] is net[3] and len(blocks) == 2


class _TwoSizes(nn.Module):
    """Two gated blocks run on crops of different sizes (masks of different shapes)."""

    def __init__(self, first, second):
        super().__init__()
        self.crops = (first, second)
        self.a, self.b = pag.PAGBottleneck(8, 2), pag.PAGBottleneck(8, 2)

    def forward(self, x):
        (h1, w1), (h2, w2) = self.crops
        return self.a(x[..., :h1, :w1]).sum() + self.b(x[..., :h2, :w2]).sum()


@pytest.mark.parametrize("first", [(3, 6), (6, 3)])
def test_ponder_map_takes_the_size_of_the_largest_mask_by_area(first):
    net = _TwoSizes(first, (4, 4)).eval()
    net.a.force, net.b.force = 1.0, 0.0
    net(torch.randn(1, 8, 6, 6, generator=_gen(21)))
    p = bd.ponder_map(net)
    assert p.shape == (1, *first) and torch.equal(p, torch.ones(1, *first))  # area 18 beats 16
    net.b.force = 1.0
    net(torch.randn(1, 8, 6, 6, generator=_gen(21)))
    assert torch.equal(bd.ponder_map(net, size=(5, 7)), torch.full((1, 5, 7), 2.0))


def test_count_flops_grouped_convolution_in_integers():
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    c = bd.count_flops(conv, torch.randn(1, 4, 5, 5))
    assert c.total == c.dense == 2 * 25 * 6 * 2 * 9 and type(c.total) is int and type(c.dense) is int
    assert c.per_module == {"": 2 * 25 * 6 * 2 * 9} and c.fraction == 1.0
    mp = pl.PAGMultiPool(4, dilations=(0, 1), head_widths=(3,), force=1).eval()
    c = bd.count_flops(mp, torch.randn(1, 4, 3, 3))
    assert all(type(v) is int for v in c.per_module.values()) and type(c.total) is int



def test_count_flops_non_square_maps_linear_layers_and_kwargs():
    # H != W: every pixel of a 4 x 7 output counts once
    c = bd.count_flops(nn.Conv2d(2, 3, 3, padding=1), torch.randn(2, 2, 4, 7))
    assert c.total == 2 * (3 * 2 * 9) * (2 * 4 * 7)
    # a Linear layer: in x out multiply-adds per output row, in integers
    c = bd.count_flops(nn.Linear(5, 3), torch.randn(4, 2, 5))
    assert c.total == 2 * 5 * 3 * 8 and type(c.total) is int
    # keyword arguments reach the model: the true-depth gate needs its bins
    net = nt.GatedPoolNet(3, pool="true", dilations=(1, 2), width=4, head_widths=(2,))
    bins = torch.zeros(1, 6, 6, dtype=torch.long)
    with_bins = bd.count_flops(net, torch.randn(1, 3, 6, 6), depth_bins=bins)
    assert with_bins.total == with_bins.dense > 0
    with pytest.raises(ValueError, match="gate='true' needs the quantised depth"):
        bd.count_flops(net, torch.randn(1, 3, 6, 6))


def test_count_flops_adds_every_call_of_a_module_and_names_the_type_it_refuses():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.conv(self.conv(x))

    c = bd.count_flops(Twice(), torch.randn(1, 2, 3, 5))
    assert c.total == 2 * 2 * (2 * 2 * 15) and c.per_module == {"conv": 2 * 2 * (2 * 2 * 15)}
    with pytest.raises(TypeError, match=r"^`model`: expected an nn.Module, got str$"):
        bd.count_flops("net", torch.zeros(1))


def test_count_flops_forgets_the_masks_of_modules_an_earlier_call_ran():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Conv2d(4, 4, 1)
            self.pool = pl.DepthAwareGatedPool(4, dilations=(1, 2), gate="average")
            self.block = pag.PAGBottleneck(4, 2).eval()

        def forward(self, x):
            return self.used(x)

    m = Wrapper()
    x = torch.randn(1, 4, 5, 5)
    m.pool(x), m.block(x)  # both remember this call's gate / mask
    assert m.pool.last_gate is not None and m.block.last_mask is not None
    c = bd.count_flops(m, x)
    assert c.total == c.dense == 2 * 16 * 25 and set(c.per_module) == {"used"}
    assert m.pool.last_gate is None and m.block.last_mask is None


_BAD_BUDGET = [
    (lambda: bd.bernoulli_kl(-0.1, torch.tensor([0.5])), ValueError, r"^`rho`: expected a finite number in \[0, 1\]"),
    (lambda: bd.bernoulli_kl(0.5, torch.tensor([-0.1, 0.5])), ValueError,
     r"^`g`: expected densities in \[0, 1\], got \[-0.1, 0.5\]$"),
    (lambda: bd.bernoulli_kl(0.5, torch.tensor([1])), TypeError, r"^`g`: expected a floating-point tensor"),
    (lambda: bd.budget_kl_loss(torch.tensor([1, 0]), 0.5), TypeError, r"^`densities`: expected a floating-point tensor"),
    (lambda: bd.budget_kl_loss(torch.zeros(0, 2), 0.5), ValueError, r"^`densities`: expected a non-empty tensor"),
    (lambda: bd.budget_kl_loss(torch.zeros(2), 0.5, mode="sum"), ValueError, r"^`mode`: expected one of"),
    (lambda: bd.budget_kl_loss(torch.zeros(2), 0.5, over="all"), ValueError, r"^`over`: expected one of"),
    (lambda: bd.budget_kl_loss(torch.zeros(2), 0.5, reduction="max"), ValueError, r"^`reduction`: expected one of"),
    (lambda: bd.BudgetKLLoss(1.5), ValueError, r"^`rho`: expected a finite number in \[0, 1\], got 1.5$"),
    (lambda: bd.BudgetKLLoss(-0.5), ValueError, r"^`rho`: expected a finite number in \[0, 1\], got -0.5$"),
    (lambda: bd.BudgetKLLoss(0.5, mode="sum"), ValueError, r"^`mode`: expected one of"),
    (lambda: bd.BudgetKLLoss(0.5, over="all"), ValueError, r"^`over`: expected one of"),
    (lambda: bd.BudgetKLLoss(0.5, statistic="soft"), ValueError, r"^`statistic`: expected one of"),
    (lambda: bd.pag_blocks(lambda x: x), TypeError, r"^`model`: expected an nn.Module, got function$"),
    (lambda: bd.gate_densities(nn.Linear(2, 2)), ValueError, r"^`model`: no PAGBottleneck found$"),
    (lambda: bd.ponder_map(nn.Linear(2, 2)), ValueError, r"^`model`: expected PAG blocks that have run forward$"),
    (lambda: bd.ponder_map(pag.PAGBottleneck(8, 2)), ValueError, r"^`model`: expected PAG blocks that have run"),
]


@pytest.mark.parametrize("thunk,err,pattern", _BAD_BUDGET, ids=_ids(_BAD_BUDGET))
def test_budget_bad_argument_names_itself(thunk, err, pattern):
    with pytest.raises(err, match=pattern):
        thunk()


# ------------------------------------------------------------------------------------------------
# Pooling: depth bins, depth-aware gated pooling, PAG MultiPool
# ------------------------------------------------------------------------------------------------


def test_depth_bin_edges_float64_log_and_float32_quantile_hand_computed():
    d = torch.tensor([[[2.0, 32.0, 5.0]]], dtype=f64)  # log spacing between 2 and 32: ratios of 2
    edges = pl.depth_bin_edges(d, 4)
    assert edges.dtype == f64
    torch.testing.assert_close(edges, torch.tensor([4.0, 8.0, 16.0], dtype=f64), rtol=1e-14, atol=0)
    q = pl.depth_bin_edges(torch.arange(1.0, 101.0).reshape(1, 4, 25), 4, spacing="quantile")
    assert q.dtype == torch.float32  # linear interpolation between order statistics: 24.75 -> 25.75, ...
    torch.testing.assert_close(q, torch.tensor([25.75, 50.5, 75.25]))


def test_depth_bin_edges_at_thirds_are_computed_in_the_depth_dtype():
    # K = 3: the fractions 1/3 and 2/3 are not exact in float32; float64 depths get float64 edges
    d = torch.tensor([[[2.0, 54.0, 7.0]]], dtype=f64)  # log spacing between 2 and 54: ratios of 3
    torch.testing.assert_close(pl.depth_bin_edges(d, 3), torch.tensor([6.0, 18.0], dtype=f64), rtol=1e-14, atol=0)
    # quantiles of 1, 2, 3, 4 at 1/3 and 2/3: positions 1 and 2 of the order statistics, exactly
    q = pl.depth_bin_edges(torch.tensor([[[4.0, 1.0, 3.0, 2.0]]], dtype=f64), 3, spacing="quantile")
    torch.testing.assert_close(q, torch.tensor([2.0, 3.0], dtype=f64), rtol=1e-14, atol=0)


def test_quantize_depth_compares_with_the_edges_in_the_depth_dtype():
    # float64 edges are cast to a float32 depth's dtype first: float32(0.7) lies below the float64 0.7,
    # but on the edge once it is cast, so it goes to the farther bin like any value on an edge
    d = torch.tensor([[[0.7, 0.69, 0.71]]], dtype=torch.float32)
    assert pl.quantize_depth(d, torch.tensor([0.7], dtype=f64)).tolist() == [[[0, 1, 0]]]
    assert float(d[0, 0, 0]) < 0.7  # (the float64 comparison would put it in the nearer bin 1)


def test_depth_that_is_not_a_tensor_is_named():
    with pytest.raises(TypeError, match=r"^`depth`: expected a torch.Tensor of shape \(N, H, W\), got list$"):
        pl.depth_bin_edges([[[1.0, 2.0]]], 2)
    with pytest.raises(TypeError, match=r"^`depth`: expected a torch.Tensor of shape \(N, H, W\), got list$"):
        pl.quantize_depth([[[1.0, 2.0]]], torch.tensor([1.5]))


def test_depth_aware_pool_defaults():
    pool = pl.DepthAwareGatedPool(6)
    assert (pool.dilations, pool.gate, pool.tied, pool.out_channels) == ((1, 2, 4, 8, 16), "predicted", False, 6)
    assert len(pool.branches.convs) == 5 and len(pool.branches.norms) == 5
    convs = [m for m in pool.head if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(128, (1, 1)), (32, (3, 3)), (5, (1, 1))]
    assert pool.last_gate is None and pool.last_logits is None and pool.flop_convs() == []
    avg = pl.DepthAwareGatedPool(6, dilations=(1, 2), gate="average")
    avg(torch.randn(1, 6, 5, 5, generator=_gen(30)))
    assert avg.head is None and avg.last_logits is None and avg.last_gate.shape == (1, 2, 5, 5)


def test_gate_head_layers_and_parameter_count():
    head = pl.DepthAwareGatedPool(6, dilations=(1, 2), gate="learned", head_widths=(4, 3)).head
    convs = [m for m in head if isinstance(m, nn.Conv2d)]
    assert [c.bias is None for c in convs] == [True, True, False]  # BatchNorm follows the hidden convolutions
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)] and convs[1].padding == (1, 1)
    # 1x1 conv 6->4, BN(4), 3x3 conv 4->3, BN(3), 1x1 conv 3->2 with bias
    assert sum(p.numel() for p in head.parameters()) == 6 * 4 + 2 * 4 + 4 * 3 * 9 + 2 * 3 + 3 * 2 + 2


def test_lower_bounds_of_the_pool_arguments_are_valid():
    pool = pl.DepthAwareGatedPool(1, dilations=(1,), gate="predicted", out_channels=1, head_widths=(1,)).eval()
    x = torch.randn(2, 1, 4, 4, generator=_gen(31))
    assert pool(x).shape == (2, 1, 4, 4)
    torch.testing.assert_close(pool.last_gate, torch.ones(2, 1, 4, 4))  # one branch: softmax over one logit
    out2 = pl.DepthAwareGatedPool(4, dilations=(1, 2), gate="average", out_channels=2)
    assert out2(torch.randn(1, 4, 3, 3)).shape == (1, 2, 3, 3)


def test_true_gate_with_a_single_branch_and_missing_depth():
    pool = _bn_random(pl.DepthAwareGatedPool(6, dilations=(2,), gate="true")).eval()
    x = torch.randn(2, 6, 5, 5, generator=_gen(32))
    bins = torch.zeros(2, 5, 5, dtype=torch.long)
    bins[0, :2] = 255  # missing depth: weight 1/K = 1 on the only branch
    torch.testing.assert_close(pool(x, bins), pool.branch(0, x))
    assert torch.equal(pool.last_gate, torch.ones(2, 1, 5, 5))


def test_branch_k_uses_its_own_kernel_and_batchnorm():
    pool = _bn_random(pl.DepthAwareGatedPool(4, dilations=(0, 1, 2, 3), gate="average")).eval()
    x = torch.randn(1, 4, 7, 7, generator=_gen(33))
    assert torch.equal(pool.branch(0, x), x)
    for k, d in ((1, 1), (2, 2), (3, 3)):  # conv/norm k - 1: the identity has none
        conv, bn = pool.branches.convs[k - 1], pool.branches.norms[k - 1]
        expected = F.relu(bn(F.conv2d(x, conv.weight, padding=d, dilation=d)))
        torch.testing.assert_close(pool.branch(k, x), expected)


def test_pool_flop_convs_skip_the_identity_branch():
    x = torch.randn(1, 4, 5, 5)
    per_conv = 2 * 25 * 4 * 4 * 9
    untied = bd.count_flops(pl.DepthAwareGatedPool(4, dilations=(0, 1, 2), gate="average"), x)
    assert untied.per_module == {"branches.convs.0": per_conv, "branches.convs.1": per_conv}
    tied = bd.count_flops(pl.DepthAwareGatedPool(4, dilations=(0, 1, 2), gate="average", tied=True), x)
    assert tied.per_module == {"branches.convs.0": 2 * per_conv} and tied.total == 2 * per_conv


def test_multipool_defaults_and_tied():
    mp = pl.PAGMultiPool(6)
    assert (mp.dilations, mp.tied, mp.execution, mp.force, mp.gumbel.tau) == ((0, 1, 2, 4, 6, 8, 10), False,
                                                                               "dense", None, 1.0)
    assert len(mp.branches.convs) == 6 and mp.last_gate is None and mp.flop_convs() == []
    convs = [m for m in mp.head if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 32, 7]
    tied = pl.PAGMultiPool(6, dilations=(0, 1, 2), tied=True, head_widths=(2,))
    assert len(tied.branches.convs) == 1 and len(tied.branches.norms) == 2


def test_multipool_sparse_execution_calls_the_sparse_kernel_in_eval_only(monkeypatch):
    calls, original = [], pl.gated_conv2d

    def spy(*args, **kwargs):
        calls.append(kwargs.get("impl", "auto"))
        return original(*args, **kwargs)

    monkeypatch.setattr(pl, "gated_conv2d", spy)
    mp = pl.PAGMultiPool(4, dilations=(0, 1, 2), head_widths=(3,)).eval()
    x = torch.randn(1, 4, 6, 6, generator=_gen(34))
    dense = mp(x)
    assert calls == []  # execution="dense": every branch everywhere, no gathered kernel
    mp.execution = "sparse"
    torch.testing.assert_close(mp(x), dense, atol=1e-5, rtol=1e-5)
    assert calls == ["sparse", "sparse"]  # one call per convolutional branch
    calls.clear()
    mp.train()(x)
    assert calls == []  # training is always dense


_BAD_POOL = [
    (lambda: pl.depth_bin_edges(torch.tensor([[[1.0, float("nan")]]]), 2), ValueError, r"^`depth`: expected finite"),
    (lambda: pl.depth_bin_edges(torch.ones(1, 2, 2), 2, torch.zeros(1, 2, 2, dtype=torch.bool)), ValueError,
     r"^`valid`: expected at least one valid depth, got none$"),
    (lambda: pl.depth_bin_edges(torch.ones(1, 2, 2, dtype=torch.long), 2), TypeError,
     r"^`depth`: expected a floating-point tensor"),
    (lambda: pl.quantize_depth(torch.ones(2, 2), torch.tensor([1.0])), ValueError, r"^`depth`: expected shape \(N, H, W\)"),
    (lambda: pl.quantize_depth(torch.ones(1, 2, 2), torch.tensor([1.0, 1.0])), ValueError,
     r"^`edges`: expected strictly increasing thresholds$"),
    (lambda: pl.quantize_depth(torch.ones(1, 2, 2), torch.tensor([1.0, 3.0, 2.0])), ValueError,
     r"^`edges`: expected strictly increasing thresholds$"),
    (lambda: pl.quantize_depth(torch.ones(2, 3, 4), torch.tensor([1.0]), torch.ones(1, 3, 4, dtype=torch.bool)),
     ValueError, r"^`valid`: expected N=2 \(as in `depth`\), got 1$"),
    (lambda: pl.quantize_depth(torch.ones(2, 3, 4), torch.tensor([1.0]), torch.ones(2, 2, 4, dtype=torch.bool)),
     ValueError, r"^`valid`: expected H=3 \(as in `depth`\), got 2$"),
    (lambda: pl.quantize_depth(torch.ones(2, 3, 4), torch.tensor([1.0]), torch.ones(2, 3, 5, dtype=torch.bool)),
     ValueError, r"^`valid`: expected W=4 \(as in `depth`\), got 5$"),
    (lambda: pl.quantize_depth(torch.ones(2, 3, 4), torch.tensor([1.0]), torch.ones(3, 4, dtype=torch.bool)),
     ValueError, r"^`valid`: expected shape \(N, H, W\)"),
    (lambda: pl.DepthAwareGatedPool(6, dilations=4), TypeError, r"^`dilations`: expected a sequence of ints, got int$"),
    (lambda: pl.DepthAwareGatedPool(6, dilations="12"), TypeError, r"^`dilations`: expected a sequence of ints, got str$"),
    (lambda: pl.DepthAwareGatedPool(6, dilations=()), ValueError, r"^`dilations`: expected at least one dilation, got none$"),
    (lambda: pl.DepthAwareGatedPool(6, out_channels=0), ValueError, r"^`out_channels`: expected an integer in \[1, inf\], got 0$"),
    (lambda: pl.DepthAwareGatedPool(6, tied="yes"), TypeError, r"^`tied`: expected a bool, got str$"),
    (lambda: pl.DepthAwareGatedPool(6, head_widths=(4, 0)), ValueError,
     r"^`head_widths`: expected an integer in \[1, inf\], got 0$"),
    (lambda: pl.DepthAwareGatedPool(6, gate="depth"), ValueError, r"^`gate`: expected one of"),
    (lambda: pl.PAGMultiPool(6, head_widths=(0,)), ValueError, r"^`head_widths`: expected an integer in \[1, inf\], got 0$"),
]


@pytest.mark.parametrize("thunk,err,pattern", _BAD_POOL, ids=_ids(_BAD_POOL))
def test_pool_bad_argument_names_itself(thunk, err, pattern):
    with pytest.raises(err, match=pattern):
        thunk()


def test_pool_forward_errors_are_anchored():
    pool = pl.DepthAwareGatedPool(6, dilations=(1, 2, 3), gate="true")
    x = torch.randn(2, 6, 4, 5, generator=_gen(35))
    cases = [(None, r"^`depth_bins`: gate='true' needs the quantised depth \(N, H, W\), got None$"),
             (torch.zeros(1, 4, 5, dtype=torch.long), r"^`depth_bins`: expected N=2 \(as in `x`\), got 1$"),
             (torch.zeros(2, 3, 5, dtype=torch.long), r"^`depth_bins`: expected H=4 \(as in `x`\), got 3$"),
             (torch.zeros(2, 4, 6, dtype=torch.long), r"^`depth_bins`: expected W=5 \(as in `x`\), got 6$"),
             (torch.zeros(2, 20, dtype=torch.long), r"^`depth_bins`: expected shape \(N, H, W\)")]
    for bins, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            pool(x, bins)
    with pytest.raises(ValueError, match=r"^`x`: expected finite"):
        pool(torch.full((1, 6, 2, 2), float("inf")), torch.zeros(1, 2, 2, dtype=torch.long))
    mp = pl.PAGMultiPool(6, dilations=(0, 1, 2), head_widths=(2,))
    with pytest.raises(ValueError, match=r"^`x`: expected shape \(N, 6, H, W\)"):
        mp(torch.zeros(1, 5, 3, 3))
    for module in (pool, mp):
        for k in (3, -1):
            with pytest.raises(ValueError, match=rf"^`k`: expected an integer in \[0, 2\], got {k}$"):
                module.branch(k, x)


# ------------------------------------------------------------------------------------------------
# Networks: GatedPoolNet, PAGResNet, PAGResNet50
# ------------------------------------------------------------------------------------------------

from pixelbook.gating import nets as nt  # noqa: E402


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_gated_pool_net_defaults_and_layers():
    net = nt.GatedPoolNet(4)
    assert (net.pool_kind, net.in_channels) == ("predicted", 3) and isinstance(net.pool, pl.DepthAwareGatedPool)
    assert (net.pool.dilations, net.pool.gate, net.pool.tied, net.pool.channels) == ((1, 2, 4, 8), "predicted", False, 32)
    assert [c.out_channels for c in net.pool.head if isinstance(c, nn.Conv2d)] == [16, 8, 4]
    stem = _convs(net.stem)  # 3x3 then 1x1, no bias (BatchNorm follows)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding, c.bias) for c in stem] == \
        [(3, 32, (3, 3), (1, 1), None), (32, 32, (1, 1), (0, 0), None)]
    cls = _convs(net.classifier)
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in cls] == [(32, 32, (1, 1)), (32, 4, (1, 1))]
    assert cls[0].bias is None and cls[1].bias is not None
    pag_net = nt.GatedPoolNet(2, pool="pag", dilations=(0, 1), tied=True, width=4, head_widths=(3,), in_channels=1)
    mp = pag_net.pool
    assert isinstance(mp, pl.PAGMultiPool) and mp.tied and mp.dilations == (0, 1) and mp.channels == 4
    assert [c.out_channels for c in mp.head if isinstance(c, nn.Conv2d)] == [3, 2]
    untied = nt.GatedPoolNet(2, pool="average", dilations=(1, 2), tied=True, width=4)
    assert untied.pool.tied and len(untied.pool.branches.convs) == 1


@pytest.mark.parametrize("pool", ["average", "true", "predicted", "learned", "pag"])
def test_gated_pool_net_output_is_stem_pool_classifier(pool):
    torch.manual_seed(0)
    net = _bn_random(nt.GatedPoolNet(3, pool=pool, dilations=(0, 1, 2) if pool == "pag" else (1, 2),
                                     width=4, head_widths=(3,), in_channels=2)).eval()
    x = torch.rand(2, 2, 6, 6, generator=_gen(40))
    bins = torch.randint(0, 2, (2, 6, 6), generator=_gen(41))
    out = net(x, bins if pool == "true" else None)
    feats = net.stem(x)
    pooled = net.pool(feats) if pool == "pag" else net.pool(feats, bins if pool == "true" else None)
    torch.testing.assert_close(out["seg"], net.classifier(pooled))
    assert out["gate"] is not None and torch.equal(out["gate"], net.pool.last_gate)
    if pool != "pag":
        assert net.pool.gate == pool  # the pooling module gets the network's gate
    if pool == "average":
        assert torch.equal(out["gate"], torch.full((2, 2, 6, 6), 0.5))
    if pool == "true":
        assert torch.equal(out["gate"], F.one_hot(bins, 2).permute(0, 3, 1, 2).float())
    if pool in ("predicted", "learned"):
        assert set(out) == {"seg", "gate", "gate_logits"}
        torch.testing.assert_close(out["gate_logits"], net.pool.last_logits)
        torch.testing.assert_close(out["gate"], out["gate_logits"].softmax(1))
    else:
        assert set(out) == {"seg", "gate"}


def test_pag_resnet_defaults_and_blocks():
    net = nt.PAGResNet(3)
    assert (net.gates, net.in_channels, net.dilations) == ("pixel", 3, (1, 1, 2, 2, 4, 4, 1, 1))
    assert [(b.conv2.dilation[0], b.conv1.out_channels, b.granularity) for b in net.blocks] == \
        [(d, 16, "pixel") for d in (1, 1, 2, 2, 4, 4, 1, 1)]
    stem = _convs(net.stem)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in stem] == [(3, 64, (3, 3), (1, 1))]
    assert (net.classifier.in_channels, net.classifier.out_channels, net.classifier.kernel_size) == (64, 3, (1, 1))
    small = nt.PAGResNet(2, gates="image", dilations=(3,), width=4, in_channels=1).eval()
    assert small.blocks[0].granularity == "image" and small.blocks[0].conv1.out_channels == 1
    x = torch.rand(2, 1, 5, 5, generator=_gen(42))
    torch.testing.assert_close(small(x)["seg"], small.classifier(small.blocks[0](small.stem(x))))


_BAD_NETS = [
    (lambda: nt.GatedPoolNet(1), ValueError, r"^`num_classes`: expected an integer in \[2, inf\], got 1$"),
    (lambda: nt.GatedPoolNet(2, width=0), ValueError, r"^`width`: expected an integer in \[1, inf\], got 0$"),
    (lambda: nt.GatedPoolNet(2, in_channels=0), ValueError, r"^`in_channels`: expected an integer in \[1, inf\], got 0$"),
    (lambda: nt.GatedPoolNet(2, pool="max"), ValueError, r"^`pool`: expected one of"),
    (lambda: nt.GatedPoolNet(2, width=4, in_channels=2)(torch.rand(1, 3, 4, 4)), ValueError,
     r"^`image`: expected shape \(N, 2, H, W\)"),
    (lambda: nt.GatedPoolNet(2, width=4)(torch.full((1, 3, 4, 4), float("nan"))), ValueError, r"^`image`: expected finite"),
    (lambda: nt.PAGResNet(1), ValueError, r"^`num_classes`: expected an integer in \[2, inf\], got 1$"),
    (lambda: nt.PAGResNet(2, width=2), ValueError, r"^`width`: expected an integer in \[4, inf\], got 2$"),
    (lambda: nt.PAGResNet(2, width=6), ValueError, r"^`width`: expected a multiple of 4 \(bottleneck width/4\), got 6$"),
    (lambda: nt.PAGResNet(2, in_channels=0), ValueError, r"^`in_channels`: expected an integer in \[1, inf\], got 0$"),
    (lambda: nt.PAGResNet(2, gates="layer"), ValueError, r"^`gates`: expected one of"),
    (lambda: nt.PAGResNet(2, dilations=(1, 0)), ValueError, r"^`dilations`: expected an integer in \[1, inf\], got 0$"),
    (lambda: nt.PAGResNet(2, dilations=()), ValueError, r"^`dilations`: expected at least one block$"),
    (lambda: nt.PAGResNet(2, width=4, in_channels=2)(torch.rand(1, 3, 4, 4)), ValueError,
     r"^`image`: expected shape \(N, 2, H, W\)"),
    (lambda: nt.PAGResNet(2, width=4)(torch.full((1, 3, 4, 4), float("inf"))), ValueError, r"^`image`: expected finite"),
]


@pytest.mark.parametrize("thunk,err,pattern", _BAD_NETS, ids=_ids(_BAD_NETS))
def test_nets_bad_argument_names_itself(thunk, err, pattern):
    with pytest.raises(err, match=pattern):
        thunk()


def test_small_nets_accept_their_lower_bounds():
    assert nt.GatedPoolNet(2, pool="average", dilations=(1,), width=1, in_channels=1)(torch.rand(1, 1, 3, 3))["seg"].shape \
        == (1, 2, 3, 3)
    assert nt.PAGResNet(2, dilations=(1,), width=4, in_channels=1)(torch.rand(1, 1, 3, 3))["seg"].shape == (1, 2, 3, 3)


def _bn_modes(net):
    return {n: m.training for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)}


def test_resnet50_constructor_copies_the_replaced_kernel_and_batchnorm_into_every_branch(monkeypatch):
    original = torchvision.models.resnet50
    # a backbone with non-trivial BatchNorm statistics, as pretrained weights would have
    monkeypatch.setattr(torchvision.models, "resnet50", lambda *a, **kw: _bn_random(original(*a, **kw), 3))
    torch.manual_seed(0)
    plain = nt.PAGResNet50(5, gates="none", pool="none", blocks=4, head_width=8)
    torch.manual_seed(0)  # the same backbone weights: the backbone is built first
    net = nt.PAGResNet50(5, gates="pixel", pool="pag", blocks=4, head_width=8)
    net.head.load_state_dict(plain.head.state_dict())
    host, ref = net.stages["layer1"][2], plain.stages["layer1"][2]  # block 3 of 4: the second-to-last
    assert host.conv2 is net.pool and isinstance(host.bn2, nn.Identity) and net.pool_block == 2
    assert len(net.pool.branches.convs) == 6 and len(net.pool.branches.norms) == 6
    for conv in net.pool.branches.convs:
        assert torch.equal(conv.weight, ref.conv2.weight)
    for norm in net.pool.branches.norms:
        for key, value in ref.bn2.state_dict().items():
            assert torch.equal(norm.state_dict()[key], value)
    # forced: gates on, the MultiPool on the dilation-1 branch -> the plain network
    net.pool.force = 1
    for block in bd.pag_blocks(net):
        block.force = 1.0
    assert len(bd.pag_blocks(net)) == 3
    x = torch.rand(1, 3, 24, 28, generator=_gen(43))
    torch.testing.assert_close(net.eval()(x)["seg"], plain.eval()(x)["seg"], rtol=1e-4, atol=1e-5)
    # in training the branches' BatchNorms keep their moments (frozen), the gate heads' train
    net.train()
    assert not any(n.training for n in net.pool.branches.norms)
    assert all(m.training for m in net.pool.head.modules() if isinstance(m, nn.BatchNorm2d))
    assert "stages.layer1.2.bn2" not in net._frozen


def test_resnet50_defaults():
    net = nt.PAGResNet50(5)
    assert (net.gates, net.pool_kind, net.blocks, net.freeze_bn, net.pool_block) == ("pixel", "pag", 16, True, 14)
    assert net.stages["layer4"][1].conv2 is net.pool and isinstance(net.pool, pl.PAGMultiPool)
    assert net.pool.dilations == (0, 1, 2, 4, 6, 8, 10) and len(bd.pag_blocks(net)) == 15
    assert [c.out_channels for c in net.pool.head if isinstance(c, nn.Conv2d)] == [128, 32, 7]
    assert all(b.granularity == "pixel" for b in bd.pag_blocks(net))
    head = _convs(net.head)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in head] == \
        [(2048, 512, (3, 3), (1, 1)), (512, 512, (3, 3), (1, 1)), (512, 5, (1, 1), (0, 0))]
    assert net.training and not net.stem[1].training  # built in training mode, ImageNet moments frozen
    assert "mean" not in net.state_dict() and "std" not in net.state_dict()
    torch.testing.assert_close(net.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(net.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    assert [net.stages[s][0].conv2.dilation for s in ("layer3", "layer4")] == [(1, 1), (2, 2)]  # first block of a
    assert [net.stages[s][1].conv2.dilation for s in ("layer3",)] == [(2, 2)]             # dilated stage: torchvision's


def test_resnet50_forward_is_the_dilated_torchvision_backbone_and_the_head():
    torch.manual_seed(1)
    net = nt.PAGResNet50(3, gates="none", pool="none", head_width=4).eval()
    torch.manual_seed(1)
    tv = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True]).eval()
    x = torch.rand(1, 3, 30, 34, generator=_gen(44))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        f = tv.maxpool(tv.relu(tv.bn1(tv.conv1((x - mean) / std))))
        f = tv.layer4(tv.layer3(tv.layer2(tv.layer1(f))))
        assert f.shape == (1, 2048, 4, 5)  # output stride 8
        expected = F.interpolate(net.head(f), size=(30, 34), mode="bilinear", align_corners=False)
        torch.testing.assert_close(net(x)["seg"], expected)
    assert net.pool is None and net.pool_block is None and bd.pag_blocks(net) == []


def test_resnet50_two_blocks_and_unfrozen_batchnorm():
    net = nt.PAGResNet50(2, gates="image", pool="learned", blocks=2, head_width=1, freeze_bn=False)
    assert [len(s) for s in net.stages.values()] == [2] and net.pool_block == 0
    assert net.stages["layer1"][0].conv2 is net.pool and isinstance(net.pool, pl.DepthAwareGatedPool)
    assert net.pool.gate == "learned" and [b.granularity for b in bd.pag_blocks(net)] == ["image"]
    assert all(_bn_modes(net.train()).values())  # freeze_bn=False: every BatchNorm trains
    assert not any(_bn_modes(net.eval()).values())
    frozen = nt.PAGResNet50(2, pool="none", gates="none", blocks=2, head_width=1).eval().train()
    modes = _bn_modes(frozen)
    assert not modes["stem.1"] and not modes["stages.layer1.0.bn2"] and modes["head.1"]
    assert frozen(torch.rand(1, 3, 16, 16))["seg"].shape == (1, 2, 16, 16)


def test_resnet50_passes_the_weights_to_torchvision_and_shapes_its_normalisation(monkeypatch):
    calls, original = [], torchvision.models.resnet50

    def spy(**kwargs):
        calls.append(kwargs)
        return original(weights=None, replace_stride_with_dilation=kwargs["replace_stride_with_dilation"])

    monkeypatch.setattr(torchvision.models, "resnet50", spy)
    sentinel = object()  # stands for an ImageNet weights enum (no download in the tests)
    net = nt.PAGResNet50(2, gates="none", pool="none", blocks=2, head_width=1, weights=sentinel)
    assert len(calls) == 1 and calls[0]["weights"] is sentinel
    assert calls[0]["replace_stride_with_dilation"] == [False, True, True]
    assert net.mean.shape == net.std.shape == (1, 3, 1, 1)  # one value per channel of an (N, 3, H, W) image


@pytest.mark.parametrize("pool", ["pag", "learned"])
def test_resnet50_multipool_takes_its_dilations_and_head_widths(pool):
    net = nt.PAGResNet50(2, gates="none", pool=pool, pool_dilations=(0, 3), pool_head_widths=(5, 4), blocks=2,
                         head_width=1)
    assert net.pool.dilations == (0, 3) and len(net.pool.branches.convs) == 1
    assert [c.out_channels for c in net.pool.head if isinstance(c, nn.Conv2d)] == [5, 4, 2]
    default = nt.PAGResNet50(2, gates="none", pool="learned", blocks=2, head_width=1)
    assert default.pool.dilations == (0, 1, 2, 4, 6, 8, 10)  # the MultiPool's branches for both gates
    assert [c.out_channels for c in default.pool.head if isinstance(c, nn.Conv2d)] == [128, 32, 7]


def test_resnet50_without_gates_keeps_torchvision_bottlenecks():
    from torchvision.models.resnet import Bottleneck

    net = nt.PAGResNet50(2, gates="none", pool="pag", blocks=3, head_width=1)
    blocks = list(net.stages["layer1"])
    assert blocks[1].conv2 is net.pool  # the MultiPool's host, second-to-last
    assert [type(b) is Bottleneck for b in blocks] == [True, True, True]
    gated = nt.PAGResNet50(2, gates="image", pool="pag", blocks=3, head_width=1)
    assert [type(b).__name__ for b in gated.stages["layer1"]] == ["PAGBottleneck", "Bottleneck", "PAGBottleneck"]


_BAD_R50 = [
    (lambda: nt.PAGResNet50(1), ValueError, r"^`num_classes`: expected an integer in \[2, inf\], got 1$"),
    (lambda: nt.PAGResNet50(3, blocks=1), ValueError, r"^`blocks`: expected an integer in \[2, 16\], got 1$"),
    (lambda: nt.PAGResNet50(3, blocks=17), ValueError, r"^`blocks`: expected an integer in \[2, 16\], got 17$"),
    (lambda: nt.PAGResNet50(3, head_width=0), ValueError, r"^`head_width`: expected an integer in \[1, inf\], got 0$"),
    (lambda: nt.PAGResNet50(3, freeze_bn=1), TypeError, r"^`freeze_bn`: expected a bool, got int$"),
    (lambda: nt.PAGResNet50(3, gates="layer"), ValueError, r"^`gates`: expected one of"),
    (lambda: nt.PAGResNet50(3, pool="average"), ValueError, r"^`pool`: expected one of"),
    (lambda: nt.PAGResNet50(3, blocks=2, head_width=1)(torch.rand(1, 1, 8, 8)), ValueError,
     r"^`image`: expected shape \(N, 3, H, W\)"),
    (lambda: nt.PAGResNet50(3, blocks=2, head_width=1)(torch.full((1, 3, 8, 8), float("nan"))), ValueError,
     r"^`image`: expected finite"),
]


@pytest.mark.parametrize("thunk,err,pattern", _BAD_R50, ids=_ids(_BAD_R50))
def test_resnet50_bad_argument_names_itself(thunk, err, pattern):
    with pytest.raises(err, match=pattern):
        thunk()
