"""What a guidance study measures on samples: precision, diversity and distance to the target.

Class metrics: the fraction of samples whose exact clean posterior picks the class (precision),
the mean posterior p(c | x), and the within-class spread (diversity). Target distances: sliced
Wasserstein and MMD between the samples and exact draws of the tilted target
p(x | c)^w p(x)^(1-w) (autoguidance: p_good^w p_bad^(1-w)), which ask whether the guided ODE
samples what guidance is meant to sample, whatever the solver. A diverged run's metrics are
NaN, never computed on its samples. Cached through `workbench.memo` by the study's settings.
`identity_checks` measures the guided models' exact identities.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from workbench.diffusion.guidance import GUIDANCE, GuidanceProblem, cfg
from workbench.diffusion.guidance_study import METRIC_NAMES, Diverged, GuidanceStudy
from workbench.diffusion.guidance_targets import target_samples
from workbench.diffusion.schedules import DTYPE
from workbench.memo import Memo
from workbench.metrics import (
    class_precision,
    mean_class_posterior,
    mmd,
    sliced_wasserstein,
    within_class_spread,
)

CLASS_METRIC_NAMES = METRIC_NAMES[:3]
MMD_POINTS = 500  # MMD on this many of each sample set (O(N^2)); sliced W uses all

METRICS = Memo("guidance metrics", maxsize=4096)


def class_metrics_of(problem: GuidanceProblem, x: torch.Tensor | None) -> dict[str, float]:
    """Precision, mean posterior and spread of samples `x` (NaN for None or non-finite x)."""
    if x is None or not torch.isfinite(x).all():
        return dict.fromkeys(CLASS_METRIC_NAMES, math.nan)
    mixture, label = problem.mixture, problem.label
    precision = class_precision(x, mixture, label)
    # a collapsed solve (1 step from pure noise) can put fewer than 2 samples in the class:
    # no spread to measure, reported as NaN ("n/a" in the explorer)
    members = precision * len(x)
    return {
        "precision": precision,
        "mean posterior": mean_class_posterior(x, mixture, label),
        "spread": within_class_spread(x, mixture, label) if members >= 2 else math.nan,
    }


def sample_metrics(study: GuidanceStudy, x: torch.Tensor, method: str, scale: float):
    """Every metric of samples `x`, the distances against the method's exact target draws."""
    if not torch.isfinite(x).all():
        return dict.fromkeys(METRIC_NAMES, math.nan)
    exact = target_samples(study, method, scale)[: len(x)]  # equal sizes: a faster SW
    return {
        **class_metrics_of(study.problem, x),
        "sliced W": sliced_wasserstein(x, exact),
        "MMD": mmd(x[:MMD_POINTS], exact[:MMD_POINTS]),
    }


def metrics(study: GuidanceStudy, method: str, scale: float, solver: str, steps: int):
    """Precision, diversity and distance to the exact tilted target of one run."""

    def compute():
        result = study.run(method, scale, solver, steps)
        if isinstance(result, Diverged):
            return dict.fromkeys(METRIC_NAMES, math.nan)
        return sample_metrics(study, result.x, method, scale)

    solver = study.solver_of(method, solver)
    return METRICS.get((study.key, "run", method, float(scale), solver, int(steps)), compute)


def class_metrics(study: GuidanceStudy, method: str, scale: float, solver: str, steps: int):
    """Only precision, mean posterior and spread (cheap: no distances to the target)."""

    def compute():
        result = study.run(method, scale, solver, steps)
        return class_metrics_of(study.problem, None if isinstance(result, Diverged) else result.x)

    solver = study.solver_of(method, solver)
    return METRICS.get((study.key, "class", method, float(scale), solver, int(steps)), compute)


def target_metrics(study: GuidanceStudy, method: str, scale: float) -> dict[str, float]:
    """The same metrics for exact target draws (an independent set: the noise floor of the
    distances at these sample sizes)."""

    def compute():
        exact = target_samples(study, method, scale, replica=1)[: study.n_samples]
        return sample_metrics(study, exact, method, scale)

    kind = GUIDANCE[method].target
    return METRICS.get((study.key, "target", kind, float(scale)), compute)


def target_class_metrics(study: GuidanceStudy, method: str, scale: float) -> dict[str, float]:
    """The class metrics of the exact target draws."""
    kind = GUIDANCE[method].target
    return METRICS.get(
        (study.key, "target class", kind, float(scale)),
        lambda: class_metrics_of(study.problem, target_samples(study, method, scale, replica=1)),
    )


def identity_checks(problem: GuidanceProblem, n: int = 256, seed: int = 0) -> pd.Series:
    """Max relative difference of noise predictions over points and times for the exact
    identities of the guided models: each should be at round-off."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, problem.mixture.dim, generator=generator, dtype=DTYPE)
    times = torch.linspace(problem.schedule.t_min, problem.schedule.t_max, 9, dtype=DTYPE)
    pairs = {
        "CFG w=1 vs conditional": (GUIDANCE["cfg"].model(problem, 1.0), problem.model_c),
        "CFG w=0 vs unconditional": (GUIDANCE["cfg"].model(problem, 0.0), problem.model_u),
        "CFG data vs noise form, w=7.5": (
            cfg(problem.model_c, problem.model_u, 7.5, form="data"),
            cfg(problem.model_c, problem.model_u, 7.5, form="noise"),
        ),
        "classifier guidance vs CFG, w=7.5": (
            GUIDANCE["classifier"].model(problem, 7.5),
            GUIDANCE["cfg"].model(problem, 7.5),
        ),
        "autoguidance w=0 vs bad model": (
            GUIDANCE["autoguidance"].model(problem, 0.0),
            problem.model_bad,
        ),
    }
    differences = {}
    for name, (a, b) in pairs.items():
        a, b = a.as_prediction("noise"), b.as_prediction("noise")
        differences[name] = max(
            float(((a(x, t) - b(x, t)).abs() / (1 + b(x, t).abs())).max()) for t in times
        )
    return pd.Series(differences, name="max relative difference")
