"""Notebook 08's tables, claims and prose: what the study's numbers say, in one place.

Every paragraph is computed from the numbers it quotes (nothing in prose is typed in), and
MODEL_CLAIMS are the papers' claims with the recorded metric that tests each.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from workbench.claims import Claim, readable
from workbench.diffusion.sampling import SOLVERS
from workbench.models.decomposition import saturation_nfe
from workbench.models.study import EXACT, budget_id, model_label, models_size

DDPM = "Ho et al. 2020, arXiv:2006.11239"
V3_PAPER = "Zheng et al. 2023, arXiv:2310.13268"
AUTOGUIDANCE = "Karras et al. 2024, arXiv:2406.02507"
DERIVED = "derived in the notebook"
LOSS_TAIL = 100  # the final loss is the mean over this many last steps (one batch is noisy)


# ------------------------------------------------------------------ tables
def training_table(networks: Mapping[str, object]) -> pd.DataFrame:
    """One row per network: its budget, parameters, training seconds and final loss."""
    rows = []
    for model_id, net in networks.items():
        steps, width = (int(v) for v in model_id.split("x"))
        rows.append({
            "model": model_label(model_id), "training steps": steps, "width": width,
            "parameters": sum(p.numel() for p in net.network.parameters()),
            "seconds": float(net.seconds),
            "final loss": float(np.mean(np.asarray(net.losses)[-LOSS_TAIL:])),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("model")


def split_checks(table: pd.DataFrame) -> dict[str, float]:
    """How exactly the split adds up: model + step + interaction against the total (rounding
    only, by construction), and the interaction against 2 E<a, b> computed on its own (the
    test that the split is the one stated), both relative to the total, worst row."""
    total = table.total.abs().clip(lower=1e-300)
    parts = table.model + table.step + table.interaction
    return {
        "split.max_sum_gap": float(((parts - table.total).abs() / total).max()),
        "split.max_cross_gap": float(((table.interaction - table.cross).abs() / total).max()),
    }


def default_rows(table: pd.DataFrame, smoke: bool) -> pd.DataFrame:
    return table[table.model_id == budget_id(models_size(smoke).default)]


def saturation_table(table: pd.DataFrame, smoke: bool) -> pd.DataFrame:
    """Per solver, the NFE from which each network's step error stays below its model error."""
    networks = [m for m in table.model_id.unique() if m != EXACT]
    frame = pd.DataFrame(
        {model_label(m): saturation_nfe(table[table.model_id == m]) for m in networks}
    )
    return frame.rename(index=SOLVERS.label)


def split_view(table: pd.DataFrame, smoke: bool, solver: str = "dpmpp_2m") -> pd.DataFrame:
    """The default network's split for one solver, a row per NFE (the notebook's table)."""
    rows = default_rows(table, smoke)
    rows = rows[rows.solver == solver]
    return rows.set_index("nfe")[["total", "model", "step", "interaction", "cross"]]


def best_at_few_steps(table: pd.DataFrame, smoke: bool) -> pd.DataFrame:
    """The best solver (lowest total error) per step count where the step error still matters
    (below the default network's largest saturation NFE), on the exact model and on the
    default network, with each one's error."""
    default = budget_id(models_size(smoke).default)
    rows = []
    for steps, group in table[table.model_id.isin([EXACT, default])].groupby("steps"):
        best = group.loc[group.groupby("model_id").total.idxmin()].set_index("model_id")
        rows.append({"steps": int(steps),
                     "best on the exact model": SOLVERS.label(best.loc[EXACT, "solver"]),
                     "its error": best.loc[EXACT, "total"],
                     "best on the network": SOLVERS.label(best.loc[default, "solver"]),
                     "the network's error": best.loc[default, "total"]})  # fmt: skip
    return pd.DataFrame(rows).set_index("steps")


def best_solver_changes(table: pd.DataFrame, smoke: bool) -> list[int]:
    """Step counts, at or below the default network's saturation NFE of the exact model's best
    solver, where the best solver on the network is another one."""
    best = best_at_few_steps(table, smoke)
    saturation = saturation_nfe(default_rows(table, smoke))
    changed = []
    for steps, row in best.iterrows():
        solver = next(s for s in SOLVERS if SOLVERS.label(s) == row["best on the exact model"])
        limit = saturation.get(solver, np.nan)
        if (np.isnan(limit) or steps <= limit) and row["best on the network"] != row[
            "best on the exact model"
        ]:
            changed.append(int(steps))
    return changed


# ------------------------------------------------------------------ metrics and claims
def _number_or(value: float, text: str) -> float | str:
    """A finite number as itself, NaN as `text` (metrics are never NaN)."""
    return text if np.isnan(value) else float(value)


def claim_metrics(table: pd.DataFrame, scores: pd.DataFrame, smoke: bool) -> dict[str, object]:
    """The recorded numbers the claims read (and a few the notebook quotes)."""
    default = default_rows(table, smoke)
    metrics: dict[str, object] = dict(split_checks(table))
    for solver, nfe in saturation_nfe(default).items():
        metrics[f"saturation.{solver}"] = _number_or(nfe, "not reached")
    metrics["default.model_error"] = float(default.model.iloc[0])
    changed = best_solver_changes(table, smoke)
    metrics["best_solver_changes"] = bool(changed)
    metrics["best_solver_changes_at"] = ", ".join(map(str, changed)) or "none"
    rows = scores[scores.model_id == budget_id(models_size(smoke).default)]
    metrics["score.relative_at_smallest_noise"] = float(rows.relative.iloc[0])
    metrics["score.relative_at_largest_noise"] = float(rows.relative.iloc[-1])
    metrics["score.worst_over_best_level"] = float(rows.relative.max() / rows.relative.min())
    return metrics


MODEL_CLAIMS = (
    Claim(
        "The sample error of a trained model splits into model error, step error and their "
        "interaction, which add up to the total (interaction = 2E⟨a, b⟩ computed on its own)",
        DERIVED, "split.max_cross_gap", below=1e-6,
    ),
    Claim(
        "A trained network's score is worst at small noise, where the exact score is sharpest: "
        "its relative error at the smallest noise level exceeds that at the largest",
        DERIVED, "score.relative_at_smallest_noise", above="score.relative_at_largest_noise",
    ),
    Claim(
        "With the default trained model, more steps of DPM-Solver++(2M) stop helping early: its "
        "step error is below the model error from this NFE on (reported per solver above)",
        DERIVED, "saturation.dpmpp_2m", below=20,
    ),
    Claim(
        "Which solver is best at few steps changes when the model is imperfect",
        DERIVED, "best_solver_changes", equals=True,
    ),
    Claim(
        "DPM-Solver-v3 on statistics computed from the (trained) model beats DPM-Solver++ at "
        "5 NFE: step error ratio v3 / DPM-Solver++ on the default network",
        V3_PAPER, "v3.network_over_constant.k5", below=1,
    ),
    Claim(
        "The statistics must be the model's own: on the network, v3 with the exact model's "
        "statistics is worse than with the network's (ratio at 10 NFE)",
        V3_PAPER, "v3.exact_over_network.k10", above=1,
    ),
    Claim(
        "Autoguidance with a weaker network lands closer to the exact tilted target than CFG "
        "at the same class precision: the smallest ratio of autoguidance's matched distance "
        "to CFG's over the precisions both reach",
        AUTOGUIDANCE, "guidance.min_ratio", below=1,
    ),
    Claim(
        "... at every precision both reach (the fraction of that range where it is closer; "
        "past the crossover precision it is farther, see the section)",
        AUTOGUIDANCE, "guidance.closer_fraction", equals=1.0,
    ),
)  # fmt: skip


# ------------------------------------------------------------------ prose
def training_paragraph(training: pd.DataFrame) -> str:
    fastest, slowest = training.seconds.min(), training.seconds.max()
    low, high = (readable(int(n)) for n in (training.parameters.min(), training.parameters.max()))
    parameters = f"{low} parameters each" if low == high else f"{low} to {high} parameters"
    return (
        f"{len(training)} networks, {parameters}, trained in "
        f"{readable(fastest)} to {readable(slowest)} s each on this machine (read from the "
        "cache on later runs). The loss falls fast and then flattens at the irreducible part "
        "of the denoising loss, E|ε − E[ε | x_t]|², which no network can remove: the loss "
        "alone does not say how good the model is, the exact score below does."
    )


def score_paragraph(scores: pd.DataFrame, smoke: bool) -> str:
    rows = scores[scores.model_id == budget_id(models_size(smoke).default)]
    worst = rows.loc[rows.relative.idxmax()]
    best = rows.loc[rows.relative.idxmin()]
    return (
        f"For the {model_label(budget_id(models_size(smoke).default))}, the relative score "
        f"error is {readable(worst.relative)} at σ/α = {readable(worst.ve_sigma)} and "
        f"{readable(best.relative)} at σ/α = {readable(best.ve_sigma)}. At small noise the "
        "exact score of the ring is sharp (each mode's std is small) and the denoising loss "
        "weighs those levels little, so that is where the network is wrong; near the prior "
        "the noised density is almost Gaussian and easy."
    )


def split_paragraph(table: pd.DataFrame, smoke: bool, checks: Mapping[str, float]) -> str:
    default = default_rows(table, smoke)
    saturation = saturation_nfe(default)
    listed = "; ".join(f"{SOLVERS.label(s)}: {readable(n)}" for s, n in saturation.items())
    return (
        f"Across {len(table)} solves the parts add up to the total within "
        f"{readable(checks['split.max_sum_gap'])} (relative), and the interaction agrees with "
        f"2E⟨a, b⟩ computed on its own within {readable(checks['split.max_cross_gap'])}. The "
        f"default network's model error is {readable(float(default.model.iloc[0]))}; the NFE "
        f"from which each solver's step error stays below it: {listed}. Past that NFE a "
        "better solver or more steps cannot help much: the model is the limit."
    )


def best_paragraph(best: pd.DataFrame, changed: list[int]) -> str:
    if not changed:
        return "At every step count measured, the best solver is the same on both models."
    at = ", ".join(map(str, changed))
    return (
        f"At {at} steps the best solver on the network is not the exact model's best. Solvers "
        "are designed and ranked on step error, but on a network the step error partly "
        "cancels or adds to the model error (the interaction), and a smoother network is "
        "easier to integrate than the sharp exact score: the ranking shifts."
    )


def split_records(table: pd.DataFrame) -> pd.DataFrame:
    """The split of the exact model and every network, a row per "<model>.<solver>.k<steps>"
    (for record_table): the total, model and step errors."""
    flat = table[["total", "model", "step"]].copy()
    flat.index = [
        f"{m}.{s}.k{k}" for m, s, k in zip(table.model_id, table.solver, table.steps, strict=True)
    ]
    return flat


def plug_in_paragraph(model, runs: Mapping[str, object]) -> str:
    """What the plug-in cell ran: the loaded model, its schedule and each solver's result."""
    solved = "; ".join(
        f"{SOLVERS.label(s)}: {r.nfe} calls, samples {tuple(r.x.shape)}, finite: "
        f"{bool(r.x.isfinite().all())}"
        for s, r in runs.items()
    )
    return (
        f"Loaded **{model.name}** ({model.prediction} prediction) on the schedule "
        f"*{model.schedule.name}*. {solved}. The weights are random, so the images are noise; "
        "with a trained UNet the same two lines sample it, and every measurement of this "
        "notebook (the split, the score error) runs on it wherever an exact reference exists."
    )


# ------------------------------------------------------------------ DPM-Solver-v3's statistics
V3_COMPARED_AT = (5, 10)  # the NFE the paper's claim is about (5-10)


def v3_view(sources: pd.DataFrame) -> pd.DataFrame:
    """The step error E|x_k - x_theta|^2 of DPM-Solver-v3 on the default network per step
    count (rows) and statistics (columns: the network's own, the exact model's, constant)."""
    table = sources.pivot(index="steps", columns="statistics", values="step")
    table = table[["network", "exact", "constant"]]
    return table.rename(columns=STATISTICS_LABELS)


STATISTICS_LABELS = {
    "network": "the network's own statistics",
    "exact": "the exact model's",
    "constant": "constant l = 1, s = b = 0 (DPM-Solver++)",
}


def v3_metrics(sources: pd.DataFrame, gap: Mapping[str, float]) -> dict[str, float]:
    step = sources.pivot(index="steps", columns="statistics", values="step")
    metrics = {}
    for k in V3_COMPARED_AT:
        metrics[f"v3.network_over_constant.k{k}"] = float(
            step.loc[k, "network"] / step.loc[k, "constant"]
        )
        metrics[f"v3.exact_over_network.k{k}"] = float(
            step.loc[k, "exact"] / step.loc[k, "network"]
        )
    metrics |= {
        f"v3.gap.{name}": float(value) for name, value in gap.items() if name.endswith("_rms")
    }
    return metrics


def v3_paragraph(sources: pd.DataFrame, gap: Mapping[str, float], pair) -> str:
    step = sources.pivot(index="steps", columns="statistics", values="step")
    k = V3_COMPARED_AT[0]
    return (
        f"Computed from {pair.n_samples:,} exact clean draws in {readable(pair.network_seconds)} s "
        f"(network) and {readable(pair.exact_seconds)} s (exact model). The network's statistics "
        f"differ from the exact model's by {readable(gap['l_rms'])} (l), {readable(gap['s_rms'])} "
        f"(s) and {readable(gap['b_rms'])} (b) in RMS: at high noise the network's f is "
        "dominated by its own noise-prediction error, which the statistics fit. At "
        f"{k} steps v3 with the network's own statistics has step error "
        f"{readable(step.loc[k, 'network'])}, against {readable(step.loc[k, 'constant'])} with "
        f"DPM-Solver++'s constant ones and {readable(step.loc[k, 'exact'])} with the exact "
        "model's. The exact statistics, which a user never has, are the wrong ones for the "
        "network: the solver must be fitted to the model it solves, as the paper does."
    )


# ------------------------------------------------------------------ autoguidance vs CFG
def guidance_view(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and scale: precision, the matched scale w* and the distances (the
    notebook's table; NaN where the precision is beyond every tilted target's)."""
    columns = ["precision", "matched_scale", "sw_matched", "sw_conditional", "sw_floor"]
    return table.set_index(["method", "scale"])[columns]


def guidance_metrics(comparison: Mapping, bad_table: pd.DataFrame) -> dict[str, object]:
    lo, hi = comparison["overlap"] or (np.nan, np.nan)
    metrics = {
        "guidance.mean_ratio": float(comparison["mean_ratio"]),
        "guidance.min_ratio": float(comparison["min_ratio"]),
        "guidance.max_ratio": float(comparison["max_ratio"]),
        "guidance.closer_fraction": float(comparison["closer_fraction"]),
        # NaN: autoguidance is closer everywhere in the shared range (recorded as text)
        "guidance.crossover": _number_or(comparison["crossover"], "none"),
        "guidance.overlap_low": float(lo),
        "guidance.overlap_high": float(hi),
        "guidance.autoguidance_peak": float(comparison["peak_precision"]["autoguidance"]),
    }
    best = bad_table.groupby(level="bad").mean_ratio.mean()
    metrics["guidance.best_bad_version"] = str(best.idxmin())
    return metrics


def guidance_paragraph(comparison: Mapping, table: pd.DataFrame, good: str, bad: str) -> str:
    lo, hi = comparison["overlap"]
    peak = comparison["peak_precision"]
    cfg_one = table[(table.method == "cfg") & (table.scale == 1.0)].iloc[0]
    crossover = comparison["crossover"]
    where = (
        "everywhere in that range"
        if np.isnan(crossover)
        else f"below precision {readable(crossover)} and farther above it"
    )
    return (
        f"Guided: the {model_label(good)}; bad version: the {model_label(bad)}. Unguided, the "
        f"network's precision is {readable(cfg_one.precision)}, below the exact conditional's, "
        f"so its matched scale is w* = {readable(cfg_one.matched_scale)}: a trained network "
        f"blurs the classes. Both methods cover precisions {readable(lo)} to {readable(hi)}; "
        f"there autoguidance's distance to the matched tilted target is "
        f"{readable(comparison['mean_ratio'])}x CFG's on average (from "
        f"{readable(comparison['min_ratio'])}x to {readable(comparison['max_ratio'])}x): it is "
        f"closer {where}. Autoguidance barely moves precision (at most "
        f"{readable(peak['autoguidance'])}, against CFG's {readable(peak['cfg'])}): it pulls "
        "the good network toward its own modes, correcting its errors, and at large scales "
        "it amplifies the difference between the two networks' errors instead. CFG tilts "
        "mass between the classes directly, quickly past any exact target's precision."
    )
