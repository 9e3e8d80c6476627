"""Topic 01's study: every solver on an exact Gaussian mixture, and every number notebook 01 and
its explorer show (errors against the exact ODE solution, curves, fitted orders, tables).

`SolverStudy` solves from fixed prior noise; its solves are memoized by content (the study's
mixture, schedule, size and seed, and the solve's settings), so moving a slider back and forth
costs nothing after the first visit, and the notebook and its explorer share their solves.
The notebook's SMOKE and full sizes are `study_size(smoke)`; the problems are
`SOLVER_PROBLEMS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from workbench.claims import Claim
from workbench.diffusion.grids import GRIDS
from workbench.diffusion.learned import fit_grid
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.reference import REFERENCES, reference_solution
from workbench.diffusion.sampling import SOLVERS, SampleResult, prior_noise, sample
from workbench.diffusion.schedules import NoiseSchedule, VPSchedule
from workbench.memo import Memo, memoized
from workbench.metrics import empirical_order, mean_l2_error
from workbench.registry import Registry
from workbench.toy import GaussianMixture
from workbench.toy.fields import evaluation_grid, plot_bounds

# Step counts for error-vs-NFE curves: dense at the few-step end where solvers differ most.
CURVE_STEPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
TABLE_NFES = (5, 10, 20)  # the "error at NFE k" columns
N_SHOWN = 1500  # samples drawn per solver: enough to see mass, few enough to see through
N_PATHS = 24  # trajectories drawn per solver

SOLVER_PROBLEMS: Registry = Registry("solver problem")
SOLVER_PROBLEMS.add("ring", GaussianMixture.ring, label="8-mode ring (std 0.1)")
SOLVER_PROBLEMS.add("unequal", GaussianMixture.unequal, label="unequal widths and weights")

SOLVES = Memo("solver study solves", maxsize=1024)


@dataclass(frozen=True)
class StudySize:
    """How big notebook 01 (and the served explorer) computes."""

    n_samples: int  # starting points per solve
    curve_steps: tuple[int, ...]  # step counts of the error-vs-NFE curves
    ems_samples: int  # samples behind the DPM-Solver-v3 statistics the notebook plots
    fit_train: int  # training noises of each fitted grid


SIZES = {
    "smoke": StudySize(500, (2, 5, 10, 20, 40), ems_samples=256, fit_train=128),
    "full": StudySize(4000, CURVE_STEPS, ems_samples=1024, fit_train=512),
}


def study_size(smoke: bool, n_samples: int | None = None) -> StudySize:
    """The SMOKE or full size; `n_samples` (the notebook's N_SAMPLES) sets the full profile's
    starting points (the SMOKE profile's are fixed)."""
    size = SIZES["smoke" if smoke else "full"]
    if smoke or n_samples is None:
        return size
    return dataclasses.replace(size, n_samples=int(n_samples))


@dataclass
class SolverStudy:
    """Solvers on `mixture` under `schedule`, from fixed noise x_T ~ N(0, sigma(t_max)^2 I)."""

    mixture: GaussianMixture
    schedule: NoiseSchedule
    n_samples: int = 4000
    seed: int = 0
    model: DiffusionModel = field(init=False)
    x_T: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.mixture.denoiser(self.schedule)
        self.x_T = prior_noise(self.schedule, self.n_samples, self.mixture.dim, self.seed)

    def content_key(self):
        """What the study's numbers depend on (its memo entries are keyed by it)."""
        return (self.mixture, self.schedule, self.n_samples, self.seed)

    @cached_property
    def reference(self) -> torch.Tensor:
        """The exact probability-flow ODE solution from x_T."""
        return reference_solution(self.model, self.x_T)

    def solve(
        self, solver: str, steps: int, grid="logsnr", order: int | None = None, **options
    ) -> SampleResult:
        def run():
            return sample(
                self.model, self.x_T, solver=solver, steps=steps, grid=grid, order=order,
                trajectory=True, **options,
            )  # fmt: skip

        return SOLVES.get(self._solve_key(solver, steps, grid, order, options), run)

    def is_solved(self, solver: str, steps: int, grid="logsnr", order: int | None = None,
                  **options) -> bool:  # fmt: skip
        """Whether `solve` with these settings would be answered from the memo."""
        return self._solve_key(solver, steps, grid, order, options) in SOLVES

    def _solve_key(self, solver, steps, grid, order, options) -> tuple:
        return (self, solver, steps, grid, order, options)

    def error(self, solver: str, steps: int, grid="logsnr", order: int | None = None, **options):
        """Mean L2 distance of the solver's samples from the exact ODE solution."""
        return mean_l2_error(self.solve(solver, steps, grid, order, **options).x, self.reference)

    def error_curve(
        self, solver: str, grid="logsnr", order: int | None = None, steps=CURVE_STEPS, **options
    ) -> pd.DataFrame:
        """Error against NFE over `steps` (one row per step count)."""
        rows = [
            {
                "solver": solver,
                "steps": n,
                "nfe": self.solve(solver, n, grid, order, **options).nfe,
                "error": self.error(solver, n, grid, order, **options),
            }
            for n in steps
        ]
        return pd.DataFrame(rows)

    def error_curves(self, orders: dict[str, int | None], grid="logsnr", steps=CURVE_STEPS):
        """The error curves of several solvers (solver -> order), one frame."""
        return pd.concat([self.error_curve(s, grid, o, steps) for s, o in orders.items()])

    def table(self, solvers, grid="logsnr", nfes=TABLE_NFES, order=None) -> pd.DataFrame:
        """Error at given NFE per solver (steps = NFE / model calls per step)."""
        rows = {}
        for solver in solvers:
            per_step = self.solve(solver, 1, grid, order).nfe  # model calls of one step
            rows[solver] = {
                f"NFE {nfe}": self.error(solver, max(1, nfe // per_step), grid, order)
                for nfe in nfes
            }
        return pd.DataFrame(rows).T

    def summary(self, solvers, steps=CURVE_STEPS, grid="logsnr") -> pd.DataFrame:
        """Per solver (ids as the index): its label, error at NFE 5/10/20, its default order
        and the order fitted to its error curve over `steps`."""
        curves = self.error_curves(dict.fromkeys(solvers), grid, steps)
        fitted = fitted_orders(curves)
        table = self.table(solvers, grid)
        table.insert(0, "solver", [SOLVERS.label(s) for s in table.index])
        table["order setting"] = [SOLVERS[s].default_order for s in table.index]
        table["fitted order"] = [fitted[s] for s in table.index]
        return table

    def grid_table(self, solvers, steps: int = 10) -> pd.DataFrame:
        """Error per solver (rows) on every named grid (columns) at `steps` steps."""
        return pd.DataFrame({g: {s: self.error(s, steps, g) for s in solvers} for g in GRIDS})

    def fitted_grid_table(self, solvers, step_counts, n_train: int, seed: int) -> pd.DataFrame:
        """Per (solver, steps): the error on every named grid and on a grid fitted (on
        `n_train` training noises from `seed`) to the exact solution, and the best named grid's
        error over the fitted one's."""
        rows = {}
        for solver in solvers:
            for k in step_counts:
                fitted = fit_grid(self.model, solver=solver, steps=k, n_train=n_train, seed=seed)
                rows[(solver, k)] = {g: self.error(solver, k, g) for g in GRIDS}
                rows[(solver, k)]["fitted"] = self.error(solver, k, fitted)
        table = pd.DataFrame(rows).T
        table["best hand grid / fitted"] = table[list(GRIDS)].min(axis=1) / table["fitted"]
        return table


@memoized("solver studies", maxsize=8)
def study_for(problem: str, n_samples: int, seed: int) -> SolverStudy:
    """The study of a problem in SOLVER_PROBLEMS on the DDPM linear schedule."""
    return SolverStudy(SOLVER_PROBLEMS[problem](), VPSchedule.linear_ddpm(), n_samples, seed)


def solver_names(stochastic: bool = False) -> list[str]:
    """Registered solvers (deterministic ones unless asked), in registration order."""
    return [name for name, spec in SOLVERS.items() if stochastic or not spec.stochastic]


def order_for(solver: str, requested: int | str) -> int:
    """The requested order where the solver has it, else the solver's default."""
    spec = SOLVERS[solver]
    return requested if requested in spec.orders else spec.default_order


def fitted_orders(curves: pd.DataFrame) -> dict[str, float]:
    """The order fitted to each solver's error curve over its asymptotic part."""
    return {
        s: empirical_order(c.nfe.to_numpy(), c.error.to_numpy(), asymptotic="auto").order
        for s, c in curves.groupby("solver", sort=False)
    }


def error_ratios(summary: pd.DataFrame, numerator: str, denominator: str) -> dict[int, float]:
    """numerator's error over denominator's at each NFE column of a `summary` (the gain of
    the denominator)."""
    return {nfe: summary.loc[numerator, f"NFE {nfe}"] / summary.loc[denominator, f"NFE {nfe}"]
            for nfe in TABLE_NFES}  # fmt: skip


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of one of the study's tables for a reader: solver ids in the index (or its first
    level) and grid ids in the columns replaced by their labels."""
    table = table.copy()
    if isinstance(table.index, pd.MultiIndex):
        table.index = table.index.set_levels(
            [SOLVERS.label(s) for s in table.index.levels[0]], level=0
        ).set_names(["solver", "steps"])
    else:
        table.index = pd.Index([SOLVERS.label(s) for s in table.index], name="solver")
    return table.rename(columns=lambda c: GRIDS.label(c) if c in GRIDS else c)


# ------------------------------------------------------------------ what the explorer shows
@dataclass(frozen=True)
class SolverSteps:
    """One setting of the explorer: the solves, their curves and fitted orders, the table."""

    problem: str
    study: SolverStudy
    solvers: tuple[str, ...]
    orders: dict[str, int]
    steps: int
    grid: str
    samples: dict[str, np.ndarray]  # the first N_SHOWN samples per solver
    paths: dict[str, np.ndarray]  # (steps + 1, N_PATHS, 2) per solver
    exact_ends: np.ndarray  # (N_PATHS, 2): the exact ODE solution at those paths' ends
    curves: pd.DataFrame
    fitted_orders: dict[str, float]
    table: pd.DataFrame
    nfe: dict[str, int]
    density: tuple[np.ndarray, np.ndarray, np.ndarray]  # xs, ys, log p_0 on the grid


def solver_steps(
    problem: str, solvers: tuple[str, ...], steps: int, grid: str, order, *,
    n_samples: int, seed: int = 0, curve_steps=CURVE_STEPS,
) -> SolverSteps:  # fmt: skip
    """Everything the solver-steps explorer shows for one setting of its controls."""
    study = study_for(problem, n_samples, seed)
    orders = {s: order_for(s, order) for s in solvers}
    results = {s: study.solve(s, steps, grid, orders[s]) for s in solvers}
    curves = study.error_curves(orders, grid, curve_steps)
    return SolverSteps(
        problem=problem,
        study=study,
        solvers=solvers,
        orders=orders,
        steps=steps,
        grid=grid,
        samples={s: r.x[:N_SHOWN].numpy() for s, r in results.items()},
        paths={
            s: np.stack([p[:N_PATHS].numpy() for p in r.trajectory]) for s, r in results.items()
        },
        exact_ends=study.reference[:N_PATHS].numpy(),
        curves=curves,
        fitted_orders=fitted_orders(curves),
        table=study.table(solvers, grid),
        nfe={s: r.nfe for s, r in results.items()},
        density=density_image(problem),
    )


def solver_steps_cost(
    problem: str, solvers: tuple[str, ...], steps: int, grid: str, order, *,
    n_samples: int, seed: int = 0, curve_steps=CURVE_STEPS,
) -> float | None:  # fmt: skip
    """About how many seconds `solver_steps` will take for a setting whose solves are not all
    stored yet (a new grid or order re-solves every curve), None when they all are.

    The solves not stored times the median time of recent solves, plus a reference solution
    when the problem's study is new; None too before anything has been timed."""
    per_solve = SOLVES.typical_seconds()
    if per_solve is None:
        return None
    seconds, missing = 0.0, 0
    if study_for.cached(problem, n_samples, seed):
        study = study_for(problem, n_samples, seed)
        for s in solvers:
            o = order_for(s, order)
            missing += sum(not study.is_solved(s, n, grid, o) for n in {steps, *curve_steps})
            # the table's solves (default order, NFE-matched steps) are made together
            missing += 0 if study.is_solved(s, 1, grid) else 1 + len(TABLE_NFES)
    else:
        seconds += REFERENCES.typical_seconds() or 0.0
        missing = len(solvers) * (len({steps, *curve_steps}) + 1 + len(TABLE_NFES))
    seconds += missing * per_solve
    return seconds if missing else None


@memoized("solver problem densities", maxsize=8)
def density_image(problem: str, size: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, log p_0) of a problem's mixture on a size x size grid around its mass."""
    mixture = SOLVER_PROBLEMS[problem]()
    bounds = plot_bounds(mixture, margin=3.0, at_least=2.5)
    xs, ys, points = evaluation_grid(bounds, size)
    return xs.numpy(), ys.numpy(), mixture.log_prob(points).reshape(size, size).numpy()


def fitted_gains(fitted_table: pd.DataFrame) -> pd.DataFrame:
    """A `fitted_grid_table`'s gains, one row per solver, columns "steps<k>.gain" (the ids of
    notebook 01's recorded metrics)."""
    gains = fitted_table["best hand grid / fitted"].unstack()
    return gains.rename(columns=lambda k: f"steps{k}.gain")


# ------------------------------------------------------------------ the verdict of notebook 01
DDIM_PAPER = "Song, Meng & Ermon 2020, arXiv:2010.02502"
DPMPP_PAPER = "Lu et al. 2022, arXiv:2211.01095"
UNIPC_PAPER = "Zhao et al. 2023, arXiv:2302.04867"
DEIS_PAPER = "Zhang & Chen 2022, arXiv:2204.13902"  # DEIS and iPNDM
V3_PAPER = "Zheng et al. 2023, arXiv:2310.13268"
DIFFUSERS = "von Platen et al. 2022, github.com/huggingface/diffusers"
BESPOKE_PAPER = "Shaul et al. 2023, arXiv:2310.19075"


def order_claim(solver: str, order: int, paper: str, how: str = "") -> Claim:
    """The solver's error falls at `order` in NFE: its fitted order rounds to it."""
    return Claim(
        f"{SOLVERS.label(solver)}{how} is order {order} (fitted order within 0.5)",
        paper,
        f"{solver}.fitted_order",
        above=order - 0.5,
        below=order + 0.5,
    )


def beats_claim(solver: str, other: str, nfe: int, paper: str) -> Claim:
    """The solver's error at `nfe` model calls is below the other's."""
    return Claim(
        f"{SOLVERS.label(solver)} beats {SOLVERS.label(other)} at NFE {nfe}",
        paper,
        f"{solver}.error_nfe{nfe}",
        below=f"{other}.error_nfe{nfe}",
    )


def fitted_grid_claim(solver: str, steps: int) -> Claim:
    return Claim(
        f"a grid fitted for {SOLVERS.label(solver)} beats the best hand-designed grid at "
        f"{steps} steps (best hand grid's error / fitted grid's)",
        BESPOKE_PAPER,
        f"fitted_grid.{solver}.steps{steps}.gain",
        above=1,
    )


# Each tied to a metric notebook 01 records (its names in the last cell).
SOLVER_STEPS_CLAIMS: tuple[Claim, ...] = (
    order_claim("ddim", 1, DDIM_PAPER),
    order_claim("dpmpp_2m", 2, DPMPP_PAPER),
    order_claim("dpmpp_3m", 3, DPMPP_PAPER),
    order_claim("unipc_bh2", 3, UNIPC_PAPER, how=", order 2 plus its corrector,"),
    order_claim("deis", 3, DEIS_PAPER),
    order_claim("ipndm", 4, DEIS_PAPER),
    beats_claim("dpmpp_2m", "ddim", 10, DPMPP_PAPER),
    beats_claim("dpmpp_2m", "dpm_solver", 10, DPMPP_PAPER),
    beats_claim("unipc_bh2", "dpmpp_2m", 5, UNIPC_PAPER),
    beats_claim("unipc_bh2", "dpmpp_2m", 10, UNIPC_PAPER),
    beats_claim("deis", "ddim", 10, DEIS_PAPER),
    beats_claim("ipndm", "ddim", 10, DEIS_PAPER),
    *(
        Claim(
            f"DPM-Solver-v3 beats DPM-Solver++(2M) at NFE {nfe} (its error / v3's)",
            V3_PAPER,
            f"dpm_solver_v3.gain_nfe{nfe}",
            above=1,
        )
        for nfe in (5, 10)
    ),
    Claim(
        "diffusers' schedulers give the same samples, to float32 rounding (largest difference)",
        DIFFUSERS,
        "diffusers.max_abs_difference",
        below=1e-4,
    ),
    fitted_grid_claim("ddim", 10),
    fitted_grid_claim("dpmpp_2m", 10),
)
