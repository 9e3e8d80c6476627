"""`reference_solution`: the exact probability-flow ODE answer every solver is measured against."""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import solve_ivp

from workbench.diffusion.core import Evaluator, check_x_T
from workbench.diffusion.grids import check_ends
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.memo import Memo

REFERENCES = Memo("reference ODE solutions", maxsize=32)


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
    with scipy's DOP853 (8th order, adaptive) in float64. Memoized by the content of the model,
    x_T and the settings (a model without content is solved every time); callers get copies.
    """
    schedule = schedule or model.schedule
    x_T = check_x_T(x_T)
    t_start, t_end = check_ends(schedule, t_start, t_end)
    key = (model, x_T.to(DTYPE), schedule, t_start, t_end, rtol, atol)
    solve = lambda: _solve(model, x_T, schedule, t_start, t_end, rtol, atol)  # noqa: E731
    return REFERENCES.get(key, solve).clone()


def _solve(model, x_T, schedule, t_start, t_end, rtol, atol) -> torch.Tensor:
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
    return schedule.alpha(t_end) * torch.from_numpy(solution.y[:, -1]).reshape(shape)
