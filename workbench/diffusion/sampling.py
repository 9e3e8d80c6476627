"""`sample` (any registered solver on any grid) and `reference_solution` (the exact ODE answer).

Solvers live in `workbench.diffusion.solvers`, one function each with one signature:

    solver(ev: Evaluator, x: Tensor, grid: Grid, opts: SolverOptions) -> Tensor

registered with `@register(name, orders=..., ...)`. `Evaluator` is the only way a solver
reaches the model: it counts model calls (NFE) and refuses NaN/inf outputs with the time at
which they appeared (a `ModelOutputError`, which says whether the model or the solve is to
blame: a sample that has already blown up to NaN/inf is the solve's divergence).

`sample` and `reference_solution` check their inputs once, on entry: x_T must be finite, the
ends of the solve inside the schedule's range, the step count an integer in 1..MAX_STEPS
(`workbench.diffusion.grids.MAX_STEPS`, 10,000).
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp

from workbench.diffusion.grids import MAX_STEPS, check_ends, make_grid  # noqa: F401
from workbench.diffusion.models import DiffusionModel, to_data_and_noise
from workbench.diffusion.schedules import DTYPE, NoiseSchedule


class ModelOutputError(FloatingPointError):
    """The model returned NaN or infinity (at a finite sample: the model's fault; at a sample
    the solve had already driven to NaN/inf: the solve diverged)."""


class Evaluator:
    """Calls the model, converts its output to (x_0, eps), and counts the calls."""

    def __init__(self, model: DiffusionModel, schedule: NoiseSchedule):
        self.model = model
        self.schedule = schedule
        self.nfe = 0
        self._levels: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    def know_grid(self, grid: Grid) -> None:
        """Reuse the grid's alpha and sigma at its times (the schedule lookup was the largest
        per-step cost of a solve with a cheap model)."""
        self._levels = {
            t: (a, s) for t, a, s in zip(grid.ts.tolist(), grid.alphas, grid.sigmas, strict=True)
        }

    def __call__(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(t, dtype=DTYPE)
        output = self.model(x, t)
        self.nfe += 1
        if not torch.all(torch.isfinite(output)):
            if not torch.all(torch.isfinite(x)):
                raise ModelOutputError(
                    f"the solve diverged: the sample was already NaN or infinite at "
                    f"t={float(t):.6g} (model call {self.nfe} of {self.model.name})"
                )
            raise ModelOutputError(
                f"{self.model.name} returned NaN or infinity at t={float(t):.6g} "
                f"(model call {self.nfe})"
            )
        levels = self._levels.get(float(t.detach()))
        alpha, sigma = levels or (self.schedule.alpha(t), self.schedule.sigma(t))
        derivatives = (
            self.schedule.derivatives(t) if self.model.prediction == "velocity" else (None, None)
        )
        return to_data_and_noise(output, self.model.prediction, x, alpha, sigma, *derivatives)

    def data(self, x: torch.Tensor, t) -> torch.Tensor:
        return self(x, t)[0]

    def noise(self, x: torch.Tensor, t) -> torch.Tensor:
        return self(x, t)[1]


@dataclass(frozen=True)
class Grid:
    """The times of a solve with alpha, sigma and lambda precomputed at each."""

    ts: torch.Tensor
    alphas: torch.Tensor
    sigmas: torch.Tensor
    lambdas: torch.Tensor
    schedule: NoiseSchedule

    @classmethod
    def of(cls, schedule: NoiseSchedule, ts: torch.Tensor) -> Grid:
        return cls(ts, schedule.alpha(ts), schedule.sigma(ts), schedule.lambda_(ts), schedule)

    @property
    def steps(self) -> int:
        return len(self.ts) - 1


@dataclass
class SolverOptions:
    """Options every solver receives; each uses those that apply to it."""

    order: int
    lower_order_final: bool = True  # drop to first/second order on the last steps (few steps)
    corrector: str | None = None  # "unic": UniPC's corrector after a multistep predictor
    generator: torch.Generator | None = None  # for stochastic solvers
    callback: Callable[[int, torch.Tensor], None] | None = None
    # a solver's own options, by name (SolverSpec.options lists those it takes), e.g.
    # DPM-Solver-v3's precomputed statistics {"ems": EMS}
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SolverSpec:
    name: str
    fn: Callable
    orders: tuple[int, ...]
    default_order: int
    description: str
    stochastic: bool = False
    accepts_corrector: bool = False
    options: tuple[str, ...] = ()  # the solver-specific options it takes (SolverOptions.extra)


SOLVERS: dict[str, SolverSpec] = {}


def register(
    name: str,
    *,
    orders: tuple[int, ...] = (1,),
    default_order: int | None = None,
    stochastic: bool = False,
    accepts_corrector: bool = False,
    options: tuple[str, ...] = (),
):
    def decorate(fn):
        doc = inspect.getdoc(fn) or ""
        SOLVERS[name] = SolverSpec(
            name,
            fn,
            orders,
            default_order or max(orders),
            doc.splitlines()[0] if doc else "",
            stochastic,
            accepts_corrector,
            options,
        )
        return fn

    return decorate


@dataclass
class SampleResult:
    x: torch.Tensor
    nfe: int
    ts: torch.Tensor
    solver: str
    order: int
    trajectory: list[torch.Tensor] | None = field(default=None, repr=False)


def sample(
    model: DiffusionModel,
    x_T: torch.Tensor,
    *,
    solver: str,
    steps: int | None,
    schedule: NoiseSchedule | None = None,
    grid="logsnr",
    order: int | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    lower_order_final: bool = True,
    corrector: str | None = None,
    denoise_to_zero: bool = False,
    seed: int = 0,
    trajectory: bool = False,
    solver_options: Mapping[str, Any] | None = None,
    **grid_options,
) -> SampleResult:
    """Solve from t_start (default schedule.t_max) to t_end (default schedule.t_min).

    `grid` is a name from GRIDS, an explicit decreasing array of times, or a fitted grid.
    `denoise_to_zero` adds one model call at t_end and returns its x_0 prediction (the "final
    step to sigma 0" of diffusers' `final_sigmas_type="zero"`). `solver_options` are the
    solver's own (its spec's `options`), e.g. {"ems": statistics} for DPM-Solver-v3.

    Refused with a ValueError, before any model call: an x_T with NaN or infinity (the
    message gives the first bad index), t_start or t_end outside the schedule's range
    [t_min, t_max] or t_start <= t_end, and `steps` that is not an integer in 1..MAX_STEPS
    (10,000; more is a mistake, not a finer solve). A model that returns NaN/inf raises
    `ModelOutputError`.
    """
    import workbench.diffusion  # noqa: F401  (its imports fill the registry)

    x_T = check_x_T(x_T)

    schedule = schedule or model.schedule
    if schedule.name != model.schedule.name:
        raise ValueError(f"the model was built for {model.schedule.name}, not {schedule.name}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
    spec = SOLVERS[solver]
    order = spec.default_order if order is None else order
    if order not in spec.orders:
        allowed = ", ".join(map(str, spec.orders))
        raise ValueError(f"{solver} supports order {allowed}, got {order}")
    if corrector not in (None, "unic"):
        raise ValueError(f"unknown corrector {corrector!r}; the only one is 'unic'")
    if corrector and not spec.accepts_corrector:
        raise ValueError(f"{solver} does not take a corrector (multistep predictors do)")
    extra = dict(solver_options or {})
    unknown = sorted(set(extra) - set(spec.options))
    if unknown:
        takes = ", ".join(spec.options) if spec.options else "no solver options"
        raise ValueError(f"{solver} does not take option {unknown[0]!r} (it takes {takes})")
    ts = make_grid(schedule, grid, steps, t_start, t_end, **grid_options)
    path = [x_T.clone()] if trajectory else None

    def callback(i, x):
        path.append(x.clone())

    opts = SolverOptions(
        order=order,
        lower_order_final=lower_order_final,
        corrector=corrector,
        generator=torch.Generator().manual_seed(seed),
        callback=callback if trajectory else None,
        extra=extra,
    )
    ev = Evaluator(model, schedule)
    grid_levels = Grid.of(schedule, ts)
    ev.know_grid(grid_levels)
    x = spec.fn(ev, x_T.to(DTYPE), grid_levels, opts)
    if denoise_to_zero:
        x = ev.data(x, ts[-1])
        if trajectory:
            path.append(x.clone())
    return SampleResult(x, ev.nfe, ts, solver, order, path)


def prior_noise(schedule: NoiseSchedule, n: int, dim: int, seed: int | torch.Generator = 0):
    """n starting points x_T ~ N(0, sigma(t_max)^2 I) of a solve, float64 (the one place the
    workbench draws them; a generator continues its stream, an int seeds a new one)."""
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    noise = torch.randn(int(n), int(dim), generator=generator, dtype=DTYPE)
    return float(schedule.sigma(schedule.t_max)) * noise


def check_x_T(x_T) -> torch.Tensor:
    """x_T as a tensor, refused if it holds NaN or infinity (one isfinite pass, on entry)."""
    if not isinstance(x_T, torch.Tensor):
        x_T = torch.as_tensor(np.asarray(x_T, dtype=np.float64), dtype=DTYPE)
    if x_T.ndim == 0 or x_T.numel() == 0:
        raise ValueError(f"x_T must hold at least one point, got shape {tuple(x_T.shape)}")
    finite = torch.isfinite(x_T)
    if not bool(finite.all()):
        index = tuple(int(i) for i in torch.nonzero(~finite)[0])
        value = float(x_T[index])
        shown = "NaN" if math.isnan(value) else str(value)
        raise ValueError(
            f"x_T contains {shown} at index {index} (of shape {tuple(x_T.shape)}); "
            "the starting noise must be finite"
        )
    return x_T


# ------------------------------------------------------------------ the exact answer
_REFERENCE_CACHE: OrderedDict[str, tuple[DiffusionModel, torch.Tensor]] = OrderedDict()
_REFERENCE_CACHE_SIZE = 32


def reference_solution(
    model: DiffusionModel,
    x_T: torch.Tensor,
    *,
    schedule: NoiseSchedule | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    rtol: float = 1e-11,
    atol: float = 1e-11,
) -> torch.Tensor:
    """The probability-flow ODE solution at t_end from x_T at t_start, to tolerance 1e-11.

    Integrated in lambda = log(alpha / sigma) for y = x / alpha, where the ODE reads
    dy/dlambda = -e^{-lambda} eps(x, t) (the form DDIM discretizes exactly to first order),
    with scipy's DOP853 (8th order, adaptive) in float64. Cached by model, x_T and the ends.
    """
    schedule = schedule or model.schedule
    x_T = check_x_T(x_T)
    t_start, t_end = check_ends(schedule, t_start, t_end)
    key = _reference_key(model, x_T, schedule, t_start, t_end, rtol, atol)
    if key in _REFERENCE_CACHE:
        _REFERENCE_CACHE.move_to_end(key)
        return _REFERENCE_CACHE[key][1].clone()

    ev = Evaluator(model, schedule)
    shape = x_T.shape
    lam_start, lam_end = float(schedule.lambda_(t_start)), float(schedule.lambda_(t_end))

    def rhs(lam, y):
        t = schedule.t_of_lambda(torch.tensor(lam, dtype=DTYPE))
        alpha = schedule.alpha(t)
        x = alpha * torch.from_numpy(y).reshape(shape)
        return (-np.exp(-lam) * ev.noise(x, t)).reshape(-1).numpy()

    y0 = (x_T.to(DTYPE) / schedule.alpha(t_start)).reshape(-1).numpy()
    solution = solve_ivp(rhs, (lam_start, lam_end), y0, method="DOP853", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the reference ODE solve failed: {solution.message}")
    x_end = schedule.alpha(t_end) * torch.from_numpy(solution.y[:, -1]).reshape(shape)
    _REFERENCE_CACHE[key] = (model, x_end)  # holding the model keeps its id from being reused
    if len(_REFERENCE_CACHE) > _REFERENCE_CACHE_SIZE:
        _REFERENCE_CACHE.popitem(last=False)
    return x_end.clone()


def _reference_key(model, x_T, schedule, t_start, t_end, rtol, atol) -> str:
    digest = hashlib.sha1(x_T.detach().to(DTYPE).contiguous().numpy().tobytes()).hexdigest()
    return f"{id(model.fn)}|{model.name}|{schedule.name}|{t_start}|{t_end}|{rtol}|{atol}|{digest}"
