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
# # Chapter 8. Multigrid predictive filter flow
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pixelbook-org/pixelbook/blob/main/notebooks/08_multigrid_filter_flow.ipynb)
#
# This chapter learns optical flow from unlabelled video by predicting, at every pixel, a small
# filter that rebuilds one frame from the next, and stacks such filters over an image pyramid
# so that large motions need only small filters. It follows Chapter 7 of
# {cite:t}`kong2019thesis` (also {cite:t}`kong2019mgpff`), the *multigrid Predictive Filter
# Flow* (mgPFF). We derive each step with a numerical check — one image to two frames, why
# filters train where offsets stall, the multigrid product and its reach, shared weights
# across scales, the terms that make filters flow-like, and mask propagation with the DAVIS
# measures — then train the model self-supervised on synthetic clips of moving sprites, read
# its flow, carry object masks through the clips and try it zero-shot on a real stereo pair.
# Seven claims, written before the `medium` experiment ran, are checked on its results.
#
# **Source:** S. Kong, *Pixel-Level Prediction: Models and Applications*, PhD thesis, UC Irvine
# (2019), Chapter 7 and Appendix E. Equation numbers below are the thesis'.
#
# **Notation.** We keep the thesis' symbols where the book's differ: $\mathbf T$ is a
# filter-flow operator (not a number of steps), $\mathbf I$ a frame, $L$ the number of pyramid
# levels, $K$ the propagation window, and $\mathcal J$, $\mathcal F$ the DAVIS measures.

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
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from myst_nb import glue

import pixelbook as pb
from pixelbook.filterflow import multigrid as mg
from pixelbook.metrics.video import (region_similarity_per_image,
                                     video_segmentation_scores)
from pixelbook.ops import apply_filter_flow, expected_flow, flow_warp

pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke|small|medium|full|auto
SEED = 0
DEVICE = "auto"
KERNEL_SIZE = 5  # k; the thesis: 11 (Sec. 7.2.2)
LEVELS = 3  # L; the thesis: 5 (Sec. 7.2.4)
THRESHOLD = 0.8  # the mask threshold of Sec. 7.3.1

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()
EXP = pb.experiments.get("08_multigrid_filter_flow")
R = KERNEL_SIZE // 2  # the filter radius r
print(EXP)

# %% [markdown]
# ## 1. From one image to two frames
#
# *Filter flow* {cite:p}`seitz2009filterflow` writes the change from a source frame
# $\mathbf I_B$ to a target frame $\mathbf I_A$ as a linear operator whose row for pixel $p$
# holds a filter over a small window of $\mathbf I_B$ around $p$:
#
# $$\mathbf I_A = \mathbf T_{B\to A}\cdot\mathbf I_B \qquad \text{(Eq. 7.1)}.$$
#
# The *predictive* version learns a network that outputs the filters from the two frames,
# $\mathbf T_{B\to A} = f_{\mathbf w}(\mathbf I_B, \mathbf I_A)$ (Eq. 7.2), and trains it on
# nothing but the two frames with the Charbonnier photometric loss
# $\phi(\mathbf s) = \frac1{|\mathcal I|}\sum_i\sqrt{s_i^2 + 0.001^2}$:
#
# $$\ell_{rec}(\mathbf I_B, \mathbf I_A) = \phi(\mathbf I_A - \mathbf T_{B\to A}\cdot\mathbf I_B)
# \qquad\text{(Eq. 7.3)},$$
#
# and, "in a reverse order", $\phi(\mathbf I_B - \mathbf T_{A\to B}\cdot\mathbf I_A)$. A filter
# that is one at offset $(\delta x, \delta y)$ and zero elsewhere copies the source pixel
# $p + (\delta x, \delta y)$: a translation. Its flow, the filter's mean offset (Eq. 7.6,
# `pb.ops.expected_flow`), is exactly that offset; and $\phi$ of a perfect reconstruction is
# $\phi(0) = 0.001$, not 0.

# %% tags=["nbval-check-output"]
def one_hot_filters(dx, dy, k, shape):
    """(1, k*k, H, W) filters that all read the source pixel at offset (dx, dy)."""
    r = k // 2
    filters = torch.zeros(1, k * k, *shape)
    filters[:, (dy + r) * k + (dx + r)] = 1.0
    return filters


g = torch.Generator().manual_seed(SEED)
source = torch.rand(1, 3, 24, 32, generator=g)
T = one_hot_filters(2, -1, KERNEL_SIZE, (24, 32))
out = apply_filter_flow(source, T)
# out(p) = source(p + (2, -1)): rows shift down by one, columns left by two
assert torch.equal(out[..., 1:, :-2], source[..., :-1, 2:])
assert expected_flow(T)[0, :, 5, 5].tolist() == [2.0, -1.0]
target = out  # a frame that this filter flow explains exactly
rec = mg.photometric_loss(target, source, T)
assert abs(float(rec) - 1e-3) < 1e-9  # phi(0) = epsilon
# the reverse direction: filters at offset (-2, +1) rebuild the source inside the frame
back = apply_filter_flow(target, one_hot_filters(-2, 1, KERNEL_SIZE, (24, 32)))
assert torch.equal(back[..., :-2, 2:-2], source[..., :-2, 2:-2])
print("one-hot filter = translation; flow (2, -1); oracle loss:", round(float(rec), 6))

# %% [markdown]
# ## 2. Why filters train where offsets stall
#
# Optical-flow networks usually predict an offset per pixel and read the source with bilinear
# interpolation (a spatial-transformer warp). The thesis notes (Sec. 7.1) that the fixed
# sampling grids of such a warp "typically only provide meaningful gradients once the predicted
# flow is nearly correct (*i.e.* within 1 pixel of the correct flow)". A one-dimensional
# example makes this exact. The source is a single bright pixel and
# the target is the source moved by $+3$ or by $-3$. With an offset $u$ and linear
# interpolation, the reconstruction depends on the source only at $\lfloor x+u\rfloor$ and
# $\lfloor x+u\rfloor+1$: once $u$ is more than a pixel from the truth, the target's bright pixel
# is nowhere in the derivative, so **the gradient with respect to $u$ is the same whether the
# truth is at $+3$ or at $-3$**. A softmax filter over the window $[-5, 5]$ starts uniform, every
# tap sees the target, and the most negative logit gradient sits on the true tap.

# %% tags=["nbval-check-output"]
N1, R1 = 64, 5
spike = torch.zeros(N1 + 2 * R1)
spike[R1 + 30] = 1.0  # one bright pixel
x1 = torch.arange(R1, N1 + R1)


def interp(signal, u):
    """signal(x + u) by linear interpolation (u a tensor broadcasting with x)."""
    pos = x1 + u
    i0 = pos.floor().long().clamp(0, signal.shape[-1] - 2)
    w = pos - i0
    if signal.ndim == 1:
        return (1 - w) * signal[i0] + w * signal[i0 + 1]
    return (1 - w) * signal.gather(1, i0) + w * signal.gather(1, i0 + 1)  # (n, N1)


def offset_grad(truth, u0=0.25):
    u = torch.tensor(u0, requires_grad=True)
    ((interp(spike, u) - spike[x1 + truth]) ** 2).mean().backward()
    return u.grad


def filter_grad(truth):
    z = torch.zeros(2 * R1 + 1, requires_grad=True)
    taps = torch.stack([spike[x1 + d] for d in range(-R1, R1 + 1)])
    recon = (z.softmax(0)[:, None] * taps).sum(0)
    ((recon - spike[x1 + truth]) ** 2).mean().backward()
    return z.grad


assert torch.equal(offset_grad(3), offset_grad(-3))  # blind to where the truth is
for truth in (3, -3):
    assert int(filter_grad(truth).argmin()) - R1 == truth  # the true tap gets the push
print("offset gradient, truth +3 / -3:", float(offset_grad(3)), float(offset_grad(-3)))
print("filter: most negative logit gradient at tap", int(filter_grad(3).argmin()) - R1)

# %% [markdown]
# Gradient descent shows the consequence, and also where it stops mattering. Below, 200 signals
# per kind are fitted by Adam (300 steps, both models start at zero displacement; a fit counts
# when its expected displacement is within half a pixel of the truth, drawn uniformly from
# $\{-4,\dots,4\}$). *Sparse* signals are a few bright pixels on black; *dense* ones are random
# piecewise-constant textures.

# %%
def fit_counts(signals, truths, steps=300, lr=0.05):
    """How many offsets / filters end within 0.5 px of the truth."""
    n = len(truths)
    y = signals.gather(1, x1 + truths[:, None])  # the targets: the moved signals
    u = torch.zeros(n, 1, requires_grad=True)
    z = torch.zeros(n, 2 * R1 + 1, requires_grad=True)
    taps = torch.stack([signals[:, x1 + d] for d in range(-R1, R1 + 1)], 1)
    opt = torch.optim.Adam([u, z], lr)
    for _ in range(steps):
        warped = interp(signals, u)
        recon = (z.softmax(1)[..., None] * taps).sum(1)
        loss = ((warped - y) ** 2).mean(1).sum() + ((recon - y) ** 2).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    mean_tap = (z.softmax(1) * torch.arange(-R1, R1 + 1.0)).sum(1)
    ok_offset = int(((u[:, 0] - truths.float()).abs() < 0.5).sum())
    ok_filter = int(((mean_tap - truths.float()).abs() < 0.5).sum())
    return ok_offset, ok_filter


TRIALS = pb.runtime.scaled(SCALE, smoke=20, small=200, medium=200, full=200)
gt = torch.Generator().manual_seed(SEED)
truths = torch.randint(-4, 5, (TRIALS,), generator=gt)
sparse = torch.zeros(TRIALS, N1 + 2 * R1)
sparse.scatter_(1, torch.randint(R1 + 4, N1 + R1 - 4, (TRIALS, 3), generator=gt), 1.0)
dense = torch.rand(TRIALS, (N1 + 2 * R1) // 4 + 1, generator=gt).repeat_interleave(4, 1)
dense = dense[:, :N1 + 2 * R1].contiguous()
counts = {"sparse": fit_counts(sparse, truths), "dense": fit_counts(dense, truths)}
for kind, (ok_u, ok_z) in counts.items():
    print(f"{kind}: offset {ok_u}/{TRIALS}, filter {ok_z}/{TRIALS}")
    assert ok_z > ok_u, kind  # what the text below says
    glue(f"ch8_toy_{kind}_offset", ok_u, display=False)
    glue(f"ch8_toy_{kind}_filter", ok_z, display=False)
glue("ch8_toy_trials", TRIALS, display=False)

# %% [markdown]
# On sparse signals the offsets reach the truth in {glue:text}`ch8_toy_sparse_offset` of
# {glue:text}`ch8_toy_trials` fits and the filters in {glue:text}`ch8_toy_sparse_filter`. On
# dense textures the offsets do much better ({glue:text}`ch8_toy_dense_offset`: the texture
# changes every few pixels, so the warp finds a slope almost anywhere), the filters reach
# {glue:text}`ch8_toy_dense_filter`. The argument is therefore about sparse or low-texture
# content and large initial errors — the situation of a network that starts from zero flow on
# video with large smooth regions.
#
# ## 3. Large motion needs a multigrid
#
# A $k\times k$ filter reaches $r = \lfloor k/2\rfloor$ pixels. To reach far with small filters
# the thesis borrows from multigrid solvers (Sec. 7.2.4): if $\mathbf Y = \mathbf T\mathbf X$,
# then at half resolution
#
# $$\mathbf D_{1/2}\mathbf Y \approx (\mathbf D_{1/2}\mathbf T\,\mathbf U_{2\times})
# (\mathbf D_{1/2}\mathbf X) = \mathbf T_{1/2}\mathbf X_{1/2}\qquad\text{(Eqs. 7.4–7.5)},$$
#
# and the full operator is a product of small *residual* operators, coarse to fine,
# $\mathbf T = \mathbf T_1\,\mathbf U_{2\times}\mathbf T_{1/2}\cdots\mathbf U_{2\times}
# \mathbf T_{1/2^{L-1}}$, each with a $k\times k$ support at its own scale. Upsampled by nearest
# neighbour, a level-$l$ filter becomes a filter with taps $2^l$ pixels apart (a dilated filter).
# Level $l$ moves by $c_l 2^l$ with $|c_l|\le r$, so $L$ levels reach exactly the integers in
# $[-r(2^L-1),\ r(2^L-1)]$, while the coefficients grow only by $\sum_{l<L}4^{-l} < 4/3$. With our
# $k = 5$, $L = 3$ that is ±{glue:text}`ch8_dmax` px per axis. The check enumerates all level
# coefficients, decomposes the translation $(13, -9)$, applies three levels of one-hot filters
# as the operator product (dilated filters, coarsest first) and compares with the translated
# image.

# %% tags=["nbval-check-output"]
reach = sorted({sum(c * 2 ** l for l, c in enumerate(cs))
                for cs in itertools.product(range(-R, R + 1), repeat=LEVELS)})
D_MAX = mg.max_displacement(KERNEL_SIZE, LEVELS)
assert reach == list(range(-D_MAX, D_MAX + 1)) and D_MAX == R * (2 ** LEVELS - 1)


def decompose(v):
    """Level coefficients (finest first) with sum c_l 2^l = v, |c_l| <= r."""
    return next(cs for cs in itertools.product(range(-R, R + 1), repeat=LEVELS)
                if sum(c * 2 ** l for l, c in enumerate(cs)) == v)


VX, VY = 13, -9
cx, cy = decompose(VX), decompose(VY)
H8 = W8 = 64
B8 = torch.rand(1, 3, H8, W8, generator=g)
level_filters = [one_hot_filters(cx[l], cy[l], KERNEL_SIZE, (H8 >> l, W8 >> l))
                 for l in reversed(range(LEVELS))]  # coarsest first
moved = mg.multigrid_apply(B8, level_filters, prewarp="filter")
# moved(p) = B(p + (13, -9)) wherever p + (13, -9) is inside the frame
assert torch.equal(moved[..., 9:, :W8 - 13], B8[..., :H8 - 9, 13:])
flow = mg.multigrid_flow([expected_flow(T) for T in level_filters])
assert flow[0, :, 32, 32].tolist() == [13.0, -9.0]
ratios = [mg.coefficient_ratio(L) for L in range(1, 6)]
assert ratios[-1] == 1.33203125 and all(x < 4 / 3 for x in ratios)
print(f"L={LEVELS}, k={KERNEL_SIZE}: reach ±{D_MAX} px; "
      f"13 = {cx}, -9 = {cy} (finest first)")
print("coefficient ratio, L = 1..5:", ratios)
D_THESIS = mg.max_displacement(11, 5)
print("thesis setting (k = 11, L = 5): reach ±", D_THESIS, "px")
glue("ch8_dmax", D_MAX, display=False)
glue("ch8_dmax_thesis", D_THESIS, display=False)

# %% [markdown]
# ```{warning}
# **Appendix E.5 says "D = 88".** "The filter of size 11x11 on the coarsest grid (16x
# downsample) implies the largest displacement we can represent is D=88." With five levels of
# $11\times11$ filters ($r = 5$) the reach is $r(2^5-1)$ = {glue:text}`ch8_dmax_thesis` px
# (checked above with `max_displacement(11, 5)`); 88 = 11 × 8 is the $80\times80$-kernel example
# of Sec. 7.2.4 (an $11\times11$ filter at $8\times$), not this sum. See the
# [errata](errata-ch8).
# ```
#
# ## 4. One network for every scale
#
# The thesis trains "the same model at all these scales" — one set of weights, called once per
# level on the pre-warped pair. Two consequences are checked on our `MultigridPFF`: the number
# of parameters does not depend on $L$, and the coarsest level of an $L$-level model is the
# one-level model run on the pair average-pooled by $2^{L-1}$. The filter maps of all levels
# hold $\sum_{l<L}4^{-l}$ times the coefficients of the finest.

# %% tags=["nbval-check-output"]
def make_model(levels):
    pb.runtime.seed_all(SEED)
    return mg.MultigridPFF(kernel_size=KERNEL_SIZE, levels=levels)


models = {L: make_model(L) for L in (1, LEVELS)}
n_params = {L: pb.models.count_parameters(m) for L, m in models.items()}
assert n_params[1] == n_params[LEVELS]
A8 = torch.rand(2, 3, 64, 64, generator=g)
B8 = torch.rand(2, 3, 64, 64, generator=g)
with torch.no_grad():
    out = models[LEVELS](A8, B8)
    coarse = models[1].pair_filters(F.avg_pool2d(A8, 4), F.avg_pool2d(B8, 4))[0]
torch.testing.assert_close(out.filters[0], coarse)
ratio = sum(T.numel() for T in out.filters) / out.filters[-1].numel()
assert ratio == mg.coefficient_ratio(LEVELS)
print(f"parameters: L=1 {n_params[1]:,}, L={LEVELS} {n_params[LEVELS]:,}; "
      f"coefficients / finest level = {ratio}")
glue("ch8_params", n_params[LEVELS], display=False)
glue("ch8_model_mb", 4 * n_params[LEVELS] / 1e6, display=False)  # float32

# %% [markdown]
# ## 5. Making the filters flow-like
#
# "Training with the photometric loss alone produces almost perfect reconstruction
# performance", but a filter that blends several source pixels is not a motion (Sec. 7.2.5).
# The softmax makes every filter non-negative and sum-to-one; three terms then push it towards a
# translated delta. With the flow $\mathbf F(\mathbf T)$ of Eq. 7.6:
#
# - $\ell_{flow}$: the photometric loss of warping $\mathbf I_B$ with $\mathbf F(\mathbf T)$
#   bilinearly (`flow_warp_loss`; we average over the samples that land inside the frame);
# - $\ell_{fb}(\mathbf f, \mathbf b) = \frac1{|\mathcal I|}\sum_i\phi(\mathbf p_i -
#   \mathbf b(\mathbf f(\mathbf p_i)))$ (Eq. 7.7) with $\mathbf f = \mathbf F(\mathbf T_{B\to A})$,
#   $\mathbf b = \mathbf F(\mathbf T_{A\to B})$: following the forward flow and then the
#   backward one must come home, i.e. $\mathbf f(p) + \mathbf b(p + \mathbf f(p)) = 0$;
# - $\ell_{sm} = \|\nabla\mathbf F(\mathbf T)\|_1$, mean absolute differences of the flow.
#
# Checks: for a translation the oracle flow gives $\ell_{flow} = \phi(0)$; a consistent pair
# $\mathbf b = -\mathbf f$ gives $\ell_{fb} = 0$ (with $\epsilon = 0$), $\mathbf b = +\mathbf f$
# gives $\|2\mathbf f\|$; a constant flow has $\ell_{sm} = 0$ and a unit step in $x$ between
# columns 1 and 2 of a $4\times4$ flow has 4 non-zero differences out of 24, i.e. $1/6$.

# %% tags=["nbval-check-output"]
f = torch.zeros(1, 2, 16, 16)
f[:, 0], f[:, 1] = 3.0, -2.0
src = torch.rand(1, 3, 16, 16, generator=g)
tgt = torch.zeros_like(src)
tgt[..., 2:, :13] = src[..., :14, 3:]  # tgt(p) = src(p + f(p)) wherever that is inside
assert abs(float(mg.flow_warp_loss(tgt, src, f)) - 1e-3) < 1e-9
assert float(mg.forward_backward_loss(f, -f, epsilon=0.0)) == 0.0
assert abs(float(mg.forward_backward_loss(f, f, epsilon=0.0)) - 2 * 13 ** 0.5) < 1e-5
assert float(mg.flow_smoothness_loss(f)) == 0.0
step = torch.zeros(1, 2, 4, 4)
step[:, 0, :, 2:] = 1.0
assert abs(float(mg.flow_smoothness_loss(step)) - 1 / 6) < 1e-7
fb = float(mg.forward_backward_loss(f, f, epsilon=0.0))
print(f"l_flow(oracle) = phi(0); l_fb(f, -f) = 0, l_fb(f, f) = |2f| = {fb:.4f}; "
      "l_sm(step) = 1/6")

# %% [markdown]
# ```{note}
# **Units.** The thesis weighs the four terms equally ($\lambda_{flow} = \lambda_{fb} =
# \lambda_{sm} = 1$, Eq. 7.8) but does not say in which units the positions of $\ell_{fb}$ are
# measured. The released code divides them by the image size minus one, which makes the term
# about $W$ times weaker than in pixels. In a pilot with pixel units, the thesis' weights and
# its concatenation head (Sec. 8) every filter collapsed to the identity; we use the code's units for $\ell_{fb}$ and
# $\ell_{sm}$ (`normalize_flows=True`) with the thesis' weights.
# ```
#
# ```{warning}
# **The released code's smoothness term is not the thesis' and keeps only one range.** The code
# penalises differences of the $k^2$-channel *filter maps* over ranges $1,\dots,R-1$, but its
# `Loss4FilterSmoothMultiScale` accumulates the ranges and returns only the last one divided by
# $R-1$. We follow the thesis ($\ell_{sm}$ on the flow) and provide the code's term fixed
# (`filter_smoothness_loss`, the mean over ranges); the check writes the released return out.
# ```

# %% tags=["nbval-check-output"]
def one_range(X, d, eps=1e-3):
    """The code's smoothness of filter maps X at one range d."""
    N, K, H, W = X.shape
    h = torch.sqrt((X[..., d:] - X[..., :-d]) ** 2 + eps ** 2).sum()
    v = torch.sqrt((X[..., d:, :] - X[..., :-d, :]) ** 2 + eps ** 2).sum()
    return (h + v) / (N * K * H * W)


def released(X, R_max, eps=1e-3):
    """What the released loop returns: the ranges are summed in hLOSS/vLOSS, unused."""
    for d in range(1, R_max):
        N, K, H, W = X.shape
        hloss = torch.sqrt((X[..., d:] - X[..., :-d]) ** 2 + eps ** 2).sum()
        vloss = torch.sqrt((X[..., d:, :] - X[..., :-d, :]) ** 2 + eps ** 2).sum()
    return (vloss + hloss) / (N * K * H * W) / (R_max - 1)


X = torch.rand(2, KERNEL_SIZE ** 2, 16, 16, generator=g).softmax(1)
ranges = torch.stack([one_range(X, d) for d in (1, 2, 3)])
torch.testing.assert_close(mg.filter_smoothness_loss(X, max_range=4), ranges.mean())
torch.testing.assert_close(released(X, 4), ranges[-1] / 3)
print(f"fixed: {float(ranges.mean()):.4f}, released: {float(released(X, 4)):.4f}")

# %% [markdown]
# ## 6. The objective, inline
#
# Eq. 7.8 sums the four terms over the levels "and also those from A to B". For one level and
# one direction it is a few lines; the package's `mgpff_terms` must agree on random frames
# with a randomly initialised one-level model.

# %%
def eq_7_8(model, A, B, eps=1e-3):
    """One level, one direction, weights 1; l_fb and l_sm in image fractions."""
    T_ba, T_ab = model.pair_filters(A, B)
    f, b = expected_flow(T_ba), expected_flow(T_ab)
    rec = mg.charbonnier(A - apply_filter_flow(B, T_ba), eps)  # Eq. 7.3
    warped, inside = flow_warp(B, f)
    l_flow = mg.charbonnier(A - warped, eps, valid=inside)
    unit = torch.tensor([1 / (A.shape[-1] - 1), 1 / (A.shape[-2] - 1)]).view(1, 2, 1, 1)
    b_at, inside_f = flow_warp(b, f, padding="border")  # b(p + f(p))
    home = torch.sqrt((((f + b_at) * unit) ** 2).sum(1) + eps ** 2)  # Eq. 7.7
    l_fb = (home * inside_f).sum() / inside_f.sum()
    fu = f * unit
    l_sm = ((fu[..., 1:] - fu[..., :-1]).abs().mean()
            + (fu[..., 1:, :] - fu[..., :-1, :]).abs().mean())
    return rec + l_flow + l_fb + l_sm


model1 = make_model(1)
for p in model1.parameters():  # a random (not zero-initialised) head
    torch.nn.init.normal_(p, std=0.1)
A6, B6 = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
with torch.no_grad():
    terms = mg.mgpff_terms(model1, A6, B6, both_directions=False)
    torch.testing.assert_close(eq_7_8(model1, A6, B6), sum(terms.values()))
print({k: round(float(v), 4) for k, v in terms.items()})

# %% [markdown]
# ## 7. Data: sprites that move further than one level reaches
#
# The thesis trains on $\sim 6\times10^4$ frames of Sintel, DAVIS and JHMDB at $256\times256$
# with 500K iterations on a GPU. Our CPU-sized stand-in is synthetic: $64\times64$ clips of one
# to three textured disks and squares that move with integer velocities uniform in
# $[-4, 4]^2$ px per frame over a textured background drifting by at most 1 px, with layered
# occlusions (`pb.data.sprites.make_sprite_clips`). The clips come with the exact flow and
# where it is observable (not occluded, in view), and with instance masks to propagate.
# Training sees only pairs of frames 1 or 2 apart, in both orders — never a flow or a mask.
# Our model has $L = 3$ levels of $5\times5$ filters (reach ±{glue:text}`ch8_dmax` px); one
# level alone reaches ±2 px, and {glue:text}`ch8_fast_share:.0f` % of the sprites of the test
# clips move faster than that along some axis.

# %%
CFG = EXP.run_config("mgpff", SEED, SCALE)
DATA = EXP.load_data(CFG)
clips = DATA["test_clips"]
fast = (clips.velocities.abs().amax(-1) > R)[clips.active]
print(f"train pairs: {len(DATA['train']['target'])}, test clips: "
      f"{tuple(clips.frames.shape)}; sprites faster than {R} px/frame: "
      f"{100 * fast.float().mean():.0f} %")
glue("ch8_fast_share", 100 * float(fast.float().mean()), display=False)
glue("ch8_n_pairs", len(DATA["train"]["target"]), display=False)
CLIP = 0  # the test clip shown in the figures
gt_flow, gt_valid = clips.flow(0, 1)
fig, ax = plt.subplots(1, 4, figsize=(pb.viz.PAGE_WIDTH, 1.9))
panels = [clips.frames[CLIP, 0].permute(1, 2, 0),
          clips.frames[CLIP, 1].permute(1, 2, 0),
          pb.viz.colorize_flow(gt_flow[CLIP], max_mag=4), gt_valid[CLIP]]
titles = ["frame 0", "frame 1", "true flow 0→1", "observable"]
for a, img, title in zip(ax, panels, titles):
    a.imshow(img, cmap="gray")
    a.set_title(title)
    a.set(xticks=[], yticks=[])  # keep the frame: white means zero flow
pb.widgets.show(fig, glue="ch8_fig_data")

# %% [markdown]
# ```{glue:figure} ch8_fig_data
# :name: fig-ch8-data
# :alt: two frames of a sprite clip, the colour-coded true flow and the observable pixels
#
# A test clip: two consecutive frames, the true flow from frame 0 to frame 1 (hue =
# direction, saturation = length, white = still; full saturation at 4 px) and the pixels
# where that flow is observable (white), i.e. not occluded in frame 1 and still in view.
# ```
#
# ## 8. Self-supervised training
#
# The `mgpff` arm of the chapter's experiment: the three-level model, Eq. 7.8 with the thesis'
# weights in both directions at every level, Adam with a cosine schedule
# (`pb.experiments.get("08_multigrid_filter_flow")` holds the whole configuration). One
# departure from the thesis is deliberate: the filter logits are a local *correlation* of the
# two frames' embeddings over the filter window (a learned temperature times the cosine of
# $e_A(p)$ and $e_B(p+t)$) plus the thesis' concatenation head as a residual. The thesis has no
# correlation layer (Sec. 7.2.6); with its head alone our CPU-sized pilots collapsed to the
# identity filter or learned only the average blur within hundreds of steps, while the thesis
# trains for 500K. Because a correlation matches pixels before any training, an `untrained` arm
# (the same network at its initial weights) is a baseline of its own.

# %%
run = EXP.run("mgpff", SEED, SCALE, DEVICE)
model = run.model.eval()
steps = [x for rec in run.history.records for x in rec["step_loss"]]
print(f"{len(steps)} steps in {run.train_time_s:.0f} s; "
      f"evaluation {run.eval_time_s:.0f} s")
fig, ax = plt.subplots(figsize=(4.2, 2.4))
ax.plot(np.arange(1, len(steps) + 1), steps, lw=0.8)
ax.set_xlabel("step")
ax.set_ylabel("Eq. 7.8 (batch)")
pb.widgets.show(fig, glue="ch8_fig_loss")

# %% [markdown]
# ```{glue:figure} ch8_fig_loss
# :name: fig-ch8-loss
# :alt: the training loss per step of the small-scale run
#
# The loss of Eq. 7.8 (both directions, all levels) on each training batch of this run.
# ```

# %% [markdown]
# ## 9. What the filters learned, at this scale
#
# The metrics of the experiment (`evaluate` of `pixelbook.experiments.mgpff`) on the held-out
# clips: the reconstruction error of the finest filters relative to copying the source frame
# (`rec.ratio`), the end-point error of the composed flow on sprite pixels and on all
# observable pixels (px), the DAVIS $\mathcal J$ and $\mathcal F$ of masks propagated from
# frame 0, the long-range reconstruction error (Table 7.2 protocol, $[0, 255]$) for frames 3 and
# 5 apart, and the horizontal error on a real stereo pair relative to zero flow (Sec. 11). The
# untrained network and the identity (zero flow, copy the first mask) are run the same way.
# These are `small`-scale numbers from one seed: a live demonstration, not the evidence
# (that is Sec. 12).

# %%
LONG = [f"longrange.m{m}" for m in CFG.eval["long_range"]]  # m = 3, 5 (smoke: 2, 3)
METRICS = ["rec.ratio", "flow.epe_sprites", "flow.epe_all", "vos.J_mean", "vos.F_mean",
           *LONG, "stereo.ratio"]
small = {"mgpff": run.metrics}
for arm in ("untrained", "identity"):
    small[arm] = EXP.run(arm, SEED, SCALE, DEVICE).metrics
rows = ["| arm | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
for arm, m in small.items():
    rows.append(f"| {arm} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + " |")
display(Markdown("\n".join(rows)))
for key in ("rec.ratio", "flow.epe_sprites", "vos.J_mean"):
    for arm in small:
        glue(f"ch8_small_{arm}_{key.replace('.', '_')}", small[arm][key], display=False)

# %%
pair = clips.frames[:, 0], clips.frames[:, 1]
with torch.no_grad():
    out = model(*pair)
    pb.runtime.seed_all(SEED)  # this seed's initial weights, as the `untrained` arm
    untrained = EXP.model(EXP.run_config("untrained", SEED, SCALE), DATA)
    out0 = untrained.eval()(*pair)
copy_err = (pair[1] - pair[0]).abs().mean(1)[CLIP]
rec_err = (out.reconstruction - pair[0]).abs().mean(1)[CLIP]
panels = [pb.viz.colorize_flow(gt_flow[CLIP], max_mag=4),
          pb.viz.colorize_flow(out0.flow[CLIP], max_mag=4),
          pb.viz.colorize_flow(out.flow[CLIP], max_mag=4), copy_err, rec_err]
titles = ["true flow", "untrained", "mgPFF", "|copy error|", "|mgPFF rec. error|"]
fig, ax = plt.subplots(1, 5, figsize=(pb.viz.PAGE_WIDTH, 1.7))
for a, img, title in zip(ax, panels, titles):
    a.imshow(img, cmap="magma", vmin=0, vmax=0.5)
    a.set_title(title, fontsize=8.5)
    a.set(xticks=[], yticks=[])  # keep the frame: white means zero flow
pb.widgets.show(fig, glue="ch8_fig_flow")

# %% [markdown]
# ```{glue:figure} ch8_fig_flow
# :name: fig-ch8-flow
# :alt: true flow, flow of the untrained and the trained model, copy and reconstruction errors
#
# Frame 0 → 1 of the test clip of {numref}`fig-ch8-data`: the true flow, the composed flow of
# the untrained and of the trained three-level model (same colour code), and the absolute
# error of copying frame 1 for frame 0 beside that of the finest filter reconstruction (same
# scale, black = 0).
# ```

# %% [markdown]
# ## 10. Using the flow: carrying masks through a clip
#
# For video object segmentation the thesis propagates the first frame's mask "along the time
# using the output filter flows" (Sec. 7.3.1): the filters are sum-to-one, so a one-hot mask
# comes out soft, in $[0, 1]$, and is thresholded at 0.8 after every step "to prevent
# foreground mask pixels from diffusing to the background"; frame $t$ takes its mask from the
# $K$ previous frames ($K = 1$ here). Appendix E.2 instead warps the masks with the composed
# flow; `propagate_labels` does either (`mode="filter"` or `"flow"`). The result is scored with
# the DAVIS measures {cite:p}`perazzi2016benchmark,pont2017davis`: $\mathcal J$, the IoU of
# predicted and true mask per frame, and $\mathcal F$, the F-measure of their boundaries with a
# tolerance of $\lceil 0.008\cdot\text{diagonal}\rceil$ px; each averaged over frames
# $1,\dots,T-2$ (the official code skips the given first and the last frame), then over objects.
#
# Checks: oracle filters of a known translation carry a square exactly, in both modes, and it
# scores $\mathcal J = \mathcal F = 1$; a mask moved by one pixel (within the tolerance) has
# $\mathcal F = 1$ but $\mathcal J < 1$; the conventions for empty masks; and $\mathcal J$
# recall, which the thesis describes as "the fraction of sequences with IoU > 0.5", is the
# fraction of **frames** in the DAVIS code.

# %% tags=["nbval-check-output"]
V = (2, 1)  # the square moves by (2, 1) px per frame


class Oracle:
    """A stand-in for the model whose filters and flow are the true translation."""

    prewarp = "filter"

    def __call__(self, target, source):
        n, _, h, w = target.shape
        T = one_hot_filters(-V[0], -V[1], KERNEL_SIZE, (h, w)).expand(n, -1, -1, -1)
        return mg.MultigridOutput(filters=[T], flow=expected_flow(T), prewarp="filter")


T10 = 8
truth = torch.zeros(T10, 48, 48, dtype=torch.long)
for t in range(T10):
    truth[t, 10 + V[1] * t:22 + V[1] * t, 6 + V[0] * t:18 + V[0] * t] = 1
frames10 = truth[:, None].float().expand(-1, 3, -1, -1)
for mode in ("filter", "flow"):
    pred = mg.propagate_labels(Oracle(), frames10, truth[0], mode=mode,
                               threshold=THRESHOLD)
    assert torch.equal(pred, truth), mode
scores = video_segmentation_scores(pred, truth)
assert scores["J_mean"] == 1.0 and scores["F_mean"] == 1.0
shifted = torch.roll(truth, 1, dims=-1)
assert float(region_similarity_per_image(shifted, truth)[1]) < 1.0
assert video_segmentation_scores(shifted, truth)["F_mean"] == 1.0
empty = torch.zeros_like(truth[:1])
assert float(region_similarity_per_image(empty, empty)[0]) == 1.0  # both empty
assert float(region_similarity_per_image(empty, truth[:1])[0]) == 0.0
# J recall counts frames: 3 of the 6 scored frames above 0.5 give 0.5, not 0 or 1
half = truth.clone()
half[4:] = 0  # the object is lost from frame 4 on
jr = video_segmentation_scores(half, truth)["J_recall"]
assert jr == 0.5, jr
glue("ch8_jrecall_half", float(jr), display=False)
print("oracle propagation exact (filter and flow); "
      "J recall of a track lost halfway:", jr)

# %%
T_SHOW = clips.frames.shape[1]
labels0 = clips.instances[:, 0]
with torch.no_grad():
    prop = mg.propagate_labels(model, clips.frames, labels0, threshold=THRESHOLD)
K1 = int(clips.instances.max()) + 1
shown = sorted({0, T_SHOW // 3, 2 * T_SHOW // 3, T_SHOW - 2})


def overlay(t, labels):
    return pb.viz.overlay_mask(clips.frames[CLIP, t], labels, num_classes=K1,
                               alpha=0.7)


fig, ax = plt.subplots(3, len(shown), figsize=(1.15 * len(shown), 3.6))
rows = {"truth": clips.instances[CLIP], "mgPFF": prop[CLIP],
        "identity": labels0[CLIP:CLIP + 1].expand(T_SHOW, -1, -1)}
for i, (name, lab) in enumerate(rows.items()):
    for j, t in enumerate(shown):
        ax[i, j].imshow(overlay(t, lab[t]))
        ax[i, j].set_xticks([])
        ax[i, j].set_yticks([])
        ax[0, j].set_title(f"frame {t}")
    ax[i, 0].set_ylabel(name)
pb.widgets.show(fig, glue="ch8_fig_propagation")
J_clip = {name: video_segmentation_scores(lab.contiguous(), clips.instances[CLIP])
          ["J_mean"] for name, lab in list(rows.items())[1:]}
print("J on this clip:", {k: round(v, 3) for k, v in J_clip.items()})

# %% [markdown]
# ```{glue:figure} ch8_fig_propagation
# :name: fig-ch8-propagation
# :alt: sprite masks over a test clip: ground truth, propagated by mgPFF, copied from frame 0
#
# Masks carried from frame 0 through the test clip: the true instance masks (top), the masks
# propagated by the trained model's filters (middle; $K = 1$, threshold 0.8) and the identity
# baseline that keeps the first mask (bottom). The explorer in Sec. 14 shows every frame.
# ```

# %% [markdown]
# ## 11. Long range, and a real image pair
#
# **Long-range reconstruction** (Sec. 7.3.3, Table 7.2): the model sees two frames $m$ apart,
# its composed flow warps $\mathbf I_t$ towards $\mathbf I_{t+m}$, the result is rounded to
# integers in $[0, 255]$ and compared with $\mathbf I_{t+m}$ by the mean absolute difference
# (`long_range_error`; the columns `longrange.m*` of the table in Sec. 9). Three frames apart
# the sprites move at most 12 px, inside the reach of three levels; five frames apart up to
# 20 px, partly beyond it.
#
# ```{note}
# The text of Sec. 7.3.3 compares "$\mathbf I_t$ and $\hat{\mathbf I}_{t+m}$"; the caption of
# Table 7.2 compares the warped frame with $\mathbf I_{t+m}$, which is what the protocol
# measures (comparing with $\mathbf I_t$ would reward not moving). We follow the caption; see
# the [errata](errata-ch8).
# ```
#
# **A real image pair.** A rectified stereo pair is a flow problem with a known answer:
# scikit-image's `stereo_motorcycle` {cite:p}`scharstein2014middlebury` comes with its
# disparity $d$, and a left pixel $(x, y)$ is at $(x - d, y)$ in the right image, so the flow of
# the left image is $(-d, 0)$. We shrink the pair to $100\times148$ (disparities
# {glue:text}`ch8_disp_min:.1f`–{glue:text}`ch8_disp_max:.1f` px, inside the reach) and run
# the sprite-trained model on it *zero-shot*: it has never seen a photograph.

# %%
stereo = DATA["stereo"]
with torch.no_grad():
    fx = model(stereo["left"], stereo["right"]).flow[0, 0]
    fx0 = untrained(stereo["left"], stereo["right"]).flow[0, 0]
d, ok = stereo["disparity"][0], stereo["valid"][0]
glue("ch8_disp_min", float(d[ok].min()), display=False)
glue("ch8_disp_max", float(d[ok].max()), display=False)
err = {name: float((v + d)[ok].abs().mean()) for name, v in
       (("mgPFF", fx), ("untrained", fx0), ("zero flow", torch.zeros_like(fx)))}
print({k: round(v, 3) for k, v in err.items()}, "px (horizontal, where d is known)")
vmax = float(d[ok].max())
panels = [stereo["left"][0].permute(1, 2, 0), torch.where(ok, -d, torch.nan),
          torch.where(ok, fx, torch.nan), torch.where(ok, (fx + d).abs(), torch.nan)]
titles = ["left image", "true flow x = −d", "mgPFF flow x", "|error| (px)"]
fig, ax = plt.subplots(1, 4, figsize=(pb.viz.PAGE_WIDTH, 1.6))
for i, (a, img, title) in enumerate(zip(ax, panels, titles)):
    lim = (0, vmax / 2) if i == 3 else (-vmax, 0)
    a.imshow(img, cmap="viridis" if i else None, vmin=lim[0], vmax=lim[1])
    a.set_title(title, fontsize=8.5)
    a.set(xticks=[], yticks=[])  # keep the frame: white means zero flow
pb.widgets.show(fig, glue="ch8_fig_stereo")
glue("ch8_small_stereo_ratio", err["mgPFF"] / err["zero flow"], display=False)

# %% [markdown]
# ```{glue:figure} ch8_fig_stereo
# :name: fig-ch8-stereo
# :alt: the left stereo image, the true horizontal flow, mgPFF's flow and its error
#
# The motorcycle pair at $100\times148$: the left image, the true horizontal flow $-d$ where the
# disparity is known (blank elsewhere), the horizontal component of the sprite-trained model's
# composed flow on the same colour scale, and its absolute error. At this scale its mean error
# is {glue:text}`ch8_small_stereo_ratio:.2f` times that of zero flow.
# ```

# %% [markdown]
# ## 12. The evidence: the `medium` experiment
#
# The `medium` experiment (`python -m pixelbook.run 08_multigrid_filter_flow --scale medium`)
# trains the chapter's arms on {glue:text}`ch8_med_clips` clips per seed
# ({glue:text}`ch8_med_steps` steps of batch 8) and evaluates them on
# {glue:text}`ch8_med_test_clips` held-out clips (the same for every seed), three seeds per arm:
#
# - `mgpff`: three levels of $5\times5$ filters, Eq. 7.8 with the thesis' weights;
# - `single_level`: one level (single-scale PFF, ±2 px), the same network and loss;
# - `photometric_only`: three levels, $\ell_{rec}$ alone ($\lambda_{flow} = \lambda_{fb} =
#   \lambda_{sm} = 0$);
# - `untrained`: the `mgpff` network at its initial weights, no training;
# - `identity`: zero flow, the first mask copied.
#
# All trained arms have the same network and parameter count (the weights are shared by the
# levels). The results below are loaded from the committed files under
# `results/08_multigrid_filter_flow/`, not recomputed.

# %%
RES = pb.results.load_results(EXP.chapter)
MED_CFG = EXP.run_config("mgpff", 0, "medium")
glue("ch8_med_clips", MED_CFG.data["n_train_clips"], display=False)
glue("ch8_med_test_clips", MED_CFG.data["n_test_clips"], display=False)
ARMS = [a.name for a in EXP.arms]
MED = ["rec.ratio", "flow.epe_sprites", "flow.epe_all", "vos.J_mean", "vos.F_mean",
       "vos.J_recall", "longrange.m3", "longrange.m5", "stereo.ratio"]
rows = ["| arm | " + " | ".join(MED) + " |", "|---" * (len(MED) + 1) + "|"]
for arm in ARMS:
    cells = [format(RES.summary(arm, m), ".3f") for m in MED]
    rows.append(f"| `{arm}` | " + " | ".join(cells) + " |")
display(Markdown("\n".join(rows)
                 + f"\n\nmean ± sample std over seeds {RES.seeds('mgpff')}"))
for arm, m in itertools.product(ARMS, MED):
    key = f"ch8_med_{arm}_{m.replace('.', '_')}"
    glue(key, format(RES.summary(arm, m), ".2f"), display=False)
prov = [r["provenance"] for r in RES.records]
med_minutes = sum(p["wall_time_s"] for p in prov) / 60
glue("ch8_med_minutes", med_minutes, display=False)
med_steps = sum(len(h["step_loss"]) for h in RES.record("mgpff", 0)["history"])
glue("ch8_med_steps", med_steps, display=False)
print(f"{len(RES)} runs, {med_minutes:.1f} core-minutes in all (one thread per run)")

# %% [markdown]
# On the sprites' pixels the composed flow of mgPFF is off by
# {glue:text}`ch8_med_mgpff_flow_epe_sprites` px on average, against
# {glue:text}`ch8_med_single_level_flow_epe_sprites` px for one level,
# {glue:text}`ch8_med_photometric_only_flow_epe_sprites` px with the photometric loss alone,
# {glue:text}`ch8_med_untrained_flow_epe_sprites` px at the initial weights and
# {glue:text}`ch8_med_identity_flow_epe_sprites` px for zero flow (mean ± std over seeds).
# Propagated masks reach $\mathcal J$ = {glue:text}`ch8_med_mgpff_vos_J_mean` against
# {glue:text}`ch8_med_identity_vos_J_mean` for the copied first mask, and zero-shot on the stereo
# pair the horizontal error is {glue:text}`ch8_med_mgpff_stereo_ratio` times that of zero flow.
# {numref}`fig-ch8-medium-loss` shows the training loss of every run, to judge whether one
# epoch was enough.

# %%
fig, ax = plt.subplots(1, 3, figsize=(pb.viz.PAGE_WIDTH, 2.1), sharey=True)
for a, arm in zip(ax, ["mgpff", "single_level", "photometric_only"]):
    for seed in RES.seeds(arm):
        losses = [x for rec in RES.history(arm, seed).records for x in rec["step_loss"]]
        w = min(10, len(losses))
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        a.plot(np.arange(w, len(losses) + 1), smooth, lw=1, label=f"seed {seed}")
    a.set_title(arm, fontsize=9)
    a.set_xlabel("step")
    a.set_yscale("log")
ax[0].set_ylabel("loss (mean of 10)")
ax[0].legend(fontsize=8)
pb.widgets.show(fig, glue="ch8_fig_medium_loss")

# %% [markdown]
# ```{glue:figure} ch8_fig_medium_loss
# :name: fig-ch8-medium-loss
# :alt: training loss per step of the medium runs, one panel per trained arm
#
# The recorded training loss of the `medium` runs (moving mean over 10 steps, log scale), one
# panel per trained arm and one line per seed. The photometric-only arm minimises only
# $\ell_{rec}$, so its values are lower by construction.
# ```
#
# **The claims, checked.** Each claim was written in `pixelbook/experiments/mgpff.py`, with
# its margin and the reason for it, before the experiment ran; the cell evaluates exactly
# those statements on the results above and asserts the recorded verdict (a claim that did
# not hold carries `expected=False` and is asserted to fail).

# %% tags=["nbval-check-output"]
OUTCOMES = pb.results.evaluate_claims(EXP, RES)
for outcome in OUTCOMES:
    print(outcome, end="\n\n")
    outcome.check()
    glue(f"ch8_claim_{outcome.claim.id}", outcome.words, display=False)
n_hold = sum(o.holds for o in OUTCOMES)
glue("ch8_claims_hold", f"{n_hold} of {len(OUTCOMES)}", display=False)
failed = [o.claim.id for o in OUTCOMES if not o.holds]
glue("ch8_claims_failed", ", ".join(failed) if failed else "none", display=False)

# %% [markdown]
# {glue:text}`ch8_claims_hold` claims hold. The claims that did not hold — recorded with
# `expected=False` after the run and asserted to fail above, with their per-seed numbers — are:
# {glue:text}`ch8_claims_failed`. In words (each line: the claim, then its verdict over the
# three seeds):
#
# 1. mgPFF's finest filters rebuild the next frame with less than half the error of copying it
#    (`rec.ratio`, margin 0.5): {glue:text}`ch8_claim_reconstruction_beats_copy`.
# 2. Three levels of $5\times5$ filters beat one level on the sprites' flow by more than
#    0.5 px (`flow.epe_sprites`): {glue:text}`ch8_claim_multigrid_captures_large_motion`.
# 3. Masks propagated by mgPFF beat copying the first mask by more than 0.1 in $\mathcal J$:
#    {glue:text}`ch8_claim_propagation_beats_identity_J`; and in $\mathcal F$:
#    {glue:text}`ch8_claim_propagation_beats_identity_F`.
# 4. Self-supervised training lowers the sprite EPE of the network's initial weights:
#    {glue:text}`ch8_claim_self_supervision_improves_flow`.
# 5. The flow, forward–backward and smoothness terms lower the flow error compared with the
#    photometric loss alone (`flow.epe_all`, 2 of 3 seeds needed):
#    {glue:text}`ch8_claim_flow_terms_make_flow`.
# 6. Zero-shot on the motorcycle pair the horizontal flow has less than half the error of
#    zero flow (`stereo.ratio`): {glue:text}`ch8_claim_stereo_disparity`.
#
# **What did not hold.** The stereo claim fails on every seed: the sprite-trained model's
# horizontal error on the photograph is {glue:text}`ch8_med_mgpff_stereo_ratio` times that of
# zero flow, where we required less than 0.5. It does improve on zero flow, on the untrained
# network ({glue:text}`ch8_med_untrained_stereo_ratio`) and on one level
# ({glue:text}`ch8_med_single_level_stereo_ratio`), but not by the margin we fixed before the
# run; the margin stays as it was. We did not investigate why (textureless regions and
# occlusions of the photograph, which the sprites do not have, are candidates), and the
# thesis makes no stereo claim. The long-range errors agree with the reach argument of Sec. 3:
# five frames apart (up to 20 px) one level's error is
# {glue:text}`ch8_med_single_level_longrange_m5` against {glue:text}`ch8_med_mgpff_longrange_m5`
# for three levels.

# %% [markdown]
# ## 13. The thesis' numbers
#
# The thesis evaluates on DAVIS 2017 val after training on $\sim6\times10^4$ frames at
# $256\times256$ (11×11 filters, five levels, 500K iterations); none of its numbers is
# comparable with our sprites, and we do not run that setting (the `full` scale reads DAVIS 2017
# through the data registry, `pb.data.davis`, tested on a fake archive). Quoted from the thesis:
#
# **Table 7.1** (paper, DAVIS 2017 val, full scale; $\mathcal J$ and $\mathcal F$ in %):
#
# | method | supervision | $\mathcal J$ mean | $\mathcal J$ recall | $\mathcal F$ mean | $\mathcal F$ recall |
# |---|---|---|---|---|---|
# | Identity | none | 22.1 | 15.9 | 23.6 | 11.7 |
# | FlowNet2 | synthetic | 16.7 | 9.5 | 19.7 | 7.6 |
# | CycleTime$^{1st}$ | self ($3.7\times10^7$) | 40.1 | — | 38.3 | — |
# | mgPFF (1st only) | self ($6.0\times10^4$) | 31.6 | 29.5 | 36.2 | 30.8 |
# | mgPFF ($K=1$) | self | 38.9 | 38.5 | 41.1 | 38.6 |
# | mgPFF$^{1st}$ ($K=1$) | self | 41.9 | 41.4 | 45.2 | 43.9 |
# | mgPFF$^{1st}$ ($K=3$) | self | 42.2 | 41.8 | 46.9 | 44.4 |
#
# **Table 7.2** (paper, DAVIS 2017 val, full scale; mean $L_1$ in $[0, 255]$, lower is better):
#
# | method | $m = 5$ | $m = 10$ |
# |---|---|---|
# | Identity | 82.0 | 97.7 |
# | FlowNet2 | 62.4 | 90.3 |
# | CycleTime | 60.4 | 76.4 |
# | mgPFF | 7.32 | 8.83 |
#
# The thesis' $\mathcal J$ recall is described as a fraction of sequences; the DAVIS code
# (and our `video_segmentation_scores`) counts frames per object (Sec. 10; see the
# [errata](errata-ch8)).
#
# ## 14. Explore a clip
#
# {numref}`fig-ch8-explorer` steps through every frame of the test clip: the frame with the
# propagated masks of the trained model or of the identity baseline, and the flow the model
# finds from that frame back to the previous one beside the true one.

# %%
with torch.no_grad():
    seq = clips.frames[CLIP]
    flows = [torch.zeros(2, 64, 64)] + [model(seq[t:t + 1], seq[t - 1:t]).flow[0]
                                        for t in range(1, T_SHOW)]
# frame t -> t-1: where each pixel of frame t was in the previous frame
true_flows = [torch.zeros(2, 64, 64)] + [clips.flow(t, t - 1)[0][CLIP]
                                         for t in range(1, T_SHOW)]
masks = {"mgPFF": prop[CLIP], "identity": labels0[CLIP:CLIP + 1].expand(T_SHOW, -1, -1)}


def show_frame(t=1, masks_from="mgPFF"):
    fig, ax = plt.subplots(1, 3, figsize=(5.4, 1.95))
    ax[0].imshow(overlay(t, masks[masks_from][t]))
    ax[0].set_title(f"frame {t}: {masks_from}")
    ax[1].imshow(pb.viz.colorize_flow(flows[t], max_mag=4))
    ax[1].set_title("mgPFF flow")
    ax[2].imshow(pb.viz.colorize_flow(true_flows[t], max_mag=4))
    ax[2].set_title("true flow")
    for a in ax:
        a.set(xticks=[], yticks=[])  # keep the frame: white means zero flow
    fig.tight_layout()
    return fig


pb.widgets.explorer(show_frame, {"t": list(range(T_SHOW)), "masks_from": list(masks)},
                    descriptions={"t": "frame", "masks_from": "masks"},
                    glue="ch8_fig_explorer", alt="a test clip frame by frame")

# %% [markdown]
# ```{glue:figure} ch8_fig_explorer
# :name: fig-ch8-explorer
# :alt: a test clip frame by frame with propagated masks and flows
#
# One test clip frame by frame (this page's `small`-scale model): the frame with the masks
# carried from frame 0 by mgPFF or copied by the identity, mgPFF's flow from frame $t$ back to
# frame $t-1$ and the true one (colours as in {numref}`fig-ch8-data`; frame 0 shows zero flow).
# Pre-rendered in the book; live in Jupyter.
# ```
#
# ## What differs from the thesis, and why
#
# - **Scale.** $64\times64$ synthetic clips, $5\times5$ filters and three levels (reach
#   ±{glue:text}`ch8_dmax` px) instead of $256\times256$ video, $11\times11$ and five levels; a
#   network of {glue:text}`ch8_params:,` parameters ({glue:text}`ch8_model_mb:.2f` MB) instead of a cut ResNet-18 (4.6 MB); a few hundred steps on one CPU thread
#   instead of 500K on a GPU.
# - **Correlation head** (Sec. 8): added because the thesis' concatenation head did not train
#   within a CPU budget; the `untrained` arm measures what it gives before training.
# - **Units of $\ell_{fb}$ and $\ell_{sm}$**: fractions of the image, as the released code
#   (Sec. 5); the thesis does not say, and pixel units collapsed the filters in a pilot.
# - **$\ell_{flow}$** averages over the samples inside the frame (the code zeroes the others
#   but still divides by all pixels, which rewards flow pointing out of the frame).
# - **Levels** are pre-warped by the composed flow and detached from each other, as the
#   released code; the literal operator product (`prewarp="filter"`) is the exercise below.
# - **Mask propagation** averages the soft masks of the $K$ references and gives a pixel to the
#   strongest object above the 0.8 threshold; the thesis does not say how it combines them.
#
# ## Exercises
#
# 1. Give the `single_level` arm the same budget but an $11\times11$ filter (reach ±5 px). How
#    does its sprite EPE compare with three levels of $5\times5$, and what does each cost per
#    step?
# 2. Propagate with a window of $K = 3$ and with the first frame added
#    (`propagate_labels(..., window=3, use_first=True)`, the thesis' mgPFF$^{1st}$). Which
#    helps on the sprites, and why might occlusions matter?
# 3. Train with `prewarp="filter"` (the literal operator product of Eq. 7.5) instead of the
#    flow pre-warp, and compare reconstruction and flow near the image border.
# 4. Replace the correlation head by the thesis' concatenation head (`head="concat"`) and
#    watch the filters during the first hundred steps. What do they converge to, and why (see
#    the docstring of `MultigridPFF`)?
#
# ## Summary
#
# - A per-pixel softmax filter turns frame-to-frame reconstruction into a problem where every
#   candidate displacement gets a gradient; a bilinear offset does not (checked in 1-D).
# - A product of small residual filters over $L$ levels reaches $r(2^L-1)$ pixels with less
#   than $4/3$ of the finest level's coefficients, and one network serves every level.
# - The flow read out of the filters carries masks through a clip; $\mathcal J$ and $\mathcal F$
#   score them, with $\mathcal J$ recall counted over frames.
# - At `medium` scale {glue:text}`ch8_claims_hold` of the pre-registered claims hold
#   (Sec. 12, one line each there). The `medium` runs took
#   {glue:text}`ch8_med_minutes:.1f` core-minutes in all (one thread each); this page, at the
#   scale it was rendered with, {glue:text}`ch8_page_seconds:.0f` s.
#
# ## References
#
# The bibliography of the book lists every work cited here: {cite:t}`kong2019thesis`,
# {cite:t}`kong2019mgpff`, {cite:t}`seitz2009filterflow`, {cite:t}`perazzi2016benchmark`,
# {cite:t}`pont2017davis`, {cite:t}`scharstein2014middlebury`.

# %%
glue("ch8_page_seconds", time.time() - T0, display=False)
print(pb.runtime.env_report(T0, SCALE, DEVICE))
