"""Tests of pixelbook.gating: Gumbel gates, gated pooling, PAG blocks, the KL budget, ponder maps, FLOPs."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fakes import randomize_batchnorm as _bn_random

from pixelbook import gating as G
from pixelbook.gating import (BudgetKLLoss, DepthAwareGatedPool, GumbelGate, PAGBottleneck, PAGMultiPool,
                              bernoulli_kl, budget_kl_loss, count_flops, depth_bin_edges, gate_densities,
                              gumbel_noise, gumbel_softmax_st, insert_pag, ponder_map, quantize_depth,
                              set_temperature, temperature_schedule)

f64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Gumbel
# --------------------------------------------------------------------------------------------


class TestGumbelNoise:
    def test_moments_of_standard_gumbel(self):
        m = gumbel_noise((200_000,), _gen(0), dtype=f64)
        assert abs(float(m.mean()) - 0.5772156649) < 0.01          # Euler–Mascheroni
        assert abs(float(m.var()) - math.pi ** 2 / 6) < 0.03

    def test_finite_even_at_extreme_uniforms(self, monkeypatch):
        monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor([0.0, 1.0]))
        assert bool(torch.isfinite(gumbel_noise((2,))).all())

    def test_generator_makes_draws_reproducible(self):
        assert torch.equal(gumbel_noise((5,), _gen(3)), gumbel_noise((5,), _gen(3)))


class TestGumbelSoftmaxST:
    @pytest.mark.parametrize("probs", [[0.7, 0.2, 0.1], [0.05, 0.05, 0.9], [0.5, 0.5]])
    def test_sample_frequencies_match_softmax(self, probs):
        # Eq. 4.3 is an exact sampler: frequencies within 4 binomial standard deviations
        n = 100_000
        p = torch.tensor(probs, dtype=f64)
        logits = (p.log() + 3.0).reshape(1, -1, 1).expand(n, -1, 1)  # a constant shift must not matter
        y = gumbel_softmax_st(logits, tau=0.7, generator=_gen(1))
        freq = y.mean((0, 2))
        sigma = torch.sqrt(p * (1 - p) / n)
        assert bool(((freq - p).abs() < 4 * sigma).all()), (freq, p)

    def test_forward_exactly_binary_one_hot(self):
        y = gumbel_softmax_st(torch.randn(3, 4, 5, 5, generator=_gen(2)), tau=2.0, generator=_gen(3))
        assert bool(((y == 0) | (y == 1)).all())
        assert torch.equal(y.sum(1), torch.ones(3, 5, 5))

    def test_hard_sample_is_argmax_of_logits_plus_noise(self):
        logits = torch.randn(2, 3, 4, generator=_gen(4))
        noise = gumbel_noise(logits.shape, _gen(5))
        y = gumbel_softmax_st(logits, tau=0.3, noise=noise)
        assert torch.equal(y.argmax(1), (logits + noise).argmax(1))

    def test_soft_sample_is_the_relaxation_eq_4_4(self):
        logits = torch.randn(2, 3, generator=_gen(6))
        noise = gumbel_noise(logits.shape, _gen(7))
        y = gumbel_softmax_st(logits, tau=0.5, noise=noise, hard=False)
        torch.testing.assert_close(y, ((logits + noise) / 0.5).softmax(1))

    def test_straight_through_gradient_equals_relaxation_gradient(self):
        logits = torch.randn(4, 3, 2, 2, generator=_gen(8), dtype=f64, requires_grad=True)
        noise = gumbel_noise(logits.shape, _gen(9), dtype=f64)
        w = torch.randn(4, 3, 2, 2, generator=_gen(10), dtype=f64)
        g_st, = torch.autograd.grad((gumbel_softmax_st(logits, 0.5, noise=noise) * w).sum(), logits)
        g_soft, = torch.autograd.grad((gumbel_softmax_st(logits, 0.5, noise=noise, hard=False) * w).sum(), logits)
        torch.testing.assert_close(g_st, g_soft)
        assert float(g_st.abs().sum()) > 0

    def test_small_tau_relaxation_approaches_one_hot(self):
        logits = torch.randn(50, 4, generator=_gen(11))
        noise = gumbel_noise(logits.shape, _gen(12))
        y = gumbel_softmax_st(logits, tau=0.01, noise=noise, hard=False)
        assert float(y.max(1).values.min()) > 0.99

    def test_dim_argument(self):
        logits = torch.randn(2, 5, 3, generator=_gen(13))
        noise = gumbel_noise(logits.shape, _gen(14))
        y = gumbel_softmax_st(logits, 1.0, dim=-1, noise=noise)
        assert torch.equal(y.sum(-1), torch.ones(2, 5))

    @pytest.mark.parametrize("kw,match", [
        (dict(tau=0.0), "`tau`: expected a finite number in \\(0"),
        (dict(tau=float("inf")), "`tau`: expected a finite"),
        (dict(logits=torch.ones(2, 3, dtype=torch.long)), "`logits`: expected a floating-point"),
        (dict(logits=torch.tensor([[0.0, float("nan")]])), "`logits`: expected finite"),
        (dict(noise=torch.zeros(3, 3)), "`noise`: expected shape \\(2, 3\\)"),
        (dict(dim=2), "`dim`: expected an integer in"),
        (dict(logits=torch.zeros(0, 3)), "`logits`: expected a non-empty"),
    ])
    def test_errors(self, kw, match):
        args = dict(logits=torch.zeros(2, 3), tau=1.0)
        args.update(kw)
        with pytest.raises((ValueError, TypeError), match=match):
            gumbel_softmax_st(**args)


class TestGumbelGate:
    def test_eval_is_deterministic_argmax_without_noise(self):
        gate = GumbelGate(tau=0.5).eval()
        logits = torch.randn(3, 4, 6, 6, generator=_gen(20))
        y1, y2 = gate(logits), gate(logits)
        assert torch.equal(y1, y2)
        assert torch.equal(y1, F.one_hot(logits.argmax(1), 4).permute(0, 3, 1, 2).float())

    def test_train_samples_and_records_clean_probs(self):
        gate = GumbelGate().train()
        logits = torch.zeros(1, 2, 50, 50)
        y = gate(logits, generator=_gen(21))
        assert 0.4 < float(y[:, 1].mean()) < 0.6  # a fair coin per pixel, not a constant
        torch.testing.assert_close(gate.last_prob, torch.full_like(logits, 0.5))

    def test_sample_in_eval_option(self):
        gate = GumbelGate(sample_in_eval=True).eval()
        y = gate(torch.zeros(1, 2, 40, 40), generator=_gen(22))
        assert 0 < float(y[:, 1].mean()) < 1

    def test_errors(self):
        with pytest.raises(ValueError, match="`tau`"):
            GumbelGate(tau=-1.0)
        with pytest.raises(TypeError, match="`hard`"):
            GumbelGate(hard=1)


class TestTemperature:
    def test_exponential_hand_values_and_clamp(self):
        assert temperature_schedule(0, 4) == 1.0
        assert math.isclose(temperature_schedule(2, 4), math.sqrt(0.1))
        assert math.isclose(temperature_schedule(4, 4), 0.1)
        assert math.isclose(temperature_schedule(100, 4), 0.1)

    def test_linear_hand_values(self):
        assert math.isclose(temperature_schedule(1, 4, shape="linear"), 1.0 - 0.9 / 4)
        assert math.isclose(temperature_schedule(3, 3, start=2.0, end=0.5, shape="linear"), 0.5)

    @pytest.mark.parametrize("shape", ["exponential", "linear"])
    def test_monotone_non_increasing(self, shape):
        taus = [temperature_schedule(s, 50, shape=shape) for s in range(80)]
        assert all(a >= b for a, b in zip(taus, taus[1:])) and taus[0] > taus[-1]

    def test_set_temperature_reaches_every_gate(self):
        net = nn.Sequential(PAGBottleneck(8, 2), PAGMultiPool(8, (0, 1), head_widths=(4,)))
        assert set_temperature(net, 0.25) == 2
        assert net[0].gumbel.tau == 0.25 and net[1].gumbel.tau == 0.25

    @pytest.mark.parametrize("kw,match", [(dict(step=-1), "`step`"), (dict(total_steps=0), "`total_steps`"),
                                          (dict(end=2.0), "`end`: expected <= start"),
                                          (dict(step=1.5), "`step`: expected an integer"),
                                          (dict(shape="cosine"), "`shape`")])
    def test_errors(self, kw, match):
        args = dict(step=0, total_steps=10)
        args.update(kw)
        with pytest.raises((ValueError, TypeError), match=match):
            temperature_schedule(**args)

    def test_set_temperature_errors(self):
        with pytest.raises(TypeError, match="`model`"):
            set_temperature("net", 0.5)
        with pytest.raises(ValueError, match="`tau`"):
            set_temperature(nn.Linear(1, 1), 0.0)


# --------------------------------------------------------------------------------------------
# Depth quantisation and gated pooling
# --------------------------------------------------------------------------------------------


class TestDepthBins:
    def test_log_edges_hand_computed(self):
        torch.testing.assert_close(depth_bin_edges(torch.tensor([[[1.0, 27.0, 3.0]]]), 3),
                                   torch.tensor([3.0, 9.0]))

    def test_quantile_edges_split_counts(self):
        d = torch.arange(1.0, 101.0).reshape(1, 10, 10)
        bins = quantize_depth(d, depth_bin_edges(d, 4, spacing="quantile"))
        assert torch.bincount(bins.flatten()).tolist() == [25, 25, 25, 25]

    def test_near_is_the_largest_bin_and_monotone(self):
        d = torch.linspace(0.5, 50, 200).reshape(1, 1, 200)
        bins = quantize_depth(d, depth_bin_edges(d, 5))
        assert int(bins[0, 0, 0]) == 4 and int(bins[0, 0, -1]) == 0
        assert bool((bins[0, 0, 1:] <= bins[0, 0, :-1]).all())

    def test_edges_from_valid_pixels_only_and_invalid_get_ignore(self):
        d = torch.tensor([[[1.0, 4.0, 1000.0]]])
        valid = torch.tensor([[[True, True, False]]])
        edges = depth_bin_edges(d, 2, valid)
        torch.testing.assert_close(edges, torch.tensor([2.0]))
        assert quantize_depth(d, edges, valid).tolist() == [[[1, 0, 255]]]

    def test_value_on_an_edge_goes_to_the_farther_bin(self):
        assert quantize_depth(torch.tensor([[[2.0]]]), torch.tensor([2.0])).item() == 0

    def test_accepts_n1hw(self):
        d = torch.rand(2, 1, 3, 3) + 1
        assert quantize_depth(d, torch.tensor([1.5])).shape == (2, 3, 3)

    @pytest.mark.parametrize("call,match", [
        (lambda: depth_bin_edges(torch.tensor([[[0.0, 1.0]]]), 2), "`depth`: expected positive"),
        (lambda: depth_bin_edges(torch.ones(1, 2, 2), 1), "`num_bins`: expected an integer in \\[2"),
        (lambda: depth_bin_edges(torch.ones(1, 2, 2), 2, torch.zeros(1, 2, 2, dtype=torch.bool)), "`valid`: expected at least"),
        (lambda: depth_bin_edges(torch.ones(1, 2, 2), 2, torch.ones(1, 2, 2)), "`valid`: expected a bool"),
        (lambda: depth_bin_edges(torch.ones(1, 2, 2), 2, spacing="linear"), "`spacing`"),
        (lambda: quantize_depth(torch.ones(1, 2, 2), torch.tensor([2.0, 1.0])), "`edges`: expected strictly"),
        (lambda: quantize_depth(torch.ones(2, 2, 2, 2), torch.tensor([1.0])), "`depth`: expected shape \\(N, 1, H, W\\)"),
        (lambda: quantize_depth(torch.ones(1, 2, 2), torch.tensor([[1.0]])), "`edges`: expected shape \\(E\\)"),
        (lambda: quantize_depth(torch.full((1, 2, 2), float("nan")), torch.tensor([1.0])), "`depth`: expected finite"),
    ])
    def test_errors(self, call, match):
        with pytest.raises((ValueError, TypeError), match=match):
            call()


class TestDepthAwareGatedPool:
    def _x(self, seed=0, C=6):
        return torch.randn(2, C, 9, 9, generator=_gen(seed))

    def test_true_gate_selects_the_branch_of_each_pixel(self):
        pool = _bn_random(DepthAwareGatedPool(6, dilations=(0, 1, 3), gate="true")).eval()
        x = self._x()
        bins = torch.randint(0, 3, (2, 9, 9), generator=_gen(1))
        y = pool(x, bins)
        branches = torch.stack([pool.branch(k, x) for k in range(3)], 1)        # (N, K, C, H, W)
        expected = branches.gather(1, bins[:, None, None].expand(-1, 1, 6, -1, -1))[:, 0]
        torch.testing.assert_close(y, expected)

    def test_missing_depth_averages_the_branches(self):
        pool = DepthAwareGatedPool(6, dilations=(1, 2), gate="true").eval()
        x = self._x(2)
        y = pool(x, torch.full((2, 9, 9), 255))
        torch.testing.assert_close(y, 0.5 * (pool.branch(0, x) + pool.branch(1, x)))

    def test_average_gate_equals_mean_of_branches(self):
        pool = _bn_random(DepthAwareGatedPool(6, dilations=(1, 2, 4), gate="average")).eval()
        x = self._x(3)
        torch.testing.assert_close(pool(x), sum(pool.branch(k, x) for k in range(3)) / 3)

    def test_tied_shares_one_kernel_and_equal_dilations_give_one_branch(self):
        pool = DepthAwareGatedPool(6, dilations=(1, 1, 1), gate="average", tied=True).eval()
        assert len(pool.branches.convs) == 1
        x = self._x(4)
        torch.testing.assert_close(pool(x), pool.branch(0, x))
        untied = DepthAwareGatedPool(6, dilations=(1, 2, 4), tied=False, gate="average")
        assert len(untied.branches.convs) == 3

    def test_tied_parameter_count(self):
        tied = DepthAwareGatedPool(6, dilations=(1, 2, 4), gate="average", tied=True)
        untied = DepthAwareGatedPool(6, dilations=(1, 2, 4), gate="average", tied=False)
        conv = 6 * 6 * 9
        assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters()) == 2 * conv

    @pytest.mark.parametrize("gate", ["predicted", "learned"])
    def test_soft_gate_is_softmax_of_head_and_sums_to_one(self, gate):
        pool = DepthAwareGatedPool(6, dilations=(1, 2), gate=gate, head_widths=(4, 3)).eval()
        x = self._x(5)
        y = pool(x)
        torch.testing.assert_close(pool.last_gate, pool.last_logits.softmax(1))
        torch.testing.assert_close(pool.last_gate.sum(1), torch.ones(2, 9, 9))
        expected = sum(pool.last_gate[:, k:k + 1] * pool.branch(k, x) for k in range(2))
        torch.testing.assert_close(y, expected)

    def test_predicted_gate_trains_with_depth_cross_entropy(self):
        pool = DepthAwareGatedPool(6, dilations=(1, 2), gate="predicted", head_widths=(4,))
        x = self._x(6)
        pool(x)
        loss = F.cross_entropy(pool.last_logits, torch.randint(0, 2, (2, 9, 9), generator=_gen(7)), ignore_index=255)
        loss.backward()
        assert float(pool.head[-1].weight.grad.abs().sum()) > 0

    def test_dilation_zero_is_identity(self):
        pool = DepthAwareGatedPool(6, dilations=(0, 2), gate="true")
        x = self._x(8)
        assert torch.equal(pool.branch(0, x), x)

    def test_out_channels(self):
        pool = DepthAwareGatedPool(6, dilations=(1, 2), gate="average", out_channels=4)
        assert pool(self._x(9)).shape == (2, 4, 9, 9)

    @pytest.mark.parametrize("kw,match", [
        (dict(gate="depth"), "`gate`: expected one of"),
        (dict(dilations=()), "`dilations`: expected at least one"),
        (dict(dilations=(1, -2)), "`dilations`: expected an integer in \\[0"),
        (dict(dilations=(1, 2.5)), "`dilations`: expected an integer"),
        (dict(dilations=4), "`dilations`: expected a sequence"),
        (dict(dilations=(0, 1), out_channels=3), "`out_channels`: a dilation-0"),
        (dict(tied="yes"), "`tied`: expected a bool"),
        (dict(channels=0), "`channels`: expected an integer in \\[1"),
    ])
    def test_constructor_errors(self, kw, match):
        args = dict(channels=6)
        args.update(kw)
        with pytest.raises((ValueError, TypeError), match=match):
            DepthAwareGatedPool(**args)

    def test_forward_errors(self):
        pool = DepthAwareGatedPool(6, dilations=(1, 2), gate="true")
        x = self._x()
        with pytest.raises(ValueError, match="`depth_bins`: gate='true' needs"):
            pool(x)
        with pytest.raises(ValueError, match="`depth_bins`: expected labels in \\[0, 2\\)"):
            pool(x, torch.full((2, 9, 9), 2))
        with pytest.raises(ValueError, match="`depth_bins`: expected H=9"):
            pool(x, torch.zeros(2, 8, 9, dtype=torch.long))
        with pytest.raises(TypeError, match="`depth_bins`: expected an integer"):
            pool(x, torch.zeros(2, 9, 9))
        with pytest.raises(ValueError, match="`x`: expected shape \\(N, 6, H, W\\)"):
            pool(torch.zeros(2, 5, 9, 9))


class _FixedGate(nn.Module):
    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def forward(self, logits, generator=None):
        return self.gate


class TestPAGMultiPool:
    def _pool(self, **kw):
        args = dict(channels=6, dilations=(0, 1, 2, 4), head_widths=(5, 4))
        args.update(kw)
        torch.manual_seed(0)
        return _bn_random(PAGMultiPool(**args))

    def test_eval_one_branch_per_pixel_deterministic(self):
        mp = self._pool().eval()
        x = torch.randn(2, 6, 8, 8, generator=_gen(0))
        y1 = mp(x)
        gate1 = mp.last_gate.clone()
        assert torch.equal(mp(x), y1) and torch.equal(mp.last_gate, gate1)
        assert bool(((gate1 == 0) | (gate1 == 1)).all()) and torch.equal(gate1.sum(1), torch.ones(2, 8, 8))

    def test_forcing_a_branch_reproduces_it(self):
        x = torch.randn(2, 6, 8, 8, generator=_gen(1))
        for k in range(4):
            mp = self._pool(force=k).eval()
            torch.testing.assert_close(mp(x), mp.branch(k, x))
        assert torch.equal(self._pool(force=0).eval()(x), x)  # dilation 0 copies the input

    def test_output_is_selected_branch_per_pixel(self):
        mp = self._pool().eval()
        x = torch.randn(2, 6, 8, 8, generator=_gen(2))
        y = mp(x)
        sel = mp.last_gate.argmax(1)
        branches = torch.stack([mp.branch(k, x) for k in range(4)], 1)
        torch.testing.assert_close(y, branches.gather(1, sel[:, None, None].expand(-1, 1, 6, -1, -1))[:, 0])

    def test_sparse_execution_equals_dense_in_eval(self):
        mp = self._pool().eval()
        choice = torch.randint(0, 4, (2, 12, 12), generator=_gen(30))  # every branch used
        mp.gumbel = _FixedGate(F.one_hot(choice, 4).permute(0, 3, 1, 2).float())
        x = torch.randn(2, 6, 12, 12, generator=_gen(3))
        dense = mp(x)
        assert torch.equal(mp.last_gate.argmax(1), choice)
        mp.execution = "sparse"
        torch.testing.assert_close(mp(x), dense, atol=1e-5, rtol=1e-5)

    def test_training_is_dense_and_gate_gets_gradient(self):
        mp = self._pool(execution="sparse").train()
        x = torch.randn(2, 6, 8, 8, generator=_gen(4))
        mp(x).square().sum().backward()
        assert float(mp.head[-1].weight.grad.abs().sum()) > 0

    def test_flop_convs_one_branch_per_pixel(self):
        mp = self._pool().eval()
        mp(torch.randn(1, 6, 8, 8, generator=_gen(5)))
        active = sum(int(m.sum()) for _, m in mp.flop_convs())
        assert active == 64 - int(mp.last_gate[:, 0].sum())  # identity-branch pixels cost nothing

    def test_errors(self):
        with pytest.raises(ValueError, match="`dilations`: PAG MultiPool needs at least 2"):
            PAGMultiPool(6, dilations=(1,))
        with pytest.raises(ValueError, match="`execution`"):
            PAGMultiPool(6, dilations=(0, 1), execution="fast")
        with pytest.raises(ValueError, match="`force`: expected an integer in \\[0, 1\\]"):
            PAGMultiPool(6, dilations=(0, 1), force=2)
        with pytest.raises(ValueError, match="`x`: expected finite"):
            PAGMultiPool(6, dilations=(0, 1), head_widths=(2,))(torch.full((1, 6, 3, 3), float("inf")))


# --------------------------------------------------------------------------------------------
# PAG bottleneck
# --------------------------------------------------------------------------------------------


def _tv_block(inplanes=16, planes=4, stride=1, dilation=1, seed=0):
    from torchvision.models.resnet import Bottleneck

    torch.manual_seed(seed)
    down = None
    if stride != 1 or inplanes != planes * 4:
        down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
    return _bn_random(Bottleneck(inplanes, planes, stride, down, dilation=dilation), seed).eval()


class TestPAGBottleneck:
    @pytest.mark.parametrize("inplanes,stride,dilation", [(16, 1, 1), (8, 2, 1), (16, 1, 2)])
    def test_gate_one_equals_torchvision_bottleneck(self, inplanes, stride, dilation):
        tv = _tv_block(inplanes, 4, stride, dilation)
        x = torch.randn(2, inplanes, 9, 9, generator=_gen(1))
        expected = tv(x)
        pag = PAGBottleneck.from_bottleneck(tv).eval()
        pag.force = 1.0
        assert torch.equal(pag(x), expected)

    @pytest.mark.parametrize("granularity", ["pixel", "image"])
    def test_a_forced_gate_draws_no_random_numbers_in_training(self, granularity):
        """Forced (a dense stage), the gate still computes its probabilities but samples nothing, so the
        random stream after it does not depend on the gate's shape (per pixel or per image)."""
        pag = PAGBottleneck(16, 4, granularity=granularity).train()
        x = torch.randn(2, 16, 5, 5, generator=_gen(5))
        rng = torch.get_rng_state()
        pag(x)
        assert not torch.equal(torch.get_rng_state(), rng)  # unforced: a Gumbel sample
        pag.force = 1.0
        rng = torch.get_rng_state()
        pag(x)
        assert torch.equal(torch.get_rng_state(), rng) and bool((pag.last_mask == 1).all())
        logits = pag.gate(x if granularity == "pixel" else x.mean((2, 3), keepdim=True))
        torch.testing.assert_close(pag.last_prob, logits.softmax(1)[:, 1:2].expand(-1, -1, 5, 5))

    def test_initial_gate_in_eval_is_all_on(self):
        tv = _tv_block()
        x = torch.randn(2, 16, 9, 9, generator=_gen(2))
        pag = PAGBottleneck.from_bottleneck(tv).eval()
        assert torch.equal(pag(x), tv(x)) and bool((pag.last_mask == 1).all())
        torch.testing.assert_close(pag.gumbel.last_prob[:, 1].mean(), torch.tensor(0.9), atol=0.01, rtol=0)

    def test_gate_zero_gives_relu_of_shortcut(self):
        pag = _bn_random(PAGBottleneck(8, 4, stride=2)).eval()
        x = torch.randn(2, 8, 9, 9, generator=_gen(3))
        pag.force = 0.0
        torch.testing.assert_close(pag(x), F.relu(pag.downsample(x)))
        ident = PAGBottleneck(16, 4).eval()
        ident.force = 0.0
        x = torch.rand(2, 16, 5, 5, generator=_gen(4))  # non-negative, as after a ReLU
        assert torch.equal(ident(x), x)

    def test_output_is_plain_where_on_and_shortcut_where_off(self):
        pag = _bn_random(PAGBottleneck(16, 4)).eval()
        x = torch.randn(2, 16, 7, 7, generator=_gen(5))
        mask = (torch.rand(2, 1, 7, 7, generator=_gen(6)) < 0.5).float()
        pag.force = mask
        y = pag(x)
        pag.force = 1.0
        on = pag(x)
        torch.testing.assert_close(y, torch.where(mask.bool(), on, F.relu(x)))

    @pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
    def test_sparse_execution_equals_dense(self, stride, dilation):
        pag = _bn_random(PAGBottleneck(8, 4, stride=stride, dilation=dilation)).eval()
        x = torch.randn(2, 8, 11, 11, generator=_gen(7))
        Ho = (11 - 1) // stride + 1
        pag.force = (torch.rand(2, 1, Ho, Ho, generator=_gen(8)) < 0.4).float()
        dense = pag(x)
        pag.execution = "sparse"
        torch.testing.assert_close(pag(x), dense, atol=1e-5, rtol=1e-5)

    def test_training_mask_binary_and_gate_receives_gradient(self):
        pag = PAGBottleneck(8, 2).train()
        x = torch.randn(4, 8, 10, 10, generator=_gen(9))
        torch.manual_seed(0)
        y = pag(x)
        m = pag.last_mask
        assert bool(((m == 0) | (m == 1)).all()) and 0 < float(m.detach().mean()) < 1
        y.sum().backward()
        assert float(pag.gate.weight.grad.abs().sum()) > 0

    def test_image_granularity_one_decision_per_image(self):
        pag = PAGBottleneck(8, 2, granularity="image").train()
        torch.manual_seed(1)
        pag(torch.randn(6, 8, 5, 5, generator=_gen(10)))
        m = pag.last_mask
        assert m.shape == (6, 1, 5, 5)
        assert bool((m.amax((1, 2, 3)) == m.amin((1, 2, 3))).all())

    def test_insert_pag_into_resnet50_keeps_its_output(self):
        net = _bn_random(torchvision.models.resnet50(weights=None), 3).eval()
        x = torch.randn(1, 3, 64, 64, generator=_gen(11))
        expected = net(x)
        blocks = insert_pag(net)
        assert len(blocks) == 16 and all(isinstance(b, PAGBottleneck) for b in blocks)
        for b in blocks:
            b.force = 1.0
        torch.testing.assert_close(net(x), expected, rtol=0, atol=0)
        for b in blocks:
            b.force = None
        torch.testing.assert_close(net.eval()(x), expected, rtol=0, atol=0)  # initial gate bias: all on

    def test_insert_pag_one_stage(self):
        net = torchvision.models.resnet50(weights=None)
        assert len(insert_pag(net, "layer2")) == 4
        assert sum(isinstance(m, PAGBottleneck) for m in net.modules()) == 4

    def test_errors(self):
        with pytest.raises(ValueError, match="`granularity`"):
            PAGBottleneck(8, 2, granularity="layer")
        with pytest.raises(ValueError, match="`init_compute_prob`"):
            PAGBottleneck(8, 2, init_compute_prob=1.0)
        with pytest.raises(ValueError, match="`stride`: expected an integer in \\[1"):
            PAGBottleneck(8, 2, stride=0)
        with pytest.raises(TypeError, match="`block`: expected a torchvision Bottleneck"):
            PAGBottleneck.from_bottleneck(nn.Conv2d(1, 1, 1))
        with pytest.raises(ValueError, match="`layers`: `model` has no submodule 'layer9'"):
            insert_pag(torchvision.models.resnet50(weights=None), ("layer9",))
        with pytest.raises(ValueError, match="`layers`: no torchvision Bottleneck"):
            insert_pag(torchvision.models.resnet18(weights=None), ("layer1",))
        pag = PAGBottleneck(8, 2)
        with pytest.raises(ValueError, match="`I`: expected shape \\(N, 8, H, W\\)"):
            pag(torch.zeros(1, 7, 4, 4))
        pag.force = torch.ones(1, 1, 3, 3)
        with pytest.raises(ValueError, match="`force`: expected H=4"):
            pag(torch.zeros(1, 8, 4, 4))


# --------------------------------------------------------------------------------------------
# Budget: KL, densities, ponder maps, FLOPs
# --------------------------------------------------------------------------------------------


class TestBernoulliKL:
    def test_hand_values(self):
        g = torch.tensor([0.25, 0.9], dtype=f64)
        expected = torch.tensor([0.5 * math.log(2) + 0.5 * math.log(2 / 3),
                                 0.7 * math.log(0.7 / 0.9) + 0.3 * math.log(3)], dtype=f64)
        torch.testing.assert_close(bernoulli_kl(0.5, g[:1]), expected[:1])
        torch.testing.assert_close(bernoulli_kl(0.7, g[1:]), expected[1:])

    def test_zero_at_rho_positive_elsewhere(self):
        g = torch.linspace(0.01, 0.99, 99, dtype=f64)
        for rho in (0.1, 0.5, 0.9):
            kl = bernoulli_kl(rho, g)
            at = (g - rho).abs().argmin()
            assert float(kl[at]) < 1e-12 and bool((kl[torch.arange(99) != at] > 0).all())

    def test_gradient_sign_drives_g_to_rho(self):
        g = torch.tensor([0.2, 0.5, 0.8], dtype=f64, requires_grad=True)
        bernoulli_kl(0.5, g).sum().backward()
        assert g.grad[0] < 0 and abs(float(g.grad[1])) < 1e-12 and g.grad[2] > 0

    def test_finite_at_zero_and_one(self):
        g = torch.tensor([0.0, 1.0], requires_grad=True)
        kl = bernoulli_kl(0.5, g)
        assert bool(torch.isfinite(kl).all()) and float(kl.detach().min()) > 5
        kl.sum().backward()
        assert bool(torch.isfinite(g.grad).all())

    def test_rho_zero_and_one(self):
        g = torch.tensor([0.5], dtype=f64)
        torch.testing.assert_close(bernoulli_kl(0.0, g), torch.tensor([math.log(2)], dtype=f64))
        torch.testing.assert_close(bernoulli_kl(1.0, g), torch.tensor([math.log(2)], dtype=f64))
        assert float(bernoulli_kl(1.0, torch.tensor([1.0]))) < 1e-5

    def test_errors(self):
        with pytest.raises(ValueError, match="`rho`"):
            bernoulli_kl(1.5, torch.tensor([0.5]))
        with pytest.raises(ValueError, match="`g`: expected densities in \\[0, 1\\]"):
            bernoulli_kl(0.5, torch.tensor([1.2]))
        with pytest.raises(ValueError, match="`g`: expected finite"):
            bernoulli_kl(0.5, torch.tensor([float("nan")]))


class TestBudgetKLLoss:
    def test_per_layer_sums_layers_and_averages_images(self):
        d = torch.tensor([[0.2, 0.5], [0.7, 0.4]], dtype=f64)
        kl = bernoulli_kl(0.5, d)
        torch.testing.assert_close(budget_kl_loss(d, 0.5), kl.sum(1).mean())
        torch.testing.assert_close(budget_kl_loss(d, 0.5, reduction="sum"), kl.sum())
        torch.testing.assert_close(budget_kl_loss(d, 0.5, reduction="none"), kl.sum(1))

    def test_total_mode_is_blind_to_all_or_nothing_layers(self):
        # the thesis' "trivial solution": half the layers always on, half always off meets rho = 0.5
        d = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
        assert float(budget_kl_loss(d, 0.5, mode="total")) < 1e-6
        assert float(budget_kl_loss(d, 0.5, mode="per_layer")) > 10

    def test_total_mode_gives_every_layer_the_same_gradient(self):
        d = torch.tensor([[0.9, 0.3, 0.6]], dtype=f64, requires_grad=True)
        budget_kl_loss(d, 0.5, mode="total").backward()
        assert torch.allclose(d.grad, d.grad[0, :1].expand_as(d.grad))

    def test_over_batch_averages_densities_first(self):
        d = torch.tensor([[0.0], [1.0]])
        assert float(budget_kl_loss(d, 0.5, over="batch")) < 1e-6
        assert float(budget_kl_loss(d, 0.5, over="image")) > 5

    def test_one_dim_densities(self):
        d = torch.tensor([0.3, 0.6])
        torch.testing.assert_close(budget_kl_loss(d, 0.5), bernoulli_kl(0.5, d).sum())

    def test_module_reads_the_model(self):
        net = nn.Sequential(PAGBottleneck(8, 2), PAGBottleneck(8, 2)).train()
        net(torch.randn(3, 8, 6, 6, generator=_gen(0)))
        d = gate_densities(net)
        assert d.shape == (3, 2)
        loss = BudgetKLLoss(0.5, weight=0.1)(net)
        torch.testing.assert_close(loss, 0.1 * budget_kl_loss(d, 0.5))
        loss.backward()
        assert float(net[0].gate.bias.grad.abs().sum()) > 0

    def test_prob_statistic(self):
        net = nn.Sequential(PAGBottleneck(8, 2)).eval()
        net(torch.randn(2, 8, 6, 6, generator=_gen(1)))
        torch.testing.assert_close(gate_densities(net, "prob"), net[0].last_prob.mean((1, 2, 3))[:, None])
        assert torch.equal(gate_densities(net, "mask"), torch.ones(2, 1))

    def test_errors(self):
        with pytest.raises(ValueError, match="`mode`"):
            budget_kl_loss(torch.tensor([0.5]), 0.5, mode="sum")
        with pytest.raises(ValueError, match="`densities`: expected a non-empty tensor"):
            budget_kl_loss(torch.zeros(2, 0), 0.5)
        with pytest.raises(ValueError, match="`densities`: expected shape \\(N, L\\)"):
            budget_kl_loss(torch.zeros(2, 2, 2), 0.5)
        with pytest.raises(ValueError, match="`weight`"):
            BudgetKLLoss(0.5, weight=-1.0)
        with pytest.raises(ValueError, match="`model`: no PAGBottleneck"):
            gate_densities(nn.Linear(2, 2))
        with pytest.raises(ValueError, match="`model`: PAG block 0 has no mask yet"):
            gate_densities(PAGBottleneck(8, 2))
        with pytest.raises(ValueError, match="`statistic`"):
            gate_densities(PAGBottleneck(8, 2), "soft")


class TestPonderMap:
    def test_sum_of_masks_with_nearest_upsampling(self):
        net = nn.Sequential(PAGBottleneck(8, 2), PAGBottleneck(8, 4, stride=2)).eval()
        m1 = (torch.rand(1, 1, 8, 8, generator=_gen(0)) < 0.5).float()
        m2 = (torch.rand(1, 1, 4, 4, generator=_gen(1)) < 0.5).float()
        net[0].force, net[1].force = m1, m2
        net(torch.randn(1, 8, 8, 8, generator=_gen(2)))
        p = ponder_map(net)
        expected = m1[:, 0] + m2[:, 0].repeat_interleave(2, 1).repeat_interleave(2, 2)
        assert torch.equal(p, expected)
        assert p.shape == (1, 8, 8) and float(p.max()) <= 2 and torch.equal(p, p.round())

    def test_multipool_not_counted(self):
        net = nn.Sequential(PAGMultiPool(8, (0, 1), head_widths=(2,)), PAGBottleneck(8, 2)).eval()
        net(torch.randn(1, 8, 5, 5))
        assert float(ponder_map(net).max()) <= 1

    def test_errors(self):
        with pytest.raises(ValueError, match="`model`: expected PAG blocks that have run"):
            ponder_map(PAGBottleneck(8, 2))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.Sequential(PAGBottleneck(16, 4), PAGBottleneck(16, 8, stride=2),
                                    PAGBottleneck(32, 8, dilation=2))
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class TestCountFlops:
    def test_equals_torch_flop_counter_when_every_pixel_computes(self):
        net = _bn_random(_Net()).eval()
        x = torch.randn(2, 3, 12, 12, generator=_gen(0))
        with FlopCounterMode(display=False) as fc:
            net(x)
        c = count_flops(net, x)
        assert c.total == c.dense == fc.get_total_flops()
        assert c.fraction == 1.0

    def test_hand_count_one_block(self):
        pag = PAGBottleneck(16, 4).eval()
        mask = torch.zeros(1, 1, 5, 5)
        mask[0, 0, :2] = 1  # 10 of 25 pixels
        pag.force = mask
        c = count_flops(pag, torch.randn(1, 16, 5, 5))
        per_px = {"conv1": 16 * 4, "gate": 16 * 2, "conv2": 4 * 4 * 9, "conv3": 4 * 16}
        expected = 2 * (25 * (per_px["conv1"] + per_px["gate"]) + 10 * (per_px["conv2"] + per_px["conv3"]))
        assert c.total == expected
        assert c.per_module == {"conv1": 2 * 25 * 64, "conv2": 2 * 10 * 144, "conv3": 2 * 10 * 64, "gate": 2 * 25 * 32}

    def test_linear_in_density(self):
        pag = PAGBottleneck(16, 4).eval()
        x = torch.randn(2, 16, 10, 10, generator=_gen(1))
        counts = []
        for k in range(0, 201, 40):
            mask = torch.zeros(200)
            mask[:k] = 1
            pag.force = mask.reshape(2, 1, 10, 10)
            counts.append(count_flops(pag, x).total)
        steps = np.diff(counts)
        assert len(set(steps.tolist())) == 1 and steps[0] == 2 * 40 * (4 * 4 * 9 + 4 * 16)

    def test_dense_is_independent_of_the_masks(self):
        pag = PAGBottleneck(16, 4).eval()
        x = torch.randn(1, 16, 6, 6)
        pag.force = 0.0
        off = count_flops(pag, x)
        pag.force = 1.0
        on = count_flops(pag, x)
        assert off.dense == on.dense == on.total and off.total < on.total

    def test_multipool_costs_one_branch_per_pixel(self):
        mp = PAGMultiPool(4, dilations=(1, 2, 4), head_widths=(3,), force=1).eval()
        c = count_flops(mp, torch.randn(1, 4, 6, 6))
        head = 2 * 36 * (4 * 3 + 3 * 3)
        assert c.total == head + 2 * 36 * (4 * 4 * 9)
        assert c.dense == head + 3 * 2 * 36 * (4 * 4 * 9)

    def test_tied_pool_counts_each_use_of_the_shared_kernel(self):
        pool = DepthAwareGatedPool(4, dilations=(1, 2, 4), gate="average", tied=True)
        c = count_flops(pool, torch.randn(1, 4, 5, 5))
        assert c.total == c.dense == 3 * 2 * 25 * 4 * 4 * 9

    def test_restores_training_mode(self):
        net = _Net().train()
        count_flops(net, torch.randn(1, 3, 8, 8))
        assert net.training

    def test_errors(self):
        with pytest.raises(TypeError, match="`model`: expected an nn.Module"):
            count_flops(lambda x: x, torch.zeros(1))


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


class TestNets:
    @pytest.mark.parametrize("pool", G.GatedPoolNet.POOLS)
    def test_gated_pool_net_every_pool_trains_one_step(self, pool):
        dil = (0, 1, 2, 4) if pool == "pag" else (1, 2, 4)
        net = G.GatedPoolNet(3, pool=pool, dilations=dil, width=8, head_widths=(4,))
        x = torch.rand(2, 3, 12, 12, generator=_gen(0))
        bins = torch.randint(0, len(dil), (2, 12, 12), generator=_gen(1))
        out = net(x, bins if pool == "true" else None)
        assert out["seg"].shape == (2, 3, 12, 12) and out["gate"].shape == (2, len(dil), 12, 12)
        loss = F.cross_entropy(out["seg"], torch.randint(0, 3, (2, 12, 12), generator=_gen(2)))
        if pool == "predicted":
            loss = loss + F.cross_entropy(out["gate_logits"], bins)
        loss.backward()
        assert all(p.grad is not None for n, p in net.named_parameters() if not n.startswith("pool.head") or
                   pool in ("predicted", "learned", "pag"))

    def test_single_scale_arm_has_the_parameters_of_the_multi_scale_one(self):
        single = G.GatedPoolNet(3, pool="average", dilations=(1, 1, 1, 1))
        multi = G.GatedPoolNet(3, pool="average", dilations=(1, 2, 4, 8))
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert count(single) == count(multi)

    def test_pag_resnet_gates(self):
        x = torch.rand(2, 3, 10, 10, generator=_gen(3))
        dense = G.PAGResNet(3, gates="none", dilations=(1, 2), width=8).eval()
        assert G.pag_blocks(dense) == [] and all(b.gate is None for b in dense.blocks)
        with FlopCounterMode(display=False) as fc:
            dense(x)
        assert count_flops(dense, x).total == fc.get_total_flops()  # no gate: exactly the plain network
        skip = G.PAGResNet(3, gates="image", dilations=(1, 2), width=8).train()
        skip(x)
        assert all(b.granularity == "image" for b in skip.blocks)
        with pytest.raises(ValueError, match="`width`: expected a multiple of 4"):
            G.PAGResNet(3, width=10)
        with pytest.raises(ValueError, match="`gates`"):
            G.PAGResNet(3, gates="layer")

    def test_truncated_net_costs_proportionally_fewer_block_flops(self):
        x = torch.rand(1, 3, 8, 8)
        full = count_flops(G.PAGResNet(3, gates="none", dilations=(1,) * 4, width=8), x).total
        half = count_flops(G.PAGResNet(3, gates="none", dilations=(1,) * 2, width=8), x).total
        stem_head = 2 * 64 * (3 * 8 * 9 + 8 * 3)
        assert (full - stem_head) == 2 * (half - stem_head)


def test_data_modules_import_no_method_module():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1] / "pixelbook" / "data"
    for name in ("perspective.py", "gratings.py"):
        text = (root / name).read_text()
        assert not re.search(r"from \.\.(gating|levelset|std|rmi|cas)\b|import pixelbook\.gating", text)


def test_layer_skipping_skips_conv1_in_the_flop_count():
    block = PAGBottleneck(16, 4, granularity="image").eval()
    x = torch.randn(2, 16, 5, 5)
    block.force = torch.tensor([1.0, 0.0]).reshape(2, 1, 1, 1).expand(2, 1, 5, 5)
    c = count_flops(block, x)
    gate = 2 * 2 * 16 * 2  # the linear gate: 2 images x 16 inputs x 2 outputs
    assert c.total == gate + 2 * 25 * (16 * 4 + 4 * 4 * 9 + 4 * 16)  # one image computes, one skips


def test_ungated_block_is_the_plain_bottleneck():
    tv = _tv_block(16, 4)
    plain = PAGBottleneck(16, 4, granularity="none").eval()
    plain.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 16, 6, 6, generator=_gen(40))
    assert torch.equal(plain(x), tv(x)) and plain.flop_convs() == []


class TestPAGResNet50:
    """The full-scale network: gates and MultiPool inserted into torchvision's ResNet-50 change nothing until
    they choose (gates forced on, the MultiPool forced to the branch of the convolution it replaced)."""

    def test_forced_gates_and_multipool_reproduce_the_plain_network(self):
        torch.manual_seed(0)
        plain = G.PAGResNet50(5, gates="none", pool="none", head_width=8)
        _bn_random(plain, 1)
        net = G.PAGResNet50(5, gates="pixel", pool="pag", head_width=8)
        # copy the plain network's weights into the gated one (the gates and the MultiPool head stay new)
        state = plain.state_dict()
        host = net.stages["layer4"][1].conv2
        assert host is net.pool and not any(k.startswith("pool.") for k in net.state_dict())  # registered once
        missing = net.load_state_dict({k: v for k, v in state.items() if "layer4.1.conv2" not in k
                                       and "layer4.1.bn2" not in k}, strict=False).missing_keys
        assert all(".gate." in k or "layer4.1.conv2" in k for k in missing)
        with torch.no_grad():  # every branch from the replaced 3x3 kernel and its BatchNorm, as the constructor does
            for c in host.branches.convs:
                c.weight.copy_(plain.stages["layer4"][1].conv2.weight)
            for norm in host.branches.norms:
                norm.load_state_dict(plain.stages["layer4"][1].bn2.state_dict())
        assert plain.stages["layer4"][1].conv2.dilation == (4, 4)  # output stride 8: Res5 at dilation 4
        host.force = list(host.dilations).index(4)
        for block in G.pag_blocks(net):
            block.force = 1.0
        x = torch.rand(1, 3, 40, 48, generator=_gen(2))
        plain.eval(), net.eval()
        torch.testing.assert_close(net(x)["seg"], plain(x)["seg"], rtol=1e-4, atol=1e-5)
        assert len(G.pag_blocks(net)) == 15  # every bottleneck but the MultiPool's host

    def test_truncation_head_and_frozen_statistics(self):
        net = G.PAGResNet50(3, gates="image", pool="learned", blocks=7, head_width=8).train()
        assert [len(s) for s in net.stages.values()] == [3, 4] and net.head[0].in_channels == 512
        assert isinstance(net.stages["layer2"][2].conv2, DepthAwareGatedPool)  # the second-to-last kept block
        frozen = [m for n, m in net.named_modules() if n in net._frozen]
        assert frozen and all(isinstance(m, nn.BatchNorm2d) and not m.training for m in frozen)
        assert net.head[1].training  # the new head's BatchNorm trains
        before = net.stem[1].running_mean.clone()
        net(torch.rand(1, 3, 32, 32))
        assert torch.equal(net.stem[1].running_mean, before)  # ImageNet moments stay

    @pytest.mark.parametrize("kwargs, match", [
        (dict(blocks=1), "`blocks`"), (dict(blocks=17), "`blocks`"), (dict(pool="average"), "`pool`"),
        (dict(gates="layer"), "`gates`"), (dict(freeze_bn=1), "`freeze_bn`"), (dict(num_classes=1), "`num_classes`"),
    ])
    def test_bad_arguments(self, kwargs, match):
        kw = dict(num_classes=3, **kwargs) if "num_classes" not in kwargs else kwargs
        with pytest.raises((ValueError, TypeError), match=match):
            G.PAGResNet50(**kw)
