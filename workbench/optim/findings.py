"""The sentences notebook 05 writes from its measurements (Markdown, numbers filled in).

Each takes what the study computed and returns a paragraph; where a sentence depends on a
measured value (a claim holds or not, a target was reached or not) the choice is made here, so
the prose reads right at SMOKE's 40 steps as at the full size. Numbers go through
``workbench.claims.readable``; optimizers are named by their labels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.claims import readable
from workbench.optim.problems import PROBLEMS
from workbench.optim.registry import OPTIMIZERS
from workbench.optim.theory import polyak_rate


def power_of_ten(value: float) -> str:
    """1e3 -> "10^3" (for $\\kappa = ...$ in Markdown)."""
    return f"10^{np.log10(value):.0f}"


def _reached(steps) -> bool:
    return steps is not None and not (isinstance(steps, float) and math.isnan(steps))


def steps_text(steps: float | int | None, budget: int) -> str:
    """Steps to target as the object of "needs": "41 steps", or "more than 200 steps" when
    the budget ran out first."""
    if not _reached(steps):
        return f"more than {readable(int(budget))} steps"
    return f"{readable(int(steps))} steps"


def study_paragraph(size) -> str:
    """What the notebook runs at this size (a ``StudySize``): the optimizers and the grid."""
    low, high = size.lr_log2
    return (
        f"{len(OPTIMIZERS)} optimizers: {', '.join(OPTIMIZERS.labels().values())}. Each tries "
        f"the learning rates $2^{{{low}}}, \\dots, 2^{{{high}}}$ for {size.quad_steps} steps on "
        f"the quadratics and {size.mlp_steps} on the MLP."
    )


def newton_paragraph(newton: dict[str, float], factor_error: float, kronecker: float) -> str:
    """Newton's one step (``newton``: problem id -> loss after it) and Shampoo's factors."""
    steps = " and ".join(
        f"{readable(loss)} on the {PROBLEMS.label(name)}" for name, loss in newton.items()
    )
    return (
        f"At $\\kappa = 10^4$ one step with the exact inverse Hessian leaves a relative loss of "
        f"{steps}: rounding error. Shampoo's factors from isotropic gradients differ from "
        f"$A^{{-1/2}}, B^{{-1/2}}$ (scaled) by at most {readable(factor_error)} relatively, and "
        f"one step with its exponent $-1/2$ factors leaves a loss of {readable(kronecker)}."
    )


def invariance_paragraph(cost: pd.Series, invariant: list[str], kappa: float) -> str:
    """Which optimizers end at the same loss in both bases, from ``cost`` (rotated /
    axis-aligned final loss per optimizer) at condition number ``kappa``."""
    same = [OPTIMIZERS.label(name) for name in invariant]
    worst = cost.idxmax()
    listed = ", ".join(same) if same else "no optimizer"
    return (
        f"At $\\kappa = {power_of_ten(kappa)}$ the same final loss in both bases (to 0.1%): "
        f"{listed}. Rotation costs {OPTIMIZERS.label(worst)} the most, a factor "
        f"{readable(float(cost[worst]))} in final loss."
    )


def rotation_paragraph(rotation: pd.DataFrame, kappa: float) -> str:
    """What the rotation table says at condition number ``kappa`` (a column of the table)."""
    axis = rotation[(kappa, "axis-aligned")]
    rotated = rotation[(kappa, "rotated")]
    cost = rotated / axis
    gap_soap, gap_shampoo = rotated["adam"] / rotated[["soap_adam_betas", "shampoo"]]
    muon_gap = abs(cost["muon"] - 1)
    muon = (
        "and its two columns agree to 0.1% here"
        if muon_gap < 1e-3
        else "but its last steps oscillate and amplify rounding, so its two columns differ by "
        f"{muon_gap:.0%}"
    )
    return (
        f"At $\\kappa = {power_of_ten(kappa)}$ Adam ends at {readable(axis['adam'])} "
        f"axis-aligned and {readable(rotated['adam'])} rotated, a factor "
        f"{readable(cost['adam'])}. Axis-aligned, SOAP with Adam's betas ends at "
        f"{readable(axis['soap_adam_betas'])}: it has to estimate the basis Adam is handed. "
        f"Rotated, Adam's final loss is {readable(gap_soap)} times that of SOAP with Adam's "
        f"betas and {readable(gap_shampoo)} times Shampoo's. SOAP at its paper's betas "
        f"(0.95, 0.95) ends at {readable(rotated['soap'])} in either basis, near Muon "
        f"({readable(rotated['muon'])}) and PSGD-Kron ({readable(rotated['psgd_kron'])}); "
        f"Muon commutes with rotations too, {muon}."
    )


def race_heading(race) -> str:
    """A race's title over its table (a ``RaceResult``): problem and target."""
    return f"**{race.label}** (target: relative loss {readable(race.target)})"


def finishing_paragraph(table: pd.DataFrame, budget: int) -> str:
    """Who reached a race's target, fastest first, and who did not within ``budget`` steps."""
    steps = pd.to_numeric(table["steps to target"], errors="coerce").dropna()
    missed = [OPTIMIZERS.label(name) for name in table.index if name not in steps.index]
    within = f"within {readable(int(budget))} steps"
    if steps.empty:
        return f"No optimizer reaches the target {within}."
    order = ", ".join(
        f"{OPTIMIZERS.label(name)} ({readable(int(n))})"
        for name, n in steps.sort_values(kind="stable").items()
    )
    missing = f" Not reached {within}: {', '.join(missed)}." if missed else ""
    return f"Steps to the target, fastest first: {order}.{missing}"


def momentum_paragraph(
    quadratic: pd.DataFrame, budget: int, race_kappa: float, rotation: pd.DataFrame, kappa: float
) -> str:
    """SGD with momentum against Polyak's rate on the race's quadratic (its race table,
    ``budget`` steps), and SGD against Shampoo in the rotation table at ``kappa``."""
    rate = polyak_rate(race_kappa)
    rotated = rotation[(kappa, "rotated")]
    sgd = steps_text(quadratic.loc["sgd", "steps to target"], budget)
    adam = steps_text(quadratic.loc["adam", "steps to target"], budget)
    return (
        f"On the quadratic, SGD with momentum 0.9 needs {sgd} and Adam {adam}. Momentum 0.9 "
        f"is close to Polyak's optimal heavy-ball momentum {rate**2:.3f} at $\\kappa = "
        f"{power_of_ten(race_kappa)}$, whose rate $(\\sqrt\\kappa-1)/(\\sqrt\\kappa+1) = "
        f"{rate:.3f}$ per step depends on the square root of the condition number, which "
        f"Adam does not have in a rotated basis. At $\\kappa = {power_of_ten(kappa)}$ (the "
        f"table above) SGD's final loss is {readable(rotated['sgd'])} against Shampoo's "
        f"{readable(rotated['shampoo'])}."
    )


def _fewer_steps_verdict(reached: pd.Series, budget: int) -> str:
    """Whether SOAP with Adam's betas and Shampoo both need fewer MLP steps than Adam."""
    if not np.isfinite(reached[["soap_adam_betas", "shampoo", "adam"]]).any():
        return (
            f"none of the three reaches the target within {readable(int(budget))} steps, "
            "so this run cannot tell whether the fewer-iterations claim holds"
        )
    fewer = reached["soap_adam_betas"] < reached["adam"] and reached["shampoo"] < reached["adam"]
    return f"the fewer-iterations claim {'holds' if fewer else 'does not hold'} on this toy"


def mlp_paragraph(mlp: pd.DataFrame, budget: int) -> str:
    """Whether SOAP and Shampoo need fewer steps than Adam on the MLP (its race table,
    ``budget`` steps), what a step and the state cost, and SOAP's wall clock."""
    reached = pd.to_numeric(mlp["steps to target"], errors="coerce").fillna(np.inf)
    seconds = pd.to_numeric(mlp["seconds to target"], errors="coerce")
    clock_ratio = seconds["soap_adam_betas"] / seconds["adam"]
    clock = (
        f"SOAP with Adam's betas reaches the target in {readable(clock_ratio)} times Adam's "
        "wall clock in this run"
        if math.isfinite(clock_ratio)
        else "The wall clocks to the target cannot be compared: SOAP with Adam's betas and "
        "Adam do not both reach it"
    )
    steps = {name: steps_text(mlp.loc[name, "steps to target"], budget) for name in mlp.index}
    overhead, state = mlp["step overhead vs adam"], mlp["state / params"]
    return (
        f"On the MLP SOAP with Adam's betas needs {steps['soap_adam_betas']}, Shampoo "
        f"{steps['shampoo']} and Adam {steps['adam']}: "
        f"{_fewer_steps_verdict(reached, budget)}. Per step Shampoo (inverse roots every step) "
        f"costs {overhead['shampoo']:.1f} times Adam's update and SOAP (basis refreshed every "
        f"10 steps) {overhead['soap']:.1f} times; their state is {state['shampoo']:.1f} and "
        f"{state['soap']:.1f} times the parameters' bytes, Adam's {state['adam']:.1f} times "
        f"and Adafactor's {readable(state['adafactor'])} times (factored second moments). "
        f"{clock}."
    )
