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
# # Chapter 1. Pixel-level prediction: one network, four tasks
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pixelbook-org/pixelbook/blob/main/notebooks/01_pixel_level_prediction.ipynb)
#
# Semantic segmentation, boundary detection, monocular depth and surface normals look like four
# different problems. They are one problem: predict a value at every pixel. This chapter builds the
# *unified framework* of Kong's thesis {cite}`kong2019thesis` (Chapter 2): a single fully
# convolutional network whose encoder keeps resolution with dilated convolutions, with one light
# head per task, trained with four losses of which two are the thesis' own — a mixed L2 + L1 loss on
# log-depth and a cosine + arc-cosine loss on normals. We derive each loss, check it numerically,
# train the network on synthetic 3-D scenes whose four labels are exact and mutually consistent,
# and measure every task against the trivial predictor it must beat and against a single-task model.
# Finally we test the thesis' two contributions — the L1 term of the depth loss and the arc-cosine
# term of the normal loss — as ablations at `medium` scale, with five seeds per arm and claims
# written down before the experiment ran.
#
# **Source:** S. Kong, *Pixel-Level Prediction: Models and Applications*, PhD thesis, UC Irvine,
# 2019, Chapter 2 (Eqs. 2.1–2.4, Tables 2.1–2.6).

# %% tags=["hide-cell"]
# Setup, written by `tools/nbtools.py sync` from _config.yml: on Colab, install
# pixelbook from the repository; elsewhere it is already installed (see "How to run").
import sys

if "google.colab" in sys.modules:
    import subprocess

    package = "pixelbook[colab] @ git+https://github.com/pixelbook-org/pixelbook@main"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["hide-cell"]
import dataclasses
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
from pixelbook.data.synthetic import make_scene_splits, normals_from_depth
from pixelbook.losses import (balanced_bce_loss, log_depth_loss, multitask_loss,
                              normal_loss, segmentation_loss)
from pixelbook.models import PixelNet, count_parameters
from pixelbook.multitask import (TASK_METRICS, load_boundary_data, predict_dataset,
                                 task_metrics, trivial_predictions)
from pixelbook.training import train_or_load

# %matplotlib inline
# %config InlineBackend.figure_format = "png"
pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke|small|medium|full|auto
SEED = 0
DEVICE = "auto"
GAMMA = 2.0  # weight of the L1 term of the depth loss [thesis, Eq. 2.3]
LAMBDA = 4.0  # weight of the arc-cosine term of the normal loss [thesis, Eq. 2.4]
# ours: equal task weights
LOSS_WEIGHTS = {"seg": 1.0, "boundary": 1.0, "depth": 1.0, "normals": 1.0}
# "synthetic" | "nyuv2"; auto: NYUv2 at full scale, synthetic scenes otherwise
DATASET = "auto"
# a folder with the NYUv2 files; None: the dataset registry's cache (downloads at full
# scale)
DATA_ROOT = None
# "bsds500" | "none"; auto: BSDS500 at full scale (thesis Table 2.1), none otherwise
BOUNDARY_DATASET = "auto"
# a folder with the unpacked BSDS500 archive; None: the registry's cache
BSDS_ROOT = None

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()
# The chapter's experiment is defined once, in pixelbook.experiments.multitask: its
# arms, the configuration of every scale (`small` here; `medium` for the evidence in
# section 8, run by `make results`) and its claims. The parameters above change the
# runs of this notebook only.
EXP = pb.experiments.get("01_pixel_level_prediction")
DATA_OVERRIDES = {}
if DATASET != "auto":
    DATA_OVERRIDES = {"data": {"dataset": DATASET, "root": DATA_ROOT}}
# for the multi-task arm only
LOSS_OVERRIDES = {"loss": {"weights": LOSS_WEIGHTS, "gamma": GAMMA, "lambda": LAMBDA}}
CONFIG = EXP.run_config("multitask", SEED, SCALE, {**DATA_OVERRIDES, **LOSS_OVERRIDES})
DATASET, ENCODER = CONFIG.data["dataset"], CONFIG.model["encoder"]
EPOCHS = CONFIG.train.epochs
if BOUNDARY_DATASET == "auto":
    BOUNDARY_DATASET = "bsds500" if SCALE == "full" else "none"
print(f"scale={SCALE}, device={DEVICE}, data={DATASET}, encoder={ENCODER}, "
      f"{EPOCHS} epochs")
print(f"arms of the experiment: {', '.join(a.name for a in EXP.arms)}")

# %% [markdown]
# ## 1. Four tasks, one output per pixel
#
# For an image $I \in \mathbb{R}^{3\times H\times W}$ every task asks for a map
# $Y \in \mathbb{R}^{C\times H\times W}$; only $C$ and the meaning of the numbers change:
#
# | task | $C$ | output at pixel $i$ | loss (thesis) |
# |---|---|---|---|
# | semantic segmentation | $K$ | class probabilities $C_{i,\cdot} = \mathrm{softmax}(z_i)$ | cross-entropy, Eq. 2.1 |
# | boundary detection | 1 | $P(y_i = 1) = \sigma(z_i)$ | class-balanced logistic, Eq. 2.2 |
# | monocular depth | 1 | $\log D_i$ | L2 + L1 on log-depth, Eq. 2.3 |
# | surface normals | 3 | a unit vector $\mathbf n_i$ | cosine + arc-cosine, Eq. 2.4 |
#
# The thesis' point is that one architecture serves all four: "the last layer and the loss function
# are what one should pay attention to most". We need data where all four labels are known exactly
# for the same pixels.
#
# ### Synthetic scenes with consistent labels
#
# `pb.data.make_scenes` renders random layouts of spheres, boxes, cylinders and cones on a ground
# plane in front of a wall, seen by a pinhole camera looking slightly down. Each pixel's ray is
# intersected with every surface; the nearest hit gives, at once, the class, the instance, the depth
# (distance along the optical axis) and the analytic surface normal (camera frame, facing the
# camera). Boundaries are where the instance or class changes. Because all four come from the same
# hit, they agree with each other — something no real dataset offers (NYUv2's normals are fitted
# to noisy Kinect depth). {numref}`fig-ch1-scenes` shows three held-out scenes.

# %%
DATA = EXP.load_data(CONFIG)  # the runs below reuse it
train, val, CLASSES = DATA["train"], DATA["val"], DATA["classes"]
N_TRAIN, N_VAL, NUM_CLASSES = len(train["image"]), len(val["image"]), len(CLASSES)
IMAGE_SIZE = tuple(train["image"].shape[-2:])
print(f"{N_TRAIN} training and {N_VAL} held-out images of {IMAGE_SIZE}, "
      f"{NUM_CLASSES} classes")

# %% tags=["hide-input"]
columns = ["image", "labels", "boundaries", "depth", "normals"]
panels = []
for i in range(min(3, N_VAL)):
    panels += [val["image"][i], pb.viz.colorize_labels(val["labels"][i], NUM_CLASSES),
               pb.viz.colorize_boundaries(val["boundaries"][i]),
               pb.viz.colorize_depth(val["depth"][i]),
               pb.viz.colorize_normals(val["normals"][i])]
titles = columns + [""] * (len(panels) - len(columns))
fig = pb.viz.show_grid(panels, titles=titles, ncols=len(columns), size=1.2)
pb.widgets.show(fig, glue="ch1_fig_scenes")

# %% [markdown]
# ```{glue:figure} ch1_fig_scenes
# :name: fig-ch1-scenes
# :alt: Three synthetic scenes with their class, boundary, depth and normal labels
#
# Held-out synthetic scenes (one per row) and their four labels, all from the same ray hits:
# classes, boundaries, depth (near = bright) and surface normals (the direction as a colour).
# ```

# %% [markdown]
# Two checks that the labels agree. First, normals are unit vectors. Second, depth determines
# normals: back-projecting each pixel to the 3-D point $z\,K^{-1}(u, v, 1)^\top$ and crossing the
# finite differences of neighbouring points gives the surface normal, which must match the
# rendered one away from occlusion boundaries (where the finite difference straddles two surfaces).

# %% tags=["nbval-check-output"]
scenes = make_scene_splits(8, 1, size=IMAGE_SIZE, seed=SEED)[0]
unit_err = (scenes["normals"].norm(dim=1) - 1).abs().max().item()
est, est_valid = normals_from_depth(scenes["depth"], scenes["K"], method="cross")
angle = torch.rad2deg(torch.acos((est * scenes["normals"]).sum(1).clamp(-1, 1)))
edges = scenes["boundaries"].float()[:, None]
near_boundary = F.max_pool2d(edges, 3, 1, 1)[:, 0].bool()
interior = est_valid & ~near_boundary
interior[:, [0, -1], :] = False
interior[:, :, [0, -1]] = False
median_angle = angle[interior].median().item()
print(f"max | |n| - 1 | = {unit_err:.1e}; median angle between the normals from depth "
      f"and the rendered normals = {median_angle:.2f} deg")
assert unit_err < 1e-5 and median_angle < 2.0

# %% [markdown]
# The class frequencies show the imbalance every real dataset has: floor and wall cover most
# pixels, objects few. A network that predicts "floor" everywhere is right half the time.

# %% tags=["nbval-check-output"]
labelled = train["labels"][train["labels"] != 255]
freq = torch.bincount(labelled, minlength=NUM_CLASSES).double() / labelled.numel()
boundary_rate = train["boundaries"].double().mean().item()
for name, f in zip(CLASSES, freq):
    print(f"{name:>9}: {100 * f:5.1f} % of pixels")
print(f"boundary pixels: {100 * boundary_rate:.1f} %")
glue("ch1_boundary_rate", 100 * boundary_rate, display=False)

# %% [markdown]
# ## 2. One network: a dilated ResNet and four heads
#
# A ResNet down-samples by 32 (a stride-2 stem convolution, a max-pool, and three stride-2
# stages): a 64×64 image would leave a 2×2 map, too coarse for pixels. Following DeepLab, the
# thesis removes the last two down-samplings and *dilates* the convolutions after them by 2 and 4,
# which keeps the output at 1/8 of the input while the receptive field keeps growing as if the
# down-sampling were still there. A 3×3 convolution with dilation $r$ reads pixels $r$ apart, so at
# a feature stride $s$ it widens the receptive field by $2rs$ input pixels instead of $2s$.
#
# Our CPU-sized encoder (`pb.models.TinyDilatedResNet`) has five stages: a stride-2 stem, two
# stride-2 residual stages (output stride 8), then two residual stages dilated by 2 and 4. The
# check below measures the receptive field as the span of input pixels that receive gradient from
# one output unit, with and without the dilation: the difference must be
# $2\,\text{convs}\times 2 \times 8 \times ((2-1) + (4-1)) = 128$ pixels.

# %%
def receptive_span(encoder, size=256):
    """Rows of the input that influence the centre unit of the last stage."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size, requires_grad=True)
    out = encoder.eval()(x)[-1]
    out[0, :, out.shape[-2] // 2, out.shape[-1] // 2].sum().backward()
    rows = (x.grad.abs().sum(1)[0] > 0).any(1).nonzero()
    return int(rows.max() - rows.min() + 1)


dilated = pb.models.TinyDilatedResNet()
undilated = pb.models.TinyDilatedResNet()
for stage in (undilated.stage4, undilated.stage5):
    for conv in (stage.conv1, stage.conv2):
        conv.dilation, conv.padding = (1, 1), (1, 1)
span_d, span_u = receptive_span(dilated), receptive_span(undilated)
print(f"receptive field: {span_u} px without dilation, "
      f"{span_d} px with dilations 2 and 4")
assert span_d - span_u == 128

# %% [markdown]
# Each head reduces the encoder's features, up-samples them to the input size and applies two
# 3×3 convolutions before its final 1×1 layer: the thesis found this better than up-sampling the
# final scores (its §4.4). The normal head ends with an L2 normalisation, so its output is always a
# unit vector; the depth head outputs $\log D$, so depth is positive by construction. The boundary
# head adds HED-style deep supervision {cite}`xie2015hed`: side outputs from four stages and a
# fusion layer, five maps in all, each with its own loss.

# %%
net = PixelNet(NUM_CLASSES, encoder=ENCODER)
out = net(val["image"][:2])
print({k: tuple(v.shape) if torch.is_tensor(v) else f"{len(v)} maps"
       for k, v in out.items()})
print(f"parameters: {count_parameters(net):,} "
      f"(encoder {count_parameters(net.encoder):,})")
glue("ch1_params", count_parameters(net), display=False)

# %% [markdown]
# ## 3. Four losses
#
# ### Segmentation: cross-entropy (Eq. 2.1)
#
# $$\ell_{semantic} = -\sum_i \sum_{c=1}^{K} \mathbb{1}[y_i = c]\,\log C_{i,c},\qquad
#   C_{i,c} = \frac{e^{z_{i,c}}}{\sum_{k} e^{z_{i,k}}}.$$
#
# (The thesis writes $\log C_i$ for the probability of the true class.) Each pixel is an
# independent $K$-way classification; nothing in the loss couples neighbouring pixels — Chapters 3
# and 4 are about what that ignores. We average over pixels instead of summing, which only rescales
# the gradient. With uniform scores every pixel costs $\ln K$.

# %%
torch.manual_seed(SEED)
z = torch.randn(2, NUM_CLASSES, 8, 8)
y = torch.randint(0, NUM_CLASSES, (2, 8, 8))
inline = -(F.log_softmax(z, 1).gather(1, y[:, None])).mean()
torch.testing.assert_close(inline, segmentation_loss(z, y))
uniform = segmentation_loss(torch.zeros_like(z), y).item()  # every pixel costs ln K
assert math.isclose(uniform, math.log(NUM_CLASSES), rel_tol=1e-6)

# %% [markdown]
# ### Boundaries: class-balanced logistic loss (Eq. 2.2)
#
# Only {glue:text}`ch1_boundary_rate:.1f` % of our pixels are boundaries (the thesis: fewer than
# 20 % on BSDS500). With the plain logistic loss a constant prediction already does well: the best
# constant probability is the boundary rate $p$ itself and it costs only the binary entropy $H(p)$.
# HED's fix, used by the thesis, weighs the positives by $\beta = |Y_-|/|Y|$ and the negatives by
# $1 - \beta$:
#
# $$\ell_{boundary} = -\beta\sum_{j\in Y_+}\log P(y_j{=}1) - (1-\beta)\sum_{j\in Y_-}\log P(y_j{=}0).$$
#
# Both classes now carry the same total weight, so the best constant becomes $1/2$: the loss can no
# longer be lowered without looking at the image. We check both optima numerically on a grid of
# constant predictions.

# %%
t = train["boundaries"][:32].float()
grid = torch.linspace(0.005, 0.995, 199)
logit = torch.logit(grid)
constant = [torch.full_like(t, float(v)) for v in logit]
plain = [F.binary_cross_entropy_with_logits(c, t).item() for c in constant]
balanced = [balanced_bce_loss(c, t).item() for c in constant]
p_rate = t.mean().item()
best_plain = grid[int(np.argmin(plain))].item()
best_bal = grid[int(np.argmin(balanced))].item()
print(f"boundary rate p = {p_rate:.3f}; best constant: plain BCE {best_plain:.3f}, "
      f"balanced {best_bal:.3f}")
assert abs(best_plain - p_rate) < 0.01 and abs(best_bal - 0.5) < 0.01
# the package function equals the formula
beta = 1 - t.flatten(1).mean(1).view(-1, 1, 1)
zb = torch.randn_like(t)
inline = -(beta * t * F.logsigmoid(zb)
           + (1 - beta) * (1 - t) * F.logsigmoid(-zb)).mean()
torch.testing.assert_close(inline, balanced_bce_loss(zb, t))

# %% [markdown]
# ### Depth: L2 + L1 on log-depth (Eq. 2.3)
#
# With the residual $r_i = \log D_i - \log \hat D_i$ (prediction minus truth),
#
# $$\ell_{depth} = \sum_i r_i^2 + \gamma\,|r_i|, \qquad
#   \frac{\partial \ell_{depth}}{\partial r_i} = 2 r_i + \gamma\,\mathrm{sign}(r_i),\qquad \gamma = 2.$$
#
# Log-depth makes the loss scale-free: predicting 2 m for 1 m costs as much as 20 m for 10 m. The L2
# term's slope $2r$ vanishes as the error shrinks; the L1 term keeps a slope of $\gamma$, so small
# errors keep being pushed down (the thesis compares it with the reverse Huber loss, which needs a
# breakpoint this loss does not). Autograd must agree with the formula.

# %%
r = torch.tensor([-0.5, -1e-3, 1e-3, 0.2], dtype=torch.float64, requires_grad=True)
gt = torch.ones(1, 1, 1, 4, dtype=torch.float64)
log_depth_loss(r.view(1, 1, 1, 4), gt, gamma=GAMMA, reduction="sum").backward()
torch.testing.assert_close(r.grad, 2 * r.detach() + GAMMA * torch.sign(r.detach()))
print("d loss / d r =", [round(v, 4) for v in r.grad.tolist()])

# %% [markdown]
# ### Normals: cosine + arc-cosine (Eq. 2.4)
#
# $$\ell_{normal} = \sum_i -\mathbf n_i^\top\hat{\mathbf n}_i + \lambda\cos^{-1}(\mathbf n_i^\top\hat{\mathbf n}_i),\qquad \lambda = 4.$$
#
# For unit vectors at angle $\theta$, $\mathbf n^\top\hat{\mathbf n} = \cos\theta$ and the loss is
# $-\cos\theta + \lambda\theta$, with slope $\sin\theta + \lambda$. The usual cosine loss alone has
# slope $\sin\theta \to 0$ as the prediction improves, while the metrics measure $\theta$ itself;
# the arc-cosine term's slope is constant ({numref}`fig-ch1-normal-loss`, after the thesis'
# Figure 2.3). One detail the thesis leaves out: $\frac{d}{dx}\cos^{-1}x = -1/\sqrt{1-x^2}$ is
# infinite at $x = 1$, so the implementation clamps $x$ to $[-1+10^{-6},\,1-10^{-6}]$; the
# gradient with respect to the angle stays finite.

# %%
theta = torch.linspace(0.0, math.pi / 2, 91, dtype=torch.float64, requires_grad=True)
truth = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1)
truth = truth.expand(1, 3, 1, 91)
curves = {}
for name, lam in [("cosine", 0.0), ("cosine + 4 arc-cosine", LAMBDA)]:
    theta.grad = None
    pred_n = torch.stack([torch.sin(theta), torch.zeros_like(theta), torch.cos(theta)])
    normal_loss(pred_n.view(1, 3, 1, 91), truth, lam=lam, reduction="sum").backward()
    curves[name] = theta.grad.detach().clone()
inner = slice(5, 90)  # away from the clamp at theta = 0
sin = torch.sin(theta.detach())[inner]
torch.testing.assert_close(curves["cosine"][inner], sin)
torch.testing.assert_close(curves["cosine + 4 arc-cosine"][inner], sin + LAMBDA)

# %% tags=["hide-input"]
th = theta.detach()
deg = torch.rad2deg(th)
fig, ax = plt.subplots(1, 2, figsize=(pb.viz.PAGE_WIDTH, 2.4))
ax[0].plot(deg, -torch.cos(th), label="cosine")
ax[0].plot(deg, th, label="arc-cosine")
ax[1].plot(deg, torch.sin(th), label="cosine")
ax[1].plot(deg, torch.ones_like(th), label="arc-cosine")
ax[0].set(xlabel="angle error (deg)", title="loss")
ax[1].set(xlabel="angle error (deg)", title="slope d loss / d angle")
ax[1].legend()
fig.tight_layout()
pb.widgets.show(fig, glue="ch1_fig_normal_loss")

# %% [markdown]
# ```{glue:figure} ch1_fig_normal_loss
# :name: fig-ch1-normal-loss
# :alt: The cosine and arc-cosine terms of the normal loss and their slopes against the angle
#
# The two terms of the normal loss against the angle error θ (after the thesis' Figure 2.3):
# the cosine term −cos θ flattens as θ → 0 (slope sin θ), the arc-cosine term θ keeps slope 1.
# ```

# %% [markdown]
# ## 4. Metrics
#
# We report each task with the thesis' metrics (Tables 2.1–2.4), computed by `pb.metrics`:
# mIoU (from one confusion matrix over the whole set) and pixel accuracy; boundary F-measure at
# the optimal dataset threshold (ODS), per-image threshold (OIS) and average precision, with a
# 1-pixel matching tolerance (a simplified protocol, not the official BSDS code — see the API
# reference); depth accuracy $\delta < 1.25^k$ (share of pixels whose ratio to the truth is within
# $1.25^k$), absolute relative error and RMSE; normal angle error (mean, median) and the share of
# pixels within 11.25°, 22.5° and 30°. A quick check on predictions whose answer we know:

# %%
d = val["depth"][:4]
depth_metrics, normal_metrics = pb.metrics.depth_metrics, pb.metrics.normal_metrics
assert depth_metrics(1.2 * d, d)["d1"] == 1.0  # every ratio is 1.2 < 1.25
assert depth_metrics(1.3 * d, d)["d1"] == 0.0  # every ratio is 1.3 > 1.25 ...
assert depth_metrics(1.3 * d, d)["d2"] == 1.0  # ... but < 1.25^2
assert normal_metrics(val["normals"][:4], val["normals"][:4])["mean"] < 1e-3
lab = val["labels"][:4]  # 255 marks unlabelled pixels (NYUv2), which the metric ignores
pred_lab = lab.masked_fill(lab == 255, 0)
assert pb.metrics.mean_iou(pred_lab, lab, NUM_CLASSES, ignore_index=255) == 1.0

# %% [markdown]
# ## 5. Training
#
# The multi-task loss is the sum of the four (each averaged over valid pixels), with equal weights
# (`LOSS_WEIGHTS`; the thesis trains one model per task, so it gives no weights):

# %%
def loss_fn(model, batch):  # what the experiment's `multitask` arm trains on
    out = model(batch["image"])
    return multitask_loss(out, batch, LOSS_WEIGHTS, gamma=GAMMA, lam=LAMBDA)


print(CONFIG.train)
print("model:", CONFIG.model, "\nloss:", CONFIG.loss)

# %% [markdown]
# We train with AdamW and a cosine learning-rate schedule, through the chapter's experiment
# (`EXP.run`): the same code that trains the `medium` runs of section 8, with this notebook's
# scale and seed. Its checkpoint cache is keyed by the whole configuration, so rerunning the
# notebook loads the trained model instead of training again, and an interrupted run resumes where
# it stopped. At `small` scale the run keeps a snapshot of the weights after every epoch for the
# widget at the end, and its history records the held-out metrics of every epoch
# ({numref}`fig-ch1-history`).

# %%
run_multi = EXP.run("multitask", SEED, SCALE, DEVICE,
                    **DATA_OVERRIDES, **LOSS_OVERRIDES)
multi, history = run_multi.model, run_multi.history
batch = {k: v[:4] for k, v in train.items()}
# in eval mode: the check must not touch the batch-norm statistics
with torch.no_grad():
    # the experiment's loss returns (total, terms): the same total as loss_fn
    total, _ = EXP.loss(run_multi.config)(multi, batch)
    torch.testing.assert_close(loss_fn(multi, batch), total)
keys = ["train_loss", "seg", "boundary", "depth", "normals", "val_seg.miou"]
fig = pb.viz.plot_history(history, keys=keys, ncols=3,
                          size=(pb.viz.PAGE_WIDTH / 3, 1.7))
pb.widgets.show(fig, glue="ch1_fig_history")

# %% [markdown]
# ```{glue:figure} ch1_fig_history
# :name: fig-ch1-history
# :alt: Training curves of the multi-task network at small scale
#
# The multi-task network at `small` scale: the weighted training loss, its four terms (each
# averaged over valid pixels) and the held-out mIoU after every epoch.
# ```

# %% [markdown]
# A single-task baseline: the same encoder with only the segmentation head, trained with the same
# budget (epochs, batch size, learning rate) on cross-entropy alone (the experiment's `seg_only`
# arm). It tells us whether sharing the encoder with three other tasks helps or hurts segmentation
# at this scale.

# %%
run_single = EXP.run("seg_only", SEED, SCALE, DEVICE, **DATA_OVERRIDES)
single = run_single.model

# %% [markdown]
# ## 6. Results
#
# Every task on the {glue:text}`ch1_n_val` held-out scenes, next to the trivial predictors that
# ignore the image: the majority class, a constant boundary probability, the mean training depth
# (and, stronger, the per-pixel mean depth map, which knows the average layout of floor and wall)
# and the mean training normal. (These are the experiment's `trivial` and `mean_depth_map` arms.)

# %%
pred_multi = predict_dataset(multi, val, device=DEVICE)
pred_single = predict_dataset(single, val, device=DEVICE)
trivial = trivial_predictions(train, N_VAL, IMAGE_SIZE, NUM_CLASSES)
constant = {k: v for k, v in trivial.items() if k != "depth_map"}
rows = {
    "trivial": task_metrics(constant, val, NUM_CLASSES),
    "mean depth map": task_metrics({"depth": trivial["depth_map"]}, val, NUM_CLASSES),
    "single-task (seg)": task_metrics(pred_single, val, NUM_CLASSES),
    "multi-task (ours)": task_metrics(pred_multi, val, NUM_CLASSES),
}
glue("ch1_n_val", N_VAL, display=False)


def results_table(rows, task, title):
    """A Markdown table of one task's metrics, one row per predictor that has them."""
    cols = TASK_METRICS[task]
    lines = [f"**{title}**", "", "| | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for name, res in rows.items():
        if task in res:
            cells = " | ".join(f"{res[task][c]:.3f}" for c in cols)
            lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


for task, title in [("seg", "Semantic segmentation (cf. thesis Table 2.2)"),
                    ("boundary", "Boundary detection, 1-px tolerance (cf. Table 2.1)"),
                    ("depth", "Depth: δ accuracies, abs. rel., RMSE in m "
                              "(cf. Table 2.3)"),
                    ("normals", "Normals: angle error in degrees, share within 11.25°, "
                                "22.5°, 30° (cf. Table 2.4)")]:
    display(Markdown(results_table(rows, task, title)))

# %%
M, T, S = rows["multi-task (ours)"], rows["trivial"], rows["single-task (seg)"]
D_MAP = rows["mean depth map"]["depth"]["d1"]
for key, value in {"miou": M["seg"]["miou"], "miou_trivial": T["seg"]["miou"],
                   "miou_single": S["seg"]["miou"],
                   "ods": M["boundary"]["ods"], "ods_trivial": T["boundary"]["ods"],
                   "d1": M["depth"]["d1"], "d1_trivial": T["depth"]["d1"], "d1_map": D_MAP,
                   "angle": M["normals"]["mean"],
                   "angle_trivial": T["normals"]["mean"]}.items():
    glue(f"ch1_{key}", value, display=False)
per_class = zip(CLASSES, M["seg"]["per_class_iou"].tolist())
print("multi-task per-class IoU:", " ".join(f"{n}={v:.2f}" for n, v in per_class))

# %% [markdown]
# {numref}`fig-ch1-predictions` shows the multi-task network's four outputs on two held-out
# scenes, each under its ground truth.

# %% tags=["hide-input"]
panels, titles = [], []
for i in range(min(2, N_VAL)):
    d_lim = {"vmin": float(val["depth"][i].min()), "vmax": float(val["depth"][i].max())}
    panels += [val["image"][i], pb.viz.colorize_labels(val["labels"][i], NUM_CLASSES),
               pb.viz.colorize_depth(val["depth"][i], **d_lim),
               pb.viz.colorize_normals(val["normals"][i]),
               pred_multi["boundary"][i],
               pb.viz.colorize_labels(pred_multi["seg"][i], NUM_CLASSES),
               pb.viz.colorize_depth(pred_multi["depth"][i], **d_lim),
               pb.viz.colorize_normals(pred_multi["normals"][i])]
    titles += ["image", "labels", "depth", "normals",
               "boundary prob.", "predicted", "predicted", "predicted"]
fig = pb.viz.show_grid(panels, titles=titles, ncols=4, size=1.5)
pb.widgets.show(fig, glue="ch1_fig_predictions")

# %% [markdown]
# ```{glue:figure} ch1_fig_predictions
# :name: fig-ch1-predictions
# :alt: The multi-task network's predictions on two held-out scenes under their ground truth
#
# The multi-task network at `small` scale on two held-out scenes (two rows each): the image and
# the true classes, depth and normals, then the predicted boundary probability, classes, depth
# (on the same colour scale as the truth above it) and normals.
# ```

# %% [markdown]
# The claim of this chapter is that *one* network learns all four tasks. We require it to beat
# every trivial predictor by a clear margin, fixed before training as a fraction of the gap to a
# perfect score: it must close at least half the gap in mIoU, ODS and $\delta<1.25$, and halve the
# mean normal angle error. For depth the baseline is the mean depth map, not the constant mean
# depth, which any depth network beats (it gets only {glue:text}`ch1_d1_trivial:.3f` of the pixels
# within 25 %).

# %%
if SCALE != "smoke":
    def closes_half_the_gap(ours, base):
        assert ours >= base + 0.5 * (1 - base), (ours, base)

    closes_half_the_gap(M["seg"]["miou"], T["seg"]["miou"])
    closes_half_the_gap(M["boundary"]["ods"], T["boundary"]["ods"])
    closes_half_the_gap(M["depth"]["d1"], D_MAP)
    angle, angle_trivial = M["normals"]["mean"], T["normals"]["mean"]
    assert angle <= 0.5 * angle_trivial, (angle, angle_trivial)
    print("the multi-task network beats every trivial predictor (for depth: the mean "
          "depth map) by the required margin")

# %% [markdown]
# At small scale the network reaches mIoU {glue:text}`ch1_miou:.3f` (majority class:
# {glue:text}`ch1_miou_trivial:.3f`; the segmentation-only network with the same budget:
# {glue:text}`ch1_miou_single:.3f`), boundary ODS {glue:text}`ch1_ods:.3f` (constant:
# {glue:text}`ch1_ods_trivial:.3f`), depth $\delta<1.25$ {glue:text}`ch1_d1:.3f` (mean depth:
# {glue:text}`ch1_d1_trivial:.3f`, mean depth map: {glue:text}`ch1_d1_map:.3f`) and a mean normal
# error of {glue:text}`ch1_angle:.1f`° (constant normal: {glue:text}`ch1_angle_trivial:.1f`°).
# The mean depth map is a much stronger baseline than a constant: most pixels are floor and wall,
# whose depth depends mostly on the image row. The per-class IoUs show where the errors are: the
# small objects, which cover few pixels and are often only a few pixels tall at 64×64.
#
# For reference, the thesis' numbers (full scale, ResNet-50 pretrained on ImageNet, real data —
# **not comparable** with ours, which are on synthetic 64×64 scenes):
#
# | task, dataset (paper, full scale) | metric | thesis baseline |
# |---|---|---|
# | boundaries, BSDS500 (Table 2.1) | ODS / OIS / AP | 0.790 / 0.806 / 0.826 |
# | segmentation, NYUv2 40 classes (Table 2.2) | IoU / pixel acc. | 42.1 / 71.1 |
# | segmentation, Cityscapes val (Table 2.2) | IoU / iIoU | 73.8 / 54.7 |
# | depth, NYUv2 (Table 2.3) | δ<1.25 / 1.25² / 1.25³ (%) | 71.1 / 93.2 / 98.5 |
# | normals, NYUv2 (Table 2.4) | mean angle / 11.25° / 22.5° / 30° | 22.3 / 34.4 / 62.5 / 74.4 |
#
# ```{note}
# The thesis' depth "baseline" row (71.1 / 93.2 / 98.5) equals its L2-only entry in Table B.1, not
# the proposed L2 + L1 loss; the normal baseline (22.3°) differs from the cos + arc-cosine entry of
# Table 2.6 (22.72°). See the errata page.
# ```

# %% [markdown]
# ### Boundaries on BSDS500 (full scale)
#
# The thesis evaluates boundary detection on BSDS500, natural images with 5–9 human annotations
# each. At `full` scale (or with `BOUNDARY_DATASET = "bsds500"`) we train a boundary-only network on
# the 300 train + val images and evaluate on the 200 test images. A pixel is a positive when at least
# half the annotators marked it, a negative when none did, and is ignored in between. We evaluate
# against the union of the annotators' boundaries with the simplified protocol of
# `pb.metrics.boundary_f` (no thinning, no one-to-one matching, one ground truth instead of one per
# annotator), so its numbers are close to, but not the same as, the official benchmark's.

# %%
if BOUNDARY_DATASET == "bsds500":
    full = SCALE == "full"
    bsds_size = pb.runtime.scaled(SCALE, smoke=(32, 48), small=(160, 240),
                                  full=(320, 480))
    bsds_n = pb.runtime.scaled(SCALE, smoke=2, small=None, full=None)
    b_data = {split: load_boundary_data(split, bsds_size, bsds_n, root=BSDS_ROOT,
                                        download=full)
              for split in ("train", "val", "test")}
    b_train = {k: torch.cat([b_data["train"][k], b_data["val"][k]])
               for k in b_data["train"]}
    b_test = b_data["test"]
    b_params = {"model": f"PixelNet-{ENCODER}", "data": "bsds500",
                "tasks": ["boundary"], "size": bsds_size}
    b_cfg = dataclasses.replace(run_multi.config.train, snapshot_every=0, batch_size=8,
                                params=b_params)
    pb.runtime.seed_all(SEED)
    bnet = PixelNet(2, tasks=("boundary",), encoder=ENCODER,
                    weights_backbone="DEFAULT" if full else None)

    def boundary_loss(model, batch):
        return multitask_loss(model(batch["image"]), batch, {"boundary": 1.0})

    train_or_load("ch1-bsds500", bnet, boundary_loss, b_train, b_cfg, device=DEVICE)
    b_pred = predict_dataset(bnet, b_test, batch_size=8, device=DEVICE)["boundary"]
    # BSDS: maxDist = 0.75 % of the image diagonal
    tol = 0.0075 * math.hypot(*bsds_size)
    union = b_test["boundary_mean"] > 0  # the union of the annotators' boundaries
    bsds = pb.metrics.boundary_f(b_pred, union, tolerance=tol)
    print(f"BSDS500 test, {len(b_test['image'])} images at {bsds_size}, "
          f"tolerance {tol:.1f} px (simplified protocol)")
    print(f"{'':>26}{'odsF':>8}{'oisF':>8}{'AP':>8}")
    print(f"{'ours':>26}" + "".join(f"{bsds[k]:>8.3f}" for k in ("ods", "ois", "ap")))
    print(f"{'thesis baseline (paper)':>26}{0.790:>8.3f}{0.806:>8.3f}{0.826:>8.3f}")
else:
    print("BSDS500 is evaluated at full scale only (BOUNDARY_DATASET = 'bsds500').")

# %% [markdown]
# ## 7. Watch it learn
#
# {numref}`fig-ch1-learning` shows the multi-task network's predictions on held-out scenes as
# training proceeds: choose the epoch, the task and the scene. In a live notebook the controls
# scrub through every epoch's snapshot (one forward pass of a small network: well under a second
# on a CPU).

# %%
def depth_limits(i):  # a prediction is drawn on its scene's true depth range
    return {"vmin": float(val["depth"][i].min()), "vmax": float(val["depth"][i].max())}


TASK_VIEWS = {  # (prediction p of scene i) -> picture
    "seg": lambda p, i: pb.viz.colorize_labels(p["seg"][0], NUM_CLASSES),
    "depth": lambda p, i: pb.viz.colorize_depth(p["depth"][0], **depth_limits(i)),
    "normals": lambda p, i: pb.viz.colorize_normals(p["normals"][0]),
    "boundary": lambda p, i: p["boundary"][0].numpy(),
}
GT_VIEWS = {  # scene i -> picture of its ground truth
    "seg": lambda i: pb.viz.colorize_labels(val["labels"][i], NUM_CLASSES),
    "depth": lambda i: pb.viz.colorize_depth(val["depth"][i], **depth_limits(i)),
    "normals": lambda i: pb.viz.colorize_normals(val["normals"][i]),
    "boundary": lambda i: val["boundaries"][i].float().numpy(),
}
viewer = PixelNet(NUM_CLASSES, encoder=ENCODER)
SNAPSHOTS = sorted(history.snapshots)  # every epoch (every 5th at full scale)


def show_epoch(epoch=SNAPSHOTS[-1], task="seg", scene=0):
    viewer.load_state_dict(history.snapshots[epoch])
    p = viewer.predict(val["image"][scene:scene + 1])
    fig, ax = plt.subplots(1, 3, figsize=(pb.viz.PAGE_WIDTH, 2.3))
    images = [val["image"][scene].permute(1, 2, 0).numpy(), GT_VIEWS[task](scene),
              TASK_VIEWS[task](p, scene)]
    titles = ["image", f"{task}: truth", f"{task}: epoch {epoch}"]
    for a, img, title in zip(ax, images, titles):
        a.imshow(img, cmap="gray")
        a.set_title(title)
        a.axis("off")
    fig.tight_layout()
    return fig


n = len(SNAPSHOTS)  # the book shows five of the epochs, a live notebook every one
epochs_shown = sorted({SNAPSHOTS[i] for i in (0, n // 4, n // 2, 3 * n // 4, -1)})
pb.widgets.explorer(show_epoch,
                    {"epoch": epochs_shown, "task": list(TASK_VIEWS), "scene": [0, 1]},
                    live={"epoch": SNAPSHOTS, "scene": (0, N_VAL - 1, 1)},
                    glue="ch1_fig_learning",
                    alt="Predictions of the multi-task network")

# %% [markdown]
# ```{glue:figure} ch1_fig_learning
# :name: fig-ch1-learning
#
# The multi-task network on a held-out scene: the image, the ground truth of one task and the
# prediction after a given epoch of training.
# ```
#
# ## 8. The thesis' two losses, and one network against four
#
# The thesis' own contributions in this chapter are two loss terms: the L1 term of the depth loss
# (Eq. 2.3, weight $\gamma$) and the arc-cosine term of the normal loss (Eq. 2.4, weight
# $\lambda$). Its Tables 2.5 and 2.6 test them by training single-task models with and without the
# term. We do the same: four single-task networks, depth with $\gamma = 2$ and $\gamma = 0$ (L2
# alone), normals with $\lambda = 4$ and $\lambda = 0$ (cosine alone) — the experiment's arms
# `depth_l1l2`, `depth_l2`, `normals_cos_acos` and `normals_cos`. The same single-task depth and
# normal networks also answer the question of section 5 for the other tasks: does the shared
# encoder help or hurt?
#
# ### A live look at `small` scale
#
# At `small` scale the four ablation networks train for a few epochs each, one seed: enough to see
# what each loss does to the errors, not to decide anything.

# %%
ABLATION = {"depth, L2 + L1 (γ = 2)": "depth_l1l2",
            "depth, L2 only (γ = 0)": "depth_l2",
            "normals, cos + arc-cos (λ = 4)": "normals_cos_acos",
            "normals, cos only (λ = 0)": "normals_cos"}
runs_abl = {label: EXP.run(arm, SEED, SCALE, DEVICE, **DATA_OVERRIDES)
            for label, arm in ABLATION.items()}
pred_abl = {label: predict_dataset(r.model, val, device=DEVICE)
            for label, r in runs_abl.items()}
for label, r in runs_abl.items():
    task = "depth" if label.startswith("depth") else "normals"
    keys = ("d1", "d3", "abs_rel") if task == "depth" else ("mean", "median", "a11")
    scores = ", ".join(f"{k} {r.metrics[f'{task}.{k}']:.3f}" for k in keys)
    print(f"{label:<32} {r.config.train.epochs} epochs: {scores}")

# %% [markdown]
# The error maps show where each loss leaves its errors: for depth the log-ratio
# $|\log D - \log \hat D|$ (white: more than $\log 1.25$, outside $\delta<1.25$), for normals the
# angle (white: 30° or more). In {numref}`fig-ch1-loss-ablation` the controls switch between the
# four trained networks and the held-out scenes (predictions are computed once, so the switch is
# instant).

# %%
LOG_125 = math.log(1.25)


def show_loss_ablation(model="depth, L2 + L1 (γ = 2)", scene=0):
    pred = pred_abl[model]
    if model.startswith("depth"):
        p, t = pred["depth"][scene, 0], val["depth"][scene, 0]
        err, vmax, unit = (p.log() - t.log()).abs(), 2 * LOG_125, "|log ratio|"
        shown = pb.viz.colorize_depth(p, vmin=float(t.min()), vmax=float(t.max()))
        score = f"δ<1.25: {(err < LOG_125).float().mean():.3f}"
    else:
        p, t = pred["normals"][scene], val["normals"][scene]
        err = torch.rad2deg(torch.acos((p * t).sum(0).clamp(-1, 1)))
        vmax, unit, shown = 30.0, "angle (deg)", pb.viz.colorize_normals(p)
        score = f"mean angle {err.mean():.1f}°"
    fig, ax = plt.subplots(1, 3, figsize=(pb.viz.PAGE_WIDTH, 2.3))
    ax[0].imshow(val["image"][scene].permute(1, 2, 0).numpy())
    ax[1].imshow(shown)
    im = ax[2].imshow(err.numpy(), cmap="gray_r", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax[2], fraction=0.046)
    for a, title in zip(ax, ["image", model, f"{unit}; {score}"]):
        a.set_title(title, fontsize=8)
        a.axis("off")
    fig.tight_layout()
    return fig


pb.widgets.explorer(show_loss_ablation,
                    {"model": list(ABLATION), "scene": list(range(min(3, N_VAL)))},
                    live={"scene": (0, N_VAL - 1, 1)}, glue="ch1_fig_loss_ablation",
                    alt="Errors of the four loss-ablation networks")

# %% [markdown]
# ```{glue:figure} ch1_fig_loss_ablation
# :name: fig-ch1-loss-ablation
#
# The loss ablations at `small` scale, one seed: a held-out scene, the prediction of one
# single-task network and its error map (depth: |log ratio|, white beyond log 1.25; normals: the
# angle, white at 30° or more).
# ```

# %% [markdown]
# ### The evidence: `medium` scale, five seeds
#
# One seed of a short run cannot separate effects of a few thousandths. The chapter's `medium`
# experiment trains every arm to convergence with more data, five times with different scenes,
# initial weights and batch order (`pixelbook/experiments/multitask.py`; `make results` runs it
# and commits one JSON file per arm and seed under `results/01_pixel_level_prediction/`, with the
# whole training history, the configuration and the commit it ran from). Its claims were written
# in that module, with their margins, before it ran. This notebook does not train those models: it
# loads their results, at any scale.

# %%
RES = pb.results.load_results(EXP.chapter, "medium")
MED_SEEDS = EXP.seeds_for("medium")
MED = RES.record("multitask", MED_SEEDS[0])["config"]
MED_DATA, MED_TRAIN = MED["data"], MED["train"]
MED_STEPS = MED_TRAIN["epochs"] * MED_DATA["n_train"] // MED_TRAIN["batch_size"]
MED_MINUTES = sum(r["provenance"]["train_time_s"] + r["provenance"]["eval_time_s"]
                  for r in RES.records) / 60
print(f"{len(RES)} runs: {len(EXP.arms)} arms x {len(MED_SEEDS)} seeds; "
      f"{MED_DATA['n_train']} training and {MED_DATA['n_val']} held-out scenes of "
      f"{MED_DATA['size']} px per seed, {MED_TRAIN['epochs']} epochs "
      f"({MED_STEPS} steps of {MED_TRAIN['batch_size']}); "
      f"{MED_MINUTES:.0f} min of training and evaluation in all")
for key, value in {"med_seeds": len(MED_SEEDS), "med_n_train": MED_DATA["n_train"],
                   "med_n_val": MED_DATA["n_val"], "med_epochs": MED_TRAIN["epochs"],
                   "med_steps": MED_STEPS, "med_minutes": MED_MINUTES}.items():
    glue(f"ch1_{key}", value, display=False)

# %%
LABELS = {"trivial": "trivial", "mean_depth_map": "mean depth map",
          "seg_only": "seg only", "multitask": "multi-task (γ=2, λ=4)",
          "depth_l2": "depth, γ=0 (L2)", "depth_l1l2": "depth, γ=2 (L2+L1)",
          "normals_cos": "normals, λ=0 (cos)",
          "normals_cos_acos": "normals, λ=4 (cos+acos)"}
COLUMNS = {"depth.d1": "δ<1.25", "depth.d2": "δ<1.25²", "depth.d3": "δ<1.25³",
           "depth.abs_rel": "abs. rel.", "depth.rmse": "RMSE (m)",
           "normals.mean": "mean (°)", "normals.median": "median (°)",
           "normals.a11": "≤ 11.25°", "normals.a22": "≤ 22.5°", "normals.a30": "≤ 30°",
           "seg.miou": "mIoU", "seg.pixel_acc": "pixel acc.", "boundary.ods": "ODS",
           "boundary.ap": "AP"}
DEPTH_ARMS = ["mean_depth_map", "depth_l2", "depth_l1l2", "multitask"]
NORMAL_ARMS = ["trivial", "normals_cos", "normals_cos_acos", "multitask"]
# at most three columns of "mean ± sd" a table, so that each fits the page
for title, arms, metrics in [
        ("Depth: share of pixels within a ratio of the truth (cf. thesis Table 2.5)",
         DEPTH_ARMS, ["depth.d1", "depth.d2", "depth.d3"]),
        ("Depth: errors", DEPTH_ARMS, ["depth.abs_rel", "depth.rmse"]),
        ("Normals: share of pixels within an angle of the truth (cf. Table 2.6)",
         NORMAL_ARMS, ["normals.a11", "normals.a22", "normals.a30"]),
        ("Normals: angle error", NORMAL_ARMS, ["normals.mean", "normals.median"]),
        ("Segmentation", ["trivial", "seg_only", "multitask"],
         ["seg.miou", "seg.pixel_acc"]),
        ("Boundaries", ["trivial", "multitask"], ["boundary.ods", "boundary.ap"])]:
    table = RES.table(metrics, arms, labels={**LABELS, **COLUMNS}, markdown=True)
    display(Markdown(f"**{title}**\n\n{table}"))

# %% tags=["remove-cell"]
# the numbers the prose quotes, glued (mean and sample std over the seeds)
GLUED = {"depth.d1", "depth.abs_rel", "normals.mean", "normals.a11", "seg.miou",
         "boundary.ods"}
for arm in RES.arms:
    for metric in GLUED:
        try:
            summary = RES.summary(arm, metric)
        except KeyError:  # the arm has no head for this task
            continue
        key = f"ch1_med_{arm}_{metric.replace('.', '_')}"
        glue(key, summary.mean, display=False)
        glue(f"{key}_sd", summary.std, display=False)

# %% [markdown]
# Did they converge? {numref}`fig-ch1-convergence` shows the held-out curves. Each history
# records the held-out metrics of every epoch (on the first 64 held-out scenes of its seed). Over
# the last two of the {glue:text}`ch1_med_epochs` epochs they move by at most
# {glue:text}`ch1_conv2_miou:.3f` in mIoU, {glue:text}`ch1_conv2_d1:.4f` in $\delta<1.25$ and
# {glue:text}`ch1_conv2_angle:.2f`° in mean angle, over all arms and seeds: the curves have
# flattened as the cosine schedule takes the learning rate to zero. Over the last five epochs they
# still moved by up to {glue:text}`ch1_conv5_miou:.3f`, {glue:text}`ch1_conv5_d1:.4f` and
# {glue:text}`ch1_conv5_angle:.2f`°: a longer schedule would still improve every arm a little — by
# as much as the δ<1.25 difference between the two depth losses, which is the one comparison below
# that this could change.

# %%
CURVES = {  # held-out metric: (short name, the arms that learn it, title)
    "val_seg.miou": ("miou", ["multitask", "seg_only"], "held-out mIoU"),
    "val_depth.d1": ("d1", ["multitask", "depth_l1l2", "depth_l2"], "held-out δ<1.25"),
    "val_normals.mean": ("angle", ["multitask", "normals_cos_acos", "normals_cos"],
                         "held-out mean angle (°)"),
}
for metric, (name, arms, _) in CURVES.items():
    # the largest change over the last `last` epochs, over arms and seeds
    for last in (2, 5):
        curves = [RES.history(arm, seed)[metric] for arm in arms for seed in MED_SEEDS]
        change = max(abs(c[-1] - c[-1 - last]) for c in curves)
        print(f"{metric}: largest change over the last {last} epochs {change:.4f}")
        glue(f"ch1_conv{last}_{name}", change, display=False)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(pb.viz.PAGE_WIDTH, 2.9))
for ax, (metric, (_, arms, title)) in zip(axes, CURVES.items()):
    for i, arm in enumerate(arms):
        for seed in MED_SEEDS:
            h = RES.history(arm, seed)
            label = LABELS[arm] if seed == MED_SEEDS[0] else None
            ax.plot(h["epoch"][:len(h[metric])], h[metric], color=f"C{i}", lw=1,
                    alpha=0.7, label=label)
    ax.set(xlabel="epoch", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
fig.tight_layout()
pb.widgets.show(fig, glue="ch1_fig_convergence")

# %% [markdown]
# ```{glue:figure} ch1_fig_convergence
# :name: fig-ch1-convergence
#
# Held-out metrics of the `medium` runs during training, one line per seed: mIoU, the share of
# pixels with δ < 1.25 and the mean normal angle (degrees, lower is better).
# ```

# %% [markdown]
# The claims, exactly as they were written before the run (`EXP.claims`), evaluated on these
# results. Each states "arm A beats arm B on a metric by more than a margin on at least $k$ of the
# $n$ seeds"; the cell asserts the verdict recorded in the claim (`expected`), whatever the scale
# of this notebook.

# %%
OUTCOMES = pb.results.evaluate_claims(EXP, RES)
for outcome in OUTCOMES:
    print(outcome, end="\n\n")
    c, key = outcome.claim, f"ch1_claim_{outcome.claim.id}"
    glue(key, outcome.words, display=False)
    # the seeds on which arm A is better at all
    glue(f"{key}_positive", sum(d > 0 for d in outcome.diffs), display=False)
    glue(f"{key}_margin", float(c.margin), display=False)
    glue(f"{key}_k", c.k, display=False)
for outcome in OUTCOMES:
    outcome.check()

# %% [markdown]
# The thesis' own numbers that the tables below and the {ref}`errata <errata-ch1>` quote,
# transcribed once (NYUv2, full scale), with the coincidences the errata page reports checked:

# %% tags=["hide-input"]
THESIS = {  # table -> column/row -> values, as printed in the thesis
    # Table 2.3 (= Table 4.4) baseline, delta < 1.25, 1.25², 1.25³ (%)
    "t23_baseline": (71.1, 93.2, 98.5),
    "t24_baseline_angle": 22.3,  # Table 2.4 baseline, mean angle (deg)
    "t25_l2": (0.737, 0.939, 0.986), "t25_l1": (0.743, 0.942, 0.987),  # Table 2.5
    "t25_l1l2": (0.745, 0.944, 0.988), "t25_last": (0.751, 0.944, 0.988),
    "t26_cos_acos_angle": 22.7170,  # Table 2.6, cosine and inverse cosine
    # Table 4.4, MP@Res5 (w-Avg.) and (PAG), delta < 1.25 (%)
    "t44_mp5_wavg_d1": 74.5, "t44_mp5_pag_d1": 75.1,
    # Table B.1 (L2 loss only): base model and MP@Res5
    "tb1_base": (0.711, 0.932, 0.985), "tb1_mp5": (0.737, 0.939, 0.986),
    "tb2_base_angle": 22.7170,  # Table B.2, base model
    "gamma": 2, "lambda": 4,  # Eqs. 2.3 and 2.4
}
T = THESIS
# the last column of 2.5 is the PAG model, its L1+L2 column the w-Avg. model
assert round(T["t25_last"][0] * 100, 1) == T["t44_mp5_pag_d1"]
assert round(T["t25_l1l2"][0] * 100, 1) == T["t44_mp5_wavg_d1"]
# the baseline of Table 2.3 is the L2-only base model of Table B.1
assert all(round(b * 100, 1) == a for a, b in zip(T["t23_baseline"], T["tb1_base"]))
assert T["t25_l2"] == T["tb1_mp5"] and T["t26_cos_acos_angle"] == T["tb2_base_angle"]
assert T["t24_baseline_angle"] != T["t26_cos_acos_angle"]  # two normal "baselines"
for key, value in THESIS.items():
    values = value if isinstance(value, tuple) else (value,)
    for i, v in enumerate(values):
        suffix = f"_{i}" if isinstance(value, tuple) else ""
        glue(f"ch1_thesis_{key}{suffix}", v, display=False)
print("Table 2.5's last column is Table 4.4's PAG model, its L1+L2 column the w-Avg.")
print("model; Table 2.3's baseline is Table B.1's L2-only base model; Table 2.6's")
print("cosine + arc-cosine model is Table B.2's base model")

# %% [markdown]
# For reference, the thesis' loss studies (**paper, NYUv2, full scale**, a ResNet-50 MultiPool
# model; not comparable in value with our synthetic 64×64 scenes — quoted for the direction of the
# effect):
#
# | Table 2.5, depth | L2 | L1 | L1 + L2 | L1 + L2 (PAG) |
# |---|---|---|---|---|
# | δ < 1.25 | 0.737 | 0.743 | 0.745 | 0.751 |
# | δ < 1.25² | 0.939 | 0.942 | 0.944 | 0.944 |
# | δ < 1.25³ | 0.986 | 0.987 | 0.988 | 0.988 |
#
# | Table 2.6, normals | cosine | arc-cosine | cosine + arc-cosine |
# |---|---|---|---|
# | mean angle (°) ↓ | 23.35 | 23.12 | 22.72 |
# | within 11.25° | 0.316 | 0.328 | 0.338 |
# | within 22.5° | 0.600 | 0.609 | 0.620 |
# | within 30° | 0.724 | 0.730 | 0.738 |
#
# (The last column of Table 2.5 is headed "L1+L2 loss" like the third; its numbers are those of the
# PAG model of Table 4.4 — see the errata page. Our arms test γ and λ; the L1-only and
# arc-cosine-only columns are exercise 2 and 3.)
#
# **The arc-cosine term of the normal loss** does what the thesis says. With $\lambda = 4$ the
# normal-only network puts {glue:text}`ch1_med_normals_cos_acos_normals_a11:.3f` ±
# {glue:text}`ch1_med_normals_cos_acos_normals_a11_sd:.3f` of the pixels within 11.25° of the truth,
# against {glue:text}`ch1_med_normals_cos_normals_a11:.3f` ± {glue:text}`ch1_med_normals_cos_normals_a11_sd:.3f`
# with the cosine alone: the claim (more than {glue:text}`ch1_claim_normal_acos_term_a11_margin:.3f`, half
# the thesis' gain) {glue:text}`ch1_claim_normal_acos_term_a11`. The mean angle error drops from
# {glue:text}`ch1_med_normals_cos_normals_mean:.2f`° to {glue:text}`ch1_med_normals_cos_acos_normals_mean:.2f`°
# ({glue:text}`ch1_claim_normal_acos_term_mean`). The constant slope of the angle term keeps pushing
# small errors down where the cosine's slope $\sin\theta$ has almost vanished (section 3).
#
# **The L1 term of the depth loss** points the thesis' way but does not clear the bar we set. With
# $\gamma = 2$ the depth-only network gets {glue:text}`ch1_med_depth_l1l2_depth_d1:.4f` ±
# {glue:text}`ch1_med_depth_l1l2_depth_d1_sd:.4f` of the pixels within 25 % of the truth, with the L2
# term alone {glue:text}`ch1_med_depth_l2_depth_d1:.4f` ± {glue:text}`ch1_med_depth_l2_depth_d1_sd:.4f`;
# it is ahead on {glue:text}`ch1_claim_depth_l1_term_positive` of the five seeds, but the claim
# written before the run — ahead by more than {glue:text}`ch1_claim_depth_l1_term_margin:.3f` (half the
# gain of Table 2.5) on at least {glue:text}`ch1_claim_depth_l1_term_k` seeds —
# {glue:text}`ch1_claim_depth_l1_term`. We report it as not reproduced at this scale, and keep the
# margin: on our scenes the effect, if real, is smaller than half the thesis' (which reports one
# number per loss, without a spread over runs).
#
# **Against the mean depth map**, the baseline that knows the average layout of the room, the
# multi-task network's depth is far ahead: {glue:text}`ch1_med_multitask_depth_d1:.3f` against
# {glue:text}`ch1_med_mean_depth_map_depth_d1:.3f` ({glue:text}`ch1_claim_depth_beats_mean_map`).
#
# **One network or four?** Section 6 found, with one seed at `small` scale, that sharing the encoder
# costs segmentation a little (mIoU {glue:text}`ch1_miou:.3f` against {glue:text}`ch1_miou_single:.3f`);
# five seeds at `medium` scale confirm it and show the other side. The
# multi-task network's mIoU is {glue:text}`ch1_med_multitask_seg_miou:.3f` against
# {glue:text}`ch1_med_seg_only_seg_miou:.3f` for segmentation alone (the claim that sharing helps
# {glue:text}`ch1_claim_multitask_helps_seg`), but its depth is better than the depth-only
# network's ({glue:text}`ch1_med_multitask_depth_d1:.4f` against
# {glue:text}`ch1_med_depth_l1l2_depth_d1:.4f`; {glue:text}`ch1_claim_multitask_helps_depth`) and so are
# its normals ({glue:text}`ch1_med_multitask_normals_mean:.2f`° against
# {glue:text}`ch1_med_normals_cos_acos_normals_mean:.2f`°; {glue:text}`ch1_claim_multitask_helps_normals`),
# with the same number of training steps and one set of weights instead of three. Depth and normals
# describe the same geometry, and the boundaries and classes mark where it changes; segmentation,
# which needs the encoder's capacity for telling the classes apart, pays for the sharing.
# That reading is ours — the experiment shows the trade-off, not its cause.

# %% [markdown]
# ## Exercises
#
# 1. Set `LOSS_WEIGHTS = {"seg": 1, "boundary": 1, "depth": 0, "normals": 0}`. Does segmentation
#    get better or worse without the geometric tasks? (The cache keys on the weights, so this
#    trains a new model.)
# 2. Set `GAMMA = 0` (the multi-task network with the L2 depth loss alone) and compare
#    $\delta<1.25$ with $\delta<1.25^3$: the thesis (Table 2.5) finds the L1 term helps most at the
#    tightest threshold. Does the same hold in the `medium` table of section 8?
# 3. The thesis' Tables 2.5 and 2.6 also train with the L1 term alone and the arc-cosine term alone.
#    Add those two arms to a copy of the experiment (subclass
#    `pb.experiments.multitask.MultitaskExperiment`, add two `Arm`s and a loss that keeps one term)
#    and run them with `EXP.run(...)`. How would you word, and fix in advance, a claim about them?
# 4. Remove the dilation (set `dilation=1` in stages 4 and 5, as in the receptive-field check) and
#    retrain. Which task suffers most?
#
# ## Summary
#
# - Four pixel-level tasks share one fully convolutional network; only the last layer and the loss
#   change.
# - Dilation keeps an output stride of 8 while the receptive field grows as if the network still
#   down-sampled (checked: +128 px).
# - Class balancing makes a constant boundary map useless (checked: the best constant moves from the
#   boundary rate to 1/2); the L1 term on log-depth and the arc-cosine term on normals keep the
#   gradient from vanishing as errors shrink (checked against autograd).
# - On synthetic scenes the multi-task network beats every trivial predictor by the margins set
#   above — for depth, the per-pixel mean depth map, not only the constant depth.
# - At `medium` scale (five seeds, claims written before the run, see also
#   [Results at a glance](../book/results.md)): the arc-cosine term of Eq. 2.4 improves normals
#   ({glue:text}`ch1_claim_normal_acos_term_a11`); the L1 term of Eq. 2.3 moves $\delta<1.25$ the
#   thesis' way but by less than the margin we fixed ({glue:text}`ch1_claim_depth_l1_term`); sharing
#   one encoder helps depth and normals and costs segmentation.
#
# ## References
#
# - S. Kong, *Pixel-Level Prediction: Models and Applications*, PhD thesis, UC Irvine, 2019, Ch. 2
#   {cite}`kong2019thesis`.
# - S. Xie and Z. Tu, Holistically-nested edge detection, ICCV 2015 {cite}`xie2015hed`.
# - L.-C. Chen et al., DeepLab, TPAMI 2018 {cite}`chen2018deeplab`.
# - D. Eigen and R. Fergus, Predicting depth, surface normals and semantic labels with a common
#   multi-scale convolutional architecture, ICCV 2015 {cite}`eigen2015predicting`.

# %%
print(pb.runtime.env_report(T0, SCALE, DEVICE))
