"""DPM-Solver-v3's empirical model statistics (EMS) of a trained network against the exact
model's, and what each does to the solver on the network.

DPM-Solver-v3 (Zheng, Lu, Chen & Zhu 2023, "DPM-Solver-v3: Improved Diffusion ODE Solver with
Empirical Model Statistics", NeurIPS, arXiv:2310.13268) fits its parameterization to the model
it solves: per log-SNR lambda and dimension, l = E[diag(d(sigma eps)/dx)] and the least-squares
(s, b) of df/dlambda ~ s f + b along the ODE (see `workbench.diffusion.dpm_solver_v3`). The
paper estimates them by Monte Carlo on the pretrained network with Jacobian-vector products,
on training data forward-noised to each lambda. Here the network is a denoiser trained on an
exact Gaussian mixture (`workbench.models.denoisers`), so the same estimator run on the exact
model gives the statistics the network should have had, and:

- `statistics_pair` computes both with `compute_ems` on the same clean samples and the same
  noise (common random numbers): their difference is the network's, not Monte Carlo noise;
- `statistics_table` / `statistics_gap` compare them per lambda and over the grid;
- `v3_error_table` runs DPM-Solver-v3 on the network with each set of statistics (its own, the
  exact model's, which a real user never has, and the constant l = 1, s = b = 0 of
  DPM-Solver++ as the baseline) and splits each error with `decomposition.split_error`.

The data are never left to default to the model's own samples (a high-accuracy ODE solve: too
slow on a network); they are clean draws of the mixture, the paper's "training data".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import pandas as pd
import torch

from workbench.diffusion.dpm_solver_v3 import (
    DEFAULT_STAT_LAMBDAS,
    EMS,
    compute_ems,
    default_stat_lambdas,
)
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.schedules import DTYPE
from workbench.memo import memoized
from workbench.models.decomposition import _check_pair, split_error

STATISTIC_NAMES = ("l", "s", "b")
# the three rows of `v3_error_table`; "constant" is DPM-Solver++'s parameterization
STATISTICS_SOURCES = ("network", "exact", "constant")
PER_DIMENSION_MAX = 4  # statistics_table shows each dimension up to this many (the toys are 2-D)


@dataclass(frozen=True)
class StatisticsPair:
    """The EMS of a trained network and of the exact model, on one lambda grid, from the same
    samples and noise; `n_samples` clean samples were used."""

    network: EMS
    exact: EMS
    n_samples: int

    @property
    def network_seconds(self) -> float:
        return self.network.seconds

    @property
    def exact_seconds(self) -> float:
        return self.exact.seconds

    @property
    def dim(self) -> int:
        return int(self.network.l.shape[1])


# ------------------------------------------------------------------ input checks
def _check_data(data) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise ValueError(
            f"data must be a tensor of clean samples (N, D), got {type(data).__name__}"
        )
    if data.ndim != 2 or data.shape[0] < 2 or data.shape[1] < 1:
        raise ValueError(
            f"data must be clean samples of shape (N >= 2, D), got {tuple(data.shape)}"
        )
    if not bool(torch.isfinite(data).all()):
        raise ValueError("data must be finite: it holds NaN or infinity")
    return data.detach().to("cpu", DTYPE)


def _check_accepts(model: DiffusionModel, role: str, data: torch.Tensor) -> None:
    """One call at the largest noise: the model takes D-dimensional x and answers in kind."""
    x = data[:2]
    try:
        out = model(x, model.schedule.t_max)
    except (RuntimeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"the {role} model does not take {x.shape[1]}-dimensional data: {reason}"
        ) from None
    if tuple(out.shape) != tuple(x.shape):
        raise ValueError(
            f"the {role} model answers {tuple(out.shape)} for data of shape {tuple(x.shape)}"
        )


def statistics_lambdas(schedule, n: int = DEFAULT_STAT_LAMBDAS) -> torch.Tensor:
    """The solver's default statistics grid: n uniform log-SNRs over the schedule's range."""
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 2):
        raise ValueError(f"the statistics grid needs an integer n >= 2 points, got {n!r}")
    return default_stat_lambdas(schedule, n)


def _check_lambdas(lambdas, model: DiffusionModel) -> torch.Tensor:
    if lambdas is None:
        return statistics_lambdas(model.schedule)
    lambdas = torch.as_tensor(lambdas).to(DTYPE).reshape(-1)
    finite = bool(torch.isfinite(lambdas).all())
    if len(lambdas) < 2 or not finite or not bool((lambdas[1:] > lambdas[:-1]).all()):
        raise ValueError("lambdas must be >= 2 finite, strictly increasing log-SNRs")
    return lambdas


# ------------------------------------------------------------------ the statistics
@memoized("EMS of a network and of the exact model", maxsize=16)
def statistics_pair(
    trained: DiffusionModel,
    exact: DiffusionModel,
    data: torch.Tensor,
    *,
    lambdas: torch.Tensor | None = None,
    seed: int = 0,
) -> StatisticsPair:
    """`compute_ems` of `trained` and of `exact` from the clean samples `data` (N, D) on
    `lambdas` (default: `statistics_lambdas`, the solver's 200-point grid), both with noise
    seed `seed`. Memoized by the content of all arguments (a model without content is
    computed every time)."""
    _check_pair(trained, exact)
    data = _check_data(data)
    for role, model in (("trained", trained), ("exact", exact)):
        _check_accepts(model, role, data)
    lambdas = _check_lambdas(lambdas, trained)
    network = compute_ems(trained, data, lambdas=lambdas, seed=seed)
    reference = compute_ems(exact, data, lambdas=lambdas, seed=seed)
    return StatisticsPair(network, reference, int(data.shape[0]))


def _check_statistics_pair(pair) -> StatisticsPair:
    if not isinstance(pair, StatisticsPair):
        raise ValueError(f"pair must be a StatisticsPair, got {type(pair).__name__}")
    return pair


def statistics_table(pair: StatisticsPair) -> pd.DataFrame:
    """One row per lambda of the statistics grid: `lambda`, then for each statistic X in l, s,
    b the mean over dimensions X_network, X_exact, X_diff (network - exact), and, when D <=
    PER_DIMENSION_MAX, the same per dimension d as X{d}_network, X{d}_exact, X{d}_diff."""
    pair = _check_statistics_pair(pair)
    columns = {"lambda": pair.network.lambdas.numpy()}
    for name in STATISTIC_NAMES:
        ours, theirs = getattr(pair.network, name), getattr(pair.exact, name)
        columns |= _comparison_columns(name, ours.mean(1), theirs.mean(1))
        if pair.dim <= PER_DIMENSION_MAX:
            for d in range(pair.dim):
                columns |= _comparison_columns(f"{name}{d}", ours[:, d], theirs[:, d])
    return pd.DataFrame(columns)


def _comparison_columns(prefix: str, ours: torch.Tensor, theirs: torch.Tensor) -> dict:
    return {
        f"{prefix}_network": ours.numpy(),
        f"{prefix}_exact": theirs.numpy(),
        f"{prefix}_diff": (ours - theirs).numpy(),
    }


def statistics_gap(pair: StatisticsPair) -> dict[str, float]:
    """Over the whole grid and every dimension, for X in l, s, b: X, the relative L2 difference
    |X_network - X_exact| / |X_exact| (inf when the exact statistic is identically 0 and the
    network's is not), and X_rms, the root-mean-square difference."""
    pair = _check_statistics_pair(pair)
    gap = {}
    for name in STATISTIC_NAMES:
        ours, theirs = getattr(pair.network, name), getattr(pair.exact, name)
        difference, scale = (
            float(torch.linalg.vector_norm(ours - theirs)),
            float(torch.linalg.vector_norm(theirs)),
        )
        gap[name] = difference / scale if scale > 0 else (math.inf if difference > 0 else 0.0)
        gap[f"{name}_rms"] = difference / math.sqrt(ours.numel())
    return gap


# ------------------------------------------------------------------ the solver with each
def _sources(pair: StatisticsPair) -> dict[str, EMS]:
    network = pair.network
    constant = EMS.constant(network.lambdas, pair.dim, l=1.0, s=0.0, b=0.0)
    return {"network": network, "exact": pair.exact, "constant": constant}


def v3_error_table(
    trained: DiffusionModel,
    exact: DiffusionModel,
    x_T: torch.Tensor,
    steps: Sequence[int],
    pair: StatisticsPair,
    *,
    sources: Sequence[str] = STATISTICS_SOURCES,
) -> pd.DataFrame:
    """DPM-Solver-v3 on `trained` from x_T with the statistics of each of `sources` (network,
    exact, constant) at each step count: a row per (steps, statistics), the columns of
    `decomposition.ErrorSplit` (nfe; total, model, step, interaction, cross: E|.|^2 against the
    exact model's reference and the network's fine solve; step_l2: E|x_k - fine_solve|) after a
    `statistics` column."""
    _check_pair(trained, exact)
    pair = _check_statistics_pair(pair)
    if isinstance(steps, int | str) or not len(steps):
        raise ValueError("steps must be a non-empty sequence of step counts")
    if isinstance(sources, str) or not len(sources) or set(sources) - set(STATISTICS_SOURCES):
        raise ValueError(f"sources must be a non-empty subset of {list(STATISTICS_SOURCES)}")
    if not isinstance(x_T, torch.Tensor) or x_T.ndim != 2 or x_T.shape[1] != pair.dim:
        shape = tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__
        raise ValueError(f"x_T must be (N, {pair.dim}) like the statistics, got {shape}")
    statistics = _sources(pair)
    rows = []
    for k in steps:
        for source in sources:
            options = {"solver_options": {"ems": statistics[source]}}
            split = split_error(trained, exact, x_T, "dpm_solver_v3", k, **options)
            rows.append({"statistics": source, **asdict(split)})
    return pd.DataFrame(rows)
