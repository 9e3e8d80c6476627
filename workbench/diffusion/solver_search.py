"""A searched solver: per-step solver choices found by search against the exact ODE solution.

USF / S^3 (Liu, Ning, Yang & Wang 2023, "A Unified Sampling Framework for Solver Searching of
Diffusion Probabilistic Models", arXiv:2312.07243) observe that at 5-10 NFE no single solver is
best at every step: the order, the prediction type the step integrates (data or noise) and
whether UniC corrects it are free choices *per step*, and a searched schedule of them beats
every hand-picked solver. Their S^3 searches with a learned predictor of quality; on a toy
mixture the exact answer is cheap, so here the search is direct:

- Search space. A `SolverSchedule` holds one `StepChoice` per step: order in {1, 2, 3} (at
  most the number of model outputs so far), prediction "data" (the DPM-Solver++ multistep
  update, Lu et al. 2022, arXiv:2211.01095) or "noise" (the DPM-Solver multistep update in the
  noise prediction, same paper, diffusers' algorithm_type="dpmsolver"), and corrector on/off
  (UniC in the data prediction, Zhao et al. 2023, "UniPC", arXiv:2302.04867), plus the time
  grid, a name from GRIDS.
- NFE. One model call per step, as every multistep solver here: a corrector reuses the model
  call at the next point, so the last step cannot be corrected (it has no next call) and a
  schedule asking for that is refused.
- Objective. The mean L2 error against `reference_solution` on `n_train` training noises.
- Search. Greedy coordinate descent from the best hand configuration (the registered
  multistep solvers at their orders, with and without UniC, on every named grid, each as a
  schedule): sweep the steps first to last, try every choice of the step in a fixed order
  (then every grid), keep a change only if it lowers the error by more than TIE_RTOL relative,
  so rounding cannot flip a choice; stop after a sweep that changes nothing (or `max_sweeps`).
  The result can never be worse on training noise than its start. A candidate that diverges
  counts as an infinite error (it is reported, never raised).
- Cross-check. A schedule built by `SolverSchedule.of_solver` for dpmpp_2m / dpmpp_3m (with or
  without UniC) or unipc_bh2 at order <= 2 reproduces that solver's samples bit for bit (it
  calls the same update functions of `solvers.py`).
Related but different: S4S (Frankel, Chen, Li, Koh, Ratliff & Oh 2025, "S4S: Solving for a
Diffusion Model Solver", arXiv:2502.17423) learns continuous solver coefficients instead of
searching discrete choices.

`sample_schedule(model, x_T, schedule)` runs a schedule through `sample` itself (the solver
"scheduled" is registered only for the duration of the call, so the global SOLVERS registry
and everything that lists it stay as they are). Searches are memoized by content
(`workbench.memo`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch

from workbench.diffusion.core import Evaluator, Grid, ModelOutputError, SolverOptions, SolverSpec
from workbench.diffusion.grids import GRIDS, make_grid
from workbench.diffusion.learned import fit_grid, mean_l2_error
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import (
    SampleResult,
    prior_noise,
    reference_solution,
    sample,
)
from workbench.diffusion.schedules import DTYPE
from workbench.diffusion.solvers import (
    LOWER_ORDER_FINAL_BELOW,
    SOLVERS,
    _dpmpp_multistep_update,
    _unic_correct,
)
from workbench.memo import Memo
from workbench.registry import Registry, check_choice

SCHEDULED = "scheduled"  # the solver name a schedule runs under inside `sample_schedule`
ORDERS = (1, 2, 3)
REPRESENTABLE = ("dpmpp_2m", "dpmpp_3m", "unipc_bh2")  # registered solvers a schedule can be
TIME_MOVES = (0.5, 0.25, 0.1)  # the fractions of a gap an interior time may move per try
TIE_RTOL = 1e-4  # a change must lower the training error by more than this, relatively (smaller
# gains are rounding or a crawl along a valley: 1e-9 let 10 steps run 1768 solves for 0.2%)
SEARCHES = Memo("solver schedule searches", maxsize=32)


# ------------------------------------------------------------------ the two step updates
def _noise_multistep_update(grid: Grid, i: int, x: torch.Tensor, noise: list, order: int):
    """One multistep DPM-Solver step t_{i-1} -> t_i in the noise prediction, order 1-3, from
    eps at t_{i-1}, t_{i-2}, t_{i-3} (diffusers' algorithm_type="dpmsolver" formulas; order 1
    is DDIM)."""
    lam = grid.lambdas
    h = lam[i] - lam[i - 1]
    e_h = torch.expm1(h)  # e^h - 1
    x = (grid.alphas[i] / grid.alphas[i - 1]) * x - grid.sigmas[i] * e_h * noise[-1]
    if order == 1:
        return x
    r0 = (lam[i - 1] - lam[i - 2]) / h
    d1_0 = (noise[-1] - noise[-2]) / r0
    if order == 2:
        return x - 0.5 * grid.sigmas[i] * e_h * d1_0
    r1 = (lam[i - 2] - lam[i - 3]) / h
    d1_1 = (noise[-2] - noise[-3]) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    return x - grid.sigmas[i] * (e_h / h - 1) * d1 - grid.sigmas[i] * ((e_h - h) / h**2 - 0.5) * d2


def _data_update(grid, i, x, history, order):
    return _dpmpp_multistep_update(grid, i, x, history["data"], order)


def _noise_update(grid, i, x, history, order):
    return _noise_multistep_update(grid, i, x, history["noise"], order)


PREDICTIONS: Registry = Registry("prediction")
PREDICTIONS.add("data", _data_update, label="data prediction (DPM-Solver++ multistep)")
PREDICTIONS.add("noise", _noise_update, label="noise prediction (DPM-Solver multistep)")


# ------------------------------------------------------------------ the schedule
@dataclass(frozen=True)
class StepChoice:
    """What one step does: its order, the prediction it integrates, whether UniC corrects it."""

    order: int
    prediction: str = "data"
    corrector: bool = False

    @property
    def code(self) -> str:
        """A short name: D2c = data prediction, order 2, corrected."""
        return f"{self.prediction[0].upper()}{self.order}{'c' if self.corrector else ''}"


@dataclass(frozen=True)
class SolverSchedule:
    """One StepChoice per step and the named time grid; usable with `sample_schedule`."""

    choices: tuple[StepChoice, ...]
    grid: str | tuple[float, ...] = "logsnr"  # a name from GRIDS, or steps + 1 explicit times

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise ValueError("a solver schedule needs at least one step")
        if isinstance(self.grid, str):
            check_choice("grid", self.grid, GRIDS)
        else:
            object.__setattr__(self, "grid", tuple(float(t) for t in self.grid))
            if len(self.grid) != len(self.choices) + 1:
                raise ValueError(
                    f"an explicit grid needs {len(self.choices) + 1} times for "
                    f"{len(self.choices)} steps, got {len(self.grid)}"
                )
        for i, choice in enumerate(self.choices, start=1):
            _check_choice(i, choice, len(self.choices))

    @property
    def steps(self) -> int:
        return len(self.choices)

    @property
    def code(self) -> str:
        """e.g. 'logsnr: D1c D2c D2c D2c D1' (see StepChoice.code; a searched grid: 'searched')."""
        grid = self.grid if isinstance(self.grid, str) else "searched"
        return f"{grid}: " + " ".join(c.code for c in self.choices)

    @classmethod
    def of_solver(
        cls,
        solver: str,
        steps: int,
        *,
        order: int | None = None,
        grid: str | tuple[float, ...] = "logsnr",
        corrector: str | None = None,
        lower_order_final: bool = True,
    ) -> SolverSchedule:
        """The schedule that reproduces a registered multistep solver: dpmpp_2m or dpmpp_3m
        (with corrector=None or "unic") or unipc_bh2 at order <= 2 (UniP-2 is DPM-Solver++'s
        second-order step; UniP-3 is not in this search space)."""
        if solver not in REPRESENTABLE:
            raise ValueError(f"{solver!r} has no schedule here; use one of {REPRESENTABLE}")
        spec = SOLVERS[solver]
        order = spec.default_order if order is None else order
        if order not in spec.orders or (solver == "unipc_bh2" and order > 2):
            raise ValueError(f"{solver} at order {order} has no schedule here")
        if corrector not in (None, "unic"):
            raise ValueError(f"corrector must be None or 'unic', got {corrector!r}")
        corrected = solver == "unipc_bh2" or corrector == "unic"
        orders = _hand_orders(order, steps, lower_order_final)
        return cls(
            tuple(
                StepChoice(k, "data", corrected and i < steps)
                for i, k in enumerate(orders, start=1)
            ),
            grid,
        )


def _check_choice(i: int, choice: StepChoice, steps: int) -> None:
    """Refuse, in one line, a step whose choice cannot run."""
    if not isinstance(choice, StepChoice):
        raise ValueError(f"step {i} must be a StepChoice, got {type(choice).__name__}")
    if isinstance(choice.order, bool) or choice.order not in ORDERS:
        raise ValueError(f"step {i}: order must be one of {ORDERS}, got {choice.order!r}")
    if choice.order > i:
        raise ValueError(
            f"step {i}: order {choice.order} needs {choice.order} model outputs, only {i} exist"
        )
    check_choice("prediction", choice.prediction, PREDICTIONS)
    if choice.corrector is not True and choice.corrector is not False:
        raise ValueError(f"step {i}: corrector must be True or False, got {choice.corrector!r}")
    if choice.corrector and i == steps:
        raise ValueError(
            f"step {i} is the last: UniC reuses the next model call, and there is none after it"
        )


def _hand_orders(order: int, steps: int, lower_order_final: bool) -> list[int]:
    """The per-step orders of a multistep solver (as solvers.step_order: warm-up, and lower
    order on the last steps of a short solve)."""
    orders = []
    for i in range(1, steps + 1):
        k = min(order, i)
        if lower_order_final and steps < LOWER_ORDER_FINAL_BELOW:
            k = min(k, steps - i + 1)
        orders.append(k)
    return orders


# ------------------------------------------------------------------ the solver
def scheduled(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """A per-step solver schedule (USF): each step's order, prediction and UniC from
    opts.extra["schedule"]; one model call per step."""
    schedule = opts.extra.get("schedule")
    if not isinstance(schedule, SolverSchedule):
        raise ValueError("the scheduled solver needs solver_options={'schedule': SolverSchedule}")
    if schedule.steps != grid.steps:
        raise ValueError(f"the schedule has {schedule.steps} steps, the grid {grid.steps}")
    history = {"data": [], "noise": []}
    pending = None  # (step, x before it, its order): the step UniC corrects at the next call
    for i, choice in enumerate(schedule.choices, start=1):
        x0, eps = ev(x, grid.ts[i - 1])
        if pending is not None:
            x = _unic_correct(grid, *pending[:2], history["data"], x0, pending[2])
        # three earlier outputs are the most any order-3 step or UniC-3 reads
        history = {"data": [*history["data"][-3:], x0], "noise": [*history["noise"][-3:], eps]}
        pending = (i, x, choice.order) if choice.corrector else None
        x = PREDICTIONS[choice.prediction](grid, i, x, history, choice.order)
        if opts.callback:
            opts.callback(i, x)
    return x


SCHEDULED_SPEC = SolverSpec(
    SCHEDULED, scheduled, ORDERS, 3, "A per-step solver schedule (USF / S^3)", options=("schedule",)
)


def sample_schedule(
    model: DiffusionModel, x_T: torch.Tensor, schedule: SolverSchedule, **sample_options
) -> SampleResult:
    """`sample` with the schedule's per-step choices on its grid (NFE = schedule.steps);
    `sample_options` are sample's own (t_start, t_end, trajectory, ...)."""
    if not isinstance(schedule, SolverSchedule):
        raise ValueError(f"schedule must be a SolverSchedule, got {type(schedule).__name__}")
    for taken in ("solver", "steps", "grid", "order", "corrector", "solver_options"):
        if taken in sample_options:
            raise ValueError(f"{taken!r} is set by the schedule; do not pass it")

    def run():
        return sample(
            model, x_T, solver=SCHEDULED, steps=schedule.steps, grid=schedule.grid,
            solver_options={"schedule": schedule}, **sample_options,
        )  # fmt: skip

    if SCHEDULED in SOLVERS:  # registered for good by someone, or a nested call
        return run()
    with SOLVERS.temporarily(SCHEDULED, SCHEDULED_SPEC, label="searched schedule"):
        return run()


# ------------------------------------------------------------------ the search
# the hand configurations the search starts from: (solver, order, corrector)
HAND_CONFIGS = (
    ("dpmpp_2m", 2, None),
    ("dpmpp_2m", 2, "unic"),
    ("dpmpp_3m", 3, None),
    ("dpmpp_3m", 3, "unic"),
    ("unipc_bh2", 2, None),
)


@dataclass(frozen=True)
class SearchResult:
    """A searched schedule, the hand configuration it started from, and their training errors."""

    schedule: SolverSchedule
    start: SolverSchedule
    start_name: str  # e.g. "dpmpp_2m order 2 + unic on karras"
    train_error_start: float
    train_error: float
    hand: SolverSchedule  # the best hand configuration (named grids), the baseline
    hand_name: str
    train_error_hand: float
    evaluations: int  # training-error evaluations (distinct schedules solved)
    sweeps: int  # coordinate-descent sweeps run (the last changed nothing unless max_sweeps)
    n_train: int
    seed: int
    search_seconds: float

    @property
    def improvement(self) -> float:
        return self.train_error_start / self.train_error


def training_noise(model: DiffusionModel, n: int, seed: int, dim: int = 2) -> torch.Tensor:
    """The noises a search fits on (held-out noise: the same with another seed)."""
    return prior_noise(model.schedule, n, dim, int(seed))


def schedule_error(model, x_T, target, schedule: SolverSchedule) -> float:
    """Mean L2 error of the schedule's samples against `target`; inf where the solve diverges."""
    try:
        x = sample_schedule(model, x_T, schedule).x
    except ModelOutputError:
        return math.inf
    error = float(mean_l2_error(x, target))
    return error if math.isfinite(error) else math.inf


def hand_schedules(steps: int, grids=tuple(GRIDS)) -> dict[str, SolverSchedule]:
    """Every hand configuration (HAND_CONFIGS) on every grid, by name, in a fixed order."""
    out = {}
    for solver, order, corrector in HAND_CONFIGS:
        for grid in grids:
            name = f"{solver} order {order}{' + unic' if corrector else ''} on {grid}"
            out[name] = SolverSchedule.of_solver(
                solver, steps, order=order, grid=grid, corrector=corrector
            )
    return out


def best_hand(model, x_T, target, steps: int) -> tuple[str, SolverSchedule, float]:
    """The hand configuration with the lowest error on (x_T, target); the first on a tie."""
    errors = {
        n: (s, schedule_error(model, x_T, target, s)) for n, s in hand_schedules(steps).items()
    }
    lowest = min(e for _, e in errors.values())
    name = next(n for n, (_, e) in errors.items() if e <= lowest * (1 + TIE_RTOL))
    return name, errors[name][0], errors[name][1]


def search_schedule(
    model: DiffusionModel,
    *,
    steps: int,
    n_train: int = 256,
    seed: int = 0,
    dim: int = 2,
    max_sweeps: int = 12,
    fitted_starts: tuple[str, ...] = ("dpmpp_2m",),
) -> SearchResult:
    """Greedy coordinate descent over per-step choices and times from the best start: the
    best hand configuration, or a solver of `fitted_starts` on its `fit_grid` grid (fitted on
    the same training noise; () for hand starts only, much faster), whichever has the lower
    training error. On `n_train` training noises from `seed`; memoized by content."""
    steps, n_train, max_sweeps = (
        _check_int(name, value, low)
        for name, value, low in (
            ("steps", steps, 2),
            ("n_train", n_train, 1),
            ("max_sweeps", max_sweeps, 1),
        )
    )
    fitted_starts = tuple(check_choice("fitted start", s, REPRESENTABLE) for s in fitted_starts)
    settings = (steps, n_train, int(seed), int(dim), max_sweeps, fitted_starts)
    return SEARCHES.get((model, *settings), lambda: _search(model, *settings))


def _search(model, steps, n_train, seed, dim, max_sweeps, fitted_starts) -> SearchResult:
    started = time.perf_counter()
    x_T = training_noise(model, n_train, seed, dim)
    target = reference_solution(model, x_T)
    errors: dict[SolverSchedule, float] = {}

    def error(schedule):
        if schedule not in errors:
            errors[schedule] = schedule_error(model, x_T, target, schedule)
        return errors[schedule]

    hand_name, hand, _ = best_hand(model, x_T, target, steps)
    starts = {hand_name: hand} | _fitted_starts(model, steps, n_train, seed, dim, fitted_starts)
    lowest = min(error(s) for s in starts.values())
    start_name = next(n for n, s in starts.items() if error(s) <= lowest * (1 + TIE_RTOL))
    best = start = starts[start_name]
    sweeps = 0
    while sweeps < max_sweeps:
        sweeps, before = sweeps + 1, best
        for candidate_of in _coordinates(steps, model.schedule):
            for candidate in candidate_of(best):
                if error(candidate) < error(best) * (1 - TIE_RTOL):
                    best = candidate
        if best == before:  # a sweep that changed nothing: a coordinate-wise minimum
            break
    return SearchResult(
        schedule=best,
        start=start,
        start_name=start_name,
        train_error_start=error(start),
        train_error=error(best),
        hand=hand,
        hand_name=hand_name,
        train_error_hand=error(hand),
        evaluations=len(errors),
        sweeps=sweeps,
        n_train=n_train,
        seed=seed,
        search_seconds=time.perf_counter() - started,
    )


def _fitted_starts(model, steps, n_train, seed, dim, solvers) -> dict[str, SolverSchedule]:
    """The registered solvers on grids fitted for them (`fit_grid`, same training noise) as
    schedules: starts that bring the time placement Bespoke-style fits find."""
    out = {}
    for solver in solvers:
        fitted = fit_grid(model, solver=solver, steps=steps, n_train=n_train, seed=seed, dim=dim)
        name = f"{solver} order {fitted.order} on its fitted grid"
        out[name] = SolverSchedule.of_solver(solver, steps, order=fitted.order, grid=fitted.ts)
    return out


def _coordinates(steps: int, model_schedule):
    """The coordinates of one sweep, each a function: schedule -> its candidates in a fixed
    order (the steps first to last, then the named grid, then each interior time)."""
    return [
        *(_step_candidates(i, steps) for i in range(steps)),
        _grid_candidates,
        *(_time_candidates(j, model_schedule) for j in range(1, steps)),
    ]


def _step_candidates(index: int, steps: int):
    """Every valid choice of step index + 1 (orders up to the outputs so far; no corrector on
    the last step), the rest of the schedule unchanged."""
    choices = [
        StepChoice(order, prediction, corrector)
        for order in ORDERS
        if order <= index + 1
        for prediction in PREDICTIONS
        for corrector in ((False, True) if index < steps - 1 else (False,))
    ]

    def candidates(schedule: SolverSchedule):
        for choice in choices:
            if choice != schedule.choices[index]:
                changed = (*schedule.choices[:index], choice, *schedule.choices[index + 1 :])
                yield replace(schedule, choices=changed)

    return candidates


def _grid_candidates(schedule: SolverSchedule):
    for grid in GRIDS:
        if grid != schedule.grid:
            yield replace(schedule, grid=grid)


def _time_candidates(j: int, model_schedule):
    """Interior time j moved in lambda a fraction TIME_MOVES of the way to either neighbour
    (USF searches the time steps too); the schedule's grid becomes explicit times."""

    def candidates(schedule: SolverSchedule):
        ts = _times_of(schedule, model_schedule)
        lambdas = model_schedule.lambda_(ts)
        for fraction in TIME_MOVES:
            for neighbour in (j - 1, j + 1):
                lam = lambdas.clone()
                lam[j] = lam[j] + fraction * (lambdas[neighbour] - lambdas[j])
                moved = ts.clone()
                moved[j] = model_schedule.t_of_lambda(lam[j : j + 1])[0]
                if bool(torch.all(torch.diff(moved) < 0)):
                    yield replace(schedule, grid=tuple(moved.tolist()))

    return candidates


def _times_of(schedule: SolverSchedule, model_schedule) -> torch.Tensor:
    if isinstance(schedule.grid, str):
        return make_grid(model_schedule, schedule.grid, schedule.steps)
    return torch.tensor(schedule.grid, dtype=DTYPE)


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


# ------------------------------------------------------------------ held-out comparison
def held_out_table(
    model: DiffusionModel,
    step_counts=(5, 10),
    *,
    n_train: int = 256,
    n_test: int = 1024,
    seed: int = 0,
    test_seed: int = 1,
    dim: int = 2,
    **search_options,
):
    """Per NFE: the best hand configuration (chosen on training noise), the search's start and
    the searched schedule, all measured on held-out noise from `test_seed`.

    Columns: NFE, hand, start, searched schedule, train hand, train start, train searched,
    held-out hand, held-out best hand (the best hand configuration chosen on the held-out
    noise itself: the conservative baseline), held-out start, held-out searched, ratio
    (held-out hand / searched), conservative ratio (held-out best hand / searched), gain over
    start (held-out start / searched: what the per-step search adds), evaluations, search seconds.
    """
    import pandas as pd

    if int(test_seed) == int(seed):
        raise ValueError(f"test_seed must differ from seed ({seed}): held-out noise is new noise")
    x_test = training_noise(model, _check_int("n_test", n_test, 1), test_seed, dim)
    target = reference_solution(model, x_test)
    rows = []
    for steps in step_counts:
        found = search_schedule(
            model, steps=steps, n_train=n_train, seed=seed, dim=dim, **search_options
        )
        held_out = {
            what: schedule_error(model, x_test, target, schedule)
            for what, schedule in (("hand", found.hand), ("start", found.start),
                                   ("searched", found.schedule))
        }  # fmt: skip
        _, _, best_on_test = best_hand(model, x_test, target, steps)
        rows.append({
            "NFE": steps, "hand": found.hand_name, "start": found.start_name,
            "searched schedule": found.schedule.code, "train hand": found.train_error_hand,
            "train start": found.train_error_start, "train searched": found.train_error,
            "held-out hand": held_out["hand"], "held-out best hand": best_on_test,
            "held-out start": held_out["start"], "held-out searched": held_out["searched"],
            "ratio": held_out["hand"] / held_out["searched"],
            "conservative ratio": best_on_test / held_out["searched"],
            "gain over start": held_out["start"] / held_out["searched"],
            "evaluations": found.evaluations, "search seconds": found.search_seconds,
        })  # fmt: skip
    return pd.DataFrame(rows)
