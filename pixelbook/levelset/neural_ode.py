r"""Neural-ODE segmentation [NODE-LS, Eqs. 2–4]: an ODE solver with clear failures, the dynamics
:math:`f_\theta`, and the Contour Evolution and Image Evolution models.

References: [NODE-LS] *Neural ODEs for image segmentation with level sets*, arXiv:1912.11683;
Chen et al., *Neural ordinary differential equations*, NeurIPS 2018 (the adjoint method).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_finite, check_float, check_int, check_shape
from ..ops._common import _check_phi

__all__ = ["ODESolveError", "solve_ode", "ODEFunc", "ContourEvolution", "ImageEvolution", "ResidualRefiner",
           "ADAPTIVE_METHODS", "FIXED_METHODS"]

#: torchdiffeq's adaptive-step solvers (step size set by ``atol``/``rtol``).
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: torchdiffeq's fixed-step solvers (step size set by ``step_size``).
FIXED_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams")


class ODESolveError(RuntimeError):
    """An ODE solve failed (step-size underflow, too many steps, or NaN/Inf); the message says what to change."""


def _advice(method, atol, rtol):
    return (f"loosen the tolerance (atol={atol:g}, rtol={rtol:g} now; try atol=1e-3), switch to a fixed-step "
            f"solver (method='rk4', step_size=0.25), or make the dynamics smoother: lower the learning rate, "
            f"set TrainConfig.grad_clip, or check the inputs for extreme values")


def solve_ode(func: nn.Module, y0: torch.Tensor, times: torch.Tensor | Sequence[float], method: str = "dopri5",
              rtol: float = 0.0, atol: float = 1e-3, step_size: float | None = None, adjoint: bool = False,
              max_num_steps: int = 1000) -> torch.Tensor:
    r"""Solve :math:`\dot y = f(t, y)` with torchdiffeq and turn its failures into clear errors.

    Args:
        func: an ``nn.Module`` ``func(t, y)`` (e.g. :class:`ODEFunc`).
        y0: initial state (any shape).
        times: increasing 1-D output times; the first is the initial time.
        method: one of :data:`ADAPTIVE_METHODS` (error-controlled; the paper's RK45 is
            ``"dopri5"``) or :data:`FIXED_METHODS`.
        rtol, atol: tolerances of the adaptive methods; the step is accepted when the error
            estimate is below :math:`a_{tol} + r_{tol}|y|` elementwise (RMS norm in torchdiffeq;
            [NODE-LS, Eq. 5] writes an ∞-norm). The paper uses ``rtol=0`` and atol in [1e-5, 1e-3].
        step_size: required for fixed-step methods, rejected for adaptive ones.
        adjoint: back-propagate with the adjoint method (memory constant in the number of steps)
            instead of through the solver's operations [Chen et al. 2018].
        max_num_steps: adaptive methods give up after this many steps.

    Returns:
        ``(T, *y0.shape)``.

    Raises:
        ODESolveError: step-size underflow, too many steps, or non-finite state, with advice.
        ValueError: a bad option (unknown method, missing or superfluous ``step_size``).
    """
    from torchdiffeq import odeint, odeint_adjoint

    check_choice(method, "method", ADAPTIVE_METHODS + FIXED_METHODS)
    check_finite(y0, "y0")
    t = torch.as_tensor(times, dtype=y0.dtype, device=y0.device).flatten()
    if t.numel() < 2 or bool((t[1:] <= t[:-1]).any()):
        raise ValueError(f"`times`: expected at least 2 strictly increasing times, got {t.tolist()}")
    rtol, atol = check_float(rtol, "rtol", low=0.0), check_float(atol, "atol", low=0.0)
    if method in FIXED_METHODS:
        if step_size is None:
            raise ValueError(f"`step_size`: required for the fixed-step method {method!r} (e.g. step_size=0.25)")
        options = {"step_size": check_float(step_size, "step_size", low=0.0, low_open=True)}
    else:
        if step_size is not None:
            raise ValueError(f"`step_size`: only used by fixed-step methods {FIXED_METHODS}; {method!r} chooses "
                             f"its own steps from atol/rtol")
        if rtol == 0 and atol == 0:
            raise ValueError("`atol`: rtol and atol cannot both be 0 for an adaptive method")
        max_num_steps = check_int(max_num_steps, "max_num_steps", low=1)
        options = {"max_num_steps": max_num_steps}
        if hasattr(func, "nfe"):  # a guard that also works under `python -O` (torchdiffeq uses assert)
            func.nfe_limit = func.nfe + 14 * max_num_steps + 64
    kwargs = dict(rtol=rtol, atol=atol, method=method, options=options)
    checked = func if isinstance(func, ODEFunc) else _FiniteCheck(func)  # ODEFunc checks itself
    describe = dict(method=method, atol=atol, rtol=rtol, max_num_steps=max_num_steps)
    try:
        if adjoint:
            params = tuple(p for p in func.parameters() if p.requires_grad)
            if torch.is_grad_enabled() and (y0.requires_grad or params):
                # the adjoint's own solve runs in the backward pass: guard it too
                return _AdjointGuard.apply(lambda y: odeint_adjoint(checked, y, t, adjoint_params=params, **kwargs),
                                           describe, y0, *params)
            return odeint_adjoint(checked, y0, t, adjoint_params=params, **kwargs)
        return odeint(checked, y0, t, **kwargs)
    except AssertionError as exc:
        raise _solver_error(exc, "", **describe) from exc
    finally:
        if hasattr(func, "nfe_limit") and not adjoint:
            func.nfe_limit = None


def _solver_error(exc: AssertionError, phase: str, method, atol, rtol, max_num_steps) -> Exception:
    """torchdiffeq's ``assert`` failures as :class:`ODESolveError` with advice (others unchanged)."""
    msg = str(exc)
    if "underflow" in msg:
        return ODESolveError(f"ODE solve failed{phase}: the adaptive step size of {method!r} underflowed ({msg}); "
                             f"the dynamics are too stiff for this tolerance: {_advice(method, atol, rtol)}")
    if "max_num_steps" in msg:
        return ODESolveError(f"ODE solve failed{phase}: {method!r} needed more than max_num_steps={max_num_steps} "
                             f"steps; raise `max_num_steps`, or {_advice(method, atol, rtol)}")
    if "non-finite" in msg:
        return ODESolveError(f"ODE solve failed{phase}: the state became NaN/Inf; {_advice(method, atol, rtol)}")
    return exc


class _AdjointGuard(torch.autograd.Function):
    """Identity around an adjoint solve whose backward pass (the adjoint's own, reverse-time solve)
    runs inside ``try``, so that its solver failures surface as :class:`ODESolveError` like the
    forward ones, not as a bare ``AssertionError`` from ``loss.backward()``.

    The solve is recorded with autograd on inside ``forward`` (as activation checkpointing does)
    and differentiated in ``backward`` with :func:`torch.autograd.grad`; gradients reach ``y0``
    (and through it the rest of the graph) and the dynamics' parameters, each once.
    """

    @staticmethod
    def forward(ctx, run, describe, y0, *params):
        with torch.enable_grad():
            y0_inner = y0.detach().requires_grad_(y0.requires_grad)
            out = run(y0_inner)
        ctx.inner, ctx.describe = (y0_inner, out, params), describe
        return out.detach()

    @staticmethod
    def backward(ctx, grad_out):
        y0_inner, out, params = ctx.inner
        wanted = [x for x in (y0_inner, *params) if x.requires_grad]
        try:
            grads = iter(torch.autograd.grad(out, wanted, grad_out, allow_unused=True))
        except AssertionError as exc:
            raise _solver_error(exc, " in the backward (adjoint) pass", **ctx.describe) from exc
        finally:
            ctx.inner = None
        return (None, None, *(next(grads) if x.requires_grad else None for x in (y0_inner, *params)))


class _FiniteCheck(nn.Module):
    """Wraps a user's ``func(t, y)`` so that a NaN/Inf derivative raises at once (torchdiffeq would
    shrink the step until it underflows and blame the step size)."""

    def __init__(self, func):
        super().__init__()
        self.func = func

    def forward(self, t, y):
        out = self.func(t, y)
        if not bool(torch.isfinite(out).all()):
            raise ODESolveError(f"ODE solve failed: the dynamics returned NaN/Inf at t={float(t):.4g}; check the "
                                f"inputs are finite, lower the learning rate, set TrainConfig.grad_clip, or use a "
                                f"smaller step_size / tighter atol")
        return out


class ODEFunc(nn.Module):
    r"""The dynamics :math:`f_\theta(\gamma, t)` of [NODE-LS, Eqs. 2–4]: a small conv net.

    ``layers`` 3×3 convolutions; between them GroupNorm (the paper's choice, §3.5: the number of
    calls depends on the NFE, so BatchNorm statistics are ill-defined) and a Softplus (smooth, so
    adaptive solvers do not stall on kinks). With ``time_channel`` a constant plane :math:`t` is
    concatenated before every convolution (torchdiffeq's ``ConcatConv2d``; the paper does not say
    how :math:`t` enters). The **last convolution is zero-initialised** [NODE-LS, §3.3], so at
    initialisation :math:`f_\theta \equiv 0` and the flow is the identity.

    Counts its calls in ``nfe`` (reset it yourself, or read the models' ``nfe_forward``);
    raises :class:`ODESolveError` if it returns NaN/Inf or exceeds ``nfe_limit`` calls.

    Args:
        channels: state channels (in = out). hidden: width. layers: number of convolutions (>= 2).
        time_channel: concatenate :math:`t`. groups: GroupNorm groups. dilation: of the middle convolutions.
    """

    def __init__(self, channels: int, hidden: int = 32, layers: int = 3, time_channel: bool = True,
                 groups: int = 8, dilation: int = 1):
        super().__init__()
        layers = check_int(layers, "layers", low=2)
        channels, hidden = check_int(channels, "channels", low=1), check_int(hidden, "hidden", low=1)
        groups, dilation = check_int(groups, "groups", low=1), check_int(dilation, "dilation", low=1)
        tc = int(bool(time_channel))
        self.time_channel = bool(time_channel)
        widths = [channels] + [hidden] * (layers - 1) + [channels]
        self.convs = nn.ModuleList()
        for i in range(layers):
            dil = dilation if 0 < i < layers - 1 else 1
            self.convs.append(nn.Conv2d(widths[i] + tc, widths[i + 1], 3, padding=dil, dilation=dil))
        self.norms = nn.ModuleList(nn.GroupNorm(math.gcd(groups, hidden), hidden) for _ in range(layers - 1))
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)
        self.nfe = 0
        self.nfe_limit: int | None = None

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        if self.nfe_limit is not None and self.nfe > self.nfe_limit:
            raise ODESolveError(f"ODE solve failed: more than {self.nfe_limit} function evaluations (NFE) at "
                                f"t={float(t):.4g}; {_advice('adaptive', float('nan'), float('nan'))}")
        tplane = None
        if self.time_channel:
            tplane = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0], 1, *x.shape[2:])
        for i, conv in enumerate(self.convs):
            if tplane is not None:
                x = torch.cat([x, tplane], 1)
            x = conv(x)
            if i < len(self.norms):
                x = F.softplus(self.norms[i](x))
        if not bool(torch.isfinite(x).all()):
            raise ODESolveError(f"ODE solve failed: f_theta returned NaN/Inf at t={float(t):.4g} (NFE {self.nfe}); "
                                f"check the inputs are finite, lower the learning rate, set TrainConfig.grad_clip, "
                                f"or use a smaller step_size / tighter atol")
        return x


def _zero_last(seq: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(seq[-1].weight)
    nn.init.zeros_(seq[-1].bias)
    return seq


def _conv_block(cin, cout, hidden, groups):
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.GroupNorm(math.gcd(groups, hidden), hidden),
                         nn.Softplus(), nn.Conv2d(hidden, cout, 3, padding=1))


class _NeuralODEModel(nn.Module):
    """Solver configuration and NFE bookkeeping shared by the two models of [NODE-LS]."""

    def configure_solver(self, method: str | None = None, rtol: float | None = None, atol: float | None = None,
                         step_size: float | None = None, adjoint: bool | None = None,
                         max_num_steps: int | None = None, t1: float | None = None):
        r"""Change solver options in place (validated); returns ``self``.

        ``step_size`` is set to ``None`` automatically when switching to an adaptive ``method``
        unless given. A rejected change raises and leaves every option as it was.
        Example: ``model.configure_solver(method="dopri5", atol=1e-4, adjoint=True)``.
        """
        new = self.solver_options()
        if method is not None:
            check_choice(method, "method", ADAPTIVE_METHODS + FIXED_METHODS)
            if method in ADAPTIVE_METHODS and step_size is None:
                new["step_size"] = None
            new["method"] = method
        if rtol is not None:
            new["rtol"] = check_float(rtol, "rtol", low=0.0)
        if atol is not None:
            new["atol"] = check_float(atol, "atol", low=0.0)
        if step_size is not None:
            new["step_size"] = check_float(step_size, "step_size", low=0.0, low_open=True)
        if adjoint is not None:
            new["adjoint"] = bool(adjoint)
        if max_num_steps is not None:
            new["max_num_steps"] = check_int(max_num_steps, "max_num_steps", low=1)
        if t1 is not None:
            new["t1"] = check_float(t1, "t1", low=0.0, low_open=True)
        if new["method"] in FIXED_METHODS and new["step_size"] is None:
            raise ValueError(f"`step_size`: required for the fixed-step method {new['method']!r}")
        if new["method"] in ADAPTIVE_METHODS and new["step_size"] is not None:
            raise ValueError(f"`step_size`: only for fixed-step methods; {new['method']!r} is adaptive")
        for name, value in new.items():
            setattr(self, name, value)
        return self

    def solver_options(self) -> dict:
        """The current solver settings as a dict (for tables and cache keys)."""
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, "step_size": self.step_size,
                "adjoint": self.adjoint, "max_num_steps": self.max_num_steps, "t1": self.t1}

    def _solve(self, y0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        self.func.nfe = 0
        out = solve_ode(self.func, y0, times, method=self.method, rtol=self.rtol, atol=self.atol,
                        step_size=self.step_size, adjoint=self.adjoint, max_num_steps=self.max_num_steps)
        self.nfe_forward = self.func.nfe
        return out

    @property
    def nfe_backward(self) -> int:
        """Function evaluations of the last backward pass (adjoint solve), after ``loss.backward()``;
        0 when back-propagating through the solver (autograd replays no evaluations)."""
        return self.func.nfe - self.nfe_forward

    def _init_solver(self, method, rtol, atol, step_size, adjoint, max_num_steps, t1):
        self.method, self.rtol, self.atol, self.step_size = "dopri5", 0.0, 1e-3, None
        self.adjoint, self.max_num_steps, self.t1 = False, 1000, 1.0
        self.nfe_forward = 0
        self.configure_solver(method=method, rtol=rtol, atol=atol, step_size=step_size, adjoint=adjoint,
                              max_num_steps=max_num_steps, t1=t1)


class ContourEvolution(_NeuralODEModel):
    r"""Contour Evolution with a Neural ODE [NODE-LS, Eq. 3].

    .. math::
        \gamma = (\hat\phi, h),\quad \frac{d\gamma}{dt} = f_\theta(\gamma, t),\ t\in[0, 1],\quad
        \gamma^{(0)} = (\hat\phi^{(0)}, h^{(0)}),\quad \tilde\phi = \hat\phi^{(1)} + \psi(\gamma^{(1)}).

    Here :math:`h^{(0)} = g_\theta(I)` (the paper's :math:`\lambda(I)`) is a learned two-layer
    conv embedding of the image (the paper does not say how :math:`h^{(0)}` is made), :math:`f_\theta` is an :class:`ODEFunc` and
    :math:`\psi` (the paper's "Postnet") a two-layer conv head. The state carries
    :math:`\hat\phi/s` (``scale`` :math:`s` in pixels) so that all channels have unit magnitude;
    the output is back in pixels. The last layers of :math:`f_\theta` and :math:`\psi` are zero
    [NODE-LS, §3.3], so at initialisation :math:`\tilde\phi = \hat\phi^{(0)}`: bit for bit with a
    fixed-step solver (``method="rk4"``, the example below); with ``dopri5`` up to the rounding of
    its dense-output interpolation at :math:`t_1`, about :math:`10^{-6}` relative (1e-5 pixels for
    :math:`|\phi| \approx 10` in float32, 1e-12 in float64).

    Args:
        image_channels: channels of :math:`I`. embed_channels: channels of :math:`h`.
        hidden, layers, dilation: of :math:`f_\theta` (see :class:`ODEFunc`).
        scale: :math:`s` (pixels), the state's distance unit; use the narrow-band loss' ``scale``.
        method, rtol, atol, step_size, adjoint, max_num_steps: solver (see :func:`solve_ode`);
            defaults are the paper's: ``dopri5`` (RK45), ``rtol=0``, ``atol=1e-3``, adjoint on.
        t1: end time (the paper integrates over [0, 1]).

    ``forward(image, phi0)`` takes ``(N, C, H, W)`` and ``(N, 1, H, W)`` and returns
    :math:`\tilde\phi` ``(N, 1, H, W)``; ``nfe_forward``/``nfe_backward`` count evaluations.

    Example:
        >>> net = ContourEvolution(image_channels=1, method="rk4", step_size=0.5, adjoint=False)
        >>> phi0 = torch.randn(2, 1, 16, 16)
        >>> bool(torch.equal(net(torch.rand(2, 1, 16, 16), phi0), phi0)), net.nfe_forward   # identity at init
        (True, 8)
    """

    def __init__(self, image_channels: int = 1, embed_channels: int = 8, hidden: int = 32, layers: int = 3,
                 scale: float = 3.0, method: str = "dopri5", rtol: float = 0.0, atol: float = 1e-3,
                 step_size: float | None = None, adjoint: bool = True, max_num_steps: int = 1000,
                 t1: float = 1.0, time_channel: bool = True, groups: int = 8, dilation: int = 1):
        super().__init__()
        self.image_channels = check_int(image_channels, "image_channels", low=1)
        self.scale = check_float(scale, "scale", low=0.0, low_open=True)
        self.embed = _conv_block(image_channels, embed_channels, hidden, groups)   # g_theta (the paper's lambda)
        self.func = ODEFunc(1 + embed_channels, hidden, layers, time_channel, groups, dilation)
        self.postnet = _zero_last(_conv_block(1 + embed_channels, 1, hidden, groups))   # psi
        self._init_solver(method, rtol, atol, step_size, adjoint, max_num_steps, t1)

    def _initial_state(self, image, phi0):
        d = check_shape(image, "image", f"N {self.image_channels} H W")
        check_shape(phi0, "phi0", "N 1 H W", d)
        check_finite(image, "image")
        _check_phi(phi0, "phi0")
        return torch.cat([phi0 / self.scale, self.embed(image)], 1)

    def forward(self, image: torch.Tensor, phi0: torch.Tensor) -> torch.Tensor:
        gamma0 = self._initial_state(image, phi0)
        t = torch.tensor([0.0, self.t1], dtype=gamma0.dtype, device=gamma0.device)
        gamma1 = self._solve(gamma0, t)[-1]
        # = s * (phi_hat(1) + psi(gamma(1))), written as an increment so that the identity at
        # initialisation (f = 0, psi = 0) holds bit for bit, not just up to phi0 / s * s rounding.
        return phi0 + self.scale * ((gamma1[:, :1] - gamma0[:, :1]) + self.postnet(gamma1))

    def trajectory(self, image: torch.Tensor, phi0: torch.Tensor, times: Sequence[float],
                   readout: bool = False) -> torch.Tensor:
        r"""The state's distance channel at ``times``, ``(T, N, 1, H, W)`` in pixels.

        ``readout=False``: :math:`s\,\hat\phi^{(t)}`, the first channel of :math:`\gamma(t)` alone.
        ``readout=True``: :math:`s\,(\hat\phi^{(t)} + \psi(\gamma^{(t)}))`, the model's output as if
        the integration stopped at :math:`t` (it equals ``forward`` at :math:`t=1`; :math:`\psi` is
        trained only there)."""
        gamma0 = self._initial_state(image, phi0)
        t = torch.as_tensor(list(times), dtype=gamma0.dtype, device=gamma0.device)
        prepend = float(t[0]) != 0.0
        if prepend:
            t = torch.cat([t.new_zeros(1), t])
        gammas = self._solve(gamma0, t)[int(prepend):]
        if not readout:
            return phi0 + self.scale * (gammas[:, :, :1] - gamma0[:, :1])
        return torch.stack([phi0 + self.scale * ((g[:, :1] - gamma0[:, :1]) + self.postnet(g)) for g in gammas])


class ImageEvolution(_NeuralODEModel):
    r"""Image Evolution with a Neural ODE [NODE-LS, Eq. 4]:
    :math:`\frac{dh}{dt} = f_\theta(h,t)`, :math:`h^{(0)} = g_\theta(I)`, :math:`\tilde\phi = \psi(h^{(1)})`.

    A continuous-depth ResNet with a distance-map head: :math:`\lambda` is a two-layer conv
    embedding, :math:`f_\theta` an :class:`ODEFunc` (last layer zero), :math:`\psi` a two-layer
    conv head (last layer zero, [NODE-LS, §3.3]) whose output is multiplied by ``scale``. No
    initial contour is needed.

    Args: as :class:`ContourEvolution`, with ``channels`` the width of :math:`h`.

    Example:
        >>> net = ImageEvolution(image_channels=1, method="euler", step_size=0.25, adjoint=False)
        >>> tuple(net(torch.rand(2, 1, 16, 16)).shape), net.nfe_forward
        ((2, 1, 16, 16), 4)
    """

    def __init__(self, image_channels: int = 1, channels: int = 16, hidden: int = 32, layers: int = 3,
                 scale: float = 3.0, method: str = "dopri5", rtol: float = 0.0, atol: float = 1e-3,
                 step_size: float | None = None, adjoint: bool = True, max_num_steps: int = 1000,
                 t1: float = 1.0, time_channel: bool = True, groups: int = 8, dilation: int = 1):
        super().__init__()
        self.image_channels = check_int(image_channels, "image_channels", low=1)
        self.scale = check_float(scale, "scale", low=0.0, low_open=True)
        self.embed = _conv_block(image_channels, channels, hidden, groups)   # g_theta (the paper's lambda)
        self.func = ODEFunc(channels, hidden, layers, time_channel, groups, dilation)
        self.postnet = _zero_last(_conv_block(channels, 1, hidden, groups))   # psi
        self._init_solver(method, rtol, atol, step_size, adjoint, max_num_steps, t1)

    def _initial_state(self, image):
        check_shape(image, "image", f"N {self.image_channels} H W")
        check_finite(image, "image")
        return self.embed(image)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h0 = self._initial_state(image)
        t = torch.tensor([0.0, self.t1], dtype=h0.dtype, device=h0.device)
        return self.scale * self.postnet(self._solve(h0, t)[-1])

    def trajectory(self, image: torch.Tensor, times: Sequence[float]) -> torch.Tensor:
        r""":math:`s\,\psi(h^{(t)})` at ``times`` (``(T, N, 1, H, W)``); only :math:`t=1` is trained."""
        h0 = self._initial_state(image)
        t = torch.as_tensor(list(times), dtype=h0.dtype, device=h0.device)
        prepend = float(t[0]) != 0.0
        if prepend:
            t = torch.cat([t.new_zeros(1), t])
        hs = self._solve(h0, t)[int(prepend):]
        return torch.stack([self.scale * self.postnet(h) for h in hs])


class ResidualRefiner(nn.Module):
    r"""The discrete counterpart of :class:`ContourEvolution`: ``blocks`` residual steps with their own weights.

    .. math::
        \gamma_{k+1} = \gamma_k + h\,f_{\theta_k}(\gamma_k, t_k),\quad t_k = kh,\ h = 1/K,\quad
        \tilde\phi = \hat\phi_K + \psi(\gamma_K),

    with the same embedding :math:`\lambda`, the same dynamics network (an :class:`ODEFunc` per
    block, last layer zero) and the same readout :math:`\psi` as Contour Evolution, and ``blocks``
    = :math:`K` function evaluations. With one network shared by all blocks this *is* Contour
    Evolution solved by forward Euler with step :math:`h` (Chapter 2 checks it); with a network per
    block (this class) it is a ResNet of :math:`K` blocks, a discrete map with :math:`K` times the
    dynamics' parameters and no continuous-time limit — no solver, step size or tolerance to
    change at test time. Ours, not the paper's: the baseline that asks whether continuity matters.

    Args:
        image_channels, embed_channels, hidden, layers, scale, time_channel, groups, dilation: as
            :class:`ContourEvolution`.
        blocks: :math:`K` (>= 1), the number of residual steps (= function evaluations).

    ``forward(image, phi0)`` as :class:`ContourEvolution`; ``nfe_forward`` is ``blocks``.

    Example:
        >>> net = ResidualRefiner(image_channels=1, blocks=4)
        >>> phi0 = torch.randn(2, 1, 16, 16)
        >>> bool(torch.equal(net(torch.rand(2, 1, 16, 16), phi0), phi0)), net.nfe_forward   # identity at init
        (True, 4)
    """

    def __init__(self, image_channels: int = 1, embed_channels: int = 8, hidden: int = 32, layers: int = 3,
                 scale: float = 3.0, blocks: int = 4, time_channel: bool = True, groups: int = 8,
                 dilation: int = 1):
        super().__init__()
        self.image_channels = check_int(image_channels, "image_channels", low=1)
        self.scale = check_float(scale, "scale", low=0.0, low_open=True)
        self.blocks = check_int(blocks, "blocks", low=1)
        self.embed = _conv_block(image_channels, embed_channels, hidden, groups)   # g_theta (the paper's lambda)
        self.funcs = nn.ModuleList(ODEFunc(1 + embed_channels, hidden, layers, time_channel, groups, dilation)
                                   for _ in range(self.blocks))
        self.postnet = _zero_last(_conv_block(1 + embed_channels, 1, hidden, groups))   # psi
        self.nfe_forward = 0

    def forward(self, image: torch.Tensor, phi0: torch.Tensor) -> torch.Tensor:
        d = check_shape(image, "image", f"N {self.image_channels} H W")
        check_shape(phi0, "phi0", "N 1 H W", d)
        check_finite(image, "image")
        _check_phi(phi0, "phi0")
        gamma0 = torch.cat([phi0 / self.scale, self.embed(image)], 1)
        gamma, h = gamma0, 1.0 / self.blocks
        for k, func in enumerate(self.funcs):
            t = torch.tensor(k * h, dtype=gamma.dtype, device=gamma.device)
            gamma = gamma + h * func(t, gamma)
        self.nfe_forward = self.blocks
        return phi0 + self.scale * ((gamma[:, :1] - gamma0[:, :1]) + self.postnet(gamma))
