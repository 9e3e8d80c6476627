"""Time grids: where a solver evaluates the model, from t_start (noise) to t_end (data).

A grid is a float64 tensor of steps + 1 decreasing times. Named grids are spaced uniformly in
some variable of the schedule; an explicit array is used as given (after checks).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from workbench.diffusion.schedules import DTYPE, NoiseSchedule


def _uniform_time(schedule, steps, t_start, t_end, **_):
    return torch.linspace(t_start, t_end, steps + 1, dtype=DTYPE)


def _uniform_logsnr(schedule, steps, t_start, t_end, **_):
    lambdas = torch.linspace(
        float(schedule.lambda_(t_start)), float(schedule.lambda_(t_end)), steps + 1, dtype=DTYPE
    )
    return schedule.t_of_lambda(lambdas)


def _quadratic_time(schedule, steps, t_start, t_end, **_):
    """Uniform in sqrt(t): denser near the data, DDIM's 'quad' spacing."""
    return torch.linspace(t_start**0.5, t_end**0.5, steps + 1, dtype=DTYPE) ** 2


def _karras(schedule, steps, t_start, t_end, rho: float = 7.0, **_):
    """EDM's sigma spacing with exponent rho, in the VE-equivalent sigma = e^{-lambda}."""
    s_max = float(torch.exp(-schedule.lambda_(t_start)))
    s_min = float(torch.exp(-schedule.lambda_(t_end)))
    ramp = torch.linspace(0, 1, steps + 1, dtype=DTYPE)
    sigmas = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return schedule.t_of_lambda(-torch.log(sigmas))


GRIDS: dict[str, Callable[..., torch.Tensor]] = {
    "time_uniform": _uniform_time,
    "logsnr": _uniform_logsnr,
    "time_quadratic": _quadratic_time,
    "karras": _karras,
}


def make_grid(
    schedule: NoiseSchedule,
    grid,
    steps: int | None,
    t_start: float | None = None,
    t_end: float | None = None,
    **options,
) -> torch.Tensor:
    """The steps + 1 times of a named grid, an explicit array, or a fitted grid object.

    A fitted grid (anything with a `times(schedule, steps, t_start, t_end)` method) is asked
    for its times. An explicit array fixes `steps` to len - 1.
    """
    t_start = schedule.t_max if t_start is None else float(t_start)
    t_end = schedule.t_min if t_end is None else float(t_end)
    if not t_start > t_end:
        raise ValueError(f"t_start ({t_start}) must be greater than t_end ({t_end})")
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r}; choose from {', '.join(GRIDS)}")
        _check_steps(steps)
        ts = GRIDS[grid](schedule, steps, t_start, t_end, **options)
        ts[0], ts[-1] = t_start, t_end  # exact ends despite round trips through lambda
        return ts
    if hasattr(grid, "times"):
        _check_steps(steps)
        return grid.times(schedule, steps, t_start, t_end)
    ts = torch.as_tensor(np.asarray(grid, dtype=np.float64), dtype=DTYPE)
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError(f"an explicit grid needs at least 2 times, got shape {tuple(ts.shape)}")
    if steps is not None and steps != len(ts) - 1:
        raise ValueError(f"steps={steps} but the explicit grid has {len(ts) - 1} steps")
    if not torch.all(torch.diff(ts) < 0):
        raise ValueError("an explicit grid must be strictly decreasing in t (noise to data)")
    return ts


def _check_steps(steps) -> None:
    if steps is None or isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
