"""Metrics that compare generated samples with exact ground truth.

Solver accuracy: `mean_l2_error` against the exact ODE solution and `empirical_order`, the
convergence order read off a log-log error-vs-NFE curve. Distribution distances between sample
sets: `sliced_wasserstein` and `mmd`. Mode statistics against a `GaussianMixture`:
`mode_weights`, `mode_coverage` and `mode_weight_error`; class statistics under the exact
posterior for guidance: `class_precision`, `mean_class_posterior`, `within_class_spread`.

Samples are (N, D) torch tensors or numpy arrays (a 1-D array is N scalar samples); everything is
computed in float64. Scalar metrics are returned as Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from workbench.toy import GaussianMixture

DTYPE = torch.float64
ArrayLike = torch.Tensor | np.ndarray | Sequence[float]

# Kernel matrices are summed in row blocks of at most this many entries (32 MB in float64), so
# a 10k x 10k MMD never holds the full 10k^2 matrix.
_KERNEL_BLOCK_ENTRIES = 1 << 22
# The median heuristic looks at pairwise distances of at most this many pooled points.
_MEDIAN_HEURISTIC_POINTS = 1000
# A stretch of an error curve counts as asymptotic only if its error falls at least this fast:
# a floor (errors that stop decreasing) has local slopes near 0 and must never be picked.
_MIN_ASYMPTOTIC_ORDER = 0.5


# ---------------------------------------------------------------- input checks
def _as_samples(x: ArrayLike, name: str) -> torch.Tensor:
    """A finite, non-empty (N, D) float64 tensor; 1-D input is N scalar samples."""
    x = x.to(DTYPE) if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, np.float64))
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _same_dimension(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: x has D={x.shape[1]}, y has D={y.shape[1]}")


# ---------------------------------------------------------------- solver error
def mean_l2_error(x: ArrayLike, reference: ArrayLike) -> float:
    """Mean over samples of ||x_i - reference_i||: a solver's error against the exact solution.

    `x` and `reference` are paired: row i of both starts from the same initial noise.
    """
    x, reference = _as_samples(x, "x"), _as_samples(reference, "reference")
    if x.shape != reference.shape:
        raise ValueError(
            f"x and reference must have the same shape, got {tuple(x.shape)} and "
            f"{tuple(reference.shape)}"
        )
    return float(torch.linalg.vector_norm(x - reference, dim=1).mean())


@dataclass(frozen=True)
class OrderFit:
    """A least-squares fit log(error) = intercept + slope * log(NFE) over the used points."""

    slope: float
    intercept: float
    order: float  # -slope: error ~ NFE^(-order)
    r2: float
    nfes: tuple[float, ...]  # the points the fit used
    errors: tuple[float, ...]

    def predict(self, nfe: ArrayLike | float) -> np.ndarray:
        """The fitted error at `nfe`, e.g. to draw the fit line."""
        return np.exp(self.intercept) * np.asarray(nfe, dtype=np.float64) ** self.slope


def empirical_order(
    nfes: ArrayLike,
    errors: ArrayLike,
    *,
    asymptotic: str | tuple[float, float] | None = None,
    floor: float = 1e-9,
    slope_tolerance: float = 0.1,
) -> OrderFit:
    """Convergence order: minus the least-squares slope of log(error) against log(NFE).

    Errors at or below `floor` are dropped first: they are limited by the reference solution's
    accuracy, not by the solver. Then the points to fit are chosen by `asymptotic`:

    - None: all remaining points.
    - (lo, hi): the points with lo <= NFE <= hi.
    - "auto": the asymptotic regime, found from the local slopes between consecutive points
      (sorted by NFE). It is the longest run of consecutive local slopes whose spread
      (max - min) is at most `slope_tolerance` and whose median slope is at most -0.5 (the
      error must actually fall, so a floor where errors stop decreasing never qualifies); ties
      go to the run at larger NFE. Pre-asymptotic points at small NFE, whose slopes still
      drift, and a floor or noise at large NFE break the run and are left out. The fitted
      order lies within the run's slope range, so it is within `slope_tolerance` of every
      local slope it used. If no run has two agreeing slopes, the single falling segment at
      the largest NFE is used (two points, r2 = 1).
    """
    nfe, err = _convergence_points(nfes, errors)
    above_floor = err > floor
    nfe, err = nfe[above_floor], err[above_floor]
    log_nfe, log_err = np.log(nfe), np.log(err)
    if isinstance(asymptotic, str):
        if asymptotic != "auto":
            raise ValueError(f"asymptotic must be None, 'auto' or (lo, hi); got {asymptotic!r}")
        selected = _asymptotic_run(log_nfe, log_err, slope_tolerance)
    elif asymptotic is None:
        selected = np.ones(len(nfe), dtype=bool)
    else:
        lo, hi = asymptotic
        selected = (nfe >= lo) & (nfe <= hi)
    if selected.sum() < 2:
        raise ValueError(
            f"need at least 2 points above the floor {floor:g} to fit an order; "
            f"have {int(selected.sum())} (asymptotic={asymptotic!r})"
        )
    slope, intercept, r2 = _fit_line(log_nfe[selected], log_err[selected])
    return OrderFit(
        slope=slope,
        intercept=intercept,
        order=-slope,
        r2=r2,
        nfes=tuple(nfe[selected].tolist()),
        errors=tuple(err[selected].tolist()),
    )


def _convergence_points(nfes: ArrayLike, errors: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 arrays, sorted by NFE."""
    nfe = np.asarray(nfes, dtype=np.float64).reshape(-1)
    err = np.asarray(errors, dtype=np.float64).reshape(-1)
    if nfe.shape != err.shape:
        raise ValueError(f"nfes and errors differ in length: {nfe.size} vs {err.size}")
    if nfe.size == 0:
        raise ValueError("nfes and errors are empty")
    if np.isnan(nfe).any() or np.isnan(err).any():
        raise ValueError("nfes and errors must not contain NaN")
    if (nfe <= 0).any() or not np.isfinite(nfe).all():
        raise ValueError("every NFE must be positive and finite")
    if (err < 0).any() or not np.isfinite(err).all():
        raise ValueError("every error must be non-negative and finite")
    order = np.argsort(nfe, kind="stable")
    nfe, err = nfe[order], err[order]
    if (np.diff(nfe) == 0).any():
        raise ValueError("NFE values must be distinct")
    return nfe, err


def _asymptotic_run(log_nfe: np.ndarray, log_err: np.ndarray, tolerance: float) -> np.ndarray:
    """Mask of the points spanned by the longest run of agreeing, falling local slopes."""
    selected = np.zeros(len(log_nfe), dtype=bool)
    slopes = np.diff(log_err) / np.diff(log_nfe)
    best: tuple[int, int] | None = None  # (start, stop) into slopes, stop exclusive
    for start in range(len(slopes)):
        stop = start + 1
        while stop < len(slopes) and np.ptp(slopes[start : stop + 1]) <= tolerance:
            stop += 1
        falling = np.median(slopes[start:stop]) <= -_MIN_ASYMPTOTIC_ORDER
        # `>=` so that, among equally long runs, the one at larger NFE wins.
        if falling and (best is None or stop - start >= best[1] - best[0]):
            best = (start, stop)
    if best is not None:
        selected[best[0] : best[1] + 1] = True  # slopes start..stop-1 join points start..stop
    return selected


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope, intercept and coefficient of determination."""
    x_centered = x - x.mean()
    slope = float((x_centered * (y - y.mean())).sum() / (x_centered**2).sum())
    intercept = float(y.mean() - slope * x.mean())
    residual = float(((y - intercept - slope * x) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 if total == 0 else 1.0 - residual / total
    return slope, intercept, r2


# ---------------------------------------------------------------- sliced Wasserstein
def sliced_wasserstein(
    x: ArrayLike, y: ArrayLike, *, n_projections: int = 256, seed: int = 0, p: float = 2
) -> float:
    """Sliced Wasserstein-p distance: (E_theta W_p^p(theta.x, theta.y))^(1/p).

    The expectation is over `n_projections` random unit directions (fixed by `seed`, so x and y
    see the same ones); each 1-D W_p is exact, from sorted projections. For unequal sample sizes
    the two empirical quantile functions are compared exactly on the union of their breakpoints
    i/N and j/M.
    """
    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    _same_dimension(x, y)
    if n_projections < 1:
        raise ValueError(f"n_projections must be at least 1, got {n_projections}")
    if p < 1:
        raise ValueError(f"p must be at least 1, got {p}")
    directions = _random_directions(x.shape[1], n_projections, seed)
    # (P, N) layout: sorting along the contiguous last dimension is several times faster.
    x_sorted = torch.sort(directions.T @ x.T, dim=1).values
    y_sorted = torch.sort(directions.T @ y.T, dim=1).values
    cost_per_direction = _quantile_transport_cost(x_sorted, y_sorted, p)
    return float(cost_per_direction.mean() ** (1 / p))


def _random_directions(dim: int, count: int, seed: int) -> torch.Tensor:
    """(D, count) unit vectors, uniform on the sphere (normalized Gaussians)."""
    generator = torch.Generator().manual_seed(int(seed))
    gaussian = torch.randn(dim, count, generator=generator, dtype=DTYPE)
    return gaussian / torch.linalg.vector_norm(gaussian, dim=0, keepdim=True)


def _quantile_transport_cost(
    x_sorted: torch.Tensor, y_sorted: torch.Tensor, p: float
) -> torch.Tensor:
    """Per row: the integral over t in (0, 1] of |F_x^-1(t) - F_y^-1(t)|^p, exactly."""
    n, m = x_sorted.shape[1], y_sorted.shape[1]
    if n == m:
        return ((x_sorted - y_sorted).abs() ** p).mean(1)
    # Breakpoints i/N and j/M in integer units of 1/(N M), so the merge is exact.
    breakpoints = torch.unique(
        torch.cat([torch.arange(1, n + 1) * m, torch.arange(1, m + 1) * n])
    )  # sorted, ends at N M
    widths = torch.diff(breakpoints, prepend=breakpoints.new_zeros(1)).to(DTYPE) / (n * m)
    # On the interval ending at breakpoint u, the quantiles are samples ceil(u / M) - 1 of x and
    # ceil(u / N) - 1 of y: no breakpoint of either lies strictly inside the interval.
    x_index = (breakpoints + m - 1) // m - 1
    y_index = (breakpoints + n - 1) // n - 1
    gaps = (x_sorted[:, x_index] - y_sorted[:, y_index]).abs() ** p
    return gaps @ widths


# ---------------------------------------------------------------- MMD
def mmd(x: ArrayLike, y: ArrayLike, *, bandwidths: Sequence[float] | float | None = None) -> float:
    """Unbiased estimate of MMD^2 with the kernel sum_h exp(-||a - b||^2 / (2 h^2)).

    Unbiased means the diagonal terms k(x_i, x_i) are left out, so for two samples of the same
    distribution the estimate fluctuates around 0 and can be slightly negative. Default
    bandwidths: the median pairwise distance of the pooled samples times (0.5, 1, 2) (see
    `median_bandwidths`). Kernel sums are computed in row blocks, so memory stays bounded
    (about 32 MB per block) whatever N and M are; time is O((N + M)^2 D).
    """
    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    _same_dimension(x, y)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("the unbiased MMD needs at least 2 samples in each of x and y")
    scales = _bandwidths(x, y, bandwidths)
    n, m = x.shape[0], y.shape[0]
    within_x = _kernel_sum(x, x, scales, skip_diagonal=True) / (n * (n - 1))
    within_y = _kernel_sum(y, y, scales, skip_diagonal=True) / (m * (m - 1))
    across = _kernel_sum(x, y, scales, skip_diagonal=False) / (n * m)
    return float(within_x + within_y - 2 * across)


def median_bandwidths(
    x: ArrayLike, y: ArrayLike, factors: Sequence[float] = (0.5, 1.0, 2.0)
) -> torch.Tensor:
    """The median heuristic: median pairwise distance of the pooled samples, times `factors`.

    For speed the median is taken over at most 1000 pooled points, evenly spaced through
    x followed by y (deterministic; samples are assumed to be in no particular order).
    """
    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    _same_dimension(x, y)
    pooled = torch.cat([x, y])
    count = min(_MEDIAN_HEURISTIC_POINTS, pooled.shape[0])
    subset = pooled[torch.linspace(0, pooled.shape[0] - 1, count).round().long()]
    upper = torch.triu_indices(count, count, offset=1)
    distances = torch.cdist(subset, subset)[upper[0], upper[1]]
    # Identical points give a zero median; fall back to 1 so the kernel stays defined.
    median = float(distances.median()) if distances.numel() else 0.0
    median = median if median > 0 else 1.0
    return median * torch.as_tensor(factors, dtype=DTYPE)


def _bandwidths(
    x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | float | None
) -> torch.Tensor:
    if bandwidths is None:
        return median_bandwidths(x, y)
    scales = torch.as_tensor(bandwidths, dtype=DTYPE).reshape(-1)
    if scales.numel() == 0 or not torch.all(torch.isfinite(scales) & (scales > 0)):
        raise ValueError(f"bandwidths must be positive and finite, got {bandwidths!r}")
    return scales


def _kernel_sum(
    a: torch.Tensor, b: torch.Tensor, bandwidths: torch.Tensor, *, skip_diagonal: bool
) -> torch.Tensor:
    """sum_{i, j} k(a_i, b_j), leaving out i == j if asked, in row blocks of bounded size."""
    inverse_two_var = 1.0 / (2 * bandwidths**2)
    rows_per_block = max(1, _KERNEL_BLOCK_ENTRIES // b.shape[0])
    b_norms = (b**2).sum(1)
    total = torch.zeros((), dtype=DTYPE)
    for start in range(0, a.shape[0], rows_per_block):
        block = a[start : start + rows_per_block]
        # ||a||^2 + ||b||^2 - 2 a.b can round slightly below 0; clamp so the kernel stays <= 1.
        squared = ((block**2).sum(1)[:, None] + b_norms - 2 * block @ b.T).clamp_min_(0)
        kernel = torch.zeros_like(squared)
        for scale in inverse_two_var:
            kernel += torch.exp(-scale * squared)
        if skip_diagonal:
            rows = torch.arange(block.shape[0])
            kernel[rows, rows + start] = 0.0
        total += kernel.sum()
    return total


# ---------------------------------------------------------------- modes of a mixture
def mode_weights(x: ArrayLike, mixture: GaussianMixture) -> torch.Tensor:
    """(K,) fraction of samples assigned to each component.

    A sample goes to the component with the largest clean-data responsibility
    p(k | x_0 = x), i.e. the argmax of `mixture.responsibilities(x, 1.0, 0.0)`.
    """
    x = _as_samples(x, "x")
    if x.shape[1] != mixture.dim:
        raise ValueError(f"x has dimension {x.shape[1]}, the mixture has {mixture.dim}")
    assigned = mixture.responsibilities(x, 1.0, 0.0).argmax(dim=1)
    counts = torch.bincount(assigned, minlength=mixture.n_components)
    return counts.to(DTYPE) / x.shape[0]


def mode_coverage(x: ArrayLike, mixture: GaussianMixture, *, min_fraction: float = 0.2) -> float:
    """Fraction of components that received at least `min_fraction` of their expected share.

    Component k is covered when its assigned fraction is >= min_fraction * weight_k, i.e. it
    got at least min_fraction * weight_k * N of the N samples.
    """
    if not min_fraction >= 0:
        raise ValueError(f"min_fraction must be non-negative, got {min_fraction}")
    covered = mode_weights(x, mixture) >= min_fraction * mixture.weights
    return float(covered.to(DTYPE).mean())


def mode_weight_error(x: ArrayLike, mixture: GaussianMixture) -> float:
    """Total variation distance between `mode_weights(x, mixture)` and the mixture weights."""
    return float(0.5 * (mode_weights(x, mixture) - mixture.weights).abs().sum())


# ---------------------------------------------------------------- classes of a mixture
def _class_column(mixture: GaussianMixture, label: int) -> int:
    matches = torch.nonzero(mixture.classes == int(label)).flatten()
    if len(matches) == 0:
        raise ValueError(f"unknown label {label!r}; classes are {mixture.classes.tolist()}")
    return int(matches[0])


def _clean_class_posterior(x: ArrayLike, mixture: GaussianMixture) -> torch.Tensor:
    x = _as_samples(x, "x")
    if x.shape[1] != mixture.dim:
        raise ValueError(f"x has dimension {x.shape[1]}, the mixture has {mixture.dim}")
    return mixture.class_posterior(x, 1.0, 0.0)


def class_precision(x: ArrayLike, mixture: GaussianMixture, label: int) -> float:
    """Fraction of samples whose exact clean class posterior p(c | x_0 = x) has its argmax at
    `label`: how many samples a Bayes-optimal classifier would call class `label`."""
    column = _class_column(mixture, label)
    return float((_clean_class_posterior(x, mixture).argmax(1) == column).to(DTYPE).mean())


def mean_class_posterior(x: ArrayLike, mixture: GaussianMixture, label: int) -> float:
    """Mean over samples of the exact p(c = label | x_0 = x): a precision that also counts how
    confidently each sample belongs to the class."""
    column = _class_column(mixture, label)
    return float(_clean_class_posterior(x, mixture)[:, column].mean())


def within_class_spread(x: ArrayLike, mixture: GaussianMixture, label: int) -> float:
    """RMS distance to their centroid of the samples assigned to class `label` (posterior
    argmax): the diversity that guidance trades for precision."""
    column = _class_column(mixture, label)
    samples = _as_samples(x, "x")
    members = samples[_clean_class_posterior(samples, mixture).argmax(1) == column]
    if len(members) < 2:
        raise ValueError(f"fewer than 2 of {len(samples)} samples belong to class {label}")
    return float(torch.sqrt(((members - members.mean(0)) ** 2).sum(1).mean()))


__all__ = [
    "OrderFit",
    "class_precision",
    "empirical_order",
    "mean_class_posterior",
    "mean_l2_error",
    "median_bandwidths",
    "mmd",
    "mode_coverage",
    "mode_weight_error",
    "mode_weights",
    "sliced_wasserstein",
    "within_class_spread",
]
