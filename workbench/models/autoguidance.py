"""Autoguidance with a real weaker network against classifier-free guidance, on exact targets.

Autoguidance (Karras, Aittala, Kynkäänniemi, Lehtinen, Aila & Laine 2024, "Guiding a Diffusion
Model with a Bad Version of Itself", arXiv:2406.02507) extrapolates a good conditional denoiser
away from a bad version of itself, D_bad + w (D_good - D_bad), where the bad version is a
smaller or shorter-trained network of the same family. Classifier-free guidance (CFG; Ho &
Salimans 2022) extrapolates the same network's conditional output away from its unconditional
one (its null label). Notebook 02 did this with exact models (the bad model an inflated
mixture); here every model is a network trained on the two-class mixture
(`workbench.models.denoisers`), and the yardstick is still exact.

Both methods are compared at the same class precision, defined as follows.

- Precision of a sample set: the mean of the exact clean class posterior p(c | x) over its
  samples (`workbench.metrics.mean_class_posterior`, continuous in the samples; the argmax
  fraction of `class_precision` moves in steps of 1 / n and saturates at 1 first, so it is
  reported but not matched on).
- The exact tilted target p_w ∝ p(x | c)^w p(x)^(1-w) = p(x) p(c | x)^w / Z_w has the precision
  curve P*(w) = E_{p_w}[p(c | x)]. It is computed by self-normalized importance weights
  p(c | x_i)^w over one fixed set of exact draws x_i ~ p(x): log P*(w) is a difference of the
  convex function s -> log sum_i p(c | x_i)^s at s = w + 1 and s = w, so this estimate is
  exactly increasing in w, never noisy-non-monotone, and smooth.
- A run with precision P is matched to p_{w*} with P*(w*) = P: monotone (PCHIP) interpolation
  of w against P*(w) on a fixed fine grid of w, so w* is continuous in P and does not jump
  under rounding. P outside [P*(0), P*(W_MAX)] has no matched target (NaN).
- Its distance: sliced Wasserstein (`workbench.metrics.sliced_wasserstein`) from the run's
  samples to exact draws of p_{w*}; also to exact draws of p(x | c) (w = 1), and the floor
  (two independent exact sets of p_{w*} of the same size).

Exact draws of p_w come from `exact_tilted_draws`: rejection from the one proposal p(x) with
acceptance p(c | x)^w (exact, since p(x | c) / p(x) = p(c | x) / pi_c <= 1 / pi_c), in chunks of
a fixed size from one seeded stream. `TiltedTarget.sample` is exact too but switches proposal at
w = 1 and sizes its later batches by how many it has accepted, so a change of w in the 12th
digit can redraw its whole set; here a tiny change of w only flips the few proposals on the
acceptance boundary (tested).

`matched_comparison` interpolates both methods' matched distances at common precisions and
reports autoguidance's ratio to CFG. Only the rising branch of each method's curve (scales
up to its highest precision) enters: past it a larger scale lowers precision and raises the
distance, a run the rising branch dominates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.interpolate import PchipInterpolator

from workbench.diffusion.guidance import GuidanceProblem, autoguidance, cfg, class_log_posterior
from workbench.diffusion.guidance_metrics import class_metrics_of
from workbench.diffusion.guidance_study import data_radius, divergence
from workbench.diffusion.guidance_targets import TARGET_SEED_OFFSET
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import SOLVERS, ModelOutputError, prior_noise, sample
from workbench.diffusion.schedules import DTYPE
from workbench.memo import Memo
from workbench.metrics import sliced_wasserstein
from workbench.registry import check_choice

METHODS = ("cfg", "autoguidance")
# CFG reaches the exact target's precision range between w = 1 and 1.5, autoguidance needs
# larger scales to raise precision at all: one set of scales covers both
SCALES = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0)
DEFAULT_SOLVER, DEFAULT_STEPS = "dpmpp_2m", 25
# the fixed grid of w on which P*(w) is tabulated: fine where the runs' precisions land
# (w near 1), geometric beyond; P*(W_MAX) bounds the precisions that have a matched target
W_MAX = 100.0
MATCH_GRID = np.unique(np.concatenate([np.linspace(0.0, 3.0, 151), np.geomspace(3.0, W_MAX, 100)]))
CURVE_DRAWS, CURVE_SEED = 100_000, 2024  # exact p(x) draws weighted into P*(w)
DRAW_CHUNK = 8192  # exact_tilted_draws' proposals per chunk (fixed: see the module)
MAX_CHUNKS = 10_000
# exact draws of a run with seed s use s + TARGET_SEED_OFFSET + these (notebook 02's offset):
# independent of x_T, and a new seed redraws the targets too (an independent replicate)
MATCHED, FLOOR, CONDITIONAL = 0, 1, 2
COMPARISON_POINTS = 9  # common precisions at which matched_comparison compares the methods

CURVES = Memo("autoguidance precision curves", maxsize=16)
DRAWS = Memo("autoguidance exact tilted draws", maxsize=512)
RUNS = Memo("autoguidance guided runs", maxsize=1024)


# ------------------------------------------------------------------ exact targets
def _log_posterior(problem: GuidanceProblem, x: torch.Tensor) -> torch.Tensor:
    """(N,) log p(c | x) of clean points (stable far from the class)."""
    return class_log_posterior(problem.mixture, problem.label, x, 1.0, 0.0)


def _check_problem(problem) -> GuidanceProblem:
    if not isinstance(problem, GuidanceProblem):
        raise ValueError(f"problem must be a GuidanceProblem, got {type(problem).__name__}")
    return problem


def _check_target_scale(scale) -> float:
    ok = isinstance(scale, int | float | np.floating) and not isinstance(scale, bool)
    if not (ok and math.isfinite(scale) and scale >= 0):
        raise ValueError(f"the target scale w must be a finite number >= 0, got {scale!r}")
    return float(scale)


def _check_count(n, name: str = "n", least: int = 1) -> int:
    ok = isinstance(n, int | np.integer) and not isinstance(n, bool)
    if not (ok and n >= least):
        raise ValueError(f"{name} must be an integer >= {least}, got {n!r}")
    return int(n)


def exact_tilted_draws(problem: GuidanceProblem, scale: float, n: int, seed: int) -> torch.Tensor:
    """(n, D) exact draws of p_w ∝ p(x) p(c | x)^w: proposals x ~ p(x) kept where
    log u < w log p(c | x), in fixed chunks of DRAW_CHUNK from one stream (see the module)."""
    problem, w = _check_problem(problem), _check_target_scale(scale)
    n = _check_count(n)

    def draw():
        generator = torch.Generator().manual_seed(int(seed))
        kept, count = [], 0
        for _ in range(MAX_CHUNKS):
            x = problem.mixture.sample(DRAW_CHUNK, generator)
            u = torch.rand(DRAW_CHUNK, generator=generator, dtype=DTYPE)
            accepted = x[torch.log(u) < w * _log_posterior(problem, x)]
            kept.append(accepted)
            count += len(accepted)
            if count >= n:
                return torch.cat(kept)[:n]
        raise ValueError(f"w={w:g} accepts too few proposals for {n} exact draws")

    return DRAWS.get((problem, w, n, int(seed)), draw)


def precision_curve(problem: GuidanceProblem) -> tuple[np.ndarray, np.ndarray]:
    """(MATCH_GRID, P*(w) on it): the exact tilted target's mean class posterior (see the
    module), strictly increasing in w."""
    problem = _check_problem(problem)

    def compute():
        x = problem.mixture.sample(CURVE_DRAWS, CURVE_SEED)
        log_r = _log_posterior(problem, x)
        scales = torch.as_tensor(MATCH_GRID, dtype=DTYPE)[:, None]
        # log P*(w) = log sum r^(w+1) - log sum r^w (the normalizing count cancels)
        log_p = torch.logsumexp((scales + 1) * log_r, 1) - torch.logsumexp(scales * log_r, 1)
        return MATCH_GRID.copy(), torch.exp(log_p).numpy()

    return CURVES.get(("precision curve", problem, MATCH_GRID, CURVE_DRAWS, CURVE_SEED), compute)


def _increasing_part(ws: np.ndarray, ps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid up to where P* stops rising in float64 (saturation): PCHIP needs strictly
    increasing abscissae."""
    rising = np.diff(ps) > 0
    end = len(ps) if rising.all() else int(np.argmin(rising)) + 1
    return ws[:end], ps[:end]


def matched_scale(problem: GuidanceProblem, precision: float) -> float:
    """w* with P*(w*) = precision, by monotone interpolation on the fixed grid; NaN when the
    precision lies outside [P*(0), P*(W_MAX)] or is NaN (a diverged run)."""
    if isinstance(precision, bool) or not isinstance(precision, int | float | np.floating):
        raise ValueError(f"precision must be a number in [0, 1], got {precision!r}")
    if math.isnan(precision):
        return math.nan
    if not 0 <= precision <= 1:
        raise ValueError(f"precision must be a number in [0, 1], got {precision!r}")
    ws, ps = _increasing_part(*precision_curve(problem))
    if not ps[0] <= precision <= ps[-1]:
        return math.nan
    return float(PchipInterpolator(ps, ws)(precision))


def target_precision(problem: GuidanceProblem, scale: float) -> float:
    """P*(w) at any w in [0, W_MAX], by the same monotone interpolation (the inverse of
    `matched_scale`)."""
    w = _check_target_scale(scale)
    if w > W_MAX:
        raise ValueError(f"the target scale must be at most W_MAX={W_MAX:g}, got {w:g}")
    ws, ps = _increasing_part(*precision_curve(problem))
    return float(PchipInterpolator(ws, ps)(min(w, ws[-1])))


# ------------------------------------------------------------------ models
@dataclass(frozen=True)
class ExactDenoiser:
    """The problem's exact models behind a trained denoiser's interface: `.model(label)` is the
    exact p(x | label), `.model()` the exact p(x); with `bad`, `.model(label)` is notebook 02's
    inflated-variance bad model. Stands in for the networks (wiring checks, exact curves)."""

    problem: GuidanceProblem
    bad: bool = False

    def model(self, label: int | None = None) -> DiffusionModel:
        if label is not None and label != self.problem.label:
            raise ValueError(f"the exact stand-in knows label {self.problem.label}, got {label!r}")
        if self.bad:
            if label is None:
                raise ValueError("the exact bad model is conditional: it needs the label")
            return self.problem.model_bad
        return self.problem.model_u if label is None else self.problem.model_c


def _check_denoiser(denoiser, name: str) -> None:
    if not callable(getattr(denoiser, "model", None)):
        raise ValueError(
            f"{name} must be a trained denoiser (with .model(label)), got {type(denoiser).__name__}"
        )


def guided_model(method: str, good, bad, label: int, scale: float) -> DiffusionModel:
    """CFG out_u + w (out_c - out_u) of the good network (noise form, notebook 02's), or
    autoguidance D_bad + w (D_good - D_bad) with the bad network's conditional model."""
    if check_choice("method", method, METHODS) == "cfg":
        return cfg(good.model(label), good.model(None), scale)
    return autoguidance(good.model(label), bad.model(label), scale)


# ------------------------------------------------------------------ runs
@dataclass(frozen=True, eq=False)
class GuidedRun:
    """One guided solve and its measurements. `precision` is the mean exact p(c | x) (what is
    matched), `argmax_precision` the fraction the exact posterior assigns to the class;
    `matched_scale` w* with P*(w*) = precision; `sw_matched`, `sw_conditional` and `sw_floor`
    the sliced Wasserstein distances to exact draws of p_{w*}, to exact draws of p(x | c), and
    between two independent exact sets of p_{w*}. A diverged solve has NaN samples and metrics."""

    method: str
    scale: float
    samples: np.ndarray
    precision: float
    argmax_precision: float
    matched_scale: float
    sw_matched: float
    sw_conditional: float
    sw_floor: float


def _solve(model: DiffusionModel, x_T, solver: str, steps: int, radius: float):
    """The samples, or None when the model or the solve blew up."""
    try:
        x = sample(model, x_T, solver=solver, steps=steps).x
    except ModelOutputError:
        return None
    return None if divergence(x, radius) else x


def _measure(
    problem: GuidanceProblem, method: str, scale: float, x, n: int, seed: int
) -> GuidedRun:
    if x is None:
        nan = math.nan
        samples = np.full((n, problem.mixture.dim), nan)
        return GuidedRun(method, scale, samples, nan, nan, nan, nan, nan, nan)
    metrics = class_metrics_of(problem, x)
    precision = metrics["mean posterior"]
    w_star = matched_scale(problem, precision)
    target_seed = seed + TARGET_SEED_OFFSET
    conditional = exact_tilted_draws(problem, 1.0, n, target_seed + CONDITIONAL)
    sw_matched = sw_floor = math.nan
    if not math.isnan(w_star):
        matched = exact_tilted_draws(problem, w_star, n, target_seed + MATCHED)
        floor = exact_tilted_draws(problem, w_star, n, target_seed + FLOOR)
        sw_matched, sw_floor = sliced_wasserstein(x, matched), sliced_wasserstein(floor, matched)
    return GuidedRun(
        method, float(scale), x.numpy(), precision, metrics["precision"], w_star,
        sw_matched, sliced_wasserstein(x, conditional), sw_floor,
    )  # fmt: skip


def _check_scales(scales) -> tuple[float, ...]:
    values = tuple(scales) if isinstance(scales, Sequence | np.ndarray) else None
    if not values:
        raise ValueError(f"scales must be a non-empty sequence of numbers, got {scales!r}")
    for w in values:
        ok = isinstance(w, int | float | np.floating) and not isinstance(w, bool)
        if not (ok and math.isfinite(w)):
            raise ValueError(f"each guidance scale must be a finite number, got {w!r}")
    return tuple(float(w) for w in values)


def guided_runs(
    good,
    bad,
    problem: GuidanceProblem,
    scales: Sequence[float] = SCALES,
    *,
    methods: Sequence[str] = METHODS,
    n: int = 2000,
    solver: str = DEFAULT_SOLVER,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
) -> list[GuidedRun]:
    """CFG of `good` and autoguidance of `good` by `bad` at each scale, every run from the same
    noise prior_noise(schedule, n, D, seed); each run memoized by the content of its models and
    settings. `good` and `bad` are trained denoisers (`.model(label)`; `good` needs its null
    label for CFG) or `ExactDenoiser`s."""
    problem = _check_problem(problem)
    _check_denoiser(good, "good")
    _check_denoiser(bad, "bad")
    scales, n = _check_scales(scales), _check_count(n, "n", 2)
    methods = [check_choice("method", m, METHODS) for m in methods]
    check_choice("solver", solver, SOLVERS)
    steps = _check_count(steps, "steps")
    x_T = prior_noise(problem.schedule, n, problem.mixture.dim, seed)
    settings = (problem, n, solver, steps, int(seed))
    return [_guided_run(method, w, good, bad, x_T, settings) for method in methods for w in scales]


def _guided_run(method: str, scale: float, good, bad, x_T, settings) -> GuidedRun:
    """One run, memoized by the content of its models and its settings (a CFG run does not
    depend on `bad`, so comparisons of bad versions share it)."""
    problem, n, solver, steps, seed = settings
    model = guided_model(method, good, bad, problem.label, scale)
    key = ("run", method, scale, _models_key(method, good, bad, problem.label), settings)

    def compute():
        x = _solve(model, x_T, solver, steps, data_radius(problem.mixture))
        return _measure(problem, method, scale, x, n, seed)

    return RUNS.get(key, compute)


def _models_key(method: str, good, bad, label: int) -> tuple:
    """The models a run uses (their content keys them; a model without content is never
    stored)."""
    if method == "cfg":
        return (good.model(label), good.model(None))
    return (good.model(label), bad.model(label))


# ------------------------------------------------------------------ tables
TABLE_COLUMNS = ("method", "scale", "precision", "argmax_precision", "matched_scale",
                 "sw_matched", "sw_conditional", "sw_floor")  # fmt: skip


def guidance_table(runs: Sequence[GuidedRun]) -> pd.DataFrame:
    """One row per run, columns TABLE_COLUMNS (the samples left out)."""
    runs = list(runs)
    if not runs or not all(isinstance(r, GuidedRun) for r in runs):
        raise ValueError("guidance_table needs a non-empty list of GuidedRun")
    return pd.DataFrame([{c: getattr(r, c) for c in TABLE_COLUMNS} for r in runs])


def _rising_branch(rows: pd.DataFrame) -> pd.DataFrame:
    """A method's runs by scale up to its highest precision, with NaN rows dropped and each
    kept run more precise than the last (a function of precision to interpolate)."""
    rows = rows.dropna(subset=["precision", "sw_matched"]).sort_values("scale")
    if rows.empty:
        return rows
    rows = rows.iloc[: int(np.argmax(rows.precision.to_numpy())) + 1]
    rising = rows.precision.to_numpy() > np.maximum.accumulate(
        np.r_[-np.inf, rows.precision.to_numpy()[:-1]]
    )
    return rows[rising]


def matched_comparison(table: pd.DataFrame, points: int = COMPARISON_POINTS) -> dict:
    """Autoguidance against CFG at the same precision: over the precision range (lo, hi] both
    rising branches cover, `points` evenly spaced precisions, each method's matched distance
    there (linear in precision between runs), and autoguidance's ratio to CFG.

    Returns {"overlap": (lo, hi) or None, "precisions", "sw_cfg", "sw_autoguidance", "ratio"
    (arrays), "mean_ratio", "min_ratio", "max_ratio", "closer_fraction" (of the precisions
    where the ratio is below 1), "crossover" (the lowest precision where it is not; NaN if
    none), "worse_at" (precisions where the ratio exceeds 1), "autoguidance_closer" (every
    ratio below 1), "peak_precision" {method: its highest}}."""
    if not isinstance(table, pd.DataFrame) or not {"method", *TABLE_COLUMNS[1:3]} <= set(table):
        raise ValueError("matched_comparison needs a guidance_table DataFrame")
    _check_count(points, "points", 2)
    branches = {m: _rising_branch(table[table.method == m]) for m in METHODS}
    missing = [m for m, rows in branches.items() if len(rows) < 1]
    if missing:
        raise ValueError(f"the table has no measured {missing[0]} runs with a matched target")
    peaks = {m: float(rows.precision.max()) for m, rows in branches.items()}
    lo = max(float(rows.precision.min()) for rows in branches.values())
    hi = min(peaks.values())
    empty = np.array([])
    result = {"overlap": None, "peak_precision": peaks, "precisions": empty, "sw_cfg": empty,
              "sw_autoguidance": empty, "ratio": empty, "mean_ratio": math.nan,
              "min_ratio": math.nan, "max_ratio": math.nan, "closer_fraction": math.nan,
              "crossover": math.nan, "worse_at": [], "autoguidance_closer": False}  # fmt: skip
    if not lo < hi:
        return result
    # (lo, hi]: at lo both branches usually start from the same unguided w = 1 run
    precisions = np.linspace(lo, hi, points + 1)[1:]
    sw = {
        m: np.interp(precisions, rows.precision.to_numpy(), rows.sw_matched.to_numpy())
        for m, rows in branches.items()
    }
    ratio = sw["autoguidance"] / sw["cfg"]
    closer = ratio < 1
    return result | {
        "overlap": (lo, hi), "precisions": precisions, "sw_cfg": sw["cfg"],
        "sw_autoguidance": sw["autoguidance"], "ratio": ratio,
        "mean_ratio": float(ratio.mean()), "min_ratio": float(ratio.min()),
        "max_ratio": float(ratio.max()), "closer_fraction": float(closer.mean()),
        "crossover": float(precisions[~closer][0]) if not closer.all() else math.nan,
        "worse_at": [float(p) for p in precisions[ratio > 1]],
        "autoguidance_closer": bool(closer.all()),
    }  # fmt: skip


SUMMARY_COLUMNS = ("overlap_lo", "overlap_hi", "min_ratio", "mean_ratio", "max_ratio",
                   "closer_fraction", "crossover", "peak_precision")  # fmt: skip


def bad_version_table(
    good,
    bads: dict,
    problem: GuidanceProblem,
    scales: Sequence[float] = SCALES,
    *,
    seeds: Sequence[int] = (0,),
    **options,
) -> pd.DataFrame:
    """Which bad version guides best: one row per (named bad network, seed) with
    matched_comparison's SUMMARY_COLUMNS (peak_precision: autoguidance's). A seed redraws the
    starting noise and the exact targets; CFG's runs are shared by the bad versions."""
    if not isinstance(bads, dict) or not bads:
        raise ValueError("bads must be a non-empty dict of name -> trained denoiser")
    rows = {}
    for name, bad in bads.items():
        for seed in seeds:
            runs = guided_runs(good, bad, problem, scales, seed=seed, **options)
            summary = matched_comparison(guidance_table(runs))
            lo, hi = summary["overlap"] or (math.nan, math.nan)
            peak = summary["peak_precision"]["autoguidance"]
            values = {"overlap_lo": lo, "overlap_hi": hi, "peak_precision": peak}
            rows[name, seed] = {c: values.get(c, summary.get(c)) for c in SUMMARY_COLUMNS}
    frame = pd.DataFrame(rows).T
    frame.index.names = ["bad", "seed"]
    return frame.astype(float)
