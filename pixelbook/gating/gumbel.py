r"""Hard per-pixel choices that can be trained: Gumbel-max, its softmax relaxation, straight-through.

A gate picks one of ``K`` options at every pixel (``K = 2``: skip / compute; ``K = P``: one of P
pooling branches). With option probabilities :math:`\alpha_k` and i.i.d. Gumbel noise
:math:`m_k = -\log(-\log u_k)`, :math:`u_k \sim \mathcal U(0, 1)`,

.. math:: g = \arg\max_k(\log\alpha_k + m_k)  \qquad [KONG, Eq. 4.3]

is an exact sample of the categorical distribution. The argmax has no useful gradient; the
relaxation

.. math:: \mathbf g = \mathrm{softmax}\big((\log\boldsymbol\alpha + \mathbf m)/\tau\big)  \qquad [KONG, Eq. 4.4]

does, and tends to the one-hot sample as :math:`\tau \to 0`. (The thesis prints
:math:`\mathrm{softmax}(\log(\boldsymbol\alpha + \mathbf m)/\tau)`, which is undefined for
:math:`m_k < -\alpha_k`; the intended form, that of its references [227, 142], is the one above —
see the errata page.) The *straight-through* estimator [KONG, §4.3.2, after 227] uses the one-hot
sample in the forward pass and the relaxation's gradient in the backward pass:
``y_hard - y_soft.detach() + y_soft``.

Here :math:`\log\alpha_k` are the gate's ``logits`` (any additive constant cancels in both the
argmax and the softmax, so normalised log-probabilities are not needed). At evaluation the gate is
the one-hot argmax of the clean logits, without noise: deterministic (the released code's choice;
the thesis is silent).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_dtype, check_finite, check_float, check_int

__all__ = ["gumbel_noise", "gumbel_softmax_st", "GumbelGate", "temperature_schedule", "set_temperature"]



def gumbel_noise(shape, generator: torch.Generator | None = None, device=None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""I.i.d. standard Gumbel samples :math:`m = -\log(-\log u)`, :math:`u \sim \mathcal U(0,1)` [KONG, §4.3.2].

    Args:
        shape: the output shape.
        generator: a ``torch.Generator`` for reproducible draws (default: the global RNG).
        device, dtype: of the output (the generator must live on ``device``).

    Returns:
        A finite tensor of ``shape`` (the uniform draws are clamped to ``[tiny, 1 − eps]`` of ``dtype``).

    Example:
        >>> m = gumbel_noise((100000,), torch.Generator().manual_seed(0))
        >>> abs(float(m.mean()) - 0.5772) < 0.01  # the Euler–Mascheroni constant
        True
    """
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    # keep u in [tiny, 1 - eps] of its dtype: rand can return exactly 0, and -log(-log u) must stay finite
    info = torch.finfo(dtype)
    u = u.clamp(info.tiny, 1 - info.eps)
    return -torch.log(-torch.log(u))


def gumbel_softmax_st(logits: torch.Tensor, tau: float = 1.0, dim: int = 1, hard: bool = True,
                      noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""A straight-through Gumbel-softmax sample over ``dim`` [KONG, Eqs. 4.3–4.4, §4.3.2].

    Args:
        logits: ``(..., K, ...)`` float scores :math:`\log\alpha_k` (up to a constant) with the ``K``
            options along ``dim``; e.g. ``(N, K, H, W)`` for a per-pixel gate.
        tau: temperature :math:`\tau > 0` of the relaxation (thesis: annealed from 1 to 0.1).
        dim: the options axis (default 1, the channel axis).
        hard: ``True`` (default, the thesis): forward = one-hot argmax of ``logits + noise``,
            backward = gradient of the relaxation. ``False``: the relaxed sample itself (what the
            released MatConvNet code's forward computes).
        noise: Gumbel noise of ``logits``' shape (default: drawn with ``generator``); passing it
            makes the sample a deterministic function, for tests.
        generator: for the noise draw.

    Returns:
        A tensor shaped like ``logits``. With ``hard=True`` its values are exactly 0 or 1 with one 1
        along ``dim``; its gradient is that of ``softmax((logits + noise)/tau)``.

    Example:
        >>> y = gumbel_softmax_st(torch.zeros(2, 3, 4, 4), tau=0.5, generator=torch.Generator().manual_seed(0))
        >>> bool(((y == 0) | (y == 1)).all()), bool((y.sum(1) == 1).all())
        (True, True)
    """
    check_dtype(logits, "logits", "float")
    check_finite(logits, "logits")
    tau = check_float(tau, "tau", low=0, low_open=True)
    dim = check_int(dim, "dim", -logits.ndim, logits.ndim - 1)
    if logits.numel() == 0:
        raise ValueError(f"`logits`: expected a non-empty tensor, got shape {tuple(logits.shape)}")
    if noise is None:
        noise = gumbel_noise(logits.shape, generator, logits.device, logits.dtype)
    elif tuple(noise.shape) != tuple(logits.shape):
        raise ValueError(f"`noise`: expected shape {tuple(logits.shape)} (as `logits`), got {tuple(noise.shape)}")
    y_soft = ((logits + noise) / tau).softmax(dim)
    if not hard:
        return y_soft
    index = (logits + noise).argmax(dim, keepdim=True)  # the argmax of Eq. 4.3, not of y_soft (same, but exact)
    y_hard = torch.zeros_like(y_soft).scatter_(dim, index, 1.0)
    return y_hard - y_soft.detach() + y_soft


def _one_hot_argmax(logits: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.zeros_like(logits).scatter_(dim, logits.argmax(dim, keepdim=True), 1.0)


class GumbelGate(nn.Module):
    r"""A gate over ``K`` options along ``dim``: straight-through Gumbel sample in training, argmax in eval.

    Holds the temperature :math:`\tau` (set it with :func:`set_temperature` or a schedule from
    :func:`temperature_schedule`) and records the last clean probabilities
    ``softmax(logits)`` in ``last_prob`` (used by the budget loss with ``statistic="prob"``).

    Args:
        tau: initial temperature (default 1.0, the thesis' starting value).
        hard: straight-through one-hot forward (default, thesis) or the soft relaxation.
        dim: options axis (default 1).
        sample_in_eval: draw Gumbel samples in eval mode too (default ``False``: deterministic argmax).

    Example:
        >>> gate = GumbelGate().eval()
        >>> gate(torch.tensor([[[[0.1]], [[2.0]]]]))[:, :, 0, 0]
        tensor([[0., 1.]])
    """

    def __init__(self, tau: float = 1.0, hard: bool = True, dim: int = 1, sample_in_eval: bool = False):
        super().__init__()
        self.tau = check_float(tau, "tau", low=0, low_open=True)
        if not isinstance(hard, bool):
            raise TypeError(f"`hard`: expected a bool, got {type(hard).__name__}")
        self.hard, self.dim, self.sample_in_eval = hard, int(dim), bool(sample_in_eval)
        self.last_prob: torch.Tensor | None = None

    def forward(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.training or self.sample_in_eval:
            y = gumbel_softmax_st(logits, self.tau, self.dim, self.hard, generator=generator)  # checks `logits`
        else:
            check_dtype(logits, "logits", "float")
            check_finite(logits, "logits")
            y = _one_hot_argmax(logits, self.dim)
        self.last_prob = logits.softmax(self.dim)
        return y

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, hard={self.hard}, dim={self.dim}"


def temperature_schedule(step: int, total_steps: int, start: float = 1.0, end: float = 0.1,
                         shape: str = "exponential") -> float:
    r"""The annealed temperature at ``step`` [KONG, §4.3.2: "initialize τ = 1 and decrease it to 0.1 gradually"].

    The thesis gives neither the curve nor its unit; ours: per optimisation step, from ``start`` at
    step 0 to ``end`` at ``total_steps``, then constant.

    Args:
        step: current step (>= 0).
        total_steps: steps over which to anneal (>= 1).
        start, end: temperatures, ``start >= end > 0`` (defaults 1.0 and 0.1, the thesis).
        shape: ``"exponential"`` (default, :math:`\tau_t = \tau_0 (\tau_1/\tau_0)^{t/T}`: equal ratios
            per step) or ``"linear"``.

    Returns:
        A float in ``[end, start]``, non-increasing in ``step``.

    Example:
        >>> [round(temperature_schedule(s, 2), 4) for s in (0, 1, 2, 5)]
        [1.0, 0.3162, 0.1, 0.1]
    """
    step = check_int(step, "step", 0)
    total_steps = check_int(total_steps, "total_steps", 1)
    start = check_float(start, "start", low=0, low_open=True)
    end = check_float(end, "end", low=0, low_open=True)
    if end > start:
        raise ValueError(f"`end`: expected <= start={start}, got {end}")
    check_choice(shape, "shape", ("exponential", "linear"))
    t = min(step, total_steps) / total_steps
    if shape == "linear":
        return start + (end - start) * t
    return start * math.exp(t * math.log(end / start))


def set_temperature(model: nn.Module, tau: float) -> int:
    """Set ``tau`` on every :class:`GumbelGate` inside ``model``; return how many were set.

    Example:
        >>> set_temperature(nn.Sequential(GumbelGate(), GumbelGate()), 0.5)
        2
    """
    tau = check_float(tau, "tau", low=0, low_open=True)
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model`: expected an nn.Module, got {type(model).__name__}")
    gates = [m for m in model.modules() if isinstance(m, GumbelGate)]
    for gate in gates:
        gate.tau = tau
    return len(gates)
