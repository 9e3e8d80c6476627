"""The sentences notebook 05 writes from its measurements (Markdown, numbers filled in).

Each takes the tables the study computed and returns a paragraph; where a sentence depends on
a measured value (a claim holds or not, a time exists or not) the choice is made here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.optim.race import steps_text
from workbench.optim.theory import polyak_rate


def power_of_ten(value: float) -> str:
    """1e3 -> "10^3" (for $\\kappa = ...$ in Markdown)."""
    return f"10^{np.log10(value):.0f}"


def rotation_paragraph(rotation: pd.DataFrame, kappa: float) -> str:
    """What the rotation table says at condition number ``kappa`` (a column of the table)."""
    axis = rotation[(kappa, "axis-aligned")]
    rotated = rotation[(kappa, "rotated")]
    cost = rotated / axis
    gap_soap, gap_shampoo = rotated["adam"] / rotated[["soap_adam_betas", "shampoo"]]
    return (
        f"At $\\kappa = {power_of_ten(kappa)}$ Adam ends at {axis['adam']:.1e} axis-aligned and "
        f"{rotated['adam']:.1e} rotated, a factor {cost['adam']:.2g}. Axis-aligned, SOAP with "
        f"Adam's betas ends at {axis['soap_adam_betas']:.1e}: it has to estimate the basis Adam "
        f"is handed. Rotated, Adam's final loss is {gap_soap:.2g}x that of SOAP with Adam's betas "
        f"and {gap_shampoo:.2g}x Shampoo's. SOAP at its paper's betas (0.95, 0.95) ends at "
        f"{rotated['soap']:.1e} in either basis, near Muon ({rotated['muon']:.1e}) and "
        f"PSGD-Kron ({rotated['psgd_kron']:.1e}); "
        f"Muon commutes with rotations too, but its last steps oscillate and amplify rounding, "
        f"so its two columns differ by {abs(cost['muon'] - 1):.0%}."
    )


def momentum_paragraph(
    quadratic: pd.DataFrame, budget: int, race_kappa: float, rotation: pd.DataFrame, kappa: float
) -> str:
    """SGD with momentum against Polyak's rate on the race's quadratic (its race table,
    ``budget`` steps), and SGD against Shampoo in the rotation table at ``kappa``."""
    rate = polyak_rate(race_kappa)
    rotated = rotation[(kappa, "rotated")]
    return (
        f"On the quadratic, SGD with momentum 0.9 needs "
        f"{steps_text(quadratic.loc['sgd', 'steps to target'], budget)} steps: momentum 0.9 is "
        f"close to Polyak's optimal heavy-ball momentum {rate**2:.3f} at $\\kappa = "
        f"{power_of_ten(race_kappa)}$, whose rate $(\\sqrt\\kappa-1)/(\\sqrt\\kappa+1) = "
        f"{rate:.3f}$ per step depends on the square root of the condition number, which Adam "
        f"({steps_text(quadratic.loc['adam', 'steps to target'], budget)} steps) does not have "
        f"in a rotated basis. At $\\kappa = {power_of_ten(kappa)}$ (the table above) SGD's final "
        f"loss is {rotated['sgd']:.1e} against Shampoo's {rotated['shampoo']:.1e}."
    )


def mlp_paragraph(mlp: pd.DataFrame, budget: int) -> str:
    """Whether SOAP and Shampoo need fewer steps than Adam on the MLP (its race table,
    ``budget`` steps), what a step and the state cost, and SOAP's wall clock."""
    reached = pd.to_numeric(mlp["steps to target"], errors="coerce").fillna(np.inf)
    fewer = reached["soap_adam_betas"] < reached["adam"] and reached["shampoo"] < reached["adam"]
    seconds = pd.to_numeric(mlp["seconds to target"], errors="coerce")
    clock_ratio = seconds["soap_adam_betas"] / seconds["adam"]
    clock = f"{clock_ratio:.2f}x Adam's" if math.isfinite(clock_ratio) else "(not both reached it)"
    steps = {name: steps_text(mlp.loc[name, "steps to target"], budget) for name in mlp.index}
    return (
        f"Steps to the target on the MLP: SOAP with Adam's betas {steps['soap_adam_betas']}, "
        f"Shampoo {steps['shampoo']}, Adam {steps['adam']}: the fewer-iterations claim "
        f"{'holds' if fewer else 'does not hold'} on this toy. Per step Shampoo (inverse roots "
        f"every step) costs {mlp.loc['shampoo', 'step overhead vs adam']:.1f}x Adam's update and "
        f"SOAP (basis refreshed every 10 steps) {mlp.loc['soap', 'step overhead vs adam']:.1f}x; "
        f"their state is {mlp.loc['shampoo', 'state / params']:.1f}x and "
        f"{mlp.loc['soap', 'state / params']:.1f}x the parameters' bytes, Adam's "
        f"{mlp.loc['adam', 'state / params']:.1f}x and Adafactor's "
        f"{mlp.loc['adafactor', 'state / params']:.2f}x (factored second moments). In wall clock "
        f"to the target SOAP with Adam's betas takes {clock} time in this run."
    )
