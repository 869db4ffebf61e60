# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 9. Class-agnostic segmentation: training with wrong labels and right ones
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pixelbook-org/pixelbook/blob/main/notebooks/09_class_agnostic_segmentation.ipynb)
#
# Cross-entropy asks every pixel to put its mass on *the* channel of its class, so it needs the
# same label → channel convention in every image of the training set. Swap the salient and the
# background label in half of the images and cross-entropy has nothing left to learn. The
# *class-agnostic segmentation* (CAS) loss of {cite:t}`sharma2021cas` reads the ground truth only
# as a partition of the image into regions: it asks the network's softmax output to be constant on
# each region and different between regions, whatever the regions are called. This chapter derives
# it from the region energies of classical segmentation with the roles of image and partition
# swapped, checks every step numerically — including the bounds, which the paper states wrongly —
# and trains two networks (a small FCN and a torchvision ResNet-FCN) with cross-entropy, with
# cross-entropy minimised over labellings, and with CAS, on correct labels and on labels swapped
# in half of the images. The claim under test: CAS trains the same with wrong and right labels and
# beats cross-entropy by a wide margin when the labels are wrong; the paper's further claims
# (sparsity, boundedness, robustness to class imbalance) are checked one by one.
#
# **Source:** A. Sharma, N. Khan, M. Mubashar, G. Sundaramoorthi, P. Torr, *Class-Agnostic
# Segmentation Loss and Its Application to Salient Object Detection and Segmentation*,
# arXiv:2010.14793 (Eqs. 1–3, Tables 1–3).

# %% tags=["hide-cell"]
# Setup, written by `tools/nbtools.py sync` from _config.yml: on Colab, install pixelbook from
# the repository; elsewhere pixelbook is already installed (see "How to run").
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "pixelbook[colab] @ git+https://github.com/pixelbook-org/pixelbook@main"], check=True)

# %% tags=["hide-cell"]
import itertools
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from myst_nb import glue

from IPython.display import display

import pixelbook as pb
from pixelbook.data.saliency import make_saliency_scenes, make_texture_mosaics
from pixelbook.cas import (CASLoss, cas_bounds, cas_loss, cas_terms, match_channels, permute_region_labels,
                           select_channel)
from pixelbook.losses import SymmetricCrossEntropy, symmetric_cross_entropy
from pixelbook.metrics import matched_iou
from pixelbook.ops import canonical_regions, region_stats
from pixelbook.training import TrainConfig, iterate_batches, train_or_load

# %matplotlib inline
pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke | small | full | auto
SEED = 0
DEVICE = "auto"
ALPHA = 0.1  # [CAS, §6]: "α was set to 0.1" (the official code: 0.5)
SWAP_P = 0.5  # [CAS, §5]: "probability of incorrect class labels is 0.5", read per image (see below)
LR_FCN = 3e-3  # ours: Adam for the small FCN
LR_RESNET = 1e-3  # [CAS, §6]: "The learning rate was 1e-3 with Adam" (the official code: 1e-4)
BATCH_SIZE = 16  # ours; the paper gives none, the official code uses 40

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()
if DEVICE.type == "cpu":
    # ours: this chapter's tensors are tiny (32 x 32 images, losses over a few regions); on a shared
    # 2-core machine a second thread spent more time synchronising than computing (measured: the
    # smoke run took 45 s of CPU with two threads, 10 s with one).
    torch.set_num_threads(1)
SEEDS = pb.runtime.scaled(SCALE, smoke=[SEED], small=[SEED, SEED + 1, SEED + 2], full=[SEED])
IMAGE_SIZE = pb.runtime.scaled(SCALE, smoke=32, small=32, full=256)  # [CAS, §4.2]: 256 x 256 at full scale
N_TRAIN = pb.runtime.scaled(SCALE, smoke=32, small=256, full=None)   # full: DUTS-TR (10553 images)
N_VAL = pb.runtime.scaled(SCALE, smoke=16, small=64, full=500)       # labelled images for the channel read-out
N_TEST = pb.runtime.scaled(SCALE, smoke=16, small=200, full=None)    # full: the seven test sets
EPOCHS_FCN = pb.runtime.scaled(SCALE, smoke=1, small=12, full=40)
EPOCHS_RESNET = pb.runtime.scaled(SCALE, smoke=1, small=8, full=40)
TEXTURE_SCALE = pb.runtime.scaled(SCALE, smoke=4, small=4, full=1)  # scikit-image textures are 512 px
SYNTHETIC = SCALE != "full"  # §§16-19 are small-scale studies on synthetic data
print(f"scale {SCALE}, device {DEVICE}, seeds {SEEDS}, {IMAGE_SIZE}x{IMAGE_SIZE} images")

# %% [markdown]
# ```{admonition} How this chapter is sized
# :class: note
# The `small` scale must run in 150 s on a 2-core CPU, and the comparison asks for three losses,
# two settings (right and wrong labels), two networks and three seeds — plus a multi-region
# variant, an imbalance probe and the runs behind the widgets: about fifty trainings, so each
# gets two to three seconds. Hence 32 × 32 images (the paper uses 256 × 256), 256 training
# images, 192 steps of batch 16 for the small FCN and 128 for the ResNet-FCN, whose step costs
# about four times more. Two exact invariances proven below save a third of the runs: CAS and
# the symmetrised cross-entropy give *bit-identical* training runs on swapped and unswapped
# labels, so each is trained once per seed (and the identity is checked on one seed). The
# ResNet-FCN is torchvision's `FCN` with a ResNet trunk cut to its first two stages (0.35 M
# parameters instead of the 51 M of the paper's `fcn_resnet101`), randomly initialised as in the
# paper ("no pre-training"). Scores at this scale are not the paper's; the comparisons between
# losses are the point.
# ```

# %% [markdown]
# ## 1. Cross-entropy needs a label → channel convention
#
# With softmax outputs $\mathbf s(x)\in\Delta^{M-1}$ and labels $y(x)\in\{0,\dots,M-1\}$,
#
# $$\mathcal L_{CE}(\mathbf s, y) = -\frac{1}{|P|}\sum_{x\in P}\log s^{y(x)}(x).$$
#
# The label value *is* a channel index: the convention "salient = 1" must hold in every image.
# In the paper's low-fidelity setting (LFD) "the probability of incorrect class labels is 0.5"
# and "the noise is for the region label and not pixel wise label"; we read it as: each training
# image's two region labels are swapped ($y \to 1-y$) with
# probability $p = 0.5$, independently of the image. A pixel whose true class is $k$ then carries
# label $k$ or $1-k$ with equal odds whatever it looks like, so the best any network can output is
# the minimiser of the expected loss
#
# $$\tfrac12\big(-\log s^k - \log s^{1-k}\big) = -\tfrac12\log\big(s^k(1-s^k)\big) \;\ge\; \ln 2,$$
#
# with equality iff $s^k = \tfrac12$ (since $s(1-s)\le\tfrac14$). Cross-entropy under 50 % swaps
# is minimised by the uninformative output $(\tfrac12, \tfrac12)$ everywhere, at the loss $\ln 2$.

# %% tags=["nbval-check-output"]
s = torch.linspace(1e-4, 1 - 1e-4, 20001, dtype=torch.float64)
expected = -0.5 * (s.log() + (1 - s).log())
assert abs(float(s[expected.argmin()]) - 0.5) < 1e-4 and abs(float(expected.min()) - math.log(2)) < 1e-8
# and for a whole random prediction field: the swap-averaged CE never goes below ln 2
logits, y = torch.randn(8, 2, 16, 16, dtype=torch.float64), torch.randint(0, 2, (8, 16, 16))
assert 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits, 1 - y)) >= math.log(2)
print(f"min over s of the swap-averaged CE: {float(expected.min()):.6f} at s = {float(s[expected.argmin()]):.4f};"
      f" ln 2 = {math.log(2):.6f}")

# %% [markdown]
# ## 2. The brute-force fix: minimise cross-entropy over labellings
#
# If the label values are arbitrary, score each image under its most favourable labelling. With
# $N$ regions $r_1,\dots,r_N$ (the sets of pixels sharing a label) and $M\ge N$ channels,
#
# $$\mathcal L_{\mathrm{sym}} = \min_{\pi}\; -\frac{1}{|P|}\sum_{k=1}^{N}\sum_{x\in r_k}\log s^{\pi(k)}(x),$$
#
# over the injective maps $\pi$ from regions to channels. The paper calls this the class-agnostic
# cross-entropy (CACE) and writes the binary case $\min(\cdot, \cdot)$; "as we increase the number
# of classes the arguments of the min function increases combinatorially". Written naively, that
# is $M!/(M-N)!$ full cross-entropies per image. But the sum splits over regions: form the
# $N\times M$ table $A_{kc} = \sum_{x\in r_k}\log s^c(x)$ in **one** pass over the pixels, and each
# labelling costs $N$ additions; beyond a few thousand labellings the minimum is a linear
# assignment problem (Hungarian method, $O(M^3)$). The combinatorial cost is an artefact of
# writing the loss pixel by pixel. Below: the naive loop written from the definition, checked
# against the package's table version, and both timed.

# %%
def symmetric_ce_naive(logits, labels):
    """min over relabellings of the full cross-entropy, one image at a time (the definition)."""
    out = []
    for z, yb in zip(logits, labels):
        ids, n = canonical_regions(yb[None])
        perms = itertools.permutations(range(z.shape[0]), int(n))
        out.append(min(F.cross_entropy(z[None], torch.tensor(p)[ids]) for p in perms))
    return torch.stack(out).mean()


timings = []
for N in (2, 3, 4, 5, 6):
    z = torch.randn(2, N, 48, 48, dtype=torch.float64)
    yN = torch.randint(0, N, (2, 48, 48))
    t = time.perf_counter()
    naive = symmetric_ce_naive(z, yN)
    t_naive = time.perf_counter() - t
    t = time.perf_counter()
    table = symmetric_cross_entropy(z, yN)
    t_table = time.perf_counter() - t
    torch.testing.assert_close(naive, table)
    timings.append((N, math.factorial(N), t_naive, t_table))
print(" N  labellings   naive (ms)   table (ms)")
for N, k, a, b in timings:
    print(f"{N:2d} {k:11d} {1e3 * a:12.1f} {1e3 * b:12.2f}")
glue("ch9_sce_naive_ms_6", 1e3 * timings[-1][2], display=False)
glue("ch9_sce_table_ms_6", 1e3 * timings[-1][3], display=False)

# %% [markdown]
# With six regions the naive form evaluates 720 cross-entropies
# ({glue:text}`ch9_sce_naive_ms_6:.0f` ms here) and the table form one
# ({glue:text}`ch9_sce_table_ms_6:.1f` ms). So the symmetrised cross-entropy is a fair baseline at
# any number of regions once it is written well; what it keeps from cross-entropy is the tie of
# each region to one channel, and cross-entropy's weighting of each region by its size.

# %% [markdown]
# ## 3. Region energies, with the roles of image and partition swapped
#
# Classical region-based segmentation scores a partition $\{r_i\}$ of a *fixed* image $f$ by how
# well a constant describes each region: the piecewise-constant Mumford–Shah energy
#
# $$E(\{r_i\},\{c_i\}) = \sum_i \sum_{x\in r_i}\|f(x)-c_i\|^2 + \mu\sum_i|\partial r_i|,$$
#
# whose two-phase case is the Chan–Vese model {cite}`chan2001active`. For a given partition the
# best constant is the region mean, $c_i = \bar f_i$, because
# $\sum_{x\in r_i}\|f(x)-\bar f_i-\delta\|^2 = \sum_{x\in r_i}\|f(x)-\bar f_i\|^2 + |r_i|\,\|\delta\|^2$.
# The energy never asks what the regions are *called*: it is class-agnostic by construction.
#
# Supervised segmentation turns this around. The partition is given — the ground-truth mask —
# and what is optimised is the "image": the network's descriptor field $\mathbf s_\theta(x)$.
# Keeping the fidelity term, with the region means $\hat{\mathbf s}_i$ of $\mathbf s$ as the
# constants, and dividing each region by its size so that every region counts the same, gives the
# paper's **uniformer**
#
# $$U = \sum_{i=1}^{N}\frac{1}{|r_i|}\sum_{x\in r_i}\|\mathbf s(x)-\hat{\mathbf s}_i\|^2 = \sum_i V_i,
# \qquad \hat{\mathbf s}_i = \frac{1}{|r_i|}\sum_{x\in r_i}\mathbf s(x).$$
#
# (The paper does not make this link; its lineage is region descriptors {cite}`sharma2021cas`
# [13–15]. The link is ours.)

# %%
g = torch.Generator().manual_seed(1)
f_img = torch.rand(3, 20, 20, generator=g, dtype=torch.float64)        # a fixed "image" with 3 channels
part = torch.randint(0, 3, (20, 20), generator=g)                      # a fixed partition
for v in range(3):
    r = part == v
    fr = f_img[:, r]
    mean = fr.mean(1, keepdim=True)
    delta = torch.randn(3, 1, generator=g, dtype=torch.float64)
    e0, e1 = ((fr - mean) ** 2).sum(), ((fr - mean - delta) ** 2).sum()
    torch.testing.assert_close(e1 - e0, r.sum() * (delta ** 2).sum())  # the mean is the best constant
print("E(mean + δ) - E(mean) = |r| ||δ||² on every region: checked")

# %% [markdown]
# ## 4. The uniformer alone collapses
#
# Chan–Vese cannot cheat: its image is fixed. A network can: any **constant** output has
# $U = 0$, the global minimum, whatever the partition. Training with the uniformer alone
# ($\alpha = 1$ in Eq. 1 below) finds that solution: §18 trains the small FCN so and checks that
# its saliency map is flat. The cure is a term that keeps the region means apart.
#
# ## 5. The separation term and the CAS loss (Eq. 1)
#
# The **discriminator** $D=\sum_{i}\sum_{j\ne i}\|\hat{\mathbf s}_i-\hat{\mathbf s}_j\|^2$
# rewards region means that differ, and the CAS loss weighs the two terms by $\alpha\in[0,1]$:
#
# $$\mathrm{CAS} = \sum_{i=1}^N \int_{r_i} \frac{\alpha\,\|\mathbf s(x) - \hat{\mathbf s}(r_i)\|_2^2}{|r_i|}\,dx
# \;-\; \sum_{i=1}^N \sum_{j\ne i} (1-\alpha)\,\|\hat{\mathbf s}(r_i) - \hat{\mathbf s}(r_j)\|_2^2
# \;=\; \alpha U - (1-\alpha) D \qquad \text{[CAS, Eq. 1]}$$
#
# computed per image and averaged over the batch. The double sum runs over **ordered** pairs, so
# each pair counts twice. The loss touches labels only through the partition: relabelling the
# regions of an image — $y\to1-y$, or $\{0,1\}\to\{3,10\}$ ("even if the class label $l$ was
# mislabelled as *10*") — changes nothing. Below, Eq. 1 written inline from the equation, checked
# against the package on random input, then the invariance checked **bit for bit**: the package
# renumbers regions by first appearance before any arithmetic, so relabelled inputs run through
# identical floating-point operations.

# %%
def cas_inline(probs, labels, alpha):
    """Eq. 1, one image and one region at a time."""
    losses = []
    for s_b, y_b in zip(probs, labels):
        regions = [y_b == v for v in torch.unique(y_b)]
        means = [s_b[:, r].mean(1) for r in regions]
        U = sum(((s_b[:, r] - mu[:, None]) ** 2).sum() / r.sum() for r, mu in zip(regions, means))
        D = sum(((mi - mj) ** 2).sum() for i, mi in enumerate(means) for j, mj in enumerate(means) if i != j)
        losses.append(alpha * U - (1 - alpha) * D)
    return torch.stack(losses).mean()


probs = torch.randn(4, 3, 12, 12, dtype=torch.float64).softmax(1)
labels = torch.randint(0, 3, (4, 12, 12))
torch.testing.assert_close(cas_inline(probs, labels, ALPHA), cas_loss(probs, labels, ALPHA))
relabelled = torch.tensor([10, 3, -7])[labels]                       # any values, any order
assert torch.equal(cas_loss(probs, labels, ALPHA), cas_loss(probs, relabelled, ALPHA))
assert torch.equal(cas_loss(probs, labels, ALPHA), cas_loss(probs, 2 - labels, ALPHA))
print(f"Eq. 1 inline = package = {float(cas_loss(probs, labels, ALPHA)):.6f}; relabelled: identical bits")

# %% [markdown]
# ```{warning}
# The official code (`cas.py` in the authors' repository) differs from Eq. 1: its uniformer is
# the variance of the **foreground region only**, its discriminator counts the single pair
# **once**, and it uses $\alpha = 0.5$ and a learning rate of $10^{-4}$ where the paper says 0.1
# and $10^{-3}$. Its loss is therefore *not* invariant to swapping the labels, the very property
# the paper relies on. `pixelbook` implements both (`variant="paper"` and `variant="official"`);
# this chapter trains the paper's.
# ```

# %%
yb = torch.randint(0, 2, (4, 12, 12))
p2 = torch.randn(4, 2, 12, 12, dtype=torch.float64).softmax(1)
official = [float(cas_loss(p2, t, 0.5, variant="official")) for t in (yb, 1 - yb)]
paper = [float(cas_loss(p2, t, 0.5)) for t in (yb, 1 - yb)]
assert official[0] != official[1] and paper[0] == paper[1]
print(f"official variant: {official[0]:.5f} vs {official[1]:.5f} after the swap; Eq. 1: {paper[0]:.5f} both ways")

# %% [markdown]
# ## 6. The optimum on the simplex, and the correct bounds
#
# The softmax confines every $\mathbf s(x)$, hence every region mean, to the simplex
# $\Delta^{M-1}$. With $\alpha=0$ and two regions the paper's Eq. 3 maximises
# $\|\hat{\mathbf s}_0-\hat{\mathbf s}_1\|^2$ over $\Delta^{M-1}\times\Delta^{M-1}$. A convex
# function attains its maximum over a polytope at a vertex, and
# $\|a-b\|^2 = \|a\|^2+\|b\|^2-2a\cdot b \le 1+1-0 = 2$ with equality iff $a=e_k$, $b=e_l$,
# $k\ne l$: the optimal region means are **distinct one-hot vectors** — the paper's "sparsity".
# A mean at a vertex forces every pixel of the region onto that vertex (non-negative components
# with zero mean vanish), so the output is one-hot and constant on each region and $U=0$ too.
#
# Bounds follow. On the simplex $\|\mathbf s\|^2\le1$ and $\|\hat{\mathbf s}\|^2\ge1/M$, so each
# $V_i = \overline{\|\mathbf s\|^2}-\|\hat{\mathbf s}_i\|^2 \le 1-\tfrac1M$; each ordered pair
# contributes at most 2. Hence, for an image with $N$ regions,
#
# $$-2(1-\alpha)N(N-1) \;\le\; \mathrm{CAS} \;\le\; \alpha N\big(1-\tfrac1M\big),$$
#
# the lower bound attained exactly by a perfect segmentation when $M\ge N$ (with $M<N$ channels
# the regions must share vertices, and the minimum is $-2(1-\alpha)(N^2-\sum_k n_k^2)$ with
# $n_k$ regions on vertex $k$ spread as evenly as possible).

# %% [markdown]
# ```{warning}
# The paper states that "both the uniformer and discriminator terms are bounded by 1" and that
# the loss "lies in a bounded interval $(\alpha N_i, -(1-\alpha)N_i]$", with $-(1-\alpha)N_i$
# indicating perfect segmentation. For its own Eq. 1 that is wrong: a pair of one-hot means is at
# squared distance 2, and the ordered double sum counts it twice, so a perfect two-region
# segmentation scores $-4(1-\alpha) = -3.6$ at $\alpha=0.1$, below the paper's "minimum" $-1.8$.
# The paper's value is the official code's (one unordered pair, $N=2$); for $N>2$ it is wrong
# under either convention. (The interval is also written upper bound first.) See the
# [errata](../book/errata.md).
# ```

# %%
y_perfect = torch.zeros(1, 8, 8, dtype=torch.long)
y_perfect[:, :, 5:] = 1
s_perfect = F.one_hot(y_perfect, 2).permute(0, 3, 1, 2).double()
perfect = float(cas_loss(s_perfect, y_perfect, ALPHA))
lo, hi = cas_bounds(2, 2, ALPHA)
assert perfect == lo and perfect < -(1 - ALPHA) * 2  # the paper's "minimum" is not one
worst = []
for N, M in [(2, 2), (2, 5), (3, 3), (4, 2), (4, 6)]:
    for temperature in (0.1, 1.0, 10.0):
        sN = (torch.randn(200, M, 6, 6, dtype=torch.float64) / temperature).softmax(1)
        yN = torch.randint(0, N, (200, 6, 6))
        yN.view(200, -1)[:, :N] = torch.arange(N)                   # every region present
        U, D = cas_terms(sN, yN)
        loss = cas_loss(sN, yN, ALPHA, reduction="none")
        lo_N, hi_N = cas_bounds(N, M, ALPHA)
        assert float(U.max()) <= N * (1 - 1 / M) and float(D.max()) <= 2 * N * (N - 1)
        assert lo_N <= float(loss.min()) and float(loss.max()) <= hi_N
        worst.append((N, M, temperature, float(loss.min()), float(loss.max()), lo_N, hi_N))
print(f"perfect 2-region segmentation: {perfect:.4f} = lower bound {lo}; paper's stated minimum {-(1 - ALPHA) * 2:.2f}")
print("N M   T   min CAS   max CAS    bounds")
for N, M, T, a, b, l, h in worst[::3]:
    print(f"{N} {M} {T:4.1f} {a:8.3f} {b:8.3f}   [{l:.2f}, {h:.2f}]")
glue("ch9_perfect_cas", perfect, display=False)

# %% [markdown]
# Random outputs stay well inside the interval; only a segmentation reaches its floor. Does
# gradient descent find the vertices? Below, free logits (one per pixel and channel, no network)
# are optimised with Adam on a three-region partition, and the three region means are traced on
# the 2-simplex. With $M=3$ channels a run can also stall with two regions sharing a vertex — a
# first-order stationary point, $D = 8$ instead of 12 (loss $-7.2$ instead of $-10.8$) — which is
# why the sparsity test of the package uses two regions.

# %%
def simplex_xy(p):
    """Barycentric (…, 3) -> 2-D points of an equilateral triangle."""
    corners = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]], dtype=p.dtype)
    return p @ corners


def free_logit_run(seed, N=3, M=3, steps=150, lr=0.2):
    gen = torch.Generator().manual_seed(seed)
    y3 = torch.randint(0, N, (1, 12, 12), generator=gen)
    y3.view(1, -1)[:, :N] = torch.arange(N)
    z = (0.3 * torch.randn(1, M, 12, 12, generator=gen, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.Adam([z], lr=lr)
    path = []
    for _ in range(steps):
        opt.zero_grad()
        loss = cas_loss(z.softmax(1), y3, ALPHA)
        loss.backward()
        opt.step()
        path.append(region_stats(z.detach().softmax(1), y3).means[0])
    return torch.stack(path), float(loss.detach())


fig, axes = plt.subplots(1, 3, figsize=(9, 3))
finals = []
for ax, seed in zip(axes, (0, 1, 2)):
    path, final = free_logit_run(seed)
    finals.append(final)
    ax.plot(*simplex_xy(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])).T, "k-", lw=0.8)
    for i, c in enumerate(("tab:blue", "tab:orange", "tab:green")):
        xy = simplex_xy(path[:, i])
        ax.plot(xy[:, 0], xy[:, 1], color=c, lw=1.2)
        ax.plot(xy[-1, 0], xy[-1, 1], "o", color=c)
    ax.set_title(f"seed {seed}: CAS = {final:.2f}")
    ax.set_aspect("equal")
    ax.axis("off")
fig.suptitle("region means on the simplex during optimisation (dot: end)")
plt.show()
assert all(f < -7.0 for f in finals)  # every run reached a vertex configuration (-7.2 or -10.8)
print("final losses:", [round(f, 3) for f in finals], "; optimum", cas_bounds(3, 3, ALPHA)[0])

# %% [markdown]
# ## 7. The gradient (Eq. 2), simplified
#
# The paper's Eq. 2 differentiates Eq. 1 through $\mathbf s(x)$ and through the means
# $\nabla\hat{\mathbf s}_i = \frac1{|r_i|}\sum_{x\in r_i}\nabla\mathbf s(x)$. The uniformer's
# second part vanishes, because $\sum_{x\in r_i}(\mathbf s(x)-\hat{\mathbf s}_i) = 0$, which
# leaves, for a pixel $x$ in region $r_i$,
#
# $$\frac{\partial\,\mathrm{CAS}}{\partial\mathbf s(x)} = \frac{1}{|r_i|}\Big[2\alpha\big(\mathbf s(x)-\hat{\mathbf s}_i\big)
# - 4(1-\alpha)\sum_{j\ne i}\big(\hat{\mathbf s}_i-\hat{\mathbf s}_j\big)\Big].$$
#
# The 4 is $2\times2$: the square, and each pair counted twice. Checked against autograd:

# %%
sg = torch.randn(1, 3, 10, 10, dtype=torch.float64).softmax(1).requires_grad_()
yg = torch.randint(0, 3, (1, 10, 10))
cas_loss(sg, yg, ALPHA).backward()
st = region_stats(sg.detach(), yg)
mu_px = st.means[0][st.ids[0]].permute(2, 0, 1)
push = (3 * st.means[0] - st.means[0].sum(0))[st.ids[0]].permute(2, 0, 1)  # Σ_j (μ_i - μ_j)
size = st.sizes[0][st.ids[0]]
closed = (2 * ALPHA * (sg.detach()[0] - mu_px) - 4 * (1 - ALPHA) * push) / size
torch.testing.assert_close(sg.grad[0], closed, rtol=0, atol=1e-14)
print("autograd = closed form (max difference", f"{float((sg.grad[0] - closed).abs().max()):.1e})")

# %% [markdown]
# ## 8. A pairwise metric-learning loss, computed in linear time
#
# The paper presents CAS as metric learning "without adding any computation overhead". The
# identities behind that: a region's variance is half the mean squared distance between its
# pixel pairs, $V_i = \frac{1}{2|r_i|^2}\sum_{x,y\in r_i}\|\mathbf s(x)-\mathbf s(y)\|^2$, and the
# mean squared distance between the pixels of two regions is
# $C_{ij} = \|\hat{\mathbf s}_i-\hat{\mathbf s}_j\|^2 + V_i + V_j$. Substituting,
#
# $$\mathrm{CAS} = \big[\alpha + 2(1-\alpha)(N-1)\big]\sum_i V_i \;-\; (1-\alpha)\sum_{i\ne j} C_{ij}:$$
#
# a size-normalised "pull pixels of a region together, push pixels of different regions apart"
# loss over **all** $O(P^2)$ pixel pairs, summed exactly through $O(P)$ region statistics.

# %%
sp = torch.randn(1, 4, 16, 16, dtype=torch.float64).softmax(1)
yp = torch.randint(0, 3, (1, 16, 16))
x = sp[0].reshape(4, -1).T
lab = yp.reshape(-1)
d2 = torch.cdist(x, x) ** 2                                                 # all P² pairs
C = torch.stack([torch.stack([d2[lab == i][:, lab == j].mean() for j in range(3)]) for i in range(3)])
V = C.diagonal() / 2
pairwise = (ALPHA + 2 * (1 - ALPHA) * 2) * V.sum() - (1 - ALPHA) * (C.sum() - C.diagonal().sum())
torch.testing.assert_close(cas_loss(sp, yp, ALPHA), pairwise, rtol=0, atol=1e-13)
cost = []
for side in (16, 32, 48):
    xs = torch.randn(1, 2, side, side).softmax(1)
    ys = (torch.rand(1, side, side) > 0.5).long()
    t = time.perf_counter()
    cas_loss(xs, ys, ALPHA)
    t_cas = time.perf_counter() - t
    t = time.perf_counter()
    flat = xs[0].reshape(2, -1).T
    torch.cdist(flat, flat).pow(2).sum()
    t_pairs = time.perf_counter() - t
    cost.append((side * side, t_cas, t_pairs))
print("pixels   CAS (ms)   all pairs (ms)")
for P_, a, b in cost:
    print(f"{P_:6d} {1e3 * a:10.2f} {1e3 * b:14.2f}")

# %% [markdown]
# ## 9. Region-size invariance, and what it does for class imbalance
#
# Every term of Eq. 1 is a region mean or a region variance, so a region enters only through
# statistics that do not change when its pixels are replicated: duplicating every pixel of a
# region leaves the loss unchanged. In gradients, the pixels of region $r_i$ carry a factor
# $1/|r_i|$ (§7), so the summed gradient over a region does not depend on its size; under
# cross-entropy it grows in proportion to it. This is what the paper means by "immune to
# class imbalance … all regions contribute equally": CAS weighs regions like a cross-entropy
# re-weighted per image by inverse region frequency.

# %%
sz = torch.randn(1, 2, 1, 40, dtype=torch.float64).softmax(1)
yz = torch.zeros(1, 1, 40, dtype=torch.long)
yz[..., :6] = 1                                                      # a small region of 6 pixels


def region_gradient_mass(loss_fn, k):
    """Duplicate the small region's pixels k times; return the summed gradient over it, and the loss."""
    s_big = torch.cat([sz] + [sz[..., :6]] * (k - 1), dim=-1).requires_grad_()
    y_big = torch.cat([yz] + [yz[..., :6]] * (k - 1), dim=-1)
    loss = loss_fn(s_big, y_big)
    loss.backward()
    return float(loss.detach()), s_big.grad[0, :, 0][:, y_big[0, 0] == 1].sum(1)


rows = []
for k in (1, 2, 8):
    l_cas, g_cas = region_gradient_mass(lambda p, t: cas_loss(p, t, ALPHA), k)
    l_ce, g_ce = region_gradient_mass(lambda p, t: F.nll_loss(p.log(), t, reduction="sum"), k)
    rows.append((k, l_cas, float(g_cas.norm()), float(g_ce.norm())))
print(" k   CAS loss   |grad over region|: CAS      CE (summed)")
for k, l, a, b in rows:
    print(f"{k:2d} {l:10.6f} {a:22.6f} {b:12.4f}")
assert max(abs(r[1] - rows[0][1]) for r in rows) < 1e-12 and max(abs(r[2] - rows[0][2]) for r in rows) < 1e-12
assert abs(rows[2][3] / rows[0][3] - 8) < 1e-9

# %% [markdown]
# Equal weight for the small region is not the same as a better segmentation of it. Like any
# class-balanced loss, it moves the operating point toward the small class: more of the object is
# found (recall up), more background is taken for object (precision down), and overlap scores at
# a fixed threshold need not improve. §15 measures this.
#
# ## 10. Reading a channel out of a permutation-invariant loss
#
# Eq. 1 is also invariant to permuting the output channels (it only uses distances between
# means), so nothing decides which channel ends up "salient". The paper resolves it after
# training: "We choose the channel for the salient object label by calculating the correlation of
# the output channels with the saliency map on the validation set" — `pb.cas.select_channel`. It
# then thresholds the saliency map $S$ at $T = 2\,\mathrm{mean}(S)$ [CAS, §4.2]. Note what this
# assumes: one channel for all images. CAS itself only asks each image's regions to be separated;
# a network is free to put the object on channel 0 in some images and on channel 1 in others. We
# measure how often that happens (the *polarity agreement* below).

# %%
perm = torch.tensor([1, 2, 0])
assert torch.equal(cas_loss(probs[:, perm], labels, ALPHA), cas_loss(probs, labels, ALPHA)) or \
    torch.allclose(cas_loss(probs[:, perm], labels, ALPHA), cas_loss(probs, labels, ALPHA), rtol=0, atol=1e-15)
print("channel permutation changes CAS by", float((cas_loss(probs[:, perm], labels, ALPHA)
                                                    - cas_loss(probs, labels, ALPHA)).abs()))

# %% [markdown]
# ## 11. From here on, the package
#
# `pb.cas.CASLoss` takes logits, applies the softmax and computes Eq. 1 per image (options:
# $\alpha$, `variant="official"`, `ignore_index`, the batch reduction); `pb.losses.SymmetricCrossEntropy`
# is §2's baseline; plain cross-entropy is `F.cross_entropy`. All three see the same batches.

# %%
CAS = CASLoss(alpha=ALPHA)
SYM_CE = SymmetricCrossEntropy()


def make_loss(name, alpha=ALPHA):
    if name == "CE":
        return lambda model, batch: F.cross_entropy(model(batch["image"]), batch["labels"])
    if name == "sym-CE":
        return lambda model, batch: SYM_CE(model(batch["image"]), batch["labels"])
    cas_fn = CAS if alpha == ALPHA else CASLoss(alpha=alpha)
    return lambda model, batch: cas_fn(model(batch["image"]), batch["labels"])


print(CAS, SYM_CE, sep="\n")

# %% [markdown]
# ## 12. Data: one salient object among clutter, on real textures
#
# Each synthetic image (`pb.data.saliency.make_saliency_scenes`) is a crop of one of
# scikit-image's textures (`brick`, `grass`, `gravel`) in a washed-out colour, one salient object
# — a disc, square or ellipse filled with a *different* texture in a saturated colour — and four
# small blobs of clutter, also saturated: colour alone does not tell the object from the clutter,
# size and shape do. Images are standardised per channel, as the paper does. The training labels
# come in two versions: **HFD** (correct) and **LFD** (each image's labels swapped with
# probability `SWAP_P`, drawn once). Validation and test labels are always correct.

# %%
def load_sod_data(scale):
    """(train, val, tests): dicts of tensors at small scale, datasets of the paper at full scale."""
    if scale != "full":
        train = make_saliency_scenes(N_TRAIN, IMAGE_SIZE, seed=1000 + SEED, texture_scale=TEXTURE_SCALE)
        val = make_saliency_scenes(N_VAL, IMAGE_SIZE, seed=2000 + SEED, texture_scale=TEXTURE_SCALE)
        test = make_saliency_scenes(N_TEST, IMAGE_SIZE, seed=3000 + SEED, texture_scale=TEXTURE_SCALE)
        return train, val, {"synthetic": test}
    from pixelbook.data.saliency import SOD_TEST_SETS, SaliencyDataset

    duts = SaliencyDataset("duts_tr", size=IMAGE_SIZE, download=True)
    order = torch.randperm(len(duts), generator=torch.Generator().manual_seed(SEED)).tolist()
    val_set = torch.utils.data.Subset(duts, order[:N_VAL])        # the paper names no validation set
    train_set = torch.utils.data.Subset(duts, order[N_VAL:])
    val = next(iter(torch.utils.data.DataLoader(val_set, batch_size=N_VAL)))
    val = {k: v for k, v in val.items() if k != "id"}
    tests = {name: torch.utils.data.DataLoader(SaliencyDataset(name, size=IMAGE_SIZE, download=True,
                                                               split="test" if name == "msra_b" else None),
                                               batch_size=32, num_workers=4)
             for name in SOD_TEST_SETS}
    return train_set, val, tests


TRAIN, VAL, TESTS = load_sod_data(SCALE)
MAIN_TEST = next(iter(TESTS))  # "synthetic" at small scale, MSRA-B at full scale
if SCALE != "full":
    HFD_LABELS = TRAIN["mask"].long()
    LFD_LABELS, LFD_PERMS = permute_region_labels(HFD_LABELS, 2, p=SWAP_P,
                                                  generator=torch.Generator().manual_seed(SEED))
    swapped = (LFD_PERMS[:, 0] == 1).float().mean().item()
    fg = TRAIN["mask"].float().mean().item()
    print(f"{N_TRAIN} training images, salient fraction {fg:.3f}, swapped in LFD: {swapped:.3f}")
    glue("ch9_fg_fraction", fg, display=False)
    glue("ch9_swapped_fraction", swapped, display=False)

# %% tags=["hide-input"]
if SCALE != "full":
    show = make_saliency_scenes(6, IMAGE_SIZE, seed=1000 + SEED, standardize=False, texture_scale=TEXTURE_SCALE)
    rows = [img.clamp(0, 1) for img in show["image"]]
    rows += [pb.viz.colorize_labels(y, num_classes=3) for y in show["labels"]]
    rows += [pb.viz.colorize_labels(y, num_classes=2) for y in LFD_LABELS[:6]]
    fig = pb.viz.show_grid(rows, ncols=6, size=1.3, titles=["image"] + [""] * 5 + ["regions"] + [""] * 5
                           + ["LFD labels"] + [""] * 5)
    display(fig)

# %% [markdown]
# Top: images; middle: background, object and clutter (the clutter counts as background for the
# salient-object task); bottom: the labels CE sees in the LFD setting — in about half of the
# images the object is labelled 0 and the background 1.
#
# ## 13. Two networks
#
# A small fully convolutional net (`pb.models.small_fcn`: a stride-2 convolution, three dilated 3×3
# convolutions, a 1×1 classifier, bilinear up-sampling; receptive field 31 pixels) and a
# torchvision ResNet-FCN (`pb.models.resnet_fcn`: torchvision's `FCN` class with `FCNHead` on a
# `ResNet` trunk of `BasicBlock`s cut after its second stage, output stride 8) — the paper's
# `fcn_resnet101`, cut to CPU size. Both are randomly initialised, as in the paper.

# %%
if SCALE == "full":
    MODELS = {"FCN-ResNet101": lambda c: pb.models.paper_model("fcn_resnet101", c),
              "DeepLabv3-ResNet101": lambda c: pb.models.paper_model("deeplabv3_resnet101", c)}
    EPOCHS = {"FCN-ResNet101": EPOCHS_RESNET, "DeepLabv3-ResNet101": EPOCHS_RESNET}
    LRS = {"FCN-ResNet101": LR_RESNET, "DeepLabv3-ResNet101": LR_RESNET}
else:
    MODELS = {"small FCN": pb.models.small_fcn, "ResNet-FCN": pb.models.resnet_fcn}
    EPOCHS = {"small FCN": EPOCHS_FCN, "ResNet-FCN": EPOCHS_RESNET}
    LRS = {"small FCN": LR_FCN, "ResNet-FCN": LR_RESNET}
for name, build in MODELS.items():
    n_params = pb.models.count_parameters(build(2))
    print(f"{name:20s} {n_params:>10,d} parameters")
    glue(f"ch9_params_{name.split()[0].split('-')[0].lower()}", n_params, display=False)

# %% [markdown]
# ## 14. Training: three losses, right and wrong labels, three seeds
#
# Every run uses `pb.training.train_or_load` (Adam, cosine schedule, batch 16; the checkpoint
# cache is keyed by the configuration). Cross-entropy is trained twice, on HFD and on LFD labels.
# The symmetrised CE and CAS are trained once per seed, on the LFD labels: both are invariant to
# the swap, so the HFD run is the same run. That is a claim, so it is checked on seed 0 — bit for
# bit, weights after training — before it is used.

# %%
def train_data(labels):
    if isinstance(TRAIN, dict):
        return {"image": TRAIN["image"], "labels": labels}
    # full scale: a DataLoader over DUTS-TR, with the LFD relabelling applied per image
    ds = TRAIN if labels == "hfd" else pb.cas.LowFidelityLabels(TRAIN, 2, SWAP_P, seed=SEED)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH_SIZE, shuffle=True, num_workers=4, drop_last=True,
                                       generator=torch.Generator().manual_seed(SEED))


def train(model_name, loss_name, labels_name, seed, *, alpha=ALPHA, out_channels=2, data=None, epochs=None,
          tag="sod"):
    """Train (or load) one model; returns (model, history)."""
    torch.manual_seed(seed)
    model = MODELS[model_name](out_channels)
    if data is None:
        labels = {"hfd": HFD_LABELS, "lfd": LFD_LABELS}[labels_name] if isinstance(TRAIN, dict) else labels_name
        data = train_data(labels)
    cfg = TrainConfig(epochs=epochs or EPOCHS[model_name], lr=LRS[model_name], batch_size=BATCH_SIZE, seed=seed,
                      params={"chapter": 9, "tag": tag, "model": model_name, "loss": loss_name, "labels": labels_name,
                              "alpha": alpha, "swap_p": SWAP_P, "size": IMAGE_SIZE, "n_train": N_TRAIN,
                              "out_channels": out_channels, "scale": SCALE})
    slug = f"ch9-{tag}-{model_name}-{loss_name}-{labels_name}-a{alpha}-s{seed}".replace(" ", "_").lower()
    hist = train_or_load(slug, model, make_loss(loss_name, alpha), data, cfg, device=DEVICE, verbose=False)
    return model.eval(), hist


@torch.no_grad()
def predict(model, data, batch_size=100):
    """Softmax outputs and masks over a dict of tensors or a DataLoader (CPU tensors)."""
    batches = iterate_batches(data, batch_size) if isinstance(data, dict) else data
    probs, masks = [], []
    for b in batches:
        probs.append(model(b["image"].to(DEVICE)).softmax(1).cpu())
        masks.append(b["mask"])
    return torch.cat(probs), torch.cat(masks)


@torch.no_grad()
def evaluate_sod(model, data, channel):
    """Max and adaptive F-beta (beta^2 = 0.3), MAE and S-measure of channel `channel` over `data`."""
    sums, n, f_curve, f_flip = {"adaptive_f": 0.0, "mae": 0.0, "s": 0.0, "polarity": 0.0}, 0, 0.0, 0.0
    batches = iterate_batches(data, 100) if isinstance(data, dict) else data
    for b in batches:
        S = model(b["image"].to(DEVICE)).softmax(1)[:, channel].cpu().double()
        G = b["mask"]
        f = pb.metrics.fbeta_per_image(S, G, return_curves=True)
        f_curve = f_curve + f["f"].sum(0)             # PySODMetrics: per-image F curves, averaged
        sums["adaptive_f"] += float(f["adaptive_f"].sum())
        sums["mae"] += float(pb.metrics.mae_per_image(S, G).sum())
        sums["s"] += float(pb.metrics.s_measure_per_image(S, G).sum())
        # does the read-out channel correlate positively with the object in this image?
        Sc, Gc = S.flatten(1) - S.flatten(1).mean(1, keepdim=True), G.flatten(1).double()
        Gc = Gc - Gc.mean(1, keepdim=True)
        agree = (Sc * Gc).sum(1) > 0
        sums["polarity"] += float(agree.sum())
        # diagnostic only (it uses the test masks): flip S in the images where the read-out channel
        # anti-correlates with the object, i.e. score the partition whatever its polarity
        flipped = torch.where(agree[:, None, None], S, 1 - S)
        f_flip = f_flip + pb.metrics.fbeta_per_image(flipped, G, return_curves=True)["f"].sum(0)
        n += len(S)
    out = {k: v / n for k, v in sums.items()}
    out["max_f"] = float((f_curve / n).max())
    out["max_f_any_polarity"] = float((f_flip / n).max())
    return out


def read_out(model, loss_name):
    """CE keeps its label convention (channel 1 = salient); the class-agnostic losses are read out
    on the labelled validation images [CAS, §4.2]."""
    if loss_name == "CE":
        return 1
    probs_val, masks_val = predict(model, VAL)
    return select_channel(probs_val, masks_val)

# %% tags=["nbval-check-output"]
# The swap-invariance claim, checked where it is used: seed 0, small model, CAS and sym-CE,
# trained on HFD labels and on LFD labels: identical weights, bit for bit.
first_model = next(iter(MODELS))
identical, ce_same = {}, None
if isinstance(TRAIN, dict):
    for loss_name in ("CAS", "sym-CE"):
        m_hfd, h_hfd = train(first_model, loss_name, "hfd", SEEDS[0])
        m_lfd, h_lfd = train(first_model, loss_name, "lfd", SEEDS[0])
        a, b = m_hfd.state_dict(), m_lfd.state_dict()
        identical[loss_name] = all(torch.equal(a[k], b[k]) for k in a)
        assert identical[loss_name], f"{loss_name}: HFD and LFD training diverged"
    m_ce_h, _ = train(first_model, "CE", "hfd", SEEDS[0])
    m_ce_l, _ = train(first_model, "CE", "lfd", SEEDS[0])
    ce_same = all(torch.equal(m_ce_h.state_dict()[k], m_ce_l.state_dict()[k]) for k in m_ce_h.state_dict())
    assert not ce_same
print("identical weights after HFD and LFD training:", identical, "; CE identical:", ce_same)

# %%
RESULTS, HISTORIES, TRAINED = {}, {}, {}
runs = [("CE", "hfd"), ("CE", "lfd"), ("sym-CE", "lfd"), ("CAS", "lfd")]
for model_name in MODELS:
    for loss_name, labels_name in runs:
        for seed in SEEDS:
            model, hist = train(model_name, loss_name, labels_name, seed)
            channel = read_out(model, loss_name)
            for test_name, test in TESTS.items():
                scores = evaluate_sod(model, test, channel)
                scores["train_loss"] = hist["train_loss"][-1]
                scores["channel"] = channel
                RESULTS.setdefault((model_name, loss_name, labels_name, test_name), []).append(scores)
            HISTORIES[(model_name, loss_name, labels_name, seed)] = hist
            if seed == SEEDS[0]:
                TRAINED[(model_name, loss_name, labels_name)] = model
print(f"{len(HISTORIES)} training runs done in {time.time() - T0:.0f} s since the start")


def mean_std(model_name, loss_name, labels_name, key, test_name=None):
    test_name = test_name or MAIN_TEST
    vals = torch.tensor([r[key] for r in RESULTS[(model_name, loss_name, labels_name, test_name)]], dtype=torch.float64)
    return float(vals.mean()), float(vals.std()) if len(vals) > 1 else 0.0

# %% [markdown]
# ## 15. Results
#
# Held-out images, mean ± standard deviation over the seeds. F-β uses β² = 0.3; "max F" is the
# maximum over 256 thresholds of the per-image F curves averaged over images and "adaptive F"
# thresholds each map at $\min(2\,\mathrm{mean}(S), 1)$ — both as PySODMetrics {cite}`pysodmetrics`
# computes them (`pb.metrics.fbeta_scores(..., average="f")` conventions; unlike PySODMetrics,
# maps are not min-max normalised per image). MAE is on the continuous map, as the paper defines
# it; S-measure {cite}`fan2017smeasure` is not in the paper and is added for completeness.
# *Polarity* is the fraction of test images in which the read-out channel correlates positively
# with the object.

# %%
def results_table(test_name=None):
    test_name = test_name or MAIN_TEST
    keys = ("max_f", "adaptive_f", "mae", "s", "polarity", "max_f_any_polarity", "train_loss")
    heads = ("max F", "adaptive F", "MAE", "S-measure", "polarity", "max F (any pol.)", "train loss")
    lines = [f"{'model':12s} {'loss':7s} {'labels':6s} " + " ".join(f"{k:>16s}" for k in heads)]
    for model_name in MODELS:
        for loss_name, labels_name in runs:
            settings = [labels_name] if loss_name == "CE" else ["hfd", "lfd"]
            for setting in settings:
                cells = []
                for k in keys:
                    m, sd = mean_std(model_name, loss_name, labels_name, k, test_name)
                    cells.append(f"{m:7.3f} ± {sd:.3f}")
                note = "" if loss_name == "CE" else " (one run)"
                lines.append(f"{model_name:12s} {loss_name:7s} {setting.upper():6s} " + " ".join(f"{c:>16s}" for c in cells)
                             + note)
    return "\n".join(lines)


print(results_table())

# %%
for model_name in MODELS:
    short = model_name.split()[0].split("-")[0].lower()
    for loss_name, labels_name in runs:
        for key in ("max_f", "adaptive_f", "mae", "s", "train_loss", "polarity", "max_f_any_polarity"):
            m, sd = mean_std(model_name, loss_name, labels_name, key)
            glue(f"ch9_{short}_{loss_name.replace('-', '').lower()}_{labels_name}_{key}", m, display=False)
            glue(f"ch9_{short}_{loss_name.replace('-', '').lower()}_{labels_name}_{key}_sd", sd, display=False)

# %% [markdown]
# The claims, checked. *Cross-entropy collapses under wrong labels*: the small FCN ends at a
# training loss of {glue:text}`ch9_small_ce_lfd_train_loss:.3f` (ln 2 = 0.693) and an MAE of
# {glue:text}`ch9_small_ce_lfd_mae:.2f` — an output near ½ everywhere, which the adaptive threshold
# $2\,\mathrm{mean}(S)\approx 1$ turns into an empty map (adaptive F
# {glue:text}`ch9_small_ce_lfd_adaptive_f:.2f`). The ResNet-FCN's training loss goes *below*
# ln 2 ({glue:text}`ch9_resnet_ce_lfd_train_loss:.3f`): with a receptive field that covers the
# whole image it can memorise which training images were swapped, which transfers to nothing
# (test MAE {glue:text}`ch9_resnet_ce_lfd_mae:.2f`). The population optimum is ln 2; a network
# that can memorise its training set does better on that set only. *CAS trains the same with
# wrong and right labels*: identical weights, checked above. *CAS beats CE under wrong labels by
# a wide margin*: on the ResNet-FCN, max F {glue:text}`ch9_resnet_cas_lfd_max_f:.2f` against
# {glue:text}`ch9_resnet_ce_lfd_max_f:.2f` and MAE {glue:text}`ch9_resnet_cas_lfd_mae:.2f` against
# {glue:text}`ch9_resnet_ce_lfd_mae:.2f`, every seed. On the small FCN the mean is
# {glue:text}`ch9_small_cas_lfd_max_f:.2f` ± {glue:text}`ch9_small_cas_lfd_max_f_sd:.2f` against
# {glue:text}`ch9_small_ce_lfd_max_f:.2f` — and the spread is the story. The paper's read-out takes
# *one* channel for all images; CAS does not ask for that. A network may separate object and
# background with a feature whose sign depends on the image — "redder than the rest", say, which
# puts a red object on channel 0 and a blue one on channel 1 — and every image still scores
# perfectly under Eq. 1. Cross-entropy on correct labels cannot do this; CAS can, and on the small
# FCN some seeds do: the *polarity* column (fraction of test images whose object lands on the
# read-out channel) falls to {glue:text}`ch9_small_cas_lfd_polarity:.2f` on average. Scoring each
# image with its own polarity (the "any pol." column, which peeks at the test masks and is a
# diagnostic only) shows that the partitions themselves are learnt
# ({glue:text}`ch9_small_cas_lfd_max_f_any_polarity:.2f`).
#
# So the check below is two-sided. The margins are fixed in advance — a quarter of the F scale and
# 0.2 of MAE, half the gaps measured while this chapter was written — and must hold for every
# seed whose read-out is consistent (polarity ≥ 0.9); each seed that misses them must be a
# read-out failure (polarity < 0.9), and is listed. Here {glue:text}`ch9_readout_failures` of the
# {glue:text}`ch9_runs_per_loss` CAS runs are.
#
# On *correct* labels the paper's claim is that CAS is as good as the state of the art; its own
# Table 2 has its CE model ahead on most datasets. Here, on the ResNet-FCN, CAS and CE are close:
# max F {glue:text}`ch9_resnet_cas_lfd_max_f:.2f` against {glue:text}`ch9_resnet_ce_hfd_max_f:.2f`,
# but adaptive F {glue:text}`ch9_resnet_cas_lfd_adaptive_f:.2f` against
# {glue:text}`ch9_resnet_ce_hfd_adaptive_f:.2f` (CAS's maps rank as well, and threshold worse). The
# symmetrised CE matches CE on correct labels — on the small FCN to three decimals in every
# metric: there it picked the true labelling of every image at every step, so it followed CE's
# trajectory — and, being swap-invariant, it is as good on the wrong labels. In the binary swap
# setting the minimum over two labellings undoes the corruption exactly; the paper's Table 1 says
# the same (its "CACE" is within 0.05 of CAS), although its text says CACE "fails".

# %%
if SCALE != "smoke":
    LN2 = math.log(2)
    READOUT_FAILURES = []
    for model_name in MODELS:
        ce = RESULTS[(model_name, "CE", "lfd", MAIN_TEST)]
        cas_runs = RESULTS[(model_name, "CAS", "lfd", MAIN_TEST)]
        assert min(r["mae"] for r in ce) >= 0.35, f"{model_name}: CE under wrong labels should be uninformative"
        assert max(r["adaptive_f"] for r in ce) <= 0.2, f"{model_name}: CE-LFD adaptive F"
        consistent = 0
        for seed, c, e in zip(SEEDS, cas_runs, ce):
            wide = (c["max_f"] - e["max_f"] >= 0.25 and c["adaptive_f"] - e["adaptive_f"] >= 0.25
                    and e["mae"] - c["mae"] >= 0.2)
            if c["polarity"] >= 0.9:   # one channel holds the object in (almost) every test image
                consistent += 1
                assert wide, f"{model_name}, seed {seed}: consistent read-out but no wide margin: {c} vs {e}"
            elif not wide:
                READOUT_FAILURES.append((model_name, seed, c["polarity"], c["max_f"], c["max_f_any_polarity"]))
        assert consistent >= 1, f"{model_name}: no seed with a consistent read-out"
    if SCALE == "small":  # the small FCN (7k parameters, 31-pixel receptive field) cannot memorise the swaps
        small_ce_loss = [r["train_loss"] for r in RESULTS[(first_model, "CE", "lfd", MAIN_TEST)]]
        assert all(abs(v - LN2) < 0.05 for v in small_ce_loss), f"small FCN, CE-LFD training loss {small_ce_loss}"
    print("checked: CE-LFD is uninformative; CAS-LFD = CAS-HFD; wherever CAS's read-out is consistent "
          "(polarity >= 0.9), CAS beats CE under LFD by >= 0.25 in max and adaptive F and >= 0.2 in MAE")
    for model_name, seed, pol, f, f_any in READOUT_FAILURES:
        print(f"read-out failure: {model_name}, seed {seed}: polarity {pol:.2f}, max F {f:.3f} "
              f"(with each image's polarity corrected: {f_any:.3f})")
    glue("ch9_readout_failures", len(READOUT_FAILURES), display=False)
    glue("ch9_runs_per_loss", len(MODELS) * len(SEEDS), display=False)

# %% tags=["hide-input"]
def prediction_grid(model_name, n=6):
    test = TESTS["synthetic"]
    images = make_saliency_scenes(n, IMAGE_SIZE, seed=3000 + SEED, standardize=False,
                                  texture_scale=TEXTURE_SCALE)["image"]
    panels, titles = [], []
    for i in range(n):
        panels.append(images[i].clamp(0, 1))
        titles.append("image" if i == 0 else "")
    for i in range(n):
        panels.append(test["mask"][i].float())
        titles.append("ground truth" if i == 0 else "")
    for loss_name, labels_name in runs:
        model = TRAINED[(model_name, loss_name, labels_name)]
        channel = RESULTS[(model_name, loss_name, labels_name, MAIN_TEST)][0]["channel"]
        with torch.no_grad():
            S = model(test["image"][:n].to(DEVICE)).softmax(1)[:, channel].cpu()
        for i in range(n):
            panels.append(S[i])
            titles.append(f"{loss_name} {labels_name.upper()}" if i == 0 else "")
    return pb.viz.show_grid(panels, titles=titles, ncols=n, size=1.2)


if SCALE != "full":
    for model_name in MODELS:
        print(model_name)
        display(prediction_grid(model_name))

# %% [markdown]
# ## 16. Three regions, labels permuted per image
#
# With more than two regions the symmetrised cross-entropy has $N!$ labellings — cheap with the
# table of §2, but the question is now what each loss *learns*. The multi-region variant
# (`pb.data.saliency.make_texture_mosaics`) fills each image with three regions, one per texture
# (`brick`, `grass`, `gravel`), each texture with its own hue (jittered): a background and two
# shapes. The HFD label of a region is its texture; the LFD labels permute the three values per
# image, uniformly over all six labellings ($p = 5/6$ of a non-identity permutation). The small
# FCN gets three output channels. We score each prediction two ways: as a **partition** (per
# image, the best one-to-one matching of channels to regions, `pb.metrics.matched_iou`), and as a
# **labelling** (one channel per texture, chosen on the labelled validation images with
# `pb.cas.match_channels`, then mean IoU over the test set).

# %%
if SYNTHETIC:
    from pixelbook.data.saliency import make_texture_mosaics

    MOS_TRAIN = make_texture_mosaics(N_TRAIN or 2048, IMAGE_SIZE, seed=4000 + SEED)
    MOS_VAL = make_texture_mosaics(N_VAL, IMAGE_SIZE, seed=5000 + SEED)
    MOS_TEST = make_texture_mosaics(N_TEST or 1000, IMAGE_SIZE, seed=6000 + SEED)
    MOS_LFD, _ = permute_region_labels(MOS_TRAIN["labels"], 3, p=5 / 6, generator=torch.Generator().manual_seed(SEED))
    MULTI = {}
    mos_model = first_model
    for loss_name, labels_name in runs:
        y_train = MOS_TRAIN["labels"] if labels_name == "hfd" else MOS_LFD
        for seed in SEEDS:
            model, hist = train(mos_model, loss_name, labels_name, seed, out_channels=3, tag="mosaic",
                                data={"image": MOS_TRAIN["image"], "labels": y_train})
            with torch.no_grad():
                p_val = torch.cat([model(b["image"].to(DEVICE)).softmax(1).cpu() for b in iterate_batches(MOS_VAL, 100)])
                p_test = torch.cat([model(b["image"].to(DEVICE)).softmax(1).cpu() for b in iterate_batches(MOS_TEST, 100)])
            assignment = match_channels(p_val, MOS_VAL["labels"], 3)
            labelled = pb.metrics.mean_iou(p_test[:, assignment].argmax(1), MOS_TEST["labels"], 3)
            partition = matched_iou(p_test.argmax(1), MOS_TEST["labels"], 3)
            MULTI.setdefault((loss_name, labels_name), []).append(
                {"partition": partition, "labelling": float(labelled), "train_loss": hist["train_loss"][-1]})

    print(f"{'loss':7s} {'labels':6s} {'partition mIoU':>16s} {'labelling mIoU':>16s} {'train loss':>14s}")
    for (loss_name, labels_name), rs in MULTI.items():
        cells = []
        for k in ("partition", "labelling", "train_loss"):
            v = torch.tensor([r[k] for r in rs], dtype=torch.float64)
            cells.append(f"{float(v.mean()):7.3f} ± {float(v.std()) if len(v) > 1 else 0.0:.3f}")
            glue(f"ch9_mos_{loss_name.replace('-', '').lower()}_{labels_name}_{k}", float(v.mean()), display=False)
        print(f"{loss_name:7s} {labels_name.upper():6s} " + " ".join(f"{c:>16s}" for c in cells))
    glue("ch9_cas_floor_3", cas_bounds(3, 3, ALPHA)[0], display=False)


# %%
if SYNTHETIC:
    if SCALE != "smoke":
        ce_lfd_loss = [r["train_loss"] for r in MULTI[("CE", "lfd")]]
        assert all(abs(v - math.log(3)) < 0.05 for v in ce_lfd_loss), f"CE on permuted labels: {ce_lfd_loss} vs ln 3"
        ce_lfd_lab = [r["labelling"] for r in MULTI[("CE", "lfd")]]
        ce_hfd_lab = [r["labelling"] for r in MULTI[("CE", "hfd")]]
        assert max(ce_lfd_lab) < min(ce_hfd_lab) - 0.3, (ce_lfd_lab, ce_hfd_lab)
        print("CE with permuted labels: loss ≈ ln 3 =", round(math.log(3), 4), "and no labelling learnt")


# %% [markdown]
# Cross-entropy on permuted labels is back at its population optimum, $\ln 3$ (training loss
# {glue:text}`ch9_mos_ce_lfd_train_loss:.3f`), and learns nothing. The symmetrised CE learns
# *partitions* (partition mIoU {glue:text}`ch9_mos_symce_lfd_partition:.2f` against
# {glue:text}`ch9_mos_ce_lfd_partition:.2f` for CE-LFD) but not a *labelling*
# ({glue:text}`ch9_mos_symce_lfd_labelling:.2f` against {glue:text}`ch9_mos_ce_hfd_labelling:.2f`
# for CE on correct labels): no texture is tied to a channel across images, because nothing in the
# loss asks for it — a network that puts "the background" on one channel and "the shapes" on the
# others, whatever their texture, is just as good. CAS, at this budget, learns neither (partition
# mIoU {glue:text}`ch9_mos_cas_lfd_partition:.2f`): its training loss ends at
# {glue:text}`ch9_mos_cas_lfd_train_loss:.1f`, far from its floor of {glue:text}`ch9_cas_floor_3:.1f`.
# A likely reason, not tested here: CAS starts at a saddle — at initialisation the region means
# nearly coincide, and the discriminator's gradient is proportional to their differences (§7);
# two regions escaped it within our 192 steps, three did not. This is our result at small scale,
# not a statement about the paper's multi-region experiments (Tables 4–6), which give no training
# details to reproduce; the paper's Table 6 also has DeepLab with CAS behind DeepLab with CE.
#
# ## 17. The imbalance probe
#
# Smaller objects (8 % of the pixels instead of 17 %, no clutter), correct labels, CE against
# CAS on the small FCN, each scored at the operating point the network itself chooses — the
# argmax of its two channels, i.e. $S > 0.5$ — and by max F.

# %%
if SYNTHETIC:
    IMB_TRAIN = make_saliency_scenes(N_TRAIN or 2048, IMAGE_SIZE, seed=7000 + SEED, object_radius=(0.14, 0.2), clutter=0)
    IMB_VAL = make_saliency_scenes(N_VAL, IMAGE_SIZE, seed=8000 + SEED, object_radius=(0.14, 0.2), clutter=0)
    IMB_TEST = make_saliency_scenes(N_TEST or 1000, IMAGE_SIZE, seed=9000 + SEED, object_radius=(0.14, 0.2), clutter=0)
    IMB = {}
    for loss_name in ("CE", "CAS"):
        for seed in SEEDS:
            model, _ = train(first_model, loss_name, "hfd", seed, tag="imbalance",
                             data={"image": IMB_TRAIN["image"], "labels": IMB_TRAIN["mask"].long()})
            channel = 1 if loss_name == "CE" else select_channel(*predict(model, IMB_VAL))
            S, G = predict(model, IMB_TEST)
            S = S[:, channel]
            B = S > 0.5
            tp = int((B & G).sum())
            IMB.setdefault(loss_name, []).append({
                "recall": tp / max(int(G.sum()), 1), "precision": tp / int(B.sum()) if int(B.sum()) else float("nan"),
                "predicted": float(B.float().mean()), "max_f": pb.metrics.fbeta_scores(S, G, average="f")["max_f"]})
    fg_imb = IMB_TRAIN["mask"].float().mean().item()
    print(f"salient fraction {fg_imb:.3f}")
    print("loss  seed   recall@0.5  precision@0.5  predicted salient   max F")
    for loss_name, rs in IMB.items():
        for seed, r in zip(SEEDS, rs):
            print(f"{loss_name:4s} {seed:5d} {r['recall']:12.3f} {r['precision']:14.3f} {r['predicted']:17.3f} {r['max_f']:9.3f}")
    glue("ch9_imb_fg", fg_imb, display=False)
    for loss_name, rs in IMB.items():
        glue(f"ch9_imb_{loss_name.lower()}_recall", float(np.mean([r["recall"] for r in rs])), display=False)
        glue(f"ch9_imb_{loss_name.lower()}_maxf", float(np.mean([r["max_f"] for r in rs])), display=False)
        defined = [r["precision"] for r in rs if not math.isnan(r["precision"])]  # no positives: undefined
        glue(f"ch9_imb_{loss_name.lower()}_precision", float(np.mean(defined)) if defined else float("nan"),
             display=False)


# %%
if SYNTHETIC:
    if SCALE != "smoke":
        ce_rec, cas_rec = [r["recall"] for r in IMB["CE"]], [r["recall"] for r in IMB["CAS"]]
        assert all(c > e for c, e in zip(cas_rec, ce_rec)), f"recall at 0.5: CAS {cas_rec} vs CE {ce_rec}"
        print("every seed: CAS finds more of the small objects at its own operating point than CE")


# %% [markdown]
# With {glue:text}`ch9_imb_fg:.0%` salient pixels and 192 steps, cross-entropy never lets the
# object win the argmax, in any seed (recall {glue:text}`ch9_imb_ce_recall:.2f` at $S>0.5$), although
# its maps rank the objects to some degree (max F {glue:text}`ch9_imb_ce_maxf:.2f` on average): the
# large class weighs the learning more. CAS, which weighs the two regions equally, does mark the
# objects (recall {glue:text}`ch9_imb_cas_recall:.2f`) and pays in precision
# ({glue:text}`ch9_imb_cas_precision:.2f` on average; per seed in the table), more background being
# called salient. That is "robust to class imbalance" in the sense the equations support: the
# small class is not ignored. It is not a free improvement — and the read-out failure of §15
# appears here too (the seed with recall near ½ and a low max F).
#
# ## 18. How much label noise, and which α
#
# The paper varies the fraction of swapped images (its Table 3: 2–50 %) and $\alpha$ (its Table 7,
# whose numbers are missing from the source). CAS needs no new runs for the first: its training
# is *identical* at every swap probability. Cross-entropy is retrained at $p = 0.1$ and $0.25$,
# and CAS at $\alpha = 0.5$ (the official code's value), $0.9$ and $1$ (the uniformer alone, §4),
# all on the small FCN, seed 0.

# %%
if SYNTHETIC:
    SWEEP_P = (0.0, 0.1, 0.25, 0.5)
    SWEEP_ALPHA = (0.1, 0.5, 0.9, 1.0)
    SWEEP = {}  # (loss, value) -> model
    for p in SWEEP_P:
        if p in (0.0, SWAP_P):
            SWEEP[("CE", p)] = TRAINED[(first_model, "CE", "hfd" if p == 0.0 else "lfd")]
            continue
        y_p, _ = permute_region_labels(HFD_LABELS, 2, p=p, generator=torch.Generator().manual_seed(SEED))
        SWEEP[("CE", p)], _ = train(first_model, "CE", f"lfd{p}", SEEDS[0], data={"image": TRAIN["image"], "labels": y_p})
    for a in SWEEP_ALPHA:
        if a == ALPHA:
            SWEEP[("CAS", a)] = TRAINED[(first_model, "CAS", "lfd")]
            continue
        SWEEP[("CAS", a)], _ = train(first_model, "CAS", "lfd", SEEDS[0], alpha=a)

    TEST = TESTS["synthetic"]
    N_SHOW = 4
    CACHE = {}  # everything the widget draws, computed once
    for (loss_name, value), model in SWEEP.items():
        channel = read_out(model, loss_name)
        S_all, G_all = predict(model, TEST)
        S_all = S_all[:, channel]
        mu_fg = (S_all * G_all).flatten(1).sum(1) / G_all.flatten(1).sum(1)
        mu_bg = (S_all * ~G_all).flatten(1).sum(1) / (~G_all).flatten(1).sum(1)
        scores = evaluate_sod(model, TEST, channel)
        CACHE[(loss_name, value)] = {"mu_fg": mu_fg, "mu_bg": mu_bg, "maps": S_all[:N_SHOW], **scores}
    print("CE, by swap probability p         CAS, by alpha")
    for p, a in zip(SWEEP_P, SWEEP_ALPHA):
        c, d = CACHE[("CE", p)], CACHE[("CAS", a)]
        print(f"p = {p:4.2f}: max F {c['max_f']:.3f}, MAE {c['mae']:.3f}    α = {a:3.1f}: max F {d['max_f']:.3f}, MAE {d['mae']:.3f}")
        glue(f"ch9_sweep_ce_p{int(100 * p)}_maxf", c["max_f"], display=False)
        glue(f"ch9_sweep_ce_p{int(100 * p)}_mae", c["mae"], display=False)
        glue(f"ch9_sweep_cas_a{int(10 * a)}_maxf", d["max_f"], display=False)
    collapsed = CACHE[("CAS", 1.0)]
    spread = float((collapsed["maps"].flatten(1).std(1)).mean())
    glue("ch9_alpha1_spread", spread, display=False)


# %%
if SYNTHETIC:
    if SCALE != "smoke":
        # §4's claim: the uniformer alone collapses — the alpha = 1 model's map is nearly constant per image
        assert spread < 0.05, f"alpha = 1: per-image std of the saliency map {spread}"
        assert CACHE[("CAS", 1.0)]["max_f"] < CACHE[("CAS", ALPHA)]["max_f"] - 0.25


# %% [markdown]
# With $\alpha = 1$ the map is flat (per-image standard deviation {glue:text}`ch9_alpha1_spread:.3f`):
# the uniformer alone has collapsed, as §4 predicted — and $\alpha = 0.9$ collapses as well
# (max F {glue:text}`ch9_sweep_cas_a9_maxf:.2f`), while $\alpha = 0.5$ behaves like the paper's
# $0.1$ on this seed ({glue:text}`ch9_sweep_cas_a5_maxf:.2f` against
# {glue:text}`ch9_sweep_cas_a1_maxf:.2f`; seed 0 is one whose read-out split in §15). One seed
# illustrates; it does not replace the paper's missing Table 7. Cross-entropy gets less confident
# as the swap probability grows — MAE {glue:text}`ch9_sweep_ce_p0_mae:.2f`,
# {glue:text}`ch9_sweep_ce_p10_mae:.2f`, {glue:text}`ch9_sweep_ce_p25_mae:.2f`,
# {glue:text}`ch9_sweep_ce_p50_mae:.2f` at $p = 0, 0.1, 0.25, 0.5$ — while its ranking survives
# until the labels carry no information (max F {glue:text}`ch9_sweep_ce_p25_maxf:.2f` at 0.25,
# {glue:text}`ch9_sweep_ce_p50_maxf:.2f` at 0.5); the paper's Table 3 shows CE losing F-β between
# 10 and 30 %. CAS does not move with $p$, by construction.
#
# ## 19. Interactive: α, the swap probability, and where the region means go
#
# Each panel shows one trained model. Left: for every test image, the mean of the read-out channel
# over the background ($x$) and over the object ($y$) — the two region means on the 1-simplex of
# a two-channel softmax. A perfect segmentation puts every image at the top-left vertex $(0, 1)$;
# a collapsed output sits on the diagonal. Right: the predicted saliency of four test images.
# {numref}`fig-ch9-region-means` shows four settings side by side; in
# {numref}`fig-ch9-explorer` the controls choose the loss, $\alpha$ (CAS only) and $p$
# (cross-entropy only; CAS is the same model for every $p$).
#
# In {numref}`fig-ch9-region-means`: CE with correct labels moves the object's mean up and keeps the
# background's near 0; CE with half the labels swapped sits on the diagonal near ½ (the collapse of
# §1); CAS with $\alpha = 0.1$ (seed 0) puts most images at a vertex — but at *both* vertices,
# $(0, 1)$ and $(1, 0)$: every image's regions are separated, and the object went to one channel
# in some images and to the other in the rest — §15's read-out failure, seen on the simplex; CAS
# with $\alpha = 1$ is a single point on the diagonal: the collapse of §4.

# %%
def region_means_figure(loss="CAS", alpha=0.1, p_swap=0.5):
    key = ("CAS", alpha) if loss == "CAS" else ("CE", p_swap)
    c = CACHE[key]
    fig = plt.figure(figsize=(6.4, 2.6))
    ax = fig.add_axes([0.07, 0.15, 0.33, 0.75])
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.scatter(c["mu_bg"], c["mu_fg"], s=6, alpha=0.5)
    ax.plot([0], [1], "k*", ms=9)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="mean of S on background", ylabel="mean of S on object")
    title = f"CAS, α = {alpha}" + " (any p)" if loss == "CAS" else f"CE, p = {p_swap}"
    ax.set_title(f"{title}\nmax F {c['max_f']:.2f}, MAE {c['mae']:.2f}", fontsize=9)
    for i in range(N_SHOW):
        a = fig.add_axes([0.47 + 0.13 * i, 0.3, 0.12, 0.45])
        a.imshow(c["maps"][i], vmin=0, vmax=1, cmap="gray")
        a.axis("off")
    return fig


if SCALE != "full":  # the full-scale run trains no sweep (§18)
    four = pb.widgets.panels(region_means_figure, [{"loss": "CE", "p_swap": 0.0}, {"loss": "CE", "p_swap": 0.5},
                                                   {"loss": "CAS", "alpha": 0.1}, {"loss": "CAS", "alpha": 1.0}],
                             titles=["", "", "", ""], ncols=1)
    pb.widgets.show(four, glue="ch9_fig_region_means")
    pb.widgets.explorer(
        region_means_figure, {"loss": ["CAS", "CE"], "alpha": list(SWEEP_ALPHA), "p_swap": list(SWEEP_P)},
        active={"alpha": (lambda s: s["loss"] == "CAS", "it weights the CAS loss only"),
                "p_swap": (lambda s: s["loss"] == "CE", "CAS is one model for every p")},
        descriptions={"alpha": "α", "p_swap": "p"}, glue="ch9_fig_explorer",
        alt="Region means and saliency maps of one trained model")

# %% [markdown]
# ```{glue:figure} ch9_fig_region_means
# :name: fig-ch9-region-means
# :alt: Region means on the simplex and predicted saliency maps of four trained models
#
# Four trained models, top to bottom: CE with correct labels, CE with half the labels swapped,
# CAS with α = 0.1, CAS with α = 1. Left: each test image's mean read-out over the background
# (x) and the object (y); right: four predicted saliency maps.
# ```
#
# ```{glue:figure} ch9_fig_explorer
# :name: fig-ch9-explorer
#
# The same view for every trained model of the sweep: choose the loss, α (CAS) and p (CE).
# ```

# %% [markdown]
# ## 20. The paper's numbers (full scale, quoted)
#
# The paper trains FCN-ResNet101 and DeepLab-v3 at 256 × 256 and tests on seven datasets. Its
# tables, copied from the source (F-β at the adaptive threshold, MAE):
#
# **Paper, Table 1 — low-fidelity training on MSRA-B (labels wrong with probability 0.5), full scale:**
#
# | model | MSRA-B F/MAE | DUTS-TE F/MAE | ECSSD F/MAE | PASCAL-S F/MAE | HKU-IS F/MAE | THUR15K F/MAE | DUT-OMRON F/MAE |
# |---|---|---|---|---|---|---|---|
# | PFAN | 0.580 / 0.502 | 0.532 / 0.512 | 0.588 / 0.510 | 0.611 / 0.493 | 0.565 / 0.518 | 0.541 / 0.513 | 0.537 / 0.511 |
# | BAS-Net | 0.585 / 0.619 | 0.444 / 0.682 | 0.572 / 0.619 | 0.655 / 0.623 | 0.527 / 0.637 | 0.431 / 0.660 | 0.442 / 0.686 |
# | PoolNet | 0.603 / 0.502 | 0.566 / 0.501 | 0.597 / 0.503 | 0.648 / 0.480 | 0.582 / 0.503 | 0.517 / 0.505 | 0.526 / 0.498 |
# | ResNet-CE | 0.691 / 0.140 | 0.427 / 0.191 | 0.625 / 0.178 | 0.592 / 0.206 | 0.633 / 0.160 | 0.670 / 0.150 | 0.666 / 0.147 |
# | ResNet-CACE | 0.872 / 0.076 | 0.808 / 0.103 | 0.803 / 0.114 | 0.754 / 0.150 | 0.822 / 0.094 | 0.834 / 0.108 | 0.816 / 0.095 |
# | ResNet-CAS | 0.920 / 0.038 | 0.836 / 0.077 | 0.837 / 0.085 | 0.773 / 0.126 | 0.856 / 0.067 | 0.865 / 0.080 | 0.846 / 0.069 |
# | DeepLab-CAS | 0.937 / 0.038 | 0.868 / 0.064 | 0.875 / 0.068 | 0.810 / 0.110 | 0.896 / 0.050 | 0.893 / 0.070 | 0.871 / 0.058 |
#
# **Paper, Table 2 — high-fidelity (correct) labels, the authors' own models, full scale:**
#
# | model | MSRA-B | DUTS-TE | ECSSD | PASCAL-S | HKU-IS | THUR15K | DUT-OMRON |
# |---|---|---|---|---|---|---|---|
# | ResNet-CAS | 0.985 / 0.010 | 0.871 / 0.071 | 0.888 / 0.071 | 0.840 / 0.112 | 0.939 / 0.050 | 0.931 / 0.073 | 0.876 / 0.066 |
# | ResNet-CE | 0.958 / 0.030 | 0.919 / 0.055 | 0.905 / 0.068 | 0.876 / 0.091 | 0.928 / 0.044 | 0.935 / 0.057 | 0.920 / 0.059 |
# | DeepLab-CAS | 0.931 / 0.040 | 0.850 / 0.070 | 0.864 / 0.072 | 0.800 / 0.111 | 0.882 / 0.054 | 0.888 / 0.069 | 0.865 / 0.060 |
# | DeepLab-CE | 0.928 / 0.039 | 0.847 / 0.070 | 0.867 / 0.069 | 0.805 / 0.110 | 0.880 / 0.052 | 0.881 / 0.070 | 0.856 / 0.061 |
#
# **Paper, Table 3 — ResNet trained on MSRA-B with a growing fraction of swapped images:** CAS
# F-β 0.903, 0.921, 0.904, 0.906, 0.920 at 2, 5, 10, 30, 50 %; CE 0.903, 0.901, 0.858, 0.647, 0.691.
#
# Read against each other: Table 1 supports the LFD claim — every CE-trained model collapses and
# CAS does not (the SOTA rows' MAE near 0.5 is an output near ½ everywhere, as our CE-LFD).
# Table 2 is weaker than the text ("performs equally well and at times superior"): the authors'
# own ResNet-CE beats their ResNet-CAS on five of the seven datasets by F-β, and on six by MAE;
# the DeepLab pair is a draw. The symmetrised CE ("CACE", which the text says "fails") is within
# 0.05 of CAS in Table 1: like ours, it works in the binary swap setting, because its minimum over
# the two labellings undoes the swap exactly. Our small-scale results agree with all three
# readings. Table 3's CAS row should be constant: the loss is invariant to the swaps (the 30 %
# row's MAE, 0.520, is presumably 0.052).

# %% [markdown]
# ## 21. Full scale
#
# With `SCALE = "full"` (a GPU), this notebook trains torchvision's randomly initialised
# `fcn_resnet101` and `deeplabv3_resnet101` (`pb.models.paper_model`) on DUTS-TR at 256 × 256, reads
# the channel out on 500 held-out DUTS-TR images, and evaluates on the seven test sets with the
# same metric code (`pb.data.saliency.SaliencyDataset`, fetched and unpacked through the dataset
# registry; no checksum is published for these archives, and HKU-IS ships as a RAR file that must
# be unpacked by hand — the loader says how). The metric definitions follow PySODMetrics
# {cite}`pysodmetrics` (F-β curves averaged per image, adaptive threshold $\min(2\bar S, 1)$,
# S-measure as Fan et al.'s MATLAB code), except that maps are not min-max normalised.

# %%
if SCALE == "full":
    for test_name in TESTS:
        print(f"--- {test_name}")
        print(results_table(test_name))

# %% [markdown]
# ## Exercises
#
# 1. Train CAS with `variant="official"` on the LFD labels. Is the training still identical to the
#    HFD run? Which term breaks the symmetry, and does it matter for the read-out?
# 2. Replace the per-image swap by *independent* per-region corruption (each region's label
#    drawn at random). Why does it destroy the partition for CAS too (hint: both regions can get
#    the same label)?
# 3. Give the multi-region model four output channels. Does CAS escape the shared-vertex optima
#    of §6 more often? Does the labelling score change?
# 4. The polarity problem: design a label-free rule that decides, per image, which channel is
#    salient (e.g. the smaller region, or the one touching the border less). How close does it
#    get to the validation read-out?
# 5. Derive the gradient of the symmetrised CE at a tie between two labellings. What does
#    `torch.argmax` pick, and does it matter?
#
# ## Summary
#
# - Cross-entropy ties labels to channels; with half of the images' labels swapped its best
#   output is ½ everywhere, at the loss ln 2 — checked in §1, observed in §15.
# - Minimising CE over labellings fixes that, at a cost that is combinatorial only when the loss
#   is written pixel by pixel: one $N\times M$ table makes it cheap (§2).
# - CAS is a size-normalised region energy — Mumford–Shah's fidelity term with the roles of
#   image and partition swapped — plus a term that separates region means; alone, the first
#   collapses (§4, §18). It depends on the partition only, bit for bit (§5, §14).
# - Its optimum is one-hot and distinct per region; the correct bounds are
#   $[-2(1-\alpha)N(N-1),\ \alpha N(1-1/M)]$, not the paper's (§6). It is an $O(P^2)$ pairwise
#   metric-learning loss computed in $O(P)$ (§8).
# - Region-size normalisation makes the small class count (recall up) at the price of precision
#   (§17); the channel must be read out afterwards, and one channel for all images is an
#   assumption CAS does not enforce (§10, §15).
# - At small scale: CAS trains identically on right and wrong labels and, wherever one output
#   channel holds the object in every image, beats CE on wrong labels by a wide margin; but CAS
#   does not enforce that — some runs split their images between the two channels, which the
#   paper's read-out cannot undo (§15). On right labels it is close to CE, as in the paper's own
#   Table 2, and the symmetrised CE is as good as either in the binary setting. With three regions
#   the symmetrised CE learns partitions but not labellings, and CAS, at our budget, neither (§16).
#
# ## References
#
# - A. Sharma, N. Khan, M. Mubashar, G. Sundaramoorthi, P. Torr, Class-agnostic segmentation loss
#   and its application to salient object detection and segmentation {cite}`sharma2021cas`.
# - T. F. Chan and L. A. Vese, Active contours without edges, IEEE TIP 2001 {cite}`chan2001active`.
# - D.-P. Fan et al., Structure-measure: a new way to evaluate foreground maps, ICCV 2017
#   {cite}`fan2017smeasure`.
# - R. Achanta et al., Frequency-tuned salient region detection, CVPR 2009 (F-β with β² = 0.3 and
#   the adaptive threshold) {cite}`achanta2009frequency`.
# - Y. Pang, PySODMetrics, the metric conventions we follow {cite}`pysodmetrics`.

# %%
print(pb.runtime.env_report(T0, SCALE, DEVICE))
