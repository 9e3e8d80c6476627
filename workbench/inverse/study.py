"""Topic 09's study: training-free guidance for linear inverse problems and the sampling of a
product of two mixtures, every number notebook 09 and its explorer show.

A *setting* of the explorer is (problem, measurement noise, method, strength, steps): the
named problems of `workbench.inverse.problems` with the noise std of the observation replaced,
and a method of INVERSE_METHODS at a strength, solved from fixed prior noise. Each run is
measured against exact draws of the exact posterior (sliced Wasserstein, with the floor of
exact sets of the same size). Guidance-term errors are measured per noise level against the
closed-form grad log p_t(y | x_t). The composition part is `workbench.composition`'s budget
table on one product. Everything is memoized in memory (each run is a fraction of a second);
SMOKE and full sizes are `inverse_size(smoke)`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from workbench.composition import budget_table
from workbench.composition import get_problem as get_product
from workbench.diffusion.schedules import DTYPE
from workbench.inverse.measure import guidance_term_error, reference_samples, sw_floor
from workbench.inverse.methods import INVERSE_METHODS, sample_posterior
from workbench.inverse.problems import PROBLEMS, InverseProblem, get_problem
from workbench.memo import Memo, memoized
from workbench.metrics import sliced_wasserstein
from workbench.registry import unknown_choice
from workbench.toy.fields import evaluation_grid

METHODS = ("exact", "dps", "tfg", "enkg")  # shown everywhere; "exact" is the reference
GUIDES = METHODS[1:]  # the approximations measured against it
TERM_LEVELS = (0.002, 0.5)  # the range of t the term errors are measured over (log-spaced)
TFG_BAND = (0.05, 0.2)  # t range averaged for TFG's error per strength (where it matters)
COMPOSITION_PROBLEM = "two_grids"


@dataclass(frozen=True)
class InverseSize:
    problems: tuple[str, ...]
    noise_stds: tuple[float, ...]  # the measurement noise std the explorer offers
    strengths: tuple[float, ...]
    steps: tuple[int, ...]
    n: int  # samples per run
    n_shown: int  # of them, drawn in the explorer
    n_levels: int  # noise levels of the term errors
    n_term: int  # exact draws per level
    tfg_strengths: tuple[float, ...]
    ensembles: tuple[int, ...]  # ensemble sizes of the convergence check
    composition_n: int
    composition_budgets: dict | None  # None: workbench.composition's defaults


SMOKE_BUDGETS = {
    "naive_ode": [(10, {}), (25, {})],
    "naive_sde": [(50, {}), (200, {})],
    "fk_smc": [(100, {"particles": 1}), (100, {"particles": 8})],
    "ula": [(50, {"mcmc_steps": 0}), (50, {"mcmc_steps": 2})],
    "mala": [(50, {"mcmc_steps": 0}), (50, {"mcmc_steps": 2})],
    "exact_ode": [(25, {})],
}
SIZES = {
    "full": InverseSize(
        problems=tuple(PROBLEMS),
        noise_stds=(0.05, 0.1, 0.5),  # must hold every problem's own noise (0.1, 0.5)
        strengths=(0.25, 0.5, 1.0, 2.0),
        steps=(10, 40),
        n=1000,
        n_shown=1000,
        n_levels=12,
        n_term=1000,
        tfg_strengths=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
        ensembles=(4, 16, 64, 256, 1024),
        composition_n=2000,
        composition_budgets=None,
    ),
    "smoke": InverseSize(
        problems=("inpaint", "noisy"),
        noise_stds=(0.1, 0.5),
        strengths=(0.5, 1.0),
        steps=(10,),
        n=256,
        n_shown=256,
        n_levels=5,
        n_term=256,
        tfg_strengths=(0.0, 0.5, 1.0, 2.0),
        ensembles=(4, 16, 64),
        composition_n=500,
        composition_budgets=SMOKE_BUDGETS,
    ),
}


def profile(smoke: bool) -> str:
    return "smoke" if smoke else "full"


def inverse_size(smoke: bool) -> InverseSize:
    return SIZES[profile(smoke)]


def base_noise(problem_id: str) -> float:
    """The noise std the named problem is defined with."""
    return float(torch.sqrt(get_problem(problem_id).noise_covariance[0, 0]))


def problem_at(problem_id: str, noise_std: float) -> InverseProblem:
    """The named problem with measurement noise std `noise_std` (R = std^2 I)."""
    problem = get_problem(problem_id)
    m = problem.operator.shape[0]
    covariance = float(noise_std) ** 2 * torch.eye(m, dtype=DTYPE)
    return dataclasses.replace(problem, noise_covariance=covariance)


def check_setting(problem_id: str, noise_std: float, method: str, smoke: bool) -> None:
    size = inverse_size(smoke)
    if problem_id not in size.problems:
        raise unknown_choice("problem", problem_id, size.problems)
    if float(noise_std) not in size.noise_stds:
        raise unknown_choice("measurement noise", noise_std, size.noise_stds)
    if method not in METHODS:
        raise unknown_choice("method", method, METHODS)


# ------------------------------------------------------------------ posterior runs
@memoized("notebook 09's floors", maxsize=64)
def floor_of(problem_id: str, noise_std: float, n: int, seed: int = 0) -> dict:
    """The distance exact sets of n draws reach ({"floor", "floor_max"})."""
    return sw_floor(problem_at(problem_id, noise_std), n, seed)


@dataclass(frozen=True)
class PosteriorRun:
    problem_id: str
    noise_std: float
    method: str
    strength: float
    steps: int
    nfe: float
    sw: float  # sliced Wasserstein to exact posterior draws (NaN: diverged)
    diverged: bool
    samples: np.ndarray | None  # the shown samples (None: diverged)


RUNS = Memo("notebook 09's posterior runs", maxsize=4096)


def posterior_run(
    problem_id: str, noise_std: float, method: str, strength: float, steps: int, smoke: bool,
    seed: int = 0,
) -> PosteriorRun:  # fmt: skip
    size = inverse_size(smoke)
    key = _run_key(problem_id, noise_std, method, strength, steps, smoke, seed)

    def run():
        problem = problem_at(problem_id, noise_std)
        out = sample_posterior(method, problem, strength=strength, n=size.n, steps=steps,
                               seed=seed)  # fmt: skip
        if out["diverged"]:
            return PosteriorRun(problem_id, noise_std, method, strength, steps, out["nfe"],
                                np.nan, True, None)  # fmt: skip
        sw = sliced_wasserstein(out["x"], reference_samples(problem, seed), seed=seed)
        shown = out["x"][: size.n_shown].numpy()
        return PosteriorRun(problem_id, noise_std, method, strength, steps, out["nfe"], sw,
                            False, shown)  # fmt: skip

    return RUNS.get(key, run)


def _run_key(problem_id, noise_std, method, strength, steps, smoke, seed) -> tuple:
    n = inverse_size(smoke).n
    return ("run", problem_id, float(noise_std), method, float(strength), int(steps), n, seed)


def settings(smoke: bool) -> list[tuple]:
    """Every (problem, noise, method, strength, steps) the explorer offers (the exact method
    at strength 1 only: it is exact there)."""
    size = inverse_size(smoke)
    out = []
    for p, noise, m, k in itertools.product(size.problems, size.noise_stds, METHODS, size.steps):
        strengths = (1.0,) if m == "exact" else size.strengths
        out += [(p, noise, m, s, k) for s in strengths]
    return out


def _rows(runs: Sequence[tuple], smoke: bool, seed: int) -> pd.DataFrame:
    """A row per (problem, noise, method, strength, steps): its distance and the floor."""
    rows = []
    for p, noise, m, s, k in runs:
        run = posterior_run(p, noise, m, s, k, smoke, seed)
        floor = floor_of(p, noise, inverse_size(smoke).n, seed)
        rows.append({"problem": p, "noise": noise, "method": m, "strength": s, "steps": k,
                     "nfe": run.nfe, "sw": run.sw, **floor, "diverged": run.diverged})  # fmt: skip
    table = pd.DataFrame(rows)
    return table.assign(ratio=table.sw / table.floor_max)


@memoized("notebook 09's posterior table", maxsize=4)
def posterior_table(smoke: bool, seed: int = 0) -> pd.DataFrame:
    """Every offered run: its distance to the exact posterior and the floor."""
    return _rows(settings(smoke), smoke, seed)


@memoized("notebook 09's distance curves", maxsize=256)
def distance_curves(problem_id: str, noise_std: float, steps: int, smoke: bool, seed: int = 0):
    """The rows of one problem, noise and step count (every method and strength): what the
    explorer's distance panel needs, without computing the other settings."""
    here = [
        r for r in settings(smoke) if r[0] == problem_id and r[1] == noise_std and r[4] == steps
    ]
    return _rows(here, smoke, seed)


# ------------------------------------------------------------------ guidance-term errors
def term_levels(smoke: bool) -> np.ndarray:
    return np.geomspace(*TERM_LEVELS, inverse_size(smoke).n_levels)


@memoized("notebook 09's term slices", maxsize=256)
def term_slice(problem_id: str, noise_std: float, strength: float, smoke: bool, seed: int = 0):
    """Each approximation's guidance-term error per level at one problem, noise, strength."""
    size, frames = inverse_size(smoke), []
    for m in GUIDES:
        frame = guidance_term_error(m, problem_at(problem_id, noise_std), strength,
                                    term_levels(smoke), size.n_term, seed)  # fmt: skip
        frames.append(frame.assign(problem=problem_id, noise=noise_std))
    return pd.concat(frames, ignore_index=True)


@memoized("notebook 09's term errors", maxsize=8)
def term_errors(smoke: bool, seed: int = 0) -> pd.DataFrame:
    """Each approximation's guidance-term error per level, at every offered strength and
    noise, on exact draws of p_t(x_t | y); a `problem` and `noise` column."""
    size = inverse_size(smoke)
    slices = itertools.product(size.problems, size.noise_stds, size.strengths)
    frames = [term_slice(p, noise, s, smoke, seed) for p, noise, s in slices]
    return pd.concat(frames, ignore_index=True)


@memoized("notebook 09's TFG strengths", maxsize=4)
def tfg_strength_errors(smoke: bool, seed: int = 0) -> pd.DataFrame:
    """TFG's relative term error, averaged over levels in TFG_BAND, per strength and problem
    (each at its own measurement noise)."""
    size = inverse_size(smoke)
    levels = np.geomspace(*TFG_BAND, 4)
    rows = []
    for p, s in itertools.product(size.problems, size.tfg_strengths):
        frame = guidance_term_error("tfg", get_problem(p), s, levels, size.n_term, seed)
        rows.append({"problem": p, "strength": s, "relative": float(frame.relative.mean())})
    return pd.DataFrame(rows)


@memoized("notebook 09's ensembles", maxsize=4)
def ensemble_table(smoke: bool, seed: int = 0) -> pd.DataFrame:
    """The ensemble term's error against the exact term and against its own limit, per
    ensemble size, at t = 0.2 on every problem."""
    from workbench.inverse.measure import ensemble_convergence

    size, frames = inverse_size(smoke), []
    for p in size.problems:
        frame = ensemble_convergence(get_problem(p), 0.2, size.ensembles, n=max(size.ensembles),
                                     seed=seed)  # fmt: skip
        frames.append(frame.assign(problem=p))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------ composition
@memoized("notebook 09's composition", maxsize=4)
def composition_table(smoke: bool, seed: int = 0) -> pd.DataFrame:
    size = inverse_size(smoke)
    return budget_table(get_product(COMPOSITION_PROBLEM), size.composition_n, seed,
                        size.composition_budgets)  # fmt: skip


# ------------------------------------------------------------------ what the explorer shows
@memoized("notebook 09's posterior densities", maxsize=64)
def posterior_density(problem_id: str, noise_std: float, size: int = 120):
    """(xs, ys, log p(x_0 | y)) over a window holding the prior's mass."""
    problem = problem_at(problem_id, noise_std)
    half = 3.0 if problem_id != "noisy" else 3.5
    xs, ys, points = evaluation_grid((-half, half, -half, half), size)
    log_p = problem.posterior.log_prob(points).reshape(size, size)
    return xs.numpy(), ys.numpy(), log_p.numpy()


@dataclass(frozen=True)
class InverseView:
    problem_id: str
    noise_std: float
    method: str
    strength: float
    steps: int
    run: PosteriorRun
    exact: np.ndarray  # exact posterior draws, as many as shown
    density: tuple[np.ndarray, np.ndarray, np.ndarray]
    curves: pd.DataFrame  # every method's distance per strength at this problem, noise, steps
    terms: pd.DataFrame  # every approximation's term error per level at this strength, noise


def nearest(value: float, offered: Sequence[float]) -> float:
    return min(offered, key=lambda v: (abs(v - float(value)), v))


@memoized("notebook 09's views", maxsize=1024)
def inverse_view(
    problem_id: str, noise_std: float, method: str, strength: float, steps: float, smoke: bool,
    seed: int = 0,
) -> InverseView:  # fmt: skip
    check_setting(problem_id, noise_std, method, smoke)
    size = inverse_size(smoke)
    steps, strength = int(nearest(steps, size.steps)), float(nearest(strength, size.strengths))
    run = posterior_run(problem_id, noise_std, method, 1.0 if method == "exact" else strength,
                        steps, smoke, seed)  # fmt: skip
    curves = distance_curves(problem_id, float(noise_std), steps, smoke, seed)
    terms = term_slice(problem_id, float(noise_std), strength, smoke, seed)
    exact = reference_samples(problem_at(problem_id, noise_std), seed)[: size.n_shown].numpy()
    return InverseView(
        problem_id, noise_std, method, strength, steps, run, exact,
        posterior_density(problem_id, noise_std), curves, terms,
    )  # fmt: skip


def inverse_view_cost(
    problem_id: str, noise_std: float, method: str, strength: float, steps: float, smoke: bool,
    seed: int = 0,
) -> float | None:  # fmt: skip
    """About how many seconds a view whose run is not computed yet takes (None when it is)."""
    size = inverse_size(smoke)
    steps, strength = int(nearest(steps, size.steps)), float(nearest(strength, size.strengths))
    strength = 1.0 if method == "exact" else strength
    if _run_key(problem_id, noise_std, method, strength, steps, smoke, seed) in RUNS:
        return None
    return RUNS.typical_seconds()


def method_label(method: str) -> str:
    return INVERSE_METHODS.label(method)
