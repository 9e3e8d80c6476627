"""Topic 08's study: denoisers trained on notebook 01's exact ring, and every number notebook
08 and its explorer show.

A *model* is the exact mixture model or a trained network (a `DenoiserBudget`: training steps
and width, the rest fixed in `denoisers.DEFAULT`). For each model, `model_run` solves from the
same starting noise with every solver at every step count, keeps the samples the explorer
draws, and splits each solve's error into the model's part and the steps' part
(`decomposition.split_of`); `score_errors` measures each network's score error per noise
level. DPM-Solver-v3 runs on statistics computed from the model it samples (its empirical
model statistics on exact clean draws, as the paper computes them on training data), so
on a network it uses the network's own statistics, as a user's would.

Trained networks are cached on disk (`trained_denoisers`, a sweep); solves and tables are
memoized in memory, so the notebook and the explorer share the work. SMOKE and full sizes
are `models_size(smoke)`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from workbench.diffusion import dpm_solver_v3 as v3
from workbench.diffusion.core import prior_noise
from workbench.diffusion.guidance import GuidanceProblem
from workbench.diffusion.guidance_targets import PLOT_HALF_WIDTH
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import reference_solution, sample
from workbench.diffusion.schedules import VPSchedule
from workbench.memo import Memo, memoized
from workbench.models import autoguidance
from workbench.models.decomposition import fine_solve, score_error_by_level, split_of
from workbench.models.denoisers import (
    BUDGETS,
    DEFAULT_BUDGET,
    DENOISER_PROBLEMS,
    DenoiserBudget,
    TrainedDenoiser,
    trained_denoisers,
)
from workbench.models.learned_statistics import StatisticsPair, v3_error_table
from workbench.registry import unknown_choice
from workbench.toy.fields import clean_draws, evaluation_grid, plot_bounds
from workbench.toy.mixture import GaussianMixture

PROBLEM = "ring"  # notebook 01's 8-mode ring
EXACT = "exact"  # the model id of the exact mixture model
EMS_SEED_OFFSET = 500  # v3's clean draws: independent of the starting noise and the training


@dataclass(frozen=True)
class ModelsSize:
    budgets: tuple[DenoiserBudget, ...]  # the trained networks, smallest first
    default: DenoiserBudget  # the model the notebook's claims are about
    solvers: tuple[str, ...]
    steps: tuple[int, ...]
    n_points: int  # starting noises of every solve (the decomposition's expectation)
    n_shown: int  # of them, drawn in the explorer
    n_levels: int  # noise levels of the score error
    n_score: int  # exact draws of p_t per level
    ems_samples: int  # DPM-Solver-v3's statistics: clean draws ...
    ems_lambdas: int  # ... and log-SNR points
    guided_budgets: tuple[DenoiserBudget, ...]  # conditional networks on the two-class mixture
    guided_good: DenoiserBudget  # the network guided ...
    guided_bad: DenoiserBudget  # ... and its bad version in the explorer and the claim
    guided_n: int  # samples per guided run
    guided_seeds: tuple[int, ...]  # seeds (starting noise and exact targets) of the comparison


SIZES = {
    "full": ModelsSize(
        budgets=BUDGETS,
        default=DEFAULT_BUDGET,
        solvers=("ddim", "dpmpp_2m", "dpmpp_3m", "unipc_bh2", "ipndm", "dpm_solver_v3"),
        steps=(2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50),
        n_points=1000,
        n_shown=1000,
        n_levels=24,
        n_score=4096,
        ems_samples=1024,
        ems_lambdas=200,
        guided_budgets=BUDGETS,
        guided_good=DenoiserBudget(3000, 64),
        guided_bad=DenoiserBudget(1500, 32),
        guided_n=2000,
        guided_seeds=(0, 1, 2),
    ),
    "smoke": ModelsSize(
        budgets=(DenoiserBudget(300, 32), DenoiserBudget(600, 32)),
        default=DenoiserBudget(600, 32),
        solvers=("ddim", "dpmpp_2m", "unipc_bh2", "dpm_solver_v3"),
        steps=(2, 3, 5, 10, 20),
        n_points=256,
        n_shown=256,
        n_levels=8,
        n_score=1024,
        ems_samples=256,
        ems_lambdas=60,
        guided_budgets=(DenoiserBudget(300, 32), DenoiserBudget(600, 32)),
        guided_good=DenoiserBudget(600, 32),
        guided_bad=DenoiserBudget(300, 32),
        guided_n=500,
        guided_seeds=(0,),
    ),
}


def profile(smoke: bool) -> str:
    return "smoke" if smoke else "full"


def models_size(smoke: bool) -> ModelsSize:
    return SIZES[profile(smoke)]


def mixture() -> GaussianMixture:
    return DENOISER_PROBLEMS[PROBLEM]()


def schedule() -> VPSchedule:
    return VPSchedule.linear_ddpm()


# ------------------------------------------------------------------ the models
def budget_id(budget: DenoiserBudget) -> str:
    """The model id of a trained network, e.g. "1500x64"."""
    return f"{budget.steps}x{budget.width}"


def model_label(model_id: str) -> str:
    if model_id == EXACT:
        return "exact model"
    steps, width = model_id.split("x")
    return f"trained: {steps} steps, width {width}"


def model_ids(smoke: bool) -> tuple[str, ...]:
    """The exact model, then the networks from the smallest budget up."""
    return (EXACT, *(budget_id(b) for b in models_size(smoke).budgets))


def check_model(model_id: str, smoke: bool) -> str:
    if model_id not in model_ids(smoke):
        raise unknown_choice("model", model_id, model_ids(smoke))
    return model_id


NETWORKS = Memo("notebook 08's trained denoisers", maxsize=8)


def networks(smoke: bool, seed: int = 0) -> dict[str, TrainedDenoiser]:
    """The size's networks by model id, trained once and cached on disk (a progress bar each
    on a first run)."""

    def train():
        trained = trained_denoisers(PROBLEM, models_size(smoke).budgets, seed=seed)
        return {budget_id(b): net for b, net in trained.items()}

    return NETWORKS.get(("networks", profile(smoke), int(seed)), train)


def model_of(model_id: str, smoke: bool, seed: int = 0) -> DiffusionModel:
    if check_model(model_id, smoke) == EXACT:
        return mixture().denoiser(schedule())
    return networks(smoke, seed)[model_id].model()


def starting_noise(smoke: bool, seed: int = 0) -> torch.Tensor:
    return prior_noise(schedule(), models_size(smoke).n_points, mixture().dim, seed)


STATISTICS = Memo("notebook 08's DPM-Solver-v3 statistics", maxsize=16)


def v3_statistics(model_id: str, smoke: bool, seed: int = 0) -> v3.EMS:
    """DPM-Solver-v3's statistics of the model, from exact clean draws of the mixture (the
    paper's recipe: training data, noised, with the model's own Jacobian-vector products)."""
    size = models_size(smoke)

    def compute():
        data, _ = clean_draws(mixture(), size.ems_samples, seed + EMS_SEED_OFFSET)
        lambdas = v3.default_stat_lambdas(schedule(), size.ems_lambdas)
        return v3.compute_ems(model_of(model_id, smoke, seed), data, lambdas=lambdas)

    return STATISTICS.get(("v3 statistics", model_id, profile(smoke), int(seed)), compute)


def v3_pair(smoke: bool, seed: int = 0) -> StatisticsPair:
    """The default network's statistics and the exact model's, from the same draws and noise."""
    network = v3_statistics(budget_id(models_size(smoke).default), smoke, seed)
    return StatisticsPair(
        network, v3_statistics(EXACT, smoke, seed), models_size(smoke).ems_samples
    )


@memoized("notebook 08's v3 statistics sources", maxsize=4)
def v3_sources(smoke: bool, seed: int = 0) -> pd.DataFrame:
    """DPM-Solver-v3 on the default network with its own statistics, the exact model's and
    the constant ones of DPM-Solver++, at every step count: a row each (ErrorSplit's columns
    after `statistics`)."""
    default = budget_id(models_size(smoke).default)
    return v3_error_table(
        model_of(default, smoke, seed), model_of(EXACT, smoke), starting_noise(smoke, seed),
        models_size(smoke).steps, v3_pair(smoke, seed),
    )  # fmt: skip


def solver_options(model_id: str, solver: str, smoke: bool, seed: int = 0) -> dict:
    """What `sample` needs besides the solver and steps: v3's statistics of this model."""
    if solver != "dpm_solver_v3":
        return {}
    return {"solver_options": {"ems": v3_statistics(model_id, smoke, seed)}}


# ------------------------------------------------------------------ one model's solves
@dataclass(frozen=True)
class ModelRun:
    """Every solve of one model from the size's starting noise."""

    model_id: str
    table: pd.DataFrame  # one row per (solver, steps): ErrorSplit's columns
    samples: dict[tuple[str, int], np.ndarray]  # (solver, steps) -> the shown samples
    fine: np.ndarray  # the model's own fine solve of the shown noise
    seconds: float


RUNS = Memo("notebook 08's model runs", maxsize=16)


def model_run(model_id: str, smoke: bool, seed: int = 0) -> ModelRun:
    """Solve with every solver at every step count and split each error (memoized)."""
    check_model(model_id, smoke)
    key = ("model run", model_id, profile(smoke), int(seed))
    return RUNS.get(key, lambda: _solve_all(model_id, smoke, seed))


def is_run(model_id: str, smoke: bool, seed: int = 0) -> bool:
    return ("model run", model_id, profile(smoke), int(seed)) in RUNS


def _solve_all(model_id: str, smoke: bool, seed: int) -> ModelRun:
    start = time.perf_counter()
    size, model, exact = models_size(smoke), model_of(model_id, smoke, seed), model_of(EXACT, smoke)
    x_T = starting_noise(smoke, seed)
    exact_ref, model_ref = reference_solution(exact, x_T), fine_solve(model, x_T)
    rows, samples = [], {}
    for solver in size.solvers:
        options = solver_options(model_id, solver, smoke, seed)
        for steps in size.steps:
            result = sample(model, x_T, solver=solver, steps=steps, **options)
            rows.append(asdict(split_of(solver, steps, result.nfe, result.x, exact_ref, model_ref)))
            samples[solver, steps] = result.x[: size.n_shown].numpy()
    table = pd.DataFrame(rows).assign(model_id=model_id)
    seconds = time.perf_counter() - start
    return ModelRun(model_id, table, samples, model_ref[: size.n_shown].numpy(), seconds)


def decomposition(smoke: bool, seed: int = 0) -> pd.DataFrame:
    """Every model's split: a row per model, solver and steps (`model_id` names the model,
    `model` is its model error)."""
    runs = [model_run(m, smoke, seed) for m in model_ids(smoke)]
    return pd.concat([run.table for run in runs], ignore_index=True)


def best_solvers(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and step count, the solver with the lowest total error and that error (every
    solver here costs one model call a step, so equal steps are equal NFE)."""
    best = table.loc[table.groupby(["model_id", "steps"], sort=False).total.idxmin()]
    return best.pivot(index="steps", columns="model_id", values="solver")


def solver_ranks_changed(table: pd.DataFrame, model_id: str) -> list[int]:
    """The step counts at which a network's best solver differs from the exact model's."""
    best = best_solvers(table)
    return [int(k) for k in best.index if best.loc[k, model_id] != best.loc[k, EXACT]]


# ------------------------------------------------------------------ the score error by level
def score_levels(smoke: bool) -> np.ndarray:
    """Times whose noise levels sigma/alpha are log-spaced from the schedule's end to 1 (where
    a network's error is largest) on to the prior."""
    sched = schedule()
    times = np.linspace(sched.t_min, sched.t_max, 4097)
    ve_sigma = (sched.sigma(torch.as_tensor(times)) / sched.alpha(torch.as_tensor(times))).numpy()
    targets = np.geomspace(ve_sigma[0] * 1.001, ve_sigma[-1] * 0.999, models_size(smoke).n_levels)
    return np.interp(np.log(targets), np.log(ve_sigma), times)


@memoized("notebook 08's score errors", maxsize=8)
def score_errors(smoke: bool, seed: int = 0) -> pd.DataFrame:
    """E_{p_t} |s_theta - s*|^2 of every network at every level, relative to E|s*|^2, and the
    level as sigma / alpha (`ve_sigma`, the axis of the figures)."""
    size, levels, frames = models_size(smoke), score_levels(smoke), []
    for model_id in model_ids(smoke)[1:]:
        frame = score_error_by_level(
            model_of(model_id, smoke, seed), mixture(), levels, n=size.n_score, seed=seed
        )
        frames.append(frame.assign(model_id=model_id))
    table = pd.concat(frames, ignore_index=True)
    alpha = schedule().alpha(torch.tensor(table.t.to_numpy())).numpy()
    return table.assign(
        ve_sigma=table.sigma / alpha, relative=table.score_error / table.exact_score
    )


# ------------------------------------------------------------------ what the explorer shows
@memoized("notebook 08's density image", maxsize=2)
def density_image(size: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, log p_0) of the ring on a size x size grid around its mass."""
    target = mixture()
    xs, ys, points = evaluation_grid(plot_bounds(target, margin=3.0, at_least=2.5), size)
    return xs.numpy(), ys.numpy(), target.log_prob(points).reshape(size, size).numpy()


@dataclass(frozen=True)
class ModelsView:
    model_id: str
    solver: str
    steps: int
    samples: np.ndarray  # the model's samples at (solver, steps)
    fine: np.ndarray  # where its own ODE takes the same noise
    rows: pd.DataFrame  # this model and solver's split at every step count
    scores: pd.DataFrame  # every network's score error by level
    density: tuple[np.ndarray, np.ndarray, np.ndarray]
    scale: float  # the guidance scale shown
    guided: dict  # method -> its GuidedRun at that scale
    guided_table: pd.DataFrame  # every guided run's measurements
    class_density: tuple[np.ndarray, np.ndarray, np.ndarray]


def nearest_steps(steps: float, offered: Sequence[int]) -> int:
    return int(min(offered, key=lambda k: (abs(k - float(steps)), k)))


def check_solver(solver: str, smoke: bool) -> str:
    solvers = models_size(smoke).solvers
    if solver not in solvers:
        raise unknown_choice("solver", solver, solvers)
    return solver


@memoized("notebook 08's views", maxsize=512)
def models_view(
    model_id: str, solver: str, steps: float, scale: float, smoke: bool, seed: int = 0
) -> ModelsView:
    """Everything the explorer shows for one setting of its controls."""
    check_solver(solver, smoke)
    run, shown = model_run(model_id, smoke, seed), nearest_steps(steps, models_size(smoke).steps)
    rows = run.table[run.table.solver == solver].reset_index(drop=True)
    guided_runs = guided_at(scale, smoke, seed)
    return ModelsView(
        model_id, solver, shown, run.samples[solver, shown], run.fine, rows,
        score_errors(smoke, seed), density_image(), next(iter(guided_runs.values())).scale,
        guided_runs, guided_table(smoke, seed), class_density(),
    )  # fmt: skip


def models_view_cost(model_id: str, smoke: bool, seed: int = 0) -> float | None:
    """About how many seconds a view of a model not solved yet takes (None when solved)."""
    if is_run(model_id, smoke, seed):
        return None
    return RUNS.typical_seconds()


# ------------------------------------------------------------------ autoguidance vs CFG
GUIDANCE_DROPOUT = 0.1  # the conditional networks' null-label rate (CFG needs p(x) too)
SCALES = autoguidance.SCALES


def guided_problem() -> GuidanceProblem:
    return GuidanceProblem.two_class()


GUIDED_NETWORKS = Memo("notebook 08's conditional networks", maxsize=8)


def guided_networks(smoke: bool, seed: int = 0) -> dict[str, TrainedDenoiser]:
    """The size's conditional networks on the two-class mixture (label dropout), by model id."""

    def train():
        budgets = models_size(smoke).guided_budgets
        trained = trained_denoisers("two_class", budgets, label_dropout=GUIDANCE_DROPOUT, seed=seed)
        return {budget_id(b): net for b, net in trained.items()}

    return GUIDED_NETWORKS.get(("guided networks", profile(smoke), int(seed)), train)


GUIDED = Memo("notebook 08's guided runs", maxsize=8)


def guided(smoke: bool, seed: int = 0) -> list[autoguidance.GuidedRun]:
    """CFG of the good network and autoguidance by its bad version at every scale."""

    def run():
        size, nets = models_size(smoke), guided_networks(smoke, seed)
        good, bad = nets[budget_id(size.guided_good)], nets[budget_id(size.guided_bad)]
        problem = guided_problem()
        return autoguidance.guided_runs(good, bad, problem, SCALES, n=size.guided_n, seed=seed)

    return GUIDED.get(("guided", profile(smoke), int(seed)), run)


@memoized("notebook 08's guided table", maxsize=8)
def guided_table(smoke: bool, seed: int = 0) -> pd.DataFrame:
    return autoguidance.guidance_table(guided(smoke, seed))


@memoized("notebook 08's bad versions", maxsize=4)
def bad_versions(smoke: bool, seed: int = 0) -> pd.DataFrame:
    """Every smaller or shorter-trained network as the good one's bad version, per seed."""
    size, nets = models_size(smoke), guided_networks(smoke, seed)
    good = budget_id(size.guided_good)
    bads = {m: net for m, net in nets.items() if m != good}
    seeds = tuple(seed + s for s in size.guided_seeds)
    return autoguidance.bad_version_table(
        nets[good], bads, guided_problem(), SCALES, seeds=seeds, n=size.guided_n
    )


@memoized("notebook 08's class density", maxsize=2)
def class_density(size: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, log p(x | c)) of the guided class over notebook 02's plotting window."""
    problem = guided_problem()
    half = PLOT_HALF_WIDTH
    xs, ys, points = evaluation_grid((-half, half, -half, half), size)
    log_p = problem.mixture.condition(problem.label).log_prob(points)
    return xs.numpy(), ys.numpy(), log_p.reshape(size, size).numpy()


def guided_at(scale: float, smoke: bool, seed: int = 0) -> dict[str, autoguidance.GuidedRun]:
    """The CFG and the autoguidance run at the computed scale nearest `scale`, by method."""
    shown = min(SCALES, key=lambda w: (abs(w - float(scale)), w))
    return {run.method: run for run in guided(smoke, seed) if run.scale == shown}
