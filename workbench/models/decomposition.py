"""A trained model's sample error split into model error and step error, on identical noise.

From the same starting noise x_T, with x*_ref the exact model's fine solve (DOP853 to 1e-11,
`reference_solution`), x_ref the trained model's fine solve (`fine_solve`) and x_k its k-step
solve:

    a = x_ref - x*_ref   (the model's error: what infinitely many steps would still miss)
    b = x_k - x_ref      (the solver's error on the trained model's own ODE)
    a + b = x_k - x*_ref (the total error)

The norm is the mean over starting points of the squared Euclidean distance, E|.|^2, so

    total = E|a + b|^2 = E|a|^2 + E|b|^2 + 2 E<a, b> = model + step + interaction,

with the interaction the cross term 2 E<a, b>: negative when the solver's error partly cancels
the model's, positive when it adds to it. `interaction` is total - model - step, so the sum
holds to rounding by construction; `cross` is 2 E<a, b> computed on its own, and the two agree
to rounding only if the split is the one above (the tests check both). `step_l2` is the step
error in notebook 01's measure (E|b|, `mean_l2_error`), comparable to its tables.

`score_error_by_level` is the network's score error E_{x_t ~ p_t} |s_theta - s*|^2 at each
noise level, by exact draws of p_t (x_t = alpha x_0 + sigma eps, x_0 from the mixture).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import reference_solution, sample
from workbench.memo import Memo, content_key
from workbench.metrics import mean_l2_error
from workbench.toy.fields import clean_draws
from workbench.toy.mixture import GaussianMixture

# The trained model's fine solve: 400 steps of third-order DPM-Solver (1200 calls), a fixed
# grid. Not DOP853: on a width-64 MLP it needs ~52,000 calls at the exact model's 1e-11 (200 s
# for 500 points) and is accurate only to ~1e-6 at 1e-8 (1.3e-6 from its 1e-9 answer), where
# its adaptive steps differ between MKL code paths and so do the model and step errors (2e-6
# relative). A fixed grid gives the same answer on every CPU. Measured on the ring's 300-step
# network: 5.5e-7 (largest distance) from DOP853 at 1e-10, which itself moves 6.4e-7 from 1e-9.
# That error (~1e-12 squared) is counted in the model error; the exact model's is below 1e-8.
FINE_SOLVER, FINE_ORDER, FINE_STEPS = "dpm_solver", 3, 400
FINE_SOLVES = Memo("fine solves of trained models", maxsize=32)


@dataclass(frozen=True)
class ErrorSplit:
    """One solver at one step count (see the module for each term)."""

    solver: str
    steps: int
    nfe: int
    total: float
    model: float
    step: float
    interaction: float
    cross: float
    step_l2: float


def _squared(x: torch.Tensor) -> float:
    return float((x * x).sum(dim=1).mean())


def _check_pair(trained: DiffusionModel, exact: DiffusionModel) -> None:
    for name, model in (("trained", trained), ("exact", exact)):
        if not isinstance(model, DiffusionModel):
            raise ValueError(f"{name} must be a DiffusionModel, got {type(model).__name__}")
    # by content digest: two equal schedules built apart hold equal, not identical, tensors
    if content_key(trained.schedule) != content_key(exact.schedule):
        raise ValueError(
            f"the trained and exact models run on different schedules: "
            f"{trained.schedule.name} and {exact.schedule.name}"
        )


def fine_solve(model: DiffusionModel, x_T: torch.Tensor) -> torch.Tensor:
    """The model's ODE solution from x_T on a fixed fine grid (FINE_STEPS of FINE_SOLVER at
    FINE_ORDER; see there why not DOP853), memoized by the model's content and x_T."""

    def solve():
        return sample(model, x_T, solver=FINE_SOLVER, order=FINE_ORDER, steps=FINE_STEPS).x

    return FINE_SOLVES.get(("fine solve", model, x_T), solve).clone()


def split_error(
    trained: DiffusionModel,
    exact: DiffusionModel,
    x_T: torch.Tensor,
    solver: str,
    steps: int,
    **options,
) -> ErrorSplit:
    """The split of `solver` at `steps` on `trained` against `exact`, from x_T (see the module).
    `options` go to `sample` (grid, order, ...). Fine solves are memoized by the models'
    content, so a table over solvers and steps solves each model's reference once."""
    _check_pair(trained, exact)
    result = sample(trained, x_T, solver=solver, steps=steps, **options)
    references = reference_solution(exact, x_T), fine_solve(trained, x_T)
    return split_of(solver, steps, result.nfe, result.x, *references)


def split_of(
    solver: str,
    steps: int,
    nfe: int,
    x_k: torch.Tensor,
    exact_ref: torch.Tensor,
    trained_ref: torch.Tensor,
) -> ErrorSplit:
    """The split of samples x_k already computed (`split_error` without the solve): a caller
    that keeps the samples for display solves once."""
    a, b = trained_ref - exact_ref, x_k - trained_ref
    total, model, step = _squared(a + b), _squared(a), _squared(b)
    return ErrorSplit(
        solver, int(steps), int(nfe), total, model, step,
        interaction=total - model - step, cross=2 * float((a * b).sum(dim=1).mean()),
        step_l2=mean_l2_error(x_k, trained_ref),
    )  # fmt: skip


def decomposition_table(
    trained: DiffusionModel,
    exact: DiffusionModel,
    x_T: torch.Tensor,
    solvers: Sequence[str],
    steps: Sequence[int],
    **options,
) -> pd.DataFrame:
    """`split_error` for every solver and step count from the same starting points x_T (e.g.
    `prior_noise(schedule, n, dim, seed)`): a row each, the columns of ErrorSplit."""
    _check_pair(trained, exact)
    if isinstance(solvers, str) or not len(solvers) or not len(steps):
        raise ValueError("solvers and steps must be non-empty sequences")
    return pd.DataFrame(
        [asdict(split_error(trained, exact, x_T, s, k, **options)) for s in solvers for k in steps]
    )


def saturation_nfe(table: pd.DataFrame) -> dict[str, float]:
    """Per solver, the smallest NFE from which the step error stays below the model error (more
    steps then cannot lower the total much: the model's error dominates); NaN when the step
    error is above it at the largest NFE measured."""
    missing = {"solver", "nfe", "model", "step"} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)} (use decomposition_table)")
    out = {}
    for solver, rows in table.groupby("solver", sort=False):
        rows = rows.sort_values("nfe")
        below = (rows.step < rows.model).to_numpy()
        # the first NFE after the last one where the step error is still above the model's
        above = np.flatnonzero(~below)
        first = 0 if not len(above) else above[-1] + 1
        out[solver] = float(rows.nfe.iloc[first]) if first < len(rows) else math.nan
    return out


def score_error_by_level(
    model: DiffusionModel,
    mixture: GaussianMixture,
    levels: Sequence[float],
    *,
    n: int = 4096,
    seed: int = 0,
) -> pd.DataFrame:
    """E_{p_t} |s_theta(x_t, t) - s*(x_t, t)|^2 at each time t in `levels` (n exact draws of
    p_t, the same x_0 and eps at every level); columns t, sigma, score_error and exact_score
    (E |s*|^2, the scale to compare the error with)."""
    if not isinstance(model, DiffusionModel):
        raise ValueError(f"model must be a DiffusionModel, got {type(model).__name__}")
    if not isinstance(mixture, GaussianMixture):
        raise ValueError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
    schedule = model.schedule
    levels = np.asarray(levels, dtype=np.float64).reshape(-1)
    inside = (levels >= schedule.t_min) & (levels <= schedule.t_max)
    if not len(levels) or not inside.all():
        bad = levels[~inside][:1].tolist() or "none"
        raise ValueError(
            f"levels must be times in [{schedule.t_min:g}, {schedule.t_max:g}], got {bad}"
        )
    x0, eps = clean_draws(mixture, int(n), int(seed))  # the tour's fixed draws of p_t
    score = model.as_prediction("score")
    rows = []
    for t in levels:
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        x_t = alpha * x0 + sigma * eps
        exact = mixture.score(x_t, alpha, sigma)
        rows.append({"t": float(t), "sigma": float(sigma),
                     "score_error": _squared(score(x_t, t) - exact),
                     "exact_score": _squared(exact)})  # fmt: skip
    return pd.DataFrame(rows)
