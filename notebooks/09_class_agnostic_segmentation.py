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
# A segmentation loss that reads the ground truth only as a partition of the image, so that it
# trains the same whether the regions' labels are right or wrong. Cross-entropy asks every pixel to
# put its mass on *the* channel of its class, so it needs the same label → channel convention in
# every image of the training set; swap the salient and the background label in half of the
# images and it has nothing left to learn. The *class-agnostic segmentation* (CAS) loss of
# {cite:t}`sharma2021cas` asks the network's softmax output to be constant on each region and
# different between regions, whatever the regions are called. This chapter derives it from the
# region energies of classical segmentation with the roles of image and partition swapped, checks
# every step numerically — including the bounds, which the paper states wrongly — and trains two
# networks (a small FCN and a torchvision ResNet-FCN) with cross-entropy, with cross-entropy
# minimised over labellings, and with CAS, on correct labels and on labels swapped in half of the
# images. The paper's claims — CAS trains the same with wrong and right labels, beats
# cross-entropy by a wide margin when the labels are wrong, matches it when they are right, and is
# robust to class imbalance — are written as claims with margins before a multi-seed experiment
# and decided on its results, whatever they say: {glue:text}`ch9_claims_hold` of
# {glue:text}`ch9_claims_n` hold. One problem the paper
# leaves open — which output channel holds the object — matters on the smaller network, and a
# label-free read-out that decides it per image solves it in our scenes.
#
# **Source:** A. Sharma, N. Khan, M. Mubashar, G. Sundaramoorthi, P. Torr, *Class-Agnostic
# Segmentation Loss and Its Application to Salient Object Detection and Segmentation*
# {cite:p}`sharma2021cas` (Eqs. 1–3, Tables 1–3).
#
# *Local notation:* $N$ is the number of regions of a ground-truth partition and $M$ the number of
# softmax channels, $\mathbf s(x)$ the softmax output at pixel $x \in \Omega$, as in the paper's
# Eq. 1; elsewhere the book writes $J$, $C$ and $\mathbf p_i$ ($N$ is not a batch here).

# %% tags=["hide-cell"]
# Setup, written by `tools/nbtools.py sync` from _config.yml: on Colab, install
# pixelbook from the repository; elsewhere it is already installed (see "How to run").
import sys

if "google.colab" in sys.modules:
    import subprocess

    package = "pixelbook[colab] @ git+https://github.com/pixelbook-org/pixelbook@main"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["hide-cell"]
import itertools
import math
import os
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from myst_nb import glue

import pixelbook as pb
from pixelbook.cas import (CASLoss, cas_bounds, cas_loss, cas_terms, match_channels,
                           permute_region_labels)
from pixelbook.losses import SymmetricCrossEntropy, symmetric_cross_entropy
from pixelbook.metrics import matched_iou
from pixelbook.ops import canonical_regions, region_stats
from pixelbook.data.saliency import make_texture_mosaics
from pixelbook.experiments.cas import READOUT_FAILURES, READOUT_OK, border_readout
from pixelbook.training import TrainConfig, iterate_batches, train_or_load

# %matplotlib inline
pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke|small|medium|full|auto
SEED = 0
DEVICE = "auto"
ALPHA = 0.1  # [CAS, §6]: "α was set to 0.1" (the official code: 0.5)
SWAP_P = 0.5  # [CAS, §5]: "probability of incorrect region label of 0.5", per image

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()
if DEVICE.type == "cpu":
    # ours: the tensors are tiny (32 x 32 images, losses over a few regions); on a
    # 2-core machine a second thread cost more than it gained (smoke run: 45 s of CPU
    # with two threads, 10 s with one)
    torch.set_num_threads(1)
EXP = pb.experiments.get("09_class_agnostic_segmentation")
OVERRIDES = {"loss": {"alpha": ALPHA}, "data": {"swap_p": SWAP_P}}  # this run's α, p
SYNTHETIC = SCALE != "full"  # full: DUTS-TR and the paper's seven test sets
print(f"scale {SCALE}, device {DEVICE}, seed {SEED}")

# %% tags=["remove-cell"]
# the sizes of this run, quoted by the note below
for net in ("fcn", "resnet"):
    cfg = EXP.run_config(f"{net}_ce_hfd", SEED, SCALE, OVERRIDES)
    n = cfg.data["n_train"] if SYNTHETIC else 0  # full: a split of MSRA-B
    steps = cfg.train.epochs * n // cfg.train.batch_size
    glue(f"ch9_run_steps_{net}", steps, display=False)
glue("ch9_run_n_train", cfg.data["n_train"] if SYNTHETIC else 0, display=False)
glue("ch9_run_size", cfg.data["size"], display=False)

# %% [markdown]
# ```{admonition} How this chapter is sized
# :class: note
# The `small` scale must run in 120 s on a 2-core CPU. It trains each of the experiment's eight
# loss/label/network combinations once (one seed), here on {glue:text}`ch9_run_n_train` images
# of {glue:text}`ch9_run_size` × {glue:text}`ch9_run_size` pixels (the paper uses 256 × 256), for
# {glue:text}`ch9_run_steps_fcn` steps of batch 16 (small FCN) or
# {glue:text}`ch9_run_steps_resnet` (ResNet-FCN, whose step costs several times more): a live
# demonstration, too short and too small to decide anything. The claims are decided on the
# `medium` experiment (`pixelbook/experiments/cas.py`): the same code with four times the data,
# trained to convergence, {glue:text}`ch9_med_seeds:d` seeds, run once by `make results` and committed under
# `results/09_class_agnostic_segmentation/`; this notebook loads those results (§16). Two exact
# invariances proven below save runs: CAS and the symmetrised cross-entropy give *bit-identical*
# training runs on swapped and unswapped labels, so each is trained once per seed (the identity
# is checked in §14). The ResNet-FCN is torchvision's `FCN` with a ResNet trunk cut to its first
# two stages, randomly initialised as in the paper ("no pre-training").
# ```

# %% [markdown]
# ## 1. Cross-entropy needs a label → channel convention
#
# With softmax outputs $\mathbf s(x)\in\Delta^{M-1}$ and labels $y(x)\in\{0,\dots,M-1\}$ on the
# pixel grid $\Omega$ of $P$ pixels,
#
# $$\mathcal L_{\text{ce}}(\mathbf s, y) = -\frac{1}{P}\sum_{x\in \Omega}\log s^{y(x)}(x).$$
#
# The label value *is* a channel index: the convention "salient = 1" must hold in every image.
# In the paper's low-fidelity setting (LFD) "the probability of incorrect class labels is 0.5"
# and "the noise is for the region label and not pixel wise label"; we read it as: each training
# image's two region labels are swapped ($y \to 1-y$) with probability $p = 0.5$, independently
# of the image. A pixel whose true class is $k$ then carries label $k$ or $1-k$ with equal odds
# whatever it looks like, so the best any network can output is the minimiser of the expected
# loss
#
# $$\tfrac12\big(-\log s^k - \log s^{1-k}\big) = -\tfrac12\log\big(s^k(1-s^k)\big) \;\ge\; \ln 2,$$
#
# with equality iff $s^k = \tfrac12$ (since $s(1-s)\le\tfrac14$). Cross-entropy under 50 % swaps
# is minimised by the uninformative output $(\tfrac12, \tfrac12)$ everywhere, at the loss $\ln 2$.

# %% tags=["nbval-check-output"]
s = torch.linspace(1e-4, 1 - 1e-4, 20001, dtype=torch.float64)
expected = -0.5 * (s.log() + (1 - s).log())
s_best, e_best = float(s[expected.argmin()]), float(expected.min())
assert abs(s_best - 0.5) < 1e-4 and abs(e_best - math.log(2)) < 1e-8
# and for a whole random prediction field: the swap-averaged CE never goes below ln 2
g = torch.Generator().manual_seed(0)
logits = torch.randn(8, 2, 16, 16, generator=g, dtype=torch.float64)
y = torch.randint(0, 2, (8, 16, 16), generator=g)
swap_avg = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits, 1 - y))
assert swap_avg >= math.log(2)
print(f"min over s of the swap-averaged CE: {e_best:.6f} at s = {s_best:.4f}; "
      f"ln 2 = {math.log(2):.6f}; on a random field: {float(swap_avg):.4f}")

# %% [markdown]
# ## 2. The brute-force fix: minimise cross-entropy over labellings
#
# If the label values are arbitrary, score each image under its most favourable labelling. With
# $N$ regions $r_1,\dots,r_N$ (the sets of pixels sharing a label) and $M\ge N$ channels,
#
# $$\mathcal L_{\text{sym}} = \min_{\pi}\; -\frac{1}{P}\sum_{k=1}^{N}\sum_{x\in r_k}\log s^{\pi(k)}(x),$$
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
    """min over relabellings of the full cross-entropy, per image (the definition)."""
    out = []
    for z, yb in zip(logits, labels):
        ids, n = canonical_regions(yb[None])
        perms = itertools.permutations(range(z.shape[0]), int(n))
        out.append(min(F.cross_entropy(z[None], torch.tensor(p)[ids]) for p in perms))
    return torch.stack(out).mean()


g = torch.Generator().manual_seed(2)
timings = []
for N in (2, 3, 4, 5, 6):
    z = torch.randn(2, N, 48, 48, generator=g, dtype=torch.float64)
    yN = torch.randint(0, N, (2, 48, 48), generator=g)
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
f_img = torch.rand(3, 20, 20, generator=g, dtype=torch.float64)  # a fixed "image"
part = torch.randint(0, 3, (20, 20), generator=g)                # a fixed partition
for v in range(3):
    r = part == v
    fr = f_img[:, r]
    mean = fr.mean(1, keepdim=True)
    delta = torch.randn(3, 1, generator=g, dtype=torch.float64)
    e0, e1 = ((fr - mean) ** 2).sum(), ((fr - mean - delta) ** 2).sum()
    # the mean is the best constant: any other costs |r| ||δ||² more
    torch.testing.assert_close(e1 - e0, r.sum() * (delta ** 2).sum())
print("E(mean + δ) - E(mean) = |r| ||δ||² on every region: checked")

# %% [markdown]
# ## 4. The uniformer alone collapses
#
# Chan–Vese cannot cheat: its image is fixed. A network can: any **constant** output has
# $U = 0$, the global minimum, whatever the partition. Training with the uniformer alone
# ($\alpha = 1$ in Eq. 1 below) finds that solution: extension E.2 trains the small FCN so and
# its saliency map is flat. The cure is a term that keeps the region means apart.
#
# ## 5. The separation term and the CAS loss (Eq. 1)
#
# The **discriminator** $D=\sum_{i}\sum_{j\ne i}\|\hat{\mathbf s}_i-\hat{\mathbf s}_j\|^2$
# rewards region means that differ, and the CAS loss weighs the two terms by $\alpha\in[0,1]$:
#
# $$\mathcal L_{\text{cas}} = \sum_{i=1}^N \int_{r_i} \frac{\alpha\,\|\mathbf s(x) - \hat{\mathbf s}(r_i)\|_2^2}{|r_i|}\,dx
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
        U = sum(((s_b[:, r] - mu[:, None]) ** 2).sum() / r.sum()
                for r, mu in zip(regions, means))
        D = sum(((mi - mj) ** 2).sum() for i, mi in enumerate(means)
                for j, mj in enumerate(means) if i != j)
        losses.append(alpha * U - (1 - alpha) * D)
    return torch.stack(losses).mean()


g = torch.Generator().manual_seed(5)
probs = torch.randn(4, 3, 12, 12, generator=g, dtype=torch.float64).softmax(1)
labels = torch.randint(0, 3, (4, 12, 12), generator=g)
torch.testing.assert_close(cas_inline(probs, labels, ALPHA),
                           cas_loss(probs, labels, ALPHA))
relabelled = torch.tensor([10, 3, -7])[labels]  # any values, any order
assert torch.equal(cas_loss(probs, labels, ALPHA), cas_loss(probs, relabelled, ALPHA))
assert torch.equal(cas_loss(probs, labels, ALPHA), cas_loss(probs, 2 - labels, ALPHA))
print(f"Eq. 1 inline = package = {float(cas_loss(probs, labels, ALPHA)):.6f}; "
      "relabelled: identical bits")

# %% [markdown]
# ```{warning}
# The official code (`cas.py` in the authors' repository) differs from Eq. 1: its uniformer is
# the variance of the **foreground region only**, its discriminator counts the single pair
# **once**, and it uses $\alpha = 0.5$ and a learning rate of $10^{-4}$ where the paper says 0.1
# and $10^{-3}$. Its loss is therefore *not* invariant to swapping the labels, the very property
# the paper relies on. `pixelbook` implements both (`variant="paper"` and `variant="official"`);
# this chapter trains the paper's. See the [errata](../book/errata.md).
# ```

# %%
g = torch.Generator().manual_seed(6)
yb = torch.randint(0, 2, (4, 12, 12), generator=g)
p2 = torch.randn(4, 2, 12, 12, generator=g, dtype=torch.float64).softmax(1)
official = [float(cas_loss(p2, t, 0.5, variant="official")) for t in (yb, 1 - yb)]
paper = [float(cas_loss(p2, t, 0.5)) for t in (yb, 1 - yb)]
assert official[0] != official[1] and paper[0] == paper[1]
print(f"official variant: {official[0]:.5f} vs {official[1]:.5f} after the swap; "
      f"Eq. 1: {paper[0]:.5f} both ways")

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
# $$-2(1-\alpha)N(N-1) \;\le\; \mathcal L_{\text{cas}} \;\le\; \alpha N\big(1-\tfrac1M\big),$$
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
g = torch.Generator().manual_seed(7)
worst = []
for N, M in [(2, 2), (2, 5), (3, 3), (4, 2), (4, 6)]:
    for temperature in (0.1, 1.0, 10.0):
        z = torch.randn(200, M, 6, 6, generator=g, dtype=torch.float64)
        sN = (z / temperature).softmax(1)
        yN = torch.randint(0, N, (200, 6, 6), generator=g)
        yN.view(200, -1)[:, :N] = torch.arange(N)  # every region present
        U, D = cas_terms(sN, yN)
        loss = cas_loss(sN, yN, ALPHA, reduction="none")
        lo_N, hi_N = cas_bounds(N, M, ALPHA)
        assert float(U.max()) <= N * (1 - 1 / M) and float(D.max()) <= 2 * N * (N - 1)
        assert lo_N <= float(loss.min()) and float(loss.max()) <= hi_N
        worst.append((N, M, temperature, float(loss.min()), float(loss.max()),
                      lo_N, hi_N))
print(f"perfect 2-region segmentation: {perfect:.4f} = lower bound {lo}; "
      f"the paper's stated minimum {-(1 - ALPHA) * 2:.2f}")
print("N M   T   min CAS   max CAS    bounds")
for N, M, T, a, b, l, h in worst[::3]:
    print(f"{N} {M} {T:4.1f} {a:8.3f} {b:8.3f}   [{l:.2f}, {h:.2f}]")
glue("ch9_perfect_cas", perfect, display=False)

# %% [markdown]
# Random outputs stay well inside the interval; only a segmentation reaches its floor. Does
# gradient descent find the vertices? In {numref}`fig-ch9-simplex`, free logits (one per pixel and
# channel, no network) are optimised with Adam on a three-region partition, and the three region
# means are traced on the 2-simplex. With $M=3$ channels a run can also stall with two regions
# sharing a vertex — a first-order stationary point, $D = 8$ instead of 12 (loss $-7.2$ instead of
# $-10.8$) — which is why the sparsity test of the package uses two regions.

# %%
def simplex_xy(p):
    """Barycentric (…, 3) -> 2-D points of an equilateral triangle."""
    corners = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]],
                           dtype=p.dtype)
    return p @ corners


def free_logit_run(seed, N=3, M=3, steps=150, lr=0.2):
    """Adam on free logits under Eq. 1: the region means after each step, the loss."""
    gen = torch.Generator().manual_seed(seed)
    y3 = torch.randint(0, N, (1, 12, 12), generator=gen)
    y3.view(1, -1)[:, :N] = torch.arange(N)
    z = 0.3 * torch.randn(1, M, 12, 12, generator=gen, dtype=torch.float64)
    z.requires_grad_()
    opt = torch.optim.Adam([z], lr=lr)
    path = []
    for _ in range(steps):
        opt.zero_grad()
        loss = cas_loss(z.softmax(1), y3, ALPHA)
        loss.backward()
        opt.step()
        path.append(region_stats(z.detach().softmax(1), y3).means[0])
    return torch.stack(path), float(loss.detach())


# %%
fig, axes = plt.subplots(1, 3, figsize=(6.2, 2.3))
finals = []
triangle = simplex_xy(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]))
for ax, seed in zip(axes, (0, 1, 2)):
    path, final = free_logit_run(seed)
    finals.append(final)
    ax.plot(*triangle.T, "k-", lw=0.8)
    for i, c in enumerate(("tab:blue", "tab:orange", "tab:green")):
        xy = simplex_xy(path[:, i])
        ax.plot(xy[:, 0], xy[:, 1], color=c, lw=1.2)
        ax.plot(xy[-1, 0], xy[-1, 1], "o", color=c)
    ax.set_title(f"seed {seed}: CAS = {final:.2f}")
    ax.set_aspect("equal")
    ax.axis("off")
# every run reached a vertex configuration (-7.2 or -10.8)
assert all(f < -7.0 for f in finals)
print("final losses:", [round(f, 3) for f in finals],
      "; optimum", cas_bounds(3, 3, ALPHA)[0])
pb.widgets.show(fig, glue="ch9_fig_simplex")

# %% [markdown]
# ```{glue:figure} ch9_fig_simplex
# :name: fig-ch9-simplex
# :alt: Three region means moving to three corners of a triangle under Adam, for three seeds
#
# The three region means of a three-region partition on the 2-simplex (the triangle), while free
# logits are optimised under Eq. 1 ($\alpha = 0.1$); dots mark the end. Each mean moves to a
# corner of its own: the one-hot optimum of §6.
# ```

# %% [markdown]
# ## 7. The gradient (Eq. 2), simplified
#
# The paper's Eq. 2 differentiates Eq. 1 through $\mathbf s(x)$ and through the means
# $\nabla\hat{\mathbf s}_i = \frac1{|r_i|}\sum_{x\in r_i}\nabla\mathbf s(x)$. The uniformer's
# second part vanishes, because $\sum_{x\in r_i}(\mathbf s(x)-\hat{\mathbf s}_i) = 0$, which
# leaves, for a pixel $x$ in region $r_i$,
#
# $$\frac{\partial\,\mathcal L_{\text{cas}}}{\partial\mathbf s(x)} = \frac{1}{|r_i|}\Big[2\alpha\big(\mathbf s(x)-\hat{\mathbf s}_i\big)
# - 4(1-\alpha)\sum_{j\ne i}\big(\hat{\mathbf s}_i-\hat{\mathbf s}_j\big)\Big].$$
#
# The 4 is $2\times2$: the square, and each pair counted twice. Checked against autograd:

# %%
g = torch.Generator().manual_seed(8)
sg = torch.randn(1, 3, 10, 10, generator=g, dtype=torch.float64).softmax(1)
sg.requires_grad_()
yg = torch.randint(0, 3, (1, 10, 10), generator=g)
cas_loss(sg, yg, ALPHA).backward()
st = region_stats(sg.detach(), yg)
mu_px = st.means[0][st.ids[0]].permute(2, 0, 1)
# Σ_j (μ_i - μ_j) at every pixel of region i
push = (3 * st.means[0] - st.means[0].sum(0))[st.ids[0]].permute(2, 0, 1)
size = st.sizes[0][st.ids[0]]
closed = (2 * ALPHA * (sg.detach()[0] - mu_px) - 4 * (1 - ALPHA) * push) / size
torch.testing.assert_close(sg.grad[0], closed, rtol=0, atol=1e-14)
gap = float((sg.grad[0] - closed).abs().max())
print(f"autograd = closed form (max difference {gap:.1e})")

# %% [markdown]
# ## 8. A pairwise metric-learning loss, computed in linear time
#
# The paper presents CAS as metric learning "without adding any computation overhead". The
# identities behind that: a region's variance is half the mean squared distance between its
# pixel pairs, $V_i = \frac{1}{2|r_i|^2}\sum_{x,y\in r_i}\|\mathbf s(x)-\mathbf s(y)\|^2$, and the
# mean squared distance between the pixels of two regions is
# $C_{ij} = \|\hat{\mathbf s}_i-\hat{\mathbf s}_j\|^2 + V_i + V_j$. Substituting,
#
# $$\mathcal L_{\text{cas}} = \big[\alpha + 2(1-\alpha)(N-1)\big]\sum_i V_i \;-\; (1-\alpha)\sum_{i\ne j} C_{ij}:$$
#
# a size-normalised "pull pixels of a region together, push pixels of different regions apart"
# loss over **all** $O(P^2)$ pixel pairs, summed exactly through $O(P)$ region statistics.

# %%
g = torch.Generator().manual_seed(9)
sp = torch.randn(1, 4, 16, 16, generator=g, dtype=torch.float64).softmax(1)
yp = torch.randint(0, 3, (1, 16, 16), generator=g)
x = sp[0].reshape(4, -1).T
lab = yp.reshape(-1)
d2 = torch.cdist(x, x) ** 2  # all P² pairs
C = torch.stack([torch.stack([d2[lab == i][:, lab == j].mean() for j in range(3)])
                 for i in range(3)])
V = C.diagonal() / 2
pairwise = ((ALPHA + 2 * (1 - ALPHA) * 2) * V.sum()
            - (1 - ALPHA) * (C.sum() - C.diagonal().sum()))
torch.testing.assert_close(cas_loss(sp, yp, ALPHA), pairwise, rtol=0, atol=1e-13)
cost = []
for side in (16, 32, 48):
    xs = torch.randn(1, 2, side, side, generator=g).softmax(1)
    ys = (torch.rand(1, side, side, generator=g) > 0.5).long()
    t = time.perf_counter()
    cas_loss(xs, ys, ALPHA)
    t_cas = time.perf_counter() - t
    t = time.perf_counter()
    flat = xs[0].reshape(2, -1).T
    torch.cdist(flat, flat).pow(2).sum()
    cost.append((side * side, t_cas, time.perf_counter() - t))
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
g = torch.Generator().manual_seed(10)
sz = torch.randn(1, 2, 1, 40, generator=g, dtype=torch.float64).softmax(1)
yz = torch.zeros(1, 1, 40, dtype=torch.long)
yz[..., :6] = 1  # a small region of 6 pixels


def region_gradient_mass(loss_fn, k):
    """Duplicate the small region k times: the loss, and the summed gradient over it."""
    s_big = torch.cat([sz] + [sz[..., :6]] * (k - 1), dim=-1).requires_grad_()
    y_big = torch.cat([yz] + [yz[..., :6]] * (k - 1), dim=-1)
    loss = loss_fn(s_big, y_big)
    loss.backward()
    return float(loss.detach()), s_big.grad[0, :, 0][:, y_big[0, 0] == 1].sum(1)


rows = []
for k in (1, 2, 8):
    l_cas, g_cas = region_gradient_mass(lambda p, t: cas_loss(p, t, ALPHA), k)
    l_ce, g_ce = region_gradient_mass(
        lambda p, t: F.nll_loss(p.log(), t, reduction="sum"), k)
    rows.append((k, l_cas, float(g_cas.norm()), float(g_ce.norm())))
print(" k   CAS loss   |grad over region|: CAS      CE (summed)")
for k, l, a, b in rows:
    print(f"{k:2d} {l:10.6f} {a:22.6f} {b:12.4f}")
assert max(abs(r[1] - rows[0][1]) for r in rows) < 1e-12
assert max(abs(r[2] - rows[0][2]) for r in rows) < 1e-12
assert abs(rows[2][3] / rows[0][3] - 8) < 1e-9

# %% [markdown]
# Equal weight for the small region is not the same as a better segmentation of it. Like any
# class-balanced loss, it moves the operating point toward the small class: more of the object is
# found (recall up), more background is taken for object (precision down), and overlap scores at
# a fixed threshold need not improve. §16 measures this on small objects.
#
# ## 10. Reading a channel out of a permutation-invariant loss
#
# Eq. 1 is also invariant to permuting the output channels (it only uses distances between
# means), so nothing decides which channel ends up "salient". The paper resolves it after
# training: "We choose the channel for the salient object label by calculating the correlation of
# the output channels with the saliency map on the validation set" — `pb.cas.select_channel`. It
# then thresholds the saliency map $S$ at $T = 2\,\mathrm{mean}(S)$ [CAS, §4.2]. Note what this
# assumes: one channel for all images. CAS itself only asks each image's regions to be separated,
# and the invariance holds **per image**: a network is free to put the object on channel 0 in
# some images and on channel 1 in others — separating object and background by a feature whose
# sign depends on the image ("redder than the rest" puts a red object on one channel and a blue
# one on the other) — and every image still scores perfectly under Eq. 1. Cross-entropy on
# correct labels cannot do this; CAS can.
#
# If that happens, one channel for all images cannot read the model out, however it is chosen.
# What can is a rule that decides **per image** and needs no label at all. We fix one before any
# training: salient objects rarely touch the image border (the *boundary prior* of classical
# saliency {cite}`wei2012geodesic`), so in each image take as "object" the channel that is *least*
# present on a 2-pixel border (`pixelbook.experiments.cas.border_readout`). It is invariant to
# permuting the channels of any image, and it holds in our scenes by construction (objects lie
# inside the image); on real photographs it is a strong but imperfect cue. Every model below is
# scored with both read-outs, cross-entropy's too. How often the object actually lands on the
# paper's channel (the *polarity*) can only be measured with the test masks: it is reported as a
# diagnostic, and used for nothing else.

# %%
perm = torch.tensor([1, 2, 0])
base = cas_loss(probs, labels, ALPHA)
gap = float((cas_loss(probs[:, perm], labels, ALPHA) - base).abs())
assert gap < 1e-15
# per image: swap the channels of half of the images; the border read-out does not move
flip = torch.tensor([True, False, True, False])
p_flip = torch.where(flip[:, None, None, None], probs[:, [1, 0, 2]], probs)
assert torch.equal(border_readout(p_flip), border_readout(probs))
assert float((cas_loss(p_flip, labels, ALPHA) - base).abs()) < 1e-15
print(f"permuting the channels changes CAS by {gap:.1e}; "
      "per-image swaps leave CAS and the border read-out unchanged")

# %% [markdown]
# ## 11. From here on, the package
#
# `pb.cas.CASLoss` takes logits, applies the softmax and computes Eq. 1 per image (options:
# $\alpha$, `variant="official"`, `ignore_index`, the batch reduction);
# `pb.losses.SymmetricCrossEntropy` is §2's baseline; plain cross-entropy is `F.cross_entropy`. The
# chapter's experiment (`pb.experiments.get("09_class_agnostic_segmentation")`) defines its arms
# — each a network, a loss and a label set — its data, training and evaluation once; this
# notebook's `small` runs and the committed `medium` results come from the same code.

# %%
print(CASLoss(alpha=ALPHA), SymmetricCrossEntropy(), sep="\n")
for arm in EXP.arms:
    print(f"{arm.name:16s} {arm.description}")

# %% [markdown]
# ## 12. Data: one salient object among clutter, on real textures
#
# Each synthetic image (`pb.data.saliency.make_saliency_scenes`) is a crop of one of
# scikit-image's textures (`brick`, `grass`, `gravel`) in a washed-out colour, one salient object
# — a disc, square or ellipse filled with a *different* texture in a saturated colour — and four
# small blobs of clutter, also saturated: colour alone does not tell the object from the clutter,
# size and shape do. Images are standardised per channel, as the paper does. The training labels
# come in two versions: **HFD** (correct) and **LFD** (each image's labels swapped with
# probability `SWAP_P`, drawn once). Validation and test labels are always correct. At `full`
# scale the same code loads MSRA-B and the paper's seven test sets instead (§18).

# %%
ARMS = [a.name for a in EXP.arms if a.params["scenes"] == "sod"]  # eight comparisons
CFG = {arm: EXP.run_config(arm, SEED, SCALE, OVERRIDES) for arm in ARMS}
DATA = EXP.load_data(CFG["fcn_ce_hfd"])  # one draw of scenes, shared by the eight arms
if SYNTHETIC:
    TRAIN = DATA["train"]
    fg = TRAIN["labels"].float().mean().item()
    swapped = (TRAIN["labels"] != TRAIN["labels_lfd"]).flatten(1).any(1)
    n_train, n_test = len(TRAIN["image"]), len(DATA["test"]["synthetic"]["image"])
    print(f"{n_train} training images, salient fraction {fg:.3f}, "
          f"swapped in LFD: {swapped.float().mean():.3f}; {n_test} test images")
    glue("ch9_fg_fraction", fg, display=False)
    glue("ch9_swapped_fraction", float(swapped.float().mean()), display=False)

# %% tags=["hide-input"]
if SYNTHETIC:
    shown = [pb.viz.tensor_to_image(img, normalize=True) for img in TRAIN["image"][:6]]
    shown += [pb.viz.colorize_labels(y, num_classes=2) for y in TRAIN["labels"][:6]]
    shown += [pb.viz.colorize_labels(y, num_classes=2) for y in TRAIN["labels_lfd"][:6]]
    rows = ("image", "HFD labels", "LFD labels")
    titles = [t for name in rows for t in [name] + [""] * 5]
    fig = pb.viz.show_grid(shown, ncols=6, size=1.0, titles=titles)
    pb.widgets.show(fig, glue="ch9_fig_scenes")

# %% [markdown]
# ```{glue:figure} ch9_fig_scenes
# :name: fig-ch9-scenes
# :alt: Six synthetic scenes, their correct labels and their labels with half of them swapped
#
# Six training scenes (top; contrast stretched per image), their correct labels (middle: the
# object in the second colour, clutter counts as background) and the labels cross-entropy sees in
# the LFD setting (bottom): in the images whose labels were swapped, the object is labelled 0 and
# everything else 1.
# ```
#
# {numref}`fig-ch9-scenes` shows six of the {glue:text}`ch9_fg_fraction:.0%`-salient scenes.
#
# ## 13. Two networks
#
# A small fully convolutional net (`pb.models.small_fcn`: a stride-2 convolution, three dilated 3×3
# convolutions, a 1×1 classifier, bilinear up-sampling; receptive field 31 pixels) and a
# torchvision ResNet-FCN (`pb.models.resnet_fcn`: torchvision's `FCN` class with `FCNHead` on a
# `ResNet` trunk of `BasicBlock`s cut after its second stage, output stride 8) — the paper's
# `fcn_resnet101`, cut to CPU size (at `full` scale, `fcn_resnet101` itself). Both are randomly
# initialised, as in the paper.

# %%
NETS = {"small FCN": "fcn", "ResNet-FCN": "resnet"}
for label, net in NETS.items():
    n_params = pb.models.count_parameters(EXP.model(CFG[f"{net}_ce_hfd"], DATA))
    print(f"{label:12s} {n_params:>12,d} parameters")
    glue(f"ch9_params_{net}", n_params, display=False)

# %% [markdown]
# ## 14. Training: three losses, right and wrong labels
#
# Every run goes through the experiment, `EXP.run(arm, SEED, SCALE)` (Adam, cosine schedule,
# batch 16; a checkpoint cache keyed by the configuration, so a rerun loads). Cross-entropy is
# trained twice, on HFD and on LFD labels. The symmetrised CE and CAS are trained once, on the LFD
# labels: both are invariant to the swap, so the HFD run is the same run. That is a claim, so it
# is checked on the small FCN — bit for bit, weights after training — before it is used.

# %%
RUNS = {}
for arm in ARMS:
    RUNS[arm] = EXP.run(arm, SEED, SCALE, DEVICE, **OVERRIDES)
    RUNS[arm].model.eval()
print(f"{len(RUNS)} runs in {time.time() - T0:.0f} s since the start")

# %% tags=["nbval-check-output"]
# The swap invariance, checked where it is used: CAS and CACE trained on the HFD labels
# end with the weights of their LFD runs, bit for bit; cross-entropy's two runs differ.
IDENTICAL, ce_same = {}, None
if SYNTHETIC:  # at full scale the check would cost two more trainings of fcn_resnet101
    for arm in ("fcn_cas_lfd", "fcn_cace_lfd"):
        on_hfd = EXP.run(arm, SEED, SCALE, DEVICE, data=OVERRIDES["data"],
                         loss={**OVERRIDES["loss"], "labels": "hfd"})
        a, b = RUNS[arm].model.state_dict(), on_hfd.model.state_dict()
        IDENTICAL[arm] = all(torch.equal(a[k], b[k]) for k in a)
        assert IDENTICAL[arm], f"{arm}: HFD and LFD training diverged"
    a, b = RUNS["fcn_ce_hfd"].model.state_dict(), RUNS["fcn_ce_lfd"].model.state_dict()
    ce_same = all(torch.equal(a[k], b[k]) for k in a)
    assert not ce_same
print("identical weights after HFD and LFD training:", IDENTICAL,
      "; CE identical:", ce_same)

# %% [markdown]
# ## 15. Results of the live run (one seed, `small` scale)
#
# Each model is scored on the held-out scenes (at `full` scale, MSRA-B's test split, the first
# column of the paper's tables): max F-β over 256 thresholds (β² = 0.3, per-image F curves
# averaged, as PySODMetrics {cite}`pysodmetrics` computes it; maps are not min-max normalised per
# image) and MAE on the continuous map (the paper's definition), with the paper's read-out (one
# channel, chosen on the labelled validation images) and with the border read-out of §10;
# *polarity* is the diagnostic of §10, the share of test images whose object lands on the
# paper's channel. One seed at this scale decides nothing — §16 does.

# %% tags=["hide-input"]
LABELS = {"fcn_ce_hfd": "CE, HFD", "fcn_ce_lfd": "CE, LFD", "fcn_cace_lfd": "CACE, LFD",
          "fcn_cas_lfd": "CAS, LFD", "imb_ce": "CE", "imb_cas": "CAS"}
LABELS.update({k.replace("fcn_", "resnet_"): v for k, v in LABELS.items()
               if k.startswith("fcn_")})
COLUMNS = {"val.max_f": "max F", "val.mae": "MAE", "border.max_f": "max F (border)",
           "border.mae": "MAE (border)", "diag.polarity": "polarity"}


def live_table(runs):
    """A markdown table of one seed's runs: a row per arm, a column per metric."""
    head = "| network | loss, labels | " + " | ".join(COLUMNS.values())
    lines = [head + " | train loss |", "|---" * (len(COLUMNS) + 3) + "|"]
    for arm, run in runs.items():
        net = "small FCN" if arm.startswith("fcn") else "ResNet-FCN"
        cells = [f"{run.metrics[k]:.3f}" for k in COLUMNS]
        loss = run.history.last.get("train_loss", float("nan"))
        cells.append(f"{loss:.3f}")
        lines.append(f"| {net} | {LABELS[arm]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


display(Markdown(live_table(RUNS)))
for arm, run in RUNS.items():
    for key in ("val.max_f", "val.mae", "border.max_f", "diag.polarity"):
        name = key.replace(".", "_")
        glue(f"ch9_small_{arm}_{name}", run.metrics[key], display=False)
    glue(f"ch9_small_{arm}_train_loss", run.history.last["train_loss"], display=False)

# %% [markdown]
# Cross-entropy on swapped labels ends at a training loss of
# {glue:text}`ch9_small_fcn_ce_lfd_train_loss:.3f` on the small FCN (ln 2 = 0.693): the
# uninformative optimum of §1 (a little below ln 2 when the drawn swaps are not exactly half of
# the images: here {glue:text}`ch9_swapped_fraction:.1%`). The ResNet-FCN's ends at
# {glue:text}`ch9_small_resnet_ce_lfd_train_loss:.3f`: far below that is possible only by
# fitting which training images were swapped (its receptive field covers the whole image),
# which transfers to nothing (test MAE {glue:text}`ch9_small_resnet_ce_lfd_val_mae:.2f`; at the
# `medium` scale of §16 it reaches {glue:text}`ch9_med_resnet_ce_lfd_val_mae:.2f` ±
# {glue:text}`ch9_med_resnet_ce_lfd_val_mae_sd:.2f`). {numref}`fig-ch9-predictions`
# shows the maps of the small FCN, {numref}`fig-ch9-region-means` where each model puts the two
# region means of every test image.

# %% tags=["hide-input"]
def test_batches(batch_size=100):
    """The main test set in batches (the synthetic scenes, or MSRA-B's test split)."""
    test = DATA["test"]["synthetic"] if SYNTHETIC else next(iter(DATA["test"].values()))
    if SYNTHETIC:
        return iterate_batches(test, batch_size)
    return torch.utils.data.DataLoader(test, batch_size=32, num_workers=4)


def prediction_grid(net, n=6):
    """Images, ground truth and four models' saliency maps (the paper's read-out)."""
    batch = next(iter(test_batches(n)))
    panels = [pb.viz.tensor_to_image(img, normalize=True) for img in batch["image"]]
    panels += [m.float() for m in batch["mask"]]
    titles = ["image"] + [""] * (n - 1) + ["truth"] + [""] * (n - 1)
    for arm in (a for a in ARMS if a.startswith(net)):
        model, channel = RUNS[arm].model, int(RUNS[arm].metrics["val.channel"])
        with torch.no_grad():
            S = model(batch["image"].to(DEVICE)).softmax(1)[:, channel].cpu()
        panels += list(S)
        titles += [LABELS[arm]] + [""] * (n - 1)
    return pb.viz.show_grid(panels, titles=titles, ncols=n, size=0.95)


pb.widgets.show(prediction_grid("fcn"), glue="ch9_fig_predictions")

# %% [markdown]
# ```{glue:figure} ch9_fig_predictions
# :name: fig-ch9-predictions
# :alt: Six test scenes, their masks and the saliency maps of four small-FCN models
#
# Six test scenes (first row), their object masks (second) and the saliency maps of the small FCN
# trained with cross-entropy on correct and on swapped labels, with the symmetrised CE and with
# CAS (one seed, `small` scale), read out on the paper's channel (white = salient). Where CAS's
# map shows the object dark on a light background, the object went to the other channel in that
# image.
# ```

# %% tags=["hide-input"]
@torch.no_grad()
def region_cache(model, channel, n_show=4):
    """Per test image, the read-out channel's mean over background and over object."""
    mu_fg, mu_bg, maps = [], [], []
    for b in test_batches():
        S = model(b["image"].to(DEVICE)).softmax(1)[:, channel].cpu().double()
        G = b["mask"].flatten(1)
        Sf = S.flatten(1)
        mu_fg.append((Sf * G).sum(1) / G.sum(1).clamp_min(1))
        mu_bg.append((Sf * ~G).sum(1) / (~G).sum(1).clamp_min(1))
        maps.append(S[:n_show])
    return {"mu_fg": torch.cat(mu_fg), "mu_bg": torch.cat(mu_bg),
            "maps": torch.cat(maps)[:n_show]}


def add_to_cache(key, run):
    """Everything the region-means figure draws for one trained model, computed once."""
    channel = int(run.metrics["val.channel"])
    CACHE[key] = {**region_cache(run.model.eval(), channel), **run.metrics}


CACHE = {}
for key, arm in {("CE", 0.0): "fcn_ce_hfd", ("CE", SWAP_P): "fcn_ce_lfd",
                 ("CACE", None): "fcn_cace_lfd", ("CAS", ALPHA): "fcn_cas_lfd"}.items():
    add_to_cache(key, RUNS[arm])


# %% tags=["hide-input"]
def region_means_figure(loss="CAS", alpha=ALPHA, p_swap=SWAP_P):
    """Left: each test image's two region means; right: four saliency maps."""
    key = {"CAS": ("CAS", alpha), "CE": ("CE", p_swap), "CACE": ("CACE", None)}[loss]
    c = CACHE[key]
    fig = plt.figure(figsize=(6.2, 2.5))
    ax = fig.add_axes([0.09, 0.17, 0.3, 0.7])
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.scatter(c["mu_bg"], c["mu_fg"], s=6, alpha=0.5)
    ax.plot([0], [1], "k*", ms=9)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="mean of S on background",
           ylabel="mean of S on object")
    title = {"CAS": f"CAS, α = {alpha} (any p)", "CE": f"CE, p = {p_swap}",
             "CACE": "CACE (any p)"}[loss]
    scores = f"max F {c['val.max_f']:.2f}, MAE {c['val.mae']:.2f}"
    ax.set_title(f"{title}\n{scores}", fontsize=9)
    for i in range(len(c["maps"])):
        a = fig.add_axes([0.45 + 0.135 * i, 0.3, 0.125, 0.45])
        a.imshow(c["maps"][i], vmin=0, vmax=1, cmap="gray")
        a.axis("off")
    return fig


settings = [{"loss": "CE", "p_swap": 0.0}, {"loss": "CE", "p_swap": SWAP_P},
            {"loss": "CACE"}, {"loss": "CAS", "alpha": ALPHA}]
four = pb.widgets.panels(region_means_figure, settings, titles=[""] * 4, ncols=1)
pb.widgets.show(four, glue="ch9_fig_region_means")

# %% [markdown]
# ```{glue:figure} ch9_fig_region_means
# :name: fig-ch9-region-means
# :alt: Region means on the simplex and predicted saliency maps of four trained models
#
# Four small-FCN models (one seed, `small` scale), top to bottom: cross-entropy on correct and on
# swapped labels, the symmetrised CE and CAS. Left: each test image's mean read-out over the
# background (x) and over the object (y) — the two region means on the 1-simplex of a
# two-channel softmax; a perfect segmentation sits at the star $(0, 1)$, a collapsed output on the
# diagonal. Right: four test maps.
# ```
#
# In {numref}`fig-ch9-region-means`, cross-entropy with correct labels moves the object's mean up
# and keeps the background's near 0; with half the labels swapped it sits on the diagonal near ½
# (the collapse of §1). The class-agnostic losses separate the two regions of every image; where
# CAS's images sit at *both* ends of the anti-diagonal, $(0, 1)$ and $(1, 0)$, the object went to
# one channel in some images and to the other in the rest — the read-out problem of §10, seen on
# the simplex. In this run the object lands on the paper's channel in
# {glue:text}`ch9_small_fcn_cas_lfd_diag_polarity:.0%` of the test images.

# %% [markdown]
# ## 16. The evidence: `medium` scale, several seeds
#
# The chapter's claims were written, with their margins, in `pixelbook/experiments/cas.py`
# before its `medium` experiment ran (the git history shows them committed first). The margins
# come from the paper's own tables: half of the smallest gap it reports for each comparison
# (FCN-ResNet101, seven test sets), so that our synthetic scenes may show a smaller effect than
# the paper's while the claim still asks for more than noise; a claim must hold on at least 4 of
# the {glue:text}`ch9_med_seeds:d` seeds. The imbalance claims give the direction only, on every seed. Each seed draws its
# own scenes, swaps, initial weights and batch order, shared by the arms of that seed, on four
# times the data of the live run; `python -m pixelbook.run` ran it once, from a clean checkout,
# and committed one file per arm and seed. This notebook does not train those models: it loads
# their results, at any scale.
#
# The budget was fixed before the run on a seed that is not one of the experiment's (seed 100), from its
# training curves only: the small FCN gets {glue:text}`ch9_med_epochs_fcn` epochs and the
# ResNet-FCN {glue:text}`ch9_med_epochs_resnet`, the same for every arm of a network. The small
# FCN needs that many for the imbalance probe, where CAS leaves its starting point late (below);
# the ResNet-FCN's cross-entropy on correct labels still gained until about epoch 30. The whole
# run took {glue:text}`ch9_med_minutes:.0f` minutes of one core.

# %%
RES = pb.results.load_results(EXP.chapter, "medium")
MED_SEEDS = EXP.seeds_for("medium")
MED = {net: RES.record(f"{net}_cas_lfd", MED_SEEDS[0])["config"]
       for net in ("fcn", "resnet")}
MED_MINUTES = sum(r["provenance"]["train_time_s"] + r["provenance"]["eval_time_s"]
                  for r in RES.records) / 60
d, steps = MED["fcn"]["data"], {}
for net, cfg in MED.items():
    steps[net] = cfg["train"]["epochs"] * d["n_train"] // cfg["train"]["batch_size"]
print(f"{len(RES)} runs: {len(EXP.arms)} arms x {len(MED_SEEDS)} seeds; "
      f"{d['n_train']} training and {d['n_test']} test scenes per seed; "
      f"{steps['fcn']} steps (small FCN), {steps['resnet']} (ResNet-FCN); "
      f"{MED_MINUTES:.0f} min of training and evaluation")
for key, value in {"med_seeds": len(MED_SEEDS), "med_n_train": d["n_train"],
                   "med_n_test": d["n_test"], "med_steps_fcn": steps["fcn"],
                   "med_steps_resnet": steps["resnet"], "med_minutes": MED_MINUTES,
                   "med_epochs_fcn": MED["fcn"]["train"]["epochs"],
                   "med_epochs_resnet": MED["resnet"]["train"]["epochs"]}.items():
    glue(f"ch9_{key}", value, display=False)


# %% tags=["hide-input"]
def med_table(arms, columns):
    """A markdown table of the medium results: mean ± standard deviation over seeds."""
    lines = ["| network | loss, labels | " + " | ".join(columns.values()) + " |",
             "|---" * (len(columns) + 2) + "|"]
    for arm in arms:
        net = "small FCN" if arm.startswith(("fcn", "imb")) else "ResNet-FCN"
        cells = [format(RES.summary(arm, m), ".3f") for m in columns]
        lines.append(f"| {net} | {LABELS[arm]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


OWN = {"diag.oracle_max_f": "max F (own polarity)"}
display(Markdown(med_table(ARMS, {**COLUMNS, **OWN})))
for arm in RES.arms:
    for metric in RES.record(arm, MED_SEEDS[0])["metrics"]:
        summary = RES.summary(arm, metric)
        key = f"ch9_med_{arm}_{metric.replace('.', '_')}"
        glue(key, summary.mean, display=False)
        glue(f"{key}_sd", summary.std, display=False)

# %% [markdown]
# The table gives each arm's mean ± standard deviation over the {glue:text}`ch9_med_seeds:d` seeds (500 held-out scenes
# per seed); *max F (own polarity)* reads every test image with the polarity its mask says — it
# uses the test masks, so it is an upper bound for any read-out, a diagnostic and nothing else.
#
# Did they converge? Each history records, after every epoch, max F on the first 128 validation
# scenes (border read-out) and the training loss. {numref}`fig-ch9-convergence` shows the
# curves. Over the last five epochs held-out max F moves by at most
# {glue:text}`ch9_conv_fcn:.3f` (small FCN) and {glue:text}`ch9_conv_resnet:.3f` (ResNet-FCN),
# over all arms and seeds except cross-entropy on swapped labels, whose near-constant maps
# (§1) give a max F that wanders by up to {glue:text}`ch9_conv_ce_lfd:.3f` from epoch to epoch
# with nothing left to learn. The small-object runs settle too (at most
# {glue:text}`ch9_conv_imb:.3f`), CAS's on whatever level it has reached when the learning rate
# runs out.

# %% tags=["hide-input"]
PANELS = {"fcn": ("small FCN", [a for a in ARMS if a.startswith("fcn")]),
          "resnet": ("ResNet-FCN", [a for a in ARMS if a.startswith("resnet")]),
          "imb": ("small objects (small FCN)", ["imb_ce", "imb_cas"])}
fig, axes = plt.subplots(1, 3, figsize=(6.3, 2.5), sharey=True)
conv = {"ce_lfd": 0.0}
for ax, (net, (title, arms)) in zip(axes, PANELS.items()):
    conv[net] = 0.0
    for i, arm in enumerate(arms):
        for seed in MED_SEEDS:
            h = RES.history(arm, seed)
            ax.plot(h["epoch"], h["val_max_f"], color=f"C{i}", lw=0.8, alpha=0.7,
                    label=LABELS[arm] if seed == MED_SEEDS[0] else None)
            change = max(h["val_max_f"][-6:]) - min(h["val_max_f"][-6:])
            key = "ce_lfd" if arm.endswith("ce_lfd") else net
            conv[key] = max(conv[key], change)
    ax.set(xlabel="epoch", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
for key, value in conv.items():
    glue(f"ch9_conv_{key}", value, display=False)
axes[0].set_ylabel("held-out max F (border)")
fig.tight_layout()
pb.widgets.show(fig, glue="ch9_fig_convergence")

# %% [markdown]
# ```{glue:figure} ch9_fig_convergence
# :name: fig-ch9-convergence
# :alt: Held-out max F against the epoch for every arm of the medium run, every seed
#
# Held-out max F (first 128 validation scenes, border read-out) after every epoch of the `medium`
# runs, one line per seed: the small FCN (left), the ResNet-FCN (middle) and the small-object
# probe (right). The small FCN's CACE curves lie under its CE-on-correct-labels curves (see
# below).
# ```
#
# The claims, exactly as they were written before the run (`EXP.claims`), evaluated on these
# results. Each states "arm A beats arm B on a metric by more than a margin on at least $k$ of
# the $n$ seeds"; the cell asserts the verdict recorded in the claim (`expected`), whatever the
# scale of this notebook.

# %%
OUTCOMES = pb.results.evaluate_claims(EXP, RES)
for outcome in OUTCOMES:
    print(outcome, end="\n\n")
    key = f"ch9_claim_{outcome.claim.id}"
    glue(key, outcome.words, display=False)
    glue(f"{key}_wins", outcome.wins, display=False)
    glue(f"{key}_margin", float(outcome.claim.margin), display=False)
glue("ch9_claims_hold", sum(o.holds for o in OUTCOMES), display=False)
glue("ch9_claims_n", len(OUTCOMES), display=False)
for outcome in OUTCOMES:
    outcome.check()

# %% [markdown]
# {glue:text}`ch9_claims_hold` of the {glue:text}`ch9_claims_n` claims hold; the cell asserts
# each verdict as recorded in the claim (`expected=False` for those that do not, set after the
# run — the one field that may change).
#
# - **Swapped labels ruin cross-entropy**: on the ResNet-FCN max F falls from
#   {glue:text}`ch9_med_resnet_ce_hfd_val_max_f:.3f` ± {glue:text}`ch9_med_resnet_ce_hfd_val_max_f_sd:.3f`
#   to {glue:text}`ch9_med_resnet_ce_lfd_val_max_f:.3f` ±
#   {glue:text}`ch9_med_resnet_ce_lfd_val_max_f_sd:.3f` ({glue:text}`ch9_claim_lfd_hurts_ce`).
# - **Under swapped labels CAS beats cross-entropy** on the ResNet-FCN, max F
#   {glue:text}`ch9_med_resnet_cas_lfd_val_max_f:.3f` against
#   {glue:text}`ch9_med_resnet_ce_lfd_val_max_f:.3f` ({glue:text}`ch9_claim_lfd_cas_beats_ce`)
#   and MAE {glue:text}`ch9_med_resnet_cas_lfd_val_mae:.3f` against
#   {glue:text}`ch9_med_resnet_ce_lfd_val_mae:.3f` ({glue:text}`ch9_claim_lfd_cas_beats_ce_mae`).
#   On the small FCN it holds with the paper's read-out only just
#   ({glue:text}`ch9_claim_lfd_cas_beats_ce_fcn`; max F
#   {glue:text}`ch9_med_fcn_cas_lfd_val_max_f:.3f` ±
#   {glue:text}`ch9_med_fcn_cas_lfd_val_max_f_sd:.3f`, a spread that comes from the read-out, see
#   below) and comfortably with the border read-out
#   ({glue:text}`ch9_claim_lfd_cas_beats_ce_fcn_border`; max F
#   {glue:text}`ch9_med_fcn_cas_lfd_border_max_f:.3f` ±
#   {glue:text}`ch9_med_fcn_cas_lfd_border_max_f_sd:.3f`).
# - **The symmetrised CE beats cross-entropy under swapped labels**
#   ({glue:text}`ch9_claim_lfd_cace_beats_ce`; max F
#   {glue:text}`ch9_med_resnet_cace_lfd_val_max_f:.3f`), as the paper's Table 1 shows and its
#   text denies.
# - **CAS does not beat the symmetrised CE**: "CAS beats CACE" {glue:text}`ch9_claim_lfd_cas_beats_cace`.
#   The symmetrised CE is *ahead* on {glue:text}`ch9_ahead_of_cas_resnet_cace_lfd` of the 5
#   seeds, by about as much as cross-entropy on correct labels is (next cell). The paper's
#   Table 1 has CAS ahead by 0.019 to 0.048; we find the opposite sign.
# - **On correct labels CAS stays within 0.048 of cross-entropy**
#   ({glue:text}`ch9_claim_hfd_cas_matches_ce`) — but it is behind on
#   {glue:text}`ch9_ahead_of_cas_resnet_ce_hfd` of the {glue:text}`ch9_med_seeds:d` seeds
#   ({glue:text}`ch9_med_resnet_cas_lfd_val_max_f:.3f` against
#   {glue:text}`ch9_med_resnet_ce_hfd_val_max_f:.3f`): "performs equally well" within the
#   paper's own tolerance, not better.
#
# Why the symmetrised CE does so well here: with two regions, the minimum over the two labellings
# picks, in every image, the labelling that agrees with the network's current convention; once
# the network has one, the loss *is* cross-entropy on the corrected labels. The next cell
# measures it.

# %%
same_run, gap = 0, 0.0
for seed in MED_SEEDS:
    a = RES.history("fcn_cace_lfd", seed)["train_loss"]
    b = RES.history("fcn_ce_hfd", seed)["train_loss"]
    same_run += max(abs(x - y) for x, y in zip(a, b)) < 1e-6
    va = RES.values("resnet_cace_lfd", "val.max_f")[seed]
    gap = max(gap, abs(va - RES.values("resnet_ce_hfd", "val.max_f")[seed]))
print(f"small FCN: CACE on swapped labels retraces CE on correct labels (every "
      f"epoch's loss within 1e-6) on {same_run} of {len(MED_SEEDS)} seeds; ResNet-FCN: "
      f"CACE's max F is within {gap:.4f} of CE on correct labels on every seed")
glue("ch9_cace_same_runs", same_run, display=False)
glue("ch9_cace_resnet_gap", gap, display=False)
cas_r = RES.values("resnet_cas_lfd", "val.max_f")
for other in ("resnet_cace_lfd", "resnet_ce_hfd"):
    ahead = sum(RES.values(other, "val.max_f")[s] > cas_r[s] for s in MED_SEEDS)
    glue(f"ch9_ahead_of_cas_{other}", ahead, display=False)
    print(f"{other} ahead of resnet_cas_lfd (max F) on {ahead} of "
          f"{len(MED_SEEDS)} seeds")

# %% [markdown]
# On {glue:text}`ch9_cace_same_runs` of the {glue:text}`ch9_med_seeds:d` seeds the small FCN's symmetrised-CE run
# retraces cross-entropy on the *correct* labels epoch by epoch (their curves coincide in
# {numref}`fig-ch9-convergence`); on the ResNet-FCN the two end within
# {glue:text}`ch9_cace_resnet_gap:.3f` of each other in max F. In the binary swap setting the
# symmetrised CE undoes the swap; CAS, which replaces the per-pixel likelihood by region
# statistics, pays a small price for doing the same job another way.
#
# Per seed, the read-out diagnostics of the CAS runs (polarity: the share of test images whose
# object lands on the paper's channel; max F with the paper's read-out, the border read-out, and
# each image's own polarity):

# %% tags=["hide-input"]
def polarity_table():
    """Per medium seed, the CAS runs' polarity and max F under each read-out."""
    names = ("polarity", "F paper", "F border", "F own")
    head = " | ".join(f"{n}: {c}" for n in ("FCN", "ResNet") for c in names)
    head = f"| seed | {head} |"
    lines = [head, "|---" * 9 + "|"]
    for seed in MED_SEEDS:
        cells = []
        for net in ("fcn", "resnet"):
            m = RES.record(f"{net}_cas_lfd", seed)["metrics"]
            cells += [f"{m['diag.polarity']:.2f}", f"{m['val.max_f']:.3f}",
                      f"{m['border.max_f']:.3f}", f"{m['diag.oracle_max_f']:.3f}"]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


display(Markdown(polarity_table()))

# %% [markdown]
# The read-out problem, counted. A read-out *fails* on a seed when fewer than
# {glue:text}`ch9_readout_ok:.0%` of that seed's test images are read with the object's polarity
# (`READOUT_OK`, fixed with the claims before the run: an image read inverted scores a per-image
# F near 0, so a tenth of them inverted costs about the LFD claims' margin by itself). The counts
# below were recorded from the results in `READOUT_FAILURES`, beside the claims; the cell
# recounts them from the results and asserts the record.

# %%
FAILS = {}
for arm in ("fcn_ce_hfd", "fcn_cace_lfd", "fcn_cas_lfd",
            "resnet_ce_hfd", "resnet_cace_lfd", "resnet_cas_lfd"):
    for readout, metric in (("val", "diag.polarity"),
                            ("border", "diag.border_polarity")):
        shares = RES.values(arm, metric)
        FAILS[arm, readout] = sum(v < READOUT_OK for v in shares.values())
        glue(f"ch9_fails_{arm}_{readout}", FAILS[arm, readout], display=False)
        glue(f"ch9_polmin_{arm}_{readout}", min(shares.values()), display=False)
        print(f"{arm:16s} {readout:6s} read-out: fails on {FAILS[arm, readout]} of "
              f"{len(shares)} seeds (object's polarity on {min(shares.values()):.1%} "
              f"to {max(shares.values()):.1%} of the test images)")
glue("ch9_readout_ok", READOUT_OK, display=False)
assert FAILS == READOUT_FAILURES, (FAILS, READOUT_FAILURES)

# %% [markdown]
# The paper's read-out fails on {glue:text}`ch9_fails_fcn_cas_lfd_val` of the {glue:text}`ch9_med_seeds:d` seeds of the
# small FCN trained with CAS: there the network put the object on one channel in some test
# images and on the other in the rest (as few as
# {glue:text}`ch9_polmin_fcn_cas_lfd_val:.0%` of the images on the chosen channel), exactly the
# per-image freedom of §10, and one channel for all images cannot read it out. It fails on no
# seed of the ResNet-FCN ({glue:text}`ch9_fails_resnet_cas_lfd_val`), of the symmetrised CE or of
# cross-entropy on correct labels. The border read-out, fixed before the run, fails on no seed
# of any arm (the record the cell above asserts; the small FCN's CAS runs read
# at least {glue:text}`ch9_polmin_fcn_cas_lfd_border:.0%` of their test images with the
# object's polarity) and lifts the small FCN's CAS to max F
# {glue:text}`ch9_med_fcn_cas_lfd_border_max_f:.3f`, level with the own-polarity bound
# ({glue:text}`ch9_med_fcn_cas_lfd_diag_oracle_max_f:.3f`). In these scenes the read-out problem
# is solved by a label-free per-image rule. Two limits: the rule rests on objects that stay off
# the border, which real photographs break often enough (exercise 4); and why the small FCN
# splits its polarity while the ResNet-FCN never does is not settled here (one guess, not
# tested: the small FCN's 31-pixel receptive field sees barely one 32-pixel image, so nothing
# forces one convention across the whole of it).
#
# ### Small objects
#
# The imbalance probe trains the small FCN with cross-entropy and with CAS on correct labels, on
# the same kind of scenes with objects half the size: {glue:text}`ch9_imb_fg:.1%` of the pixels
# are salient instead of {glue:text}`ch9_med_fg:.0%`. Both are read out per image at the border
# (so that a split polarity cannot pass for recall) and scored at their own operating point — the
# argmax of the two channels, $S > 0.5$ — and by max F.

# %% tags=["hide-input"]
IMB_COLUMNS = {"border.recall": "recall (S > ½)",
               "border.precision": "precision (S > ½)",
               "border.predicted": "called salient", "border.max_f": "max F",
               "border.mae": "MAE"}
display(Markdown(med_table(["imb_ce", "imb_cas"], IMB_COLUMNS)))
for arm in ("imb_ce", "fcn_ce_hfd"):
    cfg = EXP.run_config(arm, MED_SEEDS[0], "medium")
    fraction = float(EXP.data(cfg)["test"]["synthetic"]["mask"].float().mean())
    key = {"imb_ce": "ch9_imb_fg", "fcn_ce_hfd": "ch9_med_fg"}[arm]
    glue(key, fraction, display=False)


def first_epoch_above(arm, seed, level=0.5):
    """The first epoch whose held-out max F exceeds `level` ("–" if none)."""
    h = RES.history(arm, seed)
    return next((e for e, f in zip(h["epoch"], h["val_max_f"]) if f > level), "–")


for arm in ("imb_ce", "imb_cas"):
    epochs = [first_epoch_above(arm, seed) for seed in MED_SEEDS]
    print(f"{arm}: first epoch with held-out max F > 0.5, per seed: {epochs}")
    glue(f"ch9_{arm}_escape", ", ".join(map(str, epochs)), display=False)

# %% [markdown]
# The paper argues that CAS "is immune to class imbalance" because every region counts the same,
# however small. We registered three readings of that. One holds: at its own operating point
# cross-entropy is the more precise ({glue:text}`ch9_claim_imb_ce_precision`; precision
# {glue:text}`ch9_med_imb_ce_border_precision:.2f` against
# {glue:text}`ch9_med_imb_cas_border_precision:.2f`). Two do not: CAS finds more of the object
# on only some seeds ({glue:text}`ch9_claim_imb_cas_recall`; recall
# {glue:text}`ch9_med_imb_cas_border_recall:.2f` ±
# {glue:text}`ch9_med_imb_cas_border_recall_sd:.2f` against
# {glue:text}`ch9_med_imb_ce_border_recall:.2f` ±
# {glue:text}`ch9_med_imb_ce_border_recall_sd:.2f`), and its saliency maps are not better
# ({glue:text}`ch9_claim_imb_cas_max_f`; max F
# {glue:text}`ch9_med_imb_cas_border_max_f:.2f` ±
# {glue:text}`ch9_med_imb_cas_border_max_f_sd:.2f` against
# {glue:text}`ch9_med_imb_ce_border_max_f:.2f` ±
# {glue:text}`ch9_med_imb_ce_border_max_f_sd:.2f`). The histories say why
# ({numref}`fig-ch9-convergence`, right): the first epoch at which held-out max F passes 0.5
# is, seed by seed, {glue:text}`ch9_imb_ce_escape` for cross-entropy and
# {glue:text}`ch9_imb_cas_escape` for CAS (– : not within the
# {glue:text}`ch9_med_epochs_fcn` epochs). CAS starts at a saddle — at initialisation the two region
# means nearly coincide, and the discriminator's gradient is proportional to their difference
# (§7), so it starts slowly; with small objects it leaves late or, within this budget, not at
# all (why small objects delay it is not settled here). Equal weights per region do not make the
# small region easy to *find*.
# That is our synthetic probe with one small network; the paper measures no imbalance directly.

# %% [markdown]
# ## 17. The paper's numbers (full scale, quoted)
#
# The paper trains FCN-ResNet101 and DeepLab-v3 at 256 × 256 and tests on seven datasets. Its
# tables, copied from the source (F-β at the adaptive threshold, MAE):
#
# **Paper, Table 1 — low-fidelity training on MSRA-B (labels wrong with probability 0.5), full
# scale:**
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
# F-β 0.903, 0.921, 0.904, 0.906, 0.920 at 2, 5, 10, 30, 50 %; CE 0.903, 0.901, 0.858, 0.647,
# 0.691.
#
# Against these, our `medium` scale is a different experiment: 32 × 32 synthetic scenes, networks
# of {glue:text}`ch9_params_fcn:,` and {glue:text}`ch9_params_resnet:,` parameters, max F instead
# of F at the adaptive threshold (whose value for a near-constant map is 0 by construction,
# `pixelbook/experiments/cas.py` says why). What transfers is the pattern. As in Table 1 vs
# Table 2, swapping half of the labels ruins cross-entropy and leaves CAS and the symmetrised CE
# working; as in Table 2, on correct labels CAS is close to cross-entropy and, here, a little
# behind it. What does not transfer is Table 1's ranking of CAS above the symmetrised CE: on our
# ResNet-FCN the symmetrised CE is ahead on {glue:text}`ch9_ahead_of_cas_resnet_cace_lfd` of 5
# seeds, level with cross-entropy on correct labels. Table 3's flat CAS row is exact here: CAS's training does not depend on the swaps at
# all (§14).
#
# ## 18. Full scale
#
# With `SCALE = "full"` (a GPU), the same experiment trains its eight arms once, with
# torchvision's randomly initialised `fcn_resnet101` in place of the ResNet-FCN and the small FCN
# as it is, at 256 × 256 on MSRA-B's training split, as the paper's Table 1 ("low-fidelity
# training on MSRA-B"; its "6:4" split is the official train + val : test); it reads the channel
# out on MSRA-B's 500 validation images and evaluates on the seven test sets with the same code
# (`pb.data.saliency.SaliencyDataset`, fetched and unpacked through the dataset registry; no
# checksum is published for these archives, and HKU-IS ships as a RAR file that must be unpacked
# by hand — the loader says how).
# The paper's DeepLab-v3 models are not trained. The cell below prints one table per test set.

# %%
if not SYNTHETIC:
    for i, name in enumerate(DATA["test"]):
        prefix = f"{name}:" if i else ""
        lines = ["| arm | " + " | ".join(COLUMNS.values()) + " |", "|---" * 6 + "|"]
        for arm, run in RUNS.items():
            cells = [f"{run.metrics[prefix + k]:.3f}" for k in COLUMNS]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        display(Markdown(f"**{name}**\n\n" + "\n".join(lines)))

# %% [markdown]
# ## Extensions: beyond the paper's claims
#
# ```{admonition} Extensions, not evidence
# :class: important
# The two studies below go past what the paper claims: more regions than two, other swap
# probabilities and other values of α. They run at the live scale with one seed (at `medium`
# scale in a GPU notebook, still one seed), they decide no claim, and their numbers are
# illustrations. At `full` scale they are skipped: they are studies of the synthetic scenes.
# ```
#
# ### E.1 Three regions, labels permuted per image
#
# With more than two regions the symmetrised cross-entropy has $N!$ labellings — cheap with the
# table of §2, but the question is now what each loss *learns*. The multi-region scenes
# (`pb.data.saliency.make_texture_mosaics`) fill each image with three regions, one per texture
# (`brick`, `grass`, `gravel`), each texture with its own hue (jittered): a background and two
# shapes. The HFD label of a region is its texture; the LFD labels permute the three values per
# image, uniformly over all six labellings ($p = 5/6$ of a non-identity permutation). The small
# FCN gets three output channels and the budget of §14. We score each prediction two ways: as a
# **partition** (per image, the best one-to-one matching of channels to regions,
# `pb.metrics.matched_iou`), and as a **labelling** (one channel per texture, chosen on the labelled
# validation images with `pb.cas.match_channels`, then mean IoU over the test set).

# %% tags=["hide-input"]
def train_mosaic(loss_name, labels_name):
    """The small FCN with three channels on the mosaics (the budget of the live run)."""
    torch.manual_seed(SEED)
    model = pb.models.small_fcn(3)
    fn = {"CE": F.cross_entropy, "CACE": SymmetricCrossEntropy(),
          "CAS": CASLoss(alpha=ALPHA)}[loss_name]
    base = CFG["fcn_ce_hfd"].train
    cfg = TrainConfig(epochs=base.epochs, lr=base.lr, batch_size=base.batch_size,
                      seed=SEED, params={"chapter": 9, "extension": "mosaic",
                                         "loss": loss_name, "labels": labels_name,
                                         "alpha": ALPHA, "n": len(MOS["train"])})
    labels = MOS["train_labels"] if labels_name == "hfd" else MOS["lfd"]
    data = {"image": MOS["train"], "labels": labels}
    train_or_load(f"ch9-mosaic-{loss_name}-{labels_name}".lower(), model,
                  lambda m, b: fn(m(b["image"]), b["labels"]), data, cfg, device=DEVICE,
                  verbose=False)
    return model.eval()


@torch.no_grad()
def mosaic_scores(model):
    """Partition mIoU (best matching per image), labelling mIoU (one for all images)."""
    def probs(d):
        return torch.cat([model(b["image"].to(DEVICE)).softmax(1).cpu()
                          for b in iterate_batches({"image": d["image"]}, 100)])
    p_val, p_test = probs(MOS["val"]), probs(MOS["test"])
    assignment = match_channels(p_val, MOS["val"]["labels"], 3)
    pred = p_test[:, assignment].argmax(1)
    labelled = pb.metrics.mean_iou(pred, MOS["test"]["labels"], 3)
    partition = matched_iou(p_test.argmax(1), MOS["test"]["labels"], 3)
    return {"partition": partition, "labelling": float(labelled)}


# %%
MULTI = {}
if SYNTHETIC:
    n_mos = len(DATA["train"]["image"])
    train = make_texture_mosaics(n_mos, 32, seed=4000 + SEED)
    MOS = {"train": train["image"], "train_labels": train["labels"],
           "val": make_texture_mosaics(64, 32, seed=5000 + SEED),
           "test": make_texture_mosaics(200, 32, seed=6000 + SEED)}
    gen = torch.Generator().manual_seed(SEED)
    MOS["lfd"], _ = permute_region_labels(train["labels"], 3, p=5 / 6, generator=gen)
    for loss_name, labels_name in [("CE", "hfd"), ("CE", "lfd"), ("CACE", "lfd"),
                                   ("CAS", "lfd")]:
        model = train_mosaic(loss_name, labels_name)
        MULTI[(loss_name, labels_name)] = mosaic_scores(model)
    print("loss  labels  partition mIoU  labelling mIoU")
    for (loss_name, labels_name), r in MULTI.items():
        print(f"{loss_name:5s} {labels_name.upper():6s} {r['partition']:14.3f} "
              f"{r['labelling']:15.3f}")
        for k, v in r.items():
            glue(f"ch9_mos_{loss_name.lower()}_{labels_name}_{k}", v, display=False)

# %% [markdown]
# Cross-entropy on permuted labels learns nothing: its best output is the uniform one, at the
# loss $\ln 3$, for the reason of §1 (labelling mIoU
# {glue:text}`ch9_mos_ce_lfd_labelling:.2f`, against {glue:text}`ch9_mos_ce_hfd_labelling:.2f` on
# correct labels). The symmetrised CE learns *partitions* (partition mIoU
# {glue:text}`ch9_mos_cace_lfd_partition:.2f` against {glue:text}`ch9_mos_ce_lfd_partition:.2f`
# for CE on permuted labels) but not a *labelling* ({glue:text}`ch9_mos_cace_lfd_labelling:.2f`):
# nothing in the loss ties a texture to a channel across images, so a network that puts "the
# background" on one channel and "the shapes" on the others, whatever their texture, is just as
# good. CAS, with one seed at this budget, reaches a partition mIoU of
# {glue:text}`ch9_mos_cas_lfd_partition:.2f`. A reason to expect it to be slow here, not tested:
# at initialisation the region means nearly coincide, and the discriminator's gradient is
# proportional to their differences (§7) — a saddle that three regions must all leave. This is
# one seed at small scale, not a statement about the paper's multi-region experiments (Tables
# 4–6), which give no training details to reproduce.
#
# ### E.2 How much label noise, and which α
#
# The paper varies the fraction of swapped images (its Table 3: 2–50 %) and $\alpha$ (its Table
# 7, whose numbers are missing from the source). CAS needs no new runs for the first: its
# training is *identical* at every swap probability. Cross-entropy is retrained at $p = 0.1$ and
# $0.25$, and CAS at $\alpha = 0.5$ (the official code's value), $0.9$ and $1$ (the uniformer
# alone, §4), all on the small FCN with the seed and budget of §14.

# %%
SWEEP_P, SWEEP_ALPHA = [0.0, SWAP_P], [ALPHA]
if SYNTHETIC:
    for p in (0.1, 0.25):
        run = EXP.run("fcn_ce_lfd", SEED, SCALE, DEVICE, loss=OVERRIDES["loss"],
                      data={"swap_p": p})
        add_to_cache(("CE", p), run)
    for a in (0.5, 0.9, 1.0):
        run = EXP.run("fcn_cas_lfd", SEED, SCALE, DEVICE, loss={"alpha": a},
                      data=OVERRIDES["data"])
        add_to_cache(("CAS", a), run)
    SWEEP_P = sorted({0.0, 0.1, 0.25, SWAP_P})
    SWEEP_ALPHA = sorted({ALPHA, 0.5, 0.9, 1.0})
    print("CE, by swap probability p        CAS, by alpha")
    for p, a in zip(SWEEP_P, SWEEP_ALPHA):
        c, d = CACHE[("CE", p)], CACHE[("CAS", a)]
        print(f"p = {p:4.2f}: max F {c['val.max_f']:.3f}, MAE {c['val.mae']:.3f}    "
              f"α = {a:3.1f}: max F {d['val.max_f']:.3f}, "
              f"border max F {d['border.max_f']:.3f}")
        glue(f"ch9_sweep_ce_p{round(100 * p)}_maxf", c["val.max_f"], display=False)
        glue(f"ch9_sweep_ce_p{round(100 * p)}_mae", c["val.mae"], display=False)
        glue(f"ch9_sweep_cas_a{round(10 * a)}_maxf", d["border.max_f"], display=False)
    flat = CACHE[("CAS", 1.0)]["maps"].flatten(1).std(1).mean()
    glue("ch9_alpha1_spread", float(flat), display=False)

# %% [markdown]
# What to expect from cross-entropy at a swap probability $p<\tfrac12$ follows from §1: the
# expected loss $-(1-p)\log s^k - p\log(1-s^k)$ is minimised at $s^k = 1-p$ on the true class
# $k$, which still *ranks* every pixel correctly, so the threshold-free max F can stay high
# while MAE grows as the map is pulled towards $1-p$; at $p=\tfrac12$ the ranking is gone. At
# this budget and seed, cross-entropy's max F at $p$ = 0, 0.1, 0.25 and 0.5 is
# {glue:text}`ch9_sweep_ce_p0_maxf:.2f`, {glue:text}`ch9_sweep_ce_p10_maxf:.2f`,
# {glue:text}`ch9_sweep_ce_p25_maxf:.2f` and {glue:text}`ch9_sweep_ce_p50_maxf:.2f` (MAE
# {glue:text}`ch9_sweep_ce_p0_mae:.2f`, {glue:text}`ch9_sweep_ce_p10_mae:.2f`,
# {glue:text}`ch9_sweep_ce_p25_mae:.2f`, {glue:text}`ch9_sweep_ce_p50_mae:.2f`). CAS needs no
# row: its training is the same at every $p$ (the paper's Table 3 shows its row flat up to
# noise, 0.903 to 0.921, and cross-entropy's falling from 0.903 to 0.691). Along $\alpha$ =
# 0.1, 0.5, 0.9 and 1, CAS's max F (border read-out) is {glue:text}`ch9_sweep_cas_a1_maxf:.2f`,
# {glue:text}`ch9_sweep_cas_a5_maxf:.2f`, {glue:text}`ch9_sweep_cas_a9_maxf:.2f` and
# {glue:text}`ch9_sweep_cas_a10_maxf:.2f`; at $\alpha = 1$, the uniformer alone, the maps have
# a mean per-image standard deviation of {glue:text}`ch9_alpha1_spread:.3f` — the collapse of
# §4. One seed at the live scale: an illustration, not evidence.
#
# ### Interactive: α, the swap probability, and where the region means go
#
# {numref}`fig-ch9-explorer` is {numref}`fig-ch9-region-means` for every model trained in this
# notebook: choose the loss, $\alpha$ (CAS only) and $p$ (cross-entropy only; the class-agnostic
# losses are the same model for every $p$). At `full` scale no sweep is trained — each model of
# the sweep would be another day of GPU time on DUTS-TR — so the explorer offers the four models
# of §14 there.

# %%
pb.widgets.explorer(
    region_means_figure,
    {"loss": ["CAS", "CE", "CACE"], "alpha": SWEEP_ALPHA, "p_swap": SWEEP_P},
    active={"alpha": (lambda s: s["loss"] == "CAS", "α weights the CAS loss only"),
            "p_swap": (lambda s: s["loss"] == "CE",
                       "the class-agnostic losses are one model for every p")},
    descriptions={"alpha": "α", "p_swap": "p"}, glue="ch9_fig_explorer",
    alt="Region means and saliency maps of one trained model")

# %% [markdown]
# ```{glue:figure} ch9_fig_explorer
# :name: fig-ch9-explorer
# :alt: Region means and saliency maps of the chosen trained model
#
# The view of {numref}`fig-ch9-region-means` for each model trained in this notebook: choose the
# loss, α (CAS) and the swap probability p (cross-entropy).
# ```

# %% [markdown]
# ## Exercises
#
# 1. Train CAS with `variant="official"` on the LFD labels. Is the training still identical to
#    the HFD run? Which term breaks the symmetry, and does it matter for the read-out?
# 2. Replace the per-image swap by *independent* per-region corruption (each region's label
#    drawn at random). Why does it destroy the partition for CAS too (hint: both regions can get
#    the same label)?
# 3. Give the multi-region model of E.1 four output channels. Does CAS escape the shared-vertex
#    optima of §6 more often? Does the labelling score change?
# 4. The border read-out of §10 fails on objects that touch the border. Design another read-out
#    that decides the polarity per image without labels — the smaller region, or a polarity
#    classifier fitted on the validation images only — and compare it with the border rule and
#    with the "own polarity" bound of §16.
# 5. Derive the gradient of the symmetrised CE at a tie between two labellings. What does
#    `torch.argmax` pick, and does it matter?
#
# ## Summary
#
# - Cross-entropy ties each label value to a channel; with half of the images' labels swapped
#   its best output is the uninformative ½ everywhere (§1), and at `medium` scale it collapses
#   ({glue:text}`ch9_claim_lfd_hurts_ce`).
# - The CAS loss (Eq. 1) is the region energy of Chan–Vese with image and partition swapped: a
#   uniformer that alone collapses and a discriminator that pushes region means to distinct
#   vertices of the simplex. Its correct bounds are $-2(1-\alpha)N(N-1)$ and
#   $\alpha N(1-1/M)$, not the paper's; it is invariant to relabelling, bit for bit, so it
#   trains identically on right and wrong labels.
# - Under swapped labels CAS beats cross-entropy by a wide margin on the ResNet-FCN. On the small
#   FCN the paper's one-channel read-out fails on {glue:text}`ch9_fails_fcn_cas_lfd_val` of 5
#   seeds and the claim holds only narrowly with it
#   ({glue:text}`ch9_claim_lfd_cas_beats_ce_fcn`); the label-free border read-out fails on none
#   in these scenes, and with it the claim holds comfortably.
# - The symmetrised cross-entropy, written as a table over labellings, costs one pass at any
#   number of regions, and in the binary swap setting it *is* cross-entropy on the corrected
#   labels: it beats CAS on {glue:text}`ch9_ahead_of_cas_resnet_cace_lfd` of {glue:text}`ch9_med_seeds:d` seeds here,
#   against the paper's Table 1.
# - On correct labels CAS stays within the paper's tolerance of cross-entropy, a little behind.
#   On small objects it is not "immune to imbalance" in our probe: it leaves its initial saddle
#   late, and its maps beat cross-entropy's on
#   {glue:text}`ch9_claim_imb_cas_max_f_wins` of {glue:text}`ch9_med_seeds:d` seeds.
#
# ## References
#
# - A. Sharma, N. Khan, M. Mubashar, G. Sundaramoorthi, P. Torr, Class-agnostic segmentation
#   loss and its application to salient object detection and segmentation
#   {cite}`sharma2021cas`.
# - T. F. Chan and L. A. Vese, Active contours without edges, IEEE TIP 2001
#   {cite}`chan2001active`.
# - Y. Wei, F. Wen, W. Zhu, J. Sun, Geodesic saliency using background priors, ECCV 2012 (the
#   boundary prior) {cite}`wei2012geodesic`.
# - D.-P. Fan et al., Structure-measure: a new way to evaluate foreground maps, ICCV 2017
#   {cite}`fan2017smeasure`.
# - R. Achanta et al., Frequency-tuned salient region detection, CVPR 2009 (F-β with β² = 0.3 and
#   the adaptive threshold) {cite}`achanta2009frequency`.
# - Y. Pang, PySODMetrics, the metric conventions we follow {cite}`pysodmetrics`.

# %%
print(pb.runtime.env_report(T0, SCALE, DEVICE))
