"""Learned time grids: the steps + 1 times of a solver fitted against the exact ODE solution.

Bespoke solvers, USF / S^3 and IIA all show that at 5-10 steps *where* a solver evaluates the
model matters a great deal (USF / S^3 search it jointly with the solver; IIA and Bespoke fit
per-step coefficients instead). `fit_grid` fits the placement alone, for a given solver:

- Parametrization. The ends stay fixed; the interior is set by the lambda (log-SNR) increments
  h_i > 0 of the steps, h = span * (floor + (1 - steps * floor) * softmax(logits)). The
  increments are positive and sum to the span for every value of the logits, so the optimizer
  is unconstrained and every iterate is a valid, strictly decreasing grid. The last logit is
  pinned to 0, which removes softmax's shift invariance and leaves exactly steps - 1 free
  variables, one per interior point.
- Objective. The mean L2 error of `sample(...)` against `reference_solution(...)` on `n_train`
  noises x_T ~ N(0, sigma(t_start)^2 I) drawn from `seed`.
- Optimizer. L-BFGS-B on the exact gradient, which torch autograd computes through `sample`
  itself (the solvers are plain torch, and a grid object's times are used as given, so their
  gradient survives; it matches central differences to 1e-10). Measured on the ring mixture
  from the logsnr grid: ddim at 5 steps reaches 0.0745 in 18 evaluations, where Nelder-Mead
  stops at 0.193 (240) and Powell at 0.106 (776); dpmpp_2m at 10 steps reaches 0.0015 in ~430
  (to convergence, 128 noises), Nelder-Mead 0.0097 in 1799, Powell 0.0016 in 3556. The
  gradient method is 10-40x cheaper.
  Its one requirement is that the solver keeps the times in the autograd graph; one that
  computes its coefficients with float() or numpy cuts them out, and its gradient is wrong. So
  the gradient is first checked against a central difference along one direction, and where
  it fails L-BFGS-B runs on forward differences instead (steps - 1 extra evaluations per
  gradient). That fallback beat Powell on every such solver measured (ddim with float
  coefficients at 5 steps: 0.0745 in 90 evaluations vs Powell's 0.106; deis: 0.0267 in 470 vs
  0.0267 in 1608; ipndm: 0.0202 in 375 vs 0.0221 in 448).
- Run to convergence, on log(error). L-BFGS-B's stopping test compares the decrease of the
  objective with max(|f|, 1), so on the raw error (~1e-3 at 10 steps) its default tolerance
  is ~1e-6 of the error, and dpmpp_2m at 10 steps crawled along a valley into max_iter=200
  short of the minimum: where it stopped depended on rounding (the smoke fit's gain over the
  best hand grid read 17, 26, 31 and 32 under different MKL code paths). The log of the error
  makes both tolerances relative, the memory holds every interior point (no limited-memory
  loss), and the tolerances are tight, so each start ends at its minimum: the same one, to 6
  digits, under MKL_CBWR=COMPATIBLE, AVX2 and the default path.
- Several starts. The error has several basins (dpmpp_2m at 5 steps on the ring: 0.014 from
  logsnr and karras, 0.024 from time_uniform and time_quadratic; which one a start reaches
  can depend on the optimizer's path), so by default the fit runs from the logsnr and the
  time_quadratic grid and keeps the lower training error; errors within 1e-6 relative count as
  a tie and the earlier start wins, so the choice cannot flip on rounding.

A `FittedGrid` is a grid object for `sample(..., grid=fitted)`: it answers `times()` only for
the schedule, steps and ends it was fitted for. Fits are memoized by the content of the model
and the settings (`workbench.memo`), so asking again for the same fit returns the same object
at no cost.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from workbench.diffusion.grids import GRIDS, make_grid
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import SOLVERS, prior_noise, reference_solution, sample
from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.memo import Memo
from workbench.registry import unknown_choice

# Every step keeps at least this fraction of the lambda span, so no iterate can merge two
# times into one (which the solvers' h = lambda_i - lambda_{i-1} would divide by).
MIN_STEP_FRACTION = 1e-6
DEFAULT_STARTS = ("logsnr", "time_quadratic")
# L-BFGS-B on log(error): relative decrease and projected-gradient tolerances, and its memory
FTOL, GTOL, MEMORY = 1e-12, 1e-9, 30
TIE_RTOL = 1e-6  # training errors this close count as one minimum: the earlier start wins
FITS = Memo("fitted grids", maxsize=64)  # one entry per single-start fit


@dataclass(frozen=True)
class FittedGrid:
    """Times fitted for one solver, order, step count, schedule and pair of ends.

    `times()` is not told the solver, so nothing stops using the grid with another one; it was
    only optimized for `solver` at `order`.
    """

    solver: str
    order: int
    steps: int
    schedule_name: str
    t_start: float
    t_end: float
    ts: tuple[float, ...]  # steps + 1 strictly decreasing times, exact ends
    lambdas: tuple[float, ...]  # lambda = log(alpha / sigma) at each time, increasing
    init: str
    train_error_before: float  # mean L2 error on the training noises at the `init` grid
    train_error_after: float  # ... and at the fitted grid
    n_train: int
    seed: int
    gradient: str  # "autograd", or "finite differences" where autograd's did not check out
    evaluations: int  # objective evaluations the fit used (with autograd: each with a gradient)
    converged: bool  # the optimizer met its tolerance (rather than stopping at max_iter)
    fit_seconds: float

    def times(
        self, schedule: NoiseSchedule, steps: int, t_start: float, t_end: float
    ) -> torch.Tensor:
        """The fitted times, if asked for the schedule, steps and ends they were fitted for."""
        fitted_for = f"this grid was fitted for {self.solver} at {self.steps} steps"
        if steps != self.steps:
            raise ValueError(f"{fitted_for}; asked for {steps}")
        if schedule.name != self.schedule_name:
            raise ValueError(f"{fitted_for} on {self.schedule_name}; asked for {schedule.name}")
        ends_match = math.isclose(t_start, self.t_start, rel_tol=1e-12) and math.isclose(
            t_end, self.t_end, rel_tol=1e-12
        )
        if not ends_match:
            raise ValueError(
                f"{fitted_for} from t={self.t_start:g} to t={self.t_end:g}; "
                f"asked for t={t_start:g} to t={t_end:g}"
            )
        return torch.tensor(self.ts, dtype=DTYPE)

    @property
    def improvement(self) -> float:
        """How many times smaller the training error is than at the initial grid."""
        return self.train_error_before / self.train_error_after


def fit_grid(
    model: DiffusionModel,
    *,
    solver: str,
    steps: int,
    order: int | None = None,
    n_train: int = 512,
    seed: int = 0,
    init: str | tuple[str, ...] = DEFAULT_STARTS,
    max_iter: int = 1000,
    dim: int = 2,
    t_start: float | None = None,
    t_end: float | None = None,
    **sample_options,
) -> FittedGrid:
    """Fit the interior times of a `steps`-step grid for `solver` to the exact ODE solution.

    `init` names the grid in GRIDS the fit starts from, or several (default: logsnr and
    time_quadratic): then one fit runs from each and the lowest training error wins, the
    earlier start on a tie (the error has several basins; e.g. dpmpp_2m at 5 steps on the ring
    ends at 0.014 from logsnr but 0.024 from time_quadratic). `dim` is the data
    dimension (the toy problems are 2-D); `sample_options` (lower_order_final, corrector,
    denoise_to_zero) go to every `sample` call, so the grid is fitted for those settings.
    """
    starts = (init,) if isinstance(init, str) else tuple(init)
    spec = _check_fittable(solver, starts, steps)
    n_train, max_iter = _check_count("n_train", n_train), _check_count("max_iter", max_iter)
    order = spec.default_order if order is None else order
    schedule = model.schedule
    t_start = schedule.t_max if t_start is None else float(t_start)
    t_end = schedule.t_min if t_end is None else float(t_end)
    settings = {
        "solver": solver, "order": order, "steps": steps, "n_train": n_train, "seed": seed,
        "max_iter": max_iter, "dim": dim, "t_start": t_start, "t_end": t_end,
    }  # fmt: skip
    if len(starts) > 1:
        # each single-start fit is cached, so a repeated multi-start call is free as well
        fits = [fit_grid(model, init=name, **settings, **sample_options) for name in starts]
        return best_fit(fits)

    key = (model, starts[0], settings, sample_options)
    return FITS.get(key, lambda: _fit_from(model, starts[0], settings, sample_options))


def _fit_from(model: DiffusionModel, init: str, settings: dict, sample_options: dict):
    """One fit from the `init` grid (what `fit_grid` memoizes)."""
    started = time.perf_counter()
    solver, order, steps = settings["solver"], settings["order"], settings["steps"]
    t_start, t_end, n_train = settings["t_start"], settings["t_end"], settings["n_train"]
    x_T = _training_noise(model.schedule, t_start, n_train, settings["dim"], settings["seed"])
    target = reference_solution(model, x_T, t_start=t_start, t_end=t_end)
    problem = _GridProblem(model, x_T, target, solver, order, steps, t_start, t_end, sample_options)
    return _fit(problem, init, settings["max_iter"], n_train, settings["seed"], started)


def best_fit(fits: list[FittedGrid]) -> FittedGrid:
    """The fit with the lowest training error; within TIE_RTOL of it, the earliest one."""
    lowest = min(fitted.train_error_after for fitted in fits)
    return next(f for f in fits if f.train_error_after <= lowest * (1 + TIE_RTOL))


def _fit(
    problem: _GridProblem, init: str, max_iter: int, n_train: int, seed: int, started: float
) -> FittedGrid:
    """L-BFGS-B from the `init` grid on log(error), with the autograd gradient or with finite
    differences."""
    schedule = problem.model.schedule
    init_ts = make_grid(schedule, init, problem.steps, problem.t_start, problem.t_end)
    logits0 = problem.parametrization.logits_of(schedule.lambda_(init_ts))
    options = {"maxiter": max_iter, "maxcor": MEMORY}
    if problem.gradient_checks_out(logits0):
        gradient, objective, jac = "autograd", problem.log_error_and_gradient, True
        options |= {"ftol": FTOL, "gtol": GTOL}
    else:
        # a forward difference is good to ~1e-8 relative, so the tight tolerances would only
        # end in a failed line search: the default ones
        gradient, objective, jac = "finite differences", problem.log_error_of_array, "2-point"
    result = minimize(objective, logits0.numpy(), jac=jac, method="L-BFGS-B", options=options)
    best = torch.from_numpy(result.x)
    return FittedGrid(
        solver=problem.solver,
        order=problem.order,
        steps=problem.steps,
        schedule_name=schedule.name,
        t_start=problem.t_start,
        t_end=problem.t_end,
        ts=tuple(problem.times(best).tolist()),
        lambdas=tuple(problem.parametrization.lambdas(best).tolist()),
        init=init,
        train_error_before=problem.error(logits0),
        train_error_after=problem.error(best),
        n_train=n_train,
        seed=seed,
        gradient=gradient,
        evaluations=problem.evaluations,
        converged=bool(result.success),
        fit_seconds=time.perf_counter() - started,
    )


# ------------------------------------------------------------------ the optimization problem
class _LambdaIncrements:
    """Free logits <-> strictly increasing lambdas with both ends fixed."""

    def __init__(self, lam_start: float, lam_end: float, steps: int):
        self.lam_start, self.span, self.steps = lam_start, lam_end - lam_start, steps

    def lambdas(self, logits: torch.Tensor) -> torch.Tensor:
        all_logits = torch.cat([logits, torch.zeros(1, dtype=DTYPE)])  # last pinned to 0
        fractions = MIN_STEP_FRACTION + (1 - self.steps * MIN_STEP_FRACTION) * torch.softmax(
            all_logits, 0
        )
        steps_so_far = torch.cumsum(self.span * fractions, 0)
        return torch.cat(
            [torch.tensor([self.lam_start], dtype=DTYPE), self.lam_start + steps_so_far]
        )

    def logits_of(self, lambdas: torch.Tensor) -> torch.Tensor:
        fractions = torch.diff(lambdas) / self.span
        shares = (fractions - MIN_STEP_FRACTION) / (1 - self.steps * MIN_STEP_FRACTION)
        logits = torch.log(torch.clamp(shares, min=1e-300))
        return (logits - logits[-1])[:-1]


class _TensorGrid:
    """A grid object whose times are a tensor that may require grad (make_grid passes it on)."""

    def __init__(self, ts: torch.Tensor):
        self.ts = ts

    def times(self, schedule, steps, t_start, t_end) -> torch.Tensor:
        return self.ts


class _GridProblem:
    """The training error of one solver configuration as a function of the free logits."""

    def __init__(self, model, x_T, target, solver, order, steps, t_start, t_end, sample_options):
        self.model, self.x_T, self.target = model, x_T, target
        self.solver, self.order, self.steps = solver, order, steps
        self.t_start, self.t_end = t_start, t_end
        self.sample_options = sample_options
        schedule = model.schedule
        self.parametrization = _LambdaIncrements(
            float(schedule.lambda_(t_start)), float(schedule.lambda_(t_end)), steps
        )
        self.evaluations = 0

    def times(self, logits: torch.Tensor) -> torch.Tensor:
        interior = self.model.schedule.t_of_lambda(self.parametrization.lambdas(logits)[1:-1])
        # the ends are given exactly rather than through a lambda round trip
        start, end = (torch.tensor([t], dtype=DTYPE) for t in (self.t_start, self.t_end))
        return torch.cat([start, interior, end])

    def _error_tensor(self, logits: torch.Tensor) -> torch.Tensor:
        out = sample(
            self.model,
            self.x_T,
            solver=self.solver,
            steps=self.steps,
            order=self.order,
            grid=_TensorGrid(self.times(logits)),
            t_start=self.t_start,
            t_end=self.t_end,
            **self.sample_options,
        ).x
        return mean_l2_error(out, self.target)

    def error(self, logits: torch.Tensor) -> float:
        with torch.no_grad():
            return float(self._error_tensor(logits))

    def error_of_array(self, logits: np.ndarray) -> float:
        self.evaluations += 1
        return self.error(torch.from_numpy(logits))

    def log_error_of_array(self, logits: np.ndarray) -> float:
        return math.log(max(self.error_of_array(logits), 1e-300))

    def log_error_and_gradient(self, logits: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = self.error_and_gradient(logits)
        value = max(value, 1e-300)  # an exact fit (error 0) is the minimum already
        return math.log(value), gradient / value

    def error_and_gradient(self, logits: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        free = torch.tensor(logits, dtype=DTYPE, requires_grad=True)
        value = self._error_tensor(free)
        if not value.requires_grad:  # the solver took the times out of the graph entirely
            return value.item(), np.zeros_like(logits)
        (gradient,) = torch.autograd.grad(value, free, allow_unused=True)
        if gradient is None:
            return value.item(), np.zeros_like(logits)
        return value.item(), gradient.numpy()

    def gradient_checks_out(self, logits: torch.Tensor, step: float = 1e-5) -> bool:
        """Whether autograd's directional derivative matches a central difference.

        Exact gradients agree to ~1e-10 relative; a solver that takes the times out of the graph
        (float(), numpy) leaves only part of the gradient, off by far more than the tolerance.
        """
        generator = torch.Generator().manual_seed(0)
        direction = torch.randn(len(logits), generator=generator, dtype=DTYPE)
        direction /= torch.linalg.vector_norm(direction)
        _, gradient = self.error_and_gradient(logits.numpy())
        analytic = float(torch.from_numpy(gradient) @ direction)
        ahead, behind = (self.error(logits + sign * step * direction) for sign in (1, -1))
        numeric = (ahead - behind) / (2 * step)
        return abs(analytic - numeric) <= 1e-4 * max(abs(analytic), abs(numeric)) + 1e-9


def mean_l2_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean over samples of the Euclidean distance to the target."""
    return torch.linalg.vector_norm((x - target).flatten(1), dim=1).mean()


def _training_noise(schedule, t_start: float, n: int, dim: int, seed: int) -> torch.Tensor:
    """x_T ~ N(0, sigma(t_start)^2 I): the prior noise, rescaled when the fit starts below t_max."""
    noise = prior_noise(schedule, n, dim, int(seed))
    if t_start == schedule.t_max:
        return noise
    return noise * (schedule.sigma(t_start) / schedule.sigma(schedule.t_max))


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        what = "training noises" if name == "n_train" else "optimizer iterations"
        raise ValueError(f"{name} must be an integer >= 1 ({what}), got {value!r}")
    return int(value)


def _check_fittable(solver: str, starts: tuple[str, ...], steps: int):
    spec = SOLVERS[solver]
    if spec.stochastic:
        # the target is the probability-flow ODE solution, which a stochastic solver does not
        # approximate sample by sample
        raise ValueError(f"{solver} is stochastic; fit_grid fits ODE solvers only")
    unknown = [name for name in starts if name not in GRIDS]
    if unknown or not starts:
        raise unknown_choice("init grid", unknown[0] if unknown else starts, GRIDS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"a fitted grid needs an integer steps >= 2 (an interior), got {steps!r}")
    return spec
