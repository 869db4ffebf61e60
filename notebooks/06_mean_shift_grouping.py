# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 6. Pixel embeddings and recurrent mean-shift grouping
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pixelbook-org/pixelbook/blob/main/notebooks/06_mean_shift_grouping.ipynb)
#
# Instance segmentation has no fixed label set: an image holds any number of objects, and "object 1"
# and "object 2" can swap names without changing the answer. Chapter 5 of {cite:t}`kong2019thesis`
# ({cite:t}`kong2018grouping`) answers with two pieces. A network maps every pixel to a point on a
# sphere, trained with a *pairwise* loss that pulls pixels of one instance together and pushes
# different instances apart; then Gaussian blurring mean shift (GBMS), unrolled as a recurrent layer
# with no learned weights, collapses the points onto one mode per instance, and the loss is applied
# after every iteration. This chapter derives both, checks every step numerically, shows that one
# GBMS step *is* softmax attention (so it runs in memory linear in the number of pixels), corrects the
# thesis' hand-derived backward pass, and tests the thesis' claims on images of overlapping shapes
# whose colours repeat.

# %% tags=["hide-cell"]
# Setup, written by `tools/nbtools.py sync` from _config.yml: on Colab, install
# pixelbook from the repository; elsewhere it is already installed (see "How to run").
import sys

if "google.colab" in sys.modules:
    import subprocess

    package = "pixelbook[colab] @ git+https://github.com/pixelbook-org/pixelbook@main"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["hide-cell"]
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from myst_nb import glue

import pixelbook as pb
from pixelbook import meanshift as ms
from pixelbook.data.instances import make_instance_scenes

pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke|small|medium|full|auto
SEED = 0
DEVICE = "auto"
ALPHA = 0.5  # margin on the calibrated similarity [Kong thesis, Sec. 5.3.2]
DELTA = 6.0  # GBMS bandwidth, Ch. 5: 1/delta = (1 - alpha)/3 [KONG, Sec. 5.4.1]

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()
EXP = pb.experiments.get("06_mean_shift_grouping")
SMOKE = SCALE == "smoke"

# %% [markdown]
# ## Why a softmax cannot label instances
#
# Semantic segmentation is $C$-way classification: channel $c$ of the output *means* class $c$.
# Instances have no such meaning. Label the two squares below $(1, 2)$ or $(2, 1)$: the segmentation
# is the same, but a cross-entropy loss on a fixed prediction changes, and a network with $C$ output
# channels can never name more than $C$ objects. What the labels encode is only a *partition* of the
# pixels, and a loss for instances must depend on the partition alone. A pairwise loss does: it asks
# only whether two pixels belong to the same instance. So does the adjusted Rand index
# {cite:p}`hubert1985comparing`, our main metric, which counts agreeing pixel pairs.

# %% tags=["nbval-check-output"]
two = torch.zeros(1, 8, 8, dtype=torch.long)
two[0, 1:4, 1:4], two[0, 4:7, 4:7] = 1, 2
swapped = torch.where(two == 1, 2, torch.where(two == 2, 1, two))
logits = 5.0 * F.one_hot(two, 3).permute(0, 3, 1, 2).float()  # confident, correct
ce = F.cross_entropy(logits, two).item(), F.cross_entropy(logits, swapped).item()
pred = logits.argmax(1)
ari = (pb.metrics.adjusted_rand_index(pred, two),
       pb.metrics.adjusted_rand_index(pred, swapped))
print(f"cross-entropy: {ce[0]:.3f} vs {ce[1]:.3f} after swapping the names; "
      f"ARI: {ari[0]:.3f} vs {ari[1]:.3f}")
assert ce[1] > ce[0] + 1 and ari[0] == ari[1] == 1.0

# %% [markdown]
# ## Similarity on the sphere
#
# Each pixel $i$ gets an embedding $\mathbf x_i\in\mathbb R^D$. The thesis compares two by their
# cosine, shifted and scaled into $[0, 1]$ [Kong thesis, Eq. 5.1]:
#
# $$ s_{ij} = \frac12\Big(1 + \frac{\mathbf x_i^\top\mathbf x_j}{\|\mathbf x_i\|\,\|\mathbf x_j\|}\Big). $$
#
# Only directions count, so the loss cannot be lowered by growing or shrinking the vectors (weight
# decay and the loss stop interacting), and the embeddings live on the unit sphere $S^{D-1}$:
# $s = 1$ for the same direction, $\tfrac12$ for orthogonal ones, $0$ for opposite ones.

# %% tags=["nbval-check-output"]
g = torch.Generator().manual_seed(0)
x = torch.randn(50, 8, generator=g, dtype=torch.float64)
y = torch.randn(40, 8, generator=g, dtype=torch.float64)
s = pb.meanshift.calibrated_similarity(x, y)
scale_x = torch.rand(50, 1, generator=g, dtype=torch.float64) * 9 + 0.1
scale_y = torch.rand(40, 1, generator=g, dtype=torch.float64) * 9 + 0.1
assert 0 <= float(s.min()) and float(s.max()) <= 1
rescaled = pb.meanshift.calibrated_similarity(scale_x * x, scale_y * y)
torch.testing.assert_close(rescaled, s)
print("s in [0, 1] and unchanged by rescaling either vector")

# %% [markdown]
# ## The pairwise loss with a margin
#
# Pixels of the same instance should have $s_{ij}=1$; pixels of different instances should be
# *at least* a margin apart, $s_{ij}\le\alpha$. With pixel weights $w_i$ the loss over the $N_k$
# pixels of image $k$ is [Kong thesis, Eq. 5.2]
#
# $$ \ell = \sum_k\sum_{i,j}\frac{w^k_iw^k_j}{N_k}\Big(\mathbb 1_{\{y_i=y_j\}}(1-s_{ij})
#   + \mathbb 1_{\{y_i\ne y_j\}}\,[s_{ij}-\alpha]_+\Big). $$
#
# Both branches are linear in $s$: the gradient with respect to $s_{ij}$ is $-w_iw_j$ for a positive
# pair and $+w_iw_j$ or $0$ for a negative pair. A pair that is badly wrong pulls no harder than
# one that is slightly wrong, which limits the damage of noisy labels near boundaries (the thesis'
# Fig. 5.2; {numref}`fig-ch6-loss`). With α = 0.5 the margin sits at orthogonality: negatives pay when their angle is below
# $\cos^{-1}(2\alpha-1) = 90°$.
#
# ```{note}
# The thesis says the penalty applies to "pixels belonging to the same group" at an angle below
# $\cos^{-1}(\alpha)$; it means *different* groups, and since $\alpha$ acts on the calibrated $s$, the
# angle is $\cos^{-1}(2\alpha-1)$. See {ref}`the errata <errata-ch6>`.
# ```
#
# We normalise the pair weights to sum to one per image (the official code's choice) instead of
# dividing by $N_k$, which would tie the loss to the image size, and average over images. Written
# inline and checked against the package on random input:

# %%
def pairwise_loss_inline(x, ids, alpha=ALPHA):
    """Eq. 5.2 for one image: x (P, D), ids (P,), w_i = 1/|I_q|, weights sum to 1."""
    s = 0.5 * (1 + F.normalize(x, dim=1) @ F.normalize(x, dim=1).T)
    same = ids[:, None] == ids[None, :]
    w = 1.0 / torch.bincount(ids)[ids].to(x.dtype)
    W = w[:, None] * w[None, :]
    return (W * torch.where(same, 1 - s, (s - alpha).clamp_min(0))).sum() / W.sum()


x = torch.randn(2, 60, 5, dtype=torch.float64, generator=g)
ids = torch.randint(0, 4, (2, 60), generator=g)
inline = torch.stack([pairwise_loss_inline(x[b], ids[b]) for b in range(2)]).mean()
torch.testing.assert_close(inline, pb.meanshift.pairwise_embedding_loss(x, ids, ALPHA))

s_grid = torch.linspace(0, 1, 201)
fig, ax = plt.subplots(figsize=(4.2, 2.4))
ax.plot(s_grid, 1 - s_grid, label="positive pair: $1-s$")
ax.plot(s_grid, (s_grid - ALPHA).clamp_min(0), label=r"negative pair: $[s-\alpha]_+$")
ax.axvline(ALPHA, color="gray", lw=0.8, ls=":")
ax.set_xlabel("calibrated similarity $s$")
ax.set_ylabel("loss")
ax.legend(frameon=False)
fig.tight_layout()
pb.widgets.show(fig, glue="ch6_fig_loss")

# %% [markdown]
# ```{glue:figure} ch6_fig_loss
# :name: fig-ch6-loss
# :alt: Two lines: the positive-pair loss falls linearly from 1 to 0 as s goes to 1; the negative-pair loss is 0 up to alpha and rises linearly after it
#
# The pairwise loss as a function of the calibrated similarity (α = 0.5), the thesis' Fig. 5.2:
# constant slopes.
# ```
#
# The slopes, by autograd, and the two limiting cases: a perfect embedding (antipodal instance
# vectors) costs nothing, and two instances sharing one vector pay $1-\alpha$ on every negative pair.

# %% tags=["nbval-check-output"]
xs = torch.randn(1, 4, 3, dtype=torch.float64, generator=g)
xs = F.normalize(xs, dim=-1).requires_grad_(True)
pair_ids = torch.tensor([[0, 0, 1, 1]])
s = pb.meanshift.calibrated_similarity(xs)
s.retain_grad()
W = pb.meanshift.pair_weights(pair_ids).double()
same = pair_ids[:, :, None] == pair_ids[:, None, :]
(W * torch.where(same, 1 - s, (s - ALPHA).clamp_min(0))).sum().backward()
expected = torch.where(same, -W, torch.where(s > ALPHA, W, torch.zeros_like(W)))
torch.testing.assert_close(s.grad, expected)

perfect = torch.tensor([[[1.0, 0.0]] * 3 + [[-1.0, 0.0]] * 5])
shared = torch.ones(1, 8, 2)
ids8 = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
print("perfect:", float(pb.meanshift.pairwise_embedding_loss(perfect, ids8)),
      " shared vector:", float(pb.meanshift.pairwise_embedding_loss(shared, ids8)))
assert float(pb.meanshift.pairwise_embedding_loss(perfect, ids8)) == 0.0

# %% [markdown]
# ## Instance-size weighting
#
# **Proposition 5.1** [Kong thesis, App. C]. For any vectors, $\sum_{i\ne j}\mathbf x_i^\top\mathbf x_j
# \ge -\sum_i\|\mathbf x_i\|^2$, i.e. $\ge -n$ on the unit sphere. *Proof:* expand
# $\|\sum_i\mathbf x_i\|^2\ge 0$. The total similarity has a floor that does not depend on the
# dimension. Grouping the weighted sum by instances $\mathcal I_q$ splits it into a "positive" and a
# "negative" part:
#
# $$ \Big\|\sum_q\sum_{i\in\mathcal I_q}w_i\mathbf x_i\Big\|^2 = \sum_q\Big\|\sum_{i\in\mathcal I_q}w_i\mathbf x_i\Big\|^2
#    + \sum_{p\ne q}\Big(\sum_{i\in\mathcal I_p}w_i\mathbf x_i\Big)^\top\Big(\sum_{j\in\mathcal I_q}w_j\mathbf x_j\Big). $$
#
# With $w_i = 1/|\mathcal I_q|$ each inner sum is the instance mean $\boldsymbol\mu_q$, the positive part
# is $\sum_q\|\boldsymbol\mu_q\|^2\in[0, Q]$, and every instance weighs the same whatever its size. With
# $w_i = 1$ a 1000-pixel background outweighs a 20-pixel object by $(1000/20)^2$ in the pair count.

# %% tags=["nbval-check-output"]
for n in (2, 5, 50):
    v = F.normalize(torch.randn(200, n, 3, generator=g, dtype=torch.float64), dim=-1)
    G = v @ v.transpose(1, 2)
    assert float((G.sum((1, 2)) - G.diagonal(dim1=1, dim2=2).sum(1)).min()) >= -n - 1e-9
pts = F.normalize(torch.randn(30, 5, generator=g, dtype=torch.float64), dim=1)
q_ids = torch.randint(0, 3, (30,), generator=g)
w = 1 / torch.bincount(q_ids)[q_ids].double()
mu = torch.stack([(w[q_ids == q, None] * pts[q_ids == q]).sum(0) for q in range(3)])
lhs = (w[:, None] * pts).sum(0).pow(2).sum()
torch.testing.assert_close(lhs, mu.pow(2).sum() + (mu @ mu.T).sum() - mu.pow(2).sum())

big_small = torch.tensor([[0] * 1000 + [1] * 20])
one_vector = torch.ones(1, 1020, 3)  # the object is embedded like the background
pel = pb.meanshift.pairwise_embedding_loss
loss_inst = float(pel(one_vector, big_small, weighting="instance"))
loss_unif = float(pel(one_vector, big_small, weighting="uniform"))
glue("ch6_loss_inst", loss_inst, display=False)
glue("ch6_loss_unif", loss_unif, display=False)
print(f"a 20-px object merged into a 1000-px background: loss {loss_inst:.4f} "
      f"with instance weights, "
      f"{loss_unif:.4f} with uniform weights")

# %% [markdown]
# Merging the object into the background costs {glue:text}`ch6_loss_inst:.3f` with instance weights
# but only {glue:text}`ch6_loss_unif:.4f` with uniform weights: a uniformly weighted loss barely
# notices small instances. Training uses a uniform random *sample* of pixels per image (256 here),
# reweighted by instance counts within the sample, as the official code does.
#
# ## Choosing the margin: points on a sphere
#
# How small may α be? With $n$ instances embedded in $\mathbb R^3$, the best one can do is to
# spread $n$ points on the sphere as far apart as possible — Tammes' problem
# {cite:p}`saff1997distributing`. Asymptotically the closest pair is at distance
# $d\le(8\pi/(\sqrt3 n))^{1/2}$; since $\|\mathbf x-\mathbf y\|^2 = 4(1-s)$, some pair has
# $s\ge 1-2\pi/(\sqrt3 n)$, so a margin below that value forces a loss even on a perfect embedding
# [Kong thesis, Prop. 5.2].
#
# ```{warning}
# The thesis prints $1-2\pi/\sqrt{3N}$ (Prop. 5.2 and C.2). Its numbers — 0.093, 0.274, 0.395, 0.482
# for $n = 4\ldots7$ — follow $1-2\pi/(\sqrt3\,N)$, which is also what the derivation gives; the
# printed form would be negative for $n=4$. And the bound is asymptotic: for small $n$ the true
# optimum, found numerically below, is much higher, so "α can be set as small as 0.093" is a value
# below which the loss is forced, not a margin that makes zero loss reachable. See
# {ref}`the errata <errata-ch6>`.
# ```

# %% tags=["nbval-check-output"]
rows = []
for n in (4, 5, 6, 7):
    steps = 600 if not SMOKE else 100
    _, s_opt = pb.meanshift.tammes_similarity(n, steps=steps, restarts=4)
    misprint = 1 - 2 * math.pi / math.sqrt(3 * n)
    rows.append((n, pb.meanshift.margin_bound(n), misprint, s_opt))
print(" n   1-2pi/(sqrt3 n)   1-2pi/sqrt(3n) (misprint)   best max-similarity")
for n, bound, misprint, s_opt in rows:
    print(f"{n:2d}   {bound:15.4f}   {misprint:25.4f}   {s_opt:12.3f}")
assert [round(r[1], 4) for r in rows] == [0.0931, 0.2745, 0.3954, 0.4818]
assert all(bound < s_opt for _, bound, _, s_opt in rows)
anti = pb.meanshift.antipodal_embedding(6)
s_anti = pb.meanshift.calibrated_similarity(anti)
assert float(s_anti[~torch.eye(6, dtype=torch.bool)].max()) == 0.5
glue("ch6_tammes4", rows[0][3], display=False)

# %% [markdown]
# For four instances the best configuration, the regular tetrahedron, has largest similarity
# {glue:text}`ch6_tammes4:.3f` ($\cos = -1/3$). In higher dimensions the thesis takes a "safe"
# construction: $n$ instances on $\pm$ the first $n/2$ axes have pairwise similarity 0 or ½, so α = 0.5
# allows zero loss with $D = n/2$ (checked above for $n = 6$). We use α = 0.5 and $D = 8$: room for 16
# instances.
#
# ## Kernel density on the sphere, and mean shift
#
# Given embeddings, which pixels form an instance? Mean shift {cite:p}`comaniciu2002mean` finds the
# modes of a kernel density estimate. On the sphere the natural kernel is the von Mises–Fisher
# density {cite:p}`banerjee2005clustering`, $K(\mathbf x, \mathbf x_i)\propto\exp(\delta\,\mathbf x^\top\mathbf x_i)$,
# and $p(\mathbf x) = \frac1N\sum_i K(\mathbf x, \mathbf x_i)$. Its gradient is
#
# $$ \nabla p(\mathbf x) \propto \delta\sum_i K(\mathbf x,\mathbf x_i)\,\mathbf x_i
#    \quad\Longrightarrow\quad \frac{\nabla\log p(\mathbf x)}{\delta} = \frac{\sum_i K(\mathbf x,\mathbf x_i)\mathbf x_i}{\sum_i K(\mathbf x,\mathbf x_i)} =: \mathbf m(\mathbf x), $$
#
# the kernel-weighted mean. Moving $\mathbf x$ to $\mathbf m(\mathbf x)$ and back onto the sphere is a
# gradient-ascent step on $\log p$ with step $1/\delta$ — the mean-shift step.
#
# ```{admonition} Three bandwidth conventions
# :class: warning
# Chapter 5 writes $\exp(\delta\,\mathbf x^\top\mathbf y)$, Appendix C (Eq. C.4) $\exp(\delta^2\mathbf x^\top\mathbf y)$, and
# the official code $\exp((\mathbf x^\top\mathbf y-1)/\delta^2)$ with δ = 0.1. **We use Chapter 5's**: `delta` is
# the vMF concentration and the `scale` of attention below; larger means narrower. The thesis' rule
# $1/\delta = (1-\alpha)/3$ gives δ = 6 here, δ = 36 read with App. C's kernel, and the code's
# value is δ = 100. Conversion: ours $=\delta_C^2 = 1/\delta_{\text{code}}^2$.
# ```

# %% tags=["nbval-check-output"]
centre = torch.tensor([2.0, 0, 0], dtype=torch.float64)
data_pts = torch.randn(40, 3, generator=g, dtype=torch.float64) + centre
data_pts = F.normalize(data_pts, dim=1)
query = torch.randn(3, generator=g, dtype=torch.float64)
query = F.normalize(query, dim=0).requires_grad_(True)
log_p = torch.logsumexp(DELTA * data_pts @ query, 0)  # log p up to a constant
(grad,) = torch.autograd.grad(log_p, query)
k = torch.softmax(DELTA * data_pts @ query, 0)
torch.testing.assert_close(grad / DELTA, (k[:, None] * data_pts).sum(0))
print("grad log p / delta equals the kernel-weighted mean of the data")

# %% [markdown]
# ## Gaussian blurring mean shift in matrix form
#
# Standard mean shift moves query points over a *fixed* density. Gaussian *blurring* mean shift
# {cite:p}`carreira2008generalised` moves the data themselves and re-estimates the density every
# iteration. Stack the $N$ unit embeddings as columns of $\mathbf X\in\mathbb R^{D\times N}$; with
# $\mathbf K = \exp(\delta\mathbf X^\top\mathbf X)$ (elementwise) and the degrees
# $\mathbf D = \operatorname{diag}(\mathbf K^\top\mathbf 1)$, one step with step size η is [Kong thesis, Eq. 5.3]
#
# $$ \mathbf X \leftarrow \mathbf X\big(\eta\,\mathbf K\mathbf D^{-1} + (1-\eta)\mathbf I\big), $$
#
# followed by renormalisation onto the sphere. $\mathbf K\mathbf D^{-1}$ divides each *column* of
# $\mathbf K$ by its sum: it is column-stochastic, and new point $j$ is the $K_{ij}/d_j$-weighted mean
# of all points. Its eigenvalues lie in $[0, 1]$: $\mathbf K$ is positive semi-definite (the Gram
# matrix is, and so is every elementwise power of it by the Schur product theorem, hence
# $\exp$ of it), $\mathbf K\mathbf D^{-1}$ is similar to the symmetric PSD
# $\mathbf D^{-1/2}\mathbf K\mathbf D^{-1/2}$, and a stochastic matrix has spectral radius 1. The
# thesis uses η = 1 (pure GBMS), and so do we.

# %% tags=["nbval-check-output"]
X = F.normalize(torch.randn(1, 80, 5, generator=g, dtype=torch.float64), dim=-1)
K, d = pb.meanshift.kernel_matrix(X, DELTA)
P = K[0] / d[0]
ev = torch.linalg.eigvals(P)
torch.testing.assert_close(P.sum(0), torch.ones(80, dtype=torch.float64))
assert float(ev.imag.abs().max()) < 1e-8
assert float(ev.real.min()) > -1e-9 and float(ev.real.max()) < 1 + 1e-9
sym = K[0] / d[0].sqrt()[:, None] / d[0].sqrt()[None, :]
torch.testing.assert_close(torch.linalg.eigvalsh(sym), torch.sort(ev.real).values)
print(f"columns of K D^-1 sum to 1; eigenvalues real, in "
      f"[{float(ev.real.min()):.2e}, {float(ev.real.max()):.6f}]")

# %% [markdown]
# ## The bandwidth decides everything
#
# Three orthogonal clusters of 100 noisy points in $D = 8$. For each δ: the smallest cosine within a
# cluster and the largest across clusters, after $t$ iterations. A good δ collapses each cluster to
# a point in a few iterations while the clusters stay apart; too narrow a kernel (δ = 36, App. C's
# reading; δ = 100, the code's) freezes the outliers, which see no neighbour; with more noise a wide
# kernel merges clusters; and run long enough, GBMS merges everything — the number of iterations is
# part of the model.

# %% tags=["nbval-check-output"]
def clusters(noise, seed=0):
    gg = torch.Generator().manual_seed(seed)
    cid = torch.arange(3).repeat_interleave(100)
    noisy = torch.eye(8, dtype=torch.float64)[cid]
    noisy = noisy + noise * torch.randn(300, 8, generator=gg, dtype=torch.float64)
    pts = F.normalize(noisy, dim=1)
    return pts, cid


def within_across(pts, cid):
    c = pts @ pts.T
    same = cid[:, None] == cid[None, :]
    return float(c[same].min()), float(c[~same].max())


print("noise  delta   within-min / across-max cosine after t = 0, 1, 3, 10, 30")
fail = {}
for noise in (0.15, 0.25):
    pts, cid = clusters(noise)
    for delta in (6.0, 36.0, 100.0):
        states = pb.meanshift.gbms(pts[None], delta, 30, return_all=True)
        cells = [within_across(states[t][0], cid) for t in (0, 1, 3, 10, 30)]
        fail[(noise, delta)] = cells
        row = "  ".join(f"{a:.3f}/{b:.3f}" for a, b in cells)
        print(f"{noise:5.2f} {delta:6.0f}   {row}")
# delta 6 groups at t = 3
assert fail[(0.15, 6.0)][2][0] > 0.999 and fail[(0.15, 6.0)][2][1] < 0.1
assert fail[(0.15, 100.0)][3][0] < 0.5  # delta 100: outliers frozen
assert fail[(0.25, 6.0)][2][1] > 0.99  # more noise: delta 6 merges the clusters
# clusters drift together as t grows
assert fail[(0.15, 6.0)][4][1] > fail[(0.15, 6.0)][2][1]

# %% [markdown]
# ## One GBMS step is softmax attention
#
# Transpose the update so that points are rows, $\mathbf x = \mathbf X^\top\in\mathbb R^{N\times D}$,
# as attention layers store them. Because $\mathbf K$ is *symmetric*,
#
# $$ (\mathbf X\mathbf K\mathbf D^{-1})^\top = \mathbf D^{-1}\mathbf K\,\mathbf x
#    = \operatorname{softmax}_{\text{rows}}\!\big(\delta\,\mathbf x\mathbf x^\top\big)\,\mathbf x
#    = \operatorname{Attention}(Q = \mathbf x,\ K = \mathbf x,\ V = \mathbf x;\ \text{scale} = \delta). $$
#
# The thesis normalises the *columns* of $\mathbf K$ (its points are columns); attention normalises the
# *rows* of the score matrix {cite:p}`vaswani2017attention`. They agree only because queries and keys
# are the same vectors: $\mathbf D^{-1}\mathbf K = (\mathbf K\mathbf D^{-1})^\top$ needs $\mathbf K=\mathbf K^\top$.
# (The other product, $\mathbf X\mathbf D^{-1}\mathbf K$, is not a weighted mean at all.) So one GBMS
# step is `torch.nn.functional.scaled_dot_product_attention(x, x, x, scale=delta)`, and the fused
# kernels behind it never store the $N\times N$ matrix: memory grows like $N$, not $N^2$.

# %% tags=["nbval-check-output"]
x = X[0]
Xc = x.T  # the thesis' D x N layout
Kc = torch.exp(DELTA * Xc.T @ Xc)
thesis = Xc @ Kc @ torch.diag(1 / Kc.sum(0))
q = x[None, None]  # (batch, heads, N, D)
attention = F.scaled_dot_product_attention(q, q, q, scale=DELTA)[0, 0]
torch.testing.assert_close(attention, thesis.T)
column_normalised = Kc @ torch.diag(1 / Kc.sum(0))
torch.testing.assert_close(torch.softmax(DELTA * x @ x.T, dim=1), column_normalised.T)
wrong = (Xc @ torch.diag(1 / Kc.sum(0)) @ Kc).T
assert not torch.allclose(wrong, attention, atol=1e-3)
for impl in ("explicit", "appendix"):
    torch.testing.assert_close(pb.meanshift.gbms(X, DELTA, 3, impl=impl),
                               pb.meanshift.gbms(X, DELTA, 3, impl="attention"))
print("X K D^-1 (thesis) = softmax attention with q = k = v = x, scale = delta; "
      "all three implementations agree")

# %% [markdown]
# The memory, measured from PyTorch's own allocation counter (the profiler's memory events) for one
# forward and backward step at $N = 64^2$ pixels:

# %% tags=["remove-stderr"]
def peak_bytes(impl, n, dim=8):
    """Peak of torch's CPU allocation counter (the profiler's "Total Allocated")."""
    import json
    import tempfile
    from torch.profiler import ProfilerActivity, profile

    xx = F.normalize(torch.randn(1, n, dim, generator=g), dim=-1).requires_grad_(True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        pb.meanshift.gbms_step(xx, DELTA, impl=impl).sum().backward()
    with tempfile.TemporaryDirectory() as tmp:
        prof.export_chrome_trace(os.path.join(tmp, "trace.json"))
        with open(os.path.join(tmp, "trace.json")) as f:
            events = json.load(f)["traceEvents"]
    events = [e for e in events if e.get("name") == "[memory]"]
    base = events[0]["args"]["Total Allocated"] - events[0]["args"]["Bytes"]
    return max(e["args"]["Total Allocated"] for e in events) - base


N_MEM = 32 ** 2 if SMOKE else 64 ** 2
mem = {impl: peak_bytes(impl, N_MEM) for impl in ("explicit", "attention")}
glue("ch6_mem_n", N_MEM, display=False)
glue("ch6_mem_explicit", mem["explicit"] / 2 ** 20, display=False)
glue("ch6_mem_attention", mem["attention"] / 2 ** 20, display=False)
glue("ch6_mem_ratio", mem["explicit"] / max(mem["attention"], 1), display=False)
print({k: f"{v / 2 ** 20:.1f} MiB" for k, v in mem.items()})

# %% [markdown]
# At $N$ = {glue:text}`ch6_mem_n` pixels the explicit kernel matrix needs
# {glue:text}`ch6_mem_explicit:.0f` MiB and the attention form {glue:text}`ch6_mem_attention:.1f` MiB,
# {glue:text}`ch6_mem_ratio:.0f`× less. `benchmarks/bench_meanshift.py` prints time and memory side by
# side up to $256^2$ pixels, where the explicit form would need 16 GiB per matrix.
#
# ## Backpropagating through the loop
#
# GBMS has no weights; what it passes back is how the loss on the grouped embeddings depends on the
# embeddings the network produced. Autograd differentiates through the unrolled loop; the finite
# differences of `gradcheck` confirm it through three iterations, renormalisation included.
# Appendix C.1.1 derives the backward pass by hand. Its forward steps are
# $\mathbf S=\mathbf X^\top\mathbf X$, $\mathbf K=\exp(\delta\mathbf S)$, $\mathbf d=\mathbf K^\top\mathbf 1$, $\mathbf q=\mathbf d^{-1}$,
# $\mathbf P=\eta\mathbf K\operatorname{diag}(\mathbf q)+(1-\eta)\mathbf I$, $\mathbf Y=\mathbf X\mathbf P$; the chain rule gives
#
# $$ \bar{\mathbf P}=\mathbf X^\top\bar{\mathbf Y},\quad
#    \bar{\mathbf q}=\eta(\bar{\mathbf P}\odot\mathbf K)^\top\mathbf 1,\quad
#    \bar{\mathbf d}=-\bar{\mathbf q}\odot\mathbf d^{-2},\quad
#    \bar{\mathbf K}=\eta\,\bar{\mathbf P}\odot(\mathbf 1\mathbf q^\top)+\mathbf 1\bar{\mathbf d}^\top,\quad
#    \bar{\mathbf S}=\delta\,\mathbf K\odot\bar{\mathbf K},\quad
#    \bar{\mathbf X}=\bar{\mathbf Y}\mathbf P^\top+\mathbf X(\bar{\mathbf S}+\bar{\mathbf S}^\top). $$
#
# ```{warning}
# Eq. C.6 as printed writes matrix products where the chain rule needs elementwise ones
# ($\eta\bar{\mathbf P}(\mathbf q\mathbf 1^\top)$, $\eta\bar{\mathbf P}^\top\mathbf K\mathbf 1$), $2\mathbf X\bar{\mathbf S}$
# where $\bar{\mathbf S}$ is not symmetric, lists the two contributions to $\bar{\mathbf K}$ and to
# $\bar{\mathbf X}$ as separate equations instead of adding them, and omits the Jacobian of the
# renormalisation. Taken literally it is off by a factor of several (below). The corrected formulas,
# with the renormalisation added, are `impl="appendix"` in the package. See {ref}`the errata <errata-ch6>`.
# ```

# %% tags=["nbval-check-output"]
xg = torch.randn(1, 7, 4, generator=torch.Generator().manual_seed(0),
                dtype=torch.float64)
xg = F.normalize(xg, dim=-1)
gy = torch.randn(1, 7, 4, generator=torch.Generator().manual_seed(1),
                dtype=torch.float64)
d_, eta_ = 1.7, 0.6
Xa, Gy = xg[0].T, gy[0].T
Ka = torch.exp(d_ * Xa.T @ Xa)
qa = 1 / Ka.sum(0)
Pa = eta_ * Ka * qa[None] + (1 - eta_) * torch.eye(7, dtype=torch.float64)
Gp = Xa.T @ Gy
ones = torch.ones(7, dtype=torch.float64)
Gk_printed = (eta_ * Gp @ torch.outer(qa, ones)
              + torch.outer(ones, -(eta_ * Gp.T @ Ka @ ones) * qa ** 2))
printed = 2 * Xa @ (d_ * Ka * Gk_printed) + Gy @ Pa.T
xr = xg.clone().requires_grad_(True)
Kr = torch.exp(d_ * xr @ xr.transpose(1, 2))
Yr = eta_ * (Kr / Kr.sum(-2, keepdim=True)).transpose(1, 2) @ xr + (1 - eta_) * xr
(Yr * gy).sum().backward()
corrected, _ = pb.meanshift.gbms_backward_appendix(xg, gy, d_, eta_, renormalize=False)
rel_printed = float((printed.T - xr.grad[0]).norm() / xr.grad.norm())
rel_corrected = float((corrected - xr.grad).norm() / xr.grad.norm())
glue("ch6_rel_printed", rel_printed, display=False)
glue("ch6_rel_corrected", rel_corrected, display=False)
print(f"relative error vs autograd: Eq. C.6 as printed {rel_printed:.2f}, "
      f"corrected {rel_corrected:.1e}")
assert rel_printed > 0.5 and rel_corrected < 1e-12
xt = torch.randn(1, 6, 3, generator=g, dtype=torch.float64)
xt = F.normalize(xt, dim=-1).requires_grad_(True)
for impl in ("attention", "appendix"):
    gbms_fn = lambda p, impl=impl: pb.meanshift.gbms(p, 3.0, 3, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(gbms_fn, (xt,))
print("gradcheck through 3 GBMS iterations: passes for the attention and the "
      "appendix implementations")

# %% [markdown]
# Eq. C.6 as printed is off by {glue:text}`ch6_rel_printed:.1f` in relative norm; the corrected
# formulas agree with autograd to {glue:text}`ch6_rel_corrected:.0e`.
#
# ## The toy of Appendix C: what GBMS does to the gradient
#
# 1-D points from three Gaussians, $(\mu,\sigma)$ = (3, 0.2), (4, 0.3), (5, 0.1), a fixed linear
# "classifier" $y = 0.5x - 0.5$ with targets 1 (for μ = 3) and 2 (for μ = 5), squared error, 30
# gradient steps of size 0.1 on the points themselves [Kong thesis, App. C.1.2]. The thesis does not
# say which label the μ = 4 points carry; we give them label 2. The kernel is a Euclidean Gaussian
# with σ = 0.2 (the points are not on a sphere); its attention form appends one coordinate to
# queries and keys ({func}`~pixelbook.meanshift.gaussian_blurring_mean_shift`).

# %% tags=["nbval-check-output"]
toy_x, toy_c, toy_y = pb.meanshift.three_gaussians_toy(100, seed=0)
gbms_1d = pb.meanshift.gaussian_blurring_mean_shift
alone = gbms_1d(toy_x[None, :, None], 0.2, 20, return_all=True)
mode_counts = [len(torch.unique(alone[t][0, :, 0].round(decimals=2)))
               for t in (1, 3, 5, 10, 20)]
modes = torch.unique(alone[-1][0, :, 0].round(decimals=2)).tolist()
print("GBMS alone, distinct points after 1, 3, 5, 10, 20 iterations:", mode_counts,
      "; modes:", modes)
assert mode_counts[-1] == 3 and all(abs(m - c) < 0.1 for m, c in zip(modes, (3, 4, 5)))


# %% tags=["nbval-check-output"]
def toy_descent(loops, per_loop, steps=30, lr=0.1):
    """Positions and per-step gradient norms of the points under gradient descent."""
    xs_ = toy_x.clone()
    traj, grads = [xs_.clone()], []
    for _ in range(steps):
        xv = xs_.clone().requires_grad_(True)
        states = gbms_1d(xv[None, :, None], 0.2, loops, return_all=True)
        used = states if per_loop else states[-1:]
        loss = sum(((0.5 * st[0, :, 0] - 0.5 - toy_y) ** 2).mean() for st in used)
        (gx,) = torch.autograd.grad(loss, xv)
        xs_ = xs_ - lr * gx * len(toy_x)  # each point steps on its own loss term
        traj.append(xs_.clone())
        grads.append(gx.abs() * len(toy_x))
    return torch.stack(traj), torch.stack(grads)


toy_runs = {"no GBMS": toy_descent(0, False),
            "5 loops, last loss": toy_descent(5, False),
            "5 loops, loss per loop": toy_descent(5, True)}
first_grad = {k: float(v[1][0].mean()) for k, v in toy_runs.items()}
print("mean |gradient| at the first step:",
      {k: round(v, 3) for k, v in first_grad.items()})
glue("ch6_toy_grad_none", first_grad["no GBMS"], display=False)
glue("ch6_toy_grad_last", first_grad["5 loops, last loss"], display=False)
glue("ch6_toy_grad_all", first_grad["5 loops, loss per loop"], display=False)

# %%
fig, axes = plt.subplots(1, 3, figsize=(6.2, 2.3), sharey=True)
show = torch.arange(0, 300, 3)
for ax, (name, (traj, _)) in zip(axes, toy_runs.items()):
    for i in show.tolist():
        ax.plot(range(traj.shape[0]), traj[:, i].numpy(), lw=0.5,
                color=f"C{int(toy_c[i])}", alpha=0.6)
    ax.set_title(name, fontsize=8)
    ax.set_xlabel("step")
axes[0].set_ylabel("x")
fig.tight_layout()
pb.widgets.show(fig, glue="ch6_fig_toy")

# %% [markdown]
# ```{glue:figure} ch6_fig_toy
# :name: fig-ch6-toy
# :alt: Three panels of point trajectories over 30 gradient steps: without GBMS, with 5 loops and one loss, with a loss after every loop
#
# Trajectories of 100 of the 300 points (colour: the Gaussian they came from) under 30 gradient
# steps, without GBMS, with 5 GBMS loops and the loss after the last one, and with the loss after
# every loop (the thesis' Fig. C.2 c, g, h).
# ```
#
# GBMS alone finds the three piles (the modes above; {numref}`fig-ch6-toy` shows the trajectories). Through the loop, the mean gradient at the
# first step grows from {glue:text}`ch6_toy_grad_none:.3f` (no GBMS) to
# {glue:text}`ch6_toy_grad_last:.3f` (loss after the last loop) and {glue:text}`ch6_toy_grad_all:.3f`
# (loss after every loop), as the thesis reports: a point's gradient now also reflects where GBMS
# will carry its neighbours.
#
# ## Data: overlapping shapes whose colours repeat
#
# Each 32 × 32 image holds 2–5 disks, squares and triangles drawn in depth order, with colours from a
# palette of three, so at least two instances share a colour and colour alone cannot separate them;
# a 1-px dark outline makes an occluding edge visible where two same-coloured shapes overlap
# ({numref}`fig-ch6-data`). The second set has one large shape below tiny ones, for the weighting
# ablation.

# %% tags=["nbval-check-output"]
demo = make_instance_scenes(6, seed=SEED, split="test")
demo_u = make_instance_scenes(6, seed=SEED, split="test", sizes="unequal")
counts_u = torch.stack([torch.bincount(t.flatten(), minlength=6)[1:]
                        for t in demo_u["instances"]])
print("instances per image:", demo["num_instances"].tolist(),
      "| unequal set, pixels per instance:",
      [c[c > 0].tolist() for c in counts_u])
panels = [img for b in range(6)
          for img in (demo["image"][b],
                      pb.viz.colorize_labels(demo["instances"][b], 6))]
fig = pb.viz.show_grid(panels, ncols=6, size=1.0)
pb.widgets.show(fig, glue="ch6_fig_data")

# %% [markdown]
# ```{glue:figure} ch6_fig_data
# :name: fig-ch6-data
# :alt: Six test images of overlapping shapes in repeated colours, each beside its map of instance ids
#
# Three test images and their instances (pairs of panels). Colours repeat across instances; only
# shape, position and the occluding outline separate them.
# ```
#
# ## Training the embedding network
#
# The network ({class}`~pixelbook.models.EmbeddingNet`) has six 3×3 convolutions with dilations
# 1, 1, 2, 4, 8, 1 (a receptive field of 35 px: the whole image) and two extra input channels holding
# the pixel coordinates. Without them a convolutional network is translation-equivariant and gives
# two identical, separated shapes identical embeddings. Its 8-D output is normalised per pixel. Two
# arms of the chapter's experiment train here at this scale: `gbms` (three GBMS loops unrolled, the
# loss after each) and `plain` (no GBMS in training); GBMS runs on the 256 sampled pixels during
# training.

# %%
runs = {arm: EXP.run(arm, SEED, SCALE, DEVICE) for arm in ("gbms", "plain")}
for arm, run in runs.items():
    last = run.history.last.get("train_loss", float("nan"))
    print(f"{arm}: {len(run.history)} epochs, final loss {last:.4f}, "
          f"ARI {run.metrics['group.ari']:.3f}, "
          f"read-out delta {run.metrics['group.delta']:.0f}, "
          f"T {run.metrics['group.iters']:.0f}")
glue("ch6_params", pb.models.count_parameters(runs["gbms"].model), display=False)
cfg = runs["gbms"].config
glue("ch6_steps", cfg.train.epochs * cfg.data["n_train"] // cfg.train.batch_size, display=False)

# %% [markdown]
# The network has {glue:text}`ch6_params` parameters. At this scale each model trains for
# {glue:text}`ch6_steps` steps of 16 images: a demonstration that fits the notebook's time budget,
# far from converged. The `medium` experiment below trains longer and with three seeds.
#
# ## From embeddings to instances
#
# At test time GBMS runs on all pixels of an image, then a greedy pass groups the converged
# points: take an unassigned pixel, collect the unassigned pixels within cosine 0.9 of it,
# re-centre, collect again, repeat ({func}`~pixelbook.meanshift.group_modes`; the thesis does not
# specify this step). The bandwidth δ ∈ {6, 12, 24} and the number of iterations T ∈ {3, 10} are
# chosen on the validation images by ARI, for each trained model. The alternatives: thresholding
# the embeddings without GBMS, and spherical k-means *given* the true number of groups.
# {numref}`fig-ch6-segments` shows the `gbms` model's segments on three test images.

# %%
model = runs["gbms"].model
test = runs["gbms"].data["test"]
emb = pb.experiments.meanshift.embed(model, test["image"][:6])
m = runs["gbms"].metrics
seg = pb.meanshift.segment(emb, m["group.delta"], int(m["group.iters"]), 0.9, 4)
direct = pb.meanshift.segment(emb, m["group.delta"], 0, 0.9, 4)
panels, titles = [], []
for b in range(3):
    panels += [test["image"][b], pb.viz.embedding_to_rgb(emb[b]),
               pb.viz.colorize_labels(test["instances"][b], 8),
               pb.viz.colorize_labels(seg[b] % 8, 8),
               pb.viz.colorize_labels(direct[b] % 8, 8)]
    head = ["image", "embedding (PCA)", "truth", "GBMS", "no GBMS"]
    titles += head if b == 0 else [""] * 5
fig = pb.viz.show_grid(panels, titles=titles, ncols=5, size=1.15)
pb.widgets.show(fig, glue="ch6_fig_segments")
for arm, run in runs.items():
    mm = run.metrics
    print(f"{arm:>6}: GBMS ARI {mm['group.ari']:.3f} cov {mm['group.covering']:.3f} "
          f"AP50 {mm['group.ap50']:.3f} "
          f"count exact {mm['group.count_exact']:.2f} | "
          f"no GBMS ARI {mm['direct.ari']:.3f} | "
          f"k-means (true K) ARI {mm['kmeans.ari']:.3f}")

# %% [markdown]
# ```{glue:figure} ch6_fig_segments
# :name: fig-ch6-segments
# :alt: Rows of test images with their embedding shown as colour, the true instances, the GBMS segments and the segments without GBMS
#
# The `gbms` model on test images: the 8-D embedding shown by its first three principal components,
# the true instances, the GBMS segments and the segments of thresholding without GBMS (colours of
# segments are arbitrary).
# ```
#
# ## Where the gradient goes
#
# The thesis' Fig. 5.5 compares the gradient of the loss with respect to the embeddings with and
# without one GBMS loop in between: through the loop, it says, the gradient concentrates on
# ambiguous pixels near boundaries and ignores errors that grouping fixes anyway. We measure it as
# the ratio of the mean gradient norm within 1 px of an instance boundary to the mean elsewhere.

# %%
e6, y6 = emb, test["instances"][:6]
gmaps = {t: pb.meanshift.gradient_map(e6, y6, t, delta=DELTA) for t in (0, 1)}
band = pb.meanshift.instance_boundaries(y6, 1)
focus = {t: float(gm[band].mean() / gm[~band].mean()) for t, gm in gmaps.items()}
glue("ch6_focus_noloop", focus[0], display=False)
glue("ch6_focus_loop", focus[1], display=False)
print(f"boundary/interior gradient ratio: {focus[0]:.2f} without GBMS, "
      f"{focus[1]:.2f} through one loop")
panels = []
for b in range(3):
    panels += [test["image"][b], gmaps[0][b] / gmaps[0][b].max(),
               gmaps[1][b] / gmaps[1][b].max()]
fig = pb.viz.show_grid(panels, titles=["image", "no loop", "one GBMS loop"] + [""] * 6,
                       ncols=3, size=1.3, cmap="magma")
pb.widgets.show(fig, glue="ch6_fig_grad")

# %% [markdown]
# ```{glue:figure} ch6_fig_grad
# :name: fig-ch6-grad
# :alt: Test images beside two heat maps of the gradient norm per pixel, without and with one GBMS loop
#
# Gradient norm of the loss with respect to each pixel's embedding (each map scaled to its maximum),
# without and with one GBMS loop, for the `gbms` model (cf. the thesis' Fig. 5.5).
# ```
#
# On these images ({numref}`fig-ch6-grad`) the ratio is {glue:text}`ch6_focus_noloop:.2f` without the loop and
# {glue:text}`ch6_focus_loop:.2f` through it. Whether the loop *raises* it is one of the claims
# settled at medium scale below.

# %% [markdown]
# ## Results at medium scale
#
# The `small` run above is a live demonstration with one seed. The evidence comes from the chapter's
# `medium` experiment ({mod}`pixelbook.experiments.meanshift`): the four arms with three seeds each,
# {glue:text}`ch6_med_steps` training steps of 16 images, {glue:text}`ch6_med_ntest` test images per
# seed, run by `python -m pixelbook.run 06_mean_shift_grouping --scale medium` and committed under
# `results/`. The claims were written in that module, with their margins, before the first run.
# That first run trained for 500 steps (the plan's 2000 cut to fit the budget on one CPU core) and
# had not converged: the validation ARI was still rising at the last epoch (its results files are in
# the git history, commit `717675b`; the verdicts quoted from it below are read there). The results below are a
# rerun with the *configuration* lengthened to {glue:text}`ch6_med_steps` steps and the claims
# unchanged: every results file records a hash of the claims (the within-arm claim included), and
# the tests recompute it from the code.

# %% tags=["hide-input"]
from IPython.display import Markdown, display

RES = pb.results.load_results(EXP.chapter)
MED = EXP.run_config("gbms", 0, "medium")
steps = MED.train.epochs * MED.data["n_train"] // MED.train.batch_size
glue("ch6_med_steps", steps, display=False)
glue("ch6_med_ntest", MED.data["n_test"], display=False)
COLUMNS = {"group.ari": "ARI", "group.covering": "covering", "group.ap50": "AP@0.5",
           "group.count_exact": "count exact", "group.iou_small": "IoU < 40 px",
           "group.iou_large": "IoU ≥ 150 px",
           "proposals.ar": "AR@10", "kmeans.ari": "k-means ARI",
           "direct.ari": "no-GBMS ARI"}


def md_table(metrics, labels, fmt=".3f"):
    """The medium results as a markdown table: mean ± sample std over seeds, by arm."""
    rows = ["| arm | " + " | ".join(labels[m] for m in metrics) + " |",
            "|---" * (len(metrics) + 1) + "|"]
    for arm in RES.arms:
        cells = [format(RES.summary(arm, m), fmt) for m in metrics]
        rows.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


display(Markdown(md_table(list(COLUMNS), COLUMNS)))
GRAD = {"grad.boundary_ratio_noloop": "boundary/interior, no loop",
        "grad.boundary_ratio_loop": "boundary/interior, one loop",
        "grad.focus_gain": "gain", "group.delta": "read-out δ",
        "group.iters": "read-out T"}
display(Markdown(md_table(list(GRAD), GRAD, ".2f")))

# %% tags=["remove-cell"]
# glue every number of the two tables, and the run times, for the prose
for arm in RES.arms:
    for metric in list(COLUMNS) + list(GRAD):
        key = f"{arm}_{metric.replace('.', '_')}"
        glue(f"ch6_mean_{key}", RES.summary(arm, metric).mean, display=False)
        glue(f"ch6_sd_{key}", RES.summary(arm, metric).std, display=False)
prov = [RES.record(a, s)["provenance"] for a in RES.arms for s in RES.seeds(a)]
glue("ch6_med_core_min", sum(p["wall_time_s"] for p in prov) / 60, display=False)
def mean_train_s(arm):
    return sum(RES.record(arm, s)["provenance"]["train_time_s"]
               for s in RES.seeds(arm)) / len(RES.seeds(arm))


glue("ch6_med_train_gbms_s", mean_train_s("gbms"), display=False)
glue("ch6_med_train_plain_s", mean_train_s("plain"), display=False)

# %% tags=["hide-input"]
# did the runs converge? the monitored val ARI (first 32 val images, delta = 6, T = 3)
# and the training loss per epoch, one line per seed
fig, axes = plt.subplots(1, 2, figsize=(pb.viz.PAGE_WIDTH, 2.5))
for i, arm in enumerate(RES.arms):
    for seed in RES.seeds(arm):
        h = RES.history(arm, seed)
        style = dict(color=f"C{i}", lw=1, alpha=0.8,
                     label=arm if seed == RES.seeds(arm)[0] else None)
        axes[0].plot(h["epoch"], h["val_ari"], **style)
        axes[1].plot(h["epoch"], h["train_loss"], **style)
axes[0].set(xlabel="epoch", ylabel="val ARI (32 images, δ = 6, T = 3)")
axes[1].set(xlabel="epoch", ylabel="training loss", yscale="log")
for ax in axes:
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=7)
fig.tight_layout()
pb.widgets.show(fig, glue="ch6_fig_convergence")


# %% tags=["hide-input"]
Words = pb.widgets.Words  # text for {glue:text} without a str's quotes

RUNS = [(a, s) for a in RES.arms for s in RES.seeds(a)]
glue("ch6_med_epochs", len(RES.history(*RUNS[0])), display=False)
# the largest change of the monitored val ARI over the last `last` epochs
for last in (1, 2):
    change = {}
    for r in RUNS:
        ari = RES.history(*r)["val_ari"]
        change[r] = ari[-1] - ari[-1 - last]
    worst = max(change, key=lambda r: abs(change[r]))
    glue(f"ch6_conv{last}_ari", abs(change[worst]), display=False)
    glue(f"ch6_conv{last}_ari_run", Words(f"{worst[0]} seed {worst[1]}"), display=False)
    print(f"largest |change| of val ARI over the last {last} epoch(s): "
          f"{change[worst]:+.4f} ({worst[0]} seed {worst[1]})")
# relative fall of the training loss over the last two epochs
fall = {}
for r in RUNS:
    loss = RES.history(*r)["train_loss"]
    fall[r] = 1 - loss[-1] / loss[-3]
glue("ch6_conv2_loss", 100 * max(fall.values()), display=False)
print("largest fall of the training loss over the last two epochs: "
      f"{100 * max(fall.values()):.1f} %")

# %% [markdown]
# ```{glue:figure} ch6_fig_convergence
# :name: fig-ch6-convergence
# :alt: Validation ARI and training loss per epoch of the twelve medium runs, coloured by arm
#
# The `medium` runs during training, one line per seed: the ARI of the first 32 validation images
# read out with δ = 6 and T = 3 (a fixed read-out, so it is only a monitor), and the training loss
# (each arm has its own loss: the `gbms` arm sums it over four iterations, uniform weights give
# smaller values).
# ```
#
# Did the runs converge this time? ({numref}`fig-ch6-convergence`) The monitored validation ARI
# flattens in every run: over the last of the {glue:text}`ch6_med_epochs` epochs it moves by at most
# {glue:text}`ch6_conv1_ari:.3f`, over the last two by at most {glue:text}`ch6_conv2_ari:.3f`
# (both {glue:text}`ch6_conv2_ari_run`), as the cosine schedule takes the learning rate to zero. The
# training loss still falls a little, by up to {glue:text}`ch6_conv2_loss:.0f` % over the last two
# epochs, so a longer schedule would tighten the embeddings further; the grouping quality the claims
# measure has levelled off.
#
# Mean ± sample standard deviation over three seeds (each seed draws its own images and
# initialisation). "count exact" is the share of test images where the read-out finds exactly the
# true number of groups; the size columns are the mean best IoU of the true instances in that area
# bin; AR@10 is the average recall (IoU 0.5:0.95) of the 10 best proposals pooled over three
# bandwidths; the last two columns read the same embeddings with spherical k-means *given* the true
# number of groups, and by thresholding without GBMS.
#
# The claims, checked exactly as written in the experiment module. Each check asserts the verdict
# recorded in the claim (`expected`), so a claim that fails is asserted as failing, not hidden:

# %%
OUTCOMES = {}
for outcome in pb.results.evaluate_claims(EXP, RES):
    print(outcome, end="\n\n")
    outcome.check()
    OUTCOMES[outcome.claim.id] = outcome
for claim in pb.experiments.meanshift.WITHIN_ARM_CLAIMS:
    outcome = claim.evaluate(RES)
    print(outcome)
    outcome.check()
    OUTCOMES[claim.id] = outcome
for cid, outcome in OUTCOMES.items():
    glue(f"ch6_wins_{cid}", outcome.wins, display=False)
    glue(f"ch6_n_{cid}", len(outcome.seeds), display=False)
    verdict = Words("holds" if outcome.holds else "does not hold")
    glue(f"ch6_verdict_{cid}", verdict, display=False)

# %% [markdown]
# Reading the table and the claims (mean ± sample standard deviation over three seeds):
#
# - **Size weighting.** On the unequal set, instance weights give the small instances (< 40 px) a
#   mean best IoU of {glue:text}`ch6_mean_unequal_instance_group_iou_small:.3f` against
#   {glue:text}`ch6_mean_unequal_uniform_group_iou_small:.3f` with uniform weights. The claim — more
#   than 0.05 better on every seed — holds
#   (better by more than the margin on {glue:text}`ch6_wins_size_weighting_small_instances` of {glue:text}`ch6_n_size_weighting_small_instances`
#   seeds). ARI: {glue:text}`ch6_mean_unequal_instance_group_ari:.3f` vs
#   {glue:text}`ch6_mean_unequal_uniform_group_ari:.3f`; the claim that the weighting costs less than
#   0.02 ARI {glue:text}`ch6_verdict_size_weighting_ari`
#   ({glue:text}`ch6_wins_size_weighting_ari` of {glue:text}`ch6_n_size_weighting_ari` seeds). In the
#   500-step run it had failed on every seed: the instance-weighted models were still behind on the
#   large shapes, and training them to convergence closed that gap. Uniform weights never separate
#   the tiny shapes (they are merged into the background: the read-out finds exactly the true number
#   of groups on a share {glue:text}`ch6_mean_unequal_uniform_group_count_exact:.3f` of the test
#   images, against {glue:text}`ch6_mean_unequal_instance_group_count_exact:.3f` with instance
#   weights), but ARI, which counts pixel pairs, hardly sees them.
# - **GBMS in training.** With the read-out chosen on validation images for each model, the `gbms`
#   arm reaches ARI {glue:text}`ch6_mean_gbms_group_ari:.3f` and AP@0.5 {glue:text}`ch6_mean_gbms_group_ap50:.3f`,
#   the `plain` arm {glue:text}`ch6_mean_plain_group_ari:.3f` and {glue:text}`ch6_mean_plain_group_ap50:.3f`.
#   The claim on ARI {glue:text}`ch6_verdict_gbms_training_ari` (`gbms` ahead on
#   {glue:text}`ch6_wins_gbms_training_ari` of {glue:text}`ch6_n_gbms_training_ari` seeds), the claim on AP
#   {glue:text}`ch6_verdict_gbms_training_ap` ({glue:text}`ch6_wins_gbms_training_ap` of {glue:text}`ch6_n_gbms_training_ap` seeds).
#   The thesis' method is *behind* on every seed, as it was at 500 steps, and now the runs have
#   converged, so this is not a matter of training length. The embeddings show where the difference
#   lies: thresholded without GBMS, the `plain` model's embeddings already give ARI
#   {glue:text}`ch6_mean_plain_direct_ari:.3f`, the `gbms` model's only
#   {glue:text}`ch6_mean_gbms_direct_ari:.3f`. With the loss applied after the loops, the network
#   leaves part of the tightening to GBMS, and a looser embedding is easier for the read-out to get
#   wrong. On these synthetic scenes the thesis' claim does not reproduce; we did not test it on
#   PASCAL VOC, where its evidence (Tables 5.1 and 5.2, against other methods, not an ablation) lies.
# - **Counting without being told.** The GBMS read-out of the `gbms` models finds exactly the true
#   number of groups on a share {glue:text}`ch6_mean_gbms_group_count_exact:.3f` of the test images.
#   Spherical k-means *given* that number reaches ARI {glue:text}`ch6_mean_gbms_kmeans_ari:.3f` on the
#   same embeddings, and thresholding them without GBMS {glue:text}`ch6_mean_gbms_direct_ari:.3f`.
#   Not knowing the count costs nothing here: the GBMS read-out is ahead of k-means given the count,
#   and far ahead of thresholding without GBMS. (For the `plain` models: k-means
#   {glue:text}`ch6_mean_plain_kmeans_ari:.3f` against the GBMS read-out's
#   {glue:text}`ch6_mean_plain_group_ari:.3f`.)
# - **Gradient focus.** Through one GBMS loop the boundary/interior ratio of the gradient norm is
#   multiplied by {glue:text}`ch6_mean_gbms_grad_focus_gain:.2f` (from
#   {glue:text}`ch6_mean_gbms_grad_boundary_ratio_noloop:.2f` to
#   {glue:text}`ch6_mean_gbms_grad_boundary_ratio_loop:.2f`); the claim (a gain above 1.1 on every seed)
#   {glue:text}`ch6_verdict_gradient_focus_on_boundaries` ({glue:text}`ch6_wins_gradient_focus_on_boundaries`
#   of {glue:text}`ch6_n_gradient_focus_on_boundaries` seeds; at 500 steps it had 2 of 3). The
#   thesis' Fig. 5.5 shows this on a model trained with the loop, and so does our claim; for the
#   `plain` models, trained without it, the mean gain is {glue:text}`ch6_mean_plain_grad_focus_gain:.2f`.
#
# For reference, the thesis' numbers — full scale, ResNet backbones pretrained on ImageNet, PASCAL
# VOC 2012 — are **not comparable** with ours:
#
# | paper, full scale | metric | inst-DML | ours (thesis) |
# |---|---|---|---|
# | PASCAL VOC 2012 val, object proposals (Table 5.1) | AR at IoU 0.5, 10 proposals | 0.558 | 0.769 |
# | same (Table 5.1) | AR at IoU 0.5, 60 proposals | 0.667 | 0.814 |
# | PASCAL VOC 2012 val, instance segmentation (Table 5.2) | mean $AP^r$ at IoU 0.5 | 62.1 | 64.5 |
#
# Table 5.1 also lists SCG 0.624, MCG 0.652 and COB 0.738 at 60 proposals; Table 5.2 lists SDS 43.8,
# Chen et al. 46.3, Li et al. 65.7, R2-IOS 66.7 and associative embedding 35.1 (means; the extracted
# text of that table is garbled, and only its means and the thesis' own row are legible). The
# boundary results on BSDS500 (Fig. 5.6) are given only as precision–recall curves, without numbers.
#
# ## Explore: bandwidth and iterations
#
# A 3-D variant of the `plain` model puts the embeddings on the ordinary sphere. Move the bandwidth δ
# and the number of GBMS iterations $T$ and watch the points of one test image (coloured by their
# true instance) and the segments read out from them ({numref}`fig-ch6-explore`).

# %%
run3 = EXP.run("plain", SEED, SCALE, DEVICE, model={"dim": 3})
img3 = run3.data["test"]["image"][:1]
inst3 = run3.data["test"]["instances"][0]
emb3 = pb.experiments.meanshift.embed(run3.model, img3)
pts3 = pb.meanshift.flatten_embeddings(emb3)
states3 = {delta: pb.meanshift.gbms(pts3, delta, 10, return_all=True)
           for delta in (3.0, 6.0, 12.0, 36.0)}
colors = pb.viz.label_colors(8)[inst3.flatten().numpy() % 8]


def show_grouping(delta=6.0, iters=3):
    x = states3[delta][iters][0].numpy()
    segs = pb.meanshift.group_modes(states3[delta][iters], 0.9, 4)[0]
    segs = segs.reshape(inst3.shape)
    fig = plt.figure(figsize=(6.2, 2.4))
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    ax.scatter(x[:, 0], x[:, 1], x[:, 2], c=colors, s=3, depthshade=False)
    ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
    ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    ax.set_title(f"sphere, T = {iters}", fontsize=8)
    for i, (im, title) in enumerate([(pb.viz.colorize_labels(inst3, 8), "truth"),
                                     (pb.viz.colorize_labels(segs % 8, 8),
                                      f"{int(segs.max()) + 1} segments")]):
        a = fig.add_subplot(1, 3, i + 2)
        a.imshow(im)
        a.set_title(title, fontsize=8)
        a.axis("off")
    fig.tight_layout()
    return fig


pb.widgets.explorer(show_grouping,
                    {"delta": [3.0, 6.0, 12.0, 36.0], "iters": [0, 1, 3, 10]},
                    labels={"delta": ["3", "6", "12", "36"]}, glue="ch6_fig_explore",
                    alt="Embeddings on the sphere and the segments after GBMS")

# %% [markdown]
# ```{glue:figure} ch6_fig_explore
# :name: fig-ch6-explore
# :alt: Embeddings of one test image as points on a sphere after T GBMS iterations with bandwidth delta, the true instances and the segments read out
#
# A 3-D embedding of one test image before and after $T$ GBMS iterations with bandwidth δ, and the
# segments read out by mode merging. Wide kernels (small δ) merge instances as $T$ grows; narrow ones
# leave stragglers.
# ```
#
# ## Full scale
#
# The thesis trains on PASCAL VOC 2012 + SBD instance masks (10,582 images, ResNet backbones at
# output stride 8, D = 64) and evaluates on the 1,449 VOC 2012 val images.
# {class}`~pixelbook.data.instances.VOCInstances` reads both (`split="train_aug"` / `"val"`, void
# pixels in `valid`), and the package parts run unchanged on such images: the attention form of GBMS
# keeps memory linear in the number of pixels. The experiment's `full` configuration
# (`pixelbook/experiments/meanshift.py`: an ImageNet ResNet-50 DeepLab-v3 at output stride 8,
# D = 64, batch 1, the arms `gbms`, `plain` and `unequal_uniform`) runs without the notebook, on
# a GPU: `python -m pixelbook.run 06_mean_shift_grouping --scale full --arm gbms`, or from Python
# `EXP.run("gbms", 0, "full")`; {doc}`../book/full_scale` gives its cost (an estimate) and the
# choices that are ours where the thesis is silent (the number of epochs, the crop size).
#
# The thesis' other experiment, boundary detection on BSDS500 (§5.5.2), is the arm `bsds_boundary`,
# which exists at `full` scale only: `python -m pixelbook.run 06_mean_shift_grouping --scale full --arm
# bsds_boundary`. As in the thesis it trains on the 300 train + val images and is scored on the 200
# test images; the two groups are boundary and non-boundary pixels (a pixel is a boundary where at
# least half the annotators drew one, ours), embedded in 3-D by branches on four stages of an ImageNet
# ResNet-50 at output stride 8, with the embedding loss alone (no GBMS: "even though we didn't utilize
# mean-shift grouping, the trained embedding already produces compact clusters"); then a fusion layer
# of the four embeddings is fine-tuned, with the network, by a logistic loss. It reports boundary ODS,
# OIS and AP with `pb.metrics.boundary_f` at the BSDS benchmark's matching distance (0.0075 of the
# diagonal) — a simplified benchmark without thinning or one-to-one matching, so its numbers are not
# comparable with published ones. The thesis gives none for this model: its BSDS500 results are the
# precision–recall curves of Fig. 5.6 (p. 94), with no ODS, OIS or AP in the text. The same methods
# are scored in the thesis' Table 2.1 (p. 26), beside its Chapter 2 baseline — a ResNet with the same
# four branches and fusion layer (§2.2), trained with the class-balanced logistic loss alone, no
# embedding — which is the closest number the thesis gives:
#
# | paper, BSDS500 test, full scale (Table 2.1; Ch. 2's baseline, not this chapter's model) | ODS | OIS | AP |
# |---|---|---|---|
# | thesis' baseline (ResNet, logistic loss) | 0.790 | 0.806 | 0.826 |
# | COB | 0.793 | 0.820 | 0.859 |
# | HED | 0.780 | 0.790 | 0.834 |
# | gPb-UCM | 0.726 | 0.760 | 0.727 |
# | mean shift (MShift) on colour and position | 0.601 | 0.644 | 0.493 |
#
# The number of epochs (60 of the embedding loss, 30 of fine-tuning), the crop size and the consensus
# rule are ours; `pb.experiments.meanshift.FULL_COST["bsds500"]` estimates ~0.5 GPU-hour.
#
# ## Exercises
#
# 1. Train the `gbms` arm with `loss={"loss_at": "last"}` (one loss after the last loop). App. C
#    predicts the embeddings will not be tight before grouping: check the `direct.ari` metric.
# 2. Set `loss={"gbms_on": "all"}` (GBMS on every pixel during training, as the official code) and
#    compare time per step and ARI.
# 3. Replace the coordinate channels (`model={"coords": False}`) and find images where two identical
#    shapes get one embedding.
# 4. With δ = 36 (App. C's reading of the rule) in the read-out, how many iterations does grouping
#    need?
#
# ## Summary
#
# - Instance labels are a partition; a pairwise loss on calibrated cosine similarity, with a margin
#   and instance-size weights, depends only on the partition (checks: permutation invariance, zero
#   loss for a perfect embedding, the weighting's {glue:text}`ch6_loss_inst:.2f` vs
#   {glue:text}`ch6_loss_unif:.4f`).
# - Prop. 5.2's margin values follow $1-2\pi/(\sqrt3 n)$ (misprinted in the thesis) and lie well
#   below the numerically optimal packings.
# - One GBMS step with a vMF kernel is softmax attention with queries = keys = values = the
#   embeddings and scale = δ, because the kernel is symmetric; the fused kernels cut memory by
#   {glue:text}`ch6_mem_ratio:.0f`× at {glue:text}`ch6_mem_n` pixels.
# - The thesis' hand-derived backward (Eq. C.6) is wrong as printed (relative error
#   {glue:text}`ch6_rel_printed:.1f`); corrected, it matches autograd.
# - The bandwidth and the number of iterations decide the grouping; δ = 6 from the thesis' rule
#   merges small instances when run for 10 iterations, so we choose both on validation images.
#
# ## Closing note
#
# **Derivation checks** (each a cell above, asserted): the permutation argument (cross-entropy changes,
# ARI does not); Eq. 5.1's range and scale invariance; Eq. 5.2 inline equals the package, its slopes
# by autograd, zero loss for a perfect embedding; Prop. 5.1 on random sets and the instance-mean
# decomposition; Prop. 5.2's values (and the misprint), numerical Tammes packings, the antipodal
# construction; ∇log p of the vMF density = the kernel-weighted mean; $\mathbf K\mathbf D^{-1}$
# column-stochastic with eigenvalues in [0, 1]; the bandwidth failure modes; the thesis' matrix form
# = softmax attention (and the other product is not); memory of the two forms; Eq. C.6 as printed vs
# corrected vs autograd, `gradcheck` through three iterations; the 1-D toy of App. C.
#
# **Medium results** (table above, mean ± sample std over three seeds, {glue:text}`ch6_med_steps`
# training steps, converged): the size-weighting claim on small instances
# {glue:text}`ch6_verdict_size_weighting_small_instances`
# ({glue:text}`ch6_wins_size_weighting_small_instances` of {glue:text}`ch6_n_size_weighting_small_instances` seeds beat the margin; 3 of 3 needed), the
# claim that it costs little ARI {glue:text}`ch6_verdict_size_weighting_ari`
# ({glue:text}`ch6_wins_size_weighting_ari` of {glue:text}`ch6_n_size_weighting_ari`), GBMS in training raising ARI
# {glue:text}`ch6_verdict_gbms_training_ari` ({glue:text}`ch6_wins_gbms_training_ari` of {glue:text}`ch6_n_gbms_training_ari`) and AP
# {glue:text}`ch6_verdict_gbms_training_ap` ({glue:text}`ch6_wins_gbms_training_ap` of {glue:text}`ch6_n_gbms_training_ap`), the gradient
# focus {glue:text}`ch6_verdict_gradient_focus_on_boundaries`
# ({glue:text}`ch6_wins_gradient_focus_on_boundaries` of {glue:text}`ch6_n_gradient_focus_on_boundaries`).
# Two verdicts changed from the 500-step run, which had not converged (the ARI cost of size
# weighting and the gradient focus, both now holding); the GBMS-training claims fail at both
# lengths. The size-weighting result on small instances is structural and large.
#
# **Run times.** The `medium` experiment took {glue:text}`ch6_med_core_min:.0f` core-minutes in all
# (twelve runs, one CPU core each, training and evaluation); one `gbms` run trains in
# {glue:text}`ch6_med_train_gbms_s:.0f` s, one `plain` run in {glue:text}`ch6_med_train_plain_s:.0f` s
# (GBMS on the 256 sampled pixels makes a step two to three times slower). This page, at the scale it was rendered with,
# ran in {glue:text}`ch6_run_s:.0f` s (the `small` budget is 120 s).
#
# **What differs from the thesis, and why.** Synthetic 32 × 32 scenes and a six-layer dilated network
# with $D = 8$ instead of PASCAL VOC, ResNet backbones and $D = 64$ (a CPU budget); the loss's pair
# weights sum to one per image instead of the $1/N_k$ of Eq. 5.2 (which ties the loss to the image
# size), and images are averaged, not summed; the per-iteration loss includes $t = 0$; in training
# GBMS runs on the 256 sampled pixels (the official code uses all of them); the read-out (greedy
# mode merging) is ours, since the thesis does not specify it, and its δ and $T$ are chosen on
# validation images because the thesis gives no rule for $T$; the bandwidth follows Chapter 5's
# convention (δ = 6), not Appendix C's or the code's.
#
# ## References
#
# {cite:t}`kong2019thesis`; {cite:t}`kong2018grouping`; {cite:t}`carreira2008generalised`;
# {cite:t}`comaniciu2002mean`; {cite:t}`banerjee2005clustering`; {cite:t}`saff1997distributing`;
# {cite:t}`hubert1985comparing`; {cite:t}`hosang2016what`; {cite:t}`hariharan2014simultaneous`;
# {cite:t}`vaswani2017attention`.

# %%
glue("ch6_run_s", time.time() - T0, display=False)
print(pb.runtime.env_report(T0, SCALE, DEVICE))
