r"""Soft Threshold Dynamics (STD): softmax with spatial, volume and star-shape priors [STD].

The softmax :math:`u=\mathcal S(o/\varepsilon)` is the unique minimiser over the probability simplex
:math:`\mathbb U` of the entropy-regularised linear energy
:math:`\mathcal F(u;o)=\langle -o,u\rangle+\varepsilon\langle u,\ln u\rangle` [STD, Sec. 3.2]. STD adds
the threshold-dynamics boundary-length term :math:`\mathcal R(u)=\lambda\langle u,k*(1-u)\rangle`
[STD, Sec. 3.3] and minimises :math:`\mathcal F+\mathcal R` by linearising the concave
:math:`\mathcal R` at the previous iterate (a majorise-minimise step, [STD, Eq. 7]):

.. math:: p^t=\lambda\,k*(1-2u^t),\qquad u^{t+1}=\mathcal S\big((o-p^t)/\varepsilon\big).

Unrolled for a fixed number of iterations it is a differentiable layer that replaces the final
softmax of a segmentation network. Two constraints slot into the same loop:

* volume :math:`\int u_i=V_i` (VP-STD, [STD, Eqs. 8-10]): a per-class dual :math:`q_i` updated by a
  log-domain Sinkhorn step (entropic optimal transport);
* star shape about a centre :math:`c` (SS-STD, [STD, Eq. 11, Alg. 3]): :math:`s\cdot\nabla u_i\ge 0`
  with :math:`s` the unit vector towards :math:`c`, enforced by a non-negative dual field updated by
  projected ascent, with discrete :math:`\nabla` and :math:`\operatorname{div}=-\nabla^\top`.

Conventions (the paper leaves them open; each is a decision documented here):

* ``kernel``: a normalised (sums to 1), symmetric Gaussian applied per class with **zero padding**,
  which keeps the convolution self-adjoint, so :math:`p` is exactly the gradient of :math:`\mathcal R`.
* Default kernel: 7×7 with :math:`\sigma=1` (:data:`DEFAULT_SIGMA`). The paper uses 7×7 with
  :math:`\sigma=5` (:data:`PAPER_SIGMA`), which is **not positive semi-definite** (its spectrum dips to
  about -0.197), so Theorem 3.1's premise fails for it; ``gaussian_kernel(..., psd=True)`` builds a
  kernel of any size and width that is PSD by construction.
* Initialisation :math:`u^0=\mathcal S(o/\varepsilon)`, the :math:`\lambda=0` solution (the paper writes
  :math:`\mathcal S(o)`; the two agree for :math:`\varepsilon=1` and differ only in the first
  :math:`p`).
* Volumes are pixel counts at the resolution of ``logits``; they must be positive and sum to
  :math:`H\cdot W` per image.
* Memory: autograd keeps about three ``logits``-sized tensors per iteration.

Modules: :mod:`~pixelbook.std.kernels` (the kernel and its spectrum), :mod:`~pixelbook.std.dynamics`
(the iteration, its energy, the priors from data), :mod:`~pixelbook.std.layers` (:class:`STD`,
:class:`VolumeSTD`, :class:`StarSTD`). The building blocks live in :mod:`pixelbook.ops` and the
chapter's shape diagnostics in :mod:`pixelbook.metrics.shape`; both are importable from here too
(``centroid``, ``grad2d``, ``div2d``, ``star_violations``, ``boundary_length``, ``count_components``).

Reference: J. Liu, X. Wang, X.-C. Tai, *Deep Convolutional Neural Networks with Spatial
Regularization, Volume and Star-shape Priori for Image Segmentation* (arXiv:2002.03989) [STD].
"""

from __future__ import annotations

from ..metrics.shape import boundary_length, count_components, star_violations  # noqa: F401  (the chapter's diagnostics)
from ..ops.differences import div2d, grad2d  # noqa: F401
from ..ops.regions import centroid  # noqa: F401
from .dynamics import (MAX_SINKHORN_ITERATIONS, PAPER_EPSILON, PAPER_ITERATIONS, PAPER_LAM, PAPER_STAR_ITERATIONS,
                       length_surrogate, soft_threshold_dynamics, star_directions, std_energy, volumes_from_labels)
from .kernels import DEFAULT_KERNEL_SIZE, DEFAULT_SIGMA, PAPER_KERNEL_SIZE, PAPER_SIGMA, gaussian_kernel, is_psd, kernel_spectrum
from .layers import STD, StarSTD, VolumeSTD

__all__ = [
    "gaussian_kernel", "kernel_spectrum", "is_psd", "length_surrogate", "std_energy",
    "soft_threshold_dynamics", "STD", "VolumeSTD", "StarSTD", "volumes_from_labels", "star_directions",
    "DEFAULT_KERNEL_SIZE", "DEFAULT_SIGMA", "PAPER_KERNEL_SIZE", "PAPER_SIGMA",
    "PAPER_LAM", "PAPER_EPSILON", "PAPER_ITERATIONS", "PAPER_STAR_ITERATIONS", "MAX_SINKHORN_ITERATIONS",
]
