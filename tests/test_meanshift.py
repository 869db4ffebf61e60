"""Tests of pixelbook.meanshift: pairwise embedding loss, GBMS (three implementations), read-out."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pixelbook import meanshift as ms

torch.set_default_dtype(torch.float32)


def _unit(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def _clusters(k=3, per=40, dim=8, noise=0.1, seed=0, dtype=torch.float64):
    """k orthogonal clusters (axes e_0..e_{k-1}) with Gaussian noise, unit rows; and their ids."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim, dtype=dtype)[:k]
    ids = torch.arange(k).repeat_interleave(per)
    x = centres[ids] + noise * torch.randn(k * per, dim, generator=g, dtype=dtype)
    return F.normalize(x, dim=-1), ids


# ------------------------------------------------------------------------------------------------
# similarity and the loss
# ------------------------------------------------------------------------------------------------


class TestCalibratedSimilarity:
    def test_range_and_diagonal(self):
        x = _unit(3, 50, 5) * torch.rand(3, 50, 1, dtype=torch.float64) * 10
        s = ms.calibrated_similarity(x)
        assert float(s.min()) >= 0 and float(s.max()) <= 1
        torch.testing.assert_close(s.diagonal(dim1=-2, dim2=-1), torch.ones(3, 50, dtype=torch.float64))

    def test_antipodal_is_zero_orthogonal_is_half(self):
        x = torch.tensor([[1.0, 0.0], [-2.0, 0.0], [0.0, 3.0]])
        s = ms.calibrated_similarity(x)
        assert s[0, 1] == 0 and s[0, 2] == 0.5

    def test_scale_invariance(self):
        x, y = _unit(20, 4), _unit(30, 4, seed=1)
        c1 = torch.rand(20, 1, dtype=torch.float64) * 100 + 1e-3
        c2 = torch.rand(30, 1, dtype=torch.float64) * 100 + 1e-3
        torch.testing.assert_close(ms.calibrated_similarity(c1 * x, c2 * y), ms.calibrated_similarity(x, y))

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`y`: expected D=3"):
            ms.calibrated_similarity(torch.rand(4, 3), torch.rand(4, 2))
        with pytest.raises(ValueError, match="`x`: expected finite"):
            ms.calibrated_similarity(torch.tensor([[float("nan"), 1.0]]))
        with pytest.raises(TypeError, match="`x`: expected a floating-point"):
            ms.calibrated_similarity(torch.ones(2, 2, dtype=torch.long))


class TestPairWeights:
    def test_each_instance_block_sums_to_one_over_q_squared(self):
        ids = torch.tensor([[0] * 1000 + [1] * 20 + [2] * 3])
        W = ms.pair_weights(ids)
        Q = 3
        for q in range(Q):
            m = ids[0] == q
            assert abs(float(W[0][m][:, m].sum()) * Q ** 2 - 1) < 1e-5
        assert abs(float(W.sum()) - 1) < 1e-6

    def test_uniform_weights_are_equal(self):
        W = ms.pair_weights(torch.tensor([[0, 0, 0, 1]]), weighting="uniform")
        torch.testing.assert_close(W, torch.full((1, 4, 4), 1 / 16))

    def test_mask_removes_pixels_and_recounts(self):
        ids = torch.tensor([[0, 0, 0, 1, 1]])
        mask = torch.tensor([[True, False, False, True, True]])
        W = ms.pair_weights(ids, mask)
        assert float(W[0, 1].abs().sum()) == 0 and float(W[0, :, 2].abs().sum()) == 0
        # the lone kept background pixel is its whole instance: its block is 1/Q^2
        assert abs(float(W[0, 0, 0]) - 0.25) < 1e-6

    def test_empty_image_has_zero_weights(self):
        W = ms.pair_weights(torch.tensor([[1, 2]]), torch.zeros(1, 2, dtype=torch.bool))
        assert float(W.abs().sum()) == 0

    def test_bad_input(self):
        with pytest.raises(TypeError, match="`ids`: expected an integer"):
            ms.pair_weights(torch.rand(1, 3))
        with pytest.raises(ValueError, match="`weighting`"):
            ms.pair_weights(torch.zeros(1, 3, dtype=torch.long), weighting="area")
        with pytest.raises(ValueError, match="`mask`: expected P=3"):
            ms.pair_weights(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool))


class TestPairwiseEmbeddingLoss:
    def test_zero_for_perfect_embedding(self):
        ids = torch.tensor([[0] * 30 + [1] * 5 + [2] * 11 + [3]])
        x = torch.eye(4)[ids] * torch.rand(1, ids.shape[1], 1) * 5  # orthogonal, any scale
        assert float(ms.pairwise_embedding_loss(x, ids)) == 0.0

    def test_two_instances_sharing_a_vector_hand_value(self):
        # Q = 2; every negative pair has s = 1 and pays 1 - alpha; negatives weigh 2/Q^2 = 1/2
        ids = torch.tensor([[0] * 1000 + [1] * 20])
        x = torch.ones(1, 1020, 3)
        loss = ms.pairwise_embedding_loss(x, ids, alpha=0.5)
        assert abs(float(loss) - 0.25) < 1e-6
        # uniform pixel weights: the 20-px object's negatives weigh 2*1000*20/1020^2
        loss_u = ms.pairwise_embedding_loss(x, ids, alpha=0.5, weighting="uniform")
        assert abs(float(loss_u) - 0.5 * 2 * 1000 * 20 / 1020 ** 2) < 1e-6

    def test_margin_hinge(self):
        # two instances at 60 degrees: s = 0.75; alpha 0.8 -> no loss, alpha 0.5 -> 0.25 per negative
        x = torch.tensor([[[1.0, 0.0], [0.5, math.sqrt(3) / 2]]])
        ids = torch.tensor([[0, 1]])
        assert float(ms.pairwise_embedding_loss(x, ids, alpha=0.8)) == 0
        assert abs(float(ms.pairwise_embedding_loss(x, ids, alpha=0.5)) - 0.5 * 0.25) < 1e-6

    def test_gradient_slope_is_constant(self):
        # d loss / d s = -W for positives and +W for negatives above the margin (Fig. 5.2)
        ids = torch.tensor([[0, 0, 1]])
        x = _unit(1, 3, 3).requires_grad_(True)
        s = ms.calibrated_similarity(x)
        s.retain_grad()
        W = ms.pair_weights(ids).double()
        same = ids[:, :, None] == ids[:, None, :]
        loss = (W * torch.where(same, 1 - s, (s - 0.5).clamp_min(0))).sum()
        loss.backward()
        expected = torch.where(same, -W, torch.where(s > 0.5, W, torch.zeros_like(W)))
        torch.testing.assert_close(s.grad, expected)
        torch.testing.assert_close(loss, ms.pairwise_embedding_loss(x, ids))

    def test_gradcheck_float64(self):
        x = _unit(2, 6, 3).requires_grad_(True)
        ids = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 1, 1]])
        assert torch.autograd.gradcheck(lambda p: ms.pairwise_embedding_loss(p, ids, alpha=0.3), (x,))

    def test_reduction(self):
        x, ids = _unit(3, 5, 4), torch.randint(0, 3, (3, 5), generator=torch.Generator().manual_seed(0))
        per = ms.pairwise_embedding_loss(x, ids, reduction="none")
        assert per.shape == (3,)
        torch.testing.assert_close(ms.pairwise_embedding_loss(x, ids, reduction="sum"), per.sum())
        torch.testing.assert_close(ms.pairwise_embedding_loss(x, ids), per.mean())

    def test_bad_input(self):
        x = torch.rand(1, 4, 3)
        with pytest.raises(ValueError, match="`ids`: expected P=4"):
            ms.pairwise_embedding_loss(x, torch.zeros(1, 5, dtype=torch.long))
        with pytest.raises(ValueError, match="`alpha`"):
            ms.pairwise_embedding_loss(x, torch.zeros(1, 4, dtype=torch.long), alpha=1.5)
        with pytest.raises(TypeError, match="`alpha`"):
            ms.pairwise_embedding_loss(x, torch.zeros(1, 4, dtype=torch.long), alpha=True)
        with pytest.raises(ValueError, match="`reduction`"):
            ms.pairwise_embedding_loss(x, torch.zeros(1, 4, dtype=torch.long), reduction="max")


class TestPropositions:
    def test_prop_5_1_lower_bound(self):
        for n in (2, 5, 50):
            x = _unit(200, n, 3, seed=n)  # 200 random sets of n unit vectors in R^3
            G = x @ x.transpose(1, 2)
            off = G.sum((1, 2)) - G.diagonal(dim1=1, dim2=2).sum(1)
            assert float(off.min()) >= -n - 1e-9
        # equality is reached when the vectors sum to zero
        x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
        assert float((x @ x.T).sum() - 2) == -2

    def test_prop_5_1_instance_mean_decomposition(self):
        x, ids = _clusters(k=3, per=7, dim=5, noise=0.5)
        w = 1 / torch.bincount(ids)[ids].double()
        total = (w[:, None] * x).sum(0).pow(2).sum()
        means = torch.stack([(w[ids == q, None] * x[ids == q]).sum(0) for q in range(3)])
        pos = means.pow(2).sum()
        neg = (means @ means.T).sum() - means.pow(2).sum()
        torch.testing.assert_close(total, pos + neg)
        assert 0 <= float(pos) <= 3

    def test_prop_5_2_values(self):
        assert [round(ms.margin_bound(n), 4) for n in (4, 5, 6, 7)] == [0.0931, 0.2745, 0.3954, 0.4818]
        # the misprint 2*pi/sqrt(3N) would give other values (negative for n = 4)
        assert 1 - 2 * math.pi / math.sqrt(3 * 4) < 0

    def test_tammes_optima_and_bound_below_them(self):
        for n, s in {4: 1 / 3, 6: 0.5}.items():  # tetrahedron, octahedron
            assert abs(ms.tammes_similarity(n, steps=1000, restarts=2)[1] - s) < 1e-3
        # Prop. 5.2's asymptotic value lies below the true optimum for small n (known optima on S^2:
        # 1/3, 1/2, 1/2 and cos 77.87 deg -> 0.6052 for n = 4..7)
        for n, s in {4: 1 / 3, 5: 0.5, 6: 0.5, 7: 0.6052}.items():
            assert ms.margin_bound(n) < s

    def test_antipodal_embedding_allows_zero_loss_at_half(self):
        x = ms.antipodal_embedding(6)
        assert x.shape == (6, 3)
        s = ms.calibrated_similarity(x)
        off = ~torch.eye(6, dtype=torch.bool)
        assert float(s[off].max()) == 0.5
        assert float(ms.pairwise_embedding_loss(x[None], torch.arange(6)[None], alpha=0.5)) == 0


class TestSamplePixels:
    def test_unique_and_valid(self):
        valid = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5
        idx, mask = ms.sample_pixels(torch.zeros(3, 8, 8, dtype=torch.long), 10, valid,
                                     generator=torch.Generator().manual_seed(0))
        for b in range(3):
            assert len(set(idx[b].tolist())) == 10
            assert bool(valid[b].flatten()[idx[b]].all())
        assert bool(mask.all())

    def test_fewer_valid_than_requested_are_masked(self):
        valid = torch.zeros(1, 4, 4, dtype=torch.bool)
        valid[0, 0, :3] = True
        idx, mask = ms.sample_pixels(torch.zeros(1, 4, 4, dtype=torch.long), 6, valid)
        assert int(mask.sum()) == 3 and set(idx[0][mask[0]].tolist()) == {0, 1, 2}

    def test_reproducible(self):
        inst = torch.zeros(2, 6, 6, dtype=torch.long)
        a = ms.sample_pixels(inst, 5, generator=torch.Generator().manual_seed(3))[0]
        b = ms.sample_pixels(inst, 5, generator=torch.Generator().manual_seed(3))[0]
        assert torch.equal(a, b)

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`num_samples`"):
            ms.sample_pixels(torch.zeros(1, 2, 2, dtype=torch.long), 0)
        with pytest.raises(TypeError, match="`num_samples`"):
            ms.sample_pixels(torch.zeros(1, 2, 2, dtype=torch.long), 2.5)
        with pytest.raises(TypeError, match="`valid`: expected a bool"):
            ms.sample_pixels(torch.zeros(1, 2, 2, dtype=torch.long), 2, torch.ones(1, 2, 2))


class TestEmbeddingLoss:
    def test_equals_pairwise_loss_on_all_pixels(self):
        emb = torch.randn(2, 4, 5, 5, dtype=torch.float64)
        inst = torch.randint(0, 3, (2, 5, 5), generator=torch.Generator().manual_seed(0))
        expected = ms.pairwise_embedding_loss(ms.flatten_embeddings(emb), inst.flatten(1))
        torch.testing.assert_close(ms.embedding_loss(emb, inst), expected)

    def test_sum_over_gbms_iterations(self):
        emb = torch.randn(2, 4, 5, 5, dtype=torch.float64)
        inst = torch.randint(0, 3, (2, 5, 5), generator=torch.Generator().manual_seed(0))
        states = ms.gbms(ms.flatten_embeddings(emb), 4.0, 3, return_all=True)
        per_t = [ms.pairwise_embedding_loss(s, inst.flatten(1)) for s in states]
        torch.testing.assert_close(ms.embedding_loss(emb, inst, delta=4.0, num_iters=3), sum(per_t))
        torch.testing.assert_close(ms.embedding_loss(emb, inst, delta=4.0, num_iters=3, loss_at="last"), per_t[-1])

    def test_gbms_on_sampled_pixels(self):
        emb = torch.randn(2, 4, 5, 5, dtype=torch.float64)
        inst = torch.randint(0, 3, (2, 5, 5), generator=torch.Generator().manual_seed(0))
        idx, _ = ms.sample_pixels(inst, 7, generator=torch.Generator().manual_seed(4))
        pts = ms.flatten_embeddings(emb).gather(1, idx[:, :, None].expand(-1, -1, 4))
        ids = inst.flatten(1).gather(1, idx)
        expected = sum(ms.pairwise_embedding_loss(s, ids) for s in ms.gbms(pts, 4.0, 2, return_all=True))
        got = ms.embedding_loss(emb, inst, delta=4.0, num_iters=2, num_samples=7, gbms_on="sampled",
                                generator=torch.Generator().manual_seed(4))
        torch.testing.assert_close(got, expected)
        # grouping all pixels gives another value (the density comes from all 25 pixels)
        other = ms.embedding_loss(emb, inst, delta=4.0, num_iters=2, num_samples=7,
                                  generator=torch.Generator().manual_seed(4))
        assert abs(float(got - other)) > 1e-6

    def test_invalid_pixels_never_count(self):
        emb = torch.zeros(1, 2, 4, 4)
        emb[:, 0] = 1  # everything on one vector
        inst = torch.zeros(1, 4, 4, dtype=torch.long)
        inst[:, 0, 0] = 7  # a different instance on the same vector: pays if it counts
        valid = inst == 0
        assert float(ms.embedding_loss(emb, inst)) > 0
        assert float(ms.embedding_loss(emb, inst, valid=valid)) == 0
        assert float(ms.embedding_loss(emb, inst, valid=valid, num_samples=5, num_iters=2)) == 0

    def test_module_equals_function(self):
        emb, inst = torch.randn(2, 3, 6, 6), torch.randint(0, 4, (2, 6, 6))
        mod = ms.EmbeddingLoss(alpha=0.4, weighting="uniform", num_samples=12, num_iters=2, delta=5.0,
                               gbms_on="sampled")
        a = mod(emb, inst, generator=torch.Generator().manual_seed(0))
        b = ms.embedding_loss(emb, inst, 0.4, weighting="uniform", num_samples=12, num_iters=2, delta=5.0,
                              gbms_on="sampled", generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(a, b)
        assert "num_iters=2" in repr(mod)

    def test_gradients_flow_through_gbms(self):
        emb = torch.randn(1, 3, 4, 4, requires_grad=True)
        inst = torch.randint(0, 2, (1, 4, 4), generator=torch.Generator().manual_seed(0))
        ms.embedding_loss(emb, inst, num_iters=2, loss_at="last").backward()
        assert emb.grad is not None and float(emb.grad.abs().sum()) > 0

    def test_bad_input(self):
        emb, inst = torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)
        with pytest.raises(ValueError, match="`instances`: expected H=4"):
            ms.embedding_loss(emb, torch.zeros(1, 5, 4, dtype=torch.long))
        with pytest.raises(TypeError, match="`instances`: expected an integer"):
            ms.embedding_loss(emb, inst.float())
        with pytest.raises(ValueError, match="`num_iters`"):
            ms.embedding_loss(emb, inst, num_iters=-1)
        with pytest.raises(ValueError, match="`loss_at`"):
            ms.embedding_loss(emb, inst, loss_at="first")
        with pytest.raises(ValueError, match="`embeddings`: expected finite"):
            ms.embedding_loss(emb * float("inf"), inst)
        with pytest.raises(ValueError, match="`impl`"):
            ms.EmbeddingLoss(impl="flash")


# ------------------------------------------------------------------------------------------------
# GBMS
# ------------------------------------------------------------------------------------------------


class TestGBMS:
    @pytest.mark.parametrize("impl", ms.GBMS_IMPLS)
    def test_unit_norm(self, impl):
        x = torch.randn(2, 30, 5) * 3
        for y in ms.gbms(x, 6.0, 3, impl=impl, return_all=True):
            torch.testing.assert_close(y.norm(dim=-1), torch.ones(2, 30))

    @pytest.mark.parametrize("impl", ms.GBMS_IMPLS)
    def test_permutation_equivariant(self, impl):
        x = _unit(2, 25, 4)
        perm = torch.randperm(25, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(ms.gbms(x[:, perm], 6.0, 3, impl=impl), ms.gbms(x, 6.0, 3, impl=impl)[:, perm])

    @pytest.mark.parametrize("eta", [1.0, 0.6])
    def test_implementations_agree_values_and_gradients(self, eta):
        x0 = _unit(2, 40, 6)
        grads, outs = {}, {}
        w = torch.randn(2, 40, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        for impl in ms.GBMS_IMPLS:
            x = x0.clone().requires_grad_(True)
            y = ms.gbms(x, 5.0, 3, eta=eta, impl=impl)
            (y * w).sum().backward()
            outs[impl], grads[impl] = y.detach(), x.grad
        for impl in ("attention", "appendix"):
            torch.testing.assert_close(outs[impl], outs["explicit"], rtol=0, atol=1e-12)
            torch.testing.assert_close(grads[impl], grads["explicit"], rtol=0, atol=1e-10)

    def test_implementations_agree_in_float32(self):
        x = F.normalize(torch.randn(1, 500, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
        torch.testing.assert_close(ms.gbms(x, 6.0, 5, impl="attention"), ms.gbms(x, 6.0, 5, impl="explicit"),
                                   rtol=0, atol=1e-5)

    @pytest.mark.parametrize("impl", ms.GBMS_IMPLS)
    def test_gradcheck_through_three_iterations(self, impl):
        x = _unit(1, 7, 3).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda p: ms.gbms(p, 3.0, 3, eta=0.8, impl=impl), (x,))

    def test_attention_form_is_the_thesis_matrix_form(self):
        # thesis layout: X (D x N), K = exp(delta X^T X), D = diag(K^T 1), Y = X K D^-1
        x = _unit(1, 20, 4)
        X = x[0].T
        K = torch.exp(6.0 * X.T @ X)
        Y = X @ K @ torch.diag(1 / K.sum(0))  # K D^-1: each column sums to one
        torch.testing.assert_close(F.normalize(Y.T, dim=-1)[None], ms.gbms_step(x, 6.0, impl="attention"))
        # the other side, X D^-1 K, weights point i by 1/d_i: not a weighted mean, not attention
        wrong = X @ torch.diag(1 / K.sum(0)) @ K
        assert not torch.allclose(F.normalize(wrong.T, dim=-1)[None], ms.gbms_step(x, 6.0), atol=1e-3)
        # softmax attention normalises rows of softmax(delta x x^T): the transpose of K D^-1
        A = torch.softmax(6.0 * x[0] @ x[0].T, dim=-1)
        torch.testing.assert_close(A, (K @ torch.diag(1 / K.sum(0))).T)

    def test_kd_inverse_is_column_stochastic_with_spectrum_in_unit_interval(self):
        x = _unit(1, 60, 5)
        K, d = ms.kernel_matrix(x, 6.0)
        P = K[0] / d[0]
        torch.testing.assert_close(P.sum(0), torch.ones(60, dtype=torch.float64))
        ev = torch.linalg.eigvals(P)
        assert float(ev.imag.abs().max()) < 1e-8
        assert float(ev.real.min()) > -1e-6 and float(ev.real.max()) < 1 + 1e-6
        # similar to D^-1/2 K D^-1/2, symmetric PSD
        sym = K[0] / d[0].sqrt()[:, None] / d[0].sqrt()[None, :]
        torch.testing.assert_close(torch.sort(torch.linalg.eigvalsh(sym)).values, torch.sort(ev.real).values)

    def test_antipodal_clusters_are_fixed_points(self):
        x = torch.tensor([[1.0, 0, 0]] * 5 + [[-1.0, 0, 0]] * 3, dtype=torch.float64)[None]
        torch.testing.assert_close(ms.gbms(x, 6.0, 10), x)

    def test_clean_clusters_collapse_within_five_iterations(self):
        x, ids = _clusters(k=3, per=100, dim=8, noise=0.15)
        y = ms.gbms(x[None], 6.0, 5)[0]
        cos = y @ y.T
        same = ids[:, None] == ids[None, :]
        assert float(cos[same].min()) > 0.999
        assert float(cos[~same].max()) < 0.1

    def test_too_narrow_kernel_freezes_outliers(self):
        x, ids = _clusters(k=3, per=100, dim=8, noise=0.15)
        y = ms.gbms(x[None], 100.0, 10)[0]
        cos = y @ y.T
        assert float(cos[ids[:, None] == ids[None, :]].min()) < 0.9

    def test_module_on_maps_equals_function(self):
        emb = torch.randn(2, 4, 3, 5)
        out = ms.GBMS(5.0, 2)(emb)
        flat = ms.gbms(ms.flatten_embeddings(emb), 5.0, 2)
        torch.testing.assert_close(out, flat.transpose(1, 2).reshape(2, 4, 3, 5))
        assert len(ms.GBMS(5.0, 2)(emb, return_all=True)) == 3

    def test_bad_input(self):
        x = torch.randn(1, 5, 3)
        with pytest.raises(ValueError, match="`impl`"):
            ms.gbms(x, 6.0, 2, impl="flash")
        with pytest.raises(ValueError, match="`delta`"):
            ms.gbms(x, 0.0, 2)
        with pytest.raises(ValueError, match="`num_iters`"):
            ms.gbms(x, 6.0, -1)
        with pytest.raises(ValueError, match="`eta`"):
            ms.gbms(x, 6.0, 2, eta=1.5)
        with pytest.raises(ValueError, match=r"`points`: expected shape \(B, P, D\)"):
            ms.gbms(torch.randn(5, 3), 6.0, 2)
        with pytest.raises(ValueError, match="`points`: expected finite"):
            ms.gbms(x * float("nan"), 6.0, 2)


class TestAppendixBackward:
    @pytest.mark.parametrize("eta,renorm", [(1.0, True), (0.6, True), (0.6, False)])
    def test_equals_autograd(self, eta, renorm):
        x = _unit(2, 9, 4).requires_grad_(True)
        delta = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
        g = torch.randn(2, 9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        K = torch.exp(delta * (x @ x.transpose(1, 2)))
        y = eta * (K / K.sum(-2, keepdim=True)).transpose(1, 2) @ x + (1 - eta) * x
        if renorm:
            y = F.normalize(y, dim=-1)
        (y * g).sum().backward()
        gx, gd = ms.gbms_backward_appendix(x.detach(), g, 1.7, eta, renormalize=renorm)
        torch.testing.assert_close(gx, x.grad, rtol=0, atol=1e-10)
        torch.testing.assert_close(gd, delta.grad, rtol=0, atol=1e-10)

    def test_printed_formulas_are_wrong(self):
        # Eq. C.6 taken literally (matrix products, dL/dX = 2 X dL/dS, paths not added) is far off
        x = _unit(1, 7, 4)
        g = torch.randn(1, 7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        delta, eta = 1.7, 0.6
        X, Gy = x[0].T, g[0].T
        K = torch.exp(delta * X.T @ X)
        q = 1 / K.sum(0)
        Gp = X.T @ Gy
        Gk = eta * Gp @ (q[:, None] @ torch.ones(1, 7, dtype=torch.float64))
        Gq = eta * Gp.T @ K @ torch.ones(7, dtype=torch.float64)
        Gk = Gk + torch.ones(7, 1, dtype=torch.float64) @ (-Gq / K.sum(0) ** 2)[None]
        printed = 2 * X @ (delta * K * Gk)
        correct, _ = ms.gbms_backward_appendix(x, g, delta, eta, renormalize=False)
        assert float((printed.T - correct[0]).norm() / correct.norm()) > 0.5


class TestGaussianToy:
    def test_three_modes_near_three_four_five(self):
        x, comp, _ = ms.three_gaussians_toy(100, seed=0)
        y = ms.gaussian_blurring_mean_shift(x[None, :, None], 0.2, 20)[0, :, 0]
        modes = torch.unique(y.round(decimals=2))
        assert len(modes) == 3  # the note's numpy run: 3.05, 4.02, 4.98
        for k, mu in enumerate((3.0, 4.0, 5.0)):
            nearest = modes[(modes - mu).abs().argmin()]
            assert abs(float(nearest) - mu) < 0.1
            # the components overlap (sigma 0.3 in the middle): a few points join a neighbour mode
            assert float(((y[comp == k] - nearest).abs() < 0.01).double().mean()) >= 0.9

    def test_attention_equals_explicit(self):
        x, _, _ = ms.three_gaussians_toy(50, seed=1)
        a = ms.gaussian_blurring_mean_shift(x[None, :, None], 0.2, 5, impl="attention")
        b = ms.gaussian_blurring_mean_shift(x[None, :, None], 0.2, 5, impl="explicit")
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)

    def test_toy_data(self):
        x, comp, y = ms.three_gaussians_toy(1000, seed=0)
        for k, (mu, sd) in enumerate(((3, 0.2), (4, 0.3), (5, 0.1))):
            assert abs(float(x[comp == k].mean()) - mu) < 0.05 and abs(float(x[comp == k].std()) - sd) < 0.03
        assert set(y[comp == 0].tolist()) == {1.0} and set(y[comp == 2].tolist()) == {2.0}
        with pytest.raises(ValueError, match="`middle_label`"):
            ms.three_gaussians_toy(5, middle_label=3)


# ------------------------------------------------------------------------------------------------
# read-out
# ------------------------------------------------------------------------------------------------


class TestReadOut:
    def test_group_modes_recovers_clusters(self):
        x, ids = _clusters(k=4, per=30, dim=8, noise=0.05)
        seg = ms.group_modes(ms.gbms(x[None], 6.0, 5))[0]
        # same partition up to relabelling
        assert torch.equal(seg[:, None] == seg[None, :], ids[:, None] == ids[None, :])

    def test_group_modes_numbers_by_size_and_merges_small(self):
        x = torch.tensor([[1.0, 0, 0]] * 2 + [[0, 1.0, 0]] * 5 + [[0.1, 0, 1.0]])[None]
        assert ms.group_modes(x)[0].tolist() == [1, 1, 0, 0, 0, 0, 0, 2]
        assert ms.group_modes(x, min_size=2)[0].tolist() == [1, 1, 0, 0, 0, 0, 0, 1]

    def test_segment_and_propose(self):
        emb = torch.zeros(1, 3, 6, 6)
        emb[:, 0, :, :3] = 1
        emb[:, 1, 2:, 3:] = 1
        emb[:, 2, :2, 3:] = 1
        seg = ms.segment(emb, 6.0, 10)
        assert len(torch.unique(seg)) == 3
        assert len(torch.unique(ms.segment(emb, 1.0, 10))) == 1  # a wide kernel merges everything
        masks, scores = ms.propose(emb, deltas=(1.0, 6.0))[0]
        assert len(masks) == 4  # three segments at delta 6, the whole image at delta 1
        assert torch.equal(masks[-1], torch.ones(6, 6, dtype=torch.bool))  # least cohesive: last
        assert masks.dtype == torch.bool and masks.shape[1:] == (6, 6)
        assert bool((scores[:-1] >= scores[1:]).all())
        # no two kept proposals are duplicates
        flat = masks.flatten(1).double()
        inter = flat @ flat.T
        iou = inter / (flat.sum(1)[:, None] + flat.sum(1)[None] - inter)
        assert float((iou - torch.eye(len(masks), dtype=torch.float64)).max()) <= 0.9

    def test_spherical_kmeans(self):
        x, ids = _clusters(k=3, per=20, dim=5, noise=0.2)
        lab = ms.spherical_kmeans(x, 3, generator=torch.Generator().manual_seed(0))
        assert torch.equal(lab[:, None] == lab[None, :], ids[:, None] == ids[None, :])
        with pytest.raises(ValueError, match="`k`"):
            ms.spherical_kmeans(x, 61)

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`threshold`"):
            ms.group_modes(torch.rand(1, 3, 2), threshold=2.0)
        with pytest.raises(ValueError, match="`deltas`"):
            ms.propose(torch.rand(1, 3, 4, 4), deltas=())


class TestGradientMap:
    def test_instance_boundaries(self):
        inst = torch.zeros(1, 5, 5, dtype=torch.long)
        inst[0, 1:4, 1:4] = 1
        b = ms.instance_boundaries(inst)
        assert not bool(b[0, 2, 2]) and bool(b[0, 1, 1]) and bool(b[0, 0, 0]) and int(b.sum()) == 24
        assert int(ms.instance_boundaries(inst, width=2).sum()) == 25

    def test_equals_autograd_and_zero_for_perfect(self):
        emb = torch.randn(2, 3, 4, 4, dtype=torch.float64)
        inst = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(0))
        e = F.normalize(emb, dim=1).requires_grad_(True)
        states = ms.gbms(ms.flatten_embeddings(e), 6.0, 1, return_all=True)
        loss = ms.pairwise_embedding_loss(states[-1], inst.flatten(1), reduction="sum")
        (g,) = torch.autograd.grad(loss, e)
        torch.testing.assert_close(ms.gradient_map(emb, inst, 1), g.norm(dim=1))
        assert ms.gradient_map(emb, inst, 0).shape == (2, 4, 4)
        with pytest.raises(ValueError, match="num_samples"):
            ms.gradient_map(emb, inst, num_samples=4)
