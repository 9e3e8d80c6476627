"""Topic 07's study: differentiable iso-surfaces, and every number notebook 07 and its explorer
show.

Three measurements, each cached through `workbench.sweep.run_sweep` (JSON on disk, arrays
included) and kept in memory through `workbench.memo`:

- gradient error vs resolution: the normal velocity of the surface per unit of a shape
  parameter, from MeshSDF at each marching vertex and from plain marching's interpolation
  (autograd through the vertex's edge interpolation), against the exact shape derivative at
  the vertex's projection onto the surface; the rate is fitted (`empirical_order`);
- shape fits (`fitting.fit_shape`): a grid of SDF values starting from a circle (a sphere in
  3-D) fitted to each target by Chamfer with Adam, per extractor, resolution and learning
  rate; the final Chamfer and Hausdorff distances to the exact target surface;
- sharp features: the box target fitted from its own sampled SDF (the best start a grid can
  have), FlexiCubes against plain marching at the same resolution.

SMOKE and full sizes are `iso_size(smoke)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.memo import Memo, memoized
from workbench.metrics import empirical_order
from workbench.surfaces.fields import Ball
from workbench.surfaces.fitted_fields import GridField
from workbench.surfaces.fitting import EXTRACTORS, fit_shape, target_points
from workbench.surfaces.gradient_checks import finite_difference_error, velocity_error
from workbench.surfaces.grid import Grid
from workbench.surfaces.shapes import SHAPES
from workbench.sweep import run_sweep

GRADIENT_SHAPE, GRADIENT_PARAMETER = "ellipse", "radii"  # not a distance: |grad s| != 1
SHARP_TARGET = "box"
START_RADIUS = 0.5  # every shape fit starts from a circle / sphere of this radius at the origin
SNAPSHOT_EVERY = 5  # iterations between the explorer's surface snapshots


@dataclass(frozen=True)
class IsoSize:
    """How big notebook 07 (and the served explorer) computes."""

    targets: tuple[str, ...]  # 2-D targets of the learning-rate sweep
    resolutions: tuple[int, ...]  # grid points per axis of the 2-D fits
    log2_lrs: tuple[int, ...]  # learning rates 2^k of the sweep (the explorer's stops)
    steps: int  # Adam steps per fit
    gradient_resolutions: tuple[int, ...]  # the gradient-error study's grids
    sharp_resolution: int
    sharp_steps: int  # Adam steps of the sharp-feature fits (FlexiCubes' corner test's 60)
    volume_targets: tuple[str, ...]  # the 3-D example's targets
    volume_resolution: int
    volume_steps: int
    volume_log2_lr: int


SIZES = {
    "smoke": IsoSize(("circle", "box"), (16,), (-7, -5, -3), 15, (9, 17, 33), 16, 60,
                     ("sphere", "cube"), 10, 5, -5),
    "full": IsoSize(("circle", "box"), (16, 32), tuple(range(-9, 0)), 40,
                    (9, 17, 33, 65, 129), 16, 60, ("sphere", "cube"), 12, 20, -5),
}  # fmt: skip


def iso_size(smoke: bool) -> IsoSize:
    return SIZES["smoke" if smoke else "full"]


def profile(smoke: bool) -> str:
    return "smoke" if smoke else "full"


# ------------------------------------------------------------------ gradient vs resolution
def gradient_cell(shape: str, parameter: str, resolution: int) -> list[dict]:
    """At one resolution: the largest error of each method's normal velocity at the marching
    vertices against the exact shape derivative at their projections, relative to the largest
    exact velocity (`gradient_checks.velocity_error`; the unit of the gradient sweep's cache)."""
    field = SHAPES[shape]()
    grid = Grid(field.dim, resolution)
    return [
        {"method": method, "error": velocity_error(field, grid, parameter, method, "max")}
        for method in ("meshsdf", "marching")
    ]


@memoized("iso-surface gradient errors", maxsize=4)
def gradient_errors(smoke: bool) -> pd.DataFrame:
    """(resolution, method, error) at every resolution of the size."""
    cells = [
        {"shape": GRADIENT_SHAPE, "parameter": GRADIENT_PARAMETER, "resolution": n}
        for n in iso_size(smoke).gradient_resolutions
    ]
    return run_sweep(gradient_cell, cells, name="isosurfaces-gradient")


def gradient_orders(errors: pd.DataFrame) -> dict[str, float]:
    """The fitted convergence order of each method's velocity error in the resolution."""
    orders = {}
    for method, rows in errors.groupby("method", sort=False):
        orders[method] = empirical_order(rows.resolution, rows.error).order
    return orders


def finite_difference_check(resolution: int = 33, eps: float = 1e-6) -> float:
    """MeshSDF's derivative of a vertex loss against a central difference of the re-extracted
    mesh on a grid of SDF values (the ellipse's), relative (`gradient_checks.
    finite_difference_error`): the vertices are the grid field's exact zeros there, so the two
    agree up to the difference's own error."""
    grid = Grid(2, resolution)
    field = GridField.from_field(grid, SHAPES[GRADIENT_SHAPE]())
    return finite_difference_error(field, grid, "values", eps)


# ------------------------------------------------------------------ shape fits
def _start(dim: int, grid: Grid, start: str, target: str) -> GridField:
    """A grid of SDF values: a ball's at the origin ("ball") or the target's own ("target")."""
    shape = Ball([0.0] * dim, START_RADIUS) if start == "ball" else SHAPES[target]()
    return GridField.from_field(grid, shape)


def fit_cell(target, extractor, resolution, log2_lr, steps, start, seed) -> list[dict]:
    """One fit: a row per snapshot (iteration, vertices, faces, gradient dL/dv), with the fit's
    status, reason, final distances, seconds and loss curve repeated (the sweep's unit)."""
    shape = SHAPES[target]()
    grid = Grid(shape.dim, resolution)
    snapshots = range(0, steps + 1, SNAPSHOT_EVERY) if steps % SNAPSHOT_EVERY == 0 else (steps,)
    fit = fit_shape(
        _start(shape.dim, grid, start, target), shape, extractor=extractor, grid=grid,
        lr=2.0**log2_lr, steps=steps, seed=seed, snapshots=(*snapshots, steps),
    )  # fmt: skip
    shared = {
        "status": fit.status, "reason": fit.reason, "chamfer": fit.chamfer,
        "hausdorff": fit.hausdorff, "seconds": fit.seconds, "losses": fit.losses,
    }  # fmt: skip
    rows = [
        {"iteration": k, "vertices": s.vertices, "faces": s.faces, "gradient": s.gradient, **shared}
        for k, s in sorted(fit.snapshots.items())
    ]
    return rows or [{"iteration": 0, "vertices": np.zeros((0, shape.dim)),
                     "faces": np.zeros((0, shape.dim), dtype=np.int64),
                     "gradient": np.zeros((0, shape.dim)), **shared}]  # fmt: skip


@dataclass(frozen=True)
class FitSetting:
    """One fit the study runs: target, extractor, resolution, learning rate 2^log2_lr."""

    target: str
    extractor: str
    resolution: int
    log2_lr: int

    def __post_init__(self) -> None:
        SHAPES.check(self.target)
        EXTRACTORS.check(self.extractor)


@dataclass(frozen=True)
class FitRun:
    """What a fit shows: its setting, status, final distances, loss curve and snapshots."""

    setting: FitSetting
    status: str
    reason: str
    chamfer: float
    hausdorff: float
    seconds: float
    losses: np.ndarray
    snapshots: dict  # iteration -> (vertices, faces, gradient)

    @property
    def diverged(self) -> bool:
        return self.status != "ok"


def offered_settings(smoke: bool) -> tuple[FitSetting, ...]:
    """Every fit the study runs at this size (and the explorer offers): the 2-D targets at
    every resolution, extractor and learning rate; the 3-D targets at one of each."""
    size = iso_size(smoke)
    flat = [
        FitSetting(t, e, n, k)
        for t in size.targets
        for n in size.resolutions
        for e in EXTRACTORS
        for k in size.log2_lrs
    ]
    volume = [
        FitSetting(t, e, size.volume_resolution, size.volume_log2_lr)
        for t in size.volume_targets
        for e in EXTRACTORS
    ]
    return (*flat, *volume)


def _steps(setting: FitSetting, smoke: bool, start: str) -> int:
    size = iso_size(smoke)
    if start == "target":
        return size.sharp_steps
    return size.volume_steps if SHAPES[setting.target]().dim == 3 else size.steps


RUNS = Memo("iso-surface fits", maxsize=512)


def _cell(setting: FitSetting, smoke: bool, start: str, seed: int) -> dict:
    return {
        **setting.__dict__,
        "steps": _steps(setting, smoke, start),
        "start": start,
        "seed": seed,
    }


def fit_runs(
    settings: Sequence[FitSetting], smoke: bool, start: str = "ball", seed: int = 0
) -> list[FitRun]:
    """The fits of these settings, from memory, the sweep's cache, or run now (in one sweep)."""
    keys = {s: ("fit", s, bool(smoke), start, int(seed)) for s in settings}
    missing = [s for s in settings if keys[s] not in RUNS]
    if missing:
        rows = run_sweep(
            fit_cell, [_cell(s, smoke, start, seed) for s in missing], name="isosurfaces-fits"
        )
        columns = ["target", "extractor", "resolution", "log2_lr"]
        groups = dict(list(rows.groupby(columns, sort=False)))
        for s in missing:
            mine = groups[tuple(s.__dict__[c] for c in columns)]
            RUNS.get(keys[s], lambda mine=mine, s=s: _as_run(s, mine))
    return [RUNS.get(keys[s], lambda s=s: fit_runs([s], smoke, start, seed)[0]) for s in settings]


def is_run(setting: FitSetting, smoke: bool, start: str = "ball", seed: int = 0) -> bool:
    return ("fit", setting, bool(smoke), start, int(seed)) in RUNS


def _as_run(setting: FitSetting, rows: pd.DataFrame) -> FitRun:
    first = rows.iloc[0]
    snapshots = {
        int(r.iteration): (r.vertices, r.faces, r.gradient)
        for r in rows.itertuples()
        if len(r.faces)
    }
    return FitRun(
        setting, first.status, first.reason, float(first.chamfer), float(first.hausdorff),
        float(first.seconds), np.asarray(first.losses, dtype=float), snapshots,
    )  # fmt: skip


# ------------------------------------------------------------------ what the explorer shows
@dataclass(frozen=True)
class IsoView:
    """One setting of the explorer: the selected fit at one iteration, the fits it is compared
    with (every extractor at the same target, resolution and lr), and the exact target."""

    run: FitRun
    iteration: int
    compared: tuple[FitRun, ...]
    target: np.ndarray  # exact points on the target surface
    sweep: tuple[FitRun, ...]  # every lr at this target, resolution (all extractors)


def check_offered(setting: FitSetting, smoke: bool) -> FitSetting:
    """The setting, or a one-line ValueError naming what is computed instead."""
    if setting in offered_settings(smoke):
        return setting
    size = iso_size(smoke)
    if setting.target in size.volume_targets:
        raise ValueError(
            f"3-D fits are computed at resolution {size.volume_resolution} and learning rate "
            f"2^{size.volume_log2_lr} only"
        )
    raise ValueError(f"{SHAPES.label(setting.target)} at {setting.resolution} points per axis "
                     f"and lr 2^{setting.log2_lr} is not computed")  # fmt: skip


@memoized("iso-surface target points", maxsize=16)
def exact_outline(target: str) -> np.ndarray:
    """Exact points on a target's surface (drawn over the fits)."""
    return target_points(SHAPES[target]()).numpy()


def nearest_iteration(iteration: float, offered: Sequence[int]) -> int:
    """The snapshot iteration nearest to `iteration` (the explorer's slider offers those)."""
    return min(offered, key=lambda k: (abs(k - iteration), k))


def iterations(smoke: bool, dim: int = 2) -> tuple[int, ...]:
    """The snapshot iterations of a fit at this size (the explorer's iteration stops)."""
    size = iso_size(smoke)
    steps = size.steps if dim == 2 else size.volume_steps
    return tuple(range(0, steps + 1, SNAPSHOT_EVERY)) if steps % SNAPSHOT_EVERY == 0 else (steps,)


@memoized("iso-surface views", maxsize=512)
def iso_view(setting: FitSetting, iteration: float, smoke: bool, seed: int = 0) -> IsoView:
    """Everything the explorer shows for one setting of its controls."""
    check_offered(setting, smoke)
    same = [s for s in offered_settings(smoke)
            if (s.target, s.resolution) == (setting.target, setting.resolution)]  # fmt: skip
    sweep = tuple(fit_runs(same, smoke, seed=seed))
    run = next(r for r in sweep if r.setting == setting)
    compared = tuple(r for r in sweep if r.setting.log2_lr == setting.log2_lr)
    shown = nearest_iteration(iteration, sorted(run.snapshots) or [0])
    return IsoView(run, shown, compared, exact_outline(setting.target), sweep)


def iso_view_cost(setting: FitSetting, smoke: bool, seed: int = 0) -> float | None:
    """About how many seconds `iso_view` will take when its fits are not in memory yet."""
    same = [s for s in offered_settings(smoke)
            if (s.target, s.resolution) == (setting.target, setting.resolution)]  # fmt: skip
    missing = sum(not is_run(s, smoke, seed=seed) for s in same)
    per_fit = 0.02 * iso_size(smoke).steps  # about 20 ms a step
    return None if not missing else missing * per_fit
