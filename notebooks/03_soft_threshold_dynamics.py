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
# # Chapter 3. Softmax duality and Soft Threshold Dynamics
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pixelbook-org/pixelbook/blob/main/notebooks/03_soft_threshold_dynamics.ipynb)
#
# The softmax at the end of a segmentation network decides every pixel on its own. This chapter
# follows {cite:t}`liu2020std`, who observe that the softmax is the *solution of an optimisation
# problem* — the entropy-smoothed version of "pick the best class" — and that one may therefore add
# the priors of classical variational segmentation to that problem: short boundaries (a
# threshold-dynamics length term), known class volumes (an optimal-transport constraint) and star
# shapes (monotonicity along rays). Each prior is handled by a few unrolled iterations that end in
# a softmax, so the whole thing is a differentiable layer, *Soft Threshold Dynamics* (STD). We
# derive every step with a numerical check, find three errors in the paper on the way, train a
# small network with a softmax head, with the same STD layer applied only at test time, and with
# an STD head on noisy synthetic scenes, and test the star prior with positive and negative
# controls, five seeds each.
#
# **Source:** J. Liu, X. Wang, X.-C. Tai, *Deep Convolutional Neural Networks with Spatial
# Regularization, Volume and Star-shape Priori for Image Segmentation*, arXiv:2002.03989 (2020):
# Eqs. (2)–(14), Algorithms 1–3, Tables 1–7. Equation numbers below are the paper's.
#
# *Local notation:* as in the paper, $I$ is the number of classes, $i$ indexes classes and $x$
# pixels; elsewhere the book writes $C$, $c$ and $i$ ({doc}`../book/notation`).

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
from pixelbook import std as S
from pixelbook.data.shapes import make_shape_scenes
from pixelbook.experiments.std import WithHead, raw_logits, small_fcn

# %matplotlib inline
# %config InlineBackend.figure_format = "png"
pb.viz.use_style()  # the book's plot style: 110 dpi, legible fonts
f64 = torch.float64

# %% tags=["parameters"]
SCALE = os.environ.get("PIXELBOOK_SCALE", "auto")  # smoke|small|medium|full|auto
SEED = 0
DEVICE = "auto"
LAM = 1.0  # λ [STD, Table 2]: the best value on VOC (ISIC: 0.75)
EPSILON = 0.5  # ε; ours for the small networks (paper, VOC and ISIC: 0.1), see §11
ITERATIONS = 10  # T for STD and VP-STD [STD, Sec. 3.6]
STAR_ITERATIONS = 50  # T for SS-STD [STD, Sec. 3.8]
KERNEL_SIZE = 7  # [STD, Sec. 4.2]
SIGMA = 1.0  # ours: PSD at 7×7 up to σ ≈ 1.1 (the paper's σ = 5 is not PSD, §5)
NOISE = 0.8  # std of the pixel noise of the binary scenes (intensities 0 / 1); ours
VORONOI_NOISE = 0.3  # std of the noise of the 4-class mosaics (intensity gap 1/3); ours
DATA_ROOT = None  # §16: an unpacked ISIC 2018 folder (None: download); if set, §16 runs

# %%
SCALE = pb.runtime.resolve_scale(SCALE)
DEVICE = pb.runtime.resolve_device(DEVICE)
pb.runtime.seed_all(SEED)
T0 = time.time()
KERNEL = S.gaussian_kernel(KERNEL_SIZE, SIGMA)
print(f"scale={SCALE}, device={DEVICE}, seed={SEED}")

# %% [markdown]
# ## 1. Argmax labelling is a linear programme over the simplex
#
# A network gives each pixel $x$ a score $o_i(x)$ for each class $i=1,\dots,I$. A *soft
# segmentation* is a field $u(x)$ in the probability simplex,
#
# $$\mathbb U=\Big\{u:\ u_i(x)\ge 0,\ \textstyle\sum_{i=1}^I u_i(x)=1\ \ \forall x\Big\}\qquad\text{[STD, Eq. 3]}.$$
#
# The argmax labelling maximises the linear function $\langle o,u\rangle=\sum_x\sum_i o_i(x)u_i(x)$
# over $\mathbb U$: a linear function on a product of simplices attains its maximum at a vertex, and
# the vertices are the one-hot labellings, so the value is $\sum_x\max_i o_i(x)$ [STD, Eq. 6]. The
# maximiser jumps when two scores cross, so it has no useful derivative. We check the value and that no
# random point of $\mathbb U$ beats it.

# %% tags=["nbval-check-output"]
g = torch.Generator().manual_seed(0)
o = torch.randn(1, 4, 6, 6, generator=g, dtype=f64)
hard = F.one_hot(o.argmax(1), 4).permute(0, 3, 1, 2).to(f64)
lp_value = (o * hard).sum()
assert torch.isclose(lp_value, o.max(1).values.sum())
dirichlet = torch.distributions.Dirichlet(torch.ones(4, dtype=f64))
random_u = dirichlet.sample((500, 6, 6)).permute(0, 3, 1, 2)  # 500 points of U
assert bool(((o * random_u).sum((1, 2, 3)) <= lp_value).all())
print(f"<o, argmax> = {lp_value:.4f} = sum_x max_i o_i(x); best of 500 random points: "
      f"{(o * random_u).sum((1, 2, 3)).max():.4f}")

# %% [markdown]
# ## 2. Entropy smoothing: the softmax is the unique minimiser
#
# Subtract the entropy, weighted by $\varepsilon>0$, and minimise instead [STD, Sec. 3.2]:
#
# $$\mathcal F(u;o)=\langle -o,u\rangle+\varepsilon\langle u,\ln u\rangle .$$
#
# $u\ln u$ is strictly convex, so $\mathcal F$ has one minimiser on $\mathbb U$; its derivative is
# infinite at $u_i=0$, so the minimiser is interior and only the equality constraint is active.
# With a multiplier $\eta(x)$ for $\sum_i u_i(x)=1$, stationarity reads
# $-o_i+\varepsilon(\ln u_i+1)-\eta=0$, i.e. $u_i\propto e^{o_i/\varepsilon}$, and normalising gives
#
# $$u=\mathcal S(o/\varepsilon),\qquad [\mathcal S(z)]_i=\frac{e^{z_i}}{\sum_j e^{z_j}} ,$$
#
# the softmax at temperature $\varepsilon$. Substituting back, the minimum is
# $-\sum_x\mathcal M_\varepsilon(o(x))$ with the log-sum-exp
# $\mathcal M_\varepsilon(o)=\varepsilon\ln\sum_i e^{o_i/\varepsilon}$ [STD, Def. 1], which satisfies
# $\max_i o_i\le\mathcal M_\varepsilon(o)\le\max_i o_i+\varepsilon\ln I$ (the sum has its largest term
# and at most $I$ of them) and so tends to the argmax value as $\varepsilon\to0$.

# %% tags=["nbval-check-output"]
for eps in (1.0, 0.3, 0.01):
    u_soft = torch.softmax(o / eps, 1)
    F_soft = S.std_energy(u_soft, o, lam=0.0, epsilon=eps)
    M_eps = eps * torch.logsumexp(o / eps, 1)
    assert torch.allclose(F_soft, -M_eps.sum())
    F_random = S.std_energy(random_u, o.expand(500, -1, -1, -1), lam=0.0, epsilon=eps)
    assert bool((F_random > F_soft).all())
    top, bound = o.max(1).values, eps * math.log(4)
    assert bool((top <= M_eps + 1e-12).all() and (M_eps <= top + bound + 1e-12).all())
    print(f"eps={eps:<5} F(softmax) = {float(F_soft):9.4f} = -sum M_eps; gap to "
          f"-sum max: {float(-top.sum() - F_soft):.4f} "
          f"<= |Omega| eps ln I = {36 * bound:.4f}")

# %% [markdown]
# ## 3. Log-sum-exp, its conjugate, and the softmax as a dual variable
#
# $\mathcal M_\varepsilon$ is smooth and convex, and its gradient is the softmax:
# $\partial\mathcal M_\varepsilon/\partial o_i=\mathcal S_i(o/\varepsilon)$. Its Fenchel conjugate is the
# negative entropy on the simplex [STD, Prop. 1]:
#
# $$\mathcal M_\varepsilon^*(u)=\sup_o\{\langle o,u\rangle-\mathcal M_\varepsilon(o)\}=
# \begin{cases}\varepsilon\langle u,\ln u\rangle,&u\in\mathbb U\\+\infty,&\text{otherwise,}\end{cases}$$
#
# (for $u$ in the simplex the supremum is attained at $o=\varepsilon\ln u$; if
# $\sum_iu_i\ne1$, moving $o$ along $t\mathbf 1$ changes the objective by $t(\sum_iu_i-1)$, unbounded).
# Because $\mathcal M_\varepsilon$ is convex and closed it equals its biconjugate [STD, Prop. 2],
# $\mathcal M_\varepsilon(o)=\max_{u\in\mathbb U}\{\langle o,u\rangle-\varepsilon\langle u,\ln u\rangle\}$:
# the softmax is the maximiser, the *dual variable* of the log-sum-exp. That is the door through which
# priors on $u$ enter. Below: autograd's gradient, and the supremum found by a generic optimiser.

# %%
eps = 0.4
z = torch.randn(5, dtype=f64, generator=g, requires_grad=True)
(grad,) = torch.autograd.grad(eps * torch.logsumexp(z / eps, 0), z)
assert torch.allclose(grad, torch.softmax(z.detach() / eps, 0))

u_point = torch.distributions.Dirichlet(torch.ones(5, dtype=f64)).sample()
o_var = torch.zeros(5, dtype=f64, requires_grad=True)
opt = torch.optim.LBFGS([o_var], max_iter=200, tolerance_grad=1e-12,
                        tolerance_change=1e-14)


def negative_objective():
    opt.zero_grad()
    loss = -((o_var * u_point).sum() - eps * torch.logsumexp(o_var / eps, 0))
    loss.backward()
    return loss


opt.step(negative_objective)
sup = -float(negative_objective().detach())
entropy_value = float(eps * (u_point * u_point.log()).sum())
assert abs(sup - entropy_value) < 1e-8
print(f"sup_o <o,u> - M_eps(o) = {sup:.10f};  eps <u, ln u> = {entropy_value:.10f}")

# %% [markdown]
# ## 4. A spatial prior: the threshold-dynamics length
#
# The Potts model penalises the length of the boundaries between classes [STD, Eq. 2]. Threshold
# dynamics {cite}`merriman1992mbo,esedoglu2015threshold` replaces the length by a smooth surrogate:
# with a Gaussian $k$ of standard deviation $\sigma$ and zero padding,
#
# $$\mathcal R(u)=\lambda\langle u,k*(1-u)\rangle=\lambda\sum_i\sum_x u_i(x)\,(k*(1-u_i))(x)\qquad\text{[STD, Eq. 5]} .$$
#
# For a binary region, $u\,(k*(1-u))$ is non-zero only within a few $\sigma$ of the boundary: it
# measures how much of the kernel's mass leaks across. For a straight boundary and a Gaussian of
# standard deviation $\sigma$ the leak per unit length is $\int_0^\infty\Phi(-s/\sigma)\,ds=
# \sigma/\sqrt{2\pi}$, so $\langle u_i,k*(1-u_i)\rangle\approx\frac{\sigma}{\sqrt{2\pi}}|\partial\Omega_i|$.
# An isolated pixel is almost all boundary, so speckle is expensive.
#
# ```{warning}
# **Erratum (Eq. 4, length prefactor).** The paper writes
# $|\partial\Omega_i|\approx\sqrt{\pi/\sigma}\,\langle u_i,k*(1-u_i)\rangle$ with $k$ the Gaussian of
# standard deviation $\sigma$. The prefactor is $\sqrt{2\pi}/\sigma$. The paper's $\sqrt{\pi/t}$ is the
# right one when the kernel is the heat kernel at time $t$ (variance $2t$); the two agree only at
# $\sigma=2$ ($\pi/\sigma=2\pi/\sigma^2$). The disk check below shows it. The prefactor does not affect
# the algorithm (it is absorbed in $\lambda$), only the meaning of $\lambda$.
# ```

# %%
n_disk, radius = 200, 60
grid = torch.arange(n_disk, dtype=f64)
yy, xx = torch.meshgrid(grid, grid, indexing="ij")
disk = (((yy - 99.5) ** 2 + (xx - 99.5) ** 2) <= radius**2).float()
u_disk = torch.stack([disk, 1 - disk])[None]
perimeter = 2 * math.pi * radius
rows = []
for sigma in (2.0, 4.0):
    k = S.gaussian_kernel(int(2 * math.ceil(6 * sigma) + 1), sigma)
    leak = float(S.length_surrogate(u_disk, k)[0, 0])
    ours = leak * math.sqrt(2 * math.pi) / sigma
    paper = leak * math.sqrt(math.pi / sigma)
    rows.append((sigma, leak, ours, paper))
    assert abs(ours / perimeter - 1) < 0.02
    print(f"sigma={sigma}: <u,k*(1-u)> = {leak:6.1f}; x sqrt(2 pi)/sigma = {ours:6.1f};"
          f" x sqrt(pi/sigma) (paper) = {paper:6.1f}; perimeter {perimeter:6.1f}")
paper_error, ours_error = rows[1][3] / perimeter - 1, abs(rows[1][2] / perimeter - 1)
assert abs(paper_error) > 0.3  # the paper's prefactor is far off at sigma = 4
glue("ch3_prefactor_paper_error", float(100 * paper_error), display=False)
glue("ch3_prefactor_ours_error", float(100 * ours_error), display=False)
glue("ch3_prefactor_sigma", rows[1][0], display=False)
glue("ch3_prefactor_radius", radius, display=False)

# %% [markdown]
# At $\sigma=4$ the paper's prefactor overestimates the perimeter by
# {glue:text}`ch3_prefactor_paper_error:.0f` %, the corrected one is within
# {glue:text}`ch3_prefactor_ours_error:.1f` %.
#
# ## 5. Concavity, and the majorise–minimise step
#
# Expand $\mathcal R(u)=\lambda\sum_i\langle u_i,k*1\rangle-\lambda\sum_i\langle u_i,k*u_i\rangle$: a linear
# term minus a quadratic form. Write $v$ in Fourier: $\langle v,k*v\rangle=\sum_\omega\hat k(\omega)|\hat v(\omega)|^2$.
# So $\mathcal R$ is **concave iff $\hat k\ge0$**, i.e. iff $k$ is positive semi-definite (PSD). A
# concave function lies below its tangent planes, and its gradient is (App. A, using $k(x)=k(-x)$ and a
# zero-padded, hence self-adjoint, convolution)
#
# $$p=\nabla\mathcal R(u)=\lambda\,k*(1-2u)\qquad\text{[STD, Eq. 7, e ≡ 1]}.$$
#
# Replacing $\mathcal R$ by its tangent plane at $u^t$ gives a majoriser of $\mathcal F+\mathcal R$ that
# touches it at $u^t$; minimising the majoriser is Section 2 again with $o$ replaced by $o-p^t$:
#
# $$u^{t+1}=\arg\min_{u\in\mathbb U}\ \mathcal F(u;o)+\langle p^t,u\rangle=\mathcal S\big((o-p^t)/\varepsilon\big)\qquad\text{[STD, Alg. 1]}.$$
#
# Energy descent (Theorem 3.1) is three lines: the step decreases the majoriser, the majoriser is above
# the energy, and equal to it at $u^t$. First the gradient formula against autograd:

# %%
u_rand = torch.rand(2, 3, 9, 8, dtype=f64, generator=g, requires_grad=True)
k_check = S.gaussian_kernel(5, 1.5, dtype=f64)
(grad_R,) = torch.autograd.grad(0.8 * S.length_surrogate(u_rand, k_check).sum(), u_rand)
k_per_class = k_check[None, None].expand(3, 1, 5, 5)
p_formula = 0.8 * F.conv2d(1 - 2 * u_rand.detach(), k_per_class, padding=2, groups=3)
assert torch.allclose(grad_R, p_formula, atol=1e-12)
print("autograd gradient of R equals lam * k*(1-2u): max difference",
      f"{float((grad_R - p_formula).abs().max()):.1e}")

# %% [markdown]
# ```{warning}
# **Erratum (Sec. 4.2, the kernel is not PSD).** The experiments use "a Gaussian kernel with support
# 7×7 and standard deviation σ = 5.0". Truncated to 7×7, a Gaussian that wide is nearly a box filter,
# and a box filter's Fourier transform changes sign: the spectrum of this kernel dips to
# {glue:text}`ch3_paper_kernel_min:.3f` (relative to its peak), so $\mathcal R$ is *not* concave and Theorem 3.1's premise fails. A
# striped direction $v=(-1)^{\text{column}}$ has $\langle v,k*v\rangle<0$: along it $\mathcal R$ is
# strictly convex. Below we find that the conclusion fails too: at the paper's own
# $\lambda=1,\varepsilon=0.1$, on a periodic grid (circular convolution, to keep image borders out of the
# picture), logits with a faint stripe pattern make the iteration *increase* the energy at every step,
# while a PSD kernel decreases it. pixelbook's default kernel is 7×7 with $\sigma=1$, which is PSD
# (a sampled 7×7 Gaussian stays PSD up to σ ≈ {glue:text}`ch3_psd_sigma_max:.2f`, found by
# bisection below); `gaussian_kernel(size, sigma, psd=True)` builds a kernel of
# any width that is PSD by construction (an autocorrelation $g\star g$, whose transform is $|\hat g|^2$).
# ```

# %% tags=["nbval-check-output"]
kernels = {"paper: 7x7, sigma=5": S.gaussian_kernel(7, S.PAPER_SIGMA, dtype=f64),
           "ours: 7x7, sigma=1": S.gaussian_kernel(7, 1.0, dtype=f64),
           "7x7, sigma=5, psd=True": S.gaussian_kernel(7, 5.0, psd=True, dtype=f64)}
stripes = ((-1.0) ** torch.arange(32, dtype=f64)).expand(32, 32)[None, None]


def circular_std_energies(k, lam=1.0, eps=0.1, amplitude=0.05, steps=6):
    """STD on a torus: logits ±amplitude/2 in columns of alternating sign (inline)."""
    r = k.shape[-1] // 2

    def conv(a):  # circular padding: no image border
        return F.conv2d(F.pad(a, (r, r, r, r), mode="circular"),
                        k[None, None].expand(2, 1, *k.shape), groups=2)

    def energy(u):
        return float((-(o_s * u) + eps * u * u.log() + lam * u * conv(1 - u)).sum())

    o_s = torch.cat([amplitude * stripes / 2, -amplitude * stripes / 2], 1)
    u = torch.softmax(o_s / eps, 1)
    trace = [energy(u)]
    for _ in range(steps):
        u = torch.softmax((o_s - lam * conv(1 - 2 * u)) / eps, 1)
        trace.append(energy(u))
    return np.array(trace)


spectra = {}
for name, k in kernels.items():
    spectra[name] = S.kernel_spectrum(k, 256)
    quad = float((stripes * F.conv2d(stripes, k[None, None], padding=3)).sum())
    trace = circular_std_energies(k)
    print(f"{name:<24} spectrum min {float(spectra[name].min()):+.4f}  "
          f"PSD {S.is_psd(k)!s:<5}  <v,k*v> (stripes) {quad:+8.2f}\n"
          f"{'':<24} energy change per step: {np.round(np.diff(trace), 3)}")
paper_trace = circular_std_energies(kernels["paper: 7x7, sigma=5"])
assert not S.is_psd(kernels["paper: 7x7, sigma=5"]) and (np.diff(paper_trace) > 0).all()
assert (np.diff(circular_std_energies(kernels["ours: 7x7, sigma=1"])) <= 1e-9).all()
glue("ch3_paper_kernel_min", float(spectra["paper: 7x7, sigma=5"].min()), display=False)
lo, hi = 0.5, 5.0  # the largest sigma whose sampled 7x7 Gaussian is PSD, by bisection
for _ in range(30):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if S.is_psd(S.gaussian_kernel(7, mid, dtype=f64)) else (lo, mid)
glue("ch3_psd_sigma_max", lo, display=False)
glue("ch3_paper_energy_rise", float(paper_trace[-1] - paper_trace[0]), display=False)

# %% tags=["hide-input"]
fig, ax = plt.subplots(1, 2, figsize=(pb.viz.PAGE_WIDTH, 2.8))
w = 2 * np.pi * np.arange(256) / 256
for name, spec in spectra.items():
    ax[0].plot(w[:129], spec[0, :129].numpy(), label=name)
ax[0].axhline(0, color="k", lw=0.5)
ax[0].set(xlabel=r"frequency $\omega_2$ ($\omega_1=0$)", ylabel=r"$\hat k(0,\omega_2)$",
          title="kernel spectrum")
ax[0].legend(fontsize=7)
psd_trace = circular_std_energies(kernels["ours: 7x7, sigma=1"])
ax[1].plot(paper_trace - paper_trace[0], "o-", label="paper kernel (not PSD)")
ax[1].plot(psd_trace - psd_trace[0], "s-", label="PSD kernel")
ax[1].set(xlabel="iteration", ylabel="energy − initial energy",
          title=r"STD energy, $\lambda=1,\ \varepsilon=0.1$")
ax[1].legend(fontsize=7)
fig.tight_layout()
pb.widgets.show(fig, glue="ch3_fig_kernel")

# %% [markdown]
# ```{glue:figure} ch3_fig_kernel
# :name: fig-ch3-kernel
# :alt: Spectra of three 7x7 kernels and the STD energy trace on a striped input
#
# Left: the Fourier transform of three 7×7 kernels along one frequency axis; the paper's
# (σ = 5) dips below zero. Right: the STD energy on the striped input of the text (periodic
# grid, λ = 1, ε = 0.1) rises with the paper's kernel and falls with a PSD one.
# ```
#
# The paper's kernel has spectrum minimum {glue:text}`ch3_paper_kernel_min:.3f`
# ({numref}`fig-ch3-kernel`); on the striped example its energy rises by
# {glue:text}`ch3_paper_energy_rise:.2f` over six steps. On natural
# inputs (random logits, images) we never saw the energy rise with either kernel (the unit tests try
# hundreds of random cases): the failure needs the high frequencies where $\hat k<0$ to dominate.
# Still, a theorem whose premise fails is no guarantee, and a PSD kernel costs nothing.
#
# ## 6. The STD iteration and its energy descent
#
# Algorithm 1 in five lines, asserted equal to the package, on the paper's toy problem (Sec. 4.1): a
# noisy two-class image $v$ with unary scores $o_i=-\frac12(v-\mu_i)^2$, $\mu=(0,1)$
# ({numref}`fig-ch3-toy`).

# %%
toy = make_shape_scenes(1, 64, "star", noise=0.6, distractors=3, notches=1, seed=3)
v = toy["image"]
o_toy = torch.cat([-0.5 * (v - 0.0) ** 2, -0.5 * (v - 1.0) ** 2], 1)  # [STD, Sec. 4.1]


def std_inline(o, lam, eps, k, T):
    C, r = o.shape[1], k.shape[-1] // 2
    u = torch.softmax(o / eps, 1)  # u^0 = S(o/eps), the lam = 0 solution
    for _ in range(T):
        k_c = k[None, None].expand(C, 1, *k.shape)  # the kernel, once per class
        p = lam * F.conv2d(1 - 2 * u, k_c, padding=r, groups=C)
        u = torch.softmax((o - p) / eps, 1)
    return u


u_inline = std_inline(o_toy, LAM, EPSILON, KERNEL, ITERATIONS)
u_pkg, energies = S.soft_threshold_dynamics(o_toy, iterations=ITERATIONS, lam=LAM,
                                            epsilon=EPSILON, kernel=KERNEL,
                                            return_energies=True)
torch.testing.assert_close(u_inline, u_pkg)


def std_u(logits, iterations=ITERATIONS, **prior):
    """From here on: the package's STD, with λ, ε and kernel of the parameters cell."""
    return S.soft_threshold_dynamics(logits, iterations=iterations, lam=LAM,
                                     epsilon=EPSILON, kernel=KERNEL, **prior)


if S.is_psd(KERNEL):  # Theorem 3.1 needs a PSD kernel (the paper's σ = 5 is not, §5)
    slack = 1e-5 * energies[:-1].abs()  # float32 rounding
    assert bool((energies[1:] <= energies[:-1] + slack).all()), "energy went up"
print("inline Algorithm 1 == pb.std.soft_threshold_dynamics; energy:",
      np.round(energies[:, 0].numpy(), 1))

# %% tags=["hide-input"]
fig, ax = plt.subplots(1, 5, figsize=(pb.viz.PAGE_WIDTH, 1.75),
                       gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.4]})
ax[0].imshow(v[0, 0], cmap="gray")
ax[0].set_title("noisy image v", fontsize=8)
ax[1].imshow(o_toy.argmax(1)[0], cmap="gray")
ax[1].set_title("softmax / argmax", fontsize=8)
for a, T in zip(ax[2:4], (1, ITERATIONS)):
    a.imshow(std_u(o_toy, T)[0, 1], cmap="gray", vmin=0, vmax=1)
    a.set_title(f"STD, T={T}: $u_1$", fontsize=8)
for a in ax[:4]:
    a.axis("off")
ax[4].plot(energies[:, 0].numpy(), "o-", ms=3)
ax[4].set_xlabel("iteration t", fontsize=8)
ax[4].set_title("energy", fontsize=8)
ax[4].tick_params(labelsize=7)
fig.tight_layout()
pb.widgets.show(fig, glue="ch3_fig_toy")

# %% [markdown]
# ```{glue:figure} ch3_fig_toy
# :name: fig-ch3-toy
# :alt: A noisy star, its argmax segmentation, STD after 1 and 10 iterations, and the energy
#
# The paper's toy problem: a noisy star with distractors and a notch, the pixel-wise argmax
# of the unary scores, the foreground probability $u_1$ after one and after $T$ STD
# iterations, and the energy $\mathcal F+\mathcal R$ at each iteration (PSD kernel: it falls).
# ```

# %% [markdown]
# ## 7. The MBO limit (ε → 0)
#
# As $\varepsilon\to0$ the softmax becomes the argmax. With $o=0$ and two classes, $u_1^{t+1}=1$ iff
# $p_1<p_2$ iff $k*u_1^t>\frac12\,k*1$: "diffuse with the kernel, threshold at one half" — the
# Merriman–Bence–Osher scheme {cite}`merriman1992mbo` for motion by mean curvature (and, with
# $o\ne0$, the iterative convolution-thresholding method the paper cites as [62]). STD is MBO with a
# softmax in place of the threshold. Motion by curvature rounds corners and shrinks a disk of radius
# $r$ at $\dot r=-1/r$, i.e. its area at rate $2\pi$ per unit time; one MBO step with a Gaussian of
# variance $\sigma^2$ is a time step $t=\sigma^2/2$ (the heat-kernel time of the erratum above), so the
# area should drop by about $\pi\sigma^2$ per step. We use a wide PSD kernel ($\sigma=4$): with a narrow
# one the boundary moves less than a pixel per step and stays pinned to the grid.

# %% tags=["nbval-check-output"]
n_mbo, sigma_mbo = 72, 4.0
k_mbo = S.gaussian_kernel(25, sigma_mbo, psd=True)
yy, xx = torch.meshgrid(torch.arange(n_mbo), torch.arange(n_mbo), indexing="ij")
shapes = {"disk": (((yy - 35.5) ** 2 + (xx - 35.5) ** 2) <= 20**2).float(),
          "square": (((yy - 35.5).abs() <= 20) & ((xx - 35.5).abs() <= 20)).float()}
ones_blur = F.conv2d(torch.ones(1, 1, n_mbo, n_mbo), k_mbo[None, None], padding=12)
mbo_frames, areas = {}, {}
for name, shape in shapes.items():
    u = torch.stack([1 - shape, shape])[None]
    frames, area = [shape], [float(shape.sum())]
    for step in range(15):
        blurred = F.conv2d(u[:, 1:], k_mbo[None, None], padding=12)
        mbo = (blurred > 0.5 * ones_blur).float()[0, 0]  # classical MBO step
        clear = (blurred - 0.5 * ones_blur).abs()[0, 0] > 1e-5
        u = S.soft_threshold_dynamics(torch.zeros_like(u), iterations=1, lam=1.0,
                                      epsilon=1e-4, kernel=k_mbo, init=u)
        # the soft step is the MBO step, away from exact ties
        assert float((u[0, 1] - mbo).abs()[clear].max()) < 1e-4
        frames.append(u[0, 1])
        area.append(float(u[0, 1].sum()))
    mbo_frames[name], areas[name] = frames, np.array(area)
rate = -np.diff(areas["disk"]).mean()
assert abs(rate / (math.pi * sigma_mbo**2) - 1) < 0.15
glue("ch3_mbo_rate", float(rate), display=False)
glue("ch3_mbo_rate_theory", float(math.pi * sigma_mbo**2), display=False)
print(f"disk area lost per step: {rate:.1f} px (curvature flow with t = sigma^2/2: "
      f"pi sigma^2 = {math.pi * sigma_mbo**2:.1f})")

# %% tags=["hide-input"]
fig, ax = plt.subplots(2, 4, figsize=(pb.viz.PAGE_WIDTH, 3.4))
for r, name in enumerate(("square", "disk")):
    for c, step in enumerate((0, 5, 10, 15)):
        ax[r, c].imshow(mbo_frames[name][step], cmap="gray", vmin=0, vmax=1)
        ax[r, c].set_title(f"{name}, step {step}", fontsize=8)
        ax[r, c].axis("off")
fig.tight_layout()
pb.widgets.show(fig, glue="ch3_fig_mbo")

# %% [markdown]
# ```{glue:figure} ch3_fig_mbo
# :name: fig-ch3-mbo
# :alt: A square and a disk after 0, 5, 10 and 15 steps of STD at epsilon close to zero
#
# STD with ε = 10⁻⁴ and $o=0$ is the MBO scheme: a square and a disk after 0, 5, 10 and 15
# steps (PSD Gaussian kernel, σ = 4). The square's corners round off; the disk shrinks.
# ```
#
# The disk loses {glue:text}`ch3_mbo_rate:.1f` px per step against the predicted
# {glue:text}`ch3_mbo_rate_theory:.1f`, and the square's corners round off first
# ({numref}`fig-ch3-mbo`).
#
# ## 8. Unrolling: STD as a differentiable layer
#
# A fixed number $T$ of iterations is a composition of convolutions and softmaxes, so autograd
# differentiates it; the paper unrolls $T=10$ (STD, VP-STD) or $T=50$ (SS-STD) and replaces the last
# softmax of DeepLabV3+ with it [STD, Sec. 3.6]. Two properties matter for training: with $\lambda=0$ the
# layer *is* the softmax, and the gradient of one output pixel reaches the logits of its
# neighbourhood (the prior acts in the backward pass too, unlike CRF post-processing). For the loss we
# use the log of the last iterate, computed stably as `log_softmax` of the last scores
# (`output="log_probs"`), never `log(u)`.

# %% tags=["nbval-check-output"]
o_small = torch.randn(1, 2, 6, 6, dtype=f64, generator=g, requires_grad=True)
layer = S.STD(iterations=4, lam=1.0, epsilon=0.5, kernel_size=5)
assert torch.autograd.gradcheck(layer, (o_small,), fast_mode=True)
no_prior = S.STD(lam=0.0, epsilon=0.5)(o_small)
assert torch.allclose(no_prior, torch.softmax(o_small / 0.5, 1), atol=1e-12)
o_wide = torch.randn(1, 2, 16, 16, dtype=f64, generator=g, requires_grad=True)
out_pixel = S.STD(iterations=2, lam=1.0, epsilon=0.5)(o_wide)[0, 1, 8, 8]
(footprint,) = torch.autograd.grad(out_pixel, o_wide)
moved = int((footprint[0].abs().sum(0) > 1e-12).sum())
print("gradcheck passed; lam = 0 equals softmax(o/eps); logits that move output pixel "
      f"(8, 8) with T=2 and a 7x7 kernel: {moved} pixels (a 13x13 square is 169)")

# %% [markdown]
# ## 9. A volume constraint is entropic optimal transport
#
# Suppose the number of pixels of each class is known, $\sum_x u_i(x)=V_i$ with $\sum_iV_i=|\Omega|$
# [STD, Sec. 3.4]. The linearised step (8) becomes
# $\min\{\langle -o+p,u\rangle+\varepsilon\langle u,\ln u\rangle:\ \sum_iu_i(x)=1,\ \sum_xu_i(x)=V_i\}$:
# an entropy-regularised transport plan between pixels (mass 1 each) and classes (mass $V_i$) with
# cost $p-o$ {cite}`cuturi2013sinkhorn`. With multipliers $q_i$ (per class) and $\hat q(x)$ (per
# pixel), stationarity gives $u_i=\exp((o_i-p_i+q_i+\hat q)/\varepsilon-1)$; the pixel constraint fixes
# $\hat q$ and leaves a softmax, $u=\mathcal S((o-p+q)/\varepsilon)$, and the class constraint becomes the
# concave dual
#
# $$\max_q\ \langle q,V\rangle-\varepsilon\sum_x\ln\sum_i e^{(o_i(x)-p_i(x)+q_i)/\varepsilon} .$$
#
# Its coordinate ascent in $q_i$ is the log-domain Sinkhorn step [STD, Eq. 10]:
# $q_i\leftarrow q_i+\varepsilon\big(\ln V_i-\ln\sum_x\mathcal S_i((o-p+q)/\varepsilon)\big)$, which we compute
# from `log_softmax` and `logsumexp` (nothing is exponentiated outside them, so small $\varepsilon$ cannot
# overflow). The paper runs $t_2=1$ such step per outer iteration, warm-started.
#
# ```{warning}
# **Erratum (Eq. 9, Prop. 3).** The paper's dual carries an extra $-|\Omega|\varepsilon$. Substituting
# the stationary $u$ back (App. C), the $-1$ in the exponent cancels against the $+\varepsilon$ from
# differentiating $\varepsilon u\ln u$, and no constant remains; $-|\Omega|\varepsilon$ belongs to the
# entropy $\varepsilon\langle u,\ln u-1\rangle$. The optimiser is the same either way. The check below
# solves a small problem to convergence and compares primal and dual values.
# ```

# %% tags=["nbval-check-output"]
o_ot = torch.randn(1, 3, 6, 5, dtype=f64, generator=g)
V_ot = torch.tensor([[12.0, 10.0, 8.0]], dtype=f64)
eps_ot = 0.7
u_ot = S.soft_threshold_dynamics(o_ot, iterations=1, lam=0.0, epsilon=eps_ot,
                                 volumes=V_ot, sinkhorn_iterations=3000)
primal = float(S.std_energy(u_ot, o_ot, lam=0.0, epsilon=eps_ot))
# the dual variable q, recovered from u up to a constant
q_ot = (eps_ot * u_ot.log() - o_ot).mean((2, 3), keepdim=True)
lse = eps_ot * torch.logsumexp((o_ot + q_ot) / eps_ot, 1).sum()
dual = float((q_ot[0, :, 0, 0] * V_ot[0]).sum() - lse)
paper_dual = dual - 30 * eps_ot
assert abs(primal - dual) < 1e-8 and abs(primal - paper_dual) > 20
assert torch.allclose(u_ot.sum((2, 3)), V_ot, rtol=1e-10)
print(f"primal {primal:.6f}   dual {dual:.6f}   "
      f"paper's dual (with -|Omega| eps) {paper_dual:.6f}")

# %% [markdown]
# **Remark 2 in numbers: an exact soft volume is not an exact hard volume.** The constraint is on
# $\sum_xu_i$, not on the argmax mask. At large $\varepsilon$ the layer can meet the volume with
# lukewarm probabilities everywhere; only as $\varepsilon\to0$ do the two coincide. Oracle volumes, a
# noisy star, $t_2=50$ so that the soft constraint is met:

# %%
V_toy = S.volumes_from_labels(toy["labels"], 2)
remark2 = []
for eps in (0.1, 0.5, 1.0, 2.0):
    u = S.soft_threshold_dynamics(o_toy, iterations=ITERATIONS, lam=LAM, epsilon=eps,
                                  kernel=KERNEL, volumes=V_toy, sinkhorn_iterations=50)
    soft_err = float(((u.sum((2, 3)) - V_toy).abs() / V_toy).max())
    hard_err = float(((u.argmax(1) == 1).sum() - V_toy[0, 1]).abs() / V_toy[0, 1])
    remark2.append((eps, soft_err, hard_err))
    print(f"eps={eps:<4} soft volume error {soft_err:8.1e}   "
          f"argmax volume error {100 * hard_err:5.1f} %")
assert remark2[-1][2] > 10 * remark2[0][2] and max(r[1] for r in remark2) < 1e-2
glue("ch3_remark2_hard_err_large_eps", float(100 * remark2[-1][2]), display=False)
glue("ch3_remark2_hard_err_small_eps", float(100 * remark2[0][2]), display=False)

# %% [markdown]
# At $\varepsilon=2$ the soft volume is exact while the thresholded mask is off by
# {glue:text}`ch3_remark2_hard_err_large_eps:.0f` % ({glue:text}`ch3_remark2_hard_err_small_eps:.1f` % at
# $\varepsilon=0.1$). The prior is on the soft map; keep $\varepsilon$ small when you mean hard volumes.
#
# ## 10. A star-shape constraint: monotone along rays
#
# A region is star-shaped about $c$ if the segment from any of its points to $c$ stays inside it
# (convex sets are star-shaped about any interior point). Veksler's graph-cut energy {cite}`veksler2008star` forbids label
# patterns 1-0-1 along rays towards $c$; with $s(x)=(c-x)/|c-x|$ the continuous version asks $u_i$ to be
# **non-decreasing towards the centre**, $s\cdot\nabla u_i\ge0$ [STD, Eq. 11], a convex set. Add it with a
# non-negative multiplier field $\eta(x)$ and linearise $\mathcal R$ as before:
#
# $$\min_{u\in\mathbb U}\max_{\eta\ge0}\ \mathcal F(u;o)+\langle p,u\rangle-\langle\eta,s\cdot\nabla u_{i^*}\rangle .$$
#
# With a discrete divergence that is exactly minus the adjoint of the discrete gradient,
# $-\langle\eta,s\cdot\nabla u\rangle=\langle\operatorname{div}(\eta s),u\rangle$, the $u$-step is again a softmax,
# and the $\eta$-step is projected gradient ascent [STD, Alg. 3]:
#
# $$\eta\leftarrow\max\{\eta-\tau\,s\cdot\nabla u_{i^*},\,0\},\qquad
# u=\mathcal S\big((o-p-\delta_{i,i^*}\operatorname{div}(\eta s))/\varepsilon\big),\qquad\tau=\varepsilon .$$
#
# Stability by construction: $\eta$ stays $\ge0$; $|s\cdot\nabla u|\le\sqrt2$ for $u\in[0,1]$, so one step
# moves $\operatorname{div}(\eta s)/\varepsilon$ by at most $4\sqrt2\,\tau/\varepsilon$, which $\tau=\varepsilon$ makes
# independent of $\varepsilon$. We use forward differences (zero flux at the last row and column) for
# $\nabla$ and backward differences for div; first the adjoint identity, then a toy with a distractor
# and a dark notch.

# %% tags=["nbval-check-output"]
a_field = torch.randn(2, 1, 7, 9, dtype=f64, generator=g)
b_field = torch.randn(2, 2, 7, 9, dtype=f64, generator=g)
adj_gap = float((S.grad2d(a_field) * b_field).sum()
                + (a_field * S.div2d(b_field)).sum())
assert abs(adj_gap) < 1e-12
print(f"<grad a, b> + <a, div b> = {adj_gap:.1e}")

centre_toy = S.centroid(toy["labels"].float())
viol_T = {}
for T in (0, 10, 50, 100):
    u = std_u(o_toy, T, center=centre_toy)
    viol_T[T] = int(S.star_violations(u.argmax(1) == 1, centre_toy)[0])
plain_50 = std_u(o_toy, 50).argmax(1)
print("hard star violations of SS-STD by T:", viol_T, "| STD alone, T=50:",
      int(S.star_violations(plain_50 == 1, centre_toy)[0]), "| ground truth:",
      int(S.star_violations(toy["labels"] == 1, centre_toy)[0]))

# %% [markdown]
# ## 11. Training a network with a softmax head and with an STD head
#
# Two synthetic tasks (`pixelbook.data.shapes`): **binary shapes**, one star, ellipse or holed
# ellipse per image, two distractor disks with the object's intensity but the background's
# label, one dark notch inside the object, Gaussian noise of standard deviation
# {glue:text}`ch3_noise:.1f`; and **4-class Voronoi mosaics** (intensities
# $0,\frac13,\frac23,1$, noise {glue:text}`ch3_voronoi_noise:.1f`). The network is a small FCN
# (three 3×3 conv-BN-ReLU layers, one dilated; receptive field 9 px; about 5 k parameters)
# that ends either in a softmax or in an STD layer with $T=10$, $\lambda=1$, the PSD 7×7
# kernel and $\varepsilon=0.5$; same data, epochs, optimiser and seed. Why not the paper's
# $\varepsilon=0.1$: in front of a network only $\lambda/\varepsilon$ matters up to the scale of
# the logits (scaling $o$, $\lambda$ and $\varepsilon$ together leaves the layer unchanged), and
# a network that starts with logits of order one needs more steps than our budget to grow them
# until $\lambda/\varepsilon=10$ stops dominating; we take the milder $\lambda/\varepsilon=2$
# (Exercise 6 asks what $\varepsilon=0.1$ does).
#
# The experiment is defined once, in `pixelbook.experiments.std`: its arms, its seeds and its
# claims, written before it ran. This section trains its `softmax` and `std` arms at the
# notebook's scale (`small`: one seed, a live demonstration); §14 shows the `medium` run (five
# seeds, more data and steps) and checks the claims. Two more read-outs need no training of
# their own: the softmax network with the **same STD layer applied only at test time** (a
# post-processing, the alternative the paper argues against: it "could not back propagate the
# regularization prior", Sec. 1), and the STD network with its layer removed.

# %%
glue("ch3_noise", float(NOISE), display=False)
glue("ch3_voronoi_noise", float(VORONOI_NOISE), display=False)
EXP = pb.experiments.get("03_soft_threshold_dynamics")
STD_CFG = {"iterations": ITERATIONS, "lam": LAM, "epsilon": EPSILON,
           "kernel_size": KERNEL_SIZE, "sigma": SIGMA}
TASK_DATA = {"shapes": {"noise": NOISE},
             "voronoi": {"kind": "voronoi", "num_classes": 4, "noise": VORONOI_NOISE}}


def run_arm(arm: str, task: str = "shapes"):
    """Train (or load) one arm of the chapter's experiment at this notebook's scale."""
    model = {"std": STD_CFG} if EXP.arm(arm).params["head"] == "std" else {}
    return EXP.run(arm, SEED, SCALE, DEVICE, data=TASK_DATA[task], model=model,
                   eval={"std": STD_CFG, "star_iterations": STAR_ITERATIONS})


runs = {(task, head): run_arm(head, task)
        for task in TASK_DATA for head in ("softmax", "std")}
models = {key: run.model for key, run in runs.items()}
tasks = {task: runs[task, "softmax"].data for task in TASK_DATA}
print(EXP)

# %% [markdown]
# On held-out scenes we measure mIoU, the boundary length ratio (4-neighbour label changes,
# prediction over ground truth; 1 is the truth's length) and the number of connected
# components per image (all classes). The last two are descriptive: a smoothing layer makes
# fewer, shorter boundaries by construction, so "fewer components" would be no test of it.

# %%
def seg_stats(pred, labels, num_classes):
    """mIoU, boundary length (prediction / truth) and connected components per image."""
    length = S.boundary_length(pred).sum() / S.boundary_length(labels).sum()
    return {"mIoU": pb.metrics.mean_iou(pred, labels, num_classes),
            "length ratio": float(length),
            "components": float(S.count_components(pred).float().mean())}


def readouts(task, images):
    """The four read-outs of §11 on `images`: {name: (N, H, W) prediction}."""
    o_sm = raw_logits(models[task, "softmax"], images)
    o_st = raw_logits(models[task, "std"], images)
    return {"softmax": o_sm.argmax(1), "STD at test time only": std_u(o_sm).argmax(1),
            "STD trained": std_u(o_st).argmax(1),
            "STD net, layer removed": o_st.argmax(1)}


rows = ["| task | read-out | mIoU | length ratio | components |",
        "|---|---|---|---|---|"]
for task, data in tasks.items():
    test = data["test"]
    for name, pred in readouts(task, test["image"]).items():
        st = seg_stats(pred, test["labels"], int(test["labels"].max()) + 1)
        rows.append(f"| {task} | {name} | {st['mIoU']:.3f} | {st['length ratio']:.2f} "
                    f"| {st['components']:.2f} |")
    gt_cc = float(S.count_components(test["labels"]).float().mean())
    rows.append(f"| {task} | ground truth | 1 | 1 | {gt_cc:.2f} |")
display(Markdown("\n".join(rows)))

# %% tags=["hide-input"]
fig, ax = plt.subplots(2, 5, figsize=(pb.viz.PAGE_WIDTH, 2.9))
for r, task in enumerate(tasks):
    test, i = tasks[task]["test"], 3
    preds = readouts(task, test["image"][i:i + 1])
    panels = [(test["image"][i, 0], "image", "gray"),
              (test["labels"][i], "truth", "viridis")]
    panels += [(p[0], name, "viridis") for name, p in preds.items()
               if "test" not in name]
    panels[-1] = (panels[-1][0], "STD net,\nlayer removed", "viridis")
    for c, (img, title, cmap) in enumerate(panels):
        ax[r, c].imshow(img, cmap=cmap, interpolation="nearest")
        ax[r, c].set_title(title, fontsize=8)
        ax[r, c].axis("off")
fig.tight_layout()
pb.widgets.show(fig, glue="ch3_fig_heads")

# %% [markdown]
# ```{glue:figure} ch3_fig_heads
# :name: fig-ch3-heads
# :alt: A noisy binary scene and a Voronoi mosaic with the predictions of each head
#
# One held-out scene per task (`small` run): the image, its ground truth, the softmax
# network's prediction, the STD network's, and the STD network's raw scores with the layer
# removed.
# ```
#
# {numref}`fig-ch3-heads` shows the STD head's outputs free of the speckle the softmax head
# leaves. The last column removes the STD layer from the STD-trained network and takes the
# argmax of its raw scores: they are noisier than the softmax network's, because training
# relied on the layer to clean up. The prior lives in the forward pass, so it must stay at test
# time.
#
# **Cost.** Forward plus backward time of the whole small model, relative to the softmax head,
# for $T\in\{1,5,10,50\}$ (batch 16, median of repeats). The paper reports STD-DeepLabV3+ at
# 1.21 against 1.43 iterations/s (×1.18) [STD, Table 5]; our network is tiny, so the head's
# share is larger. (Measured on a shared machine: treat the numbers as rough.)

# %%
def fwd_bwd_seconds(heads: dict, reps: int) -> dict:
    """Median time of one forward+backward pass per head (round robin)."""
    train = tasks["shapes"]["train"]
    x, y = train["image"][:16].to(DEVICE), train["labels"][:16].to(DEVICE)
    nets = {name: WithHead(small_fcn(2), head).to(DEVICE)
            for name, head in heads.items()}
    times = {name: [] for name in heads}
    for rep in range(reps + 1):
        for name, net in nets.items():
            t = time.perf_counter()
            F.nll_loss(net(x), y).backward()
            if DEVICE.type == "cuda":
                torch.cuda.synchronize()
            if rep:  # the first round warms up
                times[name].append(time.perf_counter() - t)
    return {name: float(np.median(v)) for name, v in times.items()}


reps = pb.runtime.scaled(SCALE, smoke=1, small=10, full=20)
heads = {0: None, **{T: S.STD(T, LAM, EPSILON, output="log_probs")
                     for T in (1, 5, 10, 50)}}
seconds = fwd_bwd_seconds(heads, reps)
cost = {T: seconds[T] / seconds[0] for T in (1, 5, 10, 50)}
print(f"softmax head: {1000 * seconds[0]:.1f} ms per batch of 16; relative time with "
      "an STD head:", ", ".join(f"T={T}: {r:.2f}x" for T, r in cost.items()))
glue("ch3_cost_T10", float(cost[10]), display=False)

# %% [markdown]
# With $T=10$ the STD head costs {glue:text}`ch3_cost_T10:.1f`× the softmax head's time here;
# the cost grows linearly in $T$ (one convolution and one softmax per iteration), which is why
# SS-STD's $T=50$ is expensive.
#
# ## 12. The volume prior, with oracle and estimated volumes
#
# **The paper takes the volumes from the ground truth, also at test time** ("we use the exact
# volume constraints in the prediction ... may be not applicable in real applications",
# Sec. 4.2), and likewise the star centres. We plug a `VolumeSTD` step ($T=10$, $t_2=1$
# Sinkhorn step per iteration as in the paper, same $\lambda,\varepsilon$) onto the scores of
# the STD-trained binary network and feed it the ground-truth volumes, the same with a relative
# error of ±5 % and ±20 % on the foreground, and volumes *estimated* without the ground truth:
# the soft foreground area predicted by the softmax network (a second, plain model). The paper
# also trains with the volume layer; we only plug it in at test time. This section runs on the
# `small` models (one seed): it describes, it does not decide.

# %%
test = tasks["shapes"]["test"]
P = test["labels"][0].numel()  # pixels per image
V_true = S.volumes_from_labels(test["labels"], 2)
o_test = raw_logits(models["shapes", "std"], test["image"])
o_plain = raw_logits(models["shapes", "softmax"], test["image"])
fg_est = torch.softmax(o_plain, 1)[:, 1].sum((1, 2)).clamp(1, P - 1)
volume_settings = {"STD (no volume)": None,
                   "estimated": torch.stack([P - fg_est, fg_est], 1)}
for rel in (-0.2, -0.05, 0.0, 0.05, 0.2):
    fg = V_true[:, 1] * (1 + rel)
    volume_settings[f"oracle {100 * rel:+.0f} %" if rel else "oracle"] = torch.stack(
        [P - fg, fg], 1)
vp_rows, soft_volumes = {}, {}
rows = ["| volumes | mIoU | length ratio | components |", "|---|---|---|---|"]
for name, V in volume_settings.items():
    u = std_u(o_test, **({} if V is None else {"volumes": V}))
    vp_rows[name] = seg_stats(u.argmax(1), test["labels"], 2)
    soft_volumes[name] = u.sum((2, 3))
    cells = " | ".join(f"{v:.3f}" for v in vp_rows[name].values())
    rows.append(f"| {name} | {cells} |")
display(Markdown("\n".join(rows)))
names = {"oracle": "oracle", "none": "STD (no volume)", "est": "estimated",
         "m20": "oracle -20 %", "p20": "oracle +20 %"}
for key, name in names.items():
    glue(f"ch3_vp_{key}_miou", float(vp_rows[name]["mIoU"]), display=False)

# %% [markdown]
# In this one-seed `small` run, oracle volumes give mIoU {glue:text}`ch3_vp_oracle_miou:.3f`
# against {glue:text}`ch3_vp_none_miou:.3f` without them, and volumes estimated by the softmax
# network {glue:text}`ch3_vp_est_miou:.3f`; wrong volumes cost at once: a 20 %
# underestimate gives {glue:text}`ch3_vp_m20_miou:.3f`, a 20 % overestimate
# {glue:text}`ch3_vp_p20_miou:.3f`. A volume prior is only as good as the volume, and the
# paper's gains (Tables 3, 6, 7) are measured with exact ones.
#
# **Is the constraint met?** Section 9 showed that the volume step is coordinate ascent on a
# concave dual: the soft volumes $\sum_x u_i(x)$ equal $V_i$ *at the dual optimum*, and a few
# steps only approach it. A volume is a pixel count, so "met" can be given a tolerance from the
# method rather than from a measurement: within **half a pixel**, the resolution of a count
# (a soft area within ½ px of $V_i$ rounds to $V_i$). With the paper's single Sinkhorn step per
# outer iteration ($t_2=1$, $T=10$: ten dual steps in all) that is not what the method
# promises, and the worst image misses by {glue:text}`ch3_vp_t1_err:.1f` px; run to the dual
# optimum ($t_2=$ {glue:text}`ch3_vp_t2`, warm-started, per outer iteration) every image of
# every volume setting meets it. The package's `VolumeSTD` layer runs the volume step to this
# tolerance by default (`sinkhorn_iterations=None`, `volume_tol=0.5`); the functional keeps the
# paper's $t_2=1$.

# %%
T2 = 100  # Sinkhorn steps per outer iteration, enough to reach the dual optimum (§9)
worst = {}
for t2 in (1, T2):
    errs = []
    for name, V in volume_settings.items():
        if V is not None:
            u = std_u(o_test, volumes=V, sinkhorn_iterations=t2)
            errs.append(float((u.sum((2, 3)) - V).abs().max()))
    worst[t2] = max(errs)
    print(f"t2 = {t2:>3}: worst |sum_x u_i - V_i| over images, classes, settings: "
          f"{worst[t2]:.3g} px")
glue("ch3_vp_t1_err", worst[1], display=False)
glue("ch3_vp_t2", T2, display=False)
assert worst[T2] < 0.5, "the volume step did not meet the volumes to half a pixel"

# %% [markdown]
# ## 13. The star prior: a positive and a negative control
#
# A `StarSTD` step ($T=50$, $\tau=\varepsilon$) on the STD network's scores, with the centre
# the ground-truth centroid (the paper's oracle) or the centroid of the network's own soft
# foreground (estimated). Positive control: stars with three distractor disks and two dark
# notches. Negative controls: annuli and C-shapes, which are not star-shaped about their
# centroid, so there the prior must hurt. Here on the `small` model (one seed); §14 decides.

# %%
shapes_data = runs["shapes", "std"].data
n_test, size = shapes_data["test"]["labels"].shape[:2]
controls = {"stars": shapes_data["stars"], "annuli": shapes_data["annuli"],
            "C-shapes": make_shape_scenes(n_test, size, "c_shape", NOISE, distractors=2,
                                          seed=7)}
net = models["shapes", "std"]
star_rows, viol_by_T = {}, {}
for cname, data in controls.items():
    o_c, lab = raw_logits(net, data["image"]), data["labels"]
    c_true = S.centroid(lab.float())
    o_sm = raw_logits(models["shapes", "softmax"], data["image"])
    c_est = S.centroid(torch.softmax(o_c, 1)[:, 1])  # of the network's soft foreground
    outs = {"softmax head": o_sm, "STD": std_u(o_c),
            "STD, T = 50 (no star prior)": std_u(o_c, STAR_ITERATIONS),
            "SS-STD, oracle centre": std_u(o_c, STAR_ITERATIONS, center=c_true),
            "SS-STD, estimated centre": std_u(o_c, STAR_ITERATIONS, center=c_est)}
    for method, u in outs.items():
        pred = u.argmax(1)
        viol = float(S.star_violations(pred == 1, c_true).float().mean())
        star_rows[cname, method] = {**seg_stats(pred, lab, 2), "violations": viol}
    if cname == "stars":
        for T in (0, 10, 25, 50, 100):
            pred = std_u(o_c, T, center=c_true).argmax(1)
            viol_by_T[T] = float(S.star_violations(pred == 1, c_true).float().mean())
rows = ["| scenes | read-out | mIoU | components | star violations / image |",
        "|---|---|---|---|---|"]
rows += [f"| {c} | {m} | {r['mIoU']:.3f} | {r['components']:.2f} "
         f"| {r['violations']:.1f} |" for (c, m), r in star_rows.items()]
display(Markdown("\n".join(rows)))
star_labels = controls["stars"]["labels"]
gt_viol = float(S.star_violations(star_labels == 1, S.centroid(star_labels.float()))
                .float().mean())
print(f"ground-truth stars: {gt_viol:.2f} violations per image (rasterisation)")
print("SS-STD violations per image by T (oracle centre):",
      {T: round(v, 1) for T, v in viol_by_T.items()})

# %% tags=["remove-cell"]
for key, cname in (("pos", "stars"), ("ann", "annuli"), ("c", "C-shapes")):
    for mkey, method in (("std", "STD"), ("ss", "SS-STD, oracle centre"),
                         ("ssest", "SS-STD, estimated centre"),
                         ("std50", "STD, T = 50 (no star prior)")):
        value = star_rows[cname, method]["mIoU"]
        glue(f"ch3_star_{key}_{mkey}_miou", value, display=False)
glue("ch3_star_viol_T0", viol_by_T[0], display=False)
glue("ch3_star_viol_T50", viol_by_T[50], display=False)
glue("ch3_star_viol_gt", gt_viol, display=False)

# %% [markdown]
# Hard violations fall from {glue:text}`ch3_star_viol_T0:.1f` per image at $T=0$ to
# {glue:text}`ch3_star_viol_T50:.1f` at $T=50$, towards the rasterisation floor (the
# ground-truth stars themselves have {glue:text}`ch3_star_viol_gt:.2f`): approximately, not
# exactly, star-shaped, as the paper says of $T=50$. The dual ascent enforces the constraint
# step by step, so the violations must fall with $T$; the check below asserts it. In this
# one-seed run, mIoU on stars goes from {glue:text}`ch3_star_pos_std_miou:.3f` (STD) to
# {glue:text}`ch3_star_pos_ss_miou:.3f` (SS-STD, oracle centre) and
# {glue:text}`ch3_star_pos_ssest_miou:.3f` (estimated centre); SS-STD runs $T=50$ iterations
# against STD's 10, and STD alone with $T=50$ gives {glue:text}`ch3_star_pos_std50_miou:.3f`,
# which separates the star term from the extra iterations (the paper compares the two
# configurations as we do in §14, T = 50 against T = 10). On annuli and C-shapes the
# centroid lies in the hole. Monotonicity towards a centre that the data call background
# leaves two ways out, fill the hole or erase the object ({numref}`fig-ch3-star-controls`):
# mIoU {glue:text}`ch3_star_ann_std_miou:.3f` → {glue:text}`ch3_star_ann_ss_miou:.3f` on
# annuli and {glue:text}`ch3_star_c_std_miou:.3f` → {glue:text}`ch3_star_c_ss_miou:.3f` on
# C-shapes. Whether these one-seed differences on stars and annuli hold up is for §14.

# %%
if SCALE != "smoke":
    assert viol_by_T[50] < viol_by_T[10] < viol_by_T[0], f"did not fall: {viol_by_T}"
    print("star violations fall with T:", [viol_by_T[T] for T in (0, 10, 50)])

# %% tags=["hide-input"]
fig, ax = plt.subplots(3, 4, figsize=(pb.viz.PAGE_WIDTH, 4.9))
for r, (cname, data) in enumerate(controls.items()):
    o_c = raw_logits(net, data["image"][:1])
    c_true = S.centroid(data["labels"][:1].float())
    ss = std_u(o_c, STAR_ITERATIONS, center=c_true)
    panels = [(data["image"][0, 0], f"{cname}: image", "gray"),
              (data["labels"][0], "truth", "viridis"),
              (std_u(o_c).argmax(1)[0], "STD", "viridis"),
              (ss.argmax(1)[0], "SS-STD", "viridis")]
    for c, (img, title, cmap) in enumerate(panels):
        ax[r, c].imshow(img, cmap=cmap, interpolation="nearest")
        ax[r, c].plot(c_true[0, 1], c_true[0, 0], "r+", ms=8)
        ax[r, c].set_title(title, fontsize=8)
        ax[r, c].axis("off")
fig.tight_layout()
pb.widgets.show(fig, glue="ch3_fig_star_controls")

# %% [markdown]
# ```{glue:figure} ch3_fig_star_controls
# :name: fig-ch3-star-controls
# :alt: A star, an annulus and a C-shape with the STD and SS-STD predictions
#
# The star prior on a positive control (a star, top) and two negative ones (an annulus and a
# C-shape): image, ground truth, STD, and SS-STD with the oracle centre (red cross, the
# ground-truth centroid). `small` run, first held-out scene of each set.
# ```
#
# ## 14. The evidence: `medium` scale, five seeds
#
# The `small` runs above are a demonstration. The `medium` run of the same experiment
# (`python -m pixelbook.run 03_soft_threshold_dynamics`, results committed under
# `results/03_soft_threshold_dynamics/`) trains every arm on each of five seeds, each seed
# with its own scenes: {glue:text}`ch3_med_ntrain` training scenes of
# {glue:text}`ch3_med_size`² pixels, {glue:text}`ch3_med_epochs` epochs
# ({glue:text}`ch3_med_steps` Adam steps), {glue:text}`ch3_med_ntest` held-out scenes per
# set (mixed shapes, stars, annuli). Its arms, all the same network with the same budget:
#
# - `softmax`: trained and read out with a softmax;
# - `std_post`: the softmax network with the same STD layer applied only at test time;
# - `std`: trained and read out with the STD layer;
# - `ss_std`: the STD network read out with SS-STD (oracle centre, $T=50$).
#
# The claims were committed before the run, with their margins: half the paper's gain, in
# mIoU, where the paper gives one (STD over softmax: about one point on held-out VOC and ISIC,
# so 0.005; SS-STD over STD on ISIC's stars: 0.55 points, so 0.003), and the direction alone
# (margin 0) where it gives none, each on at least 4 of 5 seeds (5 of 5 for the annuli). With
# no effect, a difference beats a margin ≥ 0 on 4 of 5 seeds with probability at most 6/32.
# The whole table is in `pixelbook/experiments/std.py`; the results page lists every chapter's.

# %%
RES = pb.results.load_results(EXP.chapter)
med = RES.record("std", 0)["config"]
for key, value in (("ntrain", med["data"]["n_train"]), ("ntest", med["data"]["n_test"]),
                   ("size", med["data"]["size"]), ("epochs", med["train"]["epochs"])):
    glue(f"ch3_med_{key}", value, display=False)
steps = med["train"]["epochs"] * (med["data"]["n_train"] // med["train"]["batch_size"])
glue("ch3_med_steps", steps, display=False)
ARMS = {"softmax": "softmax", "std_post": "STD at test time only", "std": "STD trained",
        "ss_std": "STD trained, SS-STD read-out"}
COLUMNS = {"shapes.miou": "mIoU (shapes)", "shapes.length_ratio": "length ratio",
           "shapes.components": "components", "stars.miou": "mIoU (stars)",
           "annuli.miou": "mIoU (annuli)"}
rows = ["| arm | " + " | ".join(COLUMNS.values()) + " |",
        "|---" * (len(COLUMNS) + 1) + "|"]
for arm, label in ARMS.items():
    cells = [format(RES.summary(arm, m), ".3f" if "miou" in m else ".2f")
             for m in COLUMNS]
    rows.append(f"| {label} | " + " | ".join(cells) + " |")
    for m in ("shapes.miou", "stars.miou", "annuli.miou"):
        key = f"ch3_med_{arm}_{m.replace('.', '_')}"
        glue(key, RES.summary(arm, m).mean, display=False)
        glue(key + "_sd", RES.summary(arm, m).std, display=False)
display(Markdown("\n".join(rows) + "\n\nMean ± sample standard deviation over seeds "
                 f"{RES.seeds('std')}, `medium` scale."))

# %% [markdown]
# The check cell evaluates exactly the registered claims on these files and asserts each
# claim's recorded outcome (`Claim.expected`, the one field set after the run).

# %%
outcomes = pb.results.evaluate_claims(EXP, RES)
for outcome in outcomes:
    print(outcome, end="\n\n")
    glue(f"ch3_claim_{outcome.claim.id}_wins", outcome.wins, display=False)
for outcome in outcomes:
    outcome.check()
# the twin arms retrain the same network (deterministic on a CPU): same read-outs
twins = (("softmax", "std_post", "shapes.std.miou", "shapes.miou"),
         ("std", "ss_std", "stars.miou", "stars.std.miou"))
for twin, arm, metric, own in twins:
    assert RES.values(twin, metric) == RES.values(arm, own), (twin, arm)
print("twins agree: the std_post and ss_std arms read out the softmax and std networks")

# %% tags=["remove-cell"]
by_id = {o.claim.id: o for o in outcomes}
for cid in ("std_beats_softmax", "trained_beats_post", "star_helps_stars"):
    glue(f"ch3_claim_{cid}_dmin", min(by_id[cid].diffs), display=False)
    glue(f"ch3_claim_{cid}_dmax", max(by_id[cid].diffs), display=False)
for arm in ("std", "ss_std"):
    for m in ("stars.length_ratio", "stars.star_violations"):
        value = RES.summary(arm, m).mean
        glue(f"ch3_med_{arm}_{m.replace('.', '_')}", value, display=False)
for lam in (0.5, 2, 4):
    value = RES.summary("std_post", f"shapes.std_lam{lam:g}.miou").mean
    glue(f"ch3_med_post_lam{lam:g}".replace(".", "p"), value, display=False)
glue("ch3_med_removed", RES.summary("std", "shapes.argmax.miou").mean, display=False)
glue("ch3_med_ss_est", RES.summary("ss_std", "stars.ss_std_est.miou").mean, display=False)
seconds = sum(RES.record(a, s)["provenance"]["wall_time_s"]
              for a in RES.arms for s in RES.seeds(a))
glue("ch3_med_minutes", seconds / 60, display=False)

# %% tags=["hide-input"]
fig, ax = plt.subplots(1, 2, figsize=(pb.viz.PAGE_WIDTH, 2.7),
                       gridspec_kw={"width_ratios": [1, 1.3]})
for arm, color in (("softmax", "C0"), ("std", "C1")):
    for seed in RES.seeds(arm):
        curve = RES.history(arm, seed)["val_miou"]
        ax[0].plot(range(1, len(curve) + 1), curve, color=color, lw=0.8,
                   label=ARMS[arm] if seed == RES.seeds(arm)[0] else None)
ax[0].set(xlabel="epoch", ylabel="held-out mIoU", title="training (each seed)")
ax[0].legend(fontsize=7)
for row, outcome in enumerate(outcomes):
    ax[1].plot(outcome.diffs, [row] * len(outcome.diffs), "o", ms=4, alpha=0.7,
               color="C2" if outcome.holds else "C3")
    ax[1].plot([outcome.claim.margin] * 2, [row - 0.3, row + 0.3], "k-", lw=1.5)
ax[1].axvline(0, color="gray", lw=0.5)
ax[1].set_yticks(range(len(outcomes)), [o.claim.id for o in outcomes], fontsize=7)
ax[1].invert_yaxis()
ax[1].set(xlabel="per-seed difference in mIoU (A − B)", title="claims: seeds vs margin")
fig.tight_layout()
pb.widgets.show(fig, glue="ch3_fig_medium")

# %% [markdown]
# ```{glue:figure} ch3_fig_medium
# :name: fig-ch3-medium
# :alt: Held-out mIoU per epoch for the softmax and STD networks, and each claim's per-seed differences
#
# The `medium` run. Left: held-out mIoU (first 100 scenes) after each epoch, one line per
# seed, for the softmax network and the STD network. Right: for each registered claim, the
# per-seed difference "arm A − arm B" in mIoU (green: the claim holds, red: it does not) and
# the claim's margin (black bar); a seed counts when its dot lies right of the bar.
# ```
#
# **What the five seeds say** (the whole run took {glue:text}`ch3_med_minutes:.0f` minutes of
# one CPU core; {numref}`fig-ch3-medium` shows every network's held-out mIoU levelling off).
#
# - **STD in the network beats the softmax** (`std_beats_softmax`): mIoU
#   {glue:text}`ch3_med_std_shapes_miou:.3f` against {glue:text}`ch3_med_softmax_shapes_miou:.3f`.
#   The per-seed gains, {glue:text}`ch3_claim_std_beats_softmax_dmin:.3f` to
#   {glue:text}`ch3_claim_std_beats_softmax_dmax:.3f`, beat the pre-registered half point on
#   {glue:text}`ch3_claim_std_beats_softmax_wins` of 5 seeds: **the claim holds**, narrowly; the
#   gain is about the size of the margin.
# - **Training through the layer beats applying it at test time only**
#   (`trained_beats_post`): **it does not hold.** The STD network is ahead of the
#   post-processed softmax network on every seed, but by
#   {glue:text}`ch3_claim_trained_beats_post_dmin:.3f` to
#   {glue:text}`ch3_claim_trained_beats_post_dmax:.3f`, below the 0.005 we asked for
#   ({glue:text}`ch3_claim_trained_beats_post_wins` of 5 seeds beat it). The same layer as a
#   post-processing step recovers about half of the gain, mIoU
#   {glue:text}`ch3_med_std_post_shapes_miou:.3f`, and it does help on every seed
#   (`post_helps_softmax` holds, {glue:text}`ch3_claim_post_helps_softmax_wins` of 5).
#   Another λ does not rescue the post-processing: λ = 0.5, 2 and 4 give
#   {glue:text}`ch3_med_post_lam0p5:.3f`, {glue:text}`ch3_med_post_lam2:.3f` and
#   {glue:text}`ch3_med_post_lam4:.3f` (chosen on the test scenes, so an upper bound for a
#   tuned post-processor). The paper's argument, that the prior should act in the backward
#   pass too, is borne out in direction, not in size, on these scenes. Trained with the layer,
#   the network relies on it: its raw scores alone give {glue:text}`ch3_med_removed:.3f`.
# - **The star prior helps on stars** (`star_helps_stars`): **it does not hold; the sign is
#   the opposite.** SS-STD lowers mIoU on the star set from
#   {glue:text}`ch3_med_std_stars_miou:.3f` to {glue:text}`ch3_med_ss_std_stars_miou:.3f`, on
#   every seed ({glue:text}`ch3_claim_star_helps_stars_dmin:.3f` to
#   {glue:text}`ch3_claim_star_helps_stars_dmax:.3f`; the estimated centre gives
#   {glue:text}`ch3_med_ss_est:.3f`). The layer does what it is built for, star violations
#   per image fall from {glue:text}`ch3_med_std_stars_star_violations:.1f` to
#   {glue:text}`ch3_med_ss_std_stars_star_violations:.1f`, but the boundary it leaves is short:
#   length ratio {glue:text}`ch3_med_ss_std_stars_length_ratio:.2f` against
#   {glue:text}`ch3_med_std_stars_length_ratio:.2f` (1 is the truth's). Our reading, which we
#   did not test further: once the network itself removes the distractors and fills the
#   notches, the constraint only has costs, and monotonicity along rays on a pixel grid trims
#   the thin tips of the stars (on the grid even the ground-truth stars violate it,
#   {glue:text}`ch3_star_viol_gt:.2f` times per image in §13). The paper's +0.55 points are on ISIC's lesions, whose shapes are not our
#   thin-pointed stars: this neither confirms nor refutes them there.
# - **The star prior hurts on annuli** (`star_hurts_annuli`): it holds on
#   {glue:text}`ch3_claim_star_hurts_annuli_wins` of 5 seeds, by far more than any margin:
#   {glue:text}`ch3_med_std_annuli_miou:.3f` → {glue:text}`ch3_med_ss_std_annuli_miou:.3f`.

# %% [markdown]
# ## 15. The paper's numbers (full scale)
#
# Quoted from {cite:t}`liu2020std`; DeepLabV3+ {cite}`chen2018encoder` with an Xception-65 backbone, TensorFlow,
# 4 V100 GPUs.
# VP-STD uses ground-truth volumes and SS-STD ground-truth centres at test time.
#
# | paper, PASCAL VOC 2012 "val" (trained on train+val, 513² crops), mIoU % [Table 3] | |
# |---|---|
# | DeepLabV3+ (50 K iterations) | 91.34 |
# | TV-DeepLabV3+ | 91.71 |
# | VP-TV-DeepLabV3+ | 93.41 |
# | STD-DeepLabV3+ ($\lambda=1,\varepsilon=0.1$) | 94.40 |
# | VP-STD-DeepLabV3+ (oracle volumes) | 95.21 |
#
# | paper, ε sweep on VOC, λ = 1 [Table 1] | 0.1 | 0.4 | 0.7 | 1.0 | 2.0 | 3.0 |
# |---|---|---|---|---|---|---|
# | mIoU % | 94.40 | 93.52 | 92.75 | 92.28 | 92.03 | 91.79 |
#
# | paper, other datasets, mIoU % | baseline | STD | VP-STD | SS-STD |
# |---|---|---|---|---|
# | PASCAL VOC 2012 test [Table 4] | 83.60 | "about 1 % higher" (value not in the text) | — | — |
# | Cityscapes val [Table 6] | 78.73 | — | 82.07 | — |
# | ISIC 2018 star subset, 440 val images [Table 7] | 89.77 | 91.02 | 92.46 | 91.57 |
#
# | paper, training speed, iterations/s [Table 5] | DeepLabV3+ | STD | VP-STD |
# |---|---|---|---|
# | 4 × V100 | 1.43 | 1.21 | 0.77 |

# %% tags=["remove-cell"]
# Table 3's gains over DeepLabV3+ (the text says "about 2.9 % - 3.7 %"; book/errata.md)
glue("ch3_paper_t3_std_gain", 94.40 - 91.34, display=False)
glue("ch3_paper_t3_vpstd_gain", 95.21 - 91.34, display=False)

# %% [markdown]
# Two caveats from reading the paper: the VOC "validation" numbers of Tables 1–3 are measured on images
# the networks were trained on (train+val), so only the test set's 83.60 → ≈84.6 is a held-out
# comparison; and every VP-STD and SS-STD number uses oracle priors. Our `medium` results (§14)
# agree that an STD head raises mIoU over a softmax head (by about half a point here); they
# support the paper's case for training through the layer in direction only (the same layer
# at test time recovers about half of the gain); and the star prior lowers mIoU on our stars,
# on every seed, where the paper reports +0.55 points on ISIC. What the paper does not show:
# estimated priors are worth less than oracle ones (§12, §13), and a star prior wrecks shapes
# that are not star-shaped about the centre it is given (§14).
#
# ## 16. Full scale: DeepLabV3 with an STD head on ISIC 2018
#
# At `full` scale (a GPU) this section runs the chapter's experiment with its `full`
# configuration, defined once in `pixelbook.experiments.std` (`FULL_DATA`, `FULL_MODEL`,
# `FULL_STD`, `FULL_TRAIN`) — the same runs as `python -m pixelbook.run 3 --scale full`. It is the
# paper's ISIC 2018 experiment {cite}`codella2019isic` [STD, Sec. 4.3.3]: the star-shaped lesions
# (our criterion: at most 1 % of a lesion's pixels violate the star constraint about its centroid;
# the paper does not give its own), split 80 / 20, resized to 513 px; torchvision's DeepLabV3-ResNet50
# {cite}`chen2017rethinking` trained on COCO with the VOC categories (the paper fine-tunes an
# Xception-65 DeepLabV3+ pre-trained on COCO and VOC) with a softmax head and with an STD head
# (λ = 0.75, ε = 0.1, the 7×7 kernel with σ = 5, as the paper on ISIC), batch 16, about 50,000
# iterations at learning rate $10^{-4}$. The STD network is also read out with SS-STD (oracle
# centres) and VP-STD (oracle volumes), the softmax network with the STD layer at test time only.
# An estimated 22 GPU-hours per network (the book's page on full-scale runs says how the estimate
# is made). With `DATA_ROOT` set below `full` scale the cell runs the same code on that folder with
# tiny sizes (32 px, one epoch of batch 2, no pretrained weights): a test of the code path.

# %%
RUN_FULL = SCALE == "full" or DATA_ROOT is not None
if RUN_FULL:
    tiny = {} if SCALE == "full" else {
        "data": {"size": 32, "batch_size": 2, "workers": 0},
        "train": {"epochs": 1, "batch_size": 2, "lr": 1e-3},
        "model": {"weights": None}, "eval": {"monitor_n": 1}}
    where = {"root": None if DATA_ROOT is None else str(DATA_ROOT),
             "download": DATA_ROOT is None}
    over = {**tiny, "data": {**tiny.get("data", {}), **where}}
    full_runs = {arm.name: EXP.run(arm.name, SEED, "full", device=DEVICE, **over)
                 for arm in EXP.arms_for("full")}
    for name, full_run in full_runs.items():
        mious = {k: v for k, v in full_run.metrics.items() if k.endswith(".miou")}
        print(f"ISIC 2018 held-out mIoU, {name} network: "
              + ", ".join(f"{k} {v:.4f}" for k, v in sorted(mious.items())))

# %% [markdown]
# ## 17. Interactive: λ, ε, σ and T on a noisy image; the star centre
#
# {numref}`fig-ch3-std` runs STD on the noisy star of §6 (segmentation, and the energy trace below
# it) for the chosen λ, ε, σ and number of iterations T; in a live notebook the sliders are finer.
# {numref}`fig-ch3-star` moves the star centre of SS-STD.

# %%
def std_explorer(lam=1.0, epsilon=0.5, sigma=1.0, iterations=10):
    k = S.gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma)
    u, e = S.soft_threshold_dynamics(o_toy, iterations=iterations, lam=lam,
                                     epsilon=epsilon, kernel=k, return_energies=True)
    fig, ax = plt.subplots(2, 1, figsize=(2.8, 4.4),
                           gridspec_kw={"height_ratios": [2, 1]})
    ax[0].imshow(u[0, 1], cmap="gray", vmin=0, vmax=1)
    ax[0].axis("off")
    ax[1].set_title(f"energy; kernel PSD: {S.is_psd(k)}")
    ax[1].plot(e[:, 0].numpy(), ".-")
    ax[1].set_xlabel("iteration")
    ax[1].set_ylabel("energy")
    fig.tight_layout()
    return fig


pb.widgets.explorer(
    std_explorer, {"lam": [0.0, 1.0, 2.0], "epsilon": [0.1, 0.5], "sigma": [1.0, 3.0],
                   "iterations": [0, 10, 50]},
    live={"lam": (0.0, 2.0, 0.05), "epsilon": (0.05, 2.0, 0.05),
          "sigma": (0.5, 5.0, 0.25), "iterations": (0, 50)},
    descriptions={"lam": "λ", "epsilon": "ε", "sigma": "σ", "iterations": "T"},
    glue="ch3_fig_std", alt="STD on the noisy star")

# %% [markdown]
# ```{glue:figure} ch3_fig_std
# :name: fig-ch3-std
#
# Soft Threshold Dynamics on the noisy star: the foreground probability after T iterations
# (top) and the energy at each iteration (bottom), for the chosen length weight λ, entropy ε and
# kernel width σ.
# ```

# %%
c_toy = [float(round(float(x))) for x in centre_toy[0]]  # the star's own centre, first


def star_explorer(center_row=c_toy[0], center_col=c_toy[1], iterations=50):
    c = torch.tensor([[center_row, center_col]])
    u = std_u(o_toy, iterations, center=c)
    mask = u.argmax(1) == 1
    fig, ax = plt.subplots(figsize=(2.8, 3.0))
    ax.imshow(u[0, 1], cmap="gray", vmin=0, vmax=1)
    ax.plot(center_col, center_row, "r+", ms=10)
    ax.set_title(f"violations {int(S.star_violations(mask, c)[0])}")
    ax.axis("off")
    return fig


pb.widgets.explorer(
    star_explorer, {"center_row": [8.0, c_toy[0], 55.0],
                    "center_col": [8.0, c_toy[1], 55.0], "iterations": [50, 150]},
    live={"center_row": (0.0, 63.0, 1.0), "center_col": (0.0, 63.0, 1.0),
          "iterations": (0, 150)},
    descriptions={"center_row": "centre row", "center_col": "centre column",
                  "iterations": "T"},
    glue="ch3_fig_star", alt="SS-STD with a moved star centre")

# %% [markdown]
# ```{glue:figure} ch3_fig_star
# :name: fig-ch3-star
#
# Star-shape STD with the centre (red cross) moved: the number of star violations of the result
# is in the title.
# ```

# %% [markdown]
# ## Exercises
#
# 1. Prove $\max_io_i\le\mathcal M_\varepsilon(o)\le\max_io_i+\varepsilon\ln I$ and find $o$ attaining each bound.
# 2. Give the edge-weighted energy $\lambda\langle eu,k*(1-u)\rangle$ [STD, Sec. 3.3] and its gradient
#    $\lambda((k*(1-u))e-k*(eu))$. Show that it need not be concave even for a PSD $k$ (hint: the quadratic
#    form of $\operatorname{diag}(e)K$ is that of its symmetric part).
# 3. For which $\sigma$ is a 5×5 sampled Gaussian PSD? Use `pb.std.kernel_spectrum`; explain why a
#    separable kernel is PSD iff its 1-D factor's transform does not change sign.
# 4. Replace the oracle volumes of §12 by box constraints $V^-\le\sum_xu_i\le V^+$ (the paper's
#    suggestion): the dual variable becomes sign-constrained outside the box. Implement it and repeat §12.
# 5. Train the binary network with a `StarSTD` head (centres from the ground truth in training) and
#    compare with plugging it in at test time as in §13. How many iterations can you afford?
# 6. Retrain §11 with the paper's $\varepsilon=0.1$ (set `EPSILON` in the parameters cell) and with more
#    epochs. Does the STD head still win, and how does the training loss compare?
#
# ## Summary
#
# - The softmax $\mathcal S(o/\varepsilon)$ minimises $\langle -o,u\rangle+\varepsilon\langle u,\ln u\rangle$ over the
#   simplex; its value is minus the log-sum-exp, whose conjugate is the negative entropy.
# - Adding the threshold-dynamics length $\lambda\langle u,k*(1-u)\rangle$ and linearising it gives STD:
#   $u\leftarrow\mathcal S((o-\lambda k*(1-2u))/\varepsilon)$, energy-decreasing when $k$ is PSD; as
#   $\varepsilon\to0$ it is MBO.
# - Volumes enter through a log-domain Sinkhorn step; star shapes through a projected dual field with
#   $\operatorname{div}=-\nabla^\top$. All three unroll into a differentiable layer.
# - Errata: the paper's 7×7, σ = 5 kernel is not PSD (and can make the energy rise); the length prefactor
#   is $\sqrt{2\pi}/\sigma$; the volume dual has no $-|\Omega|\varepsilon$ (see {ref}`the errata <errata-ch3>`).
# - At `medium` scale, five seeds, claims fixed in advance: the STD head beats the softmax head
#   by about half a mIoU point (holds); training through the layer beats applying it at test
#   time only on every seed, but by less than the margin we set (does not hold); the star prior
#   lowers mIoU on stars (does not hold, opposite sign) and wrecks annuli (holds).
# - A volume or star prior is only as good as the volume or centre it is given; the paper's
#   gains use oracle ones.
#
# ## References
#
# {cite:t}`liu2020std`; {cite:t}`merriman1992mbo`; {cite:t}`esedoglu2015threshold`; {cite:t}`cuturi2013sinkhorn`;
# {cite:t}`veksler2008star`; {cite:t}`chen2017rethinking`; {cite:t}`chen2018encoder`; {cite:t}`everingham2010pascal`; {cite:t}`codella2019isic`.

# %%
print(pb.runtime.env_report(T0, SCALE, DEVICE))
