"""Tests of pixelbook.cas: the CAS loss [CAS, Eq. 1], symmetrised CE, LFD relabelling, read-out, models."""

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import cas_eq1, random_partition, random_probs
from pixelbook import cas
from pixelbook.cas import (CASLoss, cas_bounds, cas_loss, cas_terms, match_channels, permute_region_labels,
                           select_channel)
from pixelbook.models import resnet_fcn, small_fcn
from pixelbook.ops import canonical_regions, region_stats
from pixelbook.training import TrainConfig, fit


# ---------------------------------------------------------------------------------------------- helpers


def _one_hot_perfect(labels, M, perm=None):
    """A one-hot output equal to e_{perm[k]} on region k."""
    ids, _ = canonical_regions(labels)
    perm = torch.arange(M) if perm is None else perm
    return F.one_hot(perm[ids], M).permute(0, 3, 1, 2).double()


def _official_inline(probs, labels, alpha):
    """The official code's CAS written literally, one image at a time: foreground (label 1) variance,
    one unordered pair; pixels labelled neither 0 nor 1 left out (float64 reference)."""
    out = []
    for s, y in zip(probs, labels):
        fg, bg = y == 1, y == 0
        mu1, mu0 = s[:, fg].mean(1), s[:, bg].mean(1)
        U = ((s[:, fg] - mu1[:, None]) ** 2).sum() / fg.sum()
        out.append(alpha * U - (1 - alpha) * ((mu1 - mu0) ** 2).sum())
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------- CAS


class TestCasLoss:
    @pytest.mark.parametrize("N,M,alpha", [(2, 2, 0.1), (3, 4, 0.5), (4, 3, 0.0), (2, 5, 1.0)])
    def test_equals_literal_eq1_on_random_input(self, N, M, alpha):
        s, y = random_probs(B=3, M=M, seed=N), random_partition(B=3, N=N, seed=M)
        torch.testing.assert_close(cas_loss(s, y, alpha, reduction="none"), cas_eq1(s, y, alpha),
                                   rtol=0, atol=1e-12)

    def test_gradcheck_float64(self):
        s = random_probs(B=2, M=3, H=3, W=3, seed=3).requires_grad_()
        y = random_partition(B=2, H=3, W=3, N=3, seed=1)
        assert torch.autograd.gradcheck(lambda p: cas_loss(p, y, 0.3), (s,))
        logits = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda z: CASLoss(0.3, variant="official")(z, (y > 0).long()), (logits,))

    @pytest.mark.parametrize("N,M,alpha", [(2, 2, 0.1), (3, 4, 0.7)])
    def test_autograd_equals_closed_form_gradient(self, N, M, alpha):
        # dL/ds(x) = (1/|r_i|) [2α(s(x) - μ_i) - 4(1-α) Σ_{j≠i} (μ_i - μ_j)], divided by B for the mean
        B = 3
        s, y = random_probs(B=B, M=M, seed=5).requires_grad_(), random_partition(B=B, N=N, seed=6)
        cas_loss(s, y, alpha).backward()
        stats = region_stats(s.detach(), y)
        ids = stats.ids
        mu = stats.means                                                           # (B, N, M)
        mu_px = torch.stack([mu[b][ids[b]] for b in range(B)]).permute(0, 3, 1, 2)  # (B, M, H, W)
        push = torch.stack([(N * mu[b] - mu[b].sum(0))[ids[b]] for b in range(B)]).permute(0, 3, 1, 2)
        size = torch.stack([stats.sizes[b][ids[b]] for b in range(B)])[:, None]
        closed = (2 * alpha * (s.detach() - mu_px) - 4 * (1 - alpha) * push) / size / B
        torch.testing.assert_close(s.grad, closed, rtol=0, atol=1e-14)

    @given(st.integers(0, 10_000), st.sampled_from([torch.float32, torch.float64]))
    @settings(max_examples=25, deadline=None)
    def test_invariant_to_label_values_bit_for_bit(self, seed, dtype):
        s, y = random_probs(B=3, M=4, seed=seed, dtype=dtype), random_partition(B=3, N=3, seed=seed)
        g = torch.Generator().manual_seed(seed)
        # a different relabelling per image, with arbitrary values ("mislabelled as 10")
        relabelled = torch.stack([torch.tensor([3, 10, -7])[torch.randperm(3, generator=g)][yb] for yb in y])
        assert torch.equal(cas_loss(s, y, reduction="none"), cas_loss(s, relabelled, reduction="none"))
        assert torch.equal(cas_loss(s, y), cas_loss(s, 2 - y))

    def test_invariant_to_channel_permutation_exactly(self):
        # dyadic probabilities (k/64) and power-of-two region sizes: every float64 operation is exact,
        # so any reordering of the channel sums must give the identical number
        g = torch.Generator().manual_seed(0)
        M = 5
        counts = torch.distributions.Multinomial(64, torch.ones(M)).sample((2, 4, 8)).permute(0, 3, 1, 2)
        s = (counts / 64).double()
        y = torch.zeros(2, 4, 8, dtype=torch.long)
        y[:, :2, :4], y[:, 2:, :] = 1, 2                                  # sizes 16, 8, 8 (powers of two)
        for _ in range(5):
            perm = torch.randperm(M, generator=g)
            assert torch.equal(cas_loss(s, y, reduction="none"), cas_loss(s[:, perm], y, reduction="none"))
        s2 = random_probs(B=2, M=2, seed=1)                                    # M = 2: a + b == b + a, also exact
        assert torch.equal(cas_loss(s2, random_partition(N=2)), cas_loss(s2.flip(1), random_partition(N=2)))

    def test_region_size_invariance_and_gradient_mass(self):
        # duplicating every pixel of one region k times leaves the loss unchanged ...
        s, y = random_probs(B=1, M=3, H=1, W=12, seed=2), random_partition(B=1, H=1, W=12, N=2, seed=3)
        r1 = y[0, 0] == 1
        for k in (2, 5):
            s_big = torch.cat([s] + [s[..., r1]] * (k - 1), dim=-1)
            y_big = torch.cat([y] + [y[..., r1]] * (k - 1), dim=-1)
            torch.testing.assert_close(cas_loss(s_big, y_big), cas_loss(s, y), rtol=0, atol=1e-14)
        # ... so a region's summed gradient does not depend on its size (CE's grows with it)
        def region_mass(loss_fn, k):
            s_big = torch.cat([s] + [s[..., r1]] * (k - 1), dim=-1).requires_grad_()
            y_big = torch.cat([y] + [y[..., r1]] * (k - 1), dim=-1)
            loss_fn(s_big, y_big).backward()
            return s_big.grad[0, :, 0][:, y_big[0, 0] == 1].sum(1)
        cas_fn = lambda p, t: cas_loss(p, t, 0.1)
        torch.testing.assert_close(region_mass(cas_fn, 1), region_mass(cas_fn, 4), rtol=0, atol=1e-13)
        ce_fn = lambda p, t: F.nll_loss(p.log(), t, reduction="sum")
        ce1, ce4 = region_mass(ce_fn, 1), region_mass(ce_fn, 4)
        torch.testing.assert_close(ce4, 4 * ce1)

    def test_uniformer_gradient_sums_to_zero_on_each_region(self):
        s, y = random_probs(B=2, M=3, seed=8).requires_grad_(), random_partition(B=2, N=3, seed=9)
        cas_loss(s, y, alpha=1.0).backward()                              # α = 1: uniformer only
        for b in range(2):
            for v in range(3):
                assert s.grad[b][:, y[b] == v].sum(1).abs().max() < 1e-15

    @pytest.mark.parametrize("temperature", [0.1, 1.0, 10.0])
    @pytest.mark.parametrize("N,M", [(2, 2), (2, 5), (3, 3), (4, 2), (4, 5)])
    def test_bounds_hold_on_random_fields(self, N, M, temperature):
        alpha = 0.1
        s = random_probs(B=64, M=M, H=4, W=4, seed=N * 10 + M, temperature=temperature)
        y = random_partition(B=64, H=4, W=4, N=N, seed=M)
        U, D = cas_terms(s, y)
        assert float(U.min()) >= 0 and float(U.max()) <= N * (1 - 1 / M) + 1e-12
        assert float(D.min()) >= 0 and float(D.max()) <= 2 * N * (N - 1) + 1e-12
        lo, hi = cas_bounds(N, M, alpha)
        loss = cas_loss(s, y, alpha, reduction="none")
        assert float(loss.min()) >= lo - 1e-12 and float(loss.max()) <= hi + 1e-12

    @pytest.mark.parametrize("N,M,alpha,expected", [(2, 2, 0.1, -3.6), (3, 3, 0.1, -10.8), (2, 5, 0.5, -2.0),
                                                    (4, 6, 0.1, -21.6)])
    def test_perfect_segmentation_attains_lower_bound(self, N, M, alpha, expected):
        y = random_partition(B=2, N=N, seed=4)
        s = _one_hot_perfect(y, M, torch.randperm(M, generator=torch.Generator().manual_seed(N)))
        assert cas_bounds(N, M, alpha)[0] == pytest.approx(expected, abs=1e-12)
        torch.testing.assert_close(cas_loss(s, y, alpha), torch.tensor(expected, dtype=torch.float64))

    def test_fewer_channels_than_regions_minimum_spreads_regions_evenly(self):
        # N = 4 regions on M = 2 channels: two regions per vertex, D = 2(16 - 8) = 16, loss = -14.4
        y = random_partition(B=1, N=4)
        s = _one_hot_perfect(y, 2, torch.tensor([0, 1, 0, 1]))
        torch.testing.assert_close(cas_loss(s, y, 0.1), torch.tensor(-14.4, dtype=torch.float64))
        assert cas_bounds(4, 2, 0.1)[0] == pytest.approx(-14.4)

    def test_paper_stated_interval_is_wrong_for_eq1(self):
        # [CAS, §3.3]: "lies in (αN, -(1-α)N]" -> for N = 2, α = 0.1 at least -1.8; Eq. 1 reaches -3.6.
        # The paper's value is the official code's (one unordered pair).
        y = random_partition(B=1, N=2)
        s = _one_hot_perfect(y, 2)
        assert float(cas_loss(s, y, 0.1)) < -(1 - 0.1) * 2 - 1.0
        torch.testing.assert_close(cas_loss(s, (y > 0).long(), 0.1, variant="official"),
                                   torch.tensor(-1.8, dtype=torch.float64))
        assert cas_bounds(2, 2, 0.1, variant="official")[0] == pytest.approx(-1.8)

    @pytest.mark.parametrize("M,alpha", [(2, 0.1), (3, 0.0), (5, 0.1)])
    def test_optimum_is_sparse_distinct_vertices(self, M, alpha):
        # free per-pixel logits, N = 2 regions: the region means end at distinct one-hot vectors
        torch.manual_seed(M)
        y = random_partition(B=1, H=4, W=4, N=2, seed=M)
        z = torch.randn(1, M, 4, 4, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([z], lr=0.5)
        for _ in range(150):
            opt.zero_grad()
            loss = cas_loss(z.softmax(1), y, alpha)
            loss.backward()
            opt.step()
        means = region_stats(z.detach().softmax(1), y).means[0]
        assert float(means.max(1).values.min()) > 0.99
        assert int(means[0].argmax()) != int(means[1].argmax())
        assert float(loss.detach()) == pytest.approx(-4 * (1 - alpha), abs=1e-2)

    def test_uniformer_alone_collapses_to_constant_output(self):
        # α = 1: any constant output is a global minimum (U = 0), whatever the partition
        y = random_partition(B=2, N=3)
        const = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)[None, :, None, None].expand(2, 3, 5, 6)
        assert float(cas_loss(const, y, alpha=1.0)) == 0.0
        assert float(cas_loss(random_probs(B=2), y, alpha=1.0)) > 0.0

    def test_equals_pairwise_metric_learning_form(self):
        # CAS = [α + 2(1-α)(N-1)] Σ_i V_i - (1-α) Σ_{i≠j} C_ij, with C_ij the mean squared distance
        # over all pixel pairs (x in r_i, y in r_j): an O(P²) loss computed by Eq. 1 in O(P)
        N, alpha = 3, 0.3
        s, y = random_probs(B=1, M=4, H=6, W=6, seed=11)[0], random_partition(B=1, H=6, W=6, N=N, seed=12)[0]
        x = s.reshape(4, -1).T
        lab = y.reshape(-1)
        d2 = torch.cdist(x, x) ** 2
        C = torch.stack([torch.stack([d2[lab == i][:, lab == j].mean() for j in range(N)]) for i in range(N)])
        V = C.diagonal() / 2                                 # V_i = (1 / 2|r_i|²) Σ_{x,y in r_i} ||s(x) - s(y)||²
        pairwise = (alpha + 2 * (1 - alpha) * (N - 1)) * V.sum() - (1 - alpha) * (C.sum() - C.diagonal().sum())
        torch.testing.assert_close(cas_loss(s[None], y[None], alpha), pairwise, rtol=0, atol=1e-13)

    def test_official_variant_matches_its_formula_and_is_not_flip_symmetric(self):
        s, y = random_probs(B=2, M=2, seed=13), random_partition(B=2, N=2, seed=14)
        fg, bg = y == 1, y == 0
        ref = []
        for b in range(2):
            mu1, mu0 = s[b][:, fg[b]].mean(1), s[b][:, bg[b]].mean(1)
            U = ((s[b][:, fg[b]] - mu1[:, None]) ** 2).sum() / fg[b].sum()
            ref.append(0.5 * U - 0.5 * ((mu1 - mu0) ** 2).sum())
        torch.testing.assert_close(cas_loss(s, y, 0.5, variant="official"), torch.stack(ref).mean())
        assert float(cas_loss(s, y, 0.5, variant="official")) != float(cas_loss(s, 1 - y, 0.5, variant="official"))
        assert torch.equal(cas_loss(s, y, 0.5), cas_loss(s, 1 - y, 0.5))

    def test_ignore_index_drops_pixels(self):
        s, y = random_probs(B=1, M=3, H=4, W=4, seed=15), random_partition(B=1, H=4, W=4, N=2, seed=16)
        y_ign = y.clone()
        y_ign[0, 3, :] = 255
        keep = y_ign[0] != 255
        ref = cas_eq1(s[..., :3, :], y[..., :3, :], 0.1)
        torch.testing.assert_close(cas_loss(s, y_ign, 0.1, ignore_index=255, reduction="none"), ref)
        assert keep.sum() == 12

    def test_reductions_and_single_region_skip(self):
        s = random_probs(B=3, M=2, H=2, W=2)
        y = torch.tensor([[[0, 1], [1, 1]], [[4, 4], [4, 4]], [[0, 0], [2, 2]]])
        per = cas_loss(s, y, reduction="none", single_region="skip")
        assert per[1] == 0
        torch.testing.assert_close(cas_loss(s, y, single_region="skip"), (per[0] + per[2]) / 2)
        torch.testing.assert_close(cas_loss(s, y, reduction="sum", single_region="skip"), per.sum())

    def test_module_equals_function(self):
        logits, y = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
        torch.testing.assert_close(CASLoss(0.2, reduction="none")(logits, y),
                                   cas_loss(logits.softmax(1), y, 0.2, reduction="none"))
        torch.testing.assert_close(CASLoss(0.2, from_logits=False)(logits.softmax(1), y),
                                   cas_loss(logits.softmax(1), y, 0.2))
        assert "alpha=0.2" in repr(CASLoss(0.2))

    @pytest.mark.parametrize("make_model", [small_fcn, resnet_fcn])
    def test_swapped_and_unswapped_labels_train_identically(self, make_model):
        # LFD (each image's labels swapped with p = 0.5) and HFD give the same weights, bit for bit
        g = torch.Generator().manual_seed(0)
        x = torch.randn(8, 3, 16, 16, generator=g)
        y = (x[:, 0] > 0).long()
        y_lfd, _ = permute_region_labels(y, 2, p=0.5, generator=torch.Generator().manual_seed(1))
        assert not torch.equal(y, y_lfd)
        cfg = TrainConfig(epochs=2 if make_model is small_fcn else 1, lr=1e-2, batch_size=4, schedule="constant")

        def train(labels, loss):
            torch.manual_seed(3)
            model = make_model(2)
            fit(model, lambda m, b: loss(m(b["image"]), b["labels"]), {"image": x, "labels": labels}, cfg,
                progress=False)
            return model.state_dict()

        cas_fn = CASLoss(0.1)
        a, b = train(y, cas_fn), train(y_lfd, cas_fn)
        assert all(torch.equal(a[k], b[k]) for k in a)
        if make_model is small_fcn:
            c, d = train(y, F.cross_entropy), train(y_lfd, F.cross_entropy)  # CE: different trajectories
            assert not all(torch.equal(c[k], d[k]) for k in c)

    def test_error_names_argument(self):
        s, y = random_probs(B=1, M=2, H=4, W=4), torch.randint(0, 2, (1, 4, 4))
        y[0, 0, :2] = torch.tensor([0, 1])
        with pytest.raises(ValueError, match="`labels`: expected H=4"):
            cas_loss(s, torch.zeros(1, 3, 4, dtype=torch.long))
        with pytest.raises(TypeError, match="`labels`: expected an integer tensor"):
            cas_loss(s, y.float())
        with pytest.raises(ValueError, match="`probs`: expected values <= 1"):
            cas_loss(s * 2, y)
        with pytest.raises(ValueError, match="`probs`: expected finite"):
            cas_loss(s.masked_fill(s > 0.9, float("nan")), y)
        with pytest.raises(ValueError, match="at least 2 channels"):
            cas_loss(s[:, :1], y)
        with pytest.raises(ValueError, match="image 0 has a single region"):
            cas_loss(s, torch.zeros_like(y))
        with pytest.raises(ValueError, match="empty foreground"):
            cas_loss(s, torch.zeros_like(y), variant="official")
        with pytest.raises(ValueError, match="variant='official' needs binary labels"):
            cas_loss(s, y * 3, variant="official")
        with pytest.raises(ValueError, match="`alpha`: expected a number in \\[0, 1\\]"):
            cas_loss(s, y, alpha=1.5)
        with pytest.raises(ValueError, match="`variant`"):
            cas_loss(s, y, variant="code")
        with pytest.raises(ValueError, match="`reduction`"):
            cas_loss(s, y, reduction="max")
        with pytest.raises(ValueError, match="every image has a single region"):
            cas_loss(s, torch.zeros_like(y), single_region="skip")
        with pytest.raises(ValueError, match="`alpha`"):
            CASLoss(alpha=-0.1)


class TestCasBounds:
    def test_values_by_hand(self):
        assert cas_bounds(2, 2, 0.1) == (-3.6, 0.1)
        assert cas_bounds(3, 3, 0.1) == (-10.8, 0.2)
        assert cas_bounds(5, 2, 0.0)[0] == pytest.approx(-2 * (25 - 13))  # 3 + 2 regions per vertex
        assert cas_bounds(2, 2, 0.5, variant="official") == (-1.0, 0.25)

    def test_bad_input(self):
        with pytest.raises(ValueError, match="M >= 2"):
            cas_bounds(2, 1)



# ---------------------------------------------------------------------------------------------- LFD


class TestPermuteRegionLabels:
    def test_p0_keeps_and_p1_always_relabels(self):
        y = random_partition(B=50, N=3)
        same, perms = permute_region_labels(y, 3, p=0.0)
        assert torch.equal(same, y) and torch.equal(perms, torch.arange(3).expand(50, 3))
        new, perms = permute_region_labels(y, 3, p=1.0, generator=torch.Generator().manual_seed(0))
        assert not bool((perms == torch.arange(3)).all(1).any())
        assert torch.equal(new, torch.stack([perms[b][y[b]] for b in range(50)]))
        assert torch.equal(canonical_regions(new)[0], canonical_regions(y)[0])  # same partition

    def test_binary_swap_frequency_and_uniform_non_identity_permutations(self):
        n = 6000
        y = torch.zeros(n, 1, 2, dtype=torch.long)
        y[:, 0, 1] = 1
        new, _ = permute_region_labels(y, 2, p=0.5, generator=torch.Generator().manual_seed(1))
        swapped = (new[:, 0, 0] == 1).double().mean()
        assert abs(float(swapped) - 0.5) < 5 * math.sqrt(0.25 / n)       # 5 standard errors
        y3 = torch.tensor([[[0, 1, 2]]]).expand(n, 1, 3)
        _, perms = permute_region_labels(y3, 3, p=1.0, generator=torch.Generator().manual_seed(2))
        counts = torch.unique(perms, dim=0, return_counts=True)[1].double() / n
        assert len(counts) == 5 and float((counts - 0.2).abs().max()) < 5 * math.sqrt(0.16 / n)

    def test_ignore_index_is_kept(self):
        y = torch.tensor([[[0, 1, 255]]])
        new, _ = permute_region_labels(y, 2, p=1.0, ignore_index=255)
        assert new.tolist() == [[[1, 0, 255]]]

    def test_error_names_argument(self):
        with pytest.raises(ValueError, match="`labels`: expected values in \\[0, 2\\)"):
            permute_region_labels(torch.tensor([[[0, 2]]]), 2)
        with pytest.raises(ValueError, match="`p`"):
            permute_region_labels(torch.tensor([[[0, 1]]]), 2, p=1.5)
        with pytest.raises(ValueError, match="`num_classes`"):
            permute_region_labels(torch.tensor([[[0, 1]]]), 1)


# ---------------------------------------------------------------------------------------------- read-out


class TestSelectChannel:
    def test_finds_the_salient_channel_whatever_its_index(self):
        g = torch.Generator().manual_seed(0)
        masks = torch.rand(4, 8, 8, generator=g) > 0.7
        sal = 0.8 * masks.float() + 0.2 * torch.rand(4, 8, 8, generator=g)
        for c in range(3):
            others = [torch.rand(4, 8, 8, generator=g) * 0.1 for _ in range(2)]
            probs = torch.stack(others[:c] + [sal] + others[c:], 1)
            assert select_channel(probs, masks) == c

    def test_error_names_argument(self):
        with pytest.raises(ValueError, match="`labels`: expected both salient and non-salient pixels"):
            select_channel(torch.rand(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.bool))
        with pytest.raises(ValueError, match="`labels`: expected H=3"):
            select_channel(torch.rand(1, 2, 3, 3), torch.zeros(1, 2, 3, dtype=torch.bool))
        with pytest.raises(ValueError, match="binary"):
            select_channel(torch.rand(1, 2, 1, 2), torch.tensor([[[0, 2]]]))


class TestMatchChannels:
    def test_recovers_a_channel_permutation(self):
        y = random_partition(B=3, N=4, seed=1)
        perm = torch.tensor([2, 0, 4, 1])                    # class k lives on channel perm[k]
        probs = _one_hot_perfect(y, 5, perm) * 0.9 + 0.02
        assert match_channels(probs, y, 4).tolist() == perm.tolist()
        remapped = probs[:, match_channels(probs, y, 4)].argmax(1)
        assert torch.equal(remapped, y)

    def test_error_names_argument(self):
        with pytest.raises(ValueError, match="class 2 has no pixel"):
            match_channels(torch.rand(1, 3, 2, 2), torch.tensor([[[0, 1], [1, 0]]]), 3)
        with pytest.raises(ValueError, match="`num_classes`"):
            match_channels(torch.rand(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 3)


# ---------------------------------------------------------------------------------------------- LFD dataset


class TestLowFidelityLabels:
    def test_fixed_draw_per_index_and_mask_untouched(self):
        base = [{"labels": torch.tensor([[0, 1], [1, 1]]), "mask": torch.tensor([[False, True], [True, True]])}
                for _ in range(200)]
        ds = cas.LowFidelityLabels(base, 2, p=0.5, seed=3)
        first = [ds[i]["labels"].clone() for i in range(len(ds))]
        again = [ds[i]["labels"] for i in range(len(ds))]
        assert all(torch.equal(a, b) for a, b in zip(first, again))        # same corruption every epoch
        swapped = sum(bool(torch.equal(x, 1 - base[0]["labels"])) for x in first)
        assert 60 < swapped < 140                                           # Binomial(200, 0.5): > 5 sd margin
        assert torch.equal(ds[0]["mask"], base[0]["mask"])
        assert len(ds) == 200

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`p`"):
            cas.LowFidelityLabels([], 2, p=2.0)
        with pytest.raises(ValueError, match="`num_classes`"):
            cas.LowFidelityLabels([], 1)



# ---------------------------------------------------------------------------------------------- edge cases
# boundaries, options and exact error messages (found by mutation testing: tools/mutation.py)

class TestCasLossEdgeCases:
    def test_images_with_different_region_counts_in_one_batch(self):
        # image 0 has 3 regions, image 1 has 2: image 1's padding slot must not enter its D
        s = random_probs(B=2, M=3, seed=21)
        y = torch.cat([random_partition(B=1, N=3, seed=22), random_partition(B=1, N=2, seed=23)])
        torch.testing.assert_close(cas_loss(s, y, 0.3, reduction="none"), cas_eq1(s, y, 0.3), rtol=0, atol=1e-12)

    def test_all_void_image_counts_zero_and_is_left_out_of_the_mean(self):
        s = random_probs(B=2, M=3, seed=24)
        y = random_partition(B=2, N=2, seed=25)
        y[1] = 255
        per = cas_loss(s, y, reduction="none")                  # single_region="raise": no error for void
        assert per[1] == 0
        torch.testing.assert_close(per[0], cas_eq1(s[:1], y[:1], 0.1)[0], rtol=0, atol=1e-12)
        assert cas_loss(s, y) == per[0]                         # mean over the one scored image
        U, D = cas_terms(s, y)
        assert U[1] == 0 and D[1] == 0 and U[0] > 0 and D[0] > 0

    @pytest.mark.parametrize("single_region", ["raise", "skip"])
    @pytest.mark.parametrize("variant", ["paper", "official"])
    def test_all_void_batch_gives_zero_with_zero_gradient(self, single_region, variant):
        s = random_probs(B=2, M=2, H=3, W=3, seed=26).requires_grad_()
        y = torch.full((2, 3, 3), 255)
        loss = cas_loss(s, y, variant=variant, single_region=single_region)
        assert loss.item() == 0.0
        loss.backward()
        assert torch.equal(s.grad, torch.zeros_like(s))

    def test_skip_with_one_kept_image_averages_over_it(self):
        s = random_probs(B=2, M=2, H=2, W=2, seed=27)
        y = torch.tensor([[[0, 1], [1, 1]], [[3, 3], [3, 3]]])
        per = cas_loss(s, y, reduction="none", single_region="skip")
        assert per[1] == 0 and per[0] != 0
        assert cas_loss(s, y, single_region="skip") == per[0]

    def test_every_image_single_region_raises_also_without_ignore_index(self):
        # with ignore_index=None no pixel is void, so "every image has one region" is the only way
        # to keep nothing: it must raise as it does with ignore_index=255 (it returned 0 silently)
        s = random_probs(B=2, M=2, H=2, W=2, seed=28)
        y = torch.tensor([[[0, 0], [0, 0]], [[5, 5], [5, 5]]])
        for ignore_index in (None, 255):
            with pytest.raises(ValueError, match=r"^`labels`: every image has a single region; nothing to average$"):
                cas_loss(s, y, single_region="skip", ignore_index=ignore_index)

    def test_single_region_message_names_the_image(self):
        s = random_probs(B=3, M=2, H=2, W=2, seed=29)
        y = torch.tensor([[[0, 1], [1, 1]], [[2, 2], [2, 2]], [[0, 0], [1, 1]]])
        with pytest.raises(ValueError, match=r"^`labels`: image 1 has a single region; CAS needs a partition "
                                             r"with >= 2 regions \(pass single_region='skip'"):
            cas_loss(s, y)

    def test_official_variant_leaves_void_pixels_out(self):
        s = random_probs(B=2, M=2, H=4, W=4, seed=30)
        y = (random_partition(B=2, H=4, W=4, N=2, seed=31) > 0).long()
        y_void = y.clone()
        y_void[:, 3] = 255
        torch.testing.assert_close(cas_loss(s, y_void, 0.3, variant="official", reduction="none"),
                                   _official_inline(s[..., :3, :], y[..., :3, :], 0.3), rtol=0, atol=1e-12)
        # ignore_index=None: same values where no pixel is void, and 255 is a label (not binary)
        torch.testing.assert_close(cas_loss(s, y, 0.3, variant="official", ignore_index=None, reduction="none"),
                                   _official_inline(s, y, 0.3), rtol=0, atol=1e-12)
        with pytest.raises(ValueError, match=r"^`labels`: variant='official' needs binary labels \(0 = background, "
                                             r"1 = salient\), got values in \[0, 255\]$"):
            cas_loss(s, y_void, variant="official", ignore_index=None)

    def test_official_variant_all_void_image_is_left_out(self):
        s = random_probs(B=2, M=2, H=4, W=4, seed=32)
        y = (random_partition(B=2, H=4, W=4, N=2, seed=33) > 0).long()
        y[0] = 255
        per = cas_loss(s, y, 0.5, variant="official", reduction="none")
        assert per[0] == 0
        torch.testing.assert_close(per[1], _official_inline(s[1:], y[1:], 0.5)[0], rtol=0, atol=1e-12)
        assert cas_loss(s, y, 0.5, variant="official") == per[1]

    @pytest.mark.parametrize("values,got", [((0, 2), "[0, 2]"), ((-1, 1), "[-1, 1]")])
    def test_official_variant_rejects_non_binary_labels(self, values, got):
        s = random_probs(B=1, M=2, H=2, W=2, seed=34)
        y = torch.tensor([[[values[0], values[1]], [values[1], values[0]]]])
        with pytest.raises(ValueError, match=r"^`labels`: variant='official' needs binary labels .*, got values in "
                                             + got.replace("[", r"\[").replace("]", r"\]") + "$"):
            cas_loss(s, y, variant="official")

    def test_official_variant_names_the_empty_region_and_the_image(self):
        s = random_probs(B=2, M=2, H=2, W=2, seed=35)
        no_bg = torch.tensor([[[0, 1], [1, 0]], [[1, 1], [1, 1]]])
        with pytest.raises(ValueError, match=r"^`labels`: image 1 has an empty background \(label 0\) region; "
                                             r"variant='official' needs both$"):
            cas_loss(s, no_bg, variant="official")
        no_fg = torch.tensor([[[0, 0], [0, 0]], [[1, 1], [0, 0]]])
        with pytest.raises(ValueError, match=r"^`labels`: image 0 has an empty foreground \(label 1\) region; "
                                             r"variant='official' needs both$"):
            cas_loss(s, no_fg, variant="official")

    def test_bad_choices_and_alpha_name_the_argument(self):
        s, y = random_probs(B=1, M=2, H=2, W=2), torch.tensor([[[0, 1], [1, 0]]])
        with pytest.raises(ValueError, match=r"^`single_region`"):
            cas_loss(s, y, single_region="drop")
        with pytest.raises(ValueError, match=r"^`single_region`"):
            cas_terms(s, y, single_region="drop")
        with pytest.raises(ValueError, match=r"^`variant`"):
            cas_terms(s, y, variant="code")
        with pytest.raises(ValueError, match=r"^`reduction`"):
            cas_loss(s, y, reduction="max")
        for alpha in (True, "0.5", -0.1, 1.5, None):
            with pytest.raises(ValueError, match=r"^`alpha`: expected a number in \[0, 1\], got "):
                cas_loss(s, y, alpha=alpha)
        for alpha in (0, 1, 0.0, 1.0):                          # the closed interval's ends are allowed
            assert torch.isfinite(cas_loss(s, y, alpha=alpha))


class TestCASLossModule:
    @pytest.mark.parametrize("from_logits", [True, False])
    @pytest.mark.parametrize("kwargs", [dict(variant="official", alpha=0.3), dict(reduction="sum"),
                                        dict(reduction="none"), dict(single_region="skip"),
                                        dict(ignore_index=None), dict(ignore_index=7)])
    def test_every_option_reaches_the_function(self, kwargs, from_logits):
        # each option changes the value (or avoids an error) compared with the default, so a module
        # that dropped it would be caught
        g = torch.Generator().manual_seed(36)
        logits = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
        y = (torch.rand(3, 4, 4, generator=g) > 0.5).long()
        y[:, 0, 0], y[:, 0, 1] = 0, 1
        if "single_region" in kwargs:
            y[2] = 1                                              # one image with a single region
        if "ignore_index" in kwargs:
            y[:, 3] = 255 if kwargs["ignore_index"] is None else 7   # a third region, or a void row
        alpha = kwargs.pop("alpha", 0.1)
        probs = logits.softmax(1)
        module = CASLoss(alpha, from_logits=from_logits, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")                        # e.g. softmax without an explicit dim
            got = module(logits if from_logits else probs, y)
        torch.testing.assert_close(got, cas_loss(probs, y, alpha, **kwargs), rtol=0, atol=1e-12)

    def test_defaults(self):
        m = CASLoss()
        assert (m.alpha, m.variant, m.ignore_index, m.reduction, m.single_region, m.from_logits) == \
            (0.1, "paper", 255, "mean", "raise", True)

    def test_bad_arguments_name_the_argument(self):
        for kwargs, name in [(dict(variant="code"), "variant"), (dict(reduction="max"), "reduction"),
                             (dict(single_region="drop"), "single_region"), (dict(alpha=True), "alpha")]:
            with pytest.raises(ValueError, match=rf"^`{name}`"):
                CASLoss(**kwargs)
        y = torch.tensor([[[0, 1], [1, 0]]])
        with pytest.raises(ValueError, match=r"^`logits`: expected shape \(N, C, H, W\), got \(2, 2, 2\)$"):
            CASLoss()(torch.zeros(2, 2, 2), y)
        with pytest.raises(ValueError, match=r"^`logits`: expected finite values"):
            CASLoss()(torch.tensor([[[[0.0, float("nan")], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]]), y)


class TestCasBoundsEdgeCases:
    def test_one_region(self):
        # N = 1: no pair, D = 0; U <= 1 - 1/M
        assert cas_bounds(1, 3, 0.3) == (0.0, 0.2)
        assert cas_bounds(1, 2, 1.0, variant="paper") == (0.0, 0.5)

    def test_zero_is_positive_zero(self):
        # α = 1 makes the lower bound -0.0 before the "+ 0.0": it must print as 0.0
        for variant in ("paper", "official"):
            lo, _ = cas_bounds(2, 2, 1.0, variant=variant)
            assert lo == 0.0 and math.copysign(1.0, lo) == 1.0

    def test_values_are_the_exact_values_rounded_to_12_decimals(self):
        # in floats, -(1-α)·dmax and αN(1-1/M) carry rounding errors of up to a few 1e-13 at these
        # sizes (e.g. N=18, M=13, α=0.1 gives -532.8000000000001); the 12-decimal rounding removes
        # them for every bound below 1000 in magnitude (larger ones keep an error of ~1 ulp > 5e-13)
        from fractions import Fraction
        sizes = list(range(1, 41)) + [306, 419]
        for N, M, alpha in itertools.product(sizes, range(2, 14), ("0.1", "0.3", "0.7", "0.9")):
            a = Fraction(alpha)
            q, r = divmod(N, M)
            exact = (-(1 - a) * 2 * (N * N - (r * (q + 1) ** 2 + (M - r) * q ** 2)), a * N * (1 - Fraction(1, M)))
            got = cas_bounds(N, M, float(alpha))
            for g, e in zip(got, exact):
                if abs(e) < 1000:
                    assert g == float(round(e, 12)), (N, M, alpha)

    def test_bad_input_names_the_arguments(self):
        with pytest.raises(ValueError, match=r"^`num_regions`, `num_channels`: expected N >= 1 and M >= 2, "
                                             r"got N=0, M=2$"):
            cas_bounds(0, 2)
        with pytest.raises(ValueError, match=r"^`num_regions`, `num_channels`: .* got N=3, M=1$"):
            cas_bounds(3, 1)
        with pytest.raises(ValueError, match=r"^`variant`"):
            cas_bounds(2, 2, variant="code")


class TestPermuteRegionLabelsEdgeCases:
    def test_draw_depends_only_on_the_generator(self):
        y = random_partition(B=40, N=3, seed=37)
        torch.manual_seed(0)
        a = permute_region_labels(y, 3, p=0.7, generator=torch.Generator().manual_seed(5))
        torch.manual_seed(1)                                      # the global RNG must not matter
        torch.rand(17)
        b = permute_region_labels(y, 3, p=0.7, generator=torch.Generator().manual_seed(5))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        # K = 2, p = 1: about half of the first draws are the identity and are redrawn
        y2 = random_partition(B=40, N=2, seed=38)
        torch.manual_seed(2)
        c = permute_region_labels(y2, 2, p=1.0, generator=torch.Generator().manual_seed(6))
        torch.manual_seed(3)
        d = permute_region_labels(y2, 2, p=1.0, generator=torch.Generator().manual_seed(6))
        assert torch.equal(c[0], d[0]) and torch.equal(c[0], 1 - y2)

    def test_default_p_is_one_half(self):
        y = random_partition(B=30, N=2, seed=39)
        a = permute_region_labels(y, 2, generator=torch.Generator().manual_seed(7))
        b = permute_region_labels(y, 2, p=0.5, generator=torch.Generator().manual_seed(7))
        assert torch.equal(a[1], b[1]) and 0 < int((a[1][:, 0] == 1).sum()) < 30

    def test_without_ignore_index_every_value_is_a_label(self):
        y = torch.tensor([[[0, 1, 2]], [[2, 1, 0]]])
        new, perms = permute_region_labels(y, 3, p=1.0, ignore_index=None, generator=torch.Generator().manual_seed(8))
        assert torch.equal(new, torch.stack([perms[b][y[b]] for b in range(2)]))
        with pytest.raises(ValueError, match=r"^`labels`: expected values in \[0, 2\), got \[0, 255\]$"):
            permute_region_labels(torch.tensor([[[0, 1, 255]]]), 2, ignore_index=None)

    def test_all_void_labels_are_returned_unchanged(self):
        y = torch.full((2, 2, 3), 255)
        new, perms = permute_region_labels(y, 2, p=1.0)
        assert torch.equal(new, y) and perms.shape == (2, 2)

    def test_bad_input_names_the_argument(self):
        with pytest.raises(ValueError, match=r"^`labels`: expected shape \(N, H, W\), got \(2, 3\)$"):
            permute_region_labels(torch.zeros(2, 3, dtype=torch.long), 2)
        with pytest.raises(TypeError, match=r"^`labels`: expected an integer tensor"):
            permute_region_labels(torch.zeros(1, 2, 3), 2)
        for k in (2.0, True, 1):
            with pytest.raises(ValueError, match=r"^`num_classes`: expected an int >= 2, got "):
                permute_region_labels(torch.tensor([[[0, 1]]]), k)
        for p in (-0.1, 1.5, "0.5"):
            with pytest.raises(ValueError, match=r"^`p`: expected a probability in \[0, 1\], got "):
                permute_region_labels(torch.tensor([[[0, 1]]]), 2, p=p)
        with pytest.raises(ValueError, match=r"^`labels`: expected values in \[0, 2\), got \[-1, 1\]$"):
            permute_region_labels(torch.tensor([[[-1, 1]]]), 2)


class TestLowFidelityLabelsEdgeCases:
    def test_defaults_two_classes_half_seed_zero(self):
        base = [{"labels": torch.tensor([[0, 1]])} for _ in range(40)]
        ds = cas.LowFidelityLabels(base)
        assert ds.num_classes == 2 and ds.perms.shape == (40, 2)
        assert torch.equal(ds.perms, cas.LowFidelityLabels(base, 2, 0.5, 0).perms)
        assert 0 < int((ds.perms[:, 0] == 1).sum()) < 40

    def test_draw_depends_only_on_the_seed(self):
        base = [{"labels": torch.tensor([[0, 1, 2]])} for _ in range(30)]
        torch.manual_seed(0)
        a = cas.LowFidelityLabels(base, 3, p=1.0, seed=4).perms
        torch.manual_seed(1)
        b = cas.LowFidelityLabels(base, 3, p=1.0, seed=4).perms
        assert torch.equal(a, b)

    def test_p_at_the_ends(self):
        base = [{"labels": torch.tensor([[0, 1], [1, 1]])} for _ in range(20)]
        assert all(torch.equal(d["labels"], base[0]["labels"]) for d in cas.LowFidelityLabels(base, p=0.0))
        assert all(torch.equal(d["labels"], 1 - base[0]["labels"]) for d in cas.LowFidelityLabels(base, p=1.0))

    def test_bad_arguments_name_the_argument(self):
        for k in (2.0, True, 1):
            with pytest.raises(ValueError, match=r"^`num_classes`: expected an int >= 2, got "):
                cas.LowFidelityLabels([], k)
        for p in (-0.1, 1.5, "0.5"):
            with pytest.raises(ValueError, match=r"^`p`: expected a probability in \[0, 1\], got "):
                cas.LowFidelityLabels([], p=p)


class TestSelectChannelEdgeCases:
    def test_pearson_not_covariance_nor_global_centring(self):
        # channel 0 follows the mask exactly but with a small amplitude (correlation 1); channel 1 has
        # a larger covariance with it but correlation < 1. Pearson picks 0; covariance, a product of
        # norms or centring by the mean over all channels would pick 1.
        s = torch.tensor([[0.05, 0.05, 0.15, 0.15], [0.0, 0.5, 1.0, 0.5], [0.95, 0.45, 0.0, 0.35]])
        probs = s.double()[None, :, None, :]                       # (1, 3, 1, 4)
        mask = torch.tensor([[[0, 0, 1, 1]]])
        assert select_channel(probs, mask) == 0
        assert select_channel(probs[:, 1:], mask) == 0             # channel 1 beats the anti-correlated one
        # invariant to the scale of a channel, however small (the clamp only guards a constant channel)
        tiny = probs.clone()
        tiny[:, 0] = (probs[:, 0] - 0.1) * 1e-300
        assert select_channel(tiny, mask) == 0

    def test_constant_channel_is_not_chosen_and_gives_no_nan(self):
        probs = torch.tensor([[[[0.5, 0.5, 0.5]], [[0.1, 0.2, 0.9]]]], dtype=torch.float64)
        assert select_channel(probs, torch.tensor([[[0, 0, 1]]])) == 1

    def test_bad_input_names_the_argument(self):
        mask = torch.tensor([[[0, 1, 1], [0, 0, 1], [1, 0, 0]]])
        with pytest.raises(ValueError, match=r"^`probs`: expected shape \(N, C, H, W\), got \(2, 3, 3\)$"):
            select_channel(torch.rand(2, 3, 3), mask)
        with pytest.raises(ValueError, match=r"^`probs`: expected finite values"):
            select_channel(torch.full((1, 2, 3, 3), float("nan")), mask)
        with pytest.raises(ValueError, match=r"^`labels`: expected W=3 \(as in `probs`\), got 2$"):
            select_channel(torch.rand(1, 2, 3, 3), mask[..., :2])
        with pytest.raises(ValueError, match=r"^`labels`: expected N=2 \(as in `probs`\), got 1$"):
            select_channel(torch.rand(2, 2, 3, 3), mask)
        with pytest.raises(ValueError, match=r"^`labels`: expected binary values \(bool or 0/1\)$"):
            select_channel(torch.rand(1, 2, 1, 2), torch.tensor([[[0, 2]]]))
        with pytest.raises(ValueError, match=r"^`labels`: expected both salient and non-salient pixels, "
                                             r"got a constant map$"):
            select_channel(torch.rand(1, 2, 3, 3), torch.ones(1, 3, 3, dtype=torch.bool))


class TestMatchChannelsEdgeCases:
    def test_table_of_means_not_sums(self):
        # class 0: one pixel, clearly channel 0 (0.7 vs 0.3); class 1: nine pixels, slightly channel 0
        # (0.55 vs 0.45). Means: 0.7 + 0.45 > 0.3 + 0.55 -> [0, 1]. Sums would weight class 1 by 9 -> [1, 0].
        y = torch.ones(1, 1, 10, dtype=torch.long)
        y[0, 0, 0] = 0
        probs = torch.stack([torch.full((1, 10), 0.55), torch.full((1, 10), 0.45)])[None].double()
        probs[0, :, 0, 0] = torch.tensor([0.7, 0.3], dtype=torch.float64)
        out = match_channels(probs, y, 2)
        assert out.tolist() == [0, 1] and out.dtype == torch.long

    def test_as_many_classes_as_channels_and_a_single_class(self):
        y = random_partition(B=2, N=3, seed=40)
        perm = torch.tensor([2, 0, 1])
        probs = (_one_hot_perfect(y, 3, perm) * 0.9 + 0.05).float()  # float32 input is fine
        assert match_channels(probs, y, 3).tolist() == [2, 0, 1]
        assert match_channels(probs, torch.zeros_like(y), 1).tolist() == [int(probs.mean((0, 2, 3)).argmax())]

    def test_void_pixels_are_left_out(self):
        # the void pixels say "class 0 is channel 1" loudly; they must not count
        y = torch.tensor([[[0, 0, 1, 1, 255, 255, 255, 255]]])
        probs = torch.tensor([[[[0.8, 0.8, 0.2, 0.2, 0.0, 0.0, 0.0, 0.0]],
                               [[0.2, 0.2, 0.8, 0.8, 1.0, 1.0, 1.0, 1.0]]]], dtype=torch.float64)
        assert match_channels(probs, y, 2).tolist() == [0, 1]
        assert match_channels(probs, torch.where(y == 255, 7, y), 2, ignore_index=7).tolist() == [0, 1]
        assert match_channels(probs[..., :4], y[..., :4], 2, ignore_index=None).tolist() == [0, 1]
        with pytest.raises(ValueError, match=r"^`labels`: expected values in \[0, 2\), got \[0, 255\]$"):
            match_channels(probs, y, 2, ignore_index=None)
        with pytest.raises(ValueError, match=r"^`labels`: class 0 has no pixel; cannot assign it a channel$"):
            match_channels(probs, torch.full_like(y, 255), 2)

    def test_a_class_with_one_pixel_is_enough(self):
        y = torch.tensor([[[0, 1, 1, 1]]])
        probs = torch.tensor([[[[0.1, 0.9, 0.9, 0.9]], [[0.9, 0.1, 0.1, 0.1]]]], dtype=torch.float64)
        assert match_channels(probs, y, 2).tolist() == [1, 0]

    def test_bad_input_names_the_argument(self):
        y = torch.tensor([[[0, 1, 2, 0]]])
        probs = torch.rand(1, 3, 1, 4)
        with pytest.raises(ValueError, match=r"^`probs`: expected shape \(N, C, H, W\), got \(3, 1, 4\)$"):
            match_channels(probs[0], y, 3)
        with pytest.raises(ValueError, match=r"^`probs`: expected finite values"):
            match_channels(torch.full_like(probs, float("nan")), y, 3)
        with pytest.raises(ValueError, match=r"^`labels`: expected W=4 \(as in `probs`\), got 3$"):
            match_channels(probs, y[..., :3], 3)
        with pytest.raises(ValueError, match=r"^`labels`: expected shape \(N, H, W\), got \(1, 4\)$"):
            match_channels(probs, y[0], 3)
        with pytest.raises(TypeError, match=r"^`labels`: expected an integer tensor"):
            match_channels(probs, y.float(), 3)
        for k in (2.0, True, 0, 4):
            with pytest.raises(ValueError, match=r"^`num_classes`: expected an int in \[1, 3\] \(the number of "
                                                 r"channels\), got "):
                match_channels(probs, y, k)
        # H = 6 > M = 3: the limit is the number of channels, not another axis
        with pytest.raises(ValueError, match=r"^`num_classes`: expected an int in \[1, 3\]"):
            match_channels(torch.rand(1, 3, 6, 1), torch.tensor([[[0], [1], [2], [3], [0], [1]]]), 4)
        with pytest.raises(ValueError, match=r"^`labels`: expected values in \[0, 3\), got \[0, 3\]$"):
            match_channels(probs, torch.tensor([[[0, 1, 2, 3]]]), 3)
        with pytest.raises(ValueError, match=r"^`labels`: expected values in \[0, 3\), got \[-1, 2\]$"):
            match_channels(probs, torch.tensor([[[0, 1, 2, -1]]]), 3)
