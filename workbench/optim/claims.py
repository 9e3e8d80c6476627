"""The papers' claims notebook 05 measures, each tied to a metric the notebook records.

``OPTIMIZER_CLAIMS`` is the verdict at the end of the notebook: ``verdict_table()`` reads the
recorded values (``workbench.claims.claims_table``) and names the optimizers by their labels.
The metrics exist at both sizes: the rotation claims read kappa 1e3 (the one condition number
SMOKE sweeps), the invariance claim the largest swept kappa, the race claims the MLP and the
rotated quadratic, which SMOKE's 40 steps do not bring to the targets ("not reached" holds no
"fewer steps" claim).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workbench.claims import Claim, claims_table
from workbench.optim.registry import OPTIMIZERS

SHAMPOO = "Gupta, Koren & Singer 2018, arXiv:1802.09568"
SOAP = "Vyas et al. 2024, arXiv:2409.11321"
ADAM = "Kingma & Ba 2014, arXiv:1412.6980"
DERIVED = "textbook (derived above)"


def _fewer_steps(name: str, problem: str = "mlp") -> dict:
    """``Claim`` arguments for "``name`` reaches the target in fewer steps than Adam"."""
    return {
        "metric": f"race.{problem}.{name}.steps_to_target",
        "below": f"race.{problem}.adam.steps_to_target",
    }


OPTIMIZER_CLAIMS = (
    Claim(
        "Gradient descent at 2/(λmax + λmin) contracts the error by (κ-1)/(κ+1) per step "
        "(κ = 100: measured / predicted rate - 1)",
        DERIVED,
        "gd.rate_relative_error.kappa100",
        below=1e-3,
    ),
    Claim(
        "Newton's method (the exact inverse Hessian) reaches the minimum in one step whatever "
        "κ (κ = 10^4 quadratic: loss after one step)",
        DERIVED,
        "newton.one_step_loss.quadratic",
        below=1e-20,
    ),
    Claim(
        "On a Kronecker-factored Hessian A ⊗ B Shampoo's factors L^-1/4, R^-1/4 are A^-1/2, "
        "B^-1/2 up to scale (largest relative difference)",
        SHAMPOO,
        "shampoo.factor_max_relative_error",
        below=1e-9,
    ),
    Claim(
        "With exponent -1/2 Shampoo's factors are the inverse Hessian: one step lands on the "
        "minimum (loss after one step)",
        SHAMPOO,
        "shampoo.root2_one_step_loss",
        below=1e-20,
    ),
    Claim(
        "Adam is invariant to a diagonal rescaling: on the axis-aligned quadratic (κ = 10^3) "
        "it ends below SGD (log10 final loss)",
        ADAM,
        "rotation.kappa1000.axis-aligned.adam.log10_final_loss",
        below="rotation.kappa1000.axis-aligned.sgd.log10_final_loss",
    ),
    Claim(
        "Adam's invariance is to diagonal rescaling only: rotated (κ = 10^3) it ends above its "
        "axis-aligned loss (log10 final loss)",
        ADAM,
        "rotation.kappa1000.rotated.adam.log10_final_loss",
        above="rotation.kappa1000.axis-aligned.adam.log10_final_loss",
    ),
    Claim(
        "Running Adam in Shampoo's eigenbasis undoes the rotation: rotated (κ = 10^3) SOAP "
        "with Adam's betas ends below Adam (log10 final loss)",
        SOAP,
        "rotation.kappa1000.rotated.soap_adam_betas.log10_final_loss",
        below="rotation.kappa1000.rotated.adam.log10_final_loss",
    ),
    *(
        Claim(
            f"{OPTIMIZERS.label(name)} commutes with rotations: it ends at the same loss in both "
            "bases (to 0.1%, the largest κ swept)",
            paper,
            "rotation.invariant_methods",
            contains=name,
        )
        for name, paper in (("sgd", DERIVED), ("soap", SOAP), ("muon", DERIVED))
    ),
    Claim(
        "Heavy-ball momentum converges at a rate set by √κ: SGD with momentum reaches the "
        "target on the rotated quadratic in fewer steps than Adam",
        "Polyak 1964",
        **_fewer_steps("sgd", "quadratic"),
    ),
    Claim(
        "A Kronecker preconditioner wins the race on the rotated quadratic: Shampoo reaches "
        "the target in fewer steps than Adam",
        SHAMPOO,
        **_fewer_steps("shampoo", "quadratic"),
    ),
    Claim(
        "Shampoo converges in fewer steps than Adam (steps to the target on the MLP)",
        SHAMPOO,
        **_fewer_steps("shampoo"),
    ),
    Claim(
        "Shampoo's runtime per step is comparable to Adam's: its step costs no more (MLP)",
        SHAMPOO,
        "race.mlp.shampoo_step_costs_more_than_adam",
        equals=False,
    ),
    Claim(
        "SOAP needs fewer iterations than AdamW (over 40% fewer on language models): steps "
        "to the target on the MLP",
        SOAP,
        **_fewer_steps("soap"),
    ),
    Claim(
        "The same with Adam's betas (0.9, 0.999): SOAP needs fewer steps than Adam on the MLP",
        SOAP,
        **_fewer_steps("soap_adam_betas"),
    ),
    Claim(
        "A preconditioner fitted on a Lie group (PSGD-Kron) needs fewer steps than Adam on the MLP",
        "Li 2018, arXiv:1809.10232",
        **_fewer_steps("psgd_kron"),
    ),
    Claim(
        "Muon is about 2x as compute-efficient as AdamW: fewer steps than Adam to the target "
        "on the MLP",
        "Liu et al. 2025, arXiv:2502.16982",
        **_fewer_steps("muon"),
    ),
    Claim(
        "Adafactor's factored second moment needs far less optimizer memory than Adam "
        "(state bytes on the MLP)",
        "Shazeer & Stern 2018, arXiv:1804.04235",
        "race.mlp.adafactor.state_bytes",
        below="race.mlp.adam.state_bytes",
    ),
)

# an optimizer id standing alone in a measured value ("sgd, soap"), not inside a metric's name
_ID = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, OPTIMIZERS)) + r")(?![\w.])")


def labelled_text(text: str) -> str:
    """Every optimizer id standing alone in ``text`` replaced by its label."""
    return _ID.sub(lambda match: OPTIMIZERS.label(match.group(1)), text)


def verdict_table(values: Mapping[str, Any] | None = None):
    """``claims_table(OPTIMIZER_CLAIMS)`` with optimizers named by label (``values``: the
    recorded metrics, default this session's)."""
    table = claims_table(OPTIMIZER_CLAIMS, values)
    table["measured"] = table["measured"].map(labelled_text)
    return table
