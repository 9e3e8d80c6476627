"""`sample`: any registered solver on any grid, from x_T to t_end, and `prior_noise`, the one
draw of a solve's starting points.

Solvers live in `workbench.diffusion.solvers` (its `SOLVERS` registry, complete on import),
one function each with one signature:

    solver(ev: Evaluator, x: Tensor, grid: Grid, opts: SolverOptions) -> Tensor

registered with `@register(name, orders=..., ...)`; what they receive is in
`workbench.diffusion.core`, the exact answer they are measured against in
`workbench.diffusion.reference` (both re-exported here).

`sample` and `reference_solution` check their inputs once, on entry: x_T must be finite, the
ends of the solve inside the schedule's range, the step count an integer in 1..MAX_STEPS
(`workbench.diffusion.grids.MAX_STEPS`, 10,000).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from workbench.diffusion.core import (  # noqa: F401  (re-exported: where callers look for them)
    Evaluator,
    Grid,
    ModelOutputError,
    SolverOptions,
    SolverSpec,
    check_x_T,
    prior_noise,
)
from workbench.diffusion.grids import (  # noqa: F401
    MAX_STEPS,
    check_ends,
    check_finite_log_snr,
    make_grid,
)
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.reference import reference_solution  # noqa: F401
from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.diffusion.solvers import SOLVERS, register  # noqa: F401
from workbench.registry import check_choice

CORRECTORS = ("unic",)  # UniPC's corrector, after any multistep predictor that takes one


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
    x_T = check_x_T(x_T)

    schedule = schedule or model.schedule
    if schedule.name != model.schedule.name:
        raise ValueError(f"the model was built for {model.schedule.name}, not {schedule.name}")
    spec = SOLVERS[solver]
    order = spec.default_order if order is None else order
    if order not in spec.orders:
        allowed = ", ".join(map(str, spec.orders))
        raise ValueError(f"{solver} supports order {allowed}, got {order}")
    if corrector is not None:
        check_choice("corrector", corrector, CORRECTORS)
    if corrector and not spec.accepts_corrector:
        raise ValueError(f"{solver} does not take a corrector (multistep predictors do)")
    extra = dict(solver_options or {})
    unknown = sorted(set(extra) - set(spec.options))
    if unknown:
        takes = ", ".join(spec.options) if spec.options else "no solver options"
        raise ValueError(f"{solver} does not take option {unknown[0]!r} (it takes {takes})")
    ts = make_grid(schedule, grid, steps, t_start, t_end, **grid_options)
    ends = float(ts[0].detach()), float(ts[-1].detach())  # a fitted grid carries gradients
    what, allowed = SOLVERS.label(solver), spec.infinite_log_snr
    check_finite_log_snr(schedule, *ends, what, "use solver='ddim'", allowed)
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
