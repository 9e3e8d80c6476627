"""The tour's study: its mixtures and its sizes in SMOKE and full mode, defined once.

Notebook 00 and its served explorer (`widgets.explorers.noised_mixture`) both read these, so
the page a teacher serves shows what the notebook shows.
"""

from __future__ import annotations

from dataclasses import dataclass

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
