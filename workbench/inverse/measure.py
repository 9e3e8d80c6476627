"""Measurements against the exact answers: the guidance-term error per noise level and the
samples' distance to the exact posterior (with the floor of two exact sample sets)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch

from workbench.inverse.methods import INVERSE_METHODS, _check_count, check_strength
from workbench.inverse.methods import sample_posterior as _sample_posterior
from workbench.inverse.problems import InverseProblem
from workbench.memo import memoized
from workbench.metrics import sliced_wasserstein
from workbench.registry import check_choice

DRAWS = ("posterior", "prior")  # where the term is evaluated: p_t(x_t | y) or p_t(x_t)


def guidance_term_error(
    method: str,
    problem: InverseProblem,
    strength: float,
    levels: Sequence[float],
    n: int = 2000,
    seed: int = 0,
    draws: str = "posterior",
) -> pd.DataFrame:
    """Per t: E|g_method - g_exact|^2 over n exact draws of p_t(x_t | y) (or of p_t).

    Columns: method, strength, t, alpha, sigma, error (mean squared), exact (E|g_exact|^2),
    relative (error / exact).
    """
    spec = INVERSE_METHODS[method]
    strength = check_strength(strength)
    n = _check_count("n", n, 2)
    check_choice("draws", draws, DRAWS)
    term = spec.guidance(problem, strength)
    rows = []
    for t in levels:
        alpha, sigma = problem.levels(t)
        sampler = (
            problem.noised_posterior_samples
            if draws == "posterior"
            else problem.noised_prior_samples
        )
        x = sampler(n, t, seed)
        a, s = torch.tensor(alpha, dtype=x.dtype), torch.tensor(sigma, dtype=x.dtype)
        exact = problem.exact_guidance(x, a, s)
        error = float(((term(x, a, s) - exact) ** 2).sum(1).mean())
        size = float((exact**2).sum(1).mean())
        rows.append(
            {
                "method": method,
                "strength": strength,
                "t": float(t),
                "alpha": alpha,
                "sigma": sigma,
                "error": error,
                "exact": size,
                "relative": error / size,
            }
        )
    return pd.DataFrame(rows)


REFERENCE_SIZE = 10_000  # exact draws the samples are compared with
FLOOR_PAIRS = 6  # independent exact sets that make the floor


@memoized("exact posterior references", maxsize=64)
def reference_samples(problem: InverseProblem, seed: int = 0) -> torch.Tensor:
    """The REFERENCE_SIZE exact posterior draws every distance is measured to."""
    return problem.posterior_samples(REFERENCE_SIZE, seed=10_000 + seed)


def sw_floor(problem: InverseProblem, n: int, seed: int = 0) -> dict:
    """SW2 of FLOOR_PAIRS independent exact sets of n draws against the reference set: the
    distance exact samples themselves reach (mode weights fluctuate binomially, which dominates
    on a bimodal posterior). {"floor": mean, "floor_max": largest}."""
    reference = reference_samples(problem, seed)
    values = [
        sliced_wasserstein(
            problem.posterior_samples(n, seed=20_000 + seed + i), reference, seed=seed
        )
        for i in range(FLOOR_PAIRS)
    ]
    return {"floor": sum(values) / len(values), "floor_max": max(values)}


def posterior_distance(samples: torch.Tensor, problem: InverseProblem, seed: int = 0) -> dict:
    """{"sw": SW2(samples, REFERENCE_SIZE exact draws), "floor", "floor_max": the same for
    exact sets of the samples' size (see `sw_floor`)}."""
    samples = torch.as_tensor(samples)
    if samples.ndim != 2 or samples.shape[1] != problem.prior.dim or len(samples) < 2:
        raise ValueError(
            f"samples must have shape (N, {problem.prior.dim}) with N >= 2, got "
            f"{tuple(samples.shape)}"
        )
    sw = sliced_wasserstein(samples, reference_samples(problem, seed), seed=seed)
    return {"sw": sw, **sw_floor(problem, len(samples), seed)}


def distance_table(
    method: str,
    problem: InverseProblem,
    strengths: Sequence[float],
    steps: Sequence[int],
    n: int = 2000,
    solver: str = "dpmpp_2m",
    seed: int = 0,
) -> pd.DataFrame:
    """Distance to the exact posterior per (strength, steps). Columns: method, strength, steps,
    nfe, sw, floor, floor_max, ratio (sw / floor), diverged, message."""
    rows = []
    floor = sw_floor(problem, n, seed)
    reference = reference_samples(problem, seed)
    for strength in strengths:
        for count in steps:
            run = _sample_posterior(
                method, problem, strength=strength, n=n, steps=count, solver=solver, seed=seed
            )
            diverged = run["diverged"]
            sw = math.nan if diverged else sliced_wasserstein(run["x"], reference, seed=seed)
            rows.append(
                {
                    "method": method,
                    "strength": float(strength),
                    "steps": int(count),
                    "nfe": run["nfe"],
                    "sw": sw,
                    **floor,
                    "ratio": sw / floor["floor"],
                    "diverged": run["diverged"],
                    "message": run["message"],
                }
            )
    return pd.DataFrame(rows)


def ensemble_convergence(
    problem: InverseProblem,
    t: float,
    sizes: Sequence[int],
    n: int = 4096,
    seed: int = 0,
    strength: float = 1.0,
) -> pd.DataFrame:
    """The ensemble term's error vs ensemble size at one level: against the exact term and
    against its own largest-ensemble value (its limit). Columns: ensemble, error, to_limit."""
    from workbench.inverse.methods import enkg_term

    alpha, sigma = problem.levels(t)
    x = problem.noised_posterior_samples(n, t, seed)
    a, s = torch.tensor(alpha, dtype=x.dtype), torch.tensor(sigma, dtype=x.dtype)
    exact = problem.exact_guidance(x, a, s)
    limit = enkg_term(problem, strength, n)(x, a, s)
    rows = []
    for size in sizes:
        g = enkg_term(problem, strength, size)(x, a, s)
        rows.append(
            {
                "ensemble": int(size),
                "error": float(((g - exact) ** 2).sum(1).mean()),
                "to_limit": float(((g - limit) ** 2).sum(1).mean()),
            }
        )
    return pd.DataFrame(rows)
