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
# # Chapter 4. A mutual-information lower bound: the Region Mutual Information loss
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pixelbook-org/pixelbook/blob/main/notebooks/04_region_mutual_information.ipynb)
#
# Pixel-wise cross-entropy scores every pixel on its own, so it cannot tell a thin structure broken
# in one place from the same number of errors scattered about. {cite:t}`zhao2019rmi` represent each
# pixel together with its $R\times R$ neighbourhood as a $d=R^2$ dimensional point, for the label
# map and for the predicted probabilities, and maximise a lower bound on the *mutual information*
# between the two clouds of points: the Region Mutual Information (RMI) loss. We derive the bound
# step by step with a numerical check after each step, find that one of the paper's assumptions is
# not needed, that the bound as written is invalid for discrete labels (a dither repairs it and
# sets the scale of ξ), and that it has a neat canonical-correlation reading; we implement the
# loss in a fast, memory-lean form, train a small DeepLab-style network with softmax CE, sigmoid
# BCE, BCE + RMI and CE + an affinity loss, test the paper's claims on converged models over
# five seeds with margins fixed before the run, reproduce the paper's ablations at small scale,
# and report what does and does not carry over.
#
# **Source:** S. Zhao, Y. Wang, Z. Yang, D. Cai, *Region Mutual Information Loss for Semantic
# Segmentation*, NeurIPS 2019: Eqs. (1)–(16), Theorem 3.1, Tables 1–4. Equation numbers below are
# the paper's. *Local notation:* as in the paper, $N$ counts the pixels in Eq. 1 and $n$ the
# region points, and bold $\boldsymbol Y$, $\boldsymbol P$ are the label and prediction region
# vectors (the book's pixel count $P$ does not appear in this chapter).

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
from IPython.display import Markdown, display
from myst_nb import glue

import pixelbook as pb
from pixelbook import rmi as RMI
from pixelbook.data.segmentation import WIRE_CLASSES, make_wire_scenes
from pixelbook.experiments.rmi import segmentation_scores
from pixelbook.training import TrainConfig, train_or_load

# %matplotlib inline
# %config InlineBackend.figure_format = "png"
pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts
f64 = torch.float64

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke | small | full | auto
SEED = 0
DEVICE = "auto"
RADIUS = 3  # R [RMI, Table 1]
POOL = "avg"  # pooling before RMI: avg (the paper's) | max | interp [RMI, Table 3a]
DF = 2  # down-sampling; paper: 4 on 513-px crops (Table 1); ours: 2 on 40 px (§8)
XI = 1e-6  # ξ [RMI, Sec. 4], on covariances normalised by the number of points (E[·])
CE_WEIGHT = 0.5  # λ_ce in Eq. 16 [RMI, Sec. 4]
ACTIVATION = "sigmoid"  # probabilities for RMI: sigmoid [RMI, Sec. 4] | softmax
AFF_MARGIN = 3.0  # margin of the affinity baseline's separating force (ours)
AFF_WEIGHT = 1.0  # weight of the affinity term added to CE; ours
FULL_DATASET = "voc"  # full scale only: "voc" (PASCAL VOC 2012 + SBD) or "camvid"

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()
if DEVICE.type == "cpu" and SCALE != "full":
    # ours: the small model's tensors are tiny; one thread avoids synchronisation
    # costs that dominate on a shared 2-core machine (2 threads: 5-20x slower per step).
    torch.set_num_threads(1)
SIZE = pb.runtime.scaled(SCALE, smoke=32, small=40, full=40)
N_TRAIN = pb.runtime.scaled(SCALE, smoke=32, small=320, full=320)
N_TEST = pb.runtime.scaled(SCALE, smoke=16, small=128, full=128)
EPOCHS = pb.runtime.scaled(SCALE, smoke=1, small=8, full=8)
SEEDS = pb.runtime.scaled(SCALE, smoke=[0], small=[0, 1, 2], full=[0, 1, 2])
WIDTH = 16  # channels of MiniDeepLab; ours, sized for the 150 s budget of `small`
K = len(WIRE_CLASSES)
print(f"scale={SCALE}, device={DEVICE}, {SIZE}x{SIZE} images, {N_TRAIN} train / "
      f"{N_TEST} test, {EPOCHS} epochs, seeds {SEEDS}")

# %% [markdown]
# ## 1. Cross-entropy is a sum of independent terms
#
# With one-hot labels $y_{n,c}$ and probabilities $p_{n,c}$ over $N$ pixels and $C$ classes,
#
# $$\mathcal L_{ce}(y,p)=-\frac1N\sum_{n=1}^N\sum_{c=1}^C y_{n,c}\log p_{n,c}\qquad\text{[RMI, Eq. 1]}.$$
#
# No term couples two pixels: Eq. 1 is the negative log-likelihood of a model in which the pixels
# are independent given the image. Permuting the pixels of the label map and of the prediction
# together changes nothing, so the loss cannot know whether the errors form a structure. We check
# this on a thin vertical line (label 1 in column 8 of a 16×16 map, predicted 0.9 on the line and
# 0.1 elsewhere) in which four line pixels are predicted 0.2: once as one contiguous gap, once
# scattered along the line.

# %% tags=["nbval-check-output"]
y_line = torch.zeros(1, 1, 16, 16, dtype=f64)
y_line[..., :, 8] = 1


def line_prediction(rows):
    p = torch.full((1, 1, 16, 16), 0.1, dtype=f64)
    p[..., :, 8] = 0.9
    p[..., rows, 8] = 0.2
    return p


p_contig, p_scatter = line_prediction([6, 7, 8, 9]), line_prediction([1, 5, 10, 14])
bce = {k: float(F.binary_cross_entropy(p, y_line))
       for k, p in (("contiguous", p_contig), ("scattered", p_scatter))}
perm = torch.randperm(256, generator=torch.Generator().manual_seed(0))
shuffled = F.binary_cross_entropy(p_contig.flatten()[perm], y_line.flatten()[perm])
assert bce["contiguous"] == bce["scattered"]
assert torch.isclose(shuffled, torch.tensor(bce["contiguous"], dtype=f64))
official = dict(xi=5e-4, normalize=False)  # the official code (§9; note 002 §2.11(8))
toy = {R: [float(RMI.rmi_lower_bound(p, y_line, R, **official))
           for p in (p_contig, p_scatter)] for R in (1, 2, 3)}
assert toy[1][0] == toy[1][1] and toy[3][0] > toy[3][1] + 0.1
glue("ch4_toy_r3_contig", toy[3][0], display=False)
glue("ch4_toy_r3_scatter", toy[3][1], display=False)
print(f"BCE: contiguous {bce['contiguous']:.6f}, scattered {bce['scattered']:.6f} "
      "(equal; also after a joint shuffle)")
for R, (a, b) in toy.items():
    print(f"RMI term, R={R}: contiguous {a:+.5f}, scattered {b:+.5f}")

# %% [markdown]
# Cross-entropy gives both predictions the same value. The RMI term with $R=1$ does too (it sees one
# pixel at a time, §7), but with $R=3$ the contiguous gap costs
# {glue:text}`ch4_toy_r3_contig:.3f` against {glue:text}`ch4_toy_r3_scatter:.3f` for the scattered
# errors (lower is better): a gap that breaks the structure is penalised more.
#
# ## 2. Regions become points in d dimensions
#
# Take one class channel of one image: labels $y\in\{0,1\}^{H\times W}$ and probabilities
# $p\in[0,1]^{H\times W}$. Every valid $R\times R$ window gives a pair of vectors
# $\mathbf y_{ij}=\operatorname{vec}(y[i{:}i{+}R,\,j{:}j{+}R])$ and $\mathbf p_{ij}$ in
# $\mathbb R^{d}$, $d=R^2$ [RMI, Fig. 1]: $n=(H-R+1)(W-R+1)$ samples of a pair of random vectors
# $(\boldsymbol Y,\boldsymbol P)$. The $d$ coordinates are the $R^2$ shifted crops of the map, which is
# also what `F.unfold` computes; `pb.rmi.region_vectors` returns them.

# %% tags=["nbval-check-output"]
x = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(1))
for R in (1, 2, 3):
    hh, ww = 9 - R + 1, 7 - R + 1
    crops = torch.stack([x[:, :, i:i + hh, j:j + ww]
                         for i in range(R) for j in range(R)], 2)
    crops = crops.reshape(2, 3, R * R, -1)
    assert torch.equal(RMI.region_vectors(x, R), crops)
    assert torch.equal(F.unfold(x.reshape(6, 1, 9, 7), R).reshape(2, 3, R * R, -1),
                       crops)
    print(f"R={R}: d={R * R}, n={hh * ww} points per 9x7 map; slicing == unfold")

# %% [markdown]
# ## 3. Mutual information and differential entropy
#
# For discrete variables, $H(X)=-\sum_x p(x)\log p(x)$, the joint and conditional entropies follow
# [RMI, Eqs. 2–5], and
#
# $$I(X;Y)=\sum_{x,y}p(x,y)\log\frac{p(x,y)}{p(x)p(y)}=H(X)-H(X|Y)=H(Y)-H(Y|X)\qquad\text{[RMI, Eqs. 6–7]}.$$
#
# For the continuous vectors of §2 the sums become integrals with densities
# [RMI, Eq. 8], and the entropy of a Gaussian $\mathcal N(\mu,\Sigma)$ in $\mathbb R^d$ is
# $\tfrac12\log\big((2\pi e)^d\det\Sigma\big)$. We check Eq. 7 on a random joint distribution and the
# Gaussian entropy by Monte Carlo, $h=-\mathbb E[\log f(X)]$.

# %%
g = torch.Generator().manual_seed(2)
pxy = torch.rand(4, 5, generator=g, dtype=f64)
pxy /= pxy.sum()
px, py = pxy.sum(1), pxy.sum(0)
H = lambda q: float(-(q * q.log()).sum())  # noqa: E731
mi_def = float((pxy * (pxy / (px[:, None] * py[None])).log()).sum())
assert abs(mi_def - (H(px) + H(py) - H(pxy))) < 1e-12
# H(X) - H(X|Y), with H(X|Y) = H(X,Y) - H(Y)
assert abs(mi_def - (H(px) - (H(pxy) - H(py)))) < 1e-12

d = 4
A = torch.randn(d, d, generator=g, dtype=f64)
Sigma = A @ A.T + 0.5 * torch.eye(d, dtype=f64)
gauss = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=f64), Sigma)
h_mc = float(-gauss.log_prob(gauss.sample((200_000,))).mean())
h_formula = 0.5 * (d * math.log(2 * math.pi * math.e) + float(torch.logdet(Sigma)))
assert abs(h_mc - h_formula) < 0.02  # Monte-Carlo s.e. ~ sqrt(d/2 / 2e5) ~ 0.003
print(f"I(X;Y) = {mi_def:.6f} from Eq. 6 and from Eq. 7; Gaussian entropy: "
      f"formula {h_formula:.4f}, Monte Carlo {h_mc:.4f}")

# %% [markdown]
# ## 4. Why not assume the points are Gaussian?
#
# If $(\boldsymbol Y,\boldsymbol P)$ were jointly Gaussian, the mutual information would have a closed
# form. The paper cites the argument that region vectors of grey images become Gaussian for large
# $R$, but reports that this needs $R\ge 30$, i.e. $d\ge 900$, and the memory is then out of reach
# [RMI, Sec. 3]. There is a more basic obstacle for labels: $\boldsymbol Y$ is *discrete* — a $3\times3$
# binary patch takes at most $2^9=512$ values — so it has no density and no finite differential
# entropy at all. We count the patterns that occur in the wire class of our training data (§10), and
# compute the memory for the paper's batch (16 crops of 513×513, 21 classes).

# %% tags=["nbval-check-output"]
demo = make_wire_scenes(64, size=40, seed=0, split="train")
wire_map = (demo["labels"] == 2).to(f64)[:, None]
wire_patches = RMI.region_vectors(wire_map, 3)  # (64, 1, 9, points)
patterns = torch.unique(wire_patches.permute(0, 1, 3, 2).reshape(-1, 9), dim=0)
GiB = 2 ** 30  # the paper's "GB" are binary: 16 x 21 x 513^2 float32 = 0.33 GiB
batch_bytes = 16 * 21 * 513 * 513 * 4  # float32 probabilities [RMI, Sec. 4]
glue("ch4_patterns", int(len(patterns)), display=False)
glue("ch4_mem_gb", batch_bytes / GiB, display=False)
glue("ch4_mem_r3_gb", 9 * batch_bytes / GiB, display=False)
glue("ch4_mem_r30_gb", 900 * batch_bytes / GiB, display=False)
print(f"{wire_patches.shape[-1] * 64} wire-class 3x3 patches take {len(patterns)} "
      "distinct values (of 512)")
print(f"probabilities: {batch_bytes / GiB:.2f} GiB; region vectors R=3: "
      f"{9 * batch_bytes / GiB:.2f} GiB; R=30: {900 * batch_bytes / GiB:.0f} GiB")

# %% [markdown]
# The {glue:text}`ch4_patterns` patterns of a label patch form a lattice of points, nothing like a
# Gaussian; with $R=30$ the region vectors of one batch would need {glue:text}`ch4_mem_r30_gb:.0f` GB
# (the paper's 0.33 GB and 2.97 GB for $R=1$ and $R=3$ check out: {glue:text}`ch4_mem_gb:.2f` and
# {glue:text}`ch4_mem_r3_gb:.2f` GB). So the paper maximises a *lower bound* that holds whatever the
# distribution.
#
# ## 5. A lower bound through the residual covariance
#
# The Gaussian has the largest entropy among all densities with a given covariance:
# for any density $f$ with covariance $\Sigma$ and the Gaussian $\phi_\Sigma$,
# $0\le D(f\,\|\,\phi_\Sigma)=h(\phi_\Sigma)-h(f)$, because $-\int f\log\phi_\Sigma$ depends on $f$
# only through its second moments [Cover & Thomas, Thm 8.6.5]. With $I=H(\boldsymbol Y)-H(\boldsymbol
# Y|\boldsymbol P)$ this gives
#
# $$I(\boldsymbol Y;\boldsymbol P)\ \ge\ H(\boldsymbol Y)-\tfrac12\log\big((2\pi e)^d\det\Sigma_{Y|P}\big)\qquad\text{[RMI, Eq. 9]}.$$
#
# Which covariance? Regress $\boldsymbol Y$ linearly on $\boldsymbol P$:
# $A=\operatorname{Cov}(\boldsymbol Y,\boldsymbol P)\Sigma_P^{-1}$, residual
# $\boldsymbol E=\boldsymbol Y-A\boldsymbol P$. Then $\operatorname{Cov}(\boldsymbol E,\boldsymbol P)=
# \operatorname{Cov}(\boldsymbol Y,\boldsymbol P)-A\Sigma_P=0$, and
#
# $$M=\operatorname{Cov}(\boldsymbol E)=\Sigma_Y-\operatorname{Cov}(\boldsymbol Y,\boldsymbol P)\,\Sigma_P^{-1}\operatorname{Cov}(\boldsymbol Y,\boldsymbol P)^\top\qquad\text{[RMI, Eq. 12]},$$
#
# the Schur complement of $\Sigma_P$ in the joint covariance and the error covariance of the best
# *linear* predictor of $\boldsymbol Y$ from $\boldsymbol P$. The chain
#
# $$H(\boldsymbol Y|\boldsymbol P)=H(\boldsymbol E|\boldsymbol P)\le H(\boldsymbol E)\le\tfrac12\log\big((2\pi e)^d\det M\big)$$
#
# (a shift by $A\boldsymbol p$ for fixed $\boldsymbol p$ keeps the entropy; conditioning reduces it;
# the Gaussian maximises it) gives the bound $I\ge H(\boldsymbol Y)-\tfrac12\log((2\pi e)^d\det M)$.
# We check the two facts the chain uses, then the bound itself: it is *tight* for jointly Gaussian
# data ($\det\Sigma_{(P,Y)}=\det\Sigma_P\det M$), and for $d=1$, $P\sim\mathcal N(0,1)$,
# $Y=P+U$ with $U$ uniform on $[-a,a]$ it falls short by exactly $\tfrac12\ln(\pi e/6)$ for every
# $a$: $I=h(Y)-\ln 2a$ while the bound is $h(Y)-\tfrac12\ln(2\pi e\,a^2/3)$.

# %% tags=["nbval-check-output"]
# (i) the maximum-entropy property: unit-variance uniform and Laplace vs the Gaussian
h_gauss, h_unif = 0.5 * math.log(2 * math.pi * math.e), 0.5 * math.log(12)
h_lap = 1 + math.log(2 / math.sqrt(2))
assert h_unif < h_gauss and h_lap < h_gauss
# (ii) the residual is uncorrelated with P and has covariance M (sample moments)
g = torch.Generator().manual_seed(3)
P = torch.rand(5000, 3, generator=g, dtype=f64) ** 2
Y = P @ torch.randn(3, 3, generator=g, dtype=f64)
Y = (Y + 0.3 * torch.rand(5000, 3, generator=g, dtype=f64) > 0.4).to(f64)
C = torch.cov(torch.cat([P, Y], 1).T, correction=0)
Sp, Spy, Sy = C[:3, :3], C[:3, 3:], C[3:, 3:]
E = Y - P @ torch.linalg.solve(Sp, Spy)
CE_ = torch.cov(torch.cat([E, P], 1).T, correction=0)
M = Sy - Spy.T @ torch.linalg.solve(Sp, Spy)
assert CE_[:3, 3:].abs().max() < 1e-12 and torch.allclose(CE_[:3, :3], M, atol=1e-12)
# (iii) tight for Gaussians: random SPD joint covariance, d = 9
d = 9
A = torch.randn(2 * d, 2 * d, generator=g, dtype=f64)
J = A @ A.T + 0.5 * torch.eye(2 * d, dtype=f64)
logdet = torch.logdet
mi_gauss = 0.5 * float(logdet(J[:d, :d]) + logdet(J[d:, d:]) - logdet(J))
h_Y = 0.5 * (d * math.log(2 * math.pi * math.e) + float(torch.logdet(J[d:, d:])))
ell_J = float(RMI.rmi_from_covariance(J, xi=0.0))
bound = h_Y - 0.5 * d * math.log(2 * math.pi * math.e) - d * ell_J
assert abs(bound - mi_gauss) < 1e-10
# (iv) the uniform-noise gap, in closed form for several a
gaps = []
for a in (0.5, 1.0, 2.0):
    cov_a = torch.tensor([[1.0, 1.0], [1.0, 1 + a * a / 3]], dtype=f64)
    ell = float(RMI.rmi_from_covariance(cov_a, xi=0.0))
    gaps.append(0.5 * math.log(2 * math.pi * math.e) + ell - math.log(2 * a))
assert max(abs(x - 0.5 * math.log(math.pi * math.e / 6)) for x in gaps) < 1e-12
glue("ch4_uniform_gap", gaps[0], display=False)
glue("ch4_gauss_gap", abs(bound - mi_gauss), display=False)
print(f"entropies at unit variance: uniform {h_unif:.4f} < Laplace {h_lap:.4f} "
      f"< Gaussian {h_gauss:.4f}")
print(f"Cov(E, P) = 0 and Cov(E) = M to 1e-12; Gaussian d=9: MI {mi_gauss:.10f} "
      f"= bound {bound:.10f}")
print(f"uniform noise: MI - bound = {gaps[0]:.10f}, {gaps[1]:.10f}, {gaps[2]:.10f}; "
      f"1/2 ln(pi e/6) = {0.5 * math.log(math.pi * math.e / 6):.10f}")

# %% [markdown]
# The same gap appears when the covariances are *estimated* from sampled maps, through the package:
# a $512\times512$ Gaussian map $P$, $Y=P+U$, $R=1$.

# %%
g = torch.Generator().manual_seed(4)
P_map = torch.randn(1, 1, 512, 512, generator=g, dtype=f64)
Y_map = P_map + (2 * torch.rand(1, 1, 512, 512, generator=g, dtype=f64) - 1)
ell_map = float(RMI.rmi_lower_bound(P_map, Y_map, 1, xi=0.0))
gap_sampled = 0.5 * math.log(2 * math.pi * math.e) + ell_map - math.log(2)
gap_exact = 0.5 * math.log(math.pi * math.e / 6)
assert abs(gap_sampled - gap_exact) < 5e-3  # sampling sd ~ 1/512
print(f"sampled: MI - bound = {gap_sampled:.4f} (exact {gap_exact:.4f})")

# %% [markdown]
# ```{note}
# **The paper's route and a shorter one.** The paper bounds $H(\boldsymbol Y|\boldsymbol P)$ with the
# *posterior* covariance $\Sigma_{Y|P}$ (Eq. 9) and then *approximates* it by $M$ under the assumption
# $(\boldsymbol Y-A\boldsymbol P)\perp_2\boldsymbol P$ of {cite:t}`zhao2019rmi` [RMI, Eqs. 11–13,
# Theorem 3.1]: "Bayes linear" optimality, which makes $\operatorname{Var}(\boldsymbol Y|\boldsymbol
# P=p)=M$ for every $p$. The chain above needs no assumption: $I\ge H(\boldsymbol Y)-\tfrac12\log((2\pi
# e)^d\det M)$ holds for any $(\boldsymbol Y,\boldsymbol P)$ with finite second moments, so the paper's
# "≈" in Eq. 13 is a "≥". The law of total variance says the same about covariances:
# $M=\operatorname{Cov}(\boldsymbol E)=\mathbb E[\operatorname{Var}(\boldsymbol E|\boldsymbol P)]+
# \operatorname{Var}(\mathbb E[\boldsymbol E|\boldsymbol P])\succeq\mathbb E[\operatorname{Var}(\boldsymbol Y|\boldsymbol P)]$.
# The check below uses a strongly heteroscedastic example, where assumption (11) is false.
# ```

# %%
g = torch.Generator().manual_seed(5)
p_h = torch.rand(400_000, generator=g, dtype=f64)
# Var(Y|P=p) = p^2: not constant
y_h = p_h ** 2 + p_h * torch.randn(400_000, generator=g, dtype=f64)
cov_h = torch.cov(torch.stack([p_h, y_h]), correction=0)
M_h = float(cov_h[1, 1] - cov_h[0, 1] ** 2 / cov_h[0, 0])
expected_cond_var = float((p_h ** 2).mean())  # E[Var(Y|P)] = E[P^2] = 1/3
assert M_h >= expected_cond_var
print(f"heteroscedastic: M = {M_h:.4f} >= E[Var(Y|P)] = {expected_cond_var:.4f} "
      "(assumption (11) fails, the bound holds)")

# %% [markdown]
# (ch4-dither)=
# ### Discrete labels: the bound needs a dither
#
# The chain above is about *differential* entropies, and the label vectors are discrete: one-hot
# labels average-pooled by $\mathcal{DF}$ take values on the lattice $\Delta\mathbb Z^d$ with
# $\Delta=1/\mathcal{DF}^2$ ($\Delta=1$ without pooling). A discrete $\boldsymbol Y$ has no density:
# $h(\boldsymbol Y|\boldsymbol P)=-\infty$, and the $H(\boldsymbol Y|\boldsymbol P)$ in
# $I=H(\boldsymbol Y)-H(\boldsymbol Y|\boldsymbol P)$ is the *discrete* conditional entropy, which is
# $\ge0$ and is not bounded by the Gaussian entropy of §5. Eq. 9 mixes the two, and the result can
# exceed the mutual information: for a perfect prediction $\boldsymbol P=\boldsymbol Y$ we have
# $I=H(\boldsymbol Y)$, while $M=0$ and the right-hand side is
# $H(\boldsymbol Y)+\tfrac d2\ln\frac1{2\pi e\,\xi}$, about 5.5 nats per dimension above the largest
# possible value for $\xi=10^{-6}$.
#
# A **dither** repairs it. Let $\boldsymbol U$ be uniform on $[-\Delta/2,\Delta/2]^d$, independent of
# everything, and $\tilde{\boldsymbol Y}=\boldsymbol Y+\boldsymbol U$. The cells around the lattice
# points do not overlap, so $\boldsymbol Y$ is $\tilde{\boldsymbol Y}$ rounded to the lattice and
# $I(\boldsymbol Y;\boldsymbol P)=I(\tilde{\boldsymbol Y};\boldsymbol P)$; the density of
# $\tilde{\boldsymbol Y}$ is $\Pr(\boldsymbol Y=\boldsymbol y)/\Delta^d$ on the cell of $\boldsymbol y$, so
# $h(\tilde{\boldsymbol Y})=H(\boldsymbol Y)+d\ln\Delta$. Now the chain of §5 applies to
# $\tilde{\boldsymbol Y}$, whose residual covariance is
# $M+\operatorname{Cov}(\boldsymbol U)=M+\tfrac{\Delta^2}{12}I$ (the dither is uncorrelated with
# $\boldsymbol P$ and $\boldsymbol Y$):
#
# $$I(\boldsymbol Y;\boldsymbol P)\ \ge\ H(\boldsymbol Y)+d\ln\Delta-\tfrac12\log\Big((2\pi e)^d
# \det\big(M+\tfrac{\Delta^2}{12}I\big)\Big).$$
#
# So the ξ of the loss is not only numerical safety: **ξ = Δ²/12 is the smallest value for which
# $\ell$ belongs to a valid bound** (a larger ξ adds Gaussian noise to $\tilde{\boldsymbol Y}$, a ξ
# on $\Sigma_P$ as in `pb.rmi` adds it to $\boldsymbol P$; both keep the bound valid and loosen it).
# For $\mathcal{DF}=2$ that is $1/192\approx5.2\cdot10^{-3}$, for $\mathcal{DF}=4$
# $3.3\cdot10^{-4}$; the paper's $10^{-6}$ is below both. We check this three ways: a perfect
# prediction of the wire patches of §4; $d=1$ with $P=Y+\sigma Z$, where $I$ is an integral we
# compute by quadrature; and the empirical joint distributions of pooled wire labels and noisy
# quantised predictions (both discrete, so their exact $I$ is a finite sum, and the bound must
# hold for these distributions as for any other).

# %%
LN2PIE = math.log(2 * math.pi * math.e)


def entropy_rows(x):
    """Entropy (nats) of the empirical distribution of the rows of `x`."""
    _, counts = torch.unique(x, dim=0, return_counts=True)
    q = counts.to(f64) / counts.sum()
    return float(-(q * q.log()).sum())


def mi_bound(y, p, xi, delta=None):
    """H(Y) [+ d ln delta] - 1/2 ln((2 pi e)^d det(M + xi I)), from the rows."""
    d = y.shape[1]
    joint = torch.cov(torch.cat([p, y], 1).T, correction=0)  # P first, then Y
    ell = float(RMI.rmi_from_covariance(joint, xi))
    dither = d * math.log(delta) if delta else 0.0
    return entropy_rows(y) + dither - d * (LN2PIE / 2 + ell)


def rows(maps, R):  # (N, 1, H, W) -> (points, R^2)
    return RMI.region_vectors(maps, R).permute(0, 1, 3, 2).reshape(-1, R * R)


def dither_xi(factor):
    return (1 / factor**2) ** 2 / 12  # Delta^2 / 12, Delta = 1 / DF^2

# %%
assert all(dither_xi(k) == pb.experiments.rmi.dither_xi(k) for k in (1, 2, 4))
y_pool = F.avg_pool2d((demo["labels"] == 2).to(f64)[:, None], 2)  # DF = 2: Delta = 1/4
Y9 = rows(y_pool, 3)
perfect = {"I": entropy_rows(Y9), "paper": mi_bound(Y9, Y9, 1e-6),
           "dither": mi_bound(Y9, Y9, dither_xi(2), 1 / 4)}
assert perfect["paper"] > perfect["I"] >= perfect["dither"]
print("perfect prediction, wire patches, R = 3, DF = 2 (nats): " +
      ", ".join(f"{k} {v:.2f}" for k, v in perfect.items()))
glue("ch4_perfect_I", perfect["I"], display=False)
glue("ch4_perfect_paper", perfect["paper"], display=False)
glue("ch4_perfect_dither", perfect["dither"], display=False)
glue("ch4_xi_df2", dither_xi(2), display=False)
glue("ch4_xi_df4", dither_xi(4), display=False)
glue("ch4_xi_below", dither_xi(4) / 1e-6, display=False)
glue("ch4_xi_above", 1e-3 / dither_xi(4), display=False)

# %%
# d = 1: Y on the lattice {0, 1/4, ..., 1} (the pooled wire label's frequencies),
# P = Y + s Z
lattice = torch.arange(5, dtype=f64) / 4
pmf = torch.bincount((y_pool.flatten() * 4).round().long(), minlength=5).to(f64)
pmf /= pmf.sum()
H_Y = float(-(pmf[pmf > 0] * pmf[pmf > 0].log()).sum())
var_Y = float((pmf * lattice**2).sum() - (pmf * lattice).sum() ** 2)
quad = []
for s in (0.01, 0.1, 0.3, 1.0):
    x = torch.linspace(-8 * s - 0.1, 1.1 + 8 * s, 400_001, dtype=f64)
    dens = (pmf[:, None] * torch.exp(-0.5 * ((x - lattice[:, None]) / s) ** 2)).sum(0)
    dens = dens / (s * math.sqrt(2 * math.pi))
    h_P = float(-(dens * dens.clamp_min(1e-300).log()).sum() * (x[1] - x[0]))
    mi = h_P - 0.5 * math.log(2 * math.pi * math.e * s * s)  # I = h(P) - h(P|Y)
    M1 = var_Y - var_Y**2 / (var_Y + s * s)
    paper = H_Y - 0.5 * (LN2PIE + math.log(M1 + 1e-6))
    dith = H_Y + math.log(1 / 4) - 0.5 * (LN2PIE + math.log(M1 + dither_xi(2)))
    assert dith <= mi <= H_Y + 1e-9
    quad.append((s, mi, paper, dith))
    print(f"sigma {s:4}: I = {mi:.3f} (H(Y) = {H_Y:.3f}); paper's mix {paper:.3f}, "
          f"dithered bound {dith:.3f}")
assert quad[0][2] > quad[0][1]  # the paper's expression exceeds I for a good prediction

# %%
# empirical joints: pooled wire labels and quantised noisy predictions
scenes_q = make_wire_scenes(4, size=40, seed=0, split="test")
g = torch.Generator().manual_seed(11)
above = {"paper": 0, "dither": 0}
cases, worst = 0, -math.inf
for factor in (1, 2, 4):
    for R in (1, 2, 3):
        for noise in (0.0, 0.3, 0.6, 1.0):
            y = (scenes_q["labels"] == 2).to(f64)[:, None]
            noisy = y + noise * torch.randn(y.shape, generator=g, dtype=f64)
            lab = F.avg_pool2d(y, factor)
            prd = F.avg_pool2d((noisy > 0.5).to(f64), factor)
            Yr, Pr = rows(lab, R), rows(prd, R)
            joint = torch.cat([Yr, Pr], 1)
            mi = entropy_rows(Yr) + entropy_rows(Pr) - entropy_rows(joint)
            b_dither = mi_bound(Yr, Pr, dither_xi(factor), 1 / factor**2)
            above["paper"] += mi_bound(Yr, Pr, 1e-6) > mi + 1e-9
            above["dither"] += b_dither > mi + 1e-9
            worst, cases = max(worst, b_dither - mi), cases + 1
assert above["dither"] == 0
glue("ch4_dither_cases", cases, display=False)
glue("ch4_paper_above", int(above["paper"]), display=False)
print(f"{cases} empirical joints: the paper's mix exceeds I in {above['paper']}, "
      f"the dithered bound in {above['dither']} (closest: {worst:.3f} nats below I)")

# %% [markdown]
# The paper's expression exceeds the mutual information for a perfect prediction
# ({glue:text}`ch4_perfect_paper:.1f` against $I=H(\boldsymbol Y)=$
# {glue:text}`ch4_perfect_I:.2f` nats) and in {glue:text}`ch4_paper_above` of
# {glue:text}`ch4_dither_cases` empirical joints; the dithered bound never does. It is valid, not
# tight: for the perfect prediction it gives {glue:text}`ch4_perfect_dither:.2f` nats, because
# `pb.rmi` adds ξ to $\Sigma_P$ too, which for $\boldsymbol P=\boldsymbol Y$ leaves a residual of
# about $2\xi$ in every direction (and a negative bound on $I\ge0$ says nothing). For training
# this changes only ξ — $H(\boldsymbol Y)$ and $d\ln\Delta$ do not depend on the network — but ξ
# matters in practice, as the ablations of §12 and the medium experiment of §11 show:
# {glue:text}`ch4_xi_df2:.1e` at $\mathcal{DF}=2$ and {glue:text}`ch4_xi_df4:.1e` at
# $\mathcal{DF}=4$, where the paper uses $10^{-6}$.

# %% [markdown]
# ## 6. From the bound to a loss
#
# $H(\boldsymbol Y)$ depends only on the labels and $\tfrac d2\log 2\pi e$ is a constant, so the
# quantity to maximise is $I_l=-\tfrac12\log\det M$ [RMI, Eqs. 10, 13]. The paper divides by $d$ so
# that the value does not grow with the number of eigenvalues [RMI, Eq. 14], writes
# $\log\det M=\operatorname{Tr}\log M$ [RMI, Eq. 15], adds $\xi I$ to make $M$ positive definite and
# computes it with a Cholesky factorisation $M=LL^\top$, $\log\det M=2\sum_i\log L_{ii}$, in double
# precision. The loss term of one (image, class) pair is therefore
#
# $$\ell=-I_l=\frac{1}{2d}\log\det(M+\xi I)\ \ge\ \tfrac12\ln\xi,$$
#
# lower is better. Two details matter in practice. First, a constant prediction makes $\Sigma_P=0$,
# whose inverse does not exist: ξ must also regularise $\Sigma_P$ (the official code adds it to both).
# Second, there is no need for the inverse at all: factorise the joint covariance of $[\boldsymbol P;
# \boldsymbol Y]$ plus $\xi I$ once; the lower-right block of its Cholesky factor *is* the Cholesky
# factor of the Schur complement $(\Sigma_Y+\xi I)-\Sigma_{YP}(\Sigma_P+\xi I)^{-1}\Sigma_{PY}=M_\xi+\xi I$.
# We check both identities, and why float64 is wanted: for a nearly perfect prediction $M$ is a
# small difference of large numbers. With ξ = 1e-6 float32 is only slightly off in the value, but
# without ξ its Cholesky factorisation fails where float64's succeeds.

# %%
g = torch.Generator().manual_seed(6)
A = torch.randn(9, 9, generator=g, dtype=f64)
Mpd = A @ A.T + 1e-6 * torch.eye(9, dtype=f64)
chol_logdet = 2 * torch.linalg.cholesky(Mpd).diagonal().log().sum()
assert torch.allclose(chol_logdet, torch.logdet(Mpd))
d, xi = 9, 1e-6
Jxi = J + xi * torch.eye(2 * d, dtype=f64)
L = torch.linalg.cholesky(Jxi)
schur = Jxi[d:, d:] - Jxi[d:, :d] @ torch.linalg.solve(Jxi[:d, :d], Jxi[:d, d:])
assert torch.allclose(L[d:, d:] @ L[d:, d:].T, schur, atol=1e-10)
# float32 vs float64 for a near-perfect prediction (pooled label + 1e-4 noise),
# Eqs. 12-15 inline
labels_demo = F.avg_pool2d((demo["labels"][:4] == 2).to(f64)[:, None], 2)
noise_demo = 1e-4 * torch.rand(labels_demo.shape, generator=g, dtype=f64)
probs_demo = (labels_demo + noise_demo).clamp(0, 1)


def ell_in(p, y, xi, dtype, R=3):
    P, Y = RMI.region_vectors(p.to(dtype), R), RMI.region_vectors(y.to(dtype), R)
    P, Y = P - P.mean(-1, keepdim=True), Y - Y.mean(-1, keepdim=True)
    n, I_d = P.shape[-1], torch.eye(R * R, dtype=dtype)
    Syp = Y @ P.mT / n
    M = Y @ Y.mT / n - Syp @ torch.linalg.inv(P @ P.mT / n + xi * I_d) @ Syp.mT
    L, info = torch.linalg.cholesky_ex(M + xi * I_d)
    ell = L.diagonal(dim1=-2, dim2=-1).log().sum(-1) / (R * R)
    return ell.flatten(), info.flatten()


e64, info64 = ell_in(probs_demo, labels_demo, 1e-6, f64)
e32, _ = ell_in(probs_demo, labels_demo, 1e-6, torch.float32)
_, info64_0 = ell_in(probs_demo, labels_demo, 0.0, f64)
_, info32_0 = ell_in(probs_demo, labels_demo, 0.0, torch.float32)
assert bool((info64 == 0).all()) and bool((info64_0 == 0).all())
print("2 sum log L_ii = logdet; the joint Cholesky's lower-right block = Cholesky of "
      "the Schur complement")
print(f"near-perfect prediction, 4 maps, xi=1e-6: |ell32 - ell64| up to "
      f"{float((e32.double() - e64).abs().max()):.1e}")
fails64, fails32 = int((info64_0 > 0).sum()), int((info32_0 > 0).sum())
print(f"same maps, xi=0: Cholesky fails in float64 on {fails64} of 4, "
      f"in float32 on {fails32} of 4")

# %% [markdown]
# Here is the whole loss term written inline — sample covariances, explicit inverse, log-det — and
# the package's version (one Cholesky, a memory-lean covariance, §8) on the same random input; from
# here on we use the package.

# %%
def rmi_inline(probs, targets, R=3, xi=1e-6):
    """[RMI, Eqs. 12-15]: per (image, class) 1/(2d) log det(M + xi I), float64."""
    P = RMI.region_vectors(probs.double(), R)
    Y = RMI.region_vectors(targets.double(), R)
    P, Y = P - P.mean(-1, keepdim=True), Y - Y.mean(-1, keepdim=True)
    n, I_d = P.shape[-1], torch.eye(R * R, dtype=f64)
    Sp, Sy, Syp = P @ P.mT / n, Y @ Y.mT / n, Y @ P.mT / n
    M = Sy - Syp @ torch.linalg.inv(Sp + xi * I_d) @ Syp.mT
    return torch.logdet(M + xi * I_d) / (2 * R * R)


g = torch.Generator().manual_seed(7)
probs_r = torch.rand(2, 4, 20, 20, generator=g)
targets_r = (torch.rand(2, 4, 20, 20, generator=g) > 0.7).float()
torch.testing.assert_close(RMI.rmi_lower_bound(probs_r, targets_r, 3, 1e-6),
                           rmi_inline(probs_r, targets_r), rtol=1e-9, atol=1e-11)
logits_r = torch.randn(2, 4, 40, 40, generator=g)
labels_r = torch.randint(0, 4, (2, 40, 40), generator=g)
onehot_r = F.one_hot(labels_r, 4).permute(0, 3, 1, 2).float()
bce_r = F.binary_cross_entropy_with_logits(logits_r, onehot_r, reduction="sum")
pool2 = lambda t: F.avg_pool2d(t, 2)  # noqa: E731
rmi_r = rmi_inline(pool2(torch.sigmoid(logits_r)), pool2(onehot_r)).sum(1).mean()
by_hand = 0.5 * bce_r / (2 * 40 * 40) + 0.5 * rmi_r  # Eq. 16, lambda = 0.5
rmi_criterion = RMI.RMILoss(radius=RADIUS, pool=POOL, pool_size=DF, xi=XI,
                            ce_weight=CE_WEIGHT, activation=ACTIVATION)
package_value = RMI.RMILoss(pool_size=2)(logits_r, labels_r)
torch.testing.assert_close(package_value, by_hand.float(), rtol=1e-5, atol=1e-5)
print("inline Eqs. 12-16 == pb.rmi.rmi_lower_bound / RMILoss;", rmi_criterion)

# %% [markdown]
# ## 7. The canonical-correlation reading, and what RMI cannot see
#
# Whiten both sides: with $\rho_1,\dots,\rho_d$ the singular values of
# $\Sigma_Y^{-1/2}\Sigma_{YP}\Sigma_P^{-1/2}$ — the *canonical correlations* between label patches and
# prediction patches —
#
# $$\log\det M=\log\det\Sigma_Y+\sum_{i=1}^d\log(1-\rho_i^2).$$
#
# Up to a label-only constant, RMI maximises all canonical correlations between $R\times R$ label
# patterns and $R\times R$ prediction patterns. For $R=1$ this is one number: the loss is
# $\tfrac12\ln\sigma_Y^2+\tfrac12\ln(1-\rho^2)$ with $\rho$ the Pearson correlation between the
# (pooled) label map and probability map of the image, so **RMI with $R=1$ is a correlation loss**.
# Correlations do not change under $P\mapsto aP+b$: RMI is blind to calibration and even to polarity
# ($P\mapsto1-P$ gives exactly the same loss, ξ included). And a class absent from an image has a
# constant label map: $\Sigma_Y=0$, $M=0$, $\ell=\tfrac12\ln\xi$ whatever the prediction — RMI gives
# *no gradient* against false positives of absent classes. That is why it is always paired with
# cross-entropy (§9).

# %% tags=["nbval-check-output"]
g = torch.Generator().manual_seed(8)
d = 4
A = torch.randn(2 * d, 2 * d, generator=g, dtype=f64)
Jc = A @ A.T + 0.5 * torch.eye(2 * d, dtype=f64)
Sp_, Spy_, Sy_ = Jc[:d, :d], Jc[:d, d:], Jc[d:, d:]
def inv_sqrt(S):
    w, V = torch.linalg.eigh(S)
    return V @ torch.diag(w.rsqrt()) @ V.T


rho = torch.linalg.svdvals(inv_sqrt(Sy_) @ Spy_.T @ inv_sqrt(Sp_))
lhs = 2 * d * float(RMI.rmi_from_covariance(Jc, xi=0.0))
rhs = float(torch.logdet(Sy_) + torch.log1p(-rho ** 2).sum())
assert abs(lhs - rhs) < 1e-10
p1 = torch.rand(1, 1, 16, 16, generator=g, dtype=f64)
y1 = (p1 + 0.5 * torch.rand(1, 1, 16, 16, generator=g, dtype=f64) > 0.8).to(f64)
r = float(torch.corrcoef(torch.stack([p1.flatten(), y1.flatten()]))[0, 1])
corr_loss = 0.5 * math.log(float(y1.var(unbiased=False)) * (1 - r * r))
assert abs(float(RMI.rmi_lower_bound(p1, y1, 1, xi=0.0)) - corr_loss) < 1e-12
flip = RMI.rmi_lower_bound(1 - p1, y1, 3) - RMI.rmi_lower_bound(p1, y1, 3)
assert float(flip.abs()) < 1e-12
p_abs = torch.rand(1, 1, 16, 16, generator=g, dtype=f64, requires_grad=True)
ell_abs = RMI.rmi_lower_bound(p_abs, torch.zeros(1, 1, 16, 16, dtype=f64), 3, xi=1e-6)
grad_abs, = torch.autograd.grad(ell_abs.sum(), p_abs)
assert abs(float(ell_abs.detach()) - 0.5 * math.log(1e-6)) < 1e-12
assert float(grad_abs.abs().max()) == 0.0
print(f"log det M = {lhs:.10f} = log det Sigma_Y + sum log(1 - rho^2) = {rhs:.10f}")
print(f"R=1: ell = 1/2 ln(var_Y (1 - rho^2)) with rho = {r:.4f}; ell(1 - P) == ell(P); "
      f"absent class: ell = {float(ell_abs.detach()):.6f} = 1/2 ln(1e-6), "
      "gradient exactly 0")

# %% [markdown]
# ## 8. Down-sampling, and what the loss costs
#
# With $R=3$ the region vectors are 9 copies of every map. The paper therefore average-pools the
# probabilities and the one-hot labels by a factor $\mathcal{DF}$ first [RMI, Sec. 4]; in float64
# the region vectors of one map then take $2R^2/\mathcal{DF}^2$ times the memory of the float32 map
# (1.125 for $R=3$, $\mathcal{DF}=4$, the paper's "0.37 GB" on top of 0.33 GB [RMI, Sec. 5.3.1]).
# Pooled labels become fractions in $[0,1]$; the paper's ablation compares average pooling, max
# pooling and interpolation [RMI, Table 3a]. Our images are 40 px, not 513: $\mathcal{DF}=4$ would
# leave $10\times10$ maps and 64 points per image, so our main setting is $\mathcal{DF}=2$ (the paper's
# best value, 79.23 in Table 3a) and §12 varies it.
#
# `pb.rmi` goes one step further. The covariance is computed by a custom autograd function that builds
# the region vectors chunk by chunk, multiplies, and drops them; the backward pass rebuilds them and
# folds the gradient $\partial\ell/\partial\mathbf z_i=(G+G^\top)(\mathbf z_i-\bar{\mathbf z})$ back
# onto the pixels. What stays in memory for the backward pass is the pooled maps only. We count the
# bytes autograd keeps for the RMI term, ours against the inline formula of §6.

# %%
def saved_bytes(fn):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


g = torch.Generator().manual_seed(9)
pl = torch.rand(4, 21, 64, 64, generator=g, dtype=f64, requires_grad=True)
yl = (torch.rand(4, 21, 64, 64, generator=g) > 0.9).to(f64)
ours_b = saved_bytes(lambda: RMI.rmi_lower_bound(pl, yl, 3))
inline_b = saved_bytes(lambda: rmi_inline(pl, yl))
map_b = pl.numel() * 4
ratio_formula = {(R, DF_): 2 * R * R / DF_ ** 2 for R, DF_ in ((3, 4), (3, 2), (3, 1))}
# float64 vectors of the pooled map / float32 map = 2 R^2 (H/DF - R + 1)^2 / H^2,
# -> 2 R^2 / DF^2 for large maps
vec_b = RMI.region_vectors(F.avg_pool2d(pl, 4), 3).numel() * 8
assert vec_b / map_b == 2 * 9 * 14 ** 2 / 64 ** 2
glue("ch4_saved_ratio", inline_b / ours_b, display=False)
print(f"memory of float64 region vectors / float32 map, 2R^2/DF^2: {ratio_formula}")
print(f"bytes kept for backward, 4x21x64x64 maps, R=3: inline autograd "
      f"{inline_b / 2**20:.1f} MiB, "
      f"pb.rmi {ours_b / 2**20:.1f} MiB ({inline_b / ours_b:.0f}x less)")

# %% [markdown]
# The benchmark `benchmarks/bench_rmi.py` compares time and peak memory with the `rmi-pytorch`
# package at equal settings (the values agree to float rounding; a unit test checks values and
# gradients to 1e-10 in float64). On the book's 2-core machine, one thread, 8×21×256×256 logits, one
# forward and backward: about 2× faster and 1.8× less peak memory at $\mathcal{DF}=4$, and 3.5× faster
# with 6× less peak memory at $\mathcal{DF}=2$ (run it to get your machine's ratios).
#
# ## 9. Putting it together with cross-entropy
#
# The training loss is
#
# $$\mathcal L_{all}=\lambda_{\text{ce}}\,\mathcal L_{ce}+(1-\lambda_{\text{ce}})\frac1B\sum_{b=1}^B
# \sum_{c=1}^C\ell_{b,c}\qquad\text{[RMI, Eq. 16]},$$
#
# with $\lambda_{\text{ce}}=0.5$, RMI per image and class, summed over classes and averaged over images. The
# paper uses *sigmoid* probabilities, so that each class channel is its own problem, and hence a
# binary cross-entropy; it reports that softmax and sigmoid cross-entropy train equally well
# (77.14 vs 77.09 on VOC val, Table 1a). Where the official code departs from the paper
# (note 002 §2.9):
#
# | | paper | official code | `pb.rmi` default |
# |---|---|---|---|
# | ξ | $10^{-6}$, added to $M$ | $5\cdot10^{-4}$, added to $\Sigma_P$ and to $M$ | $10^{-6}$, to both (one Cholesky) |
# | covariance | $\mathbb E[\cdot]$ (mean over points) | raw sums (no division by $n$) | mean (`normalize=True`) |
# | pooling | avg 4×4, stride 4 | same, padding 2 | avg, no padding (`pool_padding`) |
# | void pixels | not discussed | zero label and zero probability, kept as points | same |
# | $\log$ of Cholesky diagonal | — | $\log(L_{ii}+10^{-8})$ | exact |
#
# `RMILoss.official()` gives the official choices. Raw sums only shift $\ell$ by $\tfrac12\ln n$ when
# ξ = 0 (checked below), but they change what ξ means: $5\cdot10^{-4}$ on a raw sum over $n$ points is
# $5\cdot10^{-4}/n$ on the covariance.

# %%
g = torch.Generator().manual_seed(10)
pa = torch.rand(1, 1, 12, 11, generator=g, dtype=f64)
ya = torch.rand(1, 1, 12, 11, generator=g, dtype=f64)
offset = float(RMI.rmi_lower_bound(pa, ya, 3, 0.0, normalize=False)
               - RMI.rmi_lower_bound(pa, ya, 3, 0.0))
assert abs(offset - 0.5 * math.log(10 * 9)) < 1e-10
print(f"unnormalised - normalised = {offset:.10f} = 1/2 ln n with n = 90 points")
try:  # the independent reference implementation, if installed (rmi-pytorch)
    from rmi import RMILoss as ReferenceRMI
except ImportError:
    ReferenceRMI = None
if ReferenceRMI is not None:
    lg = torch.randn(2, 3, 32, 32, generator=g, dtype=f64)
    lb = torch.randint(0, 3, (2, 32, 32), generator=g)
    reference = ReferenceRMI(with_logits=True, radius=3, bce_weight=0.0, pool="avg",
                             stride=4, use_log_trace=False)
    theirs = reference(lg, F.one_hot(lb, 3).permute(0, 3, 1, 2).double())
    ours = RMI.RMILoss.official(ce_weight=0.0)(lg, lb)
    assert abs(float(theirs) - float(ours)) < 1e-10
    print(f"official settings: pb.rmi {float(ours):.10f}, "
          f"rmi-pytorch {float(theirs):.10f}")

# %% [markdown]
# ## 10. The experiment: thin wires, small dots, textured regions
#
# The paper's gains are largest for small and thin classes (CamVid sign symbol, pedestrian,
# bicyclist: +5 to +8 IoU, Table 4). Our small-scale task is built around that: 40×40 grey images
# with a `grass` texture background, elliptic regions of `gravel` texture with the same mean and
# variance (only the texture tells them apart), one-pixel *wires* with invisible gaps (the label
# continues but the pixels look like background), and small *dots*. The textures are scikit-image's
# sample images; everything is generated in a second ({numref}`fig-ch4-wires`).

# %%
train_data = make_wire_scenes(N_TRAIN, size=SIZE, seed=SEED, split="train")
test_data = make_wire_scenes(N_TEST, size=SIZE, seed=SEED, split="test")
train_set = {"image": train_data["image"], "labels": train_data["labels"]}
freq = torch.bincount(train_data["labels"].flatten(), minlength=K).double()
freq /= train_data["labels"].numel()
fig, axes = plt.subplots(2, 4, figsize=(6.2, 3.9), layout="constrained")
for i in range(4):
    axes[0, i].imshow(test_data["image"][i, 0], cmap="gray")
    axes[1, i].imshow(pb.viz.colorize_labels(test_data["labels"][i], len(WIRE_CLASSES)))
    gy, gx = torch.nonzero(test_data["gaps"][i], as_tuple=True)
    axes[1, i].plot(gx, gy, "s", ms=2, mfc="none", mec="w", mew=0.6)
for a in axes.flat:
    a.set_axis_off()
axes[0, 0].set_title("images", loc="left")
axes[1, 0].set_title("labels (gaps boxed)", loc="left")
pb.viz.label_legend(fig, WIRE_CLASSES)
pb.widgets.show(fig, glue="ch4_fig_wires")
gap_share = float(train_data["gaps"].sum() / (train_data["labels"] == 2).sum())
print("class frequencies:",
      {c: f"{100 * float(f):.1f}%" for c, f in zip(WIRE_CLASSES, freq)},
      f"| invisible wire pixels: {100 * gap_share:.0f}%")

# %% [markdown]
# ```{glue:figure} ch4_fig_wires
# :name: fig-ch4-wires
# :alt: Four test scenes of wires, dots and textured regions, and their label maps
#
# Test scenes (top) and their labels (bottom): thin wires, small dots and textured regions on a
# background. Boxed pixels are wire pixels with no visible evidence in the image (gaps).
# ```
#
# The model is a small DeepLabv3-style network (`pb.models.MiniDeepLab`): two stride-2 convolutions
# (output stride 4), two residual blocks, an ASPP-lite head (1×1, two dilated 3×3 and image
# pooling) and bilinear up-sampling of the logits to the input size *before* the loss, as the paper
# does at output stride 16 [RMI, Sec. 5.1]. A coarse output and a per-pixel loss are exactly where
# thin structures suffer.
#
# Four losses, with equal budgets (same data order, same initial weights per seed, same
# schedule): **CE** (softmax cross-entropy, Eq. 1), **BCE** (sigmoid binary cross-entropy summed
# over classes and averaged over pixels: the cross-entropy term RMI is paired with, §9),
# **BCE + RMI** (Eq. 16: sigmoid, $\lambda_{\text{ce}}=0.5$, $R=3$, average pooling, $\mathcal{DF}=2$,
# $\xi=10^{-6}$), and **CE + AFF**, an affinity-field loss in the spirit of the baseline of
# [RMI, Sec. 5.2] (`pb.losses.affinity_loss`: KL grouping force for equal-label neighbours,
# hinged KL separating force for different labels, 3×3 neighbourhood). The paper compares RMI
# with CE; BCE + RMI against BCE isolates the RMI term. Here, at `small` scale, each run is
# {glue:text}`ch4_iters` Adam steps on {glue:text}`ch4_ntrain` images (batch 16, cosine schedule,
# learning rate 0.01), a model of {glue:text}`ch4_params` parameters, one CPU thread, three
# seeds: a live demonstration, far from converged. The evidence is the `medium` experiment at the
# end of §11: converged models, five seeds, claims fixed before the run.

# %%
def make_model(seed):
    pb.runtime.seed_all(seed)
    return pb.models.MiniDeepLab(K, width=WIDTH, in_channels=1)


def ce_loss(model, batch):
    return F.cross_entropy(model(batch["image"]), batch["labels"])


def bce_loss(model, batch):  # Eq. 16 with lambda = 1: sigmoid BCE alone
    return RMI.rmi_loss(model(batch["image"]), batch["labels"], ce_weight=1.0)


def make_rmi_loss(**overrides):
    kw = dict(radius=RADIUS, pool=POOL, pool_size=DF, xi=XI, ce_weight=CE_WEIGHT,
              activation=ACTIVATION)
    kw.update(overrides)
    criterion = RMI.RMILoss(**kw)

    def loss_fn(model, batch):
        logits = model(batch["image"])
        with torch.no_grad():  # log the cross-entropy part of Eq. 16 on its own
            ce_part = RMI.rmi_loss(logits, batch["labels"], ce_weight=1.0,
                                   activation=kw["activation"])
        return criterion(logits, batch["labels"]), {"ce_part": float(ce_part)}

    return loss_fn, kw


def aff_loss(model, batch):
    logits = model(batch["image"])
    aff = pb.losses.affinity_loss(logits, batch["labels"], margin=AFF_MARGIN)
    return F.cross_entropy(logits, batch["labels"]) + AFF_WEIGHT * aff

# %%
def evaluate(model, data=None):
    data = test_data if data is None else data
    s = segmentation_scores(model, data, WIRE_CLASSES, boundary_tolerance=1)
    return {k.removeprefix("seg.").replace(".", "_"): v for k, v in s.items()}


def run(tag, loss_fn, seed, extra):
    params = {"chapter": 4, "size": SIZE, "n_train": N_TRAIN, "width": WIDTH,
              "data_seed": SEED, "threads": torch.get_num_threads(), **extra}
    cfg = TrainConfig(epochs=EPOCHS, lr=1e-2, batch_size=16, optimizer="adam",
                      schedule="cosine", seed=seed, params=params)
    model = make_model(seed)
    history = train_or_load(f"ch4-{tag}-s{seed}", model, loss_fn, train_set, cfg,
                            device=DEVICE, verbose=False)
    steps = EPOCHS * math.ceil(N_TRAIN / 16)
    ce_part = history["ce_part"][-1] if history["ce_part"] else float("nan")
    return model, {**evaluate(model), "ms_per_iter": 1e3 * sum(history["time"]) / steps,
                   "loss": history["train_loss"], "ce_part": ce_part}


rmi_fn, rmi_kw = make_rmi_loss()
LOSSES = {"CE": (ce_loss, {"loss": "ce"}), "BCE": (bce_loss, {"loss": "bce"}),
          "BCE+RMI": (rmi_fn, {"loss": "rmi", **rmi_kw}),
          "CE+AFF": (aff_loss, {"loss": "aff", "margin": AFF_MARGIN,
                                "weight": AFF_WEIGHT})}
results, models = {name: [] for name in LOSSES}, {}
for seed in SEEDS:
    for name, (fn, extra) in LOSSES.items():
        model, res = run(name.replace("+", "-").lower(), fn, seed, extra)
        results[name].append(res)
        models[(name, seed)] = model
glue("ch4_iters", EPOCHS * math.ceil(N_TRAIN / 16), display=False)
glue("ch4_ntrain", N_TRAIN, display=False)
glue("ch4_params", sum(p.numel() for p in models[("CE", SEEDS[0])].parameters()),
     display=False)
print(f"trained {len(SEEDS) * len(LOSSES)} models in {time.time() - T0:.0f} s "
      "since the start of the notebook")

# %% [markdown]
# ## 11. Results
#
# Mean ± standard deviation over the seeds (min–max in brackets) on {glue:text}`ch4_ntest` test
# images. *Boundary F* compares the label boundaries of prediction and ground truth with a
# 1-pixel tolerance; *gap recall* is the fraction of invisible wire pixels (the gaps) predicted
# as wire. {numref}`fig-ch4-small-scores` shows the same scores and the training curves.

# %% tags=["hide-input"]
METRICS = ["miou"] + [f"iou_{c}" for c in WIRE_CLASSES] + ["boundary_f", "gap_recall",
                                                           "ms_per_iter"]


def stats(name, key):
    v = np.array([r[key] for r in results[name]])
    return v.mean(), v.std(), v.min(), v.max()


def fmt(name, key):
    m, s, lo, hi = stats(name, key)
    if key == "ms_per_iter":
        return f"{m:.0f} ± {s:.0f}"
    return f"{m:.3f} ± {s:.3f} [{lo:.3f}–{hi:.3f}]"


rows_ = ["| loss | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
rows_ += [f"| {name} | " + " | ".join(fmt(name, k) for k in METRICS) + " |"
          for name in LOSSES]
display(Markdown("\n".join(rows_)))
glue("ch4_ntest", N_TEST, display=False)
KEYS = {"CE": "ce", "BCE": "bce", "BCE+RMI": "rmi", "CE+AFF": "aff"}
for name, key in KEYS.items():
    for metric in ("miou", "iou_wire", "iou_dot", "boundary_f", "gap_recall",
                   "ms_per_iter"):
        m, s, _, _ = stats(name, metric)
        glue(f"ch4_{key}_{metric}", float(m), display=False)
        glue(f"ch4_{key}_{metric}_sd", float(s), display=False)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(pb.viz.PAGE_WIDTH, 2.9), layout="constrained")
x = np.arange(K + 2)
for j, name in enumerate(LOSSES):
    vals = np.array([[r[f"iou_{c}"] for c in WIRE_CLASSES]
                     + [r["boundary_f"], r["gap_recall"]] for r in results[name]])
    axes[0].bar(x + (j - 1.5) * 0.2, vals.mean(0), 0.2, yerr=vals.std(0), label=name,
                capsize=2)
axes[0].set_xticks(x, list(WIRE_CLASSES) + ["bound. F", "gap rec."], fontsize=8,
                   rotation=30)
axes[0].set_ylabel("test score")
axes[0].legend(fontsize=8)
for name in LOSSES:
    curves = np.array([r["loss"] for r in results[name]])
    axes[1].plot(np.arange(1, EPOCHS + 1), curves.mean(0), marker="o", ms=3, label=name)
axes[1].set_xlabel("epoch")
axes[1].set_ylabel("training loss (own scale)")
axes[1].legend(fontsize=8)
pb.widgets.show(fig, glue="ch4_fig_small_scores")

# %% [markdown]
# ```{glue:figure} ch4_fig_small_scores
# :name: fig-ch4-small-scores
# :alt: Bar chart of per-class IoU, boundary F and gap recall per loss; training loss curves
#
# `small` scale (three seeds, not converged): per-class IoU, boundary F and gap recall, mean and
# standard deviation over seeds (left); mean training loss per epoch, each loss on its own scale
# (right).
# ```
#
# {numref}`fig-ch4-small-preds` shows the predictions of the seed-0 models on four test images.

# %% tags=["hide-input"]
idx = [0, 1, 2, 3]
with torch.no_grad():
    preds = {name: models[(name, SEEDS[0])].eval()(test_data["image"][idx].to(DEVICE))
             .argmax(1).cpu() for name in LOSSES}
fig, axes = plt.subplots(len(idx), 6, figsize=(pb.viz.PAGE_WIDTH, 1.15 * len(idx)),
                         layout="constrained")
for r_, i in enumerate(idx):
    panels = [(test_data["image"][i, 0], "image"),
              (test_data["labels"][i], "ground truth")]
    panels += [(preds[name][r_], name) for name in LOSSES]
    for c_, (img, title) in enumerate(panels):
        ax = axes[r_, c_]
        if c_ == 0:
            ax.imshow(img, cmap="gray", interpolation="nearest")
        else:
            ax.imshow(pb.viz.colorize_labels(img, K), interpolation="nearest")
        if c_ == 1:
            gy, gx = torch.nonzero(test_data["gaps"][i], as_tuple=True)
            ax.plot(gx, gy, "s", ms=1.5, mfc="none", mec="w", mew=0.5)
        ax.set_axis_off()
        if r_ == 0:
            ax.set_title(title, fontsize=8)
pb.viz.label_legend(fig, WIRE_CLASSES)
pb.widgets.show(fig, glue="ch4_fig_small_preds")

# %% [markdown]
# ```{glue:figure} ch4_fig_small_preds
# :name: fig-ch4-small-preds
# :alt: Four test images, their labels and the class maps predicted by the four losses
#
# Class maps of the seed-0 `small` models on four test images; invisible wire pixels (gaps) are
# boxed in the ground truth.
# ```
#
# The cell below asserts what must hold at any scale — the bound properties of §§5–7, on the
# trained CE model's own predictions — and prints the paired differences BCE + RMI − BCE and
# BCE + RMI − CE of this `small` run. Those differences are a demonstration, not a test: the
# claims are decided on the converged `medium` models below.

# %%
with torch.no_grad():
    logits0 = models[("CE", SEEDS[0])].eval()(test_data["image"][:16].to(DEVICE)).cpu()
probs0 = torch.sigmoid(logits0).double()
onehot0 = F.one_hot(test_data["labels"][:16], K).permute(0, 3, 1, 2).double()
terms0 = RMI.rmi_lower_bound(pool2(probs0), pool2(onehot0), 3, XI)
flipped0 = RMI.rmi_lower_bound(pool2(1 - probs0), pool2(onehot0), 3, XI)
assert bool((terms0 >= 0.5 * math.log(XI) - 1e-9).all()), "a term fell below 1/2 ln xi"
assert float((terms0 - flipped0).abs().max()) < 1e-9, "not invariant to P -> 1 - P"

for base in ("BCE", "CE"):
    for k in ("miou", "iou_wire", "boundary_f", "gap_recall"):
        v = np.array([a[k] - b[k] for a, b in zip(results["BCE+RMI"], results[base])])
        print(f"small, BCE+RMI - {base:>3}, {k:>10}: mean {v.mean():+.4f}, "
              f"per seed {np.round(v, 4).tolist()}")
        if k == "miou":
            glue(f"ch4_small_diff_{base.lower()}", float(v.mean()), display=False)

# %% [markdown]
# (ch4-medium)=
# ### The evidence: converged models at `medium` scale
#
# The `small` run above is too short to decide anything. The chapter's experiment
# (`pixelbook.experiments.rmi`, run by `python -m pixelbook.run 04_region_mutual_information`)
# trains six arms on {glue:text}`ch4_med_ntrain` scenes for {glue:text}`ch4_med_steps` Adam steps
# each (cosine schedule to zero), five seeds per arm; the arms of one seed share the scenes, the
# initial weights and the batch order, so every comparison is paired by seed. Besides CE, BCE and
# BCE + RMI ($\mathcal{DF}=2$, ξ = 10⁻⁶) it runs BCE + RMI with the dither ξ = Δ²/12 of
# {ref}`ch4-dither`, and both ξ at $\mathcal{DF}=4$, the setting that collapsed in one seed of the
# ablations of §12. The claims were committed, with their margins, before the run (the results
# record their hash): each effect of RMI is tested in both directions, a paired t-test against
# a margin of 0.008 mIoU (half the paper's smallest gain over BCE or CE, Table 1) or 0.02 wire
# IoU (half the mean gain on CamVid's thin classes, Table 4), one-sided at α = 0.025 each, so
# the pair is a two-sided test at 0.05; BCE and CE are "roughly the same" in the paper, which we
# test as equivalence within 0.01 mIoU (two one-sided tests at α = 0.05).

# %%
EXP = pb.experiments.get("04_region_mutual_information")
RES = pb.results.load_results(EXP.chapter)
ARMS = {"ce": "CE", "bce": "BCE", "rmi": "BCE+RMI", "rmi_dither": "BCE+RMI, ξ=Δ²/12",
        "rmi_df4": "BCE+RMI, DF 4", "rmi_df4_dither": "BCE+RMI, DF 4, ξ=Δ²/12"}
MED = {"seg.miou": "mIoU", "seg.iou.wire": "IoU wire", "seg.iou.dot": "IoU dot",
       "seg.iou.region": "IoU region", "seg.boundary_f": "boundary F",
       "seg.gap_recall": "gap recall"}
seed_list = RES.seeds("ce")
train_s = {arm: [RES.record(arm, s)["provenance"]["train_time_s"] for s in seed_list]
           for arm in ARMS}
table = ["| arm (medium) | " + " | ".join(MED.values()) + " | train s |",
         "|---" * (len(MED) + 2) + "|"]
for arm, label in ARMS.items():
    cells = [f"{RES.summary(arm, m):.3f}" for m in MED]
    cells.append(f"{np.mean(train_s[arm]):.0f}")
    table.append(f"| {label} | " + " | ".join(cells) + " |")
display(Markdown("\n".join(table)))
for arm in ARMS:
    for m in MED:
        summ = RES.summary(arm, m)
        glue(f"ch4_med_{arm}_{m.split('.')[-1]}", summ.mean, display=False)
        glue(f"ch4_med_{arm}_{m.split('.')[-1]}_sd", summ.std, display=False)
cfg0 = RES.record("ce", seed_list[0])["config"]
glue("ch4_med_ntrain", cfg0["data"]["n_train"], display=False)
glue("ch4_med_ntest", cfg0["data"]["n_test"], display=False)
glue("ch4_med_steps", len(RES.history("ce", seed_list[0])["train_loss"])
     * math.ceil(cfg0["data"]["n_train"] / cfg0["train"]["batch_size"]), display=False)
glue("ch4_med_cpu_min", sum(map(sum, train_s.values())) / 60, display=False)
print(f"{len(RES)} runs ({len(ARMS)} arms x {len(seed_list)} seeds), "
      f"{sum(map(sum, train_s.values())) / 60:.1f} min of training on one core in all")

# %% [markdown]
# Mean ± standard deviation over the five seeds, on {glue:text}`ch4_med_ntest` test scenes per
# seed; "train s" is the training time of one run on one CPU thread. {numref}`fig-ch4-medium`
# shows the held-out mIoU and wire IoU during training: every arm has flattened by the end of
# the schedule.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(pb.viz.PAGE_WIDTH, 3.3), layout="constrained")
for arm, label in ARMS.items():
    for ax, key in zip(axes, ("val_miou", "val_iou_wire")):
        hs = [RES.history(arm, s) for s in seed_list]
        ep = [r["epoch"] for r in hs[0].records if key in r]
        ax.plot(ep, np.mean([h[key] for h in hs], 0), marker="o", ms=2.5, label=label)
axes[0].set_ylabel("held-out mIoU")
axes[1].set_ylabel("held-out wire IoU")
for ax in axes:
    ax.set_xlabel("epoch")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3,
           fontsize=8)
pb.widgets.show(fig, glue="ch4_fig_medium")

# %% [markdown]
# ```{glue:figure} ch4_fig_medium
# :name: fig-ch4-medium
# :alt: Held-out mIoU and wire IoU against the epoch for the six medium arms
#
# `medium` scale: held-out mIoU (left) and wire IoU (right) during training, mean over five
# seeds, for the six arms (monitored on 128 test scenes every five epochs).
# ```
#
# The check cell evaluates exactly the registered claims on these results and asserts each
# recorded outcome (a claim the experiment did not support is asserted as failing).

# %%
OUTCOMES = pb.results.evaluate_claims(EXP, RES)
claim_rows = ["| claim | A − B, mean ± sd | margin | holds on | verdict |",
              "|---" * 5 + "|"]
for o in OUTCOMES:
    print(o)
    verdict = f"p = {o.p:.3f}: {'holds' if o.holds else 'fails'}"
    diff = f"{np.mean(o.diffs):+.3f} ± {np.std(o.diffs, ddof=1):.3f}"
    claim_rows.append(f"| {o.claim.statement} | {diff} | {o.claim.margin:+.3f} | "
                      f"{o.wins} of {o.n} | {verdict} |")
    o.check()  # asserts holds == claim.expected, the outcome recorded in the experiment
    glue(f"ch4_claim_{o.claim.id}", o.words, display=False)
    glue(f"ch4_claim_{o.claim.id}_diff", float(np.mean(o.diffs)), display=False)
    glue(f"ch4_claim_{o.claim.id}_sd", float(np.std(o.diffs, ddof=1)), display=False)
held = [o.claim.statement for o in OUTCOMES if o.holds]
summary = (f"{len(held)} of the {len(OUTCOMES)} registered claims hold"
           + (": " + "; ".join(held) + "." if held else "."))
glue("ch4_summary", summary, display=False)
display(Markdown("\n".join(claim_rows)))
print(summary)

# %% [markdown]
# **What the medium run shows.** The paper's comparison reproduces on our scenes: BCE + RMI beats
# softmax CE on mIoU by {glue:text}`ch4_claim_rmi_beats_ce_miou_diff:+.3f` (the claim
# {glue:text}`ch4_claim_rmi_beats_ce_miou`), and the RMI term, compared with the loss it is
# actually paired with, adds {glue:text}`ch4_claim_rmi_beats_bce_miou_diff:+.3f` mIoU over BCE
# alone ({glue:text}`ch4_claim_rmi_beats_bce_miou`). The confound the paper's Table 1 hides is
# real here: BCE alone is *not* "roughly the same" as CE. CE is ahead of BCE by
# {glue:text}`ch4_claim_ce_not_below_bce_diff:.3f` mIoU, so the equivalence within 0.01 fails
# (BCE not worse than CE by 0.01: {glue:text}`ch4_claim_bce_not_below_ce`), and more than half of
# what RMI gains over BCE only makes up for the weaker cross-entropy it comes with.
#
# On the thin class the evidence is weaker than the paper's CamVid table suggests. Wire IoU rises
# from {glue:text}`ch4_med_bce_wire:.3f` (BCE) to {glue:text}`ch4_med_rmi_wire:.3f` (BCE + RMI),
# a mean paired gain of {glue:text}`ch4_claim_rmi_beats_bce_wire_diff:.3f` — exactly the
# pre-registered margin, so neither "better by more than 0.02"
# ({glue:text}`ch4_claim_rmi_beats_bce_wire`) nor "worse by more than 0.02" holds: the
# experiment does not resolve an effect of that size, and BCE + RMI ends level with CE
# ({glue:text}`ch4_med_ce_wire:.3f`). Invisible gaps stay mostly unrecovered by every arm
# (gap recall at most {glue:text}`ch4_med_rmi_df4_dither_gap_recall:.2f`).
#
# The dither ξ of {ref}`ch4-dither` gives the best models of the run. At $\mathcal{DF}=2$ it
# reaches mIoU {glue:text}`ch4_med_rmi_dither_miou:.3f` ± {glue:text}`ch4_med_rmi_dither_miou_sd:.3f`
# and wire IoU {glue:text}`ch4_med_rmi_dither_wire:.3f`, against
# {glue:text}`ch4_med_rmi_miou:.3f` and {glue:text}`ch4_med_rmi_wire:.3f` with the paper's
# ξ = 10⁻⁶; its registered claim, against BCE, holds
# ({glue:text}`ch4_claim_dither_beats_bce_miou`). We registered no claim of dither ξ against
# paper ξ at $\mathcal{DF}=2$, so that difference is an observation with five seeds behind it, not
# a tested claim. At $\mathcal{DF}=4$ (64 points per image) both ξ are unstable: some seeds
# collapse, the spread over seeds is {glue:text}`ch4_med_rmi_df4_miou_sd:.2f` and
# {glue:text}`ch4_med_rmi_df4_dither_miou_sd:.2f` mIoU, and the claim that the dither ξ rescues
# it does not hold ({glue:text}`ch4_claim_df4_dither_beats_df4_miou`); nor does its opposite.
# The single-seed rescue of §12 does not carry over as a reliable effect. On cost: an RMI step
# takes about twice a CE step for this small model (the "train s" column), and nothing at test
# time.

# %% [markdown]
# ## 12. Ablations (after the paper's Table 3)
#
# One seed at `small` scale, the same budget, changing one thing at a time from the main setting
# ($R=3$, average pooling, $\mathcal{DF}=2$): $R\in\{1,2,3\}$, max pooling,
# $\mathcal{DF}\in\{1,2,4\}$, plus two rows on ξ explained below. The paper's numbers (DeepLabv3,
# VOC 2012 val, full scale) are beside ours. With a single seed, differences below the seed
# spread of the main table are noise.

# %%
ABLATIONS = [("R=1", {"radius": 1}), ("R=2", {"radius": 2}), ("R=3 (main)", {}),
             ("max pool", {"pool": "max"}), ("DF=1", {"pool_size": 1}),
             ("DF=4", {"pool_size": 4}), ("DF=4, ξ=1e-3", {"pool_size": 4, "xi": 1e-3}),
             ("DF=4, ξ=Δ²/12", {"pool_size": 4, "xi": dither_xi(4)})]
PAPER_T3 = {"R=1": "78.25 (DF 4)", "R=2": "78.52 (DF 4)",
            "R=3 (main)": "78.71 (DF 4), 79.23 (DF 2)", "max pool": "78.62 (DF 4)",
            "DF=1": "not run (memory)", "DF=4": "78.71",
            "DF=4, ξ=1e-3": "not in the paper", "DF=4, ξ=Δ²/12": "not in the paper"}
ablation = {}
for label, over in ABLATIONS:
    if not over:
        ablation[label] = results["BCE+RMI"][0]
        continue
    fn, kw = make_rmi_loss(**over)
    tag = "rmi-" + "-".join(f"{k}{v}" for k, v in over.items())
    ablation[label] = run(tag, fn, SEEDS[0], {"loss": "rmi", **kw})[1]
COLS = ["miou", "iou_wire", "iou_dot", "boundary_f", "gap_recall", "ce_part"]
rows_ = ["| setting | mIoU | IoU wire | IoU dot | boundary F | gap recall "
         "| final BCE part | ms/iter | paper mIoU (VOC val) |", "|---" * 9 + "|"]
for k, v in ablation.items():
    rows_.append(f"| {k} | " + " | ".join(f"{v[c]:.3f}" for c in COLS)
                 + f" | {v['ms_per_iter']:.0f} | {PAPER_T3[k]} |")
for name, paper in (("BCE", "77.09"), ("CE", "77.14")):
    r0 = results[name][0]
    cells = [f"{r0[c]:.3f}" for c in COLS[:-1]]
    cells += ["—", f"{r0['ms_per_iter']:.0f}", paper]
    rows_.append(f"| {name} (seed {SEEDS[0]}) | " + " | ".join(cells) + " |")
display(Markdown("\n".join(rows_)))
for key, label in (("r1", "R=1"), ("r3", "R=3 (main)"), ("df4", "DF=4"),
                   ("df1", "DF=1"), ("df4xi", "DF=4, ξ=1e-3"),
                   ("df4dither", "DF=4, ξ=Δ²/12")):
    glue(f"ch4_abl_{key}", ablation[label]["miou"], display=False)
    glue(f"ch4_abl_{key}_ce", ablation[label]["ce_part"], display=False)
glue("ch4_grad_bound", 1 / (2 * 9 * XI), display=False)

# %% [markdown]
# The paper finds $R>1$ better than $R=1$, average pooling best, and a smaller $\mathcal{DF}$ better
# (Table 3). Two of our rows stand out far beyond the seed spread of §11: $R=1$ (mIoU
# {glue:text}`ch4_abl_r1:.3f`) and $\mathcal{DF}=4$ ({glue:text}`ch4_abl_df4:.3f`) against
# {glue:text}`ch4_abl_r3:.3f` for the main setting. The logged cross-entropy part of Eq. 16 shows
# what happened: it ends at {glue:text}`ch4_abl_r1_ce:.2f` and {glue:text}`ch4_abl_df4_ce:.2f`
# against {glue:text}`ch4_abl_r3_ce:.2f` — it stopped decreasing, and the rare classes were never
# learnt. The gradient of $\ell$ with respect to $M$ is $(M+\xi I)^{-1}/2d$, up to
# $1/(2d\xi)\approx$ {glue:text}`ch4_grad_bound:.0f` for ξ = 1e-6. With few points per image
# ($\mathcal{DF}=4$ leaves 64 on our 40-px images, the paper's 513-px crops keep 16,129) or a single
# coordinate ($R=1$), the $M$ of a class with a handful of pixels in an image gets close to singular,
# and those terms dominate the step. A larger ξ bounds them: the row "DF=4, ξ=1e-3" (ours, not in
# the paper; one run, chosen from this diagnosis, not tuned further) reaches
# {glue:text}`ch4_abl_df4xi:.3f` with a cross-entropy part of {glue:text}`ch4_abl_df4xi_ce:.2f`.
#
# The dither of {ref}`ch4-dither` says which ξ is right. At $\mathcal{DF}=4$ the pooled labels lie
# on a lattice of spacing $\Delta=1/16$, and ξ = Δ²/12 = {glue:text}`ch4_xi_df4:.1e` is the
# smallest value for which $\ell$ belongs to a valid bound on the mutual information: the paper's
# 10⁻⁶ is {glue:text}`ch4_xi_below:.0f` times smaller, the 10⁻³ that rescued the run
# {glue:text}`ch4_xi_above:.1f` times larger. The row "DF=4, ξ=Δ²/12" uses it and reaches
# {glue:text}`ch4_abl_df4dither:.3f`. These are single seeds, the 10⁻³ chosen after looking at
# the data; the `medium` experiment of {ref}`ch4-medium` asks the same question on five fresh
# seeds with converged models (claims `df4_dither_*`):
# {glue:text}`ch4_claim_df4_dither_beats_df4_miou`. ξ is therefore not just numerical safety: it
# caps the weight of near-degenerate (image, class) terms, and its scale is set by the lattice of
# the pooled labels. (The official code's ξ = 5e-4 on unnormalised sums is a *smaller* ξ, 5e-4/n,
# on the normalised covariance.) Note also that $R=1$ is a
# correlation loss on the *pooled* maps (§7): the pooling already mixes a
# $\mathcal{DF}\times\mathcal{DF}$ neighbourhood — the paper's own $R=1$ row (78.25) is 1.1 points
# above CE.
#
# ## 13. The paper's results (full scale)
#
# Quoted from {cite:t}`zhao2019rmi`: ResNet-101 backbones pre-trained on ImageNet only, output
# stride 16, no test-time augmentation.
#
# **Table 1 — PASCAL VOC 2012 *val*, mIoU (%)** (paper, full scale)
#
# | method | DeepLabv3 | DeepLabv3+ |
# |---|---|---|
# | CE (official DeepLab numbers) | 77.21 | 78.85 |
# | CE | 77.14 | 78.17 |
# | BCE | 77.09 | 77.41 |
# | CE & CRF-1 / -5 / -10 | 78.32 / 78.40 / 78.28 | 78.90 / 78.75 / 78.60 |
# | Affinity | 76.24 | 77.09 |
# | RMI | **78.71** | **79.66** |
#
# **Table 2 — PASCAL VOC 2012 *test*, mIoU (%)** (paper, full scale; the 21 per-class columns are in
# the paper): DeepLabv3 CE 76.58, CRF-5 77.96, RMI **78.58**; DeepLabv3+ CE 78.23, CRF-1 78.86,
# RMI **80.16**. RMI is not better in every class: DeepLabv3 loses 4.9 points on dining table,
# DeepLabv3+ 2.0 on tv monitor.
#
# **Table 4 — CamVid *test*, IoU (%)** (paper, full scale; RMI with $\mathcal{DF}=4$, $R=3$)
#
# | model | method | sky | building | pole | road | pavement | tree | sign | fence | car | pedestrian | bicyclist | mIoU |
# |---|---|---|---|---|---|---|---|---|---|---|---|---|---|
# | DeepLabv3 | CE | 88.06 | 79.03 | 10.12 | 91.32 | 73.21 | 72.65 | 41.04 | 39.52 | 79.35 | 42.43 | 54.51 | 58.50 |
# | DeepLabv3 | CE & CRF | 90.64 | 80.48 | 4.70 | 91.49 | 73.64 | 74.35 | 39.93 | 41.98 | 80.45 | 40.50 | 54.20 | 58.59 |
# | DeepLabv3 | Affinity | 88.23 | 78.85 | 11.54 | 92.77 | 76.50 | 71.96 | 45.41 | 39.27 | 82.65 | 43.26 | 54.14 | 59.60 |
# | DeepLabv3 | RMI | 89.29 | 79.89 | 11.64 | 92.04 | 75.62 | 73.39 | 48.02 | 43.25 | 82.01 | 46.74 | 59.67 | 61.11 |
# | DeepLabv3+ | CE | 90.86 | 80.28 | 27.62 | 93.60 | 78.57 | 74.35 | 44.51 | 38.86 | 84.35 | 51.80 | 57.09 | 62.82 |
# | DeepLabv3+ | CE & CRF | 91.88 | 80.92 | 15.98 | 93.20 | 78.14 | 74.89 | 42.14 | 39.72 | 84.50 | 40.74 | 56.04 | 61.68 |
# | DeepLabv3+ | Affinity | 90.23 | 81.03 | 29.83 | 93.93 | 80.86 | 74.75 | 47.21 | 41.50 | 85.12 | 54.97 | 60.92 | 64.42 |
# | DeepLabv3+ | RMI | 90.91 | 80.50 | 28.68 | 94.16 | 81.28 | 73.77 | 52.08 | 42.72 | 83.22 | 57.75 | 62.57 | 65.06 |
#
# The CamVid mIoU column is not the mean of the 11 class columns:

# %% tags=["nbval-check-output"]
camvid = {  # [RMI, Table 4]: 11 per-class IoUs and the reported mIoU
    "v3 CE": ([88.06, 79.03, 10.12, 91.32, 73.21, 72.65,
               41.04, 39.52, 79.35, 42.43, 54.51], 58.50),
    "v3 CE&CRF": ([90.64, 80.48, 4.70, 91.49, 73.64, 74.35,
                   39.93, 41.98, 80.45, 40.50, 54.20], 58.59),
    "v3 Affinity": ([88.23, 78.85, 11.54, 92.77, 76.50, 71.96,
                     45.41, 39.27, 82.65, 43.26, 54.14], 59.60),
    "v3 RMI": ([89.29, 79.89, 11.64, 92.04, 75.62, 73.39,
                48.02, 43.25, 82.01, 46.74, 59.67], 61.11),
    "v3+ CE": ([90.86, 80.28, 27.62, 93.60, 78.57, 74.35,
                44.51, 38.86, 84.35, 51.80, 57.09], 62.82),
    "v3+ CE&CRF": ([91.88, 80.92, 15.98, 93.20, 78.14, 74.89,
                    42.14, 39.72, 84.50, 40.74, 56.04], 61.68),
    "v3+ Affinity": ([90.23, 81.03, 29.83, 93.93, 80.86, 74.75,
                      47.21, 41.50, 85.12, 54.97, 60.92], 64.42),
    "v3+ RMI": ([90.91, 80.50, 28.68, 94.16, 81.28, 73.77,
                 52.08, 42.72, 83.22, 57.75, 62.57], 65.06),
}
hidden = {}
for k, (ious, reported) in camvid.items():
    mean11 = sum(ious) / 11
    # the 12th IoU that would make the reported value a 12-class mean
    hidden[k] = 12 * reported - sum(ious)
    assert abs(mean11 - reported) > 0.05  # more than rounding to 2 decimals explains
    print(f"{k:>13}: mean of 11 columns {mean11:6.2f} vs reported {reported:6.2f}; "
          f"implied 12th class IoU {hidden[k]:5.2f}")
glue("ch4_camvid_mean11", sum(camvid["v3 CE"][0]) / 11, display=False)

# %% [markdown]
# ```{warning}
# **Erratum (Table 4, CamVid mIoU).** The reported mIoU is 2–3 points below the mean of the 11 listed
# classes (DeepLabv3 CE: {glue:text}`ch4_camvid_mean11:.2f` vs 58.50). The official code trains and
# evaluates 12 classes, "unlabelled" included; the reported values are consistent with a 12-class mean
# whose hidden 12th IoU is 30–42 (printed above). Compare CamVid numbers only under the same class
# protocol (`pb.data.segmentation.CamVid(unlabelled="void" | "class")`). *Checked* (arithmetic);
# the 12-class reading is *inferred* from the code. More in {ref}`the errata <errata-ch4>`.
# ```
#
# ## 14. Full scale
#
# At `full` scale this section runs the chapter's experiment with its `full` configuration,
# defined once in `pixelbook.experiments.rmi` (`FULL`, `FULL_MODEL`) — the same runs as
# `python -m pixelbook.run 04_region_mutual_information --scale full` (or under `torchrun` on
# several GPUs): every arm trains torchvision's DeepLabV3 (ResNet-50, ImageNet backbone, output
# stride 16; the paper uses ResNet-101 with a three-convolution stem) with the paper's recipe — SGD
# with momentum 0.9, weight decay $10^{-4}$, batch 16, learning rate 0.007 (VOC) or 0.025 (CamVid)
# with warm-up and poly decay, crops of 513 (VOC) or 479 (CamVid), random scaling and flipping,
# 30,406 (VOC) or 5,800 (CamVid) iterations [RMI, Sec. 5.1] — on PASCAL VOC 2012 `train_aug`
# (torchvision downloads VOC and SBD) or CamVid (`FULL_DATASET = "camvid"`), and scores mIoU on VOC
# val or CamVid test. An estimated 4 GPU-hours per arm on VOC (the book's page on full-scale runs
# says how the estimate is made). Nothing here runs below `full` scale.

# %% tags=["hide-input"]
if SCALE == "full":
    full_runs = {arm.name: EXP.run(arm.name, SEED, "full", device=DEVICE,
                                   **EXP.full_overrides(FULL_DATASET))
                 for arm in EXP.arms_for("full")}
    for name, full_run in full_runs.items():
        miou = 100 * full_run.metrics["seg.miou"]
        print(f"{name}: mIoU {miou:.2f} on {FULL_DATASET}")
else:
    print(f"scale={SCALE}: the full-scale runs are skipped (set SCALE='full' on a GPU)")

# %% [markdown]
# ## 15. Interactive: radius, down-sampling and the gradient
#
# Take the wire channel of a test image and the trained CE model's wire probability for it.
# {numref}`fig-ch4-explorer` shows the (pooled) label and probability maps, the $2d\times2d$ joint
# covariance of the region vectors (P block top-left, Y block bottom-right), and
# $-\partial\ell/\partial p$ at full resolution: where gradient descent on the RMI term pushes the
# probability up (red) or down (blue). Choose the radius $R$ and the down-sampling factor.

# %%
with torch.no_grad():
    logits_one = models[("CE", SEEDS[0])].eval()(test_data["image"][:1].to(DEVICE))
    logits_one = logits_one.cpu()
    wire_prob = torch.softmax(logits_one, 1)[:, 2:3].double()
wire_label = (test_data["labels"][:1] == 2).double()[:, None]


def rmi_explorer(radius=3, factor=2):
    p = wire_prob.clone().requires_grad_(True)
    pp, yy = RMI.downsample(p, "avg", factor), RMI.downsample(wire_label, "avg", factor)
    if min(pp.shape[-2:]) < radius:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, f"R={radius} > pooled size {pp.shape[-1]}", ha="center",
                va="center")
        ax.set_axis_off()
        return fig
    cov = RMI.joint_covariance(pp, yy, radius)[0, 0]
    ell = RMI.rmi_from_covariance(cov, XI)
    grad, = torch.autograd.grad(ell, p)
    fig, axes = plt.subplots(2, 2, figsize=(5.4, 5.2))
    axes = axes.ravel()
    axes[0].imshow(yy[0, 0], cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"label (wire), pooled /{factor}")
    axes[1].imshow(pp[0, 0].detach(), cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("CE model's p(wire)")
    axes[2].imshow(cov.detach(), cmap="viridis")
    axes[2].axhline(radius * radius - 0.5, color="w", lw=0.5)
    axes[2].axvline(radius * radius - 0.5, color="w", lw=0.5)
    axes[2].set_title(f"joint covariance, d = {radius * radius}")
    lim = float(grad.abs().max()) or 1.0
    axes[3].imshow(-grad[0, 0], cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[3].set_title(f"−∂ℓ/∂p,  ℓ = {float(ell.detach()):.3f}")
    for a in axes:
        a.set_axis_off()
    fig.tight_layout()
    return fig


# %%
pb.widgets.explorer(rmi_explorer, {"radius": [1, 2, 3, 4, 5], "factor": [1, 2, 4]},
                    descriptions={"radius": "R", "factor": "down-sampling"},
                    glue="ch4_fig_explorer", alt="RMI on one wire map")

# %% [markdown]
# ```{glue:figure} ch4_fig_explorer
# :name: fig-ch4-explorer
#
# The RMI term on one test image's wire channel: label and CE model's probability after pooling,
# the joint covariance of the $d=R^2$ dimensional region vectors, and the negative gradient of the
# loss with respect to the probability.
# ```

# %% [markdown]
# ## Exercises
#
# 1. Show that $M\succeq0$ even with ξ inside the inverse: $\Sigma_Y-\Sigma_{YP}(\Sigma_P+\xi I)^{-1}\Sigma_{PY}
#    \succeq\Sigma_Y-\Sigma_{YP}\Sigma_P^{+}\Sigma_{PY}\succeq0$. Deduce $\ell\ge\tfrac12\ln\xi$.
# 2. Prove the canonical-correlation identity of §7 from $\det(I-K^\top K)=\prod_i(1-\rho_i^2)$ with
#    $K=\Sigma_Y^{-1/2}\Sigma_{YP}\Sigma_P^{-1/2}$.
# 3. Train with RMI alone (`CE_WEIGHT = 0`). Using §7, predict what goes wrong, then check: look at
#    the calibration of the probabilities and at classes absent from an image.
# 4. The official code keeps void pixels as points with label 0 and probability 0. Implement the
#    alternative — drop every window that touches a void pixel (weighted covariances) — and test it
#    with a VOC-like border of 255 around objects.
# 5. Re-run §10 with `ACTIVATION = "softmax"`. The medium experiment of §11 uses five seeds and
#    a paired t-test: from its per-seed spread, how large must a difference be before five seeds
#    can detect it at α = 0.025?
# 6. §12 found that ξ caps the gradient of near-singular terms. Measure, during training, the share of
#    the RMI gradient that comes from (image, class) pairs with fewer than 10 pixels of the class, for
#    ξ = 1e-6 and 1e-3.
# 7. The dithered bound of §5 allows any ξ ≥ Δ²/12. Run the medium arms `rmi_df4_dither` with
#    ξ = 1e-3 instead (`EXP.run(..., loss={"xi": 1e-3})`): is the bound's smallest ξ also the
#    best one for training?
#
# ## Summary
#
# - Cross-entropy is a sum over pixels; RMI turns $R\times R$ windows into $d$-dimensional points and
#   maximises a lower bound on the mutual information between label and prediction patches.
# - The bound $I\ge H(\boldsymbol Y)-\tfrac12\log((2\pi e)^d\det M)$, with $M$ the residual covariance
#   of the linear regression of $\boldsymbol Y$ on $\boldsymbol P$, holds without the paper's Bayes-linear
#   assumption; it is tight for Gaussians and loses exactly $\tfrac12\ln(\pi e/6)$ for uniform noise.
# - The loss term $\tfrac1{2d}\log\det(M+\xi I)$ is a sum of $\log(1-\rho_i^2)$ over canonical
#   correlations; with $R=1$ it is a correlation loss; it ignores calibration, polarity and absent
#   classes, hence $\lambda_{\text{ce}}\,$CE $+(1-\lambda_{\text{ce}})\,$RMI.
# - One Cholesky of the joint covariance gives the log-determinant without an inverse; a custom
#   backward keeps only the pooled maps, which makes `pb.rmi` faster and leaner than `rmi-pytorch`.
# - For discrete labels the paper's bound is invalid as written; dithering the labels on their
#   lattice repairs it and makes ξ = Δ²/12 the smallest admissible ξ (10⁻⁶ is far below it).
# - On converged models, five seeds, claims fixed before the run: {glue:text}`ch4_summary`
#   The paper's full-scale gains are 1.5–2.6 mIoU points.
#
# ## References
#
# {cite:t}`zhao2019rmi`; {cite:t}`chen2018deeplab`; {cite:t}`everingham2010pascal`; T. M. Cover and
# J. A. Thomas, *Elements of Information Theory*, 2nd ed., Wiley 2006 (Thm 8.6.5); T.-W. Ke et al.,
# *Adaptive Affinity Fields for Semantic Segmentation*, ECCV 2018; G. J. Brostow et al., *Semantic
# object classes in video: a high-definition ground truth database*, PRL 2009 (CamVid);
# B. Hariharan et al., *Semantic contours from inverse detectors*, ICCV 2011 (SBD).

# %%
print(pb.runtime.env_report(T0, SCALE, DEVICE))
