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
# # Chapter 2. Level sets and Neural ODE segmentation
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pixelbook-org/pixelbook/blob/main/notebooks/02_neural_ode_levelsets.ipynb)
#
# A segmentation can be stored as a *function*: a map $\phi$ whose zero level set is the object's
# contour. Classical level-set methods move that contour with a hand-designed speed $F$ by solving
# the partial differential equation $\phi_t = F|\nabla\phi|$. {cite:t}`valle2019node` observe that
# once space is discretised this is an ordinary differential equation for the pixels of $\phi$ —
# exactly the object a *Neural ODE* {cite:p}`chen2018node` learns. This chapter derives the chain
# from implicit curves to the paper's two models, checking each step on a grid: signed distance
# functions, front propagation, curvature and its two closed-form flows, upwind numerics and the
# CFL condition, re-initialisation, image-driven speeds (geodesic active contours and Chan–Vese,
# compared with scikit-image), a learned linear speed, the Neural ODE with image channels
# (*Contour Evolution*, Eq. 3) and its zero-initialised readout, the narrow-band loss, the adjoint
# method, adaptive Dormand–Prince steps and *Image Evolution* (Eq. 4). We then train all of it on
# synthetic star-shaped objects among look-alike distractors and test the paper's claim: **a NODE
# improves the initial contour of a UNet while using a fraction of the UNet's parameters.**
#
# **Source:** R. Valle, F. Reda, M. Shoeybi, P. LeGresley, A. Tao, B. Catanzaro, *Neural ODEs for
# Image Segmentation with Level Sets*, arXiv:1912.11683 (2019): Eqs. (1)–(5), Tables 1–3.
# Equation numbers below are the paper's.

# %% tags=["hide-cell"]
# Setup, written by `tools/nbtools.py sync` from _config.yml: on Colab, install pixelbook from
# the repository; elsewhere pixelbook is already installed (see "How to run").
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "pixelbook[colab] @ git+https://github.com/pixelbook-org/pixelbook@main"], check=True)

# %% tags=["hide-cell"]
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from myst_nb import glue
from torchdiffeq import odeint

import pixelbook as pb
from pixelbook import levelset as L
from pixelbook.data.starshapes import make_star_shapes
from pixelbook.models import UNet, count_parameters
from pixelbook.training import TrainConfig, config_hash, train_or_load

# %matplotlib inline
pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts
f64 = torch.float64


def norm01(img):
    """An image rescaled to [0, 1] for display (the synthetic images are noisy, outside [0, 1])."""
    img = img.detach().float().cpu()
    return (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke | small | full | auto
SEED = 0
DEVICE = "auto"
NARROW_BAND = 3.0  # s (pixels) of the narrow band tanh(phi / s); ours, the paper gives none
TRAIN_METHOD = "euler"  # fixed-step solver for training at small scale (ours); full scale: the paper's dopri5
TRAIN_STEP = 0.25  # its step: 4 function evaluations over t in [0, 1]
PAPER_ATOL = 1e-3  # [NODE-LS, §4.3]: rtol = 0, atol explored in [1e-5, 1e-3]
CE_SEEDS = 3  # Contour Evolution is trained with this many seeds to measure the spread (ours)
DATASET = "auto"  # "stars" (synthetic StarShapes) or "saliency" (MSRA10K -> ECSSD, PASCAL-S, HKU-IS); auto: by scale
DATA_ROOT = None  # saliency: a folder holding msra10k/, ecssd/, pascal_s/, hku_is/; None fetches via the registry

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()
FULL = SCALE == "full"
DATASET = ("saliency" if FULL else "stars") if DATASET == "auto" else DATASET
if DATASET not in ("stars", "saliency"):
    raise ValueError(f"`DATASET`: expected 'auto', 'stars' or 'saliency', got {DATASET!r}")
SALIENCY = DATASET == "saliency"
WORKERS = 4 if FULL else 0  # DataLoader workers for the saliency datasets
SIZE = pb.runtime.scaled(SCALE, smoke=24, small=32, full=256)  # image side (px)
N_TRAIN = pb.runtime.scaled(SCALE, smoke=32, small=256, full=None)
N_TEST = pb.runtime.scaled(SCALE, smoke=16, small=256, full=None)
BATCH = pb.runtime.scaled(SCALE, smoke=16, small=16, full=16)
EPOCHS = pb.runtime.scaled(SCALE, smoke=1, small=12, full=20)  # NODEs and the large UNet
INIT_EPOCHS = pb.runtime.scaled(SCALE, smoke=1, small=3, full=2)  # the deliberately brief initial UNet
LR = 3e-3  # Adam; the paper: "between 1e-3 and 1e-4" (our small models train faster at 3e-3)
if FULL:  # the paper's solver for training (rtol = 0, adaptive RK45, adjoint)
    TRAIN_SOLVER = dict(method="dopri5", rtol=0.0, atol=PAPER_ATOL, adjoint=True)
else:
    TRAIN_SOLVER = dict(method=TRAIN_METHOD, step_size=TRAIN_STEP, adjoint=False)
CE_SEEDS = CE_SEEDS if SCALE == "small" else 1
print(f"scale {SCALE}, device {DEVICE}, data {DATASET}, images {SIZE}x{SIZE}, training solver {TRAIN_SOLVER}")

# %% [markdown]
# ## 1. Implicit curves and signed distance functions
#
# A closed curve $S$ in the image plane is the zero level set of a function,
# $S = \{x : \phi(x) = 0\}$. We fix the sign convention **once for the whole chapter**:
#
# $$\phi > 0 \text{ inside the object},\qquad \phi < 0 \text{ outside}.$$
#
# The paper never states its sign; this is the one for which its Eq. (1) reads as written (§2).
# The most useful $\phi$ is the *signed distance function* (SDF),
# $\phi(x) = \pm\min_{u\in S}\|x-u\|$, which has $|\nabla\phi| = 1$ almost everywhere
# [NODE-LS, §2]. For a disc of radius $r_0$ centred at $c$, $\phi(x) = r_0 - \|x - c\|$.
#
# On a pixel grid we compute it from a binary mask with a Euclidean distance transform (EDT). The
# EDT measures distances between pixel *centres*, but the contour runs halfway between the last
# inside and the first outside pixel, so we subtract half a pixel on each side
# (`pb.levelset.sdf_from_mask`). Check against the exact SDF of a disc:

# %% tags=["nbval-check-output"]
yy, xx = torch.meshgrid(torch.arange(64, dtype=f64), torch.arange(64, dtype=f64), indexing="ij")
exact = (20.0 - ((xx - 31.8) ** 2 + (yy - 32.3) ** 2).sqrt())[None, None]     # disc, r0 = 20
mask = exact[:, 0] > 0
near = exact.abs() < 5
err_half = float((L.sdf_from_mask(mask).double() - exact)[near].abs().max())
err_plain = float((L.sdf_from_mask(mask, half_pixel=False).double() - exact)[near].abs().max())
ring = (exact.abs() < 10) & (exact.abs() > 1)
grad_mean = float(L.grad_norm(L.sdf_from_mask(mask).double())[ring].mean())
assert err_half <= 0.55 < err_plain, (err_half, err_plain)
assert abs(grad_mean - 1) < 0.02
glue("ch2_sdf_err_half", err_half, display=False)
glue("ch2_sdf_err_plain", err_plain, display=False)
print(f"max |EDT SDF - exact| near the contour: {err_plain:.2f} px without, {err_half:.2f} px with the "
      f"half-pixel shift; mean |grad phi| = {grad_mean:.3f}")

# %% [markdown]
# The plain EDT is off by up to {glue:text}`ch2_sdf_err_plain:.2f` px near the contour, the shifted
# one by {glue:text}`ch2_sdf_err_half:.2f` px (the EDT itself is exact; the rest is the mask's
# staircase), and $|\nabla\phi|\approx 1$ as it should.
#
# ## 2. Front propagation gives the level-set equation
#
# Let every point $x(t)$ of the contour move along the outward normal with speed $F$:
# $\dot x = F\,n$. With $\phi>0$ inside, $\phi$ *decreases* outwards, so the outward normal is
# $n = -\nabla\phi/|\nabla\phi|$. The point stays on the contour, $\phi(x(t), t) = 0$; differentiating
# in $t$,
#
# $$\phi_t + \nabla\phi\cdot\dot x = 0 \;\Rightarrow\; \phi_t - F\,\frac{\nabla\phi\cdot\nabla\phi}{|\nabla\phi|} = 0
# \;\Rightarrow\; \boxed{\phi_t = F\,|\nabla\phi|}\qquad\text{[NODE-LS, Eq. 1]},$$
#
# the equation of {cite:t}`osher1988fronts`, who write $\phi_t + F|\nabla\phi| = 0$ with $\phi<0$
# inside — the same equation for $-\phi$. **$F>0$ grows the region.** Every level set of $\phi$ moves, not only the
# zero one, which is how the method handles merging and splitting for free. Check on the exact
# solution for a constant speed, the expanding disc $\phi(x,t) = r_0 + ct - \|x-c\|$, with autograd
# at random points:

# %%
c_speed = 0.7
pts = (torch.rand(100, 2, dtype=f64) * 40 - 20).requires_grad_()
t_ = torch.full((100,), 1.3, dtype=f64, requires_grad=True)
phi_pts = 10 + c_speed * t_ - pts.norm(dim=1)
g_x, g_t = torch.autograd.grad(phi_pts.sum(), (pts, t_))
torch.testing.assert_close(g_t, c_speed * g_x.norm(dim=1))  # phi_t = F |grad phi|

# %% [markdown]
# ## 3. Curvature and the two closed-form flows
#
# The curvature of the level sets is the divergence of the unit normal field,
#
# $$\kappa = \nabla\cdot\frac{\nabla\phi}{|\nabla\phi|}
# = \frac{\phi_{xx}\phi_y^2 - 2\phi_x\phi_y\phi_{xy} + \phi_{yy}\phi_x^2}{(\phi_x^2+\phi_y^2)^{3/2}}.$$
#
# ```{note}
# The paper prints the curvature term as $\nabla\frac{\nabla\phi}{\|\nabla\phi\|}$, a gradient of a
# vector; the divergence $\nabla\cdot$ is meant (see the {ref}`errata <errata-ch2>`).
# ```
#
# For the disc, $\nabla\phi = -(x-c)/\|x-c\|$ and $\kappa = -1/r$: **convex regions have negative
# curvature in our convention**. Two speeds have closed-form solutions for a disc:
#
# * constant speed $F = c$: $\dot r = c$, so $r(t) = r_0 + ct$;
# * curvature flow $F = \kappa$: $\dot r = -1/r$, so $r\,\dot r = -1$ and $r(t) = \sqrt{r_0^2 - 2t}$.
#   The curve shrinks and smooths; this is the length-minimising flow behind every "regularise the
#   contour" term.
#
# We measure the radius from the area of $\{\phi>0\}$, counting the fraction of each boundary pixel
# covered ($\mathrm{clamp}(\phi+\tfrac12, 0, 1)$ for a distance function).

# %% tags=["nbval-check-output"]
def area_radius(phi):
    """Area-equivalent radius of {phi > 0} from the pixel coverage clamp(phi + 1/2, 0, 1)."""
    return float(((phi.clamp(-0.5, 0.5) + 0.5).sum() / math.pi).sqrt())


N_GRID, R0 = 96, 24.0
yy, xx = torch.meshgrid(torch.arange(N_GRID, dtype=f64), torch.arange(N_GRID, dtype=f64), indexing="ij")
disc = (R0 - ((xx - 47.8) ** 2 + (yy - 48.3) ** 2).sqrt())[None, None]
kappa_rim = float(L.curvature(disc)[disc.abs() < 0.5].mean())
times_c, times_k = [0.0, 4.0, 8.0], [0.0, 100.0, 200.0, 250.0]
grow = L.evolve(disc, times_c, dt=0.25, speed=1.0)
shrink = L.evolve(disc, times_k, dt=0.2, curvature_weight=1.0)
rows = [("F = 1", t, area_radius(p), R0 + t) for t, p in zip(times_c, grow)]
rows += [("F = kappa", t, area_radius(p), math.sqrt(R0 ** 2 - 2 * t)) for t, p in zip(times_k, shrink)]
print(f"curvature on the rim: {kappa_rim:.4f} (exact -1/r0 = {-1 / R0:.4f})")
print(f"{'flow':>10} {'t':>6} {'r numeric':>10} {'r exact':>8} {'error':>7}")
for name, t, r, r_exact in rows:
    print(f"{name:>10} {t:6.0f} {r:10.3f} {r_exact:8.3f} {r - r_exact:7.3f}")
err_c = max(abs(r - e) for n, _, r, e in rows if n == "F = 1")
err_k = max(abs(r - e) for n, _, r, e in rows if n != "F = 1")
assert abs(kappa_rim + 1 / R0) < 0.02 / R0 and err_c < 0.2 and err_k < 0.05, (err_c, err_k)
glue("ch2_err_constant", err_c, display=False)
glue("ch2_err_curvature", err_k, display=False)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
for ax, path, ts, title in ((axes[0], grow, times_c, "constant speed F = 1"),
                            (axes[1], shrink, times_k, "curvature flow F = κ")):
    for k, (p, t) in enumerate(zip(path, ts)):
        ax.contour(p[0, 0].numpy(), levels=[0], colors=[plt.cm.viridis(k / max(len(ts) - 1, 1))])
        ax.plot([], [], color=plt.cm.viridis(k / max(len(ts) - 1, 1)), label=f"t = {t:g}")
    ax.set_aspect("equal"); ax.set_title(title); ax.legend(fontsize=7, loc="lower left"); ax.axis("off")
plt.show()

# %% [markdown]
# Both flows follow their closed forms: the largest radius error is
# {glue:text}`ch2_err_constant:.3f` px for the constant speed and {glue:text}`ch2_err_curvature:.3f` px
# for the curvature flow. The constant-speed lag is the first-order upwind scheme's
# $O(\Delta x)$ error on a curved front (next section), not a sign or factor error.
#
# ## 4. Numerics: upwinding, the CFL condition and re-initialisation
#
# *Method of lines.* On the pixel grid, $\phi_t = F|\nabla\phi|$ becomes one ODE per pixel,
# $\dot\phi = G(\phi)$, once $|\nabla\phi|$ is replaced by finite differences. Which differences
# matters: information travels with the front, so for $F>0$ (growing) a pixel must look *inwards*,
# towards larger $\phi$. With $D^\pm_x$ the forward/backward differences, Godunov's upwind scheme
# for our sign is
#
# $$|\nabla\phi|^2 \approx \min(D^-_x\phi,0)^2 + \max(D^+_x\phi,0)^2 + (\text{same in }y)\quad(F>0),$$
#
# with $\min$ and $\max$ swapped for $F<0$ {cite:p}`osher1988fronts`. The curvature term is a
# diffusion and takes central differences. Forward Euler in time is then stable only under the
# **CFL condition** {cite:p}`osher2003levelset` (Eq. 4.12) $\Delta t\,(\sqrt2\max|F| + 4b) \le 1$ for speed $F$
# and curvature weight $b$ ($\Delta x = 1$). `pb.levelset.evolve` checks it and says which step would
# work; with the check off, a step three times too large lets round-off grow geometrically:

# %%
noisy_disc = disc + 1e-3 * torch.randn(disc.shape, dtype=f64, generator=torch.Generator().manual_seed(0))
try:
    L.evolve(noisy_disc, [0.0, 20.0], dt=0.75, curvature_weight=1.0)
except ValueError as exc:
    print("ValueError:", exc)
stable = L.evolve(noisy_disc, [0.0, 20.0], dt=0.2, curvature_weight=1.0)[-1]
unstable = L.evolve(noisy_disc, [0.0, 20.0], dt=0.75, curvature_weight=1.0, check_cfl=False)[-1]
ratio = float(unstable.abs().max() / stable.abs().max())
assert ratio > 100, ratio
glue("ch2_cfl_ratio", ratio, display=False)
print(f"max |phi| after t = 20: dt = 0.2 -> {float(stable.abs().max()):.1f}, dt = 0.75 -> "
      f"{float(unstable.abs().max()):.3g}")

# %% [markdown]
# *Re-initialisation.* A speed that varies in space stretches and compresses the level sets, so
# $\phi$ stops being a distance function even though its zero level set is right. The classical
# remedy {cite:p}`sussman1994level` solves $\phi_\tau = S(\phi_0)(1-|\nabla\phi|)$ to steady state:
# it pushes $|\nabla\phi|$ back to 1 while (ideally) leaving the contour in place. We move a disc
# with $F = 1 + 0.8\sin(x/4)$ and watch the drift of $|\nabla\phi|$ in a 6-pixel band:

# %%
bump = 1 + 0.8 * torch.sin(xx / 4)[None, None]
times_d = [0.0, 2.0, 4.0, 6.0, 8.0]
drifting = L.evolve(disc, times_d, dt=0.25, speed=bump)
reinit = L.evolve(disc, times_d, dt=0.25, speed=bump, reinit_every=4)


def drift(phi):
    band = phi.abs() < 6
    return float((L.grad_norm(phi)[band] - 1).abs().mean())


d_plain, d_reinit = [drift(p) for p in drifting], [drift(p) for p in reinit]
phi_end = drifting[-1]
psi_end = L.reinitialize(phi_end, steps=20)
# first-order distance to the contour, phi / |grad phi|, before and after: how far the contour moved
moved = float((phi_end / L.grad_norm(phi_end) - psi_end / L.grad_norm(psi_end))[phi_end.abs() < 1].abs().mean())
print("t:            ", "  ".join(f"{t:5.1f}" for t in times_d))
print("no re-init:   ", "  ".join(f"{d:5.3f}" for d in d_plain))
print("re-init /4:   ", "  ".join(f"{d:5.3f}" for d in d_reinit))
print(f"mean shift of the contour by one re-initialisation (20 iterations): {moved:.3f} px")
assert d_plain[-1] > 3 * d_reinit[-1] and moved < 0.5, (d_plain, d_reinit, moved)
glue("ch2_drift_plain", d_plain[-1], display=False)
glue("ch2_drift_reinit", d_reinit[-1], display=False)
glue("ch2_reinit_shift", moved, display=False)

# %% [markdown]
# Without re-initialisation the mean deviation $\big||\nabla\phi|-1\big|$ reaches
# {glue:text}`ch2_drift_plain:.2f`; re-initialising every four steps keeps it at
# {glue:text}`ch2_drift_reinit:.2f`, at the price of moving the contour by
# {glue:text}`ch2_reinit_shift:.2f` px on average (Sussman's scheme is not exactly
# contour-preserving). The paper skips re-initialisation entirely ("our optimization is not
# sensitive to non valid distance maps", §3.2): a learned flow is trained end to end on the final
# zero level set and a narrow-band loss (§8), so it has no use for $|\nabla\phi|=1$ in between.
#
# ## 5. Image-driven speeds: geodesic active contours and Chan–Vese
#
# To segment, the speed must depend on the image $I$. *Edge-based*: geodesic active contours
# {cite:p}`caselles1997geodesic` use $F = g(I)(c + \kappa)$ with the edge-stopping function
# $g = 1/(1+|\nabla G_\sigma * I|^2)$, which stalls the front on strong edges. *Region-based*:
# Chan–Vese {cite:p}`chan2001active` minimise
#
# $$E = \mu\,\mathrm{Length}(\phi=0) + \nu\,\mathrm{Area}(\phi>0) + \lambda_1\!\int_{\phi>0}\!(I-c_1)^2
# + \lambda_2\!\int_{\phi<0}\!(I-c_2)^2,$$
#
# with $c_{1,2}$ the mean intensities inside and outside. Its gradient flow, with the smoothed
# Dirac $\delta_\varepsilon(\phi) = \varepsilon/(\pi(\varepsilon^2+\phi^2))$, is
#
# $$\phi_t = \delta_\varepsilon(\phi)\big[\mu\kappa - \nu - \lambda_1(I-c_1)^2 + \lambda_2(I-c_2)^2\big];$$
#
# replacing $\delta_\varepsilon$ by $|\nabla\phi|$ gives a speed $F$ of Eq. 1. `pb.levelset.chan_vese`
# implements Getreuer's semi-implicit scheme batched in torch (differentiable). It must agree with
# scikit-image's `chan_vese` to round-off on the same image and start (scikit-image's $\delta$ omits
# the $1/\pi$, so its `dt` is ours divided by $\pi$):

# %%
from skimage import data as skdata
from skimage.segmentation import chan_vese as sk_chan_vese
from skimage.transform import resize

camera = resize(skdata.camera().astype(np.float64), (96, 96), anti_aliasing=True)
camera = (camera - camera.min()) / (camera.max() - camera.min())
init = np.sin(np.arange(96)[:, None] * np.pi / 5) * np.sin(np.arange(96)[None, :] * np.pi / 5)
_, sk_phi, _ = sk_chan_vese(camera, mu=0.25, tol=0.0, max_num_iter=60, dt=0.5, init_level_set=init,
                            extended_output=True)
cv_path = L.chan_vese(torch.from_numpy(camera)[None, None], torch.from_numpy(init)[None, None], mu=0.25,
                      dt=0.5 * math.pi, steps=60, return_path=True)
cv_diff = float(np.abs(cv_path[-1, 0, 0].numpy() - sk_phi).max())
energy = [float(L.chan_vese_energy(torch.from_numpy(camera)[None, None], p)) for p in cv_path[::10]]
assert cv_diff < 1e-9, cv_diff
assert all(b <= a for a, b in zip(energy, energy[1:])), energy
print(f"max |phi_torch - phi_skimage| after 60 iterations: {cv_diff:.1e}")
print("Chan-Vese energy every 10 iterations:", " ".join(f"{e:.1f}" for e in energy))

# %% tags=["hide-input"]
g_cam = L.edge_indicator(torch.from_numpy(camera)[None, None].float(), sigma=1.0)[0, 0]
fig = pb.viz.show_grid([torch.from_numpy(camera)[None].float(), g_cam[None],
                        pb.viz.draw_contours(torch.from_numpy(camera)[None].float(), cv_path[-1, 0, 0],
                                             levels=(0.0,), color="orange")],
                       titles=["image", "edge stop g (GAC)", "Chan-Vese, 60 it."], size=2.2)
fig

# %% [markdown]
# ## 6. Learning the speed
#
# Every hand-designed speed above is a fixed local stencil followed by point-wise nonlinearities:
# a convolutional network with hand-set weights. The smallest step towards learning it keeps the
# features and learns only their weights — a **learned linear forcing**
# (`pb.levelset.LinearForcing`, our bridge, not the paper's):
#
# $$\phi_t = F_{\rm adv}|\nabla\phi| + w_1\kappa|\nabla\phi|,\quad
# F_{\rm adv} = w_0 + w_2\big[(I-c_2)^2-(I-c_1)^2\big] + w_3\tanh(\hat\phi^{(0)}/s) + w_4(I-\tfrac12),$$
#
# five numbers trained by back-propagating through 20 explicit steps (the speed is soft-clipped so
# the CFL condition always holds). Chan–Vese is the special case $w_2 = \lambda$, $w_1 = \mu$,
# $w_0 = -\nu$. Training happens in §11, beside the NODEs.
#
# ## 7. The Neural ODE and Contour Evolution (Eq. 3)
#
# After the method of lines the level-set PDE is an ODE, $\dot\phi = G(\phi; I)$, with $G$ a fixed
# stencil. A Neural ODE {cite:p}`chen2018node` replaces $G$ by a network,
# $\dot h = f_\theta(h, t)$ [NODE-LS, Eq. 2], and the paper's **Contour Evolution** augments the
# state with image channels so that $f_\theta$ can see the image
# {cite:p}`dupont2019augmented`:
#
# $$\gamma = (\hat\phi, h),\quad \frac{d\gamma}{dt} = f_\theta(\gamma, t),\ t\in[0,1],\quad
# \gamma^{(0)} = (\hat\phi^{(0)}, h^{(0)}),\quad \tilde\phi = \hat\phi^{(1)} + \psi(\gamma^{(1)})
# \qquad\text{[NODE-LS, Eq. 3]}.$$
#
# $\hat\phi^{(0)}$ is the initial contour's distance map (from a UNet), $h^{(0)} = \lambda(I)$ an
# image embedding (the paper does not say how it is made; ours is two conv layers), $\psi$ a
# readout ("Postnet"). $f_\theta$ outputs $\partial_t\hat\phi$ directly, so it learns the product
# $F|\nabla\phi|$ — and anything else that helps; the $h$ channels evolve too. The last layers of
# $f_\theta$ and $\psi$ are **initialised to zero** [NODE-LS, §3.3]: then $\gamma^{(1)} = \gamma^{(0)}$
# and $\tilde\phi = \hat\phi^{(0)}$, the model starts as the identity on the initial contour.
#
# Eq. 3 in a few lines with torchdiffeq, on a model whose weights we perturb so that it is not the
# identity, against `pb.levelset.ContourEvolution`; then a fresh model is the identity bit for bit:

# %%
s = NARROW_BAND
gen = torch.Generator().manual_seed(1)
ce_demo = L.ContourEvolution(image_channels=1, embed_channels=4, hidden=8, scale=s, method="rk4", step_size=0.25,
                             adjoint=False)
with torch.no_grad():
    for p in ce_demo.parameters():
        p.add_(0.1 * torch.randn(p.shape, generator=gen))
img_demo = torch.rand(2, 1, 16, 16, generator=gen)
phi0_demo = 5 * torch.randn(2, 1, 16, 16, generator=gen)
with torch.no_grad():
    gamma0 = torch.cat([phi0_demo / s, ce_demo.embed(img_demo)], 1)                      # (phi_hat, h)
    gamma1 = odeint(ce_demo.func, gamma0, torch.tensor([0.0, 1.0]), method="rk4",
                    options=dict(step_size=0.25))[-1]                                      # d gamma/dt = f
    phi_tilde = s * (gamma1[:, :1] + ce_demo.postnet(gamma1))                              # + psi(gamma(1))
    torch.testing.assert_close(phi_tilde, ce_demo(img_demo, phi0_demo), rtol=1e-5, atol=1e-5)
    fresh = L.ContourEvolution(image_channels=1, embed_channels=4, hidden=8, scale=s, method="rk4", step_size=0.25,
                               adjoint=False)
    assert torch.equal(fresh(img_demo, phi0_demo), phi0_demo)  # zero-initialised f and psi: identity
print(f"Eq. 3 inline = package; fresh model is the identity; NFE of rk4 with step 0.25: {fresh.nfe_forward}")

# %% [markdown]
# ## 8. The narrow-band loss
#
# The paper trains with the mean squared error between target and predicted distance maps and
# obtains "the equivalent of a narrow band" {cite:p}`valle2019node` (§3.2) by a $\tanh$ on the
# evolved map. We squash both (otherwise the units differ; the paper does not say) with a scale
# $s$ = {glue:text}`ch2_s:.0f` px (ours; the paper gives none):
#
# $$\mathcal L = \frac1{|\Omega|}\sum_x\big(\tanh(\tilde\phi/s) - \tanh(\phi/s)\big)^2,\qquad
# \frac{\partial\mathcal L}{\partial\tilde\phi} = \frac{2}{|\Omega|s}\big(\tanh(\tilde\phi/s)-\tanh(\phi/s)\big)
# \big(1-\tanh^2(\tilde\phi/s)\big).$$
#
# The factor $1-\tanh^2(\tilde\phi/s)\approx 4e^{-2|\tilde\phi|/s}$ concentrates the gradient within a
# few $s$ of the contour. Check against autograd:

# %%
glue("ch2_s", s, display=False)
pred = torch.linspace(-12, 12, 49, dtype=f64)[None, None, None].requires_grad_()
target = pred.detach() + 1.0
(g_auto,) = torch.autograd.grad(L.narrow_band_loss(pred, target, scale=s), pred)
u, v = torch.tanh(pred.detach() / s), torch.tanh(target / s)
g_formula = 2 * (u - v) * (1 - u ** 2) / (s * pred.numel())
torch.testing.assert_close(g_auto, g_formula)
print(f"|dL/dphi| at the contour / at 12 px: {float(g_auto[..., 24].abs() / g_auto[..., -1].abs()):.0f}")

# %% [markdown]
# ## 9. Gradients through the solver: backpropagation and the adjoint
#
# Back-propagating through the solver's operations stores every intermediate state: memory grows
# with the number of steps. The **adjoint method** {cite:p}`chen2018node` instead integrates a
# second ODE backwards in time for $a(t) = \partial\mathcal L/\partial\gamma(t)$,
#
# $$\dot a = -a^\top\frac{\partial f_\theta}{\partial\gamma},\qquad
# \frac{d\mathcal L}{d\theta} = -\int_1^0 a(t)^\top\frac{\partial f_\theta}{\partial\theta}\,dt,$$
#
# re-computing $\gamma(t)$ backwards alongside, with memory independent of the number of steps; the
# paper uses it with adaptive RK45 (§4.3). The two gradients differ only by the solvers' errors, so
# at tight tolerances in float64 they must agree:

# %%
def adjoint_vs_backprop(model, image, phi0, target, **solver):
    grads, nfe = [], []
    for adjoint in (False, True):
        model.configure_solver(adjoint=adjoint, **solver)
        model.zero_grad()
        L.narrow_band_loss(model(image, phi0), target, scale=s).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        nfe.append((model.nfe_forward, model.nfe_backward))
    rel = float((grads[1] - grads[0]).norm() / grads[0].norm())
    return rel, nfe


ce64 = ce_demo.double()
rel_tight, nfe_tight = adjoint_vs_backprop(ce64, img_demo.double(), phi0_demo.double(),
                                           phi0_demo.double() + 1, method="dopri5", rtol=0.0, atol=1e-10)
assert rel_tight < 1e-6, rel_tight
glue("ch2_adjoint_rel_tight", rel_tight, display=False)
print(f"dopri5, atol 1e-10, float64: |g_adjoint - g_backprop| / |g_backprop| = {rel_tight:.1e}; "
      f"NFE (forward, backward): backprop {nfe_tight[0]}, adjoint {nfe_tight[1]}")

# %% [markdown]
# The relative difference is {glue:text}`ch2_adjoint_rel_tight:.0e`. Note the NFE: back-propagation
# replays no function evaluations (autograd reuses the stored graph), the adjoint pays a second,
# backward solve — the price of constant memory.
#
# *Adaptive steps.* Dormand–Prince 5(4) (`dopri5`, the paper's RK45) estimates each step's local
# error from the difference of an order-5 and an order-4 solution and accepts the step if the error
# is below $e_{tol} = a_{tol} + r_{tol}\|h\|_\infty$ [NODE-LS, Eq. 5]; otherwise it retries with a
# smaller step. The paper sets $r_{tol}=0$ because the embedding's magnitude is unknown in advance,
# and explores $a_{tol}\in[10^{-5}, 10^{-3}]$ (torchdiffeq applies the tolerance per element with an
# RMS norm rather than the printed $\infty$-norm). Tighter tolerances mean more steps, i.e. more
# function evaluations (NFE) and time: §12 measures it. An ODE that cannot be solved — step-size
# underflow, NaN — raises `pb.levelset.ODESolveError` with what to change.
#
# ## 10. Image Evolution (Eq. 4)
#
# Without an initial contour, the paper evolves an image embedding and reads a distance map out at
# the end:
#
# $$\frac{dh}{dt} = f_\theta(h,t),\quad h^{(0)} = \lambda(I),\quad \tilde\phi = \psi(h^{(1)})
# \qquad\text{[NODE-LS, Eq. 4]},$$
#
# a continuous-depth ResNet with a distance-map head (`pb.levelset.ImageEvolution`). It must find
# the object among the distractors on its own.
#
# ## 11. Data, the initial contour and the models
#
# **StarShapes** (`pb.data.starshapes`): one star-shaped object per image among *distractor discs
# of similar brightness*, under an illumination ramp, blurred (weak edges) and noisy — thresholding
# fails, and so does any detector that only looks locally. The **hard** variant adds a fading side
# to every object (a genuinely weak edge), a third distractor that may touch the object and a
# smooth background texture. Training and test images come from different seeds.

# %% tags=["nbval-check-output"]
if SALIENCY:
    from pathlib import Path

    from pixelbook.data.msra10k import MSRA10KDataset, with_sdf
    from pixelbook.data.saliency import SaliencyDataset

    def _root(name):  # None: fetch and unpack through the registry (HKU-IS is a RAR: unpack it by hand)
        return None if DATA_ROOT is None else Path(DATA_ROOT) / name

    train_sod = torch.utils.data.DataLoader(
        MSRA10KDataset(root=_root("msra10k"), size=SIZE, download=True, transform=with_sdf),
        batch_size=BATCH, shuffle=True, num_workers=WORKERS, drop_last=FULL)
    EXPERIMENTS = {"msra10k": {
        "train": train_sod, "channels": 3,
        "tests": {title: SaliencyDataset(name, root=_root(name), size=SIZE, download=True)
                  for title, name in (("ECSSD", "ecssd"), ("PASCAL-S", "pascal_s"), ("HKU-IS", "hku_is"))}}}
    print(f"MSRA10K: {len(train_sod.dataset)} training images;",
          ", ".join(f"{t}: {len(d)}" for t, d in EXPERIMENTS["msra10k"]["tests"].items()), "test images")
else:
    EXPERIMENTS = {}
    for variant in ("basic", "hard"):
        tr = make_star_shapes(N_TRAIN, SIZE, variant, seed=1000 * SEED + 1)
        te = make_star_shapes(N_TEST, SIZE, variant, seed=1000 * SEED + 2)
        EXPERIMENTS[variant] = {"train": {"image": tr["image"], "phi": tr["phi"]}, "channels": 1,
                                "tests": {variant: {"image": te["image"], "masks": te["masks"]}}}
        print(f"{variant:>5}: {N_TRAIN} train / {N_TEST} test images, object covers "
              f"{100 * float(te['masks'].float().mean()):.1f} % of the pixels")

# %% tags=["hide-input"]
if not SALIENCY:
    shown = []
    for variant, ex in EXPERIMENTS.items():
        te = ex["tests"][variant]
        for i in range(5):
            shown.append(pb.viz.draw_contours(norm01(te["image"][i]), te["masks"][i].float(), color="black"))
    fig = pb.viz.show_grid(shown, titles=[f"{v} {i}" for v in EXPERIMENTS for i in range(5)], ncols=5, size=1.5)
    display(fig)

# %% [markdown]
# The pipeline of the paper's kidney experiment, scaled down: a **deliberately small, briefly
# trained UNet** regresses the narrow-band distance map and provides the initial contour
# $\hat\phi^{(0)}$ (the paper stops its UNet early "right before [it] starts overfitting"; ours
# stops after {glue:text}`ch2_init_epochs:.0f` epochs). The NODE refines it. The comparison is a
# **UNet with several times more parameters** trained to convergence on the same data. All models
# regress $\tanh(\phi/s)$ with the same loss; a prediction's segmentation is $\{\tilde\phi>0\}$.

# %%
glue("ch2_init_epochs", INIT_EPOCHS, display=False)
INIT_UNET = pb.runtime.scaled(SCALE, smoke=(4, 2), small=(4, 2), full=(16, 4))   # (width, depth), ours
BIG_UNET = pb.runtime.scaled(SCALE, smoke=(8, 2), small=(8, 2), full=(48, 4))
CE_SIZE = pb.runtime.scaled(SCALE, smoke=(4, 8), small=(6, 12), full=(16, 64))    # (embed channels, hidden)
IE_SIZE = pb.runtime.scaled(SCALE, smoke=(8, 8), small=(12, 12), full=(32, 96))   # (channels, hidden)


def regression_loss(model, batch):
    return L.narrow_band_loss(s * model(batch["image"]), batch["phi"], scale=s)


def train_unet(name, exp, width, depth, epochs, lr=LR, seed=SEED):
    pb.runtime.seed_all(seed)
    net = UNet(EXPERIMENTS[exp]["channels"], 1, width=width, depth=depth)
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=BATCH, seed=seed,
                      params=dict(model="unet", exp=exp, width=width, depth=depth, size=SIZE, n=N_TRAIN, s=s))
    hist = train_or_load(f"ch2_{name}_{exp}", net, regression_loss, EXPERIMENTS[exp]["train"], cfg, device=DEVICE)
    return net.eval(), hist, cfg


INIT, BIG, HIST = {}, {}, {}
for exp in EXPERIMENTS:
    INIT[exp], _, INIT[exp + "_cfg"] = train_unet("unet_init", exp, *INIT_UNET, INIT_EPOCHS)
    BIG[exp], HIST["big_" + exp], _ = train_unet("unet_big", exp, *BIG_UNET, EPOCHS)


@torch.no_grad()
def initial_contour(exp, image):
    return s * INIT[exp](image)


if not SALIENCY:  # the initial contour is a fixed input of the NODE: compute it once
    for exp, ex in EXPERIMENTS.items():
        ex["train"]["phi0"] = torch.cat([initial_contour(exp, b["image"].to(DEVICE)).cpu()
                                         for b in pb.training.iterate_batches(ex["train"], 128)])

# %% [markdown]
# Now the learned models of §6–§10 on top of the same initial contour: the learned linear forcing
# (5 weights), Contour Evolution (several seeds, to measure the spread) and Image Evolution. At
# `small` scale they are trained with a fixed-step solver (forward Euler, 4 steps — back-propagating
# through 4 steps is cheap on a CPU); the paper's adaptive solver and the adjoint come back in §12.

# %%
def phi0_of(exp, batch):
    return batch["phi0"] if "phi0" in batch else initial_contour(exp, batch["image"])


def make_refiner_loss(exp):
    def loss(model, batch):
        return L.narrow_band_loss(model(batch["image"], phi0_of(exp, batch)), batch["phi"], scale=s)
    return loss


def train_refiner(kind, exp, seed=SEED, epochs=EPOCHS):
    pb.runtime.seed_all(seed)
    ch = EXPERIMENTS[exp]["channels"]
    if kind == "ce":
        model = L.ContourEvolution(ch, embed_channels=CE_SIZE[0], hidden=CE_SIZE[1], scale=s, **TRAIN_SOLVER)
        loss, lr, clip = make_refiner_loss(exp), LR, 1.0
    elif kind == "ie":
        model = L.ImageEvolution(ch, channels=IE_SIZE[0], hidden=IE_SIZE[1], scale=s, **TRAIN_SOLVER)
        loss, lr, clip = (lambda m, b: L.narrow_band_loss(m(b["image"]), b["phi"], scale=s)), LR, 1.0
    else:  # the learned linear forcing: 5 weights, a larger step size
        model = L.LinearForcing(steps=20, scale=s)
        loss, lr, clip, epochs = make_refiner_loss(exp), 0.2, None, max(1, epochs // 3)
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=BATCH, seed=seed, grad_clip=clip,
                      params=dict(model=kind, exp=exp, size=SIZE, n=N_TRAIN, s=s, ce=CE_SIZE, ie=IE_SIZE,
                                  solver=TRAIN_SOLVER, init=config_hash(INIT[exp + "_cfg"])))
    hist = train_or_load(f"ch2_{kind}_{exp}_seed{seed}", model, loss, EXPERIMENTS[exp]["train"], cfg, device=DEVICE)
    return model.eval(), hist


LF, CE, IE = {}, {}, {}
t_train = time.time()
for exp in EXPERIMENTS:
    LF[exp], HIST["lf_" + exp] = train_refiner("lf", exp)
    CE[exp] = [train_refiner("ce", exp, seed=SEED + k) for k in range(CE_SEEDS if exp != "hard" else 1)]
    if exp != "hard":  # ours: Image Evolution on the basic variant only (CPU budget)
        IE[exp], HIST["ie_" + exp] = train_refiner("ie", exp)
print(f"trained in {time.time() - t_train:.0f} s; learned linear forcing weights (const, curvature, "
      f"Chan-Vese, prior, intensity):", [round(w, 2) for w in LF[next(iter(LF))].weights.tolist()])

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(5, 2.6))
for key, label, color in (("big_" + next(iter(EXPERIMENTS)), "UNet (large)", "tab:blue"),
                          ("ie_" + next(iter(EXPERIMENTS)), "Image Evolution", "tab:green")):
    if key in HIST:
        ax.plot(HIST[key]["train_loss"], label=label, color=color)
for k, (_, h) in enumerate(CE[next(iter(EXPERIMENTS))]):
    ax.plot(h["train_loss"], color="tab:orange", alpha=1.0 if k == 0 else 0.45,
            label="Contour Evolution (each seed)" if k == 0 else None)
ax.set_xlabel("epoch"); ax.set_ylabel("narrow-band loss"); ax.set_yscale("log"); ax.legend(fontsize=8)
ax.set_title(f"training, {next(iter(EXPERIMENTS))} variant", fontsize=9)
plt.show()

# %% [markdown]
# Chan–Vese needs no training; its weights are set by hand (scikit-image's defaults
# $\mu = 0.25$, $\lambda_{1,2} = 1$) and it starts from the same initial contour. Only its number of
# iterations is chosen, on the *training* images.

# %%
CV_STEPS = {}
for exp, ex in EXPERIMENTS.items():
    if SALIENCY:
        CV_STEPS[exp] = 20  # ours, not tuned
        continue
    tr = ex["train"]
    gray_tr = tr["image"].mean(1, keepdim=True)
    masks_tr = tr["phi"][:, 0] > 0
    scores = {k: L.segmentation_scores(L.chan_vese(gray_tr, tr["phi0"], steps=k), masks_tr)["pooled_iou"]
              for k in (0, 5, 10, 20, 40)}
    CV_STEPS[exp] = max(scores, key=scores.get)
    print(f"{exp}: training IoU by Chan-Vese iterations", {k: round(v, 3) for k, v in scores.items()},
          "-> use", CV_STEPS[exp])

# %% [markdown]
# ## 12. Results
#
# Scores on held-out images: **pooled IoU** (true positives, false positives and false negatives
# summed over the whole test set — the paper's IoU, §4.2), **mean IoU** (per image, then averaged),
# **F$_\beta$** with $\beta^2 = 0.3$ on the binary maps with precision and recall pooled over the set
# (what the paper calls α-F$_\beta$; its printed formula is wrong, see the {ref}`errata <errata-ch2>`) and
# **MAE** of the soft map $\tfrac12(1+\tanh(\tilde\phi/s))$ (not in the paper).

# %%
def batches_of(test, bs=64):
    if isinstance(test, dict):
        yield from pb.training.iterate_batches({"image": test["image"], "masks": test["masks"]}, bs)
    else:
        for b in torch.utils.data.DataLoader(test, batch_size=bs, num_workers=WORKERS):
            yield {"image": b["image"], "masks": b["mask"]}


@torch.no_grad()
def predict_all(predict, test):
    phis, masks = [], []
    for b in batches_of(test):
        phis.append(predict(b["image"].to(DEVICE)).float().cpu())
        masks.append(b["masks"])
    return torch.cat(phis), torch.cat(masks)


def predictors(exp):
    init = lambda x: initial_contour(exp, x)                                              # noqa: E731
    out = {"initial contour (small UNet)": (init, count_parameters(INIT[exp])),
           "Chan-Vese (hand-set)": (lambda x: L.chan_vese(x.mean(1, keepdim=True), init(x), steps=CV_STEPS[exp]), 0),
           "learned linear forcing": (lambda x: LF[exp](x, init(x)), 5)}
    for k, (m, _) in enumerate(CE[exp]):
        out[f"Contour Evolution, seed {SEED + k}"] = (lambda x, m=m: m(x, init(x)), count_parameters(m))
    if exp in IE:
        out["Image Evolution"] = (lambda x: IE[exp](x), count_parameters(IE[exp]))
    out["UNet (large)"] = (lambda x: s * BIG[exp](x), count_parameters(BIG[exp]))
    return out


RESULTS, PRED = {}, {}
for exp, ex in EXPERIMENTS.items():
    for test_name, test in ex["tests"].items():
        for method, (fn, n_params) in predictors(exp).items():
            phi, masks = predict_all(fn, test)
            PRED[test_name, method] = phi
            RESULTS[test_name, method] = {**L.segmentation_scores(phi, masks, scale=s), "params": n_params}
        PRED[test_name, "masks"] = masks

for test_name in dict.fromkeys(t for t, _ in RESULTS):
    print(f"\n{test_name} (held-out, {len(PRED[test_name, 'masks'])} images)")
    print(f"{'method':<34}{'params':>8}{'pooled IoU':>11}{'mean IoU':>9}{'F_beta':>8}{'MAE':>7}")
    for (t, method), r in RESULTS.items():
        if t == test_name:
            print(f"{method:<34}{r['params']:>8}{r['pooled_iou']:>11.3f}{r['mean_iou']:>9.3f}"
                  f"{r['fbeta']:>8.3f}{r['mae']:>7.3f}")

# %% [markdown]
# The shared metrics of `pb.metrics` give the same pooled IoU and MAE (a consistency check of the
# chapter's scorer):

# %%
t0_name = next(t for t, _ in RESULTS)
m_name = "initial contour (small UNet)"
phi_chk, masks_chk = PRED[t0_name, m_name], PRED[t0_name, "masks"]
cm = pb.metrics.confusion_matrix((phi_chk[:, 0] > 0).long(), masks_chk.long(), num_classes=2)
assert abs(float(pb.metrics.iou_from_confusion(cm)[1]) - RESULTS[t0_name, m_name]["pooled_iou"]) < 1e-6
soft = 0.5 * (1 + torch.tanh(phi_chk[:, 0] / s))
assert abs(float(pb.metrics.mae(soft, masks_chk)) - RESULTS[t0_name, m_name]["mae"]) < 1e-5
print("pb.metrics agrees")

# %% [markdown]
# **The claim.** Contour Evolution must beat its initial contour by more than the seed-to-seed
# noise. We set the margin from the spread we measure, not from the result: the mean gain in
# pooled IoU over the seeds must exceed **three standard deviations** of Contour Evolution's
# pooled IoU across seeds, and at least 0.01 (with one seed, as at `smoke`/`full` scale, only the
# 0.01). The comparison with the large UNet is reported, not asserted.

# %%
main = next(iter(EXPERIMENTS))
main_test = next(iter(EXPERIMENTS[main]["tests"]))
ce_ious = np.array([r["pooled_iou"] for (t, m), r in RESULTS.items() if t == main_test and m.startswith("Contour")])
init_iou = RESULTS[main_test, "initial contour (small UNet)"]["pooled_iou"]
big_iou = RESULTS[main_test, "UNet (large)"]["pooled_iou"]
gain = float(ce_ious.mean() - init_iou)
spread = float(ce_ious.std(ddof=1)) if len(ce_ious) > 1 else 0.0
margin = max(3 * spread, 0.01)
ce_params = count_parameters(CE[main][0][0])
glue("ch2_ce_iou", float(ce_ious.mean()), display=False)
glue("ch2_epochs", EPOCHS, display=False)
glue("ch2_ce_iou_sd", spread, display=False)
glue("ch2_init_iou", init_iou, display=False)
glue("ch2_ce_gain", gain, display=False)
glue("ch2_margin", margin, display=False)
glue("ch2_big_iou", big_iou, display=False)
glue("ch2_ce_params", ce_params, display=False)
glue("ch2_big_params", count_parameters(BIG[main]), display=False)
glue("ch2_init_params", count_parameters(INIT[main]), display=False)
glue("ch2_param_ratio", count_parameters(BIG[main]) / ce_params, display=False)
glue("ch2_lf_iou", RESULTS[main_test, "learned linear forcing"]["pooled_iou"], display=False)
glue("ch2_cv_iou", RESULTS[main_test, "Chan-Vese (hand-set)"]["pooled_iou"], display=False)
if (main_test, "Image Evolution") in RESULTS:
    glue("ch2_ie_iou", RESULTS[main_test, "Image Evolution"]["pooled_iou"], display=False)
hard_keys = [k for k in RESULTS if k[0] == "hard"]
if hard_keys:
    glue("ch2_hard_init_iou", RESULTS["hard", "initial contour (small UNet)"]["pooled_iou"], display=False)
    glue("ch2_hard_ce_iou", RESULTS["hard", f"Contour Evolution, seed {SEED}"]["pooled_iou"], display=False)
    glue("ch2_hard_big_iou", RESULTS["hard", "UNet (large)"]["pooled_iou"], display=False)
    _loss = CE["hard"][0][1]["train_loss"]
    glue("ch2_hard_ce_drop", 100 * (_loss[-4] - _loss[-1]) / _loss[-4] if len(_loss) > 3 else 0.0, display=False)
    glue("ch2_hard_ce_vs_big", "above" if RESULTS["hard", f"Contour Evolution, seed {SEED}"]["pooled_iou"]
         > RESULTS["hard", "UNet (large)"]["pooled_iou"] else "below", display=False)


def compare(a, b):
    return "above" if a > b else "below"


lf_iou = RESULTS[main_test, "learned linear forcing"]["pooled_iou"]
cv_iou = RESULTS[main_test, "Chan-Vese (hand-set)"]["pooled_iou"]
glue("ch2_ce_vs_big", compare(float(ce_ious.mean()), big_iou), display=False)
glue("ch2_lf_vs_init", compare(lf_iou, init_iou), display=False)
glue("ch2_lf_f", RESULTS[main_test, "learned linear forcing"]["fbeta"], display=False)
glue("ch2_lf_mae", RESULTS[main_test, "learned linear forcing"]["mae"], display=False)
glue("ch2_init_f", RESULTS[main_test, "initial contour (small UNet)"]["fbeta"], display=False)
glue("ch2_init_mae", RESULTS[main_test, "initial contour (small UNet)"]["mae"], display=False)
glue("ch2_cv_vs_init", compare(cv_iou, init_iou), display=False)
glue("ch2_cv_vs_ce", compare(cv_iou, float(ce_ious.mean())), display=False)
print(f"Contour Evolution {ce_ious.mean():.3f} ± {spread:.3f} (n = {len(ce_ious)} seeds) vs initial contour "
      f"{init_iou:.3f}: gain {gain:+.3f}, margin {margin:.3f}; large UNet {big_iou:.3f}")
if SCALE != "smoke":
    assert gain > margin, f"Contour Evolution does not beat its initial contour by the margin ({gain:.3f} <= {margin:.3f})"

# %% [markdown]
# On the basic variant Contour Evolution lifts the pooled IoU of its initial contour from
# {glue:text}`ch2_init_iou:.3f` to {glue:text}`ch2_ce_iou:.3f` (± {glue:text}`ch2_ce_iou_sd:.3f` over
# seeds; gain {glue:text}`ch2_ce_gain:.3f` against a margin of {glue:text}`ch2_margin:.3f`) with
# {glue:text}`ch2_ce_params:.0f` parameters. The large UNet, with {glue:text}`ch2_big_params:.0f`
# parameters ({glue:text}`ch2_param_ratio:.1f`× as many), reaches {glue:text}`ch2_big_iou:.3f` —
# Contour Evolution is {glue:text}`ch2_ce_vs_big` it. Image Evolution, which must find the object
# without the initial contour's location cue, reaches {glue:text}`ch2_ie_iou:.3f`.
#
# The classical baselines are instructive. Hand-set Chan–Vese, run for the few iterations that
# work best on the training images, scores {glue:text}`ch2_cv_iou:.3f` ({glue:text}`ch2_cv_vs_init`
# the initial contour, {glue:text}`ch2_cv_vs_ce` Contour Evolution): a short region-based flow
# is a good refiner, but run longer it leaks into the bright distractors (the training-set
# sweep above). The five-weight learned linear forcing scores {glue:text}`ch2_lf_iou:.3f` pooled
# IoU ({glue:text}`ch2_lf_vs_init` the initial contour), F$_\beta$ {glue:text}`ch2_lf_f:.3f` (initial
# contour {glue:text}`ch2_init_f:.3f`) and MAE {glue:text}`ch2_lf_mae:.3f` (initial contour
# {glue:text}`ch2_init_mae:.3f`): with five weights, a classical flow trained end to end already moves
# in the right direction, but it cannot tell the object from a distractor.
#
# On the **hard** variant (weak edges, touching distractors, texture) the initial contour scores
# {glue:text}`ch2_hard_init_iou:.3f`, Contour Evolution {glue:text}`ch2_hard_ce_iou:.3f` and the
# large UNet {glue:text}`ch2_hard_big_iou:.3f`: the NODE still improves its initial contour, but
# it ends {glue:text}`ch2_hard_ce_vs_big` the large UNet. It had the same budget of
# {glue:text}`ch2_epochs:.0f` epochs as on the basic variant, and its training loss still fell by
# {glue:text}`ch2_hard_ce_drop:.1f` % over the last three of them (the cosine schedule was ending):
# a longer run may do better. Image Evolution is trained on the basic variant only (CPU budget).
#
# So the paper's claim — the NODE improves the initial contour with a fraction of a UNet's
# parameters — holds here on both variants; whether it also *beats* a larger UNet depends on the
# data. The parameter comparison flatters the NODE as the paper's does: the initial UNet's
# {glue:text}`ch2_init_params:.0f` parameters are part of the pipeline (the paper's "NodeUNet 5M"
# likewise leaves out the UNet that makes its initial contour).

# %% tags=["hide-input"]
if not SALIENCY:
    te = EXPERIMENTS[main]["tests"][main_test]
    ce_name = f"Contour Evolution, seed {SEED}"
    panels, titles = [], []
    for i in range(6):
        over = pb.viz.draw_contours(norm01(te["image"][i]), te["masks"][i].float(), color="black")
        over = pb.viz.draw_contours(over, PRED[main_test, "initial contour (small UNet)"][i, 0],
                                    levels=(0.0,), color="tab:blue")
        over = pb.viz.draw_contours(over, PRED[main_test, ce_name][i, 0], levels=(0.0,),
                                    color="tab:orange")
        panels.append(over)
        titles.append(f"test {i}")
    fig = pb.viz.show_grid(panels, titles=titles, ncols=6, size=1.6,
                           suptitle="black: ground truth, blue: initial contour, orange: Contour Evolution")
    display(fig)

# %% [markdown]
# ### What does the flow move?
#
# The paper reads Eq. 3 as a level-set evolution: advancing $\gamma$ "can be interpreted as
# estimating the speed function $F$". But nothing constrains the first channel $\hat\phi$ to stay a
# level-set function, and the readout $\psi$ sees all channels. Score the pieces of the trained
# model (seed 0) separately: $\psi$ without any evolution, $\psi(\gamma^{(0)})$; the evolved distance
# channel alone, $\hat\phi^{(1)}$; and the model, $\hat\phi^{(1)} + \psi(\gamma^{(1)})$.

# %%
ce0 = CE[main][0][0]


def psi_without_flow(x):
    phi0 = initial_contour(main, x)
    return phi0 + s * ce0.postnet(torch.cat([phi0 / s, ce0.embed(x)], 1))


ablation = {"initial contour": lambda x: initial_contour(main, x),
            "psi(gamma(0)): readout, no evolution": psi_without_flow,
            "phi_hat(1): evolved channel, no readout": lambda x: ce0.trajectory(x, initial_contour(main, x), [1.0])[-1],
            "phi_hat(1) + psi(gamma(1)): the model": lambda x: ce0(x, initial_contour(main, x))}
abl = {}
for name, fn in ablation.items():
    phi_a, masks_a = predict_all(fn, EXPERIMENTS[main]["tests"][main_test])
    abl[name] = L.segmentation_scores(phi_a, masks_a, scale=s)["pooled_iou"]
    print(f"{name:<42} pooled IoU {abl[name]:.3f}")
names = list(ablation)
glue("ch2_abl_psi0", abl[names[1]], display=False)
glue("ch2_abl_phihat", abl[names[2]], display=False)
glue("ch2_abl_full", abl[names[3]], display=False)
glue("ch2_abl_phihat_vs_init", compare(abl[names[2]], abl[names[0]]), display=False)

# %% [markdown]
# The readout without evolution scores {glue:text}`ch2_abl_psi0:.3f`, the evolved distance channel
# alone {glue:text}`ch2_abl_phihat:.3f` ({glue:text}`ch2_abl_phihat_vs_init` the initial contour),
# and only their combination reaches {glue:text}`ch2_abl_full:.3f`. The trained NODE does not move
# the zero level set of $\hat\phi$ onto the object, as a level-set speed would: it evolves the whole
# augmented state, image channels included, and the readout turns the result into a distance map.
# "Learning the forcing function" describes the training signal, not what the $\hat\phi$ channel
# does (exercise 2 constrains it).

# %% [markdown]
# ### Solvers: tolerance, function evaluations, time
#
# The trained Contour Evolution (seed 0, trained with forward Euler) is now solved with the
# paper's adaptive Dormand–Prince at three tolerances and with fixed-step RK4 and Euler. NFE counts
# the evaluations of $f_\theta$ per forward pass; time is the wall time of one forward pass over the
# same test batch on this machine.

# %%
model = CE[main][0][0]
solver_te = {k: v[:64] for k, v in EXPERIMENTS[main]["tests"][main_test].items()} if not SALIENCY else None
if SALIENCY:
    b = next(iter(batches_of(EXPERIMENTS[main]["tests"][main_test])))
    solver_te = {"image": b["image"][:64], "masks": b["masks"][:64]}
x_sol = solver_te["image"].to(DEVICE)
phi0_sol = initial_contour(main, x_sol)
SOLVERS = [("dopri5, atol 1e-3", dict(method="dopri5", rtol=0.0, atol=1e-3)),
           ("dopri5, atol 1e-4", dict(method="dopri5", rtol=0.0, atol=1e-4)),
           ("dopri5, atol 1e-5", dict(method="dopri5", rtol=0.0, atol=1e-5)),
           ("rk4, step 0.25", dict(method="rk4", step_size=0.25)),
           ("euler, step 0.25", dict(method="euler", step_size=0.25)),
           ("euler, step 0.5", dict(method="euler", step_size=0.5))]
solver_rows = []
with torch.no_grad():
    for name, opts in SOLVERS:
        model.configure_solver(adjoint=False, **opts)
        t_start = time.time()
        phi_sol = model(x_sol, phi0_sol)
        elapsed = time.time() - t_start
        iou = L.segmentation_scores(phi_sol.cpu(), solver_te["masks"], scale=s)["pooled_iou"]
        solver_rows.append((name, model.nfe_forward, elapsed, iou))
model.configure_solver(**TRAIN_SOLVER)
print(f"{len(x_sol)} test images ({main_test})")
print(f"{'solver':<20}{'NFE':>5}{'time (s)':>10}{'pooled IoU':>12}")
for name, nfe, el, iou in solver_rows:
    print(f"{name:<20}{nfe:>5}{el:>10.3f}{iou:>12.3f}")
nfe_by = {name: nfe for name, nfe, _, _ in solver_rows}
glue("ch2_nfe_3", nfe_by["dopri5, atol 1e-3"], display=False)
glue("ch2_nfe_5", nfe_by["dopri5, atol 1e-5"], display=False)
ious_sol = [iou for _, _, _, iou in solver_rows]
glue("ch2_solver_iou_range", max(ious_sol) - min(ious_sol), display=False)
assert nfe_by["dopri5, atol 1e-5"] >= nfe_by["dopri5, atol 1e-3"]

# %% [markdown]
# Tightening $a_{tol}$ from $10^{-3}$ to $10^{-5}$ takes dopri5 from {glue:text}`ch2_nfe_3:.0f` to
# {glue:text}`ch2_nfe_5:.0f` function evaluations and the time grows with them, while the pooled IoU
# of all six solvers spans only {glue:text}`ch2_solver_iou_range:.3f`: the paper's remark that
# different tolerances give "similar losses but largely different number of NODE function
# evaluations" (§5), measured. Although the model was trained with 4 Euler steps, the adaptive
# solutions segment as well as the training discretisation: the learned dynamics are smooth enough
# that the flow, not the particular discretisation, carries the result.
#
# ### The paper's settings: adaptive RK45 with the adjoint
#
# Training at `small` scale used a fixed-step solver. Here are the paper's exact settings
# (`dopri5`, $r_{tol}=0$, $a_{tol}=10^{-3}$, adjoint) on a few test images: one forward and one
# backward pass of the loss, with the gradient compared against back-propagation through the
# same adaptive solver. At this tolerance the two gradients differ by the solver error, not by
# round-off.

# %%
few = slice(0, 4)
x_few, phi0_few = x_sol[few], phi0_sol[few]
target_few = L.sdf_from_mask(solver_te["masks"][few]).to(DEVICE)
t_start = time.time()
rel_paper, nfe_paper = adjoint_vs_backprop(model, x_few, phi0_few, target_few, method="dopri5", rtol=0.0,
                                           atol=PAPER_ATOL)
t_paper = time.time() - t_start
model.configure_solver(**TRAIN_SOLVER)
model.zero_grad()
glue("ch2_adjoint_rel_paper", rel_paper, display=False)
print(f"dopri5, rtol 0, atol {PAPER_ATOL:g}, 4 images: NFE forward {nfe_paper[1][0]}, adjoint backward "
      f"{nfe_paper[1][1]}; relative gradient difference to backprop {rel_paper:.2e}; both passes {t_paper:.2f} s")

# %% [markdown]
# ## 13. The paper's numbers (full scale)
#
# Quoted from {cite:t}`valle2019node`, **not reproduced here** (they need the datasets and GPUs:
# one DGX-1 with 8 GPUs for KiTS19, 32 GPUs for NodeStack).
#
# *Table 1 (paper), KiTS19 kidney segmentation, validation IoU pooled over 1786 slices of 42
# patients, 200 × 200:*
#
# | Model | Method | Parameters | IoU |
# |---|---|---|---|
# | UNet | Regression | 5M | 0.8762 |
# | UNet | Regression | 15M | 0.8494 |
# | NodeUNet | Image Evolution | 5M | 0.8832 |
# | NodeUNet | Contour Evolution | 5M | 0.8866 |
#
# *Table 2 (paper), salient objects, trained on MSRA10K; ground truth thresholded at 0:*
#
# | Dataset | Metric | UNet 15M, regression | NodeUNet 5M, Contour Evolution | NodeStack 41M, Image Evolution |
# |---|---|---|---|---|
# | PASCAL-S | α-F$_\beta$ | 0.745 | 0.762 | 0.780 |
# | PASCAL-S | ω-F$_\beta$ | 0.696 | 0.704 | 0.698 |
# | ECSSD | α-F$_\beta$ | 0.736 | 0.771 | 0.848 |
# | ECSSD | ω-F$_\beta$ | 0.719 | 0.745 | 0.768 |
# | HKU-IS | ω-F$_\beta$ | 0.672 | 0.701 | 0.734 |
#
# *Table 3 (paper), NodeStack against published methods (PASCAL-S ground truth thresholded at
# 0.5; baseline α-F$_\beta$ given only approximately in the paper):*
#
# | Dataset | Metric | DRFI | MCDL | LEGS | MTDS | MDF | ELD | DLS | NodeStack |
# |---|---|---|---|---|---|---|---|---|---|
# | PASCAL-S | ω-F$_\beta$ | 0.514 | 0.573 | 0.596 | 0.537 | 0.582 | 0.658 | 0.651 | 0.668 |
# | ECSSD | ω-F$_\beta$ | 0.0 | 0.679 | 0.682 | 0.663 | 0.692 | 0.756 | 0.766 | 0.768 |
# | HKU-IS | ω-F$_\beta$ | 0.514 | 0.634 | 0.607 | 0.711 | 0.567 | 0.718 | 0.748 | 0.734 |
#
# The paper's Contour Evolution beats the 5M UNet by 0.010 IoU on KiTS19 (1.2 % relative) and its
# 15M UNet on saliency by 1.2–4.8 % relative — not the "5 % relative improvement in all
# experiments" of its text; DRFI's "0.0" on ECSSD is presumably a missing value (see the
# {ref}`errata <errata-ch2>`). Our small-scale gains are larger because our initial contour is
# deliberately weaker.
#
# **Full scale** (`SCALE = "full"`, a GPU): the notebook trains on MSRA10K
# (`pb.data.msra10k.MSRA10KDataset`, 10000 images) and evaluates on ECSSD, PASCAL-S and HKU-IS
# (`pb.data.saliency.SaliencyDataset`), all fetched through the dataset registry (no checksums are
# published for these archives; HKU-IS is a RAR file that must be unpacked by hand: put the
# unpacked datasets under one folder and set `DATA_ROOT`). Images are resized to 256 × 256 (the
# paper crops 512 × 512), and training uses the paper's dopri5 with $r_{tol}=0$, $a_{tol}=10^{-3}$ and the adjoint. The ω-F$_\beta$ of Margolin et
# al. is not implemented here.
#
# **KiTS19** is not downloaded by pixelbook: clone `https://github.com/neheller/kits19`, run its
# `python -m starter_code.get_imaging`, `pip install nibabel`, and load 2-D slices as the paper does
# with `pb.data.kits19.load_kits19_slices(root, cases, size=200)` (slices without kidney are pruned;
# the module's docstring lists the choices the paper leaves open: label merge, HU window, split).
#
# ## 14. Interactive: the evolving contour, and the classical forcing weights
#
# The first control scrubs through time $t\in[0,1]$ of the trained Contour Evolution on a test
# image: ground truth in black, the zero level of the distance channel $\hat\phi^{(t)}$ in orange and
# the model's readout $\hat\phi^{(t)} + \psi(\gamma^{(t)})$ in red (at $t = 1$ the red contour is the
# model's output; before, it shows what $\psi$ makes of the partly evolved state — $\psi$ is trained
# only at $t=1$).

# %%
idx = 3
te_main = solver_te
x_one, phi0_one = x_sol[idx:idx + 1], phi0_sol[idx:idx + 1]
times_w = np.linspace(0, 1, 11)
with torch.no_grad():
    model.configure_solver(method="rk4", step_size=0.05)
    traj = model.trajectory(x_one, phi0_one, times_w.tolist()).cpu()
    traj_out = model.trajectory(x_one, phi0_one, times_w.tolist(), readout=True).cpu()
    model.configure_solver(**TRAIN_SOLVER)
frames, frame_titles = [], []
for k, t in enumerate(times_w):
    img = pb.viz.draw_contours(norm01(x_one[0]), te_main["masks"][idx].float(), color="black")
    img = pb.viz.draw_contours(img, traj[k, 0, 0], levels=(0.0,), color="tab:orange")
    frames.append(pb.viz.draw_contours(img, traj_out[k, 0, 0], levels=(0.0,), color="red"))
    frame_titles.append(f"t = {t:.1f}")
pb.widgets.time_slider(frames, titles=frame_titles, description="time", glue="ch2_fig_evolution",
                       alt="The evolving contour of Contour Evolution")

# %% [markdown]
# ```{glue:figure} ch2_fig_evolution
# :name: fig-ch2-evolution
#
# Contour Evolution on a test image over time: ground truth in black, the zero level of the
# distance channel in orange, the model's readout in red.
# ```

# %% [markdown]
# The second control sets the weights of the classical flow of §6 by hand — constant speed,
# curvature, Chan–Vese region force, initial-contour prior — and evolves the same initial contour
# for 20 explicit steps (milliseconds). Set only the curvature to see the contour shrink; only the
# region force to see it leak into the distractors.

# %%
gray_one = x_one.mean(1, keepdim=True).cpu()


def classical_flow(w_const=0.0, w_curv=1.0, w_region=2.0, w_prior=2.0):
    lf = L.LinearForcing(steps=20, scale=s)
    with torch.no_grad():
        lf.weights.copy_(torch.tensor([w_const, w_curv, w_region, w_prior, 0.0]))
        phi = lf(gray_one, phi0_one.cpu())
    img = pb.viz.draw_contours(norm01(gray_one[0]), te_main["masks"][idx].float(), color="black")
    img = pb.viz.draw_contours(img, phi0_one[0, 0].cpu(), levels=(0.0,), color="tab:blue")
    return pb.viz.draw_contours(img, phi[0, 0], levels=(0.0,), color="tab:orange")


t_cb = time.time()
classical_flow()
assert time.time() - t_cb < 1.0, "the widget callback must answer in under a second"
pb.widgets.explorer(
    classical_flow,
    {"w_const": [0.0, 2.0], "w_curv": [0.0, 1.0, 4.0], "w_region": [0.0, 2.0, 6.0], "w_prior": [0.0, 2.0]},
    live={"w_const": (-3.0, 3.0, 0.5), "w_curv": (0.0, 6.0, 0.5), "w_region": (-6.0, 6.0, 0.5),
          "w_prior": (-4.0, 4.0, 0.5)},
    glue="ch2_fig_forcing", alt="The classical level-set flow with hand-set weights")

# %% [markdown]
# ```{glue:figure} ch2_fig_forcing
# :name: fig-ch2-forcing
#
# Twenty explicit steps of the classical flow from the initial contour (blue) with the chosen
# weights of constant speed, curvature, Chan–Vese region force and initial-contour prior; the
# evolved contour in orange, the ground truth in black.
# ```

# %% [markdown]
# ## Exercises
#
# 1. Replace forward Euler by RK4 in `pb.levelset.evolve` for the curvature flow: does the radius
#    error of §3 shrink? (The spatial error dominates: argue why.)
# 2. Train Contour Evolution with the *structured* dynamics $\dot\phi = |\nabla\phi|\,F_\theta(\phi, I, t)$
#    (a network for the speed only). Does the geometric constraint help on the hard variant?
# 3. Train with `TRAIN_METHOD = "rk4"` and re-run the solver study. Does a model trained with a
#    higher-order solver need fewer dopri5 steps at test time?
# 4. Remove the zero initialisation of $f_\theta$ and $\psi$. How many epochs does it take for the
#    NODE to return to the initial contour's IoU?
# 5. Evaluate with the narrow-band scale $s = 1$ and $s = 6$: how do pooled IoU and MAE react?
#
# ## Summary
#
# * The level-set equation $\phi_t = F|\nabla\phi|$ (with $\phi>0$ inside) follows from moving each
#   contour point along its normal; constant-speed and curvature flows follow their closed forms on
#   the grid to within {glue:text}`ch2_err_constant:.2f` and {glue:text}`ch2_err_curvature:.2f` px.
# * Upwind differences and the CFL condition make the explicit scheme stable; re-initialisation
#   restores $|\nabla\phi|=1$ but moves the contour slightly, and the learned flows do without it.
# * `pb.levelset.chan_vese` equals scikit-image's Chan–Vese to round-off; as a refiner it helps for a
#   few iterations and then leaks into look-alike distractors.
# * A Neural ODE with image channels (Contour Evolution) starts as the identity and learns a flow
#   that improves a weak initial contour by {glue:text}`ch2_ce_gain:.3f` pooled IoU with
#   {glue:text}`ch2_ce_params:.0f` parameters; a UNet with {glue:text}`ch2_param_ratio:.1f`× as many
#   parameters reaches {glue:text}`ch2_big_iou:.3f` on the basic variant; on the hard variant the
#   NODE ends {glue:text}`ch2_hard_ce_vs_big` it.
# * The adjoint gradient equals back-propagation through the solver up to the solver's tolerance;
#   tighter tolerances cost function evaluations without changing the segmentation.
#
# ## References
#
# {cite:t}`valle2019node`; {cite:t}`chen2018node`; {cite:t}`dupont2019augmented`;
# {cite:t}`osher1988fronts`; {cite:t}`osher2003levelset`; {cite:t}`sussman1994level`; {cite:t}`caselles1997geodesic`;
# {cite:t}`chan2001active`; {cite:t}`getreuer2012chanvese`; {cite:t}`ronneberger2015unet`;
# {cite:t}`cheng2015msra10k`; {cite:t}`heller2019kits19`.

# %%
print(pb.runtime.env_report(T0, SCALE, DEVICE))
