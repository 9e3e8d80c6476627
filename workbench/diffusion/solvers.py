"""The solver registry `SOLVERS`: every solver one function with one signature.

    solver(ev, x, grid, opts) -> x at grid.ts[-1]

registered with `@register(name, orders=..., label=...)`. The registry is complete once this
module is imported (it imports DPM-Solver-v3's module, which registers itself, at its end), so
every lookup sees every solver whoever imported what.

`ev(x, t)` returns the model's (x_0, eps) and counts one model call; `grid` carries ts, alphas,
sigmas and lambdas (lambda = log(alpha / sigma)); `opts` is a SolverOptions. Notation follows
DPM-Solver: h_i = lambda_i - lambda_{i-1} > 0 as the solve moves toward data.

Multistep methods share one loop, `multistep`: one model call per step, the method records it
(and may correct x there), the order of the step, then the method's step. Lower-order final
steps: with `opts.lower_order_final` and fewer than 15 steps, multistep
solvers of order k use order min(k, steps left) at the end, as diffusers does (it stabilizes
few-step sampling; at 15+ steps the full order is kept).
"""

from __future__ import annotations

import inspect
import math
from typing import Protocol

import numpy as np
import torch

from workbench.diffusion.core import Evaluator, Grid, SolverOptions, SolverSpec
from workbench.registry import Registry

LOWER_ORDER_FINAL_BELOW = 15

SOLVERS: Registry[SolverSpec] = Registry("solver")
# solvers in sigma / alpha (0 at a path's data end, infinite at its pure noise) may end at
# sigma = 0 (lambda = +inf) but not start at alpha = 0; see SolverSpec.infinite_log_snr
AT_DATA = ("t_end",)


def register(
    name: str,
    *,
    orders: tuple[int, ...] = (1,),
    default_order: int | None = None,
    stochastic: bool = False,
    accepts_corrector: bool = False,
    options: tuple[str, ...] = (),
    label: str | None = None,
    infinite_log_snr: tuple[str, ...] = (),
):
    """Decorator: register `fn` as solver `name` (its docstring's first line describes it)."""

    def decorate(fn):
        doc = inspect.getdoc(fn) or ""
        spec = SolverSpec(
            name,
            fn,
            orders,
            default_order or max(orders),
            doc.splitlines()[0] if doc else "",
            stochastic,
            accepts_corrector,
            options,
            infinite_log_snr,
        )
        SOLVERS.add(name, spec, label=label)
        return fn

    return decorate


def step_order(i: int, grid: Grid, opts: SolverOptions) -> int:
    """The order of step i (1-based) of a multistep method: opts.order once i - 1 earlier
    outputs exist, lowered on the last steps of a short solve (lower_order_final)."""
    order = min(opts.order, i)
    if opts.lower_order_final and grid.steps < LOWER_ORDER_FINAL_BELOW:
        order = min(order, grid.steps - i + 1)
    return order


class MultistepMethod(Protocol):
    """What a multistep method plugs into `multistep`."""

    def observe(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor):
        """Record the model's (x0, eps) at x = x_{i-1}; return x there (a corrector may move it)."""

    def step(self, i: int, x: torch.Tensor, order: int) -> torch.Tensor:
        """x at t_i from x at t_{i-1} with a step of `order`."""


def multistep(
    ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions, method: MultistepMethod
) -> torch.Tensor:
    """The loop of every multistep solver: one model call at t_{i-1} per step, the method
    observes it, then steps to t_i at the order `step_order` allows."""
    for i in range(1, grid.steps + 1):
        x0, eps = ev(x, grid.ts[i - 1])
        x = method.observe(i, x, x0, eps)
        x = method.step(i, x, step_order(i, grid, opts))
        _callback(opts, i, x)
    return x


@register("ddim", orders=(1,), label="DDIM", infinite_log_snr=("t_start", "t_end"))
def ddim(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """DDIM (eta = 0): x_{i} = alpha_i x0_hat + sigma_i eps_hat, the first-order exponential
    integrator; identical to Euler in the VE-equivalent sigma = sigma_t / alpha_t, and to Euler
    in t on a path whose alpha and sigma are affine in t (rectified, CondOT). It needs no
    lambda, so it runs from a path's pure noise (alpha = 0) to its data (sigma = 0)."""
    for i in range(1, grid.steps + 1):
        x0, eps = ev(x, grid.ts[i - 1])
        x = grid.alphas[i] * x0 + grid.sigmas[i] * eps
        if opts.callback:
            opts.callback(i, x)
    return x


# ------------------------------------------------------------------ shared pieces
def _callback(opts: SolverOptions, i: int, x: torch.Tensor) -> None:
    if opts.callback:
        opts.callback(i, x)


def _unic_correct(
    grid: Grid,
    i: int,
    x_prev: torch.Tensor,
    data: list[torch.Tensor],
    data_new: torch.Tensor,
    order: int,
    variant: str = "bh2",
) -> torch.Tensor:
    """UniC-p (Zhao et al. 2023) in the data prediction: re-do step i (t_{i-1} -> t_i) from x_prev
    using the model output `data_new` at the predicted point, for accuracy order p + 1.

    `data[-1]` is the data prediction at t_{i-1}, `data[-2]` at t_{i-2}, ...; p = `order` is the
    order of the predictor step being corrected (it used the same p history points). Follows
    diffusers' `multistep_uni_c_bh_update` with predict_x0=True.
    """
    h = grid.lambdas[i] - grid.lambdas[i - 1]
    hh = -h  # data prediction integrates e^{-h}
    h_phi_1 = torch.expm1(hh)
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    m0 = data[-1]
    rks, differences = _unipc_differences(grid, i, data, order)
    rhos = _unipc_rhos(rks, hh, b_h, order)
    correction = sum((rhos[k] * d for k, d in enumerate(differences)), torch.zeros_like(m0))
    correction = correction + rhos[-1] * (data_new - m0)
    x = (grid.sigmas[i] / grid.sigmas[i - 1]) * x_prev - grid.alphas[i] * h_phi_1 * m0
    return x - grid.alphas[i] * b_h * correction


def _unipc_differences(grid: Grid, i: int, data: list, order: int):
    """UniPC's r_k = (lambda_{i-1-k} - lambda_{i-1}) / h (with r = 1 for the new point last) and
    the scaled differences D_k = (m_k - m_0) / r_k of the data predictions, k = 1..order-1."""
    h = grid.lambdas[i] - grid.lambdas[i - 1]
    rks = [(grid.lambdas[i - 1 - k] - grid.lambdas[i - 1]) / h for k in range(1, order)]
    differences = [(data[-1 - k] - data[-1]) / rks[k - 1] for k in range(1, order)]
    return torch.stack([*rks, torch.ones((), dtype=h.dtype)]), differences


def _unipc_system(rks: torch.Tensor, hh, b_h, order: int, predictor: bool = False):
    """UniPC's linear system R rho = b: R_kj = r_j^(k-1), b_k = k! h phi_{k+1}(h) / B(h).

    The predictor has no value at the new point, so it drops the last row and column.
    """
    rows, rhs = [], []
    h_phi_k, factorial = torch.expm1(hh) / hh - 1, 1
    for k in range(1, order + 1):
        rows.append(rks ** (k - 1))
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    matrix, vector = torch.stack(rows), torch.stack(rhs)
    return (matrix[:-1, :-1], vector[:-1]) if predictor else (matrix, vector)


def _unipc_rhos(rks: torch.Tensor, hh, b_h, order: int) -> torch.Tensor:
    """The corrector's rhos; UniC-1 uses rho = 1/2 (trapezoidal), as the paper and diffusers."""
    if order == 1:
        return torch.full((1,), 0.5, dtype=rks.dtype)
    return torch.linalg.solve(*_unipc_system(rks, hh, b_h, order))


class _Corrector:
    """Applies UniC after each step of a multistep predictor when opts.corrector == "unic".

    It reuses the model call at the new point (the predictor needs it anyway), so it costs no
    extra NFE; the last step stays uncorrected because there is no model call after it.
    """

    def __init__(self, grid: Grid, opts: SolverOptions, variant: str = "bh2"):
        self.grid, self.enabled, self.variant = grid, opts.corrector == "unic", variant
        self.data: list[torch.Tensor] = []
        self.last = None  # (step index, x before the step, predictor order)

    def observe(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Record the data prediction at the current point; return the corrected x there."""
        if self.enabled and self.last is not None:
            i, x_prev, order = self.last
            x = _unic_correct(self.grid, i, x_prev, self.data, x0, order, self.variant)
        self.data = [*self.data[-3:], x0]  # UniC-3 needs at most 3 earlier points
        return x

    def stepped(self, i: int, x_prev: torch.Tensor, order: int) -> None:
        self.last = (i, x_prev, order)


class _Predictor:
    """A multistep predictor UniC can follow: `observe` applies the corrector at the new point
    (its `data` is the history of data predictions the predictors read) and `remember`s the
    outputs the subclass keeps; `step` tells the corrector the step, then `advance`s."""

    def __init__(self, grid: Grid, opts: SolverOptions, variant: str = "bh2"):
        self.grid = grid
        self.corrector = _Corrector(grid, opts, variant)

    def observe(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor):
        x = self.corrector.observe(x, x0)
        self.remember(x0, eps)
        return x

    def remember(self, x0: torch.Tensor, eps: torch.Tensor) -> None:
        """Keep what `advance` needs beyond the data predictions (nothing, by default)."""

    def step(self, i: int, x: torch.Tensor, order: int) -> torch.Tensor:
        self.corrector.stepped(i, x, order)
        return self.advance(i, x, order)

    def advance(self, i: int, x: torch.Tensor, order: int) -> torch.Tensor:
        raise NotImplementedError


# ------------------------------------------------------------------ DPM-Solver++ multistep
def _dpmpp_multistep_update(grid: Grid, i: int, x: torch.Tensor, data: list, order: int):
    """One DPM-Solver++ step t_{i-1} -> t_i of order 1-3 from data predictions data[-1], data[-2],
    data[-3] at t_{i-1}, t_{i-2}, t_{i-3} (diffusers' dpmsolver++ midpoint formulas)."""
    lam = grid.lambdas
    h = lam[i] - lam[i - 1]
    em1 = torch.expm1(-h)  # e^{-h} - 1
    x = (grid.sigmas[i] / grid.sigmas[i - 1]) * x - grid.alphas[i] * em1 * data[-1]
    if order == 1:
        return x
    r0 = (lam[i - 1] - lam[i - 2]) / h
    d1_0 = (data[-1] - data[-2]) / r0
    if order == 2:
        return x - 0.5 * grid.alphas[i] * em1 * d1_0
    r1 = (lam[i - 2] - lam[i - 3]) / h
    d1_1 = (data[-2] - data[-3]) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    return x + grid.alphas[i] * (em1 / h + 1) * d1 - grid.alphas[i] * ((em1 + h) / h**2 - 0.5) * d2


class _DPMSolverPP(_Predictor):
    def advance(self, i: int, x: torch.Tensor, order: int) -> torch.Tensor:
        return _dpmpp_multistep_update(self.grid, i, x, self.corrector.data, order)


@register("dpmpp_2m", orders=(1, 2), accepts_corrector=True, label="DPM-Solver++(2M)")
def dpmpp_2m(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """DPM-Solver++(2M): multistep second order in the data prediction (Lu et al. 2022)."""
    return multistep(ev, x, grid, opts, _DPMSolverPP(grid, opts))


@register("dpmpp_3m", orders=(1, 2, 3), accepts_corrector=True, label="DPM-Solver++(3M)")
def dpmpp_3m(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """DPM-Solver++(3M): multistep third order in the data prediction (Lu et al. 2022)."""
    return multistep(ev, x, grid, opts, _DPMSolverPP(grid, opts))


class _SDEDPMSolverPP:
    """SDE-DPM-Solver++(2M)'s step: the data predictions at the last two points and fresh noise."""

    def __init__(self, grid: Grid, opts: SolverOptions):
        self.grid, self.generator = grid, opts.generator
        self.data: list[torch.Tensor] = []

    def observe(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor):
        self.data = [*self.data[-1:], x0]
        return x

    def step(self, i: int, x: torch.Tensor, order: int) -> torch.Tensor:
        grid, x0 = self.grid, self.data[-1]
        h = grid.lambdas[i] - grid.lambdas[i - 1]
        one_minus = -torch.expm1(-2 * h)  # 1 - e^{-2h}
        d = x0
        if order == 2:
            r0 = (grid.lambdas[i - 1] - grid.lambdas[i - 2]) / h
            d = x0 + 0.5 * (x0 - self.data[-2]) / r0
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        return (
            (grid.sigmas[i] / grid.sigmas[i - 1] * torch.exp(-h)) * x
            + grid.alphas[i] * one_minus * d
            + grid.sigmas[i] * torch.sqrt(one_minus) * noise
        )


@register("sde_dpmpp_2m", orders=(1, 2), stochastic=True, label="SDE-DPM-Solver++(2M)")
def sde_dpmpp_2m(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """SDE-DPM-Solver++(2M): the reverse SDE in the data prediction, midpoint form (Lu et al.
    2022; diffusers' sde-dpmsolver++), noise drawn from opts.generator."""
    return multistep(ev, x, grid, opts, _SDEDPMSolverPP(grid, opts))


# ------------------------------------------------------------------ UniPC
def _unip_update(grid: Grid, i: int, x: torch.Tensor, data: list, order: int, variant: str):
    """UniP-p step t_{i-1} -> t_i in the data prediction (diffusers' multistep_uni_p_bh_update)."""
    h = grid.lambdas[i] - grid.lambdas[i - 1]
    hh = -h
    h_phi_1 = torch.expm1(hh)
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    m0 = data[-1]
    x_next = (grid.sigmas[i] / grid.sigmas[i - 1]) * x - grid.alphas[i] * h_phi_1 * m0
    if order == 1:
        return x_next
    rks, differences = _unipc_differences(grid, i, data, order)
    if order == 2:
        rhos = [0.5]  # UniP-2 uses the fixed 1/2 (the paper's and diffusers' choice)
    else:
        # the predictor has no value at the new point: drop its row and column
        rhos = torch.linalg.solve(*_unipc_system(rks, hh, b_h, order, predictor=True))
    prediction = sum(rhos[k] * d for k, d in enumerate(differences))
    return x_next - grid.alphas[i] * b_h * prediction


class _UniPC(_Predictor):
    """UniP with UniC after every step (the corrector is part of the method)."""

    def __init__(self, grid: Grid, opts: SolverOptions, variant: str):
        super().__init__(grid, opts, variant)
        self.corrector.enabled, self.variant = True, variant

    def advance(self, i: int, x: torch.Tensor, order: int) -> torch.Tensor:
        return _unip_update(self.grid, i, x, self.corrector.data, order, self.variant)


@register("unipc_bh1", orders=(1, 2, 3), default_order=2, label="UniPC (B(h) = h)")
def unipc_bh1(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """UniPC with B(h) = h (Zhao et al. 2023): UniP + UniC in the data prediction, NFE = steps."""
    return multistep(ev, x, grid, opts, _UniPC(grid, opts, "bh1"))


@register("unipc_bh2", orders=(1, 2, 3), default_order=2, label="UniPC (B(h) = e^h - 1)")
def unipc_bh2(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """UniPC with B(h) = e^h - 1 (Zhao et al. 2023): UniP + UniC in the data prediction."""
    return multistep(ev, x, grid, opts, _UniPC(grid, opts, "bh2"))


# ------------------------------------------------------------------ DEIS
def _lagrange_basis(node: float, others: list[float]) -> np.polynomial.Polynomial:
    """The polynomial that is 1 at `node` and 0 at each of `others`."""
    basis = np.polynomial.Polynomial([1.0])
    for other in others:
        basis = basis * np.polynomial.Polynomial([-other, 1.0]) / (node - other)
    return basis


def _deis_weights(log_rhos: list[float], log_rho_to: float) -> list[float]:
    """int_{rho_0}^{rho_to} L_j(log rho) d rho for the Lagrange basis L_j on the nodes log_rhos.

    With u = log rho the integrand is e^u L_j(u), integrated exactly: an antiderivative of
    e^u p(u) is e^u (p - p' + p'' - ...).
    """
    weights = []
    for j, node in enumerate(log_rhos):
        others = [u for k, u in enumerate(log_rhos) if k != j]
        basis = _lagrange_basis(node, others)
        alternating = sum(((-1) ** k) * basis.deriv(k) for k in range(len(log_rhos)))
        weights.append(
            math.exp(log_rho_to) * alternating(log_rho_to)
            - math.exp(log_rhos[0]) * alternating(log_rhos[0])
        )
    return weights


class _DEIS(_Predictor):
    """DEIS's step from the last three noise predictions (eps stays the model's under UniC, as
    UniPC keeps its outputs)."""

    def __init__(self, grid: Grid, opts: SolverOptions):
        super().__init__(grid, opts)
        self.noise: list[torch.Tensor] = []
        self.log_rhos = (-grid.lambdas).tolist()  # rho = sigma / alpha = e^{-lambda}

    def remember(self, x0: torch.Tensor, eps: torch.Tensor) -> None:
        self.noise = [*self.noise[-2:], eps]

    def advance(self, i: int, x: torch.Tensor, order: int) -> torch.Tensor:
        log_rhos, alphas = self.log_rhos, self.grid.alphas
        weights = _deis_weights([log_rhos[i - 1 - k] for k in range(order)], log_rhos[i])
        y = x / alphas[i - 1] + sum(w * self.noise[-1 - k] for k, w in enumerate(weights))
        return alphas[i] * y


@register("deis", orders=(1, 2, 3), accepts_corrector=True, label="DEIS")
def deis(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """DEIS tAB (Zhang & Chen 2022): x/alpha advanced by the exact integral of the Lagrange
    polynomial of eps in log(sigma/alpha), as diffusers' DEISMultistepScheduler."""
    return multistep(ev, x, grid, opts, _DEIS(grid, opts))


# ------------------------------------------------------------------ iPNDM
IPNDM_COEFFICIENTS = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def _adams_bashforth_weights(nodes: list[float], to: float) -> list[float]:
    """int_{nodes[0]}^{to} L_j(s) ds for the Lagrange basis on `nodes` (variable-step AB)."""
    weights = []
    for j, node in enumerate(nodes):
        others = [u for k, u in enumerate(nodes) if k != j]
        basis = _lagrange_basis(node, others)
        antiderivative = basis.integ()
        weights.append(antiderivative(to) - antiderivative(nodes[0]))
    return weights


class _IPNDM(_Predictor):
    """Adams-Bashforth on the slopes d(x/alpha)/d sigma~ = eps, sigma~ = e^{-lambda}: fixed
    uniform-step coefficients, or variable-step ones from the nodes."""

    def __init__(self, grid: Grid, opts: SolverOptions, variable: bool):
        super().__init__(grid, opts)
        self.keep, self.variable = opts.order, variable
        self.sigmas = (grid.sigmas / grid.alphas).tolist()  # the VE-equivalent sigma~
        self.slopes: list[torch.Tensor] = []

    def remember(self, x0: torch.Tensor, eps: torch.Tensor) -> None:
        self.slopes = [*self.slopes[-(self.keep - 1) :], eps] if self.keep > 1 else [eps]

    def advance(self, i: int, x: torch.Tensor, order: int) -> torch.Tensor:
        sigmas, alphas = self.sigmas, self.grid.alphas
        if self.variable:
            nodes = [sigmas[i - 1 - k] for k in range(order)]
            weights = _adams_bashforth_weights(nodes, sigmas[i])
        else:
            weights = [(sigmas[i] - sigmas[i - 1]) * c for c in IPNDM_COEFFICIENTS[order]]
        y = x / alphas[i - 1] + sum(w * self.slopes[-1 - k] for k, w in enumerate(weights))
        return alphas[i] * y


@register(
    "ipndm", orders=(1, 2, 3, 4), accepts_corrector=True, label="iPNDM", infinite_log_snr=AT_DATA
)
def ipndm(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """iPNDM (Zhang & Chen 2022; k-diffusion sample_ipndm): Adams-Bashforth on eps in
    x/alpha vs sigma/alpha with the fixed uniform-step coefficients and lower-order warm-up."""
    return multistep(ev, x, grid, opts, _IPNDM(grid, opts, variable=False))


@register(
    "ipndm_v",
    orders=(1, 2, 3, 4),
    accepts_corrector=True,
    label="iPNDM (variable step)",
    infinite_log_snr=AT_DATA,
)
def ipndm_v(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """iPNDM with variable-step Adams-Bashforth coefficients (k-diffusion sample_ipndm_v):
    full order on any grid, where fixed coefficients fall to order 2 on non-uniform steps."""
    return multistep(ev, x, grid, opts, _IPNDM(grid, opts, variable=True))


# ------------------------------------------------------------------ single-step methods
@register("heun", orders=(2,), label="Heun (EDM)", infinite_log_snr=AT_DATA)
def heun(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """EDM's Heun (Karras et al. 2022, Alg. 1 without churn) on x/alpha in sigma~ = sigma/alpha.

    Every step is second order (2 NFE), the last one too; only a step landing on sigma = 0,
    where the model cannot be evaluated, is a plain Euler step (1 NFE), as in EDM.
    """
    sigmas = grid.sigmas / grid.alphas
    for i in range(1, grid.steps + 1):
        y = x / grid.alphas[i - 1]
        slope = ev(x, grid.ts[i - 1])[1]
        step = sigmas[i] - sigmas[i - 1]
        y_next = y + step * slope
        if sigmas[i] > 0:
            slope_next = ev(grid.alphas[i] * y_next, grid.ts[i])[1]
            y_next = y + step * 0.5 * (slope + slope_next)
        x = grid.alphas[i] * y_next
        _callback(opts, i, x)
    return x


def _at_lambda(grid: Grid, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = grid.schedule.t_of_lambda(lam)
    return t, grid.schedule.alpha(t), grid.schedule.sigma(t)


@register("dpm_solver", orders=(1, 2, 3), default_order=3, label="DPM-Solver (singlestep)")
def dpm_solver(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """DPM-Solver-1/2/3 singlestep in the noise prediction (Lu et al. 2022, r1 = 1/2; r1 = 1/3,
    r2 = 2/3): `order` model calls per step. lower_order_final does not apply (each step is
    self-starting)."""
    for i in range(1, grid.steps + 1):
        lam_s, h = grid.lambdas[i - 1], grid.lambdas[i] - grid.lambdas[i - 1]
        alpha_s, alpha_t, sigma_t = grid.alphas[i - 1], grid.alphas[i], grid.sigmas[i]
        eps_s = ev(x, grid.ts[i - 1])[1]
        x_next = (alpha_t / alpha_s) * x - sigma_t * torch.expm1(h) * eps_s
        if opts.order == 2:
            t1, alpha_1, sigma_1 = _at_lambda(grid, lam_s + 0.5 * h)
            u1 = (alpha_1 / alpha_s) * x - sigma_1 * torch.expm1(0.5 * h) * eps_s
            x_next = x_next - sigma_t * torch.expm1(h) * (ev(u1, t1)[1] - eps_s)
        elif opts.order == 3:
            r1, r2 = 1 / 3, 2 / 3
            t1, alpha_1, sigma_1 = _at_lambda(grid, lam_s + r1 * h)
            t2, alpha_2, sigma_2 = _at_lambda(grid, lam_s + r2 * h)
            u1 = (alpha_1 / alpha_s) * x - sigma_1 * torch.expm1(r1 * h) * eps_s
            d1 = ev(u1, t1)[1] - eps_s
            phi_2 = torch.expm1(r2 * h) / (r2 * h) - 1
            u2 = (
                (alpha_2 / alpha_s) * x
                - sigma_2 * torch.expm1(r2 * h) * eps_s
                - sigma_2 * (r2 / r1) * phi_2 * d1
            )
            d2 = ev(u2, t2)[1] - eps_s
            x_next = x_next - (sigma_t / r2) * (torch.expm1(h) / h - 1) * d2
        x = x_next
        _callback(opts, i, x)
    return x


# DPM-Solver-v3 registers itself in its own module; importing it here makes SOLVERS complete
# for anyone who imports this module (it imports this one first: `multistep`, `register`)
import workbench.diffusion.dpm_solver_v3  # noqa: E402, F401
