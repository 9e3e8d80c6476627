"""The tour's study: its mixtures and its sizes in SMOKE and full mode, defined once.

Notebook 00 and its served explorer (`widgets.explorers.noised_mixture`) both read these, so
the page a teacher serves shows what the notebook shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.claims import Claim, readable
from workbench.memo import memoized
from workbench.registry import Registry
from workbench.toy.mixture import GaussianMixture

DATASETS: Registry = Registry("dataset")
DATASETS.add("ring", GaussianMixture.ring, label="8-mode ring")
DATASETS.add("grid", GaussianMixture.grid, label="3x3 grid")
DATASETS.add("two_class", GaussianMixture.two_class, label="two classes")


@memoized("tour datasets", maxsize=8)
def dataset(name: str) -> GaussianMixture:
    """The mixture registered as `name` (built once)."""
    return DATASETS[name]()


def datasets() -> dict[str, GaussianMixture]:
    """Every tour mixture, id -> mixture."""
    return {name: dataset(name) for name in DATASETS}


@dataclass(frozen=True)
class TourSize:
    n_monte_carlo: int  # draws behind the denoiser's Monte Carlo check
    n_samples: int  # noised samples the explorer shows
    grid_size: int  # density grid points per axis
    latency_repeats: int  # sweeps of the slider when the notebook times the explorer


def tour_size(smoke: bool) -> TourSize:
    """SMOKE: seconds, every code path; full: the notebook's claims at their stated precision."""
    if smoke:
        return TourSize(n_monte_carlo=20_000, n_samples=1000, grid_size=120, latency_repeats=1)
    return TourSize(n_monte_carlo=400_000, n_samples=4000, grid_size=120, latency_repeats=5)


# Notebook 00's NOISE_LEVEL parameter default: the served explorer starts where the notebook's
# checks are made (tests/test_mixture.py checks the two agree).
NOISE_LEVEL = 0.6

# What notebook 00 checked, each tied to a metric it records (its names in the last cell).
TOUR_CHECKS: tuple[Claim, ...] = (
    Claim(
        "the closed-form score equals autograd of the closed-form log-density, to rounding "
        "(largest difference over the mixtures)",
        "Song et al. 2020, arXiv:2011.13456",
        "score_autograd_max_abs_error",
        below=1e-10,
    ),
    Claim(
        "the closed-form denoiser E[x_0 | x_t] agrees with a Monte Carlo posterior mean "
        "(largest |z|, in standard errors)",
        "Karras et al. 2022, arXiv:2206.00364",
        "denoiser_monte_carlo_max_z",
        below=5,
    ),
    Claim(
        "the noised density integrates to 1 (least mass on the grid over the mixtures)",
        "closed form",
        "grid_mass_min",
        above=0.999,
    ),
)


def run_history_note(runs, database_name: str) -> str:
    """The sentence over the run-history figure: how many runs and commits it shows."""
    if runs.empty:
        return f"_No runs recorded yet in `{database_name}`: `./dev run --smoke` records some._"
    commits = runs["git_commit"].nunique()
    return (
        f"{len(runs)} recorded notebook {'run' if len(runs) == 1 else 'runs'} over "
        f"{commits} {'commit' if commits == 1 else 'commits'}."
    )


def setting_note(alpha: float, sigma: float, size: TourSize) -> str:
    """The noise level the checks are made at, and how many draws the Monte Carlo check uses."""
    return (
        f"The checks below are made at α = {readable(alpha)}, σ = {readable(sigma)}; the "
        f"denoiser's Monte Carlo check averages {size.n_monte_carlo:,} prior draws."
    )
