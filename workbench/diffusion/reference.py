"""`reference_solution`: the exact probability-flow ODE answer every solver is measured against."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import solve_ivp

from workbench.diffusion.core import Evaluator, ModelOutputError, check_x_T
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

    Where lambda = log(alpha / sigma) is finite at both ends, integrated in lambda for
    y = x / alpha, where the ODE reads dy/dlambda = -e^{-lambda} eps(x, t) (the form DDIM
    discretizes exactly to first order). A path's pure-noise end (alpha = 0) or data end
    (sigma = 0) has infinite lambda; there the same ODE is integrated in the rectified time
    u = sigma / (alpha + sigma) for z = x / (alpha + sigma), where it reads dz/du = eps - x_0
    (on the rectified path u = t and z = x: the velocity ODE in t itself). u runs over a finite
    interval on every schedule and needs no d sigma / dt, which is infinite at t = 0 on the VP
    path. Both with scipy's DOP853 (8th order, adaptive) in float64. A noise (or score) model
    gives no x_0 where alpha = 0 and is refused there. Memoized by the content of the model,
    x_T and the settings (a model without content is solved every time); callers get copies.
    """
    schedule = schedule or model.schedule
    x_T = check_x_T(x_T)
    t_start, t_end = check_ends(schedule, t_start, t_end)
    ends = [float(schedule.lambda_(t)) for t in (t_start, t_end)]
    if model.prediction in ("noise", "score") and ends[0] == -math.inf:
        raise ValueError(
            f"a {model.prediction}-prediction model gives no x_0 where alpha = 0 (t_start="
            f"{t_start:g} on {schedule.name}): start at t_start < {t_start:g} or use a data, v or "
            "velocity model"
        )
    solver = _solve_in_lambda if all(map(math.isfinite, ends)) else _solve_in_u
    key = (model, x_T.to(DTYPE), schedule, t_start, t_end, rtol, atol)
    solve = lambda: solver(model, x_T, schedule, t_start, t_end, rtol, atol)  # noqa: E731
    return REFERENCES.get(key, solve).clone()


def _solve_in_lambda(model, x_T, schedule, t_start, t_end, rtol, atol) -> torch.Tensor:
    ev = Evaluator(model, schedule)
    shape = x_T.shape
    lam_start, lam_end = float(schedule.lambda_(t_start)), float(schedule.lambda_(t_end))

    def rhs(lam, y):
        t = schedule.t_of_lambda(torch.tensor(lam, dtype=DTYPE))
        alpha = schedule.alpha(t)
        x = alpha * torch.from_numpy(y).reshape(shape)
        return (-np.exp(-lam) * ev.noise(x, t)).reshape(-1).numpy()

    y0 = (x_T.to(DTYPE) / schedule.alpha(t_start)).reshape(-1).numpy()
    y = _integrate(rhs, lam_start, lam_end, y0, rtol, atol)
    return schedule.alpha(t_end) * torch.from_numpy(y).reshape(shape)


def _solve_in_u(model, x_T, schedule, t_start, t_end, rtol, atol) -> torch.Tensor:
    ev = Evaluator(model, schedule)
    shape = x_T.shape

    def scale(t):  # alpha + sigma, with x = scale z
        return schedule.alpha(t) + schedule.sigma(t)

    def time_of_u(u: float) -> torch.Tensor:
        # u = 1 / (1 + e^lambda): lambda = log((1 - u) / u), +-inf at the ends exactly
        lam = math.log1p(-u) - math.log(u) if 0 < u < 1 else (math.inf if u <= 0 else -math.inf)
        return schedule.t_of_lambda(torch.tensor(lam, dtype=DTYPE))

    def rhs(u, z):
        t = time_of_u(u)
        x = scale(t) * torch.from_numpy(z).reshape(shape)
        x0, eps = ev(x, t)
        return (eps - x0).reshape(-1).numpy()

    def u_of(t):
        return float(schedule.sigma(t) / scale(t))

    z0 = (x_T.to(DTYPE) / scale(t_start)).reshape(-1).numpy()
    z = _integrate(rhs, u_of(t_start), u_of(t_end), z0, rtol, atol)
    return scale(t_end) * torch.from_numpy(z).reshape(shape)


def _integrate(rhs, start: float, end: float, y0: np.ndarray, rtol, atol) -> np.ndarray:
    solution = solve_ivp(rhs, (start, end), y0, method="DOP853", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the reference ODE solve failed: {solution.message}")
    y = solution.y[:, -1]
    if not np.all(np.isfinite(y)):
        raise ModelOutputError("the reference ODE solve ended in NaN or infinity")
    return y
