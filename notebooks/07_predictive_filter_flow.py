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
# # Chapter 7. Filter flow and Predictive Filter Flow
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pixelbook-org/pixelbook/blob/main/notebooks/07_predictive_filter_flow.ipynb)
#
# Blur, compression and down-sampling are *linear, local* operations on an image, and so, to a good
# approximation, are the operations that undo them: each output pixel is a weighted sum of the input
# pixels around it, with weights that change from pixel to pixel. Such a transformation is a *filter
# flow* {cite:p}`seitz2009filterflow`. Estimating one by optimisation is hopelessly
# under-determined; *Predictive Filter Flow* (PFF) {cite:p}`kong2018pff` lets a network look at the
# degraded image and predict the filter of every pixel, trains it on degradations simulated for free,
# and keeps the output interpretable: each pixel says where it took its value from. We derive the
# operator from linear algebra with a check at each step, implement it three ways (one a Triton GPU
# kernel), train PFF and a direct CNN of the same size on non-uniform motion blur, JPEG artefacts and
# ×4 super-resolution, and test the thesis' claim that predicting filters beats predicting pixels.
#
# **Source:** S. Kong, *Pixel-Level Prediction: Models and Applications*, PhD thesis, UC Irvine, 2019
# {cite:p}`kong2019thesis`, Chapter 6 (Eqs. 6.1–6.3, Tables 6.1–6.3) and Appendix D (Table D.1).
# Equation numbers below are the thesis'.

# %% tags=["hide-cell"]
# Setup, written by `tools/nbtools.py sync` from _config.yml: on Colab, install
# pixelbook from the repository; elsewhere it is already installed (see "How to run").
import sys

if "google.colab" in sys.modules:
    import subprocess

    package = "pixelbook[colab] @ git+https://github.com/pixelbook-org/pixelbook@main"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["hide-cell"]
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from myst_nb import glue

import pixelbook as pb
from pixelbook.data import degradations as dg
from pixelbook.filterflow import local_envelope
from pixelbook.filterflow import restoration as rs
from pixelbook.ops import apply_filter_flow, expected_flow

pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts
f64 = torch.float64

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke|small|medium|full|auto
SEED = 0
DEVICE = "auto"
# ours: the tasks trained live here ("deblur", "jpeg", "sr");
# §9 shows all three at `medium`
LIVE_TASKS = ["deblur"]

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()
EXP = pb.experiments.get("07_predictive_filter_flow")
CFG = EXP.run_config("pff_deblur", SEED, SCALE)
K = CFG.model["kernel_size"]  # the deblurring filters: K × K
IMPL = pb.ops.which_impl(torch.zeros(1, device=DEVICE))
print(f"scale={SCALE}, device={DEVICE}; {CFG.data['n_train']} training pairs of "
      f"{CFG.data['patch']}² crops, {CFG.train.epochs} epochs of batch "
      f"{CFG.train.batch_size}; "
      f"deblurring filters {K}x{K}; filter flow runs as {IMPL!r}")

# %% [markdown]
# ## 1. Images are vectors, linear image operators are matrices
#
# Stack the pixels of an $H\times W$ image into a vector $\mathbf I\in\mathbb R^{HW}$. Any linear map
# from images to images is then a matrix, and filter flow writes the transformation of $\mathbf I_1$
# into $\mathbf I_2$ as
#
# $$\mathbf I_2 = \mathbf T\,\mathbf I_1,\qquad \mathbf T\in\boldsymbol\Gamma \qquad\text{[KONG, Eq. 6.1]},$$
#
# where $\boldsymbol\Gamma$ collects whatever constraints make $\mathbf T$ meaningful. The first is
# *locality*: row $p$ of $\mathbf T$ may be non-zero only in the $k\times k$ window around pixel $p$,
# so the row is a small filter, and $\mathbf T$ is a different filter at every pixel. With the window's
# offsets $o_t=(\delta y_t,\delta x_t)$, $t=0,\dots,k^2-1$ in row-major order,
#
# $$\hat I_2(p)=\sum_{t} T_t(p)\, I_1(p+o_t),$$
#
# which is `pb.ops.apply_filter_flow(image, filters)` with `filters` of shape $(N, k^2, H, W)$ (zero
# outside the image). We check it against the matrix: applying the operator to the $HW$ basis images
# $e_j$ gives the columns of $\mathbf T$; $\mathbf T\mathbf I$ must equal the operator's output, and
# every row must be zero outside its window.

# %% tags=["nbval-check-output"]
g = torch.Generator().manual_seed(0)
H = W = 6
filters = torch.randn(1, 9, H, W, generator=g, dtype=f64)  # a 3 × 3 filter per pixel
basis = torch.eye(H * W, dtype=f64).view(H * W, 1, H, W)    # e_j as images
columns = apply_filter_flow(basis, filters.expand(H * W, -1, -1, -1))
T = columns.view(H * W, H * W).T                             # column j = T e_j
image = torch.rand(1, 1, H, W, generator=g, dtype=f64)
flowed = apply_filter_flow(image, filters)
torch.testing.assert_close(T @ image.flatten(), flowed.flatten())
yy, xx = torch.arange(H * W) // W, torch.arange(H * W) % W
near = ((yy[:, None] - yy).abs() <= 1) & ((xx[:, None] - xx).abs() <= 1)
assert not bool(((T != 0) & ~near).any())
nonzero = T != 0
print(f"T is {H * W}x{H * W}, {int(nonzero.sum())} non-zeros, at most "
      f"{int(nonzero.sum(1).max())} per row (k² = 9), all in the pixel's window")

# %% [markdown]
# ## 2. Convolution is the spatially invariant special case
#
# If every row holds the same filter, $\mathbf T$ is a (block-)Toeplitz matrix — each row is the
# previous one shifted — and the operator is an ordinary convolution (cross-correlation, as
# `F.conv2d` computes it, with zero padding). A filter flow is therefore a convolution whose kernel
# may change at every pixel; that is all the generality the rest of the chapter needs.

# %% tags=["nbval-check-output"]
kernel = torch.randn(3, 3, generator=g, dtype=f64)
constant = kernel.reshape(1, 9, 1, 1).expand(1, 9, H, W)
conv = F.conv2d(image, kernel.view(1, 1, 3, 3), padding=1)
torch.testing.assert_close(apply_filter_flow(image, constant), conv)
Tc = apply_filter_flow(basis, constant.expand(H * W, -1, -1, -1)).view(H * W, H * W).T
p, q = 2 * W + 2, 3 * W + 3  # two interior pixels, one step apart diagonally
# row q is row p shifted by W + 1 columns
assert torch.equal(Tc[q, W + 1:], Tc[p, :H * W - (W + 1)])
print("constant filters = F.conv2d; interior rows of T are shifts of each other")

# %% [markdown]
# ## 3. Estimating a filter flow is under-determined
#
# Given a pair $(\mathbf I_1,\mathbf I_2)$, each pixel contributes one equation
# $\langle T(p), \mathrm{patch}_p(\mathbf I_1)\rangle = I_2(p)$ for $k^2$ unknowns. The
# minimum-norm solution $T(p)=I_2(p)\,\mathrm{patch}_p/\|\mathrm{patch}_p\|^2$ solves it exactly for
# *any* target — below, for pure noise. Without constraints $\boldsymbol\Gamma$ a filter flow explains
# everything and means nothing; Seitz and Baker's optimisation adds them and takes hours per image
# pair [KONG, §6.2]. Non-negative filters that sum to one (a constraint used below) can only reach
# values between the smallest and the largest pixel of the window, and so cannot fit the noise.

# %% tags=["nbval-check-output"]
I1 = pb.data.load_image("camera", size=32, gray=True)[None].to(f64)
I2 = torch.rand(1, 1, 32, 32, generator=g, dtype=f64)  # any target at all
# each pixel's 3 × 3 window as a 9-vector: (N, k², H, W)
patches = F.unfold(I1, 3, padding=1).view(1, 9, 32, 32)
norms = patches.pow(2).sum(1, keepdim=True)
assert float(norms.min()) > 0
T_min = I2 * patches / norms  # the minimum-norm exact solution, per pixel
torch.testing.assert_close(apply_filter_flow(I1, T_min), I2)
# a convex combination reaches every value in [min, max], and nothing else
low, high = local_envelope(I1, 3)
best_convex = I2.clamp(low, high)
outside = float(((I2 < low) | (I2 > high)).double().mean())
rmse = float((best_convex - I2).pow(2).mean().sqrt())
print(f"free filters fit the noise exactly; {100 * outside:.1f} % of it lies "
      f"outside the window's [min, max]: convex filters miss by RMSE {rmse:.3f}")

# %% [markdown]
# ## 4. Predict the filters instead
#
# PFF replaces the optimisation by a network $f_{\mathbf w}$ that looks at $\mathbf I_1$ alone and
# outputs the $k^2$ filter weights of every pixel,
#
# $$\mathbf I_2\approx\hat{\mathbf T}\mathbf I_1,\qquad \hat{\mathbf T}\equiv f_{\mathbf w}(\mathbf I_1)
# \qquad\text{[KONG, Eq. 6.2]},$$
#
# trained on pairs $(\mathbf I_1^i,\mathbf I_2^i)$ from a fixed joint distribution:
#
# $$\min_{\mathbf w}\sum_{i}\ell\big(\mathbf I_2^i-f_{\mathbf w}(\mathbf I_1^i)\cdot\mathbf I_1^i\big)
# +\mathcal R\big(f_{\mathbf w}(\mathbf I_1^i)\big)\qquad\text{[KONG, Eq. 6.3]},$$
#
# with $\ell$ the L1 norm. The network is the thesis' two-stream design (a deep stream with pooling for
# context, a shallow full-resolution stream, §6.3.2), here `pb.filterflow.TwoStreamNet` at CPU size;
# its last layer has $k^2$ channels. Written inline with the thesis' *im2col* (`F.unfold`), PFF with
# softmax filters is four lines; we check it against `pb.filterflow.PredictiveFilterFlow`.

# %% tags=["nbval-check-output"]
toy = pb.filterflow.PredictiveFilterFlow(1, kernel_size=5, width=8, fullres_width=4)
toy.eval()
torch.nn.init.normal_(toy.net.head.weight, std=0.3)  # away from the identity start
x = torch.rand(2, 1, 16, 16, generator=g)
with torch.no_grad():
    T_hat = torch.softmax(toy.net(x) + toy.identity, dim=1)  # (N, 25, H, W), Eq. 6.2
    cols = F.unfold(x, 5, padding=2).view(2, 1, 25, 16, 16)  # im2col: 5 × 5 windows
    inline = (cols * T_hat[:, None]).sum(2)  # the same filter for every channel
    torch.testing.assert_close(inline, toy(x)["out"])
print("inline im2col PFF == pb.filterflow.PredictiveFilterFlow")

# %% [markdown]
# The unfolded tensor is $k^2$ times the image — 289 times for the thesis' 17 × 17 deblurring filters
# — and autograd keeps it for the backward pass. `apply_filter_flow` has three implementations: the
# unfold reference above, a *lean* one that accumulates $k^2$ shifted copies in place and computes
# both gradients with the same loop (memory: one image), and a Triton kernel for GPUs (forward and
# backward, no atomics). The dispatcher picks Triton on CUDA and the lean path elsewhere. They agree in
# value and gradient; `benchmarks/bench_filter_flow.py` measures time and memory side by side.

# %% tags=["nbval-check-output"]
xi = torch.rand(2, 3, 9, 8, generator=g, dtype=f64, requires_grad=True)
fi = torch.randn(2, 49, 9, 8, generator=g, dtype=f64, requires_grad=True)
grads = {}
impls = ["reference", "lean"] + (["triton"] if IMPL == "triton" else [])
for impl in impls:
    dev = DEVICE if impl == "triton" else "cpu"
    a = xi.detach().to(dev).requires_grad_()
    b = fi.detach().to(dev).requires_grad_()
    out = apply_filter_flow(a, b, dilation=2, impl=impl)
    da, db = torch.autograd.grad(out.pow(2).sum(), (a, b))
    grads[impl] = [t.cpu() for t in (out, da, db)]
for impl in impls[1:]:
    for u, v in zip(grads["reference"], grads[impl]):
        torch.testing.assert_close(u, v)
small_x = xi[:1, :1, :4, :4].detach().requires_grad_()
small_f = fi[:1, :9, :4, :4].detach().requires_grad_()
lean = lambda a, b: apply_filter_flow(a, b, impl="lean")  # noqa: E731
assert torch.autograd.gradcheck(lean, (small_x, small_f))
print(f"{' = '.join(impls)} (values and both gradients); gradcheck passes")

# %% [markdown]
# ## 5. Softmax filters: brightness kept, output inside the local envelope
#
# For deblurring the thesis makes the filters non-negative and sum to one with a softmax over the
# $k^2$ channels [KONG, §6.3.1], the usual assumption that blur does not change brightness. Then every
# output pixel is a convex combination of its window, so
#
# $$\min_{t} I_1(p+o_t)\ \le\ \hat I_2(p)\ \le\ \max_t I_1(p+o_t),$$
#
# and a constant image stays constant. `pb.filterflow.local_envelope` computes the two bounds (zeros
# outside the image count, as in the operator's zero padding). The constraint is a strong prior and a
# limit: a sharp pixel outside the envelope of the blurred window cannot be recovered. We measure how
# much of a sharp image lies inside the envelope of its blurred version.

# %% tags=["nbval-check-output"]
with torch.no_grad():
    out = toy(x)["out"]
low, high = local_envelope(x, 5)
assert bool((out <= high + 1e-6).all() and (out >= low - 1e-6).all())
flat = torch.full((1, 1, 16, 16), 0.3)
with torch.no_grad():
    kept = toy(flat)["out"][..., 2:-2, 2:-2]
torch.testing.assert_close(kept, flat[..., 2:-2, 2:-2])
print("softmax PFF: each output pixel within its window's [min, max]; "
      "a constant image stays constant")

# %%
gb = torch.Generator().manual_seed(1)
photos = [pb.data.load_image(n, size=256, gray=True) for n in ("astronaut", "camera")]
sharp = dg.random_crops(photos, 64, 48, generator=gb)  # held-out test photographs
blurred, _ = rs.degrade("deblur", sharp, CFG.data["degradation"], generator=gb)
lo_b, hi_b = local_envelope(blurred, K)
inside = float(((sharp >= lo_b - 1e-6) & (sharp <= hi_b + 1e-6)).double().mean())
glue("ch7_inside_envelope", 100 * inside, display=False)
print(f"{100 * inside:.2f} % of the sharp pixels lie inside the {K}x{K} envelope "
      "of the blurred image")

# %% [markdown]
# So {glue:text}`ch7_inside_envelope:.1f` % of the sharp pixels can be reproduced exactly by some
# softmax filter over the blurred window; the others — mostly the peaks of fine texture, which the
# blur averaged away — can only be approached from inside the envelope. That is the price of the
# constraint for deblurring. JPEG deblocking and super-resolution must *sharpen* more generally, and a
# sharpening filter has negative weights. The thesis uses
# **free-form** filters there, "so that it is able to enhance over block effects" [KONG, §6.3.1].
# An unsharp mask (identity plus λ times identity-minus-box) sums to one, yet leaves the envelope at
# every edge:

# %% tags=["nbval-check-output"]
box = torch.full((9,), 1 / 9, dtype=f64)
identity = torch.zeros(9, dtype=f64)
identity[4] = 1.0
unsharp = identity + 1.0 * (identity - box)  # λ = 1
assert torch.isclose(unsharp.sum(), torch.tensor(1.0, dtype=f64))
assert float(unsharp.min()) < 0
sharpened = apply_filter_flow(I1, unsharp.view(1, 9, 1, 1).expand(1, 9, 32, 32))
low, high = local_envelope(I1, 3)
out_of_range = (sharpened > high + 1e-9) | (sharpened < low - 1e-9)
leaves = int(out_of_range[..., 1:-1, 1:-1].sum())
assert leaves > 0
print(f"unsharp masking (weights sum to 1, min {float(unsharp.min()):.3f}) leaves "
      f"the envelope at {leaves} interior pixels")

# %% [markdown]
# ## 6. The expected flow of a filter
#
# Since a softmax filter is a distribution over the window, its mean offset is "the optical flow
# (delta filter) which most closely approximates the predicted filter flow" [KONG, §6.4.2]:
#
# $$\begin{bmatrix}v_x(p)\\ v_y(p)\end{bmatrix}=\sum_t T_t(p)\begin{bmatrix}\delta x_t\\ \delta y_t\end{bmatrix}.$$
#
# It points from an output pixel to where it reads the input (a backward warp): a one-hot filter at
# offset $(\delta y,\delta x)$ copies $I_1(p+(\delta y,\delta x))$ and has expected flow
# $(\delta x,\delta y)$ exactly. A point-symmetric filter — a centred motion blur, for instance — has
# expected flow zero however long the motion.

# %% tags=["nbval-check-output"]
one_hot = torch.zeros(1, 25, 32, 32, dtype=f64)
one_hot[:, (1 + 2) * 5 + (-2 + 2)] = 1.0  # (dy, dx) = (+1, -2)
shifted = apply_filter_flow(I1, one_hot)
# out(y, x) = I1(y + 1, x - 2)
torch.testing.assert_close(shifted[..., :-1, 2:], I1[..., 1:, :-2])
v = expected_flow(one_hot)
assert bool((v[:, 0] == -2).all() and (v[:, 1] == 1).all())
blur_kernel = dg.motion_kernel(6, 30, size=7).to(f64).reshape(1, 49, 1, 1)
zero = torch.zeros(1, 2, 1, 1, dtype=f64)
torch.testing.assert_close(expected_flow(blur_kernel), zero)
print("one-hot at (dy, dx) = (+1, -2): flow (-2, +1), image shifted; "
      "a 6-px motion blur: flow (0, 0)")

# %% [markdown]
# ## 7. Degradations simulated for free
#
# Clean images are easy to come by; their degraded versions can be simulated, which turns restoration
# into supervised learning without labelling [KONG, §6.3.1]. `pb.data.degradations` provides the three
# of the thesis: **non-uniform motion blur** — two linear motion kernels (length, angle) blended pixel by
# pixel with a smooth random mask, so the blur varies over the image (a filter flow, not a
# convolution); **JPEG** at a quality factor, through Pillow; **bicubic ×4** down- and up-sampling,
# whose up-sampled result is the network's input [KONG, §6.4]. The thesis draws blur lengths up to
# 30 px for 17 × 17 filters; ours go up to 10 px for {glue:text}`ch7_k` × {glue:text}`ch7_k` filters.

# %% tags=["nbval-check-output"]
glue("ch7_k", K, display=False)
gk = torch.Generator().manual_seed(2)
kernels, lengths, angles = dg.random_motion_kernels(100, 11, 1.0, 10.0, generator=gk)
torch.testing.assert_close(kernels.sum((1, 2)), torch.ones(100))  # brightness kept
torch.testing.assert_close(kernels, kernels.flip(1, 2))  # point-symmetric
grey = torch.full((1, 1, 48, 48), 0.4)
torch.testing.assert_close(dg.blur(grey, kernels[0]), grey)
torch.testing.assert_close(dg.bicubic_degrade(grey, 4)[0], grey)
crops = sharp[:16]
errors = [float((dg.jpeg_compress(crops, q) - crops).abs().mean())
          for q in (10, 20, 40)]
assert errors[0] > errors[1] > errors[2]
print("motion kernels sum to 1, point-symmetric; blur and bicubic keep a constant; "
      f"JPEG error {errors[0]:.4f} > {errors[1]:.4f} > {errors[2]:.4f} "
      "(q 10 > 20 > 40)")


# %% tags=["hide-input"]
def degradation_figure(crops):
    """Clean test crops and their three degradations (PSNR against the clean crop)."""
    gen = torch.Generator().manual_seed(3)
    blur = rs.degrade("deblur", crops, CFG.data["degradation"], generator=gen)[0]
    views = {"clean": crops, "motion blur": blur,
             "JPEG q=10": dg.jpeg_compress(crops, 10),
             "bicubic x4": dg.bicubic_degrade(crops, 4)[0]}
    images, titles = [], []
    for i in range(len(crops)):
        for name, batch in views.items():
            images.append(batch[i])
            db = pb.metrics.psnr(batch[i:i + 1], crops[i:i + 1])
            titles.append(name if name == "clean" else f"{name}\n{db:.1f} dB")
    return pb.viz.show_grid(images, titles, ncols=4, size=1.45)


pb.widgets.show(degradation_figure(sharp[:2]), glue="ch7_fig_degradations")

# %% [markdown]
# ```{glue:figure} ch7_fig_degradations
# :name: fig-ch7-degradations
# :alt: Two test crops, each clean, motion-blurred, JPEG-compressed at quality 10 and bicubically down- and up-sampled
#
# Test crops of the held-out photographs and the three simulated degradations, with the PSNR of each
# degraded crop against the clean one.
# ```
#
# ## 8. Training PFF and a direct CNN
#
# The experiment (`pb.experiments.get("07_predictive_filter_flow")`, the same code at every scale) has
# three arms per task: the degraded **input** itself, a **CNN** — the same two-stream network trained to
# output the image (with a residual connection, so that it starts at the identity like PFF) — and
# **PFF**. PFF's filters are softmax-normalised for deblurring and free-form for JPEG and SR, as in the
# thesis; the two networks differ only in their 1 × 1 output layer (< 1 % of the parameters). Training
# uses grey 48 × 48 crops of twelve scikit-image photographs, Adam at the thesis' learning rate
# 5·10⁻⁴ and the L1 loss; the test crops come from two other photographs (astronaut, camera). Here we
# train the tasks in `LIVE_TASKS` at scale `small`; §9 shows all three tasks at scale `medium` (three
# seeds, trained by `make results`).

# %%
RUNS = {}
for task in LIVE_TASKS:
    for kind in ("input", "cnn", "pff"):
        RUNS[f"{kind}_{task}"] = EXP.run(f"{kind}_{task}", SEED, SCALE, DEVICE)
for name, run in RUNS.items():
    task = name.split("_", 1)[1]
    psnr = "jpeg.psnr" if task == "jpeg" else f"{task}.psnr"
    print(f"{name:>14}: PSNR {run.metrics[psnr]:6.2f} dB, "
          f"trained in {run.train_time_s:.0f} s")
live = RUNS.get("pff_deblur")
if live is not None:
    for kind in ("input", "cnn", "pff"):
        value = RUNS[f"{kind}_deblur"].metrics["deblur.psnr"]
        glue(f"ch7_small_{kind}_psnr", value, display=False)

# %% tags=["hide-input"]
def restoration_figure(runs, task="deblur", n=3):
    """Degraded input, CNN output, PFF output and clean target on n test crops."""
    data = runs[f"pff_{task}"].data
    inputs, _ = next(iter(data["tests"].values()))
    clean = data["test_clean"]
    idx = torch.arange(n) * (len(clean) // n)
    cnn = rs.predict(runs[f"cnn_{task}"].model, inputs[idx])
    pff, filters = rs.predict(runs[f"pff_{task}"].model, inputs[idx], filters=True)
    flow = expected_flow(filters)
    images, titles = [], []
    for j, i in enumerate(idx.tolist()):
        shown = (("input", inputs[i]), ("CNN", cnn[j]), ("PFF", pff[j]),
                 ("clean", clean[i]))
        for name, img in shown:
            images.append(img)
            db = pb.metrics.psnr(img[None], clean[i:i + 1])
            titles.append(name if name == "clean" else f"{name} {db:.1f} dB")
        images.append(pb.viz.colorize_flow(flow[j], max_mag=2.0))
        titles.append("PFF expected flow")
    return pb.viz.show_grid(images, titles, ncols=5, size=1.2)


if live is not None:
    pb.widgets.show(restoration_figure(RUNS), glue="ch7_fig_restoration")

# %% [markdown]
# ```{glue:figure} ch7_fig_restoration
# :name: fig-ch7-restoration
# :alt: Blurred test crops, the CNN's and PFF's outputs, the clean crops and PFF's expected flow
#
# Deblurring at scale `small`: input, CNN output, PFF output, clean target (PSNR in the titles), and
# the expected flow of PFF's filters (colour = direction, saturation = length, 2 px saturated).
# ```
#
# At this scale (one seed, {glue:text}`ch7_k`×{glue:text}`ch7_k` filters, 200 steps) PFF reaches
# {glue:text}`ch7_small_pff_psnr:.2f` dB against {glue:text}`ch7_small_input_psnr:.2f` dB for the
# blurred input and {glue:text}`ch7_small_cnn_psnr:.2f` dB for the CNN; one short run decides
# nothing, which is what the `medium` runs of §9 are for.
#
# ### Reading the filters
#
# A PFF output comes with its explanation: each pixel's filter. Two summaries from the thesis: the
# expected flow (above, and the widget below), and how many principal components the filters need —
# the top ten hold 99.65 % of the filter energy for deblurring in the thesis [KONG, §6.5]. The thesis
# also reads its flow maps as "large near high contrast boundaries and smaller in regions that are
# already in sharp focus or which are uniform in color" [KONG, §6.4.2]; `rs.flow_edge_ratio` makes that
# a number: mean flow length on the 20 % strongest-gradient pixels over that on the 50 % weakest.

# %%
if live is not None:
    m = live.metrics
    glue("ch7_small_pca", 100 * m["deblur.pca_top10"], display=False)
    glue("ch7_small_flow_ratio", m["deblur.flow_edge_ratio"], display=False)
    print(f"PFF deblurring filters ({K * K}-D): top-10 PCA energy "
          f"{100 * m['deblur.pca_top10']:.4f} %, flow on edges / flat "
          f"{m['deblur.flow_edge_ratio']:.2f}, "
          f"envelope excess {m['deblur.envelope_excess']:.1e}")


# %% tags=["hide-input"]
def filters_figure(run, i=0, where=((0.5, 0.5), (0.2, 0.6), (0.8, 0.15))):
    """One test crop, PFF's expected flow and the K × K filters at three marked pixels,
    placed at fractions ``where`` of the crop's height and width."""
    inputs, _ = next(iter(run.data["tests"].values()))
    out, filters = rs.predict(run.model, inputs[i:i + 1], filters=True)
    side = inputs.shape[-1]
    pixels = [(int(fy * side), int(fx * side)) for fy, fx in where]
    k = int(filters.shape[1] ** 0.5)
    fig, axes = plt.subplots(1, 2 + len(pixels), figsize=(pb.viz.PAGE_WIDTH, 1.7))
    axes[0].imshow(inputs[i, 0], cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("input")
    axes[1].imshow(pb.viz.colorize_flow(expected_flow(filters)[0], max_mag=2.0))
    axes[1].set_title("expected flow")
    for j, (y, xx) in enumerate(pixels):
        axes[0].plot(xx, y, "o", ms=4, mfc="none", mec=f"C{j}")
        axes[2 + j].imshow(filters[0, :, y, xx].view(k, k), cmap="magma")
        axes[2 + j].set_title(f"filter at ({y}, {xx})", color=f"C{j}", fontsize=8)
    for a in axes:
        a.set_axis_off()
    return fig


if live is not None:
    pb.widgets.show(filters_figure(live), glue="ch7_fig_filters")

# %% [markdown]
# ```{glue:figure} ch7_fig_filters
# :name: fig-ch7-filters
# :alt: A blurred test crop, the expected flow of PFF's filters and the filters at three pixels
#
# What PFF does at three pixels of a blurred test crop: the predicted filter (bright = large weight).
# ```
#
# ## 9. The evidence: three seeds per arm at scale `medium`
#
# The claims below were fixed in `pixelbook/experiments/pff.py` before these runs (the margins are
# argued there): PFF beats the degraded input by more than 0.5 dB on every task and JPEG quality, on
# 3 of 3 seeds; the CNN baseline does the same (so the comparison is with a working baseline); and the
# thesis' claim, PFF beats the CNN of the same size, on 3 of 3 seeds for each task.

# %%
RES = pb.results.load_results(EXP.chapter)
TASK_ARMS = {t: [f"{k}_{t}" for k in ("input", "cnn", "pff")]
             for t in ("deblur", "jpeg", "sr")}
BLUR_BINS = ["deblur.psnr_len_1_4", "deblur.psnr_len_4_7", "deblur.psnr_len_7_10"]
print(RES.table(["deblur.psnr", "deblur.ssim"] + BLUR_BINS, arms=TASK_ARMS["deblur"],
                fmt=".2f"))
print(RES.table(["jpeg.psnr_q10", "jpeg.psnr_q20", "jpeg.psnr_q40", "jpeg.ssim_q10",
                 "jpeg.ssim_q40"], arms=TASK_ARMS["jpeg"], fmt=".3f"))
print(RES.table(["sr.psnr", "sr.ssim"], arms=TASK_ARMS["sr"], fmt=".3f"))
PSNR = {"deblur": "deblur.psnr", "jpeg": "jpeg.psnr", "sr": "sr.psnr"}
PCA = {"deblur": "deblur.pca_top10", "jpeg": "jpeg.pca_top10_q20", "sr": "sr.pca_top10"}
for task, metric in PSNR.items():
    mean = {a: RES.summary(f"{a}_{task}", metric).mean for a in ("input", "cnn", "pff")}
    for arm, value in mean.items():
        glue(f"ch7_med_{arm}_{task}", value, display=False)
    glue(f"ch7_med_gain_pff_{task}", mean["pff"] - mean["input"], display=False)
    glue(f"ch7_med_gain_cnn_{task}", mean["cnn"] - mean["input"], display=False)
    glue(f"ch7_med_gap_{task}", mean["pff"] - mean["cnn"], display=False)
    pca = 1 - RES.summary(f"pff_{task}", PCA[task]).mean
    glue(f"ch7_med_pca_rest_{task}", pca, display=False)
flow_ratio = RES.summary("pff_deblur", "deblur.flow_edge_ratio")
glue("ch7_med_flow_ratio", flow_ratio.mean, display=False)
glue("ch7_med_runs", len(RES.records), display=False)
MEDIUM_S = sum(r["provenance"]["wall_time_s"] for r in RES.records)
glue("ch7_med_minutes", MEDIUM_S / 60, display=False)

# %%
# exactly the registered claims, all of them
OUTCOMES = pb.results.evaluate_claims(EXP, RES)
for outcome in OUTCOMES:
    print(outcome)
    outcome.check()  # asserts the registered outcome: holds, or (recorded) fails
    glue(f"ch7_wins_{outcome.claim.id}", outcome.wins, display=False)
    glue(f"ch7_min_{outcome.claim.id}", min(outcome.diffs), display=False)
    glue(f"ch7_max_{outcome.claim.id}", max(outcome.diffs), display=False)
glue("ch7_claims_held", sum(o.holds for o in OUTCOMES), display=False)
glue("ch7_claims_total", len(OUTCOMES), display=False)
print(f"{sum(o.holds for o in OUTCOMES)} of {len(OUTCOMES)} claims hold")

# %% [markdown]
# **What the runs say.** {glue:text}`ch7_claims_held` of the {glue:text}`ch7_claims_total`
# registered claims hold. The check cell evaluates every one of them and asserts its verdict: the
# five that fail are asserted to fail, as recorded in the experiment module after the first
# `medium` run.
#
# - *The baseline works.* The CNN beats the degraded input by
#   {glue:text}`ch7_med_gain_cnn_deblur:.2f` dB (deblurring), {glue:text}`ch7_med_gain_cnn_jpeg:.2f`
#   dB (JPEG, all qualities) and {glue:text}`ch7_med_gain_cnn_sr:.2f` dB (×4 SR), on
#   {glue:text}`ch7_wins_cnn_beats_input_deblur`, {glue:text}`ch7_wins_cnn_beats_input_jpeg` and
#   {glue:text}`ch7_wins_cnn_beats_input_sr` of 3 seeds.
# - *Free-form PFF improves on its input*, as the thesis says: JPEG artefacts at quality 10 and 20 on
#   {glue:text}`ch7_wins_pff_beats_input_jpeg_q10` and {glue:text}`ch7_wins_pff_beats_input_jpeg_q20`
#   of 3 seeds (smallest gains {glue:text}`ch7_min_pff_beats_input_jpeg_q10:.2f` and
#   {glue:text}`ch7_min_pff_beats_input_jpeg_q20:.2f` dB), ×4 super-resolution by
#   {glue:text}`ch7_med_gain_pff_sr:.2f` dB ({glue:text}`ch7_wins_pff_beats_input_sr` of 3). At
#   quality 40 its gains range from {glue:text}`ch7_min_pff_beats_input_jpeg_q40:.2f` to
#   {glue:text}`ch7_max_pff_beats_input_jpeg_q40:.2f` dB: above the 0.5 dB margin on
#   {glue:text}`ch7_wins_pff_beats_input_jpeg_q40` seeds of 3, so that claim, asked of every seed,
#   does not hold — the least compressed images leave the least to remove.
# - *Softmax PFF for deblurring learned nothing.* It ends at
#   {glue:text}`ch7_med_pff_deblur:.2f` dB against {glue:text}`ch7_med_input_deblur:.2f` dB for the
#   blurred input ({glue:text}`ch7_wins_pff_beats_input_deblur` of 3 seeds above the margin): its
#   filters stayed at the identity (the top ten principal components leave
#   {glue:text}`ch7_med_pca_rest_deblur:.1e` of their energy, and their expected flow is
#   {glue:text}`ch7_med_flow_ratio:.2f` times as long on edges as on flat regions — no preference
#   for edges). The CNN of the same size gains {glue:text}`ch7_med_gain_cnn_deblur:.2f` dB on the
#   same data.
# - *PFF does not beat the direct CNN*: on {glue:text}`ch7_wins_pff_beats_cnn_deblur`,
#   {glue:text}`ch7_wins_pff_beats_cnn_jpeg` and {glue:text}`ch7_wins_pff_beats_cnn_sr` of 3 seeds
#   (deblurring, JPEG, SR), by {glue:text}`ch7_med_gap_deblur:.2f`,
#   {glue:text}`ch7_med_gap_jpeg:.2f` and {glue:text}`ch7_med_gap_sr:.2f` dB (PFF minus CNN, means).
#   The thesis reports +0.89 dB for PFF over its CNN on moderate blur.
#
# SSIM in the tables follows {cite:t}`wang2004ssim` exactly (11 × 11 Gaussian window, σ = 1.5,
# averaged over the windows that fit inside the 48 × 48 crop, as scikit-image computes it). The
# committed results are a second run of the same configurations, made after `pb.metrics.ssim` was
# changed to that definition (it used to average over reflect-padded borders too); the first run
# gave the same verdict on every claim and PSNR means within a few hundredths of a decibel. The
# {glue:text}`ch7_med_runs` runs took {glue:text}`ch7_med_minutes:.0f` minutes of one CPU core in
# total, on a shared two-core machine.
#
# §10 asks why the softmax model stays at the identity. The differences to the thesis' setting
# are many (grey 48 × 48 crops, a 145k-parameter network, 1,000 steps instead of 100,000, 11 × 11
# instead of 17 × 17 filters, our initialisation), and any of them may matter.

# %% [markdown]
# The thesis' tables, for comparison (full scale: ResNet-18-based two-stream networks trained for
# 100k steps on 1,200 images, 17 × 17 filters for deblurring; RGB for deblurring, the Y channel for
# JPEG and SR). Our numbers are not comparable in absolute value — grey 48 × 48 crops of other images,
# a 145k-parameter network, 1,000 steps — only in the direction of the differences.
#
# | Table 6.1 — non-uniform motion blur (Bahat et al. test set, RGB, full scale) | Xu et al. | Sun et al. | Bahat et al. | CNN | PFF | PFF+1 (Table D.1) |
# |---|---|---|---|---|---|---|
# | moderate blur (≤ 16 px), PSNR / SSIM | 22.88 / 0.68 | 24.14 / 0.714 | 24.87 / 0.743 | 24.29 / 0.708 | 25.18 / 0.767 | 25.07 / 0.761 |
# | large blur (≤ 38 px), PSNR / SSIM | 20.47 / 0.54 | 20.84 / 0.56 | 22.01 / 0.624 | 20.87 / 0.539 | 22.12 / 0.617 | 22.00 / 0.624 |
#
# | Table 6.2 — JPEG (LIVE1, Y, full scale), PSNR / SSIM | JPEG | SA-DCT | AR-CNN | L4 | CAS-CNN | MWCNN | PFF |
# |---|---|---|---|---|---|---|---|
# | QF 10 | 27.77 / 0.791 | 28.65 / 0.809 | 29.13 / 0.823 | 29.08 / 0.824 | 29.44 / 0.833 | 29.69 / 0.825 | 29.82 / 0.836 |
# | QF 20 | 30.07 / 0.868 | 30.81 / 0.878 | 31.40 / 0.890 | 31.42 / 0.890 | 31.70 / 0.895 | 32.04 / 0.889 | 32.14 / 0.905 |
# | QF 40 | 32.35 / 0.917 | 32.99 / 0.940 | 33.63 / 0.931 | 33.77 / – | 34.10 / 0.937 | 34.45 / 0.930 | 34.67 / 0.949 |
#
# | Table 6.3 — ×4 SR (Y, full scale), PSNR / SSIM×100 | Bicubic | SRCNN | VDSR | LapSRN | RDN+ | RCAN | MSRN | PFF |
# |---|---|---|---|---|---|---|---|---|
# | Set5 | 28.42 / 81.04 | 30.49 / 86.28 | 31.36 / 87.96 | 31.54 / 88.11 | 32.61 / 90.03 | 32.63 / 90.02 | 32.07 / 89.03 | 32.17 / 89.46 |
# | Set14 | 26.00 / 70.19 | 27.50 / 75.13 | 28.11 / 76.24 | 28.19 / 76.35 | 28.92 / 78.93 | 28.87 / 78.89 | 28.60 / 77.51 | 28.43 / 78.21 |
# | Urban100 | 23.14 / 65.73 | 24.52 / 72.21 | 25.18 / 75.43 | 25.21 / 75.64 | 26.61 / 80.28 | 26.82 / 80.87 | 26.04 / 78.96 | 25.34 / 78.14 |
#
# (Table 6.3 also lists KK, A+ and SelfEx, between bicubic and SRCNN; the L4 SSIM at QF 40 is missing in
# the thesis.) Filter PCA: the top ten components hold 99.65 %, 99.99 % and 99.99 % of the energy for
# deblurring, JPEG and SR [KONG, §6.5]. Ours leave {glue:text}`ch7_med_pca_rest_deblur:.1e`,
# {glue:text}`ch7_med_pca_rest_jpeg:.1e` and {glue:text}`ch7_med_pca_rest_sr:.1e` of the (uncentred)
# energy outside the top ten (`medium`, mean of three seeds): our filters stay close to the identity,
# whose single component dominates the uncentred energy, so this number says less than it seems.
#
# ## 10. Why the softmax model stays at the identity: what we checked
#
# Before accepting that softmax PFF does not deblur here, we looked for a bug or an unfair budget in
# our own set-up. Four questions, each answered by a check in this section (live, at the scale of
# this run) or, where it needed `medium` training, by pilot runs described in words at the end (they
# are not part of the evidence).
#
# **The gradient of a softmax tap.** Write a softmax filter as $T_t = e^{a_t}/\sum_s e^{a_s}$ over
# logits $a$. The output moves with a logit as
#
# $$\frac{\partial \hat I_2(p)}{\partial a_t(p)} = T_t(p)\,\big(I_1(p+o_t)-\hat I_2(p)\big),$$
#
# so a tap that has almost no weight gets almost no gradient: the network can only learn to use a
# neighbour that it already uses a little. We check the formula on random logits.

# %% tags=["nbval-check-output"]
a = torch.randn(1, 25, 4, 4, generator=g, dtype=f64, requires_grad=True)
img = torch.rand(1, 1, 4, 4, generator=g, dtype=f64)
T_a = torch.softmax(a, dim=1)
out = apply_filter_flow(img, T_a)
(grad,) = torch.autograd.grad(out[0, 0, 2, 1], a)
taps = F.unfold(img, 5, padding=2).view(1, 25, 4, 4)  # I1(p + o_t) for every tap t
expected = T_a[0, :, 2, 1] * (taps[0, :, 2, 1] - out[0, 0, 2, 1])
torch.testing.assert_close(grad[0, :, 2, 1], expected)
print("d out(p) / d a_t(p) = T_t(p) (I1(p + o_t) - out(p)): checked")

# %% [markdown]
# **The start, the normalisation and the budget.** (i) The thesis normalises "by inserting a softmax
# transform across channels of the predicted filter weights" [KONG, §6.3.1]; ours is
# `torch.softmax(logits, dim=1)` over the $k^2$ channels (the inline formula of §4 checks it), so the
# filters are non-negative and sum to one. (ii) Both networks start with a zero output layer: the
# CNN's residual output is then exactly the identity, while a softmax cannot put all the mass on one
# tap, so PFF starts at `identity_weight` = 0.9 on the centre and 0.1 spread over the other
# $k^2-1$ taps — a little box blur. We measure what that start costs on the training pairs, and the
# gradients at step 0: each off-centre logit's gradient carries its tiny weight $T_t$, so the output
# layer's rows for those taps get a small fraction of the centre row's gradient; the trunk gets none
# in either model until the output layer has moved (a zero layer passes no gradient back). (iii) Optimiser, learning rate, schedule, epochs and batch are the same
# for the two networks (asserted from the experiment's configs).

# %%
cfg_cnn = EXP.run_config("cnn_deblur", SEED, SCALE)
# the same optimiser, lr, schedule, epochs, batch and seed
assert CFG.train == cfg_cnn.train
data0 = EXP.load_data(CFG)
pairs_in, pairs_out = data0["train"]["input"][:256], data0["train"]["target"][:256]
start = {}
for arm, cfg in (("pff", CFG), ("cnn", cfg_cnn)):
    pb.runtime.seed_all(SEED)
    start[arm] = EXP.model(cfg, data0).train()
with torch.no_grad():
    res0 = start["pff"](pairs_in)
    filters0 = res0["filters"]
    assert bool((filters0 >= 0).all())
    torch.testing.assert_close(filters0.sum(1), torch.ones_like(filters0[:, 0]))
    loss_pff0 = float(F.l1_loss(res0["out"], pairs_out))
    loss_cnn0 = float(F.l1_loss(start["cnn"](pairs_in)["out"], pairs_out))
loss_id = float(F.l1_loss(pairs_in, pairs_out))
assert loss_cnn0 == loss_id  # the CNN starts at the exact identity
centre = K * K // 2
grads0 = {}
for arm, model in start.items():
    loss = F.l1_loss(model(pairs_in[:16])["out"], pairs_out[:16])
    loss.backward()
    trunk = [p.grad for n, p in model.named_parameters()
             if not n.startswith("net.head")]
    assert all(t is None or float(t.abs().max()) == 0 for t in trunk)  # no gradient yet
    grads0[arm] = model.net.head.weight.grad.flatten(1).norm(dim=1)
row = grads0["pff"]
off_ratio = float(row[torch.arange(K * K) != centre].mean() / row[centre])
glue("ch7_start_weight", float(filters0[:, centre].mean()), display=False)
glue("ch7_start_loss_ratio", loss_pff0 / loss_id, display=False)
glue("ch7_start_grad_ratio", off_ratio, display=False)
print(f"step 0, {len(pairs_in)} training pairs: L1 of the blurred input {loss_id:.4f}, "
      f"of the CNN {loss_cnn0:.4f}, of softmax PFF {loss_pff0:.4f} "
      f"({loss_pff0 / loss_id:.2f} x the identity's); centre weight "
      f"{float(filters0[:, centre].mean()):.3f}")
print(f"output-layer gradient, off-centre row / centre row: {off_ratio:.1e}; "
      "trunk gradient 0 in both models")

# %% [markdown]
# So softmax PFF begins {glue:text}`ch7_start_loss_ratio:.2f` times as far from the sharp images as
# the blurred input itself (L1), with each off-centre tap's row of the output layer receiving
# {glue:text}`ch7_start_grad_ratio:.0e` of the centre's gradient. Adam rescales each parameter's
# step, so small gradients alone do not stop learning; but the first thing the loss asks for is to
# undo the start's box blur, i.e. to push weight *back* to the centre, and that is what the `medium`
# models did: their filters ended as the identity.
#
# **Two more starts, at this scale.** We train the `small` deblurring model twice more on the same
# data and seed — from uniform filters (`identity_weight` = 1/{glue:text}`ch7_k2`, a box blur) and
# with free-form filters (no softmax; exactly the identity at step 0, as for JPEG and SR) — a
# diagnosis after the fact, not a claim.

# %%
if live is not None:
    glue("ch7_k2", K * K, display=False)
    variants = {"box start": {"identity_weight": 1 / K**2},
                "free-form": {"normalize": "none"}}
    VARIANTS = {name: EXP.run("pff_deblur", SEED, SCALE, DEVICE, model=change)
                for name, change in variants.items()}
    rows = {"softmax, identity start": live, **VARIANTS}
    for name, run in rows.items():
        m = run.metrics
        print(f"{name:>24}: PSNR {m['deblur.psnr']:.2f} dB (input "
              f"{RUNS['input_deblur'].metrics['deblur.psnr']:.2f} dB), "
              "flow on edges / flat "
              f"{m['deblur.flow_edge_ratio']:.2f}, "
              f"envelope excess {m['deblur.envelope_excess']:.3f}")
    for name, key in (("box start", "box"), ("free-form", "free")):
        glue(f"ch7_{key}_psnr", VARIANTS[name].metrics["deblur.psnr"], display=False)
        glue(f"ch7_{key}_flow_ratio", VARIANTS[name].metrics["deblur.flow_edge_ratio"],
             display=False)
    glue("ch7_free_excess", VARIANTS["free-form"].metrics["deblur.envelope_excess"],
         display=False)

# %% [markdown]
# From a box blur the `small` model reaches {glue:text}`ch7_box_psnr:.2f` dB (input
# {glue:text}`ch7_small_input_psnr:.2f` dB, identity start {glue:text}`ch7_small_pff_psnr:.2f` dB;
# flow {glue:text}`ch7_box_flow_ratio:.2f` times as long on edges as on flat regions). Free-form
# filters reach {glue:text}`ch7_free_psnr:.2f` dB, with outputs up to
# {glue:text}`ch7_free_excess:.2f` outside the window's envelope: they sharpen with negative
# weights, which the softmax forbids.
#
# **At `medium`, in pilots** (seed 0, the `medium` configuration with one change each; run once
# while checking, not committed as results, so we report them in words only): training three times
# as long (12 epochs instead of 4) still ended level with the blurred input, its validation PSNR flat
# from the fifth epoch on and its filters still almost exactly the identity; starting less peaked
# (`identity_weight` = 0.3) ended *below* the input after the same 1,000 steps, its filters still
# blurring; free-form filters (exact identity start) gained more than a decibel over the input, a
# little short of the CNN.
#
# **What we conclude.** We found no bug: the filters are normalised as in the thesis, receive the
# gradients the formula predicts, and train with the CNN's optimiser and budget. What holds softmax
# PFF at the identity here is the constraint itself at our scale: a non-negative filter can only
# *select* and average pixels of the blurred window, and learning *which* pixel to select at each
# edge is a harder problem than learning a correction — one that the thesis' 100k steps on
# 17 × 17 filters and RGB images may solve and our 1,000 steps do not. The claims stay as they were
# registered, and the check cell of §9 asserts their recorded outcomes.
#
# ## 11. Explore: blur length and direction
#
# The `small` PFF deblurring model on a held-out crop blurred *uniformly* by one motion of a chosen
# length and angle: the blurred input, PFF's output, the expected flow of its filters and the filter
# at the marked pixel.

# %% tags=["hide-input"]
EXPLORE_CROP = sharp[5:6]


def explore_blur(length=6, angle=45):
    """Blur one crop by a single motion, restore it with the small PFF model."""
    kernel = dg.motion_kernel(length, angle, size=11)
    blurred_crop = dg.blur(EXPLORE_CROP, kernel).clamp(0, 1)
    out, filters = rs.predict(live.model, blurred_crop, filters=True)
    y, x_ = 24, 24
    fig, axes = plt.subplots(1, 4, figsize=(pb.viz.PAGE_WIDTH, 1.8))
    panels = (("blurred", blurred_crop), ("PFF", out))
    for a, (name, img) in zip(axes, panels):
        a.imshow(img[0, 0], cmap="gray", vmin=0, vmax=1)
        a.set_title(f"{name} {pb.metrics.psnr(img, EXPLORE_CROP):.1f} dB", fontsize=8)
        a.plot(x_, y, "o", ms=4, mfc="none", mec="C1")
    axes[2].imshow(pb.viz.colorize_flow(expected_flow(filters)[0], max_mag=2.0))
    axes[2].set_title("expected flow", fontsize=8)
    axes[3].imshow(filters[0, :, y, x_].view(K, K), cmap="magma")
    axes[3].set_title("filter at the mark", fontsize=8)
    for a in axes:
        a.set_axis_off()
    return fig


if live is not None:
    pb.widgets.explorer(explore_blur, {"length": [3, 6, 9], "angle": [0, 45, 90, 135]},
                        live={"length": (1.0, 10.0, 0.5), "angle": (0, 175, 5)},
                        descriptions={"length": "blur length (px)",
                                      "angle": "angle (°)"},
                        glue="ch7_fig_explorer",
                        alt="PFF on a crop blurred by one motion")

# %% [markdown]
# ```{glue:figure} ch7_fig_explorer
# :name: fig-ch7-explorer
#
# The `small` PFF deblurring model on a held-out crop blurred by one linear motion (length and
# angle chosen above): input, output (PSNR against the sharp crop), expected flow of the filters and
# the filter at the marked pixel.
# ```

# %% [markdown]
# ## 12. At full scale
#
# `EXP.run(arm, seed, "full")` is the configuration for a GPU: 64 × 64 crops and batch 56 as in the
# thesis [KONG, §6.3.2], 30 epochs of 32,000 pairs, on the thesis' training data through the dataset
# registry — DIV2K's 800 HR images (`pb.data.hr_images`), plus the BSDS500 train and test images for
# deblurring and JPEG (which is how the thesis' "1,200 training images" add up; see the
# [errata](errata-ch7)) — in luma Y, as the thesis evaluates JPEG and SR; deblurring uses the thesis'
# motions of 1–30 px and 17 × 17 filters. It tests as the thesis does where a test set has a known
# source: JPEG on LIVE1 at qualities 10, 20 and 40, ×4 super-resolution on Set5, Set14 and Urban100
# (`pb.data.hr_images.RestorationTestSet`), on whole images, PSNR and SSIM on Y, outputs rounded to
# 8 bits, a border of 4 pixels left out for SR. No checksum is published for these archives, so the
# loaders check their folders and numbers of images instead. The blur set of Bahat et al. has no
# source in the notes this book is written from: deblurring is tested on crops of DIV2K's 100
# validation images, blurred as in training — not Table 6.1's protocol. The thesis applies its model
# to non-overlapping tiles at test time; ours is fully convolutional and runs on whole images. What a
# full run costs (an estimate): `pb.experiments.pff.FULL_COST` and the book's *Full scale* page.
#
# ```{note}
# The thesis' training set does not add up as written: DIV2K's 800 images plus "the BSDS500 training
# set" (200 images) make 1,000, not the "1,200 training images in total" of §6.4.1; BSDS500's train and
# test splits together (400) do. The `full` configuration uses train and test; see the
# [errata](errata-ch7).
# ```
#
# ## Exercises
#
# 1. Free-form filters deblur where softmax filters did not (§10), but leave the envelope. Keep them
#    free and add a penalty on their negative weights, $\mu\sum_t \max(-T_t, 0)$, to the L1 loss;
#    trace PSNR against the envelope excess as $\mu$ grows. Where between the two models does the
#    gain vanish?
# 2. Feed PFF's deblurred output through the same model once more (the thesis' "PFF+1", Table D.1).
#    The thesis found no gain; explain with the statistics of the second input.
# 3. Train with 5 × 5 filters on blur up to 10 px. Where do the errors concentrate (per blur-length
#    bin)?
#
# ## Summary
#
# A filter flow is a per-pixel convolution; estimating one is under-determined, predicting one is a
# regression that a network learns from simulated degradations. Softmax filters keep the output
# inside the local envelope of the input — a strong prior, and a limit — while free-form filters can
# sharpen. Each step of the derivation has its check above: the operator as a local matrix (§1),
# convolution as its invariant case (§2), the exact fit of noise by free filters (§3), the inline
# im2col model and the agreement of the reference, memory-lean and Triton implementations with a
# gradient check (§4), the envelope and brightness guarantees of softmax filters (§5), the expected
# flow of one-hot and symmetric filters (§6), the simulated degradations (§7) and the gradient of a
# softmax tap (§10).
#
# At `medium` scale (three seeds per arm, the tables of §9 with their spread),
# {glue:text}`ch7_claims_held` of the {glue:text}`ch7_claims_total` registered claims hold: the CNN
# beats the degraded input on every task, and free-form PFF removes JPEG artefacts at quality 10
# and 20 and sharpens ×4 up-sampling, on every seed; at quality 40 its gain clears the margin on
# {glue:text}`ch7_wins_pff_beats_input_jpeg_q40` seeds of 3. The thesis' central comparison does not
# reproduce here: the same network predicting pixels directly does better than PFF on every task and
# seed, and softmax PFF for deblurring did not move from the identity. We found no bug behind this
# (§10: normalisation, gradients, start and budget checked; longer training did not help) — free
# filters deblur where softmax filters could not learn to. What differs from the thesis: grey 48 × 48
# crops of scikit-image photographs instead of DIV2K/BSDS500 and RGB deblurring, a 145k-parameter
# two-stream network instead of a ResNet-18-based one, 1,000 steps instead of 100,000, 11 × 11
# deblurring filters for blur up to 10 px instead of 17 × 17 for up to 30 px, and our initialisation
# (the thesis states none). The `medium` runs took {glue:text}`ch7_med_minutes:.0f` minutes of one
# core; the `small` run of this page took {glue:text}`ch7_small_seconds:.0f` s (printed below).
#
# ## References
#
# Kong's thesis {cite:p}`kong2019thesis` (Chapter 6, Appendix D) and the PFF paper {cite:p}`kong2018pff`;
# filter flow {cite:p}`seitz2009filterflow`; SSIM {cite:p}`wang2004ssim`.

# %%
glue("ch7_small_seconds", time.time() - T0, display=False)
print(pb.runtime.env_report(T0, SCALE, DEVICE))
