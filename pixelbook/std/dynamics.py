r"""The STD iteration [STD, Algs. 1–3] and its energy, with the volume and star-shape constraints.

:func:`soft_threshold_dynamics` is the unrolled majorise-minimise iteration behind the three layers
of :mod:`pixelbook.std.layers`; :func:`std_energy` the energy it decreases; :func:`star_directions`
and :func:`volumes_from_labels` build the star and volume priors from data.
"""

from __future__ import annotations

import warnings


import numpy as np
import torch
import torch.nn.functional as F

from .._checks import (IGNORE_INDEX, check_choice, check_dtype, check_finite, check_float, check_int, check_labels,
                       check_range, check_shape)
from ..ops.conv import _conv, _self_adjoint_conv2d
from ..ops.differences import div2d, grad2d
from ..ops.regions import _check_center
from .kernels import DEFAULT_KERNEL_SIZE, DEFAULT_SIGMA, _check_kernel, gaussian_kernel

__all__ = ["length_surrogate", "std_energy", "star_directions", "soft_threshold_dynamics", "volumes_from_labels",
           "PAPER_LAM", "PAPER_EPSILON", "PAPER_ITERATIONS", "PAPER_STAR_ITERATIONS", "MAX_SINKHORN_ITERATIONS"]

PAPER_LAM = 1.0  # [STD, Table 2]: best lambda on VOC 2012 (ISIC: 0.75)
PAPER_EPSILON = 0.1  # [STD, Table 1]: best epsilon on VOC 2012 (ISIC: 0.1; Cityscapes VP-STD: 1.0)
PAPER_ITERATIONS = 10  # [STD, Sec. 3.6]: "we set the number of the sublayers as t1 = 10"
PAPER_STAR_ITERATIONS = 50  # [STD, Sec. 3.8]: "we just take t1 = 50 layers"
#: cap on the Sinkhorn steps per outer step when ``sinkhorn_iterations=None`` (adaptive)
MAX_SINKHORN_ITERATIONS = 1000
_VOLUME_RTOL = 1e-4  # ours: float32 sums of H*W ones are exact far beyond this


def _blur(u: torch.Tensor, k4: torch.Tensor) -> torch.Tensor:
    """Per-class ("depthwise") convolution with zero padding; ``k4`` is ``(1 or C, 1, K, K)``, symmetric."""
    return _self_adjoint_conv2d(u, k4)


def _subgradient(u: torch.Tensor, k4: torch.Tensor, lam) -> torch.Tensor:
    r""":math:`p=\lambda\,k*(1-2u)` [STD, Eq. 7], computed as :math:`\lambda(k*1-2\,k*u)`.

    With one kernel for all classes, :math:`k*u_C=k*1-\sum_{i<C}k*u_i` on the simplex, so the last
    class needs no convolution (half the work for two classes). :math:`k*1` is 1 away from the border.
    """
    k1 = _conv(torch.ones_like(u[:1, : k4.shape[0]]), k4)  # (1, 1 or C, H, W)
    if k4.shape[0] != 1:  # one kernel per class: no shortcut
        return lam * (k1 - 2 * _blur(u, k4))
    ku = _blur(u[:, :-1], k4)
    return lam * (k1 - 2 * torch.cat([ku, k1 - ku.sum(1, keepdim=True)], 1))


def length_surrogate(probs: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    r"""Threshold-dynamics length surrogate :math:`\langle u_i,k*(1-u_i)\rangle` per image and class [STD, Eq. 5].

    For a binary region and a Gaussian of standard deviation :math:`\sigma` it tends to
    :math:`\frac{\sigma}{\sqrt{2\pi}}\,|\partial\Omega_i|` as :math:`\sigma/\text{radius}\to0`. (The paper's
    Eq. 4 prefactor :math:`\sqrt{\pi/\sigma}` is right only if :math:`\sigma` is the heat-kernel time,
    i.e. variance :math:`2\sigma`; see the book's errata.) Pixels outside the image count as
    :math:`u=0`, :math:`1-u=0` (zero padding of :math:`1-u`), so the image border adds no length.

    Args:
        probs: ``(N, C, H, W)`` soft segmentation.
        kernel: ``(K, K)`` or ``(C, K, K)`` symmetric kernel.

    Returns:
        ``(N, C)`` tensor.

    Example:
        >>> u = torch.zeros(1, 2, 8, 8); u[:, 0, :, :4] = 1; u[:, 1] = 1 - u[:, 0]
        >>> length_surrogate(u, gaussian_kernel(3, 1.0)).shape
        torch.Size([1, 2])
    """
    d = check_shape(probs, "probs", "N C H W")
    check_dtype(probs, "probs", "float")
    k4 = _check_kernel(kernel, d["C"][0])
    return (probs * _blur(1 - probs, k4)).sum((2, 3))


def std_energy(probs: torch.Tensor, logits: torch.Tensor, *, lam=PAPER_LAM, epsilon=PAPER_EPSILON,
               kernel: torch.Tensor | None = None) -> torch.Tensor:
    r"""STD energy :math:`\mathcal F(u;o)+\mathcal R(u)` per image [STD, Sec. 3.3, Eq. 7].

    .. math:: \langle -o,u\rangle+\varepsilon\langle u,\ln u\rangle+\lambda\langle u,k*(1-u)\rangle,
       \qquad 0\ln0:=0.

    Theorem 3.1 states that STD iterations never increase it when ``kernel`` is PSD.

    Args:
        probs: ``(N, C, H, W)`` points of the simplex :math:`u`.
        logits: ``(N, C, H, W)`` scores :math:`o`.
        lam, epsilon: :math:`\lambda\ge0`, :math:`\varepsilon>0`.
        kernel: symmetric kernel (default :func:`gaussian_kernel` ``(7, 1.0)``).

    Returns:
        ``(N,)`` tensor.

    Example:
        >>> o = torch.randn(2, 3, 8, 8)
        >>> std_energy(torch.softmax(o / 0.5, 1), o, lam=1.0, epsilon=0.5).shape
        torch.Size([2])
    """
    d = check_shape(probs, "probs", "N C H W")
    check_shape(logits, "logits", "N C H W", d)
    check_float(lam, "lam", low=0.0)
    check_float(epsilon, "epsilon", low=0.0, low_open=True)
    if kernel is None:
        kernel = gaussian_kernel(DEFAULT_KERNEL_SIZE, DEFAULT_SIGMA, dtype=logits.dtype, device=logits.device)
    linear = -(logits * probs).sum((1, 2, 3))
    entropy = torch.special.xlogy(probs, probs).sum((1, 2, 3))
    return linear + epsilon * entropy + lam * length_surrogate(probs, kernel).sum(1)


def star_directions(center: torch.Tensor, height: int, width: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    r"""Unit vectors :math:`s(x)=(c-x)/|c-x|` from each pixel towards the star centre [STD, Sec. 3.5].

    Args:
        center: ``(N, 2)`` or ``(2,)`` centre as (row, col) in pixels, inside the image (may be
            fractional, e.g. a centroid).
        height, width: image size.

    Returns:
        ``(N, 2, H, W)`` with channels (row, col); :math:`s=0` at a pixel that coincides with :math:`c`.

    Example:
        >>> star_directions(torch.tensor([1., 1.]), 3, 3)[0, :, 0, 1]
        tensor([1., 0.])
    """
    height, width = check_int(height, "height", low=1), check_int(width, "width", low=1)
    n = center.shape[0] if torch.is_tensor(center) and center.ndim == 2 else 1
    c = _check_center(center, n, height, width).to(dtype=dtype, device=device)
    rows = torch.arange(height, dtype=dtype, device=c.device)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=dtype, device=c.device)[None, :].expand(height, width)
    d = torch.stack([c[:, 0, None, None] - rows, c[:, 1, None, None] - cols], 1)  # (N, 2, H, W)
    norm = d.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, d / norm.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(d))


def _check_volumes(volumes: torch.Tensor, n: int, c: int, h: int, w: int) -> torch.Tensor:
    check_shape(volumes, "volumes", "N C", {"N": (n, "logits"), "C": (c, "logits")})
    check_dtype(volumes, "volumes", "float")
    check_finite(volumes, "volumes")
    v = volumes.detach()
    if bool((v <= 0).any()):
        i, j = (int(t) for t in (v <= 0).nonzero()[0])
        raise ValueError(
            f"`volumes`: expected every class to have a positive volume, got {float(v[i, j]):.4g} for class {j} "
            f"of image {i}: a class absent from the image cannot be met by a soft segmentation (u > 0 "
            f"everywhere); drop it from `logits`, or give it a small positive volume")
    total = v.sum(1)
    bad = (total - h * w).abs() > _VOLUME_RTOL * h * w
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"`volumes`: expected each image's volumes to sum to H*W = {h * w} pixels (the "
                         f"classes partition the image), got {float(total[i]):.6g} for image {i}; "
                         f"see volumes_from_labels")
    return volumes


def soft_threshold_dynamics(
    logits: torch.Tensor,
    *,
    iterations: int = PAPER_ITERATIONS,
    lam=PAPER_LAM,
    epsilon=PAPER_EPSILON,
    kernel: torch.Tensor | None = None,
    volumes: torch.Tensor | None = None,
    sinkhorn_iterations: int | None = 1,
    volume_tol: float = 0.5,
    center: torch.Tensor | None = None,
    star_class: int = 1,
    tau=None,
    init: torch.Tensor | None = None,
    output: str = "probs",
    return_energies: bool = False,
):
    r"""Soft threshold dynamics: the STD, VP-STD and SS-STD softmax [STD, Algs. 1-3].

    Starting from :math:`u^0=\mathcal S(o/\varepsilon)`, each of the ``iterations`` steps computes

    .. math::
        p &= \lambda\,k*(1-2u) &&\text{subgradient of }\mathcal R\text{ [STD, Eq. 7, App. A]}\\
        q_i &\leftarrow q_i+\varepsilon\big(\log V_i-\log\textstyle\sum_x\mathcal S_i((o-p+q)/\varepsilon)\big)
            &&\text{volume dual, ``sinkhorn_iterations`` times [STD, Eq. 10]}\\
        \eta &\leftarrow\max\{\eta-\tau\,s\cdot\nabla u_{i^*},0\} &&\text{star dual [STD, Alg. 3]}\\
        u &= \mathcal S\big((o-p+q-\delta_{i,i^*}\operatorname{div}(\eta s))/\varepsilon\big)
            &&\text{closed-form primal step}

    The volume step runs only when ``volumes`` is given, the star step only when ``center`` is.
    Both duals are stable by construction: the Sinkhorn step works on log-probabilities
    (``log_softmax``/``logsumexp``, no exponent can overflow for any :math:`\varepsilon`) and is
    re-centred (:math:`u` is invariant to :math:`q\to q+c`); the star dual is projected onto
    :math:`\eta\ge0` and, with :math:`\tau=\varepsilon`, moves the scores :math:`(\cdot)/\varepsilon` by at
    most :math:`4\sqrt2` per step, whatever :math:`\varepsilon`.

    Args:
        logits: ``(N, C, H, W)`` scores :math:`o` from the network, ``C >= 2``.
        iterations: unrolled steps :math:`T` (paper: 10 for STD and VP-STD, 50 for SS-STD); 0 returns
            the softmax.
        lam: :math:`\lambda\ge0` (paper: 1.0 on VOC, 0.75 on ISIC; 0 gives the softmax). Number or
            0-dim tensor (learnable).
        epsilon: :math:`\varepsilon>0`, the entropy weight / temperature (paper: 0.1; range [0.1, 3]).
        kernel: ``(K, K)`` or ``(C, K, K)`` symmetric kernel; default ``gaussian_kernel(7, 1.0)``,
            which is PSD (the paper's 7×7, :math:`\sigma=5` is not).
        volumes: ``(N, C)`` target pixel counts :math:`V`, positive, summing to :math:`H W` per image.
        sinkhorn_iterations: inner volume steps :math:`t_2` per outer step (paper and default: 1),
            warm-started; ``None`` runs them until every soft volume :math:`\sum_x u_i(x)` is within
            ``volume_tol`` pixels of :math:`V_i` (at most :data:`MAX_SINKHORN_ITERATIONS` per outer
            step; a warning says if that was not enough). The paper's single step does not meet the
            volumes: at :math:`T=10` a class at 1 % of a 64×64 image misses by more than 10×
            (``tests/test_std.py``), which is why :class:`~pixelbook.std.VolumeSTD` defaults to ``None``.
        volume_tol: the tolerance of ``sinkhorn_iterations=None``, in pixels; default 0.5, the
            resolution of a pixel count (a soft area within half a pixel rounds to :math:`V_i`).
        center: ``(N, 2)`` or ``(2,)`` star centre (row, col) in pixels, inside the image.
        star_class: the class :math:`i^*` that must be star-shaped (default 1, the foreground).
        tau: star dual step :math:`\tau_q` (paper and default: :math:`\varepsilon`).
        init: ``(N, C, H, W)`` starting point :math:`u^0` on the simplex (default
            :math:`\mathcal S(o/\varepsilon)`), e.g. a binary shape for the MBO limit.
        output: ``"probs"`` (:math:`u`, on the simplex), ``"log_probs"`` (:math:`\log u`, for
            ``F.nll_loss``) or ``"logits"`` (final scores whose softmax is :math:`u`, for
            ``F.cross_entropy``).
        return_energies: also return the energy :math:`\mathcal F+\mathcal R` of
            :math:`u^0,\dots,u^T` as a detached ``(T+1, N)`` tensor.

    Returns:
        ``(N, C, H, W)`` tensor as chosen by ``output``; with ``return_energies`` a pair.

    Raises:
        ValueError: bad shapes, non-finite values, :math:`\varepsilon\le0`, :math:`\lambda<0`, volumes
            that cannot be met (a zero volume, i.e. an absent class, or a sum other than
            :math:`HW`), a centre outside the image, ``star_class`` out of range.

    Example:
        >>> o = torch.randn(2, 3, 16, 16)
        >>> u = soft_threshold_dynamics(o, lam=1.0, epsilon=0.5)
        >>> u.shape, bool(torch.allclose(u.sum(1), torch.ones(2, 16, 16)))
        (torch.Size([2, 3, 16, 16]), True)
        >>> torch.allclose(soft_threshold_dynamics(o, lam=0.0, epsilon=0.5), torch.softmax(o / 0.5, 1))
        True
    """
    d = check_shape(logits, "logits", "N C H W")
    check_dtype(logits, "logits", "float")
    check_finite(logits, "logits")
    N, C, H, W = logits.shape
    if C < 2:
        raise ValueError(f"`logits`: expected C >= 2 classes, got C={C}")
    T = check_int(iterations, "iterations", low=0)
    adaptive = sinkhorn_iterations is None
    t2 = MAX_SINKHORN_ITERATIONS if adaptive else check_int(sinkhorn_iterations, "sinkhorn_iterations", low=1)
    volume_tol = check_float(volume_tol, "volume_tol", low=0.0, low_open=True)
    check_float(lam, "lam", low=0.0)
    check_float(epsilon, "epsilon", low=0.0, low_open=True)
    check_choice(output, "output", ("probs", "log_probs", "logits"))
    if kernel is None:
        kernel = gaussian_kernel(DEFAULT_KERNEL_SIZE, DEFAULT_SIGMA, dtype=logits.dtype, device=logits.device)
    k4 = _check_kernel(kernel, C).to(device=logits.device)
    o, eps = logits, epsilon

    logV = None
    if volumes is not None:
        logV = _check_volumes(volumes, N, C, H, W).to(logits.dtype).log()[:, :, None, None]
        q = logits.new_zeros(N, C, 1, 1)
    s = None
    if center is not None:
        star_class = check_int(star_class, "star_class")
        if not 0 <= star_class < C:
            raise ValueError(f"`star_class`: expected a class index in [0, {C}) (as in `logits`), got {star_class}")
        if tau is None:
            tau = eps
        check_float(tau, "tau", low=0.0, low_open=True)
        center = _check_center(center, N, H, W)
        s = star_directions(center, H, W, dtype=logits.dtype, device=logits.device)
        eta = logits.new_zeros(N, 1, H, W)
        onehot = F.one_hot(torch.tensor(star_class), C).to(logits.dtype).to(logits.device)[None, :, None, None]
    elif tau is not None:
        check_float(tau, "tau", low=0.0, low_open=True)

    z = o
    if init is None:
        u = torch.softmax(z / eps, 1)
    else:
        check_shape(init, "init", "N C H W", d)
        check_finite(init, "init")
        check_range(init, "init", 0.0, 1.0 + 1e-5)
        if float((init.detach().sum(1) - 1).abs().max()) > 1e-4:
            raise ValueError("`init`: expected points of the simplex (classes summing to 1 at every pixel)")
        u = init.to(logits.dtype)
    unmet = False
    energies = []
    if return_energies:
        with torch.no_grad():
            energies.append(std_energy(u, o, lam=lam, epsilon=eps, kernel=kernel))
    for _ in range(T):
        p = _subgradient(u, k4, lam)  # = lam * k*(1 - 2u) [STD, Eq. 7], e = 1
        z = o - p
        if s is not None:
            # projected dual ascent on the ray-monotonicity constraint s . grad u >= 0 [STD, Alg. 3]
            eta = torch.clamp(eta - tau * (s * grad2d(u[:, star_class:star_class + 1])).sum(1, keepdim=True), min=0)
            z = z - onehot * div2d(eta * s)
        if logV is not None:
            for _ in range(t2):  # log-domain Sinkhorn column scaling [STD, Eq. 10]
                logu = torch.log_softmax((z + q) / eps, 1)
                log_vol = torch.logsumexp(logu, dim=(2, 3), keepdim=True)
                if adaptive and float((log_vol.exp() - logV.exp()).abs().max()) <= volume_tol:
                    break   # the u of this q meets every volume
                q = q + eps * (logV - log_vol)
                q = q - q.mean(1, keepdim=True)  # gauge: u is invariant to q + const
            else:
                if adaptive:
                    unmet = True
            z = z + q
        u = torch.softmax(z / eps, 1)
        if return_energies:
            with torch.no_grad():
                energies.append(std_energy(u, o, lam=lam, epsilon=eps, kernel=kernel))

    if unmet:
        warnings.warn(f"soft_threshold_dynamics: {MAX_SINKHORN_ITERATIONS} Sinkhorn steps per outer step did not "
                      f"bring every soft volume within volume_tol={volume_tol:g} px of `volumes`; raise "
                      f"`epsilon` (the volume step converges faster when it is larger) or `volume_tol`",
                      RuntimeWarning, stacklevel=2)
    if output == "probs":
        out = u
    elif output == "log_probs":
        out = torch.log_softmax(z / eps, 1)
    else:
        out = z / eps
    if return_energies:
        return out, torch.stack(energies).detach()
    return out


def volumes_from_labels(labels: torch.Tensor, num_classes: int,
                        ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    r"""Per-class pixel counts :math:`V` of a label map, as :func:`soft_threshold_dynamics` wants them.

    Pixels equal to ``ignore_index`` are shared out in proportion to the counts of the others, so
    the volumes still sum to :math:`HW`. (This is the paper's oracle: volumes from the ground truth.)

    Args:
        labels: ``(N, H, W)`` int64 in ``[0, num_classes)`` or ``ignore_index``.

    Returns:
        ``(N, num_classes)`` float32; a class absent from an image gets 0 (which
        :func:`soft_threshold_dynamics` rejects, naming the class).

    Example:
        >>> volumes_from_labels(torch.tensor([[[0, 0], [1, 255]]]), 2, ignore_index=255)
        tensor([[2.6667, 1.3333]])
    """
    check_shape(labels, "labels", "N H W")
    num_classes = check_int(num_classes, "num_classes", low=1)
    check_labels(labels, "labels", num_classes, ignore_index)
    valid = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
    onehot = F.one_hot(torch.where(valid, labels, 0), num_classes) * valid[..., None]
    counts = onehot.sum((1, 2)).float()
    n_valid = counts.sum(1, keepdim=True)
    if bool((n_valid == 0).any()):
        raise ValueError(f"`labels`: image {int((n_valid[:, 0] == 0).nonzero()[0])} has no valid pixel")
    return counts * (labels.shape[1] * labels.shape[2]) / n_valid
