"""pixelbook.meanshift against independent computations: documented defaults and constants, exact
values from closed forms or a float64 reference written differently, boundary cases and the errors
of bad input (each names its argument). Complements tests/test_meanshift.py."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from pixelbook import meanshift as ms
from pixelbook.models import EmbeddingNet


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


# ------------------------------------------------------------------------------------------------
# every validated argument: the value just outside its documented range is an error naming it
# (anchored: the message starts with the argument and states the range), the boundary is accepted
# ------------------------------------------------------------------------------------------------

_P = _unit(1, 4, 3)  # (B, P, D) unit points
_EMB = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(7))
_INST = torch.zeros(1, 3, 3, dtype=torch.long)
_INT1 = r"expected an integer in \[1, inf\]"

_BAD = [
    # points-like inputs: the shape is named with its axes
    (lambda: ms.gbms_step(torch.rand(4, 3)), ValueError, r"^`points`: expected shape \(B, P, D\)"),
    (lambda: ms.kernel_matrix(torch.rand(4, 3)), ValueError, r"^`points`: expected shape \(B, P, D\)"),
    (lambda: ms.group_modes(torch.rand(4, 3)), ValueError, r"^`points`: expected shape \(B, P, D\)"),
    (lambda: ms.pairwise_embedding_loss(torch.rand(4, 3), torch.zeros(1, 4, dtype=torch.long)), ValueError,
     r"^`points`: expected shape \(B, P, D\)"),
    (lambda: ms.gaussian_blurring_mean_shift(torch.rand(4, 1), 1.0), ValueError, r"^`x`: expected shape \(B, P, D\)"),
    (lambda: ms.gbms_backward_appendix(torch.rand(4, 3), torch.rand(4, 3)), ValueError,
     r"^`x`: expected shape \(B, P, D\)"),
    (lambda: ms.gbms_backward_appendix(_P, torch.rand(4, 3)), ValueError, r"^`grad_y`: expected shape \(B, P, D\)"),
    (lambda: ms.spherical_kmeans(torch.rand(1, 4, 3), 2), ValueError, r"^`points`: expected shape \(P, D\)"),
    (lambda: ms.pair_weights(torch.zeros(3, dtype=torch.long)), ValueError, r"^`ids`: expected shape \(B, P\)"),
    # maps
    *[(lambda f=f: f(torch.rand(2, 3, 3)), ValueError, r"^`embeddings`: expected shape \(N, D, H, W\)")
      for f in (ms.flatten_embeddings, ms.segment, ms.propose, lambda e: ms.score_segments(e, _INST),
                lambda e: ms.gradient_map(e, _INST), lambda e: ms.embedding_loss(e, _INST))],
    *[(lambda f=f: f(torch.ones(1, 2, 3, 3, dtype=torch.long)), TypeError, r"^`embeddings`: expected a floating-point")
      for f in (ms.flatten_embeddings, lambda e: ms.gradient_map(e, _INST))],
    (lambda: ms.embedding_loss(_EMB, torch.zeros(3, 3, dtype=torch.long)), ValueError,
     r"^`instances`: expected shape \(N, H, W\)"),
    (lambda: ms.embedding_loss(_EMB, _INST, valid=torch.ones(3, 3, dtype=torch.bool)), ValueError,
     r"^`valid`: expected shape \(N, H, W\)"),
    (lambda: ms.embedding_loss(_EMB, _INST, valid=torch.ones(1, 2, 3, dtype=torch.bool)), ValueError,
     r"^`valid`: expected H=3"),
    (lambda: ms.score_segments(_EMB, torch.zeros(3, 3, dtype=torch.long)), ValueError,
     r"^`segments`: expected shape \(N, H, W\)"),
    (lambda: ms.score_segments(_EMB, torch.zeros(1, 2, 3, dtype=torch.long)), ValueError, r"^`segments`: expected H=3"),
    (lambda: ms.score_segments(_EMB, torch.zeros(2, 3, 3, dtype=torch.long)), ValueError, r"^`segments`: expected N=1"),
    (lambda: ms.score_segments(_EMB, torch.zeros(1, 3, 3)), TypeError, r"^`segments`: expected an integer"),
    (lambda: ms.instance_boundaries(torch.zeros(3, 3, dtype=torch.long)), ValueError,
     r"^`instances`: expected shape \(N, H, W\)"),
    (lambda: ms.instance_boundaries(torch.zeros(1, 3, 3)), TypeError, r"^`instances`: expected an integer"),
    (lambda: ms.sample_pixels(torch.zeros(3, 3, dtype=torch.long), 2), ValueError,
     r"^`instances`: expected shape \(N, H, W\)"),
    (lambda: ms.sample_pixels(_INST, 2, torch.ones(3, 3, dtype=torch.bool)), ValueError,
     r"^`valid`: expected shape \(N, H, W\)"),
    (lambda: ms.sample_pixels(_INST, 2, torch.ones(1, 3, 4, dtype=torch.bool)), ValueError, r"^`valid`: expected W=3"),
    (lambda: ms.calibrated_similarity(torch.rand(2, 3, 5, 4), torch.rand(2, 2, 6, 4)), ValueError, r"^`y`: expected A1=3"),
    # integers
    (lambda: ms.antipodal_embedding(0), ValueError, r"^`n`: " + _INT1),
    (lambda: ms.antipodal_embedding(5, dim=2), ValueError, r"^`dim`: expected an integer in \[3, inf\]"),
    (lambda: ms.margin_bound(1), ValueError, r"^`n`: expected an integer in \[2, inf\]"),
    (lambda: ms.embedding_loss(_EMB, _INST, num_iters=-1), ValueError, r"^`num_iters`: expected an integer in \[0, inf\]"),
    (lambda: ms.gbms(_P, 6.0, -1), ValueError, r"^`num_iters`: expected an integer in \[0, inf\]"),
    (lambda: ms.gaussian_blurring_mean_shift(_P, 1.0, -1), ValueError,
     r"^`num_iters`: expected an integer in \[0, inf\]"),
    (lambda: ms.group_modes(_P, min_size=0), ValueError, r"^`min_size`: " + _INT1),
    (lambda: ms.instance_boundaries(_INST, width=0), ValueError, r"^`width`: " + _INT1),
    (lambda: ms.sample_pixels(_INST, 0), ValueError, r"^`num_samples`: " + _INT1),
    (lambda: ms.spherical_kmeans(_P[0], 0), ValueError, r"^`k`: expected an integer in \[1, 4\]"),
    (lambda: ms.spherical_kmeans(_P[0], 5), ValueError, r"^`k`: expected an integer in \[1, 4\]"),
    (lambda: ms.spherical_kmeans(_P[0], 2, num_iters=0), ValueError, r"^`num_iters`: " + _INT1),
    (lambda: ms.spherical_kmeans(_P[0], 2, restarts=0), ValueError, r"^`restarts`: " + _INT1),
    (lambda: ms.tammes_similarity(1, steps=1), ValueError, r"^`n`: expected an integer in \[2, inf\]"),
    (lambda: ms.tammes_similarity(3, dim=1, steps=1), ValueError, r"^`dim`: expected an integer in \[2, inf\]"),
    (lambda: ms.tammes_similarity(3, steps=0), ValueError, r"^`steps`: " + _INT1),
    (lambda: ms.tammes_similarity(3, steps=1, restarts=0), ValueError, r"^`restarts`: " + _INT1),
    (lambda: ms.tammes_similarity(3, steps=1, seed=-1), ValueError, r"^`seed`: expected an integer in \[0, inf\]"),
    (lambda: ms.three_gaussians_toy(0), ValueError, r"^`n_per`: " + _INT1),
    (lambda: ms.three_gaussians_toy(2, middle_label=0), ValueError, r"^`middle_label`: expected an integer in \[1, 2\]"),
    (lambda: ms.three_gaussians_toy(2, seed=-1), ValueError, r"^`seed`: expected an integer in \[0, inf\]"),
    (lambda: ms.EmbeddingLoss(num_iters=-1), ValueError, r"^`num_iters`: expected an integer in \[0, inf\]"),
    (lambda: ms.EmbeddingLoss(num_samples=0), ValueError, r"^`num_samples`: " + _INT1),
    (lambda: ms.GBMS(num_iters=-1), ValueError, r"^`num_iters`: expected an integer in \[0, inf\]"),
    # reals
    *[(thunk, ValueError, r"^`alpha`: expected a finite number in \[0, 1\]") for thunk in (
        lambda: ms.embedding_loss(_EMB, _INST, alpha=-0.1), lambda: ms.embedding_loss(_EMB, _INST, alpha=1.1),
        lambda: ms.pairwise_embedding_loss(_P, torch.zeros(1, 4, dtype=torch.long), alpha=-0.1),
        lambda: ms.EmbeddingLoss(alpha=-0.1), lambda: ms.EmbeddingLoss(alpha=1.1))],
    *[(thunk, ValueError, r"^`delta`: expected a finite number in \(0, inf\)") for thunk in (
        lambda: ms.kernel_matrix(_P, 0.0), lambda: ms.kernel_matrix(_P, -1.0), lambda: ms.gbms_step(_P, 0.0),
        lambda: ms.gbms_backward_appendix(_P, _P, 0.0), lambda: ms.EmbeddingLoss(delta=0.0), lambda: ms.GBMS(0.0))],
    *[(thunk, ValueError, r"^`eta`: expected a finite number in \(0, 1\]") for thunk in (
        lambda: ms.gbms_step(_P, 6.0, 0.0), lambda: ms.gbms_step(_P, 6.0, 1.5),
        lambda: ms.gbms_backward_appendix(_P, _P, eta=0.0), lambda: ms.gbms_backward_appendix(_P, _P, eta=1.5),
        lambda: ms.gaussian_blurring_mean_shift(_P, 1.0, eta=0.0), lambda: ms.gaussian_blurring_mean_shift(_P, 1.0, eta=1.5),
        lambda: ms.EmbeddingLoss(eta=0.0), lambda: ms.EmbeddingLoss(eta=1.5), lambda: ms.GBMS(eta=0.0),
        lambda: ms.GBMS(eta=1.5))],
    (lambda: ms.gaussian_blurring_mean_shift(_P, 0.0), ValueError, r"^`sigma`: expected a finite number in \(0, inf\)"),
    (lambda: ms.group_modes(_P, threshold=-1.5), ValueError, r"^`threshold`: expected a finite number in \[-1, 1\]"),
    (lambda: ms.group_modes(_P, threshold=1.5), ValueError, r"^`threshold`: expected a finite number in \[-1, 1\]"),
    (lambda: ms.propose(_EMB, dedupe_iou=-0.1), ValueError, r"^`dedupe_iou`: expected a finite number in \[0, 1\]"),
    (lambda: ms.propose(_EMB, dedupe_iou=1.1), ValueError, r"^`dedupe_iou`: expected a finite number in \[0, 1\]"),
    # messages without a formatted value
    (lambda: ms.propose(_EMB, deltas=()), ValueError, r"^`deltas`: expected at least one bandwidth, got none$"),
    (lambda: ms.gradient_map(_EMB, _INST, reduction="mean"), ValueError,
     r"^`loss_kwargs`: gradient_map uses every pixel and sums over images; do not pass num_samples or reduction$"),
    (lambda: ms.gradient_map(_EMB, _INST, num_samples=2), ValueError, r"^`loss_kwargs`: gradient_map uses every pixel"),
    (lambda: ms.embedding_loss(_EMB, _INST, valid=torch.ones(1, 3, 3)), TypeError,
     r"^`valid`: expected a bool tensor, got torch.float32$"),
    (lambda: EmbeddingNet(dilations=()), ValueError, r"^`dilations`: expected at least one layer, got none$"),
]


def _ids(cases):
    """Plain test ids (argument name and position): mutmut selects tests by id."""
    return [f"{i}_" + re.sub(r"\W", "", re.search(r"`([^`]*)`", pat).group(1)) for i, (_, _, pat) in enumerate(cases)]

@pytest.mark.parametrize("thunk,err,pattern", _BAD, ids=_ids(_BAD))
def test_bad_argument_names_itself_and_its_range(thunk, err, pattern):
    with pytest.raises(err, match=pattern):
        thunk()


def test_the_ends_of_every_documented_range_are_accepted():
    assert ms.antipodal_embedding(5, dim=3).shape == (5, 3)
    assert abs(ms.margin_bound(2) - (1 - math.pi / math.sqrt(3))) < 1e-15
    # one instance: only positive pairs, the margin does not enter
    torch.testing.assert_close(ms.embedding_loss(_EMB, _INST, alpha=0.0), ms.embedding_loss(_EMB, _INST, alpha=1.0))
    assert ms.gbms(_P, 6.0, 0).shape == (1, 4, 3)
    assert ms.gaussian_blurring_mean_shift(_P, 1e-3, 0, eta=1.0).equal(_P)
    assert ms.gbms_step(_P, 1e-6, 1.0).shape == (1, 4, 3)
    assert ms.gbms_backward_appendix(_P, _P, 1e-6, 1.0)[0].shape == (1, 4, 3)
    assert ms.group_modes(_P, threshold=-1.0, min_size=1)[0].tolist() == [0, 0, 0, 0]  # everything merges
    # no segment reaches min_size: the largest are kept (here all four, tied, in order)
    assert ms.group_modes(_P, threshold=1.0, min_size=4)[0].tolist() == [0, 1, 2, 3]
    assert ms.instance_boundaries(_INST, width=1).shape == (1, 3, 3)
    assert ms.sample_pixels(_INST, 1)[0].shape == (1, 1)
    assert ms.spherical_kmeans(_P[0], 1, num_iters=1, restarts=1).tolist() == [0, 0, 0, 0]
    assert sorted(ms.spherical_kmeans(_P[0], 4).tolist()) == [0, 1, 2, 3]  # k = P: one point each
    points, s = ms.tammes_similarity(2, dim=2, steps=1, restarts=1, seed=0)
    assert points.shape == (2, 2) and 0 <= s <= 1
    x, c, y = ms.three_gaussians_toy(1, seed=0, middle_label=1)
    assert y.tolist() == [1.0, 1.0, 2.0] and ms.three_gaussians_toy(1, middle_label=2)[2].tolist() == [1.0, 2.0, 2.0]
    assert len(ms.propose(_EMB, dedupe_iou=0.0)[0][0]) >= 1
    assert ms.EmbeddingLoss(delta=1e-6, num_iters=0, num_samples=1).num_samples == 1
    assert ms.GBMS(1e-6, 0, 1.0).num_iters == 0


# ------------------------------------------------------------------------------------------------
# values of the remaining paths
# ------------------------------------------------------------------------------------------------


def test_calibrated_similarity_non_tensor_and_rounding_below_zero():
    with pytest.raises(TypeError, match=r"^`x`: expected a torch.Tensor"):
        ms.calibrated_similarity([[1.0, 0.0]])
    # antipodal float32 pairs: the cosine rounds below -1 for many of them; the result stays in [0, 1]
    x = torch.randn(2000, 5, generator=torch.Generator().manual_seed(0))
    s = ms.calibrated_similarity(x, -x).diagonal()
    assert float(s.min()) == 0.0 and float(s.max()) < 1e-6


def test_flatten_embeddings_against_a_loop():
    emb = torch.randn(2, 3, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    flat = ms.flatten_embeddings(emb)
    assert flat.shape == (2, 8, 3)
    for n in range(2):
        for h in range(2):
            for w in range(4):
                v = emb[n, :, h, w]
                torch.testing.assert_close(flat[n, h * 4 + w], v / v.norm(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("impl", ["explicit", "appendix"])
def test_explicit_steps_have_second_derivatives(impl):
    # the explicit forms support double backward (the fused attention kernel does not): a
    # Hessian-vector product through one step equals that of the float64 matrix form
    x = _unit(1, 6, 3, seed=8).requires_grad_(True)

    def hvp(step):
        (g,) = torch.autograd.grad((step(x) ** 3).sum(), x, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), x)
        return h

    torch.testing.assert_close(hvp(lambda p: ms.gbms_step(p, 3.0, 0.7, impl)),
                               hvp(lambda p: _gbms_step_reference(p, 3.0, 0.7)), rtol=0, atol=1e-9)
    emb = _unit(1, 3, 9, seed=9).transpose(1, 2).reshape(1, 3, 3, 3).requires_grad_(True)
    inst = torch.tensor([[[0, 0, 1], [0, 1, 1], [2, 2, 2]]])
    loss = ms.embedding_loss(emb, inst, num_iters=1, impl=impl, eta=0.7, delta=3.0, loss_at="last")
    (g,) = torch.autograd.grad(loss, emb, create_graph=True)
    (h,) = torch.autograd.grad(g.pow(2).sum(), emb)
    ref = ms.pairwise_embedding_loss(_gbms_step_reference(ms.flatten_embeddings(emb), 3.0, 0.7), inst.flatten(1))
    (gr,) = torch.autograd.grad(ref, emb, create_graph=True)
    (hr,) = torch.autograd.grad(gr.pow(2).sum(), emb)
    torch.testing.assert_close(h, hr, rtol=0, atol=1e-9)


def test_embedding_loss_and_module_pass_every_setting_on():
    emb = torch.randn(2, 3, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    inst = torch.randint(0, 3, (2, 3, 4), generator=torch.Generator().manual_seed(11))
    valid = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(12)) > 0.3
    x = ms.flatten_embeddings(emb)
    ids, mask = inst.flatten(1), valid.flatten(1)
    states = [x]
    for _ in range(2):
        states.append(_gbms_step_reference(states[-1], 4.0, 0.6))
    expected = ms.pairwise_embedding_loss(states[-1], ids, 0.3, "uniform", mask, reduction="none")
    got = ms.embedding_loss(emb, inst, 0.3, weighting="uniform", valid=valid, delta=4.0, num_iters=2, eta=0.6,
                            impl="explicit", loss_at="last", reduction="none")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    mod = ms.EmbeddingLoss(0.3, weighting="uniform", delta=4.0, num_iters=2, eta=0.6, impl="explicit",
                           loss_at="last", reduction="none")
    torch.testing.assert_close(mod(emb, inst, valid), expected, rtol=0, atol=1e-12)
    # every iteration, summed over images
    every = sum(ms.pairwise_embedding_loss(s, ids, 0.3, "uniform", mask, reduction="sum") for s in states)
    got = ms.embedding_loss(emb, inst, 0.3, weighting="uniform", valid=valid, delta=4.0, num_iters=2, eta=0.6,
                            reduction="sum")
    torch.testing.assert_close(got, every, rtol=0, atol=1e-12)


def test_gbms_module_passes_eta_and_return_all_on():
    x = _unit(1, 8, 3, seed=13)
    layer = ms.GBMS(4.0, 2, eta=0.5, impl="explicit")
    ref = _gbms_step_reference(_gbms_step_reference(x, 4.0, 0.5), 4.0, 0.5)
    torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-12)
    states = layer(x, return_all=True)
    assert isinstance(states, list) and len(states) == 3
    torch.testing.assert_close(states[1], _gbms_step_reference(x, 4.0, 0.5), rtol=0, atol=1e-12)
    emb = x.transpose(1, 2).reshape(1, 3, 2, 4)
    torch.testing.assert_close(layer(emb), ref.transpose(1, 2).reshape(1, 3, 2, 4), rtol=0, atol=1e-12)


def test_euclidean_gbms_in_two_dimensions_against_a_loop():
    x = torch.tensor([[[0.0, 0.0], [0.5, 0.2], [3.0, 1.0]]], dtype=torch.float64)
    sigma = 0.8
    pts = x[0].tolist()
    new = []
    for pj in pts:
        w = [math.exp(-((pi[0] - pj[0]) ** 2 + (pi[1] - pj[1]) ** 2) / (2 * sigma ** 2)) for pi in pts]
        new.append([sum(wi * pi[d] for wi, pi in zip(w, pts)) / sum(w) for d in range(2)])
    for impl in ("attention", "explicit"):
        out = ms.gaussian_blurring_mean_shift(x, sigma, 1, impl=impl)
        torch.testing.assert_close(out[0], torch.tensor(new, dtype=torch.float64), rtol=0, atol=1e-12)


def test_gradient_map_passes_loss_settings_on():
    emb = torch.randn(1, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(14))
    inst = torch.tensor([[[0, 0, 1], [0, 1, 1], [2, 2, 2]]])
    e = F.normalize(emb, dim=1).requires_grad_(True)
    loss = ms.pairwise_embedding_loss(ms.flatten_embeddings(e), inst.flatten(1), alpha=0.2, weighting="uniform",
                                      reduction="sum")
    (g,) = torch.autograd.grad(loss, e)
    torch.testing.assert_close(ms.gradient_map(emb, inst, 0, alpha=0.2, weighting="uniform"), g.norm(dim=1))


def test_group_modes_threshold_refinement_and_numbering():
    deg = lambda a: [math.cos(math.radians(a)), math.sin(math.radians(a))]  # noqa: E731
    # "cosine > threshold": at exactly the threshold two points stay apart
    assert ms.group_modes(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), threshold=0.0)[0].tolist() == [0, 1]
    # re-centring: 50 deg is beyond the threshold (40 deg) from the seed but within it from the
    # members' mean direction (15 deg): one segment
    pts = torch.tensor([[deg(0), deg(30), deg(50)]], dtype=torch.float64)
    assert ms.group_modes(pts, threshold=math.cos(math.radians(40)))[0].tolist() == [0, 0, 0]
    # small segments join the most similar kept centre (two kept segments, two strays)
    pts = torch.tensor([[deg(0)] * 3 + [deg(90)] * 3 + [deg(30), deg(65)]], dtype=torch.float64)
    assert ms.group_modes(pts, threshold=0.99, min_size=2)[0].tolist() == [0, 0, 0, 1, 1, 1, 0, 1]
    # the mean direction, not the column-normalised centres: one segment far larger than the other
    pts = torch.tensor([[deg(0)] * 9 + [deg(80)] * 2 + [deg(35)]], dtype=torch.float64)
    assert ms.group_modes(pts, threshold=0.99, min_size=2)[0].tolist() == [0] * 9 + [1, 1, 0]
    # equal sizes are numbered in order of discovery (a stable order, also for many ties)
    eye = torch.eye(200)[None]
    assert ms.group_modes(eye, threshold=0.5)[0].tolist() == list(range(200))


def test_score_segments_and_propose_keep_ties_in_order():
    emb = torch.eye(200).reshape(1, 200, 1, 200)  # 200 pixels, 200 orthogonal directions
    seg = torch.arange(200).reshape(1, 1, 200)
    masks, scores = ms.score_segments(emb, seg)[0]
    assert torch.equal(scores, torch.ones(200))
    assert torch.equal(masks.reshape(200, 200), torch.eye(200, dtype=torch.bool))  # segment k first at k
    masks, scores = ms.propose(emb, deltas=(100.0,), num_iters=1, dedupe_iou=1.0)[0]
    assert torch.equal(masks.reshape(200, 200), torch.eye(200, dtype=torch.bool))
    # two segments with different scores: each score is its own segment's mean cosine
    e = torch.zeros(1, 2, 1, 4)
    e[0, 0, 0, 0] = 1
    e[0, :, 0, 1] = 1
    e[0, 1, 0, 2:] = 1  # directions 0, 45, 90, 90 deg
    masks, scores = ms.score_segments(e, torch.tensor([[[0, 0, 1, 1]]]))[0]
    torch.testing.assert_close(scores, torch.tensor([1.0, math.cos(math.pi / 8)]))
    assert masks[0].tolist() == [[False, False, True, True]]


def test_propose_dedupes_single_pixel_segments():
    emb = torch.eye(3).reshape(1, 3, 1, 3)  # three single-pixel segments
    masks, _ = ms.propose(emb, deltas=(100.0, 100.0), num_iters=1)[0]
    assert len(masks) == 3  # the second bandwidth's copies have IoU 1
    assert len(ms.propose(emb, deltas=(100.0, 100.0), num_iters=1, dedupe_iou=1.0)[0][0]) == 6
    # min_size (default 1) is passed on: with 2 the single pixel joins the pair
    emb = torch.eye(3)[[0, 0, 1]].T.reshape(1, 3, 1, 3)
    assert len(ms.propose(emb, deltas=(100.0,), num_iters=1)[0][0]) == 2
    assert len(ms.propose(emb, deltas=(100.0,), num_iters=1, min_size=2)[0][0]) == 1


def test_segment_passes_its_settings_on():
    deg = lambda a: [math.cos(math.radians(a)), math.sin(math.radians(a))]  # noqa: E731
    emb = torch.tensor([deg(0), deg(30), deg(180), deg(210)], dtype=torch.float64).T.reshape(1, 2, 1, 4)
    # no iterations: 30 deg apart is below the 0.9 cosine, four segments; GBMS (delta 6) merges pairs
    assert ms.segment(emb, num_iters=0).tolist() == [[[0, 1, 2, 3]]]
    assert ms.segment(emb).tolist() == [[[0, 0, 1, 1]]]
    emb = torch.tensor([deg(0), deg(0), deg(30), deg(180)], dtype=torch.float64).T.reshape(1, 2, 1, 4)
    assert ms.segment(emb, num_iters=0).tolist() == [[[0, 0, 1, 2]]]
    assert ms.segment(emb, num_iters=0, min_size=2).tolist() == [[[0, 0, 0, 0]]]  # the singles join


def test_instance_boundaries_ignore_the_image_border():
    assert not bool(ms.instance_boundaries(torch.full((1, 4, 5), 3)).any())
    inst = torch.zeros(1, 1, 5, dtype=torch.long)
    inst[0, 0, 4] = 1
    assert ms.instance_boundaries(inst, width=2)[0, 0].tolist() == [False, False, True, True, True]


def test_pair_weights_normalise_each_image():
    ids = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 1]])
    W = ms.pair_weights(ids)
    torch.testing.assert_close(W.sum((1, 2)), torch.ones(2))
    # image 0: w = 1/2, 1/2, 1, 1 -> sum_ij w_i w_j = 9; image 1: w = 1, 1/3 x3 -> 4
    torch.testing.assert_close(W[0, 2, 3], torch.tensor(1 / 9))
    torch.testing.assert_close(W[1, 0, 0], torch.tensor(1 / 4))


def test_sample_pixels_draws_each_image_independently():
    idx, _ = ms.sample_pixels(torch.zeros(3, 4, 4, dtype=torch.long), 5, generator=torch.Generator().manual_seed(0))
    assert len({tuple(sorted(r)) for r in idx.tolist()}) == 3


def test_tammes_is_reproducible_and_float64():
    a, sa = ms.tammes_similarity(4, steps=20, restarts=2, seed=3)
    b, sb = ms.tammes_similarity(4, steps=20, restarts=2, seed=3)
    assert a.dtype == torch.float64 and torch.equal(a, b) and sa == sb
    torch.testing.assert_close(a.norm(dim=1), torch.ones(4, dtype=torch.float64))
    c = a @ a.T
    assert abs(sa - 0.5 * (1 + float(c[~torch.eye(4, dtype=torch.bool)].max()))) < 1e-15


def test_three_gaussians_are_the_documented_distributions():
    x, comp, target = ms.three_gaussians_toy(4, seed=5)
    z = torch.randn(12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mu = torch.tensor([3.0] * 4 + [4.0] * 4 + [5.0] * 4, dtype=torch.float64)
    sd = torch.tensor([0.2] * 4 + [0.3] * 4 + [0.1] * 4, dtype=torch.float64)
    assert x.dtype == torch.float64 and target.dtype == torch.float64
    torch.testing.assert_close(x, mu + sd * z, rtol=0, atol=1e-15)
    assert comp.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_loss_comes_back_in_the_points_dtype():
    x = F.normalize(torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(15)), dim=-1)
    ids = torch.tensor([[0, 0, 1, 1, 2]])
    for dtype in (torch.bfloat16, torch.float64):
        assert ms.pairwise_embedding_loss(x.to(dtype), ids).dtype == dtype


def test_modules_pass_impl_on_second_derivatives():
    # GBMS(impl="explicit") and EmbeddingLoss(impl="explicit") keep the double-backward support of
    # the explicit form (the fused attention kernel has none on the CPU)
    pts = _unit(1, 9, 3, seed=16).requires_grad_(True)
    emb = _unit(1, 3, 9, seed=17).transpose(1, 2).reshape(1, 3, 3, 3).requires_grad_(True)
    inst = torch.tensor([[[0, 0, 1], [0, 1, 1], [2, 2, 2]]])
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    cases = [(pts, lambda p: ms.GBMS(3.0, 1, impl="explicit")(p).pow(3).sum()),
             (emb, lambda e: ms.EmbeddingLoss(delta=3.0, num_iters=1, impl="explicit", num_samples=9,
                                              gbms_on="sampled")(e, inst, generator=gen())),
             (emb, lambda e: ms.embedding_loss(e, inst, delta=3.0, num_iters=1, impl="explicit", num_samples=9,
                                               gbms_on="sampled", generator=gen()))]
    for leaf, f in cases:
        (g,) = torch.autograd.grad(f(leaf), leaf, create_graph=True)
        (h,) = torch.autograd.grad(g.pow(2).sum(), leaf)
        assert bool(torch.isfinite(h).all()) and float(h.abs().sum()) > 0


def test_euclidean_gbms_batches_are_independent():
    g = torch.Generator().manual_seed(18)
    x = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    for impl in ("attention", "explicit"):
        together = ms.gaussian_blurring_mean_shift(x, 0.9, 2, impl=impl)
        apart = torch.cat([ms.gaussian_blurring_mean_shift(x[i:i + 1], 0.9, 2, impl=impl) for i in range(3)])
        torch.testing.assert_close(together, apart, rtol=0, atol=1e-12)


def test_remaining_defaults_and_the_seeded_baseline():
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(19))  # no cluster structure: seeding matters
    a = ms.spherical_kmeans(x, 3, generator=torch.Generator().manual_seed(1))
    b = ms.spherical_kmeans(x, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)  # the generator alone decides the seeding
    emb = torch.zeros(1, 2, 3, 3)
    emb[:, 0] = 1  # one segment: the second bandwidth's copy (k = 1) is a duplicate
    assert len(ms.propose(emb, deltas=(6.0, 6.0))[0][0]) == 1
    e = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(20))
    inst = torch.randint(0, 3, (2, 3, 3), generator=torch.Generator().manual_seed(21))
    torch.testing.assert_close(ms.EmbeddingLoss(reduction="sum")(e, inst), ms.embedding_loss(e, inst, reduction="sum"))
    x0, c0, t0 = ms.three_gaussians_toy()  # 100 per component, seed 0
    x1, _, _ = ms.three_gaussians_toy(100, 0, 2)
    assert x0.shape == (300,) and torch.equal(x0, x1) and t0[100:200].tolist() == [2.0] * 100
    torch.testing.assert_close(ms.gradient_map(e, inst), ms.gradient_map(e, inst, 1))  # one loop by default
    assert not torch.allclose(ms.gradient_map(e, inst, 1), ms.gradient_map(e, inst, 2))
