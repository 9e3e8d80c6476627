"""Notebook 09's tables, claims and prose: what the study's numbers say, in one place.

Every paragraph is computed from the numbers it quotes, and INVERSE_CLAIMS are the papers'
claims with the recorded metric that tests each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.claims import Claim, readable
from workbench.inverse.study import GUIDES, base_noise, method_label

DPS = "Chung et al. 2022, arXiv:2209.14687"
TFG = "Ye et al. 2024, arXiv:2409.15761"
ENKG = "Zheng et al. 2024, arXiv:2409.20175"
FKC = "Skreta et al. 2025, arXiv:2503.02819"
RRR = "Du et al. 2023, arXiv:2302.11552"


# ------------------------------------------------------------------ tables
def at_base_noise(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each problem at the noise it is defined with."""
    keep = [base_noise(p) == n for p, n in zip(table.problem, table.noise, strict=True)]
    return table[np.asarray(keep, dtype=bool)]


def best_distances(table: pd.DataFrame) -> pd.DataFrame:
    """Per problem (at its own noise) and method: the best distance to the exact posterior
    over strengths at the largest NFE, as a multiple of the floor of exact sets (floor_max)."""
    rows = at_base_noise(table)
    rows = rows[rows.steps == rows.steps.max()]
    best = rows.groupby(["problem", "method"]).ratio.min().unstack()
    return best.rename(columns=method_label)


def term_trend(terms: pd.DataFrame) -> pd.DataFrame:
    """Per problem (own noise, strength 1) and approximation: the relative term error at the
    smallest and at the largest noise level measured."""
    rows = at_base_noise(terms)
    rows = rows[rows.strength == 1.0]
    out = []
    for (problem, method), group in rows.groupby(["problem", "method"]):
        group = group.sort_values("t")
        out.append({"problem": problem, "method": method,
                    "smallest noise": float(group.relative.iloc[0]),
                    "largest noise": float(group.relative.iloc[-1])})  # fmt: skip
    return pd.DataFrame(out).set_index(["problem", "method"])


def u_shaped(tfg: pd.DataFrame) -> dict[str, bool]:
    """Per problem: TFG's error per strength has its minimum strictly inside the range."""
    out = {}
    for problem, rows in tfg.groupby("problem"):
        values = rows.sort_values("strength").relative.to_numpy()
        low = int(np.argmin(values))
        out[problem] = 0 < low < len(values) - 1
    return out


def composition_view(table: pd.DataFrame) -> pd.DataFrame:
    columns = ["label", "steps", "knobs", "evaluations", "distance", "floor", "gap"]
    return table[columns].set_index("label")


# ------------------------------------------------------------------ metrics and claims
def claim_metrics(
    table: pd.DataFrame,
    terms: pd.DataFrame,
    tfg: pd.DataFrame,
    composition: pd.DataFrame,
) -> dict[str, object]:
    metrics: dict[str, object] = {}
    trend = term_trend(terms)
    for (problem, method), row in trend.iterrows():
        growth = row["smallest noise"] / row["largest noise"]
        metrics[f"term.{method}.{problem}.small_over_large_noise"] = float(growth)
    dps = trend.xs("dps", level="method")
    metrics["term.dps.problems_growing_as_noise_falls"] = int(
        (dps["smallest noise"] > dps["largest noise"]).sum()
    )
    shapes = u_shaped(tfg)
    metrics["tfg.u_shaped_problems"] = int(sum(shapes.values()))
    metrics["tfg.u_shaped_everywhere"] = all(shapes.values())
    best = best_distances(table)
    for problem, row in best.iterrows():
        for label, value in row.items():
            method = next(m for m in ("exact", *GUIDES) if method_label(m) == label)
            metrics[f"posterior.{method}.{problem}.best_over_floor"] = float(value)
    metrics["posterior.enkg.worst_best_over_floor"] = float(best[method_label("enkg")].max())
    metrics["posterior.exact.worst_best_over_floor"] = float(best[method_label("exact")].max())
    metrics |= _composition_metrics(composition)
    return metrics


def _composition_metrics(table: pd.DataFrame) -> dict[str, float]:
    floor = float(table.floor.iloc[0])
    by = table.groupby("sampler")
    naive_ode = float(by.gap.min()["naive_ode"])
    sde = table[table.sampler == "naive_sde"]
    smc = table[table.sampler == "fk_smc"]
    # FK-SMC against the naive SDE at the nearest budget it does not exceed
    smc_best = smc.loc[smc.gap.idxmin()]
    sde_at = sde[sde.evaluations <= smc_best.evaluations + 1]
    sde_gap = float(sde_at.gap.min()) if len(sde_at) else float(sde.gap.min())
    return {
        "composition.floor": floor,
        "composition.naive_ode_gap": naive_ode,
        "composition.naive_ode_gap_over_floor": naive_ode / floor,
        "composition.fk_smc_over_naive_sde": float(smc_best.gap) / sde_gap,
        "composition.mala_over_naive_ode": float(by.gap.min()["mala"]) / naive_ode,
        "composition.ula_over_naive_ode": float(by.gap.min()["ula"]) / naive_ode,
        "composition.exact_ode_gap": float(by.gap.min()["exact_ode"]),
    }


INVERSE_CLAIMS = (
    Claim(
        "DPS's guidance-term error grows as the noise falls (number of problems where the "
        "relative error at the smallest noise level exceeds that at the largest)",
        DPS, "term.dps.problems_growing_as_noise_falls", above=0,
    ),
    Claim(
        "TFG's guidance-term error is U-shaped in its strength (on every problem, the "
        "minimum strictly inside the strengths measured)",
        TFG, "tfg.u_shaped_everywhere", equals=True,
    ),
    Claim(
        "The ensemble Kalman method reaches the exact posterior within the floor of exact "
        "sample sets (its best distance over strengths, worst problem, in floors)",
        ENKG, "posterior.enkg.worst_best_over_floor", below=1,
    ),
    Claim(
        "Summing the two experts' scores does not sample their product: the naive ODE's "
        "distance to the exact product, above the floor, in floors",
        FKC, "composition.naive_ode_gap_over_floor", above=5,
    ),
    Claim(
        "Feynman-Kac resampling with the product weights corrects the summed-score SDE at "
        "equal score evaluations (gap ratio)",
        FKC, "composition.fk_smc_over_naive_sde", below=1,
    ),
    Claim(
        "Annealed MALA with the summed scores and exact energies recovers the product (its "
        "best gap over the naive ODE's)",
        RRR, "composition.mala_over_naive_ode", below=0.5,
    ),
)  # fmt: skip


# ------------------------------------------------------------------ prose
def term_paragraph(trend: pd.DataFrame) -> str:
    dps = trend.xs("dps", level="method")
    parts = "; ".join(
        f"{p}: {readable(r['smallest noise'])} at the smallest noise, "
        f"{readable(r['largest noise'])} at the largest"
        for p, r in dps.iterrows()
    )
    return (
        f"DPS's relative error (strength 1): {parts}. DPS replaces p(x_0 | x_t) by a point "
        "mass at the denoiser's mean; at small noise that posterior is nearly a point, so "
        "DPS is nearly exact there, and at large noise the posterior over x_0 is as broad as "
        "the prior and the point estimate misses the likelihood's average: the error grows "
        "with the noise, the opposite of the claim. The ensemble method linearizes the same "
        "way, through ensemble covariances instead of the Jacobian, and errs alike."
    )


def tfg_paragraph(tfg: pd.DataFrame) -> str:
    shapes = u_shaped(tfg)
    best = tfg.loc[tfg.groupby("problem").relative.idxmin()].set_index("problem").strength
    listed = "; ".join(
        f"{p}: lowest at strength {readable(best[p])}{'' if u else ' (at an end)'}"
        for p, u in shapes.items()
    )
    return (
        f"TFG's error against its strength: {listed}. At strength 0 TFG adds nothing and the "
        "error is the whole exact term (relative error 1); as the strength grows the mean "
        "and variance guidance each approach the exact term, so together they overshoot it."
    )


def composition_paragraph(metrics: dict) -> str:
    floors = readable(metrics["composition.naive_ode_gap_over_floor"])
    floor, naive = metrics["composition.floor"], metrics["composition.naive_ode_gap"]
    smc, mala = (
        metrics["composition.fk_smc_over_naive_sde"],
        metrics["composition.mala_over_naive_ode"],
    )
    sentences = [
        f"The floor of two exact sets is {readable(floor)}.",
        f"The naive ODE of the summed scores stays {readable(naive)} above it however many",
        f"steps it takes ({floors} floors): the sum of noised scores is not the score of the",
        "noised product, a bias of the model, not of the solver. Feynman-Kac resampling with",
        f"the product weights brings the SDE's gap to {readable(smc)}x at equal score",
        f"evaluations; annealed MALA with the exact energies reaches {readable(mala)}x the",
        "naive ODE's gap.",
    ]
    return " ".join(sentences)


def posterior_records(table: pd.DataFrame) -> pd.DataFrame:
    """Every run's distance, a row per "<problem>.n<noise>.<method>.s<strength>.k<steps>"."""
    flat = table[["sw", "floor_max"]].copy()
    flat.index = [
        f"{p}.n{n:g}.{m}.s{s:g}.k{k}"
        for p, n, m, s, k in zip(
            table.problem, table.noise, table.method, table.strength, table.steps, strict=True
        )
    ]
    return flat.dropna()
