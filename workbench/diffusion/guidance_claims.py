"""The papers' claims notebook 02 measures, each tied to a metric the notebook records: its
verdict table (`workbench.claims.claims_table(guidance_claims(top))`) is computed from the
same numbers the regression check compares.

The solver-error claims read the heatmaps' largest scale, `top` (15 in the full profile, 7.5
in SMOKE), at 10 NFE: the only metric names that differ between the two profiles.
"""

from __future__ import annotations

from workbench.claims import Claim

HO_SALIMANS = "Ho & Salimans 2022, arXiv:2207.12598"
SKRETA = "Skreta et al. 2025, arXiv:2503.02819"
LIN = "Lin et al. 2023, arXiv:2305.08891"
KYNKAANNIEMI = "Kynkäänniemi et al. 2024, arXiv:2404.07724"
KARRAS = "Karras et al. 2024, arXiv:2406.02507"
SAHARIA = "Saharia et al. 2022, arXiv:2205.11487"
LU = "Lu et al. 2022, arXiv:2211.01095"
ZHENG = "Zheng et al. 2023, arXiv:2310.13268"
LI = "Li et al. 2024, arXiv:2408.08252"


def guidance_claims(top: float) -> tuple[Claim, ...]:
    """Notebook 02's claims; `top` is the largest scale of its solver-error heatmaps."""
    w = f"{top:g}"
    return (
        Claim(
            "exact classifier guidance is CFG (Bayes' rule): largest relative difference "
            "of the guided models' noise predictions",
            HO_SALIMANS,
            "identities.max_relative_difference",
            below=1e-10,
        ),
        Claim(
            "guidance raises precision: CFG's precision at w = 3 above its precision at w = 1",
            HO_SALIMANS,
            "cfg.precision_w3",
            above="cfg.precision_w1",
        ),
        Claim(
            "CFG does not sample the tilted target: at w = 3 its sliced W to exact draws "
            "exceeds the distance between two exact sets",
            SKRETA,
            "cfg.sliced_w_w3",
            above="target.sliced_w_floor_w3",
        ),
        Claim(
            "Feynman-Kac correctors bring the guided SDE to the tilted target: FK-SMC's "
            "sliced W at w = 7.5 below the unweighted SDE's",
            SKRETA,
            "smc.w7.5.FK-SMC",
            below="smc.w7.5.CFG_SDE",
        ),
        Claim(
            "rescaled guidance samples more faithfully than CFG: sliced W to the tilted "
            "target at w = 3 below CFG's",
            LIN,
            "w3.cfg_rescale.sliced_w",
            below="w3.cfg.sliced_w",
        ),
        Claim(
            "guidance in a limited interval of noise levels improves the distribution: "
            "sliced W at w = 3 below CFG's",
            KYNKAANNIEMI,
            "w3.cfg_interval.sliced_w",
            below="w3.cfg.sliced_w",
        ),
        Claim(
            "autoguidance sharpens without CFG's distortion: at w = 3 closer to its own "
            "target (sliced W) than CFG is to its",
            KARRAS,
            "w3.autoguidance.sliced_w",
            below="w3.cfg.sliced_w",
        ),
        Claim(
            f"dynamic thresholding keeps large scales solvable: DPM-Solver++(2M)'s error at "
            f"w = {w}, 10 NFE, below plain CFG's",
            SAHARIA,
            f"error.cfg_threshold.dpmpp_2m.w{w}.nfe10",
            below=f"error.cfg.dpmpp_2m.w{w}.nfe10",
        ),
        Claim(
            f"DPM-Solver++(2M) suits guided sampling in few steps: its error at w = {w}, "
            f"10 NFE, below DDIM's",
            LU,
            f"error.cfg.dpmpp_2m.w{w}.nfe10",
            below=f"error.cfg.ddim.w{w}.nfe10",
        ),
        Claim(
            f"DPM-Solver-v3's model statistics help at large scales: its error at w = {w}, "
            f"10 NFE, below DPM-Solver++(2M)'s",
            ZHENG,
            f"error.cfg.dpm_solver_v3.w{w}.nfe10",
            below=f"error.cfg.dpmpp_2m.w{w}.nfe10",
        ),
        Claim(
            "derivative-free guidance by a reward without gradient: SVDD's precision from "
            "the unconditional model with 4 candidates above 1 candidate's",
            LI,
            "svdd.base_w0.M4.precision",
            above="svdd.base_w0.M1.precision",
        ),
    )
