"""The sweeps and tables notebook 02 and its explorer show, from a `GuidanceStudy`.

Tables are keyed by ids (method and solver names, scales), with display labels as a column
where a table mixes methods and targets; each `*_records` function lays a table out as
`workbench.reporting.record_table` takes it, so the notebook records it in one call.
"""

from __future__ import annotations

import pandas as pd

from workbench.diffusion.guidance import GUIDANCE, class_reward
from workbench.diffusion.guidance_metrics import (
    class_metrics,
    metrics,
    target_class_metrics,
    target_metrics,
)
from workbench.diffusion.guidance_study import (
    HEATMAP_NFES,
    HEATMAP_SCALES,
    HEATMAP_SOLVERS,
    SWEEP_SCALES,
    GuidanceStudy,
    StudySize,
)
from workbench.diffusion.guidance_targets import (
    boundary_component,
    run_mode_weights,
    target,
    target_mode_weights,
)
from workbench.diffusion.sampling import SOLVERS, prior_noise
from workbench.diffusion.smc import ParticleResult, sde_sample, svdd
from workbench.metrics import class_precision, mean_class_posterior, sliced_wasserstein
from workbench.progress import progress as progress_bar

ODE_SOLVER, ODE_STEPS = "dpmpp_2m", 50  # the solve whose distances are the guided ODE's own
MODEL_METHODS = ("cfg", "cfg_rescale", "cfg_interval", "cfg_threshold", "autoguidance")
PARTICLE_METHODS = ("fk_smc", "svdd")
TARGET_ROWS = {"exact_target": "cfg", "autoguidance_target": "autoguidance"}
TARGET_LABELS = {
    "exact_target": "exact tilted target",
    "autoguidance_target": "autoguidance's exact target",
}


def target_id(method: str) -> str:
    """The id (a row of `methods_at`) of the exact target `method` aims at."""
    kind = GUIDANCE[method].target
    return next(row for row, aims in TARGET_ROWS.items() if GUIDANCE[aims].target == kind)


def study_for(size: StudySize, seed: int = 0) -> GuidanceStudy:
    """The two-class study at `size` (notebook 02 and its served explorer: the same settings,
    so the same memo entries)."""
    return GuidanceStudy.two_class(
        n_samples=size.n_samples,
        n_error=min(size.n_error, size.n_samples),
        seed=seed,
        ems_lambdas=size.ems_lambdas,
        ems_samples=size.ems_samples,
    )


def _progress(items, show: bool, description: str):
    """`items` under the workbench's progress bar when `show` (a notebook's loops), else as
    they are (the explorer's selections: no bar)."""
    return progress_bar(items, desc=description) if show else items


def _by_scale(rows: dict, name: str = "scale") -> pd.DataFrame:
    frame = pd.DataFrame(rows).T
    frame.index.name = name
    return frame


# ---------------------------------------------------------------- sweeps over the scale
def sweep(study, method, solver, steps, scales=SWEEP_SCALES, *, distances=True, progress=False):
    """metrics() at each scale, one row per scale (class metrics only unless `distances`:
    the distances to the target cost ~0.1 s per scale, the class metrics ~5 ms)."""
    measure = metrics if distances else class_metrics
    scales = _progress(scales, progress, GUIDANCE.label(method))
    return _by_scale({w: measure(study, method, w, solver, steps) for w in scales})


def target_sweep(study, method, scales=SWEEP_SCALES, distances: bool = True) -> pd.DataFrame:
    """The exact target's metrics per scale (class metrics only unless `distances`)."""
    measure = target_metrics if distances else target_class_metrics
    return _by_scale({w: measure(study, method, w) for w in scales})


def error_grid(study, method, solver, scales=HEATMAP_SCALES, nfes=HEATMAP_NFES, progress=False):
    """Solver error over scale (rows) x NFE (columns); steps = NFE (one call per step)."""
    rows = {}
    for scale in _progress(scales, progress, f"{GUIDANCE.label(method)}, {SOLVERS.label(solver)}"):
        rows[scale] = {nfe: study.error(method, scale, solver, nfe) for nfe in nfes}
    frame = _by_scale(rows)
    frame.columns.name = "NFE"
    return frame


# ---------------------------------------------------------------- the notebook's tables
def cfg_against_target(study, scales, progress=False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(CFG's sweep with DPM-Solver++(2M) in 50 steps, the exact target's sweep)."""
    return sweep(study, "cfg", ODE_SOLVER, ODE_STEPS, scales, progress=progress), target_sweep(
        study, "cfg", scales
    )


def components_table(mixture) -> pd.DataFrame:
    """The mixture's components: class, weight, mean and (isotropic) std."""
    return pd.DataFrame(
        {
            "class": mixture.labels.numpy(),
            "weight": mixture.weights.numpy(),
            "mean": [tuple(m) for m in mixture.means.numpy().round(2)],
            "std": mixture.stds[:, 0].numpy(),
        }
    )


def narrow_weight(study: GuidanceStudy, method: str, scale: float) -> float:
    """Weight of the class's component next to the other class in the method's ODE samples."""
    weights = run_mode_weights(study, method, scale, ODE_SOLVER, ODE_STEPS)
    return float(weights[boundary_component(study.problem)])


def narrow_mode_table(study: GuidanceStudy, scales) -> pd.DataFrame:
    """Weight of the class's component next to the other class, for CFG and the target."""
    narrow = boundary_component(study.problem)
    rows = {
        w: {
            "CFG": narrow_weight(study, "cfg", w),
            "exact target": float(target_mode_weights(study, "cfg", w)[narrow]),
        }
        for w in scales
    }
    return _by_scale(rows, "w")


def sweep_records(cfg_sweep, target_sweep, modes, n: int) -> dict[str, tuple[float, dict]]:
    """{metric name: (value, tolerance)} of CFG's and the target's sweeps. Fractions of
    samples get atol 2.5 / n: one sample flipping class (argmax at a boundary) is 1/n."""
    fraction = {"atol": 2.5 / n}
    records = {f"cfg.precision_w{w:g}": (cfg_sweep.loc[w, "precision"], fraction)
               for w in (0.0, 1.0, 3.0)}  # fmt: skip
    for w in (3.0, 7.5):
        records[f"cfg.sliced_w_w{w:g}"] = (cfg_sweep.loc[w, "sliced W"], {"rtol": 1e-6})
        records[f"target.sliced_w_floor_w{w:g}"] = (target_sweep.loc[w, "sliced W"], {"rtol": 1e-6})
        records[f"cfg.narrow_mode_weight_w{w:g}"] = (modes.loc[w, "CFG"], fraction)
        records[f"target.narrow_mode_weight_w{w:g}"] = (modes.loc[w, "exact target"], fraction)
    records["cfg.spread_w7.5"] = (cfg_sweep.loc[7.5, "spread"], {"rtol": 1e-6})
    records["target.spread_w7.5"] = (target_sweep.loc[7.5, "spread"], {"rtol": 1e-6})
    return records


def method_curves(study, scales, particle_steps: int, progress=False) -> dict[str, pd.DataFrame]:
    """Each compared method's sweep: ODE methods with DPM-Solver++(2M) in 50 steps, particle
    methods with their own SDE in `particle_steps`."""
    curves = {m: sweep(study, m, ODE_SOLVER, ODE_STEPS, scales, progress=progress)
              for m in MODEL_METHODS}  # fmt: skip
    for method in PARTICLE_METHODS:
        curves[method] = sweep(study, method, "sde", particle_steps, scales, progress=progress)
    return curves


def methods_at(study, curves: dict[str, pd.DataFrame], scale: float) -> pd.DataFrame:
    """Every method's metrics at `scale`, then both exact targets', by id (labels a column)."""
    rows = {method: curve.loc[scale] for method, curve in curves.items()}
    rows |= {row: pd.Series(target_metrics(study, m, scale)) for row, m in TARGET_ROWS.items()}
    table = pd.DataFrame(rows).T
    labels = {**GUIDANCE.labels(), **TARGET_LABELS}
    table.insert(0, "label", [labels[row] for row in table.index])
    return table


def heatmap_solvers(smoke: bool) -> dict[str, tuple[str, ...]]:
    """Solvers per method in the heatmaps (SMOKE leaves out DPM-Solver-v3 on the thresholded
    model: its statistics take seconds)."""
    return {
        "cfg": HEATMAP_SOLVERS,
        "cfg_threshold": HEATMAP_SOLVERS[:3] if smoke else HEATMAP_SOLVERS,
    }


def error_grids(study, solvers: dict, scales, nfes, progress=False) -> dict:
    """{(method, solver): error_grid} for every method and its solvers."""
    return {
        (method, solver): error_grid(study, method, solver, scales, nfes, progress=progress)
        for method, names in solvers.items()
        for solver in names
    }


def errors_at_nfe(grids: dict, solvers, top: float, nfe: int = 10) -> pd.DataFrame:
    """Per solver: CFG's error at w = 1 and w = top, the thresholded model's at top, growth."""
    rows = {
        solver: {
            "w=1": grids[("cfg", solver)].loc[1.0, nfe],
            f"w={top:g}": grids[("cfg", solver)].loc[top, nfe],
            f"w={top:g}, thresholded": grids[("cfg_threshold", solver)].loc[top, nfe],
        }
        for solver in solvers
    }
    table = pd.DataFrame(rows).T
    table["growth w=1 to max"] = table[f"w={top:g}"] / table["w=1"]
    return table


def error_records(grids: dict, scales, nfe: int = 10) -> dict:
    """{"method.solver": {"w<scale>.nfe<nfe>": error}}: the heatmaps' recorded cells."""
    return {
        f"{method}.{solver}": {f"w{w:g}.nfe{nfe}": grid.loc[w, nfe] for w in scales}
        for (method, solver), grid in grids.items()
    }


# ---------------------------------------------------------------- particle methods
def smc_comparison(
    study: GuidanceStudy, scale: float, particles: int, steps: int, seeds, progress=False
) -> tuple[pd.DataFrame, dict[int, ParticleResult]]:
    """Sliced W to exact target draws of FK-SMC, the CFG reverse SDE (the same particles
    without weights) and the CFG ODE (DPM-Solver++(2M), 50 steps), each from the same
    `particles` noise draws per seed; and of an independent exact set (the floor)."""
    problem, rows, results = study.problem, {}, {}
    model, exact_target = study.model("cfg", scale), target(problem, "cfg", scale)
    for seed in _progress(seeds, progress, f"{GUIDANCE.label('fk_smc')}, w = {scale:g}"):
        x_T = prior_noise(problem.schedule, particles, problem.mixture.dim, 1000 + seed)
        exact = exact_target.sample(particles, seed=2000 + seed)
        result = GUIDANCE["fk_smc"].sample(problem, x_T, scale=scale, steps=steps, seed=seed)
        ode = GUIDANCE["cfg"].sample(
            problem, x_T, scale=scale, solver=ODE_SOLVER, steps=ODE_STEPS, model=model
        )
        results[seed] = result
        rows[seed] = {
            "FK-SMC": sliced_wasserstein(result.x, exact),
            "CFG SDE": sliced_wasserstein(sde_sample(model, x_T, steps=steps, seed=seed).x, exact),
            "CFG ODE": sliced_wasserstein(ode.x, exact),
            "exact draws": sliced_wasserstein(
                exact_target.sample(particles, seed=3000 + seed), exact
            ),
            "min ESS": float(result.ess.min()),
            "resamplings": int(result.resampled.sum()),
        }
    return _by_scale(rows, "seed"), results


def smc_tables(study, scales, particles, steps, seeds, progress=False):
    """(every seed's comparison by (w, seed), the first seed's runs by "w = <scale>")."""
    tables, runs = {}, {}
    for w in scales:
        tables[w], by_seed = smc_comparison(study, w, particles, steps, seeds, progress)
        runs[f"w = {w:g}"] = by_seed[seeds[0]]
    return pd.concat(tables, names=["w"]), runs


def smc_records(table: pd.DataFrame) -> dict:
    """{"w<scale>": {column id: mean over seeds}} of the distances and the minimum ESS."""
    mean = table.groupby(level="w").mean()
    columns = ("FK-SMC", "CFG SDE", "CFG ODE", "min ESS")
    return {f"w{w:g}": {c.replace(" ", "_"): row[c] for c in columns} for w, row in mean.iterrows()}


def svdd_precisions(study: GuidanceStudy, scale: float, candidates, steps: int) -> pd.DataFrame:
    """Class precision and mean posterior of SVDD from CFG at `scale` (0: the unconditional
    model, 1: the conditional one) with M candidates per step."""
    problem = study.problem
    model, reward = study.model("cfg", scale), class_reward(problem.mixture, problem.label)
    rows = {}
    for m in candidates:
        result = svdd(model, study.x_T, reward=reward, candidates=m, steps=steps, seed=study.seed)
        rows[m] = {
            "precision": class_precision(result.x, problem.mixture, problem.label),
            "mean posterior": mean_class_posterior(result.x, problem.mixture, problem.label),
            "NFE per sample": result.nfe,
        }
    return _by_scale(rows, "candidates M")


def svdd_table(study, base_scales, candidates, steps: int) -> pd.DataFrame:
    frames = {w: svdd_precisions(study, w, candidates, steps) for w in base_scales}
    return pd.concat(frames, names=["base w"])


def svdd_records(table: pd.DataFrame) -> dict:
    """{"base_w<w>.M<m>": {"precision": value}}."""
    return {
        f"base_w{w:g}.M{m}": {"precision": row["precision"]} for (w, m), row in table.iterrows()
    }
