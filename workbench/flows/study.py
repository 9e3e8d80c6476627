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
from workbench.diffusion.paths import PATHS
from workbench.diffusion.sampling import SOLVERS, prior_noise
from workbench.diffusion.schedules import DTYPE
from workbench.diffusion.study import SOLVER_PROBLEMS, solver_names, study_for
from workbench.flows.exact import exact_velocity, flow_map, straightness, transport_cost
from workbench.flows.meanflow import TrainedMeanFlow, train_meanflow
from workbench.flows.training import (
    TIME_DENSITIES,
    TrainedFlow,
    euler_states,
    fine_solution,
    model_error,
    reflow,
    train_flow,
)
from workbench.memo import Memo, memoized
from workbench.metrics import mean_l2_error, sliced_wasserstein
from workbench.registry import Registry
from workbench.sweep import run_sweep
from workbench.toy import GaussianMixture
from workbench.toy.fields import evaluation_grid, plot_bounds

PROBLEM = "ring"  # notebook 01's 8-mode ring: the same mixture as its diffusion solvers
STEP_COUNTS = (1, 2, 3, 4, 5, 8, 10, 20, 50)  # the explorer's steps slider stops at these
COMPARE_NFES = (1, 2, 5, 10)  # rectified flow against the diffusion solvers at these NFE
N_SHOWN = 1500  # samples drawn per setting: enough to see mass, few enough to see through
N_PATHS = 24  # trajectories drawn per setting
# The drawn ODE trajectory: Euler at 128 steps (about 3e-3 from the exact path on the ring,
# under a pixel), kept at every 4th point. The numbers (straightness, endpoints) come from
# exact ODE solves, not from this drawing.
ODE_PATH_STEPS, ODE_PATH_STRIDE = 128, 4

MAX_ROUNDS = 3  # reflow rounds after the first flow: the 2-, 3- and 4-rectified flows

FLOW_MODELS: Registry = Registry("flow model")
FLOW_MODELS.add("exact", "exact", label="exact velocity")
FLOW_MODELS.add("trained", "trained", label="trained rectified flow")
FLOW_MODELS.add("meanflow", "meanflow", label="MeanFlow")

# The timestep densities of training (the exact velocity is not trained: its settings say
# "uniform"; MeanFlow draws (r, t) from its paper's logit-normal).
FLOW_DENSITIES: Registry = Registry("timestep density")
for _name in ("uniform", "u_shaped", "logit_normal"):
    FLOW_DENSITIES.add(_name, _name, label=TIME_DENSITIES.label(_name))

# The probability paths (the explorer's path control offers those its size computes).
FLOW_PATHS = PATHS


@dataclass(frozen=True)
class TrainingSize:
    """The training budget of the trained flows and MeanFlow (one budget for every density,
    so densities compare at equal budget)."""

    steps: int  # Adam steps of the first (1-rectified) flow and of MeanFlow
    reflow_steps: int  # Adam steps of each reflow round (warm-started from the previous)
    n_pairs: int  # (noise, endpoint) pairs each reflow round trains on
    batch: int
    lr: float
    width: int
    depth: int
    densities: tuple[str, ...]  # timestep densities of the trained rectified flows


@dataclass(frozen=True)
class FlowSize:
    """How big notebook 06 (and the served explorer) computes."""

    n_samples: int  # prior noise draws per setting, and exact samples the SW compares against
    steps: tuple[int, ...]  # step counts sampled (the error-vs-NFE curves)
    paths: tuple[str, ...]  # the paths the exact velocity is evaluated on
    # straightness is a mean over the first n_straight noise draws (its ODE solve, with the
    # kinetic energy along, costs as much as the endpoint solve)
    n_straight: int
    diffusion_solvers: tuple[str, ...]  # notebook 01's solvers the comparison picks from
    training: TrainingSize


def _diffusion_solvers(leave_out: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(s for s in solver_names() if s not in leave_out)


SIZES = {
    # SMOKE leaves out DPM-Solver-v3, whose model statistics take about 40 s to estimate
    "smoke": FlowSize(500, (1, 2, 5, 10, 50), ("rectified",), 200,
                      _diffusion_solvers(leave_out=("dpm_solver_v3",)),
                      TrainingSize(150, 100, 500, 256, 3e-3, 32, 2, ("uniform", "u_shaped"))),
    "full": FlowSize(2000, STEP_COUNTS, ("rectified", "condot", "cosine"), 500,
                     _diffusion_solvers(),
                     TrainingSize(1500, 600, 4000, 256, 3e-3, 64, 3, ("uniform", "u_shaped"))),
}  # fmt: skip


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
        """'exact velocity', '2-RF, U-shaped' (a trained (rounds + 1)-rectified flow and its
        timestep density), 'MeanFlow'."""
        if self.model != "trained":
            return FLOW_MODELS.label(self.model)
        return f"{self.rounds + 1}-RF, {FLOW_DENSITIES.label(self.density)}"


def offered_settings(smoke: bool) -> tuple[FlowSetting, ...]:
    """Every setting the study computes at this size (and the explorer offers): the exact
    velocity on every path of the size; on the rectified path, trained flows after 0 to
    MAX_ROUNDS reflow rounds per timestep density, and MeanFlow."""
    size = flow_size(smoke)
    exact = [FlowSetting("exact", path) for path in size.paths]
    trained = [
        FlowSetting("trained", "rectified", rounds, density)
        for density in size.training.densities
        for rounds in range(MAX_ROUNDS + 1)
    ]
    return (*exact, *trained, FlowSetting("meanflow", "rectified", 0, "logit_normal"))


def check_offered(setting: FlowSetting, smoke: bool) -> FlowSetting:
    """The setting, or a one-line ValueError naming what is not computed."""
    if setting in offered_settings(smoke):
        return setting
    if setting.model == "exact" and setting.rounds:
        raise ValueError("the exact velocity has no reflow rounds: choose a trained model")
    if setting.model != "exact" and setting.path != "rectified":
        raise ValueError("trained models are trained on the rectified path only")
    if setting.model == "meanflow" and (setting.rounds or setting.density != "logit_normal"):
        raise ValueError("MeanFlow is trained once (0 reflow rounds), with logit-normal times")
    raise ValueError(
        f"{setting.label} is not computed on the {FLOW_PATHS.label(setting.path)} path with "
        f"{setting.rounds} reflow rounds and {setting.density} timestep density"
    )


# ------------------------------------------------------------------ models and samplers
def training_cell(kind: str, density: str, profile: str, seed: int) -> list[dict]:
    """Train the models of one kind ("flow": the 1-rectified flow and its MAX_ROUNDS reflow
    rounds; "meanflow") at one size: a row per model with its state (plain arrays) and its
    training seconds (the unit of the training sweep's cache)."""
    size, path = SIZES[profile].training, FLOW_PATHS["rectified"]()
    budget = {"batch": size.batch, "lr": size.lr, "seed": seed}
    if kind == "meanflow":
        flows = [train_meanflow(mixture(), path, steps=size.steps, width=size.width,
                                depth=size.depth, time_density=density, **budget)]  # fmt: skip
    else:
        first = train_flow(mixture(), path, steps=size.steps, width=size.width, depth=size.depth,
                           time_density=density, **budget)  # fmt: skip
        flows = [first, *reflow(first, size.n_pairs, rounds=MAX_ROUNDS, steps=size.reflow_steps,
                                time_density=density, **budget)]  # fmt: skip
    return [{"rounds": k, "state": f.state(), "seconds": f.seconds} for k, f in enumerate(flows)]


TRAINED_MODELS = Memo("flows' trained models", maxsize=8)


def trained_models(kind: str, density: str, smoke: bool, seed: int = 0) -> list:
    """The trained models of one kind and density (TrainedFlow per reflow round, or one
    TrainedMeanFlow), from the training sweep's cache or trained now."""

    def load():
        cell = {"kind": kind, "density": density, "profile": profile(smoke), "seed": int(seed)}
        rows = run_sweep(training_cell, [cell], name="flows-training")
        path = FLOW_PATHS["rectified"]()
        kind_class = TrainedMeanFlow if kind == "meanflow" else TrainedFlow
        return [kind_class.from_state(state, path) for state in rows.state]

    return TRAINED_MODELS.get(("trained", kind, density, bool(smoke), int(seed)), load)


def trained_model(setting: FlowSetting, smoke: bool, seed: int = 0):
    """The trained flow or MeanFlow of a setting; None for the exact velocity."""
    if setting.model == "exact":
        return None
    kind = "meanflow" if setting.model == "meanflow" else "flow"
    return trained_models(kind, setting.density, smoke, seed)[setting.rounds]


def velocity_model(setting: FlowSetting, smoke: bool, seed: int = 0) -> DiffusionModel:
    """The setting's velocity (MeanFlow's: its average velocity at r = t)."""
    if setting.model == "exact":
        return exact_velocity(mixture(), FLOW_PATHS[setting.path]())
    return trained_model(setting, smoke, seed).model


def meanflow_jumps(flow: TrainedMeanFlow, x1: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """MeanFlow's sampler with its states: `steps` jumps z_r = z_t - (t - r) u(z_t, r, t) on a
    uniform grid (TrainedMeanFlow.sample, keeping each z)."""
    grid = torch.linspace(flow.path.t_max, flow.path.t_min, steps + 1, dtype=DTYPE)
    states = [x1.to(DTYPE)]
    for t, r in itertools.pairwise(grid):
        states.append(states[-1] - (t - r) * flow.average_velocity(states[-1], r, t))
    return states


def euler(model: DiffusionModel, x1: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """The flow-matching sampler's states (`training.euler_states`), x1 first."""
    return list(euler_states(model, x1, steps))


# ------------------------------------------------------------------ one setting, measured
@memoized("flows' exact endpoints", maxsize=8)
def exact_endpoint(path: str, n: int, seed: int) -> torch.Tensor:
    """The exact flow's ODE endpoints x_0 from the study's n prior noise draws on a path
    (every setting on the path is measured against them; kept in memory, one solve each)."""
    schedule = FLOW_PATHS[path]()
    x1 = prior_noise(schedule, n, 2, seed)
    return flow_map(exact_velocity(mixture(), schedule), x1, schedule.t_max, schedule.t_min)


def flow_cell(model, path, rounds, density, profile, seed) -> list[dict]:
    """One setting at one size: a row per step count (the unit of the sweep's cache).

    Columns: steps, nfe, sw (to exact samples), l2 (to the exact flow's ODE endpoint),
    step_error (to the model's own ODE endpoint), samples (first N_SHOWN), paths ((steps + 1,
    N_PATHS, 2)), and per setting (repeated): model_error, straightness, transport_cost,
    ode_path (the drawn ODE trajectory), sw_floor (the SW of the exact flow's samples)."""
    setting, size, smoke = (
        FlowSetting(model, path, rounds, density),
        SIZES[profile],
        profile == "smoke",
    )
    velocity = velocity_model(setting, smoke, seed)
    trained = trained_model(setting, smoke, seed)
    path = velocity.schedule
    x1 = prior_noise(path, size.n_samples, 2, seed)
    exact_end = exact_endpoint(setting.path, size.n_samples, seed)
    # a trained model's own ODE endpoint: Richardson-extrapolated Euler (about 2e-5 from the
    # exact solve on the ring's sharper exact velocity, 4x fewer network calls than DOP853 at
    # 1e-11; the smallest step error measured is above 1e-2)
    own_end = exact_end if trained is None else fine_solution(velocity, x1)
    targets = mixture().sample(size.n_samples, seed=seed + 1)
    ode = euler(velocity, x1, ODE_PATH_STEPS)
    shared = {
        "model_error": mean_l2_error(own_end, exact_end),
        # learned vs exact velocity in L2 over p_t (Monte Carlo; 0 for the exact velocity)
        "velocity_error": 0.0 if trained is None else model_error(trained, mixture(), seed=seed),
        "training_seconds": 0.0 if trained is None else float(trained.seconds),
        # the exact flow's samples from the same noise: what a perfect sampler scores
        "sw_floor": sliced_wasserstein(exact_end, targets),
        "straightness": straightness(velocity, x1[: size.n_straight]),
        "transport_cost": transport_cost(own_end, x1),
        "ode_path": torch.stack(ode[::ODE_PATH_STRIDE])[:, :N_PATHS].numpy(),
    }
    rows = []
    for k in size.steps:
        states = meanflow_jumps(trained, x1, k) if model == "meanflow" else euler(velocity, x1, k)
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
    cells = [check_offered(s, smoke).cell(smoke, seed) for s in settings]
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
    sw_floor: float  # SW of the exact flow's own samples from the same noise
    model_error: float  # mean L2 of its own exact ODE endpoint from the exact flow's
    velocity_error: float  # E |v - u|^2 over p_t against the exact (1-RF) velocity
    training_seconds: float
    straightness: float
    transport_cost: float


RUNS = Memo("flow runs", maxsize=64)


def flow_run(setting: FlowSetting, smoke: bool, seed: int = 0) -> FlowRun:
    """What one setting shows (from the sweep's cache when it holds the setting)."""
    return flow_runs([setting], smoke, seed)[0]


def flow_runs(settings: Sequence[FlowSetting], smoke: bool, seed: int = 0) -> list[FlowRun]:
    """The runs of several settings, each computed (or read from the sweep's cache) once and
    kept in memory; RUNS.typical_seconds() is then what a setting not yet visited costs."""
    return [RUNS.get(_run_key(s, smoke, seed), lambda s=s: _computed(s, smoke, seed))
            for s in settings]  # fmt: skip


def _computed(setting: FlowSetting, smoke: bool, seed: int) -> FlowRun:
    return _as_run(setting, flow_sweep([setting], smoke, seed))


def _run_key(setting: FlowSetting, smoke: bool, seed: int) -> tuple:
    return ("flow run", setting, bool(smoke), int(seed))


def is_run(setting: FlowSetting, smoke: bool, seed: int = 0) -> bool:
    """Whether the setting's run is in memory (an explorer move to it costs nothing)."""
    return _run_key(setting, smoke, seed) in RUNS


def _as_run(setting: FlowSetting, rows: pd.DataFrame) -> FlowRun:
    first = rows.iloc[0]
    return FlowRun(
        setting=setting,
        curve=rows[["steps", "nfe", "sw", "l2", "step_error"]].reset_index(drop=True),
        samples=dict(zip(rows.steps, rows.samples, strict=True)),
        paths=dict(zip(rows.steps, rows.paths, strict=True)),
        ode_path=first.ode_path,
        sw_floor=float(first.sw_floor),
        model_error=float(first.model_error),
        velocity_error=float(first.velocity_error),
        training_seconds=float(first.training_seconds),
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


def independent_cost(smoke: bool, seed: int = 0) -> float:
    """E|x_1 - x_0|^2 of the independent coupling flow matching trains on (exact samples and
    the study's noise, paired by index): what rectification starts from."""
    n = flow_size(smoke).n_samples
    noise = prior_noise(FLOW_PATHS["rectified"](), n, 2, seed)
    return transport_cost(mixture().sample(n, seed=seed + 1), noise)


def exact_metrics(runs: Sequence[FlowRun]) -> pd.DataFrame:
    """The exact velocity's numbers per path (ids as the index): mean L2 to the exact ODE
    endpoint and SW at every step count, straightness, transport cost: what notebook 06
    records as exact.<path>.<column>."""
    rows = {}
    for run in runs:
        if run.setting.model != "exact":
            continue
        row = {f"l2_nfe{k}": v for k, v in zip(run.curve.nfe, run.curve.l2, strict=True)}
        row |= {f"sw_nfe{k}": v for k, v in zip(run.curve.nfe, run.curve.sw, strict=True)}
        rows[run.setting.path] = row | {"straightness": run.straightness,
                                        "transport_cost": run.transport_cost}  # fmt: skip
    return pd.DataFrame(rows).T


# ------------------------------------------------------------------ against diffusion solvers
def diffusion_cell(profile: str, seed: int, nfes: list[int]) -> list[dict]:
    """At each NFE: the best of notebook 01's solvers on its VP schedule (lowest mean L2 to its
    exact ODE solution), its error and its samples' SW to exact samples, on the same mixture."""
    size = SIZES[profile]
    study = study_for(PROBLEM, size.n_samples, seed)
    table = study.table(size.diffusion_solvers, nfes=tuple(nfes))
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
    one row per NFE (the index) with the solver's id and label and both errors (mean L2 to
    each one's exact ODE endpoint, SW to exact samples)."""
    cell = {"profile": profile(smoke), "seed": int(seed), "nfes": list(nfes)}
    diffusion = run_sweep(diffusion_cell, [cell], name="flows-vs-diffusion", progress=False)
    flow = flow_run(FlowSetting("exact", "rectified"), smoke, seed).curve.set_index("nfe")
    table = diffusion[["nfe", "solver", "l2", "sw"]].rename(
        columns={"l2": "diffusion_l2", "sw": "diffusion_sw"}
    )
    table.insert(2, "solver_label", [SOLVERS.label(s) for s in table.solver])
    table["flow_l2"] = flow.l2.loc[table.nfe].to_numpy()
    table["flow_sw"] = flow.sw.loc[table.nfe].to_numpy()
    table["flow_over_diffusion_l2"] = table.flow_l2 / table.diffusion_l2
    return table.set_index("nfe")


# ------------------------------------------------------------------ the benchmark's table
BENCHMARK_NFES = (1, 2, 5, 10)


def benchmark_table(smoke: bool, seed: int = 0) -> pd.DataFrame:
    """benchmarks/flows.py's table: per model on the rectified path (the exact velocity, the
    trained flows with uniform times, MeanFlow), SW to exact samples and mean L2 to the exact
    ODE endpoint at BENCHMARK_NFES, and its training seconds (a reflow round's: that round's
    own; 0 for the exact velocity); then the best diffusion solver at each NFE."""
    settings = [
        s for s in offered_settings(smoke) if s.path == "rectified" and s.density != "u_shaped"
    ]
    rows = {}
    for run in flow_runs(settings, smoke, seed):
        curve = run.curve.set_index("nfe")
        row = {f"SW @{k}": curve.sw[k] for k in BENCHMARK_NFES}
        row |= {f"L2 @{k}": curve.l2[k] for k in BENCHMARK_NFES}
        rows[run.setting.label] = row | {"training s": run.training_seconds}
    versus = diffusion_comparison(smoke, seed, BENCHMARK_NFES)
    for nfe, best in versus.iterrows():
        row = {f"SW @{nfe}": best.diffusion_sw, f"L2 @{nfe}": best.diffusion_l2}
        rows[f"best diffusion solver @{nfe}: {best.solver_label}"] = row
    return pd.DataFrame(rows).T


# ------------------------------------------------------------------ what the explorer shows
def nearest_steps(steps: float, offered: Sequence[int]) -> int:
    """The offered step count nearest to `steps` in log scale (`flows_view` takes any positive
    count and shows the nearest computed one; the explorer's slider offers those only)."""
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
    density: tuple[np.ndarray, np.ndarray, np.ndarray]  # xs, ys, log p_0 on a grid


def setting_for(model: str, path: str, rounds: int, density: str) -> FlowSetting:
    """The explorer's controls as a setting. A density does not apply to the exact velocity
    (not trained) nor to MeanFlow (its paper's logit-normal times): theirs replaces it."""
    own = {"exact": "uniform", "meanflow": "logit_normal"}.get(model, density)
    return FlowSetting(model, path, int(rounds), own)


def compared_settings(setting: FlowSetting, smoke: bool) -> tuple[FlowSetting, ...]:
    """What the error panel draws beside the setting: every setting on its path, the trained
    flows at its density only (uniform's when it is not a trained flow)."""
    density = setting.density if setting.model == "trained" else "uniform"
    return tuple(
        s
        for s in offered_settings(smoke)
        if s.path == setting.path and (s.model != "trained" or s.density == density)
    )


@memoized("flows views", maxsize=256)
def flows_view(setting: FlowSetting, steps: float, smoke: bool, seed: int = 0) -> FlowsView:
    """Everything the flows explorer shows for one setting of its controls (a ValueError for
    a setting the study does not compute)."""
    check_offered(setting, smoke)
    shown = nearest_steps(steps, flow_size(smoke).steps)
    compared = tuple(flow_runs(compared_settings(setting, smoke), smoke, seed))
    return FlowsView(
        run=flow_run(setting, smoke, seed),
        steps=shown,
        compared=compared,
        density=density_image(),
    )


def flows_view_cost(setting: FlowSetting, smoke: bool, seed: int = 0) -> float | None:
    """About how many seconds `flows_view` will take for a setting whose runs are not all in
    memory yet (the median time of recent runs, each), None when they are (or before any
    run was timed)."""
    settings = {setting, *compared_settings(setting, smoke)}
    missing = sum(not is_run(s, smoke, seed) for s in settings)
    per_run = RUNS.typical_seconds()
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


def trained_metrics(runs: Sequence[FlowRun]) -> pd.DataFrame:
    """The trained models' numbers (rows "<density>.r<rounds>" and "meanflow"): SW and mean L2
    to the exact ODE endpoint at 1 and 2 NFE, the 1-NFE error split into step error (against
    the model's own ODE endpoint) and model error (its own endpoint against the exact one),
    the velocity error, straightness, transport cost: what notebook 06 records as
    trained.<row>.<column>."""
    rows = {}
    for run in runs:
        setting, curve = run.setting, run.curve.set_index("nfe")
        if setting.model == "exact":
            continue
        row_id = (
            "meanflow" if setting.model == "meanflow" else f"{setting.density}.r{setting.rounds}"
        )
        rows[row_id] = {
            "sw_nfe1": curve.sw[1], "sw_nfe2": curve.sw[2], "l2_nfe1": curve.l2[1],
            "l2_nfe2": curve.l2[2], "step_error_nfe1": curve.step_error[1],
            "model_error": run.model_error, "velocity_error": run.velocity_error,
            "straightness": run.straightness, "transport_cost": run.transport_cost,
        }  # fmt: skip
    return pd.DataFrame(rows).T


def claim_metrics(trained: pd.DataFrame) -> dict[str, float]:
    """The ratios FLOW_CLAIMS test, from a `trained_metrics` table: the 1-NFE gain of one
    reflow round, each round's straightness and transport cost over the previous round's,
    MeanFlow's 1-NFE error over the 2-rectified flow's, the U-shaped density's over uniform's."""
    uniform = [trained.loc[f"uniform.r{k}"] for k in range(MAX_ROUNDS + 1)]
    metrics = {"reflow.gain_nfe1": uniform[0].sw_nfe1 / uniform[1].sw_nfe1}
    for k in range(1, MAX_ROUNDS + 1):
        metrics[f"reflow.straightness_ratio_r{k}"] = (
            uniform[k].straightness / uniform[k - 1].straightness
        )
        metrics[f"reflow.cost_ratio_r{k}"] = (
            uniform[k].transport_cost / uniform[k - 1].transport_cost
        )
    metrics["meanflow.over_2rf_nfe1"] = trained.loc["meanflow"].sw_nfe1 / uniform[1].sw_nfe1
    for k in (0, 1):
        metrics[f"u_shaped.over_uniform_r{k}_nfe1"] = (
            trained.loc[f"u_shaped.r{k}"].sw_nfe1 / uniform[k].sw_nfe1
        )
    return metrics


FLOW_CLAIMS: tuple[Claim, ...] = (
    Claim(
        "one Euler step of the exact 1-rectified flow lands every sample on the mixture's "
        "mean (largest distance from it)",
        DERIVED,
        "exact.one_step.max_distance_to_mean",
        below=1e-12,
    ),
    Claim(
        "one reflow round cuts the trained flow's 1-NFE error at least 3x (1-RF's SW over "
        "2-RF's, uniform times)",
        RECTIFIED_FLOW,
        "reflow.gain_nfe1",
        above=3,
    ),
    *(
        Claim(
            f"reflow round {k} makes the paths straighter ({k + 1}-RF's straightness over "
            f"{k}-RF's)",
            RECTIFIED_FLOW,
            f"reflow.straightness_ratio_r{k}",
            below=1,
        )
        for k in range(1, MAX_ROUNDS + 1)
    ),
    *(
        Claim(
            f"reflow round {k} does not raise the coupling's transport cost ({k + 1}-RF's "
            f"E|x_1 - x_0|^2 over {k}-RF's)",
            RECTIFIED_FLOW,
            f"reflow.cost_ratio_r{k}",
            below=1,
        )
        for k in range(1, MAX_ROUNDS + 1)
    ),
    Claim(
        "MeanFlow at 1 NFE is within 2x of the 2-rectified flow at 1 NFE, or better (its SW "
        "over 2-RF's)",
        MEANFLOW,
        "meanflow.over_2rf_nfe1",
        below=2,
    ),
    Claim(
        "the U-shaped timestep density lowers the 2-rectified flow's 1-NFE error at equal "
        "training budget (its SW over uniform's)",
        IMPROVED_RF,
        "u_shaped.over_uniform_r1_nfe1",
        below=1,
    ),
)
