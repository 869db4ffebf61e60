"""pixelbook.meanshift against independent computations: documented defaults and constants, exact
values from closed forms or a float64 reference written differently, boundary cases and the errors
of bad input (each names its argument). Complements tests/test_meanshift.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pixelbook import meanshift as ms


def _unit(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def _gbms_step_reference(x: torch.Tensor, delta: float, eta: float) -> torch.Tensor:
    """One renormalised GBMS step in the thesis' column layout, float64: X <- X (eta K D^-1 + (1-eta) I)."""
    out = []
    for xb in x.double():
        X = xb.T  # (D, N): points are columns
        K = torch.exp(delta * (X.T @ X))
        P = eta * K @ torch.diag(1 / K.sum(0)) + (1 - eta) * torch.eye(X.shape[1], dtype=torch.float64)
        Y = X @ P
        out.append((Y / Y.norm(dim=0, keepdim=True)).T)
    return torch.stack(out)


# ------------------------------------------------------------------------------------------------
# constants and documented defaults
# ------------------------------------------------------------------------------------------------


def test_constants_are_the_thesis_settings():
    assert ms.ALPHA == 0.5  # [Kong thesis, §5.3.2]: alpha = 0.5 for most experiments
    assert ms.DELTA == 3 / (1 - ms.ALPHA)  # the rule 1/delta = (1 - alpha)/3
    assert ms.GBMS_IMPLS == ("explicit", "attention", "appendix")
    assert ms.WEIGHTINGS == ("instance", "uniform")


def test_embedding_loss_module_defaults_are_the_documented_ones():
    mod = ms.EmbeddingLoss()
    assert (mod.alpha, mod.weighting, mod.num_samples, mod.delta, mod.num_iters, mod.eta) == (
        0.5, "instance", None, 6.0, 0, 1.0)
    assert (mod.impl, mod.loss_at, mod.gbms_on, mod.reduction) == ("attention", "all", "all", "mean")
    r = repr(mod)
    for part in ("alpha=0.5", "weighting='instance'", "num_samples=None", "delta=6.0", "num_iters=0",
                 "eta=1.0", "impl='attention'", "loss_at='all'", "gbms_on='all'"):
        assert part in r
    emb = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    inst = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    # defaults: Eq. 5.2 alone on all pixels, mean over images
    ref = ms.pairwise_embedding_loss(ms.flatten_embeddings(emb), inst.flatten(1), 0.5, "instance")
    torch.testing.assert_close(mod(emb, inst), ref)
    torch.testing.assert_close(ms.embedding_loss(emb, inst), ref)


def test_gbms_defaults_are_the_documented_ones():
    x = _unit(1, 12, 3)
    states = ms.gbms(x, return_all=True)  # num_iters default 10 (the thesis' figures)
    assert len(states) == 11
    torch.testing.assert_close(states[-1], ms.gbms(x, 6.0, 10, eta=1.0, impl="explicit"))
    torch.testing.assert_close(ms.gbms_step(x), _gbms_step_reference(x, 6.0, 1.0))
    layer = ms.GBMS()
    assert (layer.delta, layer.num_iters, layer.eta, layer.impl) == (6.0, 10, 1.0, "attention")
    assert repr(layer) == "GBMS(delta=6.0, num_iters=10, eta=1.0, impl='attention')"
    torch.testing.assert_close(layer(x), states[-1])


def test_segment_defaults_are_the_documented_ones():
    emb = _unit(1, 20, 3).transpose(1, 2).reshape(1, 3, 4, 5)
    x = ms.gbms(ms.flatten_embeddings(emb), 6.0, 10, impl="explicit")
    assert torch.equal(ms.segment(emb), ms.group_modes(x, 0.9, 1).reshape(1, 4, 5))


# ------------------------------------------------------------------------------------------------
# similarity, weights, losses
# ------------------------------------------------------------------------------------------------


def test_calibrated_similarity_with_leading_dims_against_a_loop():
    x, y = _unit(2, 3, 5, 4) * 3, _unit(2, 3, 6, 4, seed=1) * 0.5
    s = ms.calibrated_similarity(x, y)
    assert s.shape == (2, 3, 5, 6)
    for a in range(2):
        for b in range(3):
            for i in (0, 4):
                for j in (0, 5):
                    u, v = x[a, b, i], y[a, b, j]
                    expected = 0.5 * (1 + float(u @ v) / (float(u.norm()) * float(v.norm())))
                    assert abs(float(s[a, b, i, j]) - expected) < 1e-12


def test_calibrated_similarity_checks_y():
    x = torch.rand(4, 3)
    with pytest.raises(TypeError, match="`y`: expected a floating-point"):
        ms.calibrated_similarity(x, torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="`y`: expected finite"):
        ms.calibrated_similarity(x, torch.tensor([[1.0, float("inf"), 0.0]]))


def test_pair_weights_mask_must_be_bool():
    with pytest.raises(TypeError, match="`mask`: expected a bool tensor"):
        ms.pair_weights(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3))


def test_pair_weights_hand_values_with_mask():
    # ids 0 0 1 1 1, pixel 1 masked: |I_0| = 1, |I_1| = 3 -> w = 1, 0, 1/3, 1/3, 1/3; sum_ij w_i w_j = 4
    ids = torch.tensor([[0, 0, 1, 1, 1]])
    mask = torch.tensor([[True, False, True, True, True]])
    w = torch.tensor([1.0, 0.0, 1 / 3, 1 / 3, 1 / 3], dtype=torch.float64)
    expected = (w[:, None] * w[None, :]) / 4
    torch.testing.assert_close(ms.pair_weights(ids, mask)[0].double(), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("alpha,expected", [(0.0, 0.25), (1.0, 0.0), (0.25, 0.125)])
def test_pairwise_loss_at_the_ends_of_the_margin_range(alpha, expected):
    # two orthogonal points of different instances: s = 1/2, each of the 2 negative pairs weighs 1/4
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    loss = ms.pairwise_embedding_loss(x, torch.tensor([[0, 1]]), alpha=alpha)
    assert abs(float(loss) - expected) < 1e-12


def test_sample_pixels_caps_at_the_image_size():
    idx, mask = ms.sample_pixels(torch.zeros(2, 2, 3, dtype=torch.long), 10,
                                 generator=torch.Generator().manual_seed(0))
    assert idx.shape == (2, 6) and bool(mask.all())
    assert all(sorted(row) == list(range(6)) for row in idx.tolist())


def test_embedding_loss_bad_input():
    emb, inst = torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="`valid`: expected W=4"):
        ms.embedding_loss(emb, inst, valid=torch.ones(1, 4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="`valid`: expected a bool tensor"):
        ms.embedding_loss(emb, inst, valid=torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="`gbms_on`"):
        ms.embedding_loss(emb, inst, gbms_on="none")
    with pytest.raises(ValueError, match="`weighting`"):
        ms.embedding_loss(emb, inst, weighting="area")
    with pytest.raises(TypeError, match="`embeddings`: expected a floating-point"):
        ms.embedding_loss(torch.ones(1, 3, 4, 4, dtype=torch.long), inst)


@pytest.mark.parametrize("kwargs,err,name", [
    (dict(delta=0.0), ValueError, "delta"), (dict(eta=0.0), ValueError, "eta"),
    (dict(eta=1.5), ValueError, "eta"), (dict(num_samples=0), ValueError, "num_samples"),
    (dict(num_iters=-1), ValueError, "num_iters"), (dict(alpha=-0.1), ValueError, "alpha"),
    (dict(alpha=1.1), ValueError, "alpha"), (dict(loss_at="first"), ValueError, "loss_at"),
    (dict(gbms_on="none"), ValueError, "gbms_on"), (dict(reduction="max"), ValueError, "reduction"),
    (dict(weighting="area"), ValueError, "weighting"), (dict(num_samples=2.5), TypeError, "num_samples"),
])
def test_embedding_loss_module_rejects_bad_settings(kwargs, err, name):
    with pytest.raises(err, match=f"`{name}`"):
        ms.EmbeddingLoss(**kwargs)


def test_embedding_loss_module_accepts_the_ends_of_its_ranges():
    mod = ms.EmbeddingLoss(alpha=0.0, eta=1.0, num_samples=1)
    assert (mod.alpha, mod.eta, mod.num_samples) == (0.0, 1.0, 1)
    assert ms.EmbeddingLoss(alpha=1.0).alpha == 1.0


# ------------------------------------------------------------------------------------------------
# GBMS
# ------------------------------------------------------------------------------------------------


def test_kernel_matrix_values():
    x = _unit(2, 5, 3)
    K, d = ms.kernel_matrix(x, 2.5)
    for b in range(2):
        for i in range(5):
            for j in range(5):
                assert abs(float(K[b, i, j]) - math.exp(2.5 * (float(x[b, i] @ x[b, j]) - 1))) < 1e-12
    torch.testing.assert_close(d, K.sum(1))
    torch.testing.assert_close(K.diagonal(dim1=1, dim2=2), torch.ones(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="`delta`"):
        ms.kernel_matrix(x, 0.0)


@pytest.mark.parametrize("impl", ms.GBMS_IMPLS)
def test_narrow_kernel_in_float32_stays_finite_and_exact(impl):
    # the official code's bandwidth (delta = 100 here): exp(delta x.y) overflows float32, the
    # shifted kernel exp(delta (x.y - 1)) of the docstring does not
    x = _unit(1, 30, 3, dtype=torch.float32, seed=2)
    y = ms.gbms_step(x, 100.0, impl=impl)
    torch.testing.assert_close(y.double(), _gbms_step_reference(x.double(), 100.0, 1.0), rtol=0, atol=1e-5)


@pytest.mark.parametrize("impl", ms.GBMS_IMPLS)
def test_gbms_step_with_eta_against_the_matrix_form(impl):
    x = _unit(2, 9, 4, seed=3)
    torch.testing.assert_close(ms.gbms_step(x, 3.0, 0.5, impl), _gbms_step_reference(x, 3.0, 0.5),
                               rtol=0, atol=1e-12)


def test_gbms_step_bad_input():
    x = _unit(1, 4, 3)
    with pytest.raises(ValueError, match="`eta`"):
        ms.gbms_step(x, 6.0, 0.0)
    with pytest.raises(ValueError, match="`delta`"):
        ms.gbms_step(x, -1.0)
    with pytest.raises(ValueError, match="`impl`"):
        ms.gbms_step(x, impl="flash")
    assert ms.gbms(x, 6.0, 0).equal(x)  # zero iterations: the normalised input


def test_gbms_module_bad_settings():
    for kwargs, name in ((dict(delta=0.0), "delta"), (dict(num_iters=-1), "num_iters"),
                         (dict(eta=0.0), "eta"), (dict(eta=1.5), "eta"), (dict(impl="flash"), "impl")):
        with pytest.raises(ValueError, match=f"`{name}`"):
            ms.GBMS(**kwargs)


def test_appendix_backward_bad_input():
    x = _unit(1, 4, 3)
    with pytest.raises(ValueError, match="`grad_y`: expected P=4"):
        ms.gbms_backward_appendix(x, torch.zeros(1, 5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`delta`"):
        ms.gbms_backward_appendix(x, torch.zeros_like(x), delta=0.0)
    with pytest.raises(ValueError, match="`eta`"):
        ms.gbms_backward_appendix(x, torch.zeros_like(x), eta=0.0)


def test_appendix_backward_defaults():
    # defaults: delta 6, eta 1, renormalised; compare with autograd through the float64 reference
    x = _unit(1, 6, 3, seed=4).requires_grad_(True)
    g = torch.randn(1, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    (_gbms_step_reference(x, 6.0, 1.0) * g).sum().backward()
    gx, _ = ms.gbms_backward_appendix(x.detach(), g)
    torch.testing.assert_close(gx, x.grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("impl", ["attention", "explicit"])
def test_euclidean_gbms_against_a_loop(impl):
    x = torch.tensor([[[0.0], [0.3], [1.0], [4.0]]], dtype=torch.float64)
    sigma, eta = 0.7, 0.5
    ref = x[0, :, 0].tolist()
    states = [list(ref)]
    for _ in range(3):
        new = []
        for xj in ref:
            w = [math.exp(-((xi - xj) ** 2) / (2 * sigma ** 2)) for xi in ref]
            new.append(eta * sum(wi * xi for wi, xi in zip(w, ref)) / sum(w) + (1 - eta) * xj)
        ref = new
        states.append(list(ref))
    out = ms.gaussian_blurring_mean_shift(x, sigma, 3, eta=eta, impl=impl, return_all=True)
    assert len(out) == 4
    for got, want in zip(out, states):
        assert max(abs(a - b) for a, b in zip(got[0, :, 0].tolist(), want)) < 1e-12
    # default num_iters is 10 and eta 1
    assert len(ms.gaussian_blurring_mean_shift(x, sigma, return_all=True)) == 11


def test_euclidean_gbms_bad_input():
    x = torch.zeros(1, 3, 1)
    with pytest.raises(ValueError, match="`sigma`"):
        ms.gaussian_blurring_mean_shift(x, 0.0)
    with pytest.raises(ValueError, match="`impl`"):
        ms.gaussian_blurring_mean_shift(x, 1.0, impl="appendix")
    with pytest.raises(ValueError, match="`eta`"):
        ms.gaussian_blurring_mean_shift(x, 1.0, eta=1.5)
    with pytest.raises(ValueError, match="`num_iters`"):
        ms.gaussian_blurring_mean_shift(x, 1.0, -1)


# ------------------------------------------------------------------------------------------------
# packing, read-out
# ------------------------------------------------------------------------------------------------


def test_antipodal_embedding_values_and_errors():
    assert ms.antipodal_embedding(1).tolist() == [[1.0]]
    assert ms.antipodal_embedding(4).tolist() == [[1, 0], [-1, 0], [0, 1], [0, -1]]
    assert ms.antipodal_embedding(3, dim=4).tolist() == [[1, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0]]
    with pytest.raises(ValueError, match="`dim`"):
        ms.antipodal_embedding(3, dim=1)
    with pytest.raises(ValueError, match="`n`"):
        ms.antipodal_embedding(0)
    with pytest.raises(ValueError, match="`n`"):
        ms.margin_bound(1)


def test_group_modes_edge_cases():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    # threshold 1: no cosine exceeds it, every point is its own segment (equal sizes keep their order)
    assert ms.group_modes(x, threshold=1.0)[0].tolist() == [0, 1, 2]
    # min_size above every segment: the largest is kept and the rest join it
    y = torch.tensor([[[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 2])
    assert ms.group_modes(y, min_size=5)[0].tolist() == [0, 0, 0, 0, 0]
    assert ms.group_modes(y, min_size=2)[0].tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="`min_size`"):
        ms.group_modes(y, min_size=0)
    with pytest.raises(ValueError, match="`threshold`"):
        ms.group_modes(y, threshold=-1.5)


def test_score_segments_is_the_mean_cosine_to_the_mean_direction():
    emb = torch.zeros(1, 2, 1, 3)
    emb[0, 0, 0, :2] = 1
    emb[0, 1, 0, 1:] = 1  # pixels at 0, 45 and 90 degrees
    masks, scores = ms.score_segments(emb, torch.tensor([[[0, 0, 1]]]))[0]
    assert masks.tolist() == [[[False, False, True]], [[True, True, False]]]
    assert abs(float(scores[0]) - 1) < 1e-6 and abs(float(scores[1]) - math.cos(math.pi / 8)) < 1e-6
    with pytest.raises(TypeError, match="`segments`: expected an integer"):
        ms.score_segments(emb, torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="`segments`: expected W=3"):
        ms.score_segments(emb, torch.zeros(1, 1, 4, dtype=torch.long))


def test_propose_dedupe_threshold():
    emb = torch.zeros(1, 3, 6, 6)
    emb[:, 0, :, :3] = 1
    emb[:, 1, 2:, 3:] = 1
    emb[:, 2, :2, 3:] = 1
    # the same bandwidth twice gives every segment twice (IoU 1): 1.0 keeps all, the default drops copies
    assert len(ms.propose(emb, deltas=(6.0, 6.0), dedupe_iou=1.0)[0][0]) == 6
    assert len(ms.propose(emb, deltas=(6.0, 6.0))[0][0]) == 3
    with pytest.raises(ValueError, match="`dedupe_iou`"):
        ms.propose(emb, dedupe_iou=1.5)


def test_spherical_kmeans_on_identical_points_and_errors():
    x = torch.ones(5, 3)  # every k-means++ distance is 0: the seeding falls back to uniform
    lab = ms.spherical_kmeans(x, 2, generator=torch.Generator().manual_seed(0))
    assert lab.shape == (5,) and len(set(lab.tolist())) == 1
    for kwargs, name in ((dict(k=0), "k"), (dict(k=2, num_iters=0), "num_iters"), (dict(k=2, restarts=0), "restarts")):
        with pytest.raises(ValueError, match=f"`{name}`"):
            ms.spherical_kmeans(x, **kwargs)


def test_instance_boundaries_and_gradient_map_errors():
    with pytest.raises(ValueError, match="`width`"):
        ms.instance_boundaries(torch.zeros(1, 3, 3, dtype=torch.long), width=0)
    with pytest.raises(TypeError, match="`instances`: expected an integer"):
        ms.instance_boundaries(torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="reduction"):
        ms.gradient_map(torch.randn(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long), reduction="mean")
