"""Time grids: where a solver evaluates the model, from t_start (noise) to t_end (data).

A grid is a float64 tensor of steps + 1 decreasing times. Named grids are spaced uniformly in
some variable of the schedule; an explicit array is used as given (after checks).

Every grid lies in the schedule's range [t_min, t_max] (outside it the schedules extrapolate or
return NaN) and has at most MAX_STEPS steps: more is a mistake, not a finer solve (each step is
one model call or more; a 10,000-step solve of a cheap model already takes tens of seconds).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch

from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.registry import Registry

MAX_STEPS = 10_000  # the most steps a grid may have (see the module)


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


# grids spaced in lambda (or in e^{-lambda}): both ends need a finite log-SNR
LOG_SNR_GRIDS = ("logsnr", "karras")

GRIDS: Registry[Callable[..., torch.Tensor]] = Registry("grid")
GRIDS.add("time_uniform", _uniform_time, label="uniform in t")
GRIDS.add("logsnr", _uniform_logsnr, label="uniform in log-SNR")
GRIDS.add("time_quadratic", _quadratic_time, label="uniform in sqrt(t)")
GRIDS.add("karras", _karras, label="Karras (rho = 7)")


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
    t_start, t_end = check_ends(schedule, t_start, t_end)
    if isinstance(grid, str):
        spacing = GRIDS[grid]
        steps = _check_steps(steps)
        if grid in LOG_SNR_GRIDS:
            check_finite_log_snr(
                schedule, t_start, t_end, f"the {grid!r} grid", "use grid='time_uniform'"
            )
        ts = spacing(schedule, steps, t_start, t_end, **options)
        ts[0], ts[-1] = t_start, t_end  # exact ends despite round trips through lambda
        return ts
    if hasattr(grid, "times"):
        return grid.times(schedule, _check_steps(steps), t_start, t_end)
    ts = torch.as_tensor(np.asarray(grid, dtype=np.float64), dtype=DTYPE)
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError(f"an explicit grid needs at least 2 times, got shape {tuple(ts.shape)}")
    if steps is not None and steps != len(ts) - 1:
        raise ValueError(f"steps={steps} but the explicit grid has {len(ts) - 1} steps")
    _check_steps(len(ts) - 1, "the explicit grid's steps")
    bad = torch.nonzero(~torch.isfinite(ts)).flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"the explicit grid has a non-finite time t[{i}]={float(ts[i])}")
    rising = torch.nonzero(torch.diff(ts) >= 0).flatten()
    if len(rising):
        i = int(rising[0])
        raise ValueError(
            "an explicit grid must be strictly decreasing in t (noise to data); "
            f"got t[{i}]={float(ts[i]):g} <= t[{i + 1}]={float(ts[i + 1]):g}"
        )
    # an explicit grid may end below t_min, down to t = 0 (EDM's final step to sigma = 0)
    check_ends(schedule, float(ts[0]), float(ts[-1]), "the explicit grid's ", lowest=0.0)
    return ts


def check_ends(
    schedule: NoiseSchedule,
    t_start: float | None,
    t_end: float | None,
    what: str = "",
    lowest: float | None = None,
) -> tuple[float, float]:
    """(t_start, t_end) with the schedule's defaults, refused unless
    schedule.t_min <= t_end < t_start <= schedule.t_max (a relative 1e-9 of slack);
    `lowest` replaces t_min as the bound below."""
    t_start = schedule.t_max if t_start is None else float(t_start)
    t_end = schedule.t_min if t_end is None else float(t_end)
    lo, hi = (schedule.t_min if lowest is None else lowest), schedule.t_max
    slack = 1e-9 * max(abs(lo), abs(hi), 1e-300)
    bounds = "[t_min, t_max]" if lowest is None else "[0, t_max]"
    allowed = f"the schedule's range {bounds} = [{lo:g}, {hi:g}] ({schedule.name})"
    for name, value in (("t_start", t_start), ("t_end", t_end)):
        if not (math.isfinite(value) and lo - slack <= value <= hi + slack):
            raise ValueError(f"{what}{name}={value:g} is outside {allowed}")
    if not t_start > t_end:
        raise ValueError(
            f"{what}t_start ({t_start}) must be greater than t_end ({t_end}): a solve runs "
            "from noise (large t) to data (small t)"
        )
    return t_start, t_end


def check_finite_log_snr(
    schedule: NoiseSchedule,
    t_start: float,
    t_end: float,
    what: str,
    remedy: str,
    allowed: tuple[str, ...] = (),
) -> None:
    """Refuse, in one line, ends where lambda = log(alpha / sigma) is infinite (a path's pure
    noise alpha = 0 at t = 1 or its data sigma = 0 at t = 0) for `what`, which steps in lambda;
    `allowed` names the ends ("t_start", "t_end") it handles anyway."""
    for name, value, fix in (
        ("t_start", t_start, f"start at t_start < {t_start:g} (e.g. {t_start - 1e-3:g})"),
        ("t_end", t_end, f"end at t_end > {t_end:g} (e.g. {t_end + 1e-3:g})"),
    ):
        lam = float(schedule.lambda_(value))
        if name not in allowed and not math.isfinite(lam):
            where = "alpha = 0" if lam < 0 else "sigma = 0"
            raise ValueError(
                f"{what} steps in log-SNR, which is infinite at {name}={value:g} on "
                f"{schedule.name} ({where}): {fix}, or {remedy}"
            )


def _check_steps(steps, name: str = "steps") -> int:
    """steps as an int, refused unless an integer in 1..MAX_STEPS (2.0 counts as 2)."""
    integral = isinstance(steps, numbers.Integral) and not isinstance(steps, bool)
    if not (integral or (isinstance(steps, float) and steps.is_integer())) or steps < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {steps!r} (at most {MAX_STEPS})")
    if steps > MAX_STEPS:
        raise ValueError(
            f"{name} must be at most MAX_STEPS = {MAX_STEPS}, got {steps!r} (more steps are a "
            "mistake, not a finer solve)"
        )
    return int(steps)
