"""Topic 06's study: flows against the exact flow of a Gaussian mixture, and every number
notebook 06 and its explorer show.

One *setting* is (model, path, reflow rounds, timestep density): the exact marginal velocity
of the mixture on a probability path, or a trained rectified flow after 0-3 reflow rounds, or
MeanFlow. For each setting `flow_cell` samples from fixed prior noise at every offered step
count (Euler in t, the flow-matching sampler: NFE = steps) and measures the samples against
the truth: sliced Wasserstein to exact samples of the mixture, mean L2 to the exact flow's ODE
endpoint from the same noise, and that error split into the model's part (its own exact ODE
endpoint against the exact flow's) and the steps' part (k steps against its own ODE endpoint).
It also measures the straightness and the transport cost of the setting's coupling.

Cells run through `workbench.sweep.run_sweep` (cached on disk as JSON, arrays included), and
`flow_run` keeps what a setting shows in memory, so the notebook and the explorer share the
work and a revisited setting costs nothing. SMOKE and full sizes are `flow_size(smoke)`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from workbench.claims import Claim
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.paths import AffinePath
from workbench.diffusion.sampling import prior_noise
from workbench.diffusion.schedules import DTYPE, SCHEDULES
from workbench.diffusion.study import SOLVER_PROBLEMS, solver_names, study_for
from workbench.flows.exact import exact_velocity, flow_map, straightness, transport_cost
from workbench.memo import memoized
from workbench.metrics import mean_l2_error, sliced_wasserstein
from workbench.registry import Registry
from workbench.sweep import run_sweep
from workbench.toy import GaussianMixture
from workbench.toy.fields import evaluation_grid, plot_bounds

PROBLEM = "ring"  # notebook 01's 8-mode ring: the same mixture as its diffusion solvers
STEP_COUNTS = (1, 2, 3, 4, 5, 8, 10, 20, 50)  # the explorer's steps slider snaps to these
COMPARE_NFES = (1, 2, 5, 10)  # rectified flow against the diffusion solvers at these NFE
N_SHOWN = 1500  # samples drawn per setting: enough to see mass, few enough to see through
N_PATHS = 24  # trajectories drawn per setting
# The drawn ODE trajectory: Euler at 128 steps (about 3e-3 from the exact path on the ring,
# under a pixel), kept at every 4th point. The numbers (straightness, endpoints) come from
# exact ODE solves, not from this drawing.
ODE_PATH_STEPS, ODE_PATH_STRIDE = 128, 4

FLOW_MODELS: Registry = Registry("flow model")
FLOW_MODELS.add("exact", "exact", label="exact velocity")

# The timestep densities trained models are trained with (the exact velocity is not trained:
# its settings say "uniform").
FLOW_DENSITIES: Registry = Registry("timestep density")
FLOW_DENSITIES.add("uniform", "uniform", label="uniform")

# The probability paths the study offers (the explorer's path control).
FLOW_PATHS: Registry = Registry("flow path")
FLOW_PATHS.add("rectified", AffinePath.rectified, label=SCHEDULES.label("rectified"))


@dataclass(frozen=True)
class FlowSize:
    """How big notebook 06 (and the served explorer) computes."""

    n_samples: int  # prior noise draws per setting, and exact samples the SW compares against
    steps: tuple[int, ...]  # step counts sampled (the error-vs-NFE curves)


SIZES = {
    "smoke": FlowSize(500, (1, 2, 4, 10, 50)),
    "full": FlowSize(4000, STEP_COUNTS),
}


def flow_size(smoke: bool) -> FlowSize:
    return SIZES["smoke" if smoke else "full"]


def profile(smoke: bool) -> str:
    return "smoke" if smoke else "full"


def mixture() -> GaussianMixture:
    return SOLVER_PROBLEMS[PROBLEM]()


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class FlowSetting:
    """One model the study evaluates: which model, on which path, after how many reflow
    rounds, trained with which timestep density ("uniform" for the exact velocity, which is
    not trained)."""

    model: str = "exact"
    path: str = "rectified"
    rounds: int = 0
    density: str = "uniform"

    def __post_init__(self) -> None:
        FLOW_MODELS.check(self.model)
        FLOW_PATHS.check(self.path)
        FLOW_DENSITIES.check(self.density)

    def cell(self, smoke: bool, seed: int) -> dict:
        return {**self.__dict__, "profile": profile(smoke), "seed": int(seed)}

    @property
    def label(self) -> str:
        return FLOW_MODELS.label(self.model)


def offered_settings() -> tuple[FlowSetting, ...]:
    """Every setting the study computes (and the explorer offers)."""
    return tuple(FlowSetting("exact", path) for path in FLOW_PATHS)


def check_offered(setting: FlowSetting) -> FlowSetting:
    """The setting, or a one-line ValueError naming what is not computed."""
    if setting in offered_settings():
        return setting
    if setting.model == "exact" and setting.rounds:
        raise ValueError("the exact velocity has no reflow rounds: choose a trained model")
    raise ValueError(
        f"{setting.label} is not computed on the {FLOW_PATHS.label(setting.path)} path with "
        f"{setting.rounds} reflow rounds and {setting.density} timestep density"
    )


# ------------------------------------------------------------------ models and samplers
def velocity_model(setting: FlowSetting) -> DiffusionModel:
    path = FLOW_PATHS[setting.path]()
    if setting.model == "exact":
        return exact_velocity(mixture(), path)
    raise ValueError(f"no velocity for {setting}")


def euler(model: DiffusionModel, x1: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """The flow-matching sampler: `steps` Euler steps in t from t_max to t_min on a uniform
    grid, x <- x - dt v(x, t); the states, x1 first. (DDIM is the same on the rectified path
    only; on curved paths it is an exponential integrator, not what a flow samples with.)"""
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    path = model.schedule
    ts = torch.linspace(path.t_max, path.t_min, steps + 1, dtype=DTYPE)
    states = [x1.to(DTYPE)]
    for t, t_next in itertools.pairwise(ts):
        states.append(states[-1] + (t_next - t) * model(states[-1], t))
    return states


# ------------------------------------------------------------------ one setting, measured
def flow_cell(model, path, rounds, density, profile, seed) -> list[dict]:
    """One setting at one size: a row per step count (the unit of the sweep's cache).

    Columns: steps, nfe, sw (to exact samples), l2 (to the exact flow's ODE endpoint),
    step_error (to the model's own ODE endpoint), samples (first N_SHOWN), paths ((steps + 1,
    N_PATHS, 2)), and per setting (repeated): model_error, straightness, transport_cost,
    ode_path (the drawn ODE trajectory)."""
    setting = FlowSetting(model, path, rounds, density)
    size = SIZES[profile]
    velocity = velocity_model(setting)
    path = velocity.schedule
    x1 = prior_noise(path, size.n_samples, 2, seed)
    exact_end = flow_map(exact_velocity(mixture(), path), x1, path.t_max, path.t_min)
    own_end = exact_end if model == "exact" else flow_map(velocity, x1, path.t_max, path.t_min)
    targets = mixture().sample(size.n_samples, seed=seed + 1)
    ode = euler(velocity, x1, ODE_PATH_STEPS)
    shared = {
        "model_error": mean_l2_error(own_end, exact_end),
        "straightness": straightness(velocity, x1),
        "transport_cost": transport_cost(own_end, x1),
        "ode_path": torch.stack(ode[::ODE_PATH_STRIDE])[:, :N_PATHS].numpy(),
    }
    rows = []
    for k in size.steps:
        states = euler(velocity, x1, k)
        x = states[-1]
        rows.append({
            "steps": k,
            "nfe": k,
            "sw": sliced_wasserstein(x, targets),
            "l2": mean_l2_error(x, exact_end),
            "step_error": mean_l2_error(x, own_end),
            "samples": x[:N_SHOWN].numpy(),
            "paths": torch.stack(states)[:, :N_PATHS].numpy(),
            **shared,
        })  # fmt: skip
    return rows


def flow_sweep(settings: Sequence[FlowSetting], smoke: bool, seed: int = 0) -> pd.DataFrame:
    """Every row of `flow_cell` for these settings (cached on disk per setting)."""
    cells = [check_offered(s).cell(smoke, seed) for s in settings]
    return run_sweep(flow_cell, cells, name="flows")


@dataclass(frozen=True)
class FlowRun:
    """What one setting shows: samples and Euler paths per step count, its curve, its
    ODE trajectory and its coupling's numbers."""

    setting: FlowSetting
    curve: pd.DataFrame  # steps, nfe, sw, l2, step_error
    samples: dict[int, np.ndarray]
    paths: dict[int, np.ndarray]
    ode_path: np.ndarray
    model_error: float
    straightness: float
    transport_cost: float


@memoized("flow runs", maxsize=64)
def flow_run(setting: FlowSetting, smoke: bool, seed: int = 0) -> FlowRun:
    """What one setting shows (from the sweep's cache when it holds the setting)."""
    return _as_run(setting, flow_sweep([setting], smoke, seed))


def flow_runs(settings: Sequence[FlowSetting], smoke: bool, seed: int = 0) -> list[FlowRun]:
    """The runs of several settings, computed in one sweep (one progress line)."""
    missing = [s for s in settings if not flow_run.cached(s, smoke, seed)]
    if len(missing) > 1:
        flow_sweep(missing, smoke, seed)  # fills the sweep's cache in one pass
    return [flow_run(s, smoke, seed) for s in settings]


def _as_run(setting: FlowSetting, rows: pd.DataFrame) -> FlowRun:
    first = rows.iloc[0]
    return FlowRun(
        setting=setting,
        curve=rows[["steps", "nfe", "sw", "l2", "step_error"]].reset_index(drop=True),
        samples=dict(zip(rows.steps, rows.samples, strict=True)),
        paths=dict(zip(rows.steps, rows.paths, strict=True)),
        ode_path=first.ode_path,
        model_error=float(first.model_error),
        straightness=float(first.straightness),
        transport_cost=float(first.transport_cost),
    )


# ------------------------------------------------------------------ tables for the notebook
def error_table(runs: Sequence[FlowRun]) -> pd.DataFrame:
    """One row per (setting, step count): the errors, ids as columns, the model's label."""
    frames = []
    for run in runs:
        frame = run.curve.copy()
        for key, value in run.setting.__dict__.items():
            frame.insert(0, key, value)
        frame.insert(0, "label", run.setting.label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def coupling_table(runs: Sequence[FlowRun]) -> pd.DataFrame:
    """Per setting: its straightness, its coupling's transport cost, its model error."""
    rows = [
        {**run.setting.__dict__, "label": run.setting.label, "straightness": run.straightness,
         "transport cost": run.transport_cost, "model error": run.model_error}
        for run in runs
    ]  # fmt: skip
    return pd.DataFrame(rows)


def sampling_floor(smoke: bool, seed: int = 0) -> float:
    """SW between two independent exact sample sets of the study's size: what a perfect
    sampler scores (its samples are seed + 2's, the comparison's seed + 1's)."""
    n = flow_size(smoke).n_samples
    return sliced_wasserstein(
        mixture().sample(n, seed=seed + 2), mixture().sample(n, seed=seed + 1)
    )


def one_step_collapse(smoke: bool, seed: int = 0) -> dict[str, float]:
    """One Euler step of the exact rectified flow from t = 1: x_0 = x_1 - v(x_1, 1) and
    v(x, 1) = x - E[x_0], so every sample lands on the mixture's mean. The largest distance
    of a sample from the mean, the samples' spread, and the distance of the mean from 0."""
    x = flow_run(FlowSetting("exact", "rectified"), smoke, seed).samples[1]
    mean = mixture().mean().numpy()
    return {
        "max_distance_to_mean": float(np.abs(x - mean).max()),
        "spread": float(x.std(0).max()),
        "mean_norm": float(np.linalg.norm(mean)),
    }


# ------------------------------------------------------------------ against diffusion solvers
def diffusion_cell(profile: str, seed: int, nfes: list[int]) -> list[dict]:
    """At each NFE: the best of notebook 01's solvers on its VP schedule (lowest mean L2 to its
    exact ODE solution), its error and its samples' SW to exact samples, on the same mixture."""
    size = SIZES[profile]
    study = study_for(PROBLEM, size.n_samples, seed)
    table = study.table(solver_names(), nfes=tuple(nfes))
    targets = mixture().sample(size.n_samples, seed=seed + 1)
    rows = []
    for nfe in nfes:
        best = table[f"NFE {nfe}"].idxmin()
        per_step = study.solve(best, 1).nfe
        x = study.solve(best, max(1, nfe // per_step)).x
        rows.append({"nfe": nfe, "solver": best, "l2": float(table.loc[best, f"NFE {nfe}"]),
                     "sw": sliced_wasserstein(x, targets)})  # fmt: skip
    return rows


@memoized("flow vs diffusion", maxsize=8)
def diffusion_comparison(smoke: bool, seed: int = 0, nfes=COMPARE_NFES) -> pd.DataFrame:
    """Rectified flow (exact velocity, Euler) against the best diffusion solver at each NFE:
    one row per NFE with both errors (mean L2 to each one's exact ODE endpoint, SW to exact
    samples)."""
    cell = {"profile": profile(smoke), "seed": int(seed), "nfes": list(nfes)}
    diffusion = run_sweep(diffusion_cell, [cell], name="flows-vs-diffusion", progress=False)
    flow = flow_run(FlowSetting("exact", "rectified"), smoke, seed).curve.set_index("nfe")
    steps = set(flow.index)
    table = diffusion[["nfe", "solver", "l2", "sw"]].rename(
        columns={"l2": "diffusion l2", "sw": "diffusion sw"}
    )
    table["flow l2"] = [flow.l2.get(n, np.nan) if n in steps else np.nan for n in table.nfe]
    table["flow sw"] = [flow.sw.get(n, np.nan) if n in steps else np.nan for n in table.nfe]
    return table.set_index("nfe")


# ------------------------------------------------------------------ what the explorer shows
def nearest_steps(steps: float, offered: Sequence[int]) -> int:
    """The offered step count nearest to `steps` in log scale (the steps slider is a log
    slider; only computed step counts are shown)."""
    if not steps > 0:
        raise ValueError(f"steps must be positive, got {steps!r}")
    return min(offered, key=lambda k: (abs(np.log(k / steps)), k))


@dataclass(frozen=True)
class FlowsView:
    """One setting of the explorer: the selected run at its step count, and the runs it is
    compared with (every offered setting on the same path) for the error panel."""

    run: FlowRun
    steps: int
    compared: tuple[FlowRun, ...]
    floor: float  # the SW of two exact sample sets: what a perfect sampler scores
    density: tuple[np.ndarray, np.ndarray, np.ndarray]  # xs, ys, log p_0 on a grid


def compared_settings(setting: FlowSetting) -> tuple[FlowSetting, ...]:
    return tuple(s for s in offered_settings() if s.path == setting.path)


@memoized("flows views", maxsize=256)
def flows_view(setting: FlowSetting, steps: float, smoke: bool, seed: int = 0) -> FlowsView:
    """Everything the flows explorer shows for one setting of its controls (a ValueError for
    a setting the study does not compute)."""
    check_offered(setting)
    shown = nearest_steps(steps, flow_size(smoke).steps)
    compared = tuple(flow_runs(compared_settings(setting), smoke, seed))
    return FlowsView(
        run=flow_run(setting, smoke, seed),
        steps=shown,
        compared=compared,
        floor=sampling_floor(smoke, seed),
        density=density_image(),
    )


def flows_view_cost(setting: FlowSetting, smoke: bool, seed: int = 0) -> float | None:
    """About how many seconds `flows_view` will take for a setting whose runs are not all in
    memory yet (the median time of recent runs, each), None when they are (or before any
    run was timed)."""
    settings = {setting, *compared_settings(setting)}
    missing = sum(not flow_run.cached(s, smoke, seed) for s in settings)
    per_run = flow_run.memo.typical_seconds()
    return None if not missing or per_run is None else missing * per_run


# ------------------------------------------------------------------ the target density
@memoized("flow target density", maxsize=2)
def density_image(size: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, log p_0) of the study's mixture on a size x size grid around its mass."""
    target = mixture()
    bounds = plot_bounds(target, margin=3.0, at_least=2.5)
    xs, ys, points = evaluation_grid(bounds, size)
    return xs.numpy(), ys.numpy(), target.log_prob(points).reshape(size, size).numpy()


def velocity_field(path: str, t: float, n: int = 17):
    """(points, velocities) of the exact velocity on an n x n grid at time t (the arrows of
    the notebook's first figure)."""
    bounds = plot_bounds(mixture(), margin=3.0, at_least=2.5)
    _, _, points = evaluation_grid(bounds, n)
    model = exact_velocity(mixture(), FLOW_PATHS[path]())
    return points.numpy(), model(points, t).numpy()


# ------------------------------------------------------------------ the verdict of notebook 06
RECTIFIED_FLOW = "Liu et al. 2022, arXiv:2209.03003"
FLOW_MATCHING = "Lipman et al. 2022, arXiv:2210.02747"
IMPROVED_RF = "Lee, Lin & Fanti 2024, arXiv:2405.20320"
MEANFLOW = "Geng et al. 2025, arXiv:2505.13447"
BESPOKE = "Shaul et al. 2023, arXiv:2310.19075"
DERIVED = "derived in the notebook"

FLOW_CLAIMS: tuple[Claim, ...] = (
    Claim(
        "one Euler step of the exact 1-rectified flow lands every sample on the mixture's "
        "mean (largest distance from it)",
        DERIVED,
        "exact.one_step.max_distance_to_mean",
        below=1e-12,
    ),
)
