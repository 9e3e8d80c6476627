"""Exact targets of a guidance study, and how samples split among the class's components.

The target of a method at scale w is the tilted density p(x | c)^w p(x)^(1-w) (autoguidance:
p_good^w p_bad^(1-w)); its samples are exact draws (rejection, `workbench.toy.tilted`) and its
density is normalized numerically. Draws and densities are cached through `workbench.memo` by
the problem, the target's kind and scale and the draw's size and seed.
"""

from __future__ import annotations

import math

import torch

from workbench.diffusion.guidance import GUIDANCE, GuidanceProblem
from workbench.diffusion.guidance_study import Diverged, GuidanceStudy
from workbench.diffusion.schedules import DTYPE
from workbench.memo import Memo
from workbench.metrics import mode_weights
from workbench.toy.tilted import TiltedTarget

PLOT_HALF_WIDTH = 3.5  # the window holds CFG's overshoot at w = 15
NORMALIZER_HALF_WIDTH = 7.0  # the tilted density's numerical normalizer integrates over this
TARGET_SEED_OFFSET = 100  # exact draws use seed + 100 + replica (independent of x_T)

TARGET_SAMPLES = Memo("exact tilted-target draws", maxsize=256)
DENSITIES = Memo("tilted-target densities", maxsize=128)


def target(problem: GuidanceProblem, method: str, scale: float) -> TiltedTarget:
    """The tilted target `method` aims at, at `scale`."""
    return problem.target(GUIDANCE[method].target, scale)


def target_samples(
    study: GuidanceStudy, method: str, scale: float, replica: int = 0
) -> torch.Tensor:
    """n_target exact draws of the method's tilted target (replica > 0: independent sets)."""
    kind, n = GUIDANCE[method].target, study.n_target
    seed = study.seed + TARGET_SEED_OFFSET + replica
    return TARGET_SAMPLES.get(
        (study.problem, kind, float(scale), n, seed),
        lambda: target(study.problem, method, scale).sample(n, seed=seed),
    )


def target_density(problem: GuidanceProblem, method: str, scale: float, n: int = 150):
    """(xs, ys, log p_w) over the plotting window, normalized over a wider one."""
    half, wide = PLOT_HALF_WIDTH, (-NORMALIZER_HALF_WIDTH, NORMALIZER_HALF_WIDTH) * 2

    def compute():
        return target(problem, method, scale).density_grid(
            (-half, half, -half, half), n, normalizer_bounds=wide, normalizer_n=300
        )

    return DENSITIES.get((problem, GUIDANCE[method].target, float(scale), n), compute)


# ---------------------------------------------------------------- modes of the class
def class_components(problem: GuidanceProblem) -> torch.Tensor:
    """Indices of the mixture's components that belong to the sampled class."""
    return torch.nonzero(problem.mixture.labels == problem.label).flatten()


def boundary_component(problem: GuidanceProblem) -> int:
    """Position, among the class's components, of the one nearest another class's."""
    mixture = problem.mixture
    others = mixture.means[mixture.labels != problem.label]
    ours = mixture.means[class_components(problem)]
    return int(torch.cdist(ours, others).min(1).values.argmin())


def class_mode_weights(problem: GuidanceProblem, x: torch.Tensor) -> torch.Tensor:
    """Fraction of the class's samples in each of the class's components (clean
    responsibility argmax), ordered as the class's components."""
    fractions = mode_weights(x, problem.mixture)[class_components(problem)]
    return fractions / fractions.sum()


def run_mode_weights(
    study: GuidanceStudy, method: str, scale: float, solver: str, steps: int
) -> torch.Tensor:
    """`class_mode_weights` of one run's samples; NaN if it diverged."""
    run = study.run(method, scale, solver, steps)
    if isinstance(run, Diverged):
        return torch.full((len(class_components(study.problem)),), math.nan, dtype=DTYPE)
    return class_mode_weights(study.problem, run.x)


def target_mode_weights(study: GuidanceStudy, method: str, scale: float) -> torch.Tensor:
    """`class_mode_weights` of an independent set of exact target draws."""
    return class_mode_weights(study.problem, target_samples(study, method, scale, replica=1))
