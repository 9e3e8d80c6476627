"""The sentences notebook 06 writes from its measurements (Markdown, numbers filled in).

Each takes what `workbench.flows.study` computed and returns a paragraph; numbers go through
`readable`, paths, solvers and models appear by their labels, never their registry ids.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from workbench.claims import readable
from workbench.diffusion.study_findings import count_text
from workbench.flows.study import FLOW_PATHS, MAX_ROUNDS, FlowSize


def study_paragraph(size: FlowSize, seconds: float) -> str:
    paths = ", ".join(FLOW_PATHS.label(p) for p in size.paths)
    steps = ", ".join(map(str, size.steps))
    return (
        f"{count_text(size.n_samples, 'noise draw')} per setting, Euler at {steps} steps; the "
        f"exact velocity on the paths {paths}. Computed (or read from the sweep cache) in "
        f"{readable(seconds)} s."
    )


def collapse_paragraph(collapse: Mapping[str, float], l2_one_step: float) -> str:
    return (
        f"After one step every sample is within {readable(collapse['max_distance_to_mean'])} "
        f"of the mixture's mean (their spread: {readable(collapse['spread'])}; the ring's mean "
        f"is the origin, |mean| = {readable(collapse['mean_norm'])}). The mean L2 distance to "
        f"where the exact flow takes the same noise is {readable(l2_one_step)}: about the "
        "ring's radius, 2."
    )


def coupling_paragraph(exact: pd.DataFrame, independent: float) -> str:
    rectified = exact.loc["rectified"]
    others = [
        f"{FLOW_PATHS.label(p)}: {readable(exact.loc[p, 'straightness'])}"
        for p in exact.index
        if p != "rectified"
    ]
    other_text = f" (on the other paths, {'; '.join(others)})" if others else ""
    return (
        f"The exact 1-rectified coupling (noise, its ODE endpoint) costs E|x_1 - x_0|^2 = "
        f"{readable(rectified.transport_cost)}, against {readable(independent)} for the "
        f"independent coupling flow matching trains on: rectification lowered it "
        f"{readable(independent / rectified.transport_cost)}x. Its trajectories are not straight: "
        f"S = {readable(rectified.straightness)}{other_text}. S = 0 is what one Euler step needs."
    )


def diffusion_paragraph(table: pd.DataFrame) -> str:
    parts = [
        f"NFE {nfe}: {readable(row.flow_l2)} against {readable(row.diffusion_l2)} "
        f"({row.solver_label})"
        for nfe, row in table.iterrows()
    ]
    wins = [int(nfe) for nfe, row in table.iterrows() if row.flow_l2 < row.diffusion_l2]
    verdict = (
        f"Euler on the exact rectified flow is ahead at NFE {', '.join(map(str, wins))}"
        if wins
        else "Euler on the exact rectified flow is behind at every NFE measured"
    )
    return (
        "Mean L2 to each one's exact ODE endpoint, rectified flow against the best diffusion "
        f"solver at that NFE — {'; '.join(parts)}. {verdict}: Euler is a first-order method "
        "on a curved flow, the diffusion solvers are exponential integrators of order up to 3 "
        "on the diffusion ODE."
    )


def _row(trained: pd.DataFrame, density: str, rounds: int) -> pd.Series:
    return trained.loc[f"{density}.r{rounds}"]


def decomposition_paragraph(trained: pd.DataFrame) -> str:
    """The 1-NFE error of the trained flows (uniform times) split into its two parts."""
    parts = []
    for k in range(MAX_ROUNDS + 1):
        row = _row(trained, "uniform", k)
        parts.append(
            f"{k + 1}-RF: {readable(row.l2_nfe1)} (steps {readable(row.step_error_nfe1)}, "
            f"model {readable(row.model_error)})"
        )
    return (
        "At 1 NFE, mean L2 to the exact ODE endpoint against its two parts (the step error: one "
        "Euler step against the model's own exact ODE endpoint; the model error: that endpoint "
        "against the exact flow's; the total is at most their sum) — "
        f"{'; '.join(parts)}. Reflow removes the step error; what is left is the model's."
    )


def reflow_paragraph(trained: pd.DataFrame, metrics: Mapping[str, float]) -> str:
    first, second = _row(trained, "uniform", 0), _row(trained, "uniform", 1)
    straightness = ", ".join(
        readable(_row(trained, "uniform", k).straightness) for k in range(MAX_ROUNDS + 1)
    )
    costs = ", ".join(
        readable(_row(trained, "uniform", k).transport_cost) for k in range(MAX_ROUNDS + 1)
    )
    gain = metrics["reflow.gain_nfe1"]
    verdict = "at least 3x, as claimed" if gain >= 3 else "less than the 3x claimed"
    return (
        f"One reflow round takes the 1-NFE sliced Wasserstein distance from "
        f"{readable(first.sw_nfe1)} (1-RF) to {readable(second.sw_nfe1)} (2-RF): "
        f"{readable(gain)}x, {verdict}. Straightness by round (uniform times): {straightness}; "
        f"transport cost: {costs}."
    )


def density_paragraph(trained: pd.DataFrame, metrics: Mapping[str, float]) -> str:
    parts = [
        f"{k + 1}-RF {readable(_row(trained, 'u_shaped', k).sw_nfe1)} against "
        f"{readable(_row(trained, 'uniform', k).sw_nfe1)}"
        for k in range(MAX_ROUNDS + 1)
    ]
    u, uniform = _row(trained, "u_shaped", 1), _row(trained, "uniform", 1)
    lower = metrics["u_shaped.over_uniform_r1_nfe1"] < 1
    verdict = (
        "lower for the 2-rectified flow, as Lee et al. report"
        if lower
        else "not lower for the 2-rectified flow on this toy"
    )
    if lower:
        why = ""
    elif u.step_error_nfe1 < uniform.step_error_nfe1:
        why = (
            " The U-shaped times did lower the step error, but raised the model error more: "
            "they move training samples from mid t to the ends, and on this 2-D mixture the "
            "2-RF's one-step error is mostly model error, spread over every t."
        )
    else:
        why = (
            " Neither part is lower: the 2-RF is already nearly straight after one round "
            f"(straightness {readable(uniform.straightness)}), so its one-step error is mostly "
            "model error, spread over every t, and the U-shaped times take samples from mid t "
            "to the ends, where a straight flow's step error has little left to gain."
        )
    return (
        f"1-NFE sliced Wasserstein, U-shaped times against uniform at the same budget: "
        f"{'; '.join(parts)}: {verdict}. For the 2-RF, U-shaped against uniform: step error "
        f"{readable(u.step_error_nfe1)} against {readable(uniform.step_error_nfe1)}, model "
        f"error {readable(u.model_error)} against {readable(uniform.model_error)}.{why}"
    )


def meanflow_paragraph(trained: pd.DataFrame, metrics: Mapping[str, float]) -> str:
    meanflow, second = trained.loc["meanflow"], _row(trained, "uniform", 1)
    ratio = metrics["meanflow.over_2rf_nfe1"]
    verdict = (
        "better than" if ratio < 1 else ("within 2x of" if ratio < 2 else "more than 2x worse than")
    )
    two_steps = (
        " Its 2-NFE error is larger than its 1-NFE error: the learned average velocity over "
        "half intervals is less accurate here than over the whole one (measured; the method "
        "does not predict it)."
        if meanflow.sw_nfe2 > meanflow.sw_nfe1
        else ""
    )
    return (
        f"MeanFlow at 1 NFE: sliced Wasserstein {readable(meanflow.sw_nfe1)} (2 NFE: "
        f"{readable(meanflow.sw_nfe2)}), against {readable(second.sw_nfe1)} for the "
        f"2-rectified flow at 1 NFE: {readable(ratio)}x, {verdict} it. Its mean L2 to the exact "
        f"ODE endpoint is {readable(meanflow.l2_nfe1)} (2-RF: {readable(second.l2_nfe1)}): "
        "MeanFlow learns the exact flow's own jump from noise to data, the 2-RF a straightened "
        f"flow from its predecessor's coupling.{two_steps}"
    )
