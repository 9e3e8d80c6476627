"""Notebook 02's sentences about its measurements: each function takes the tables the
notebook computed (`guidance_experiments`) and returns a Markdown paragraph, so the words
chosen from measured values ("more" or "less", "every" or "some") are decided here."""

from __future__ import annotations

import pandas as pd

from workbench.diffusion.guidance_study import GuidanceStudy


def cfg_misses_the_target(cfg_sweep, target_sweep, modes: pd.DataFrame) -> str:
    """CFG's distance to the tilted target at w = 3 and how it empties the narrow mode."""
    sw, floor = cfg_sweep.loc[3.0, "sliced W"], target_sweep.loc[3.0, "sliced W"]
    kept, kept_cfg = modes.loc[3.0, "exact target"], modes.loc[3.0, "CFG"]
    kept_cfg_7 = modes.loc[7.5, "CFG"]
    spread, target_spread = cfg_sweep.loc[7.5, "spread"], target_sweep.loc[7.5, "spread"]
    return f"""
At $w = 3$ CFG's samples are {sw:.3f} from the tilted target in sliced Wasserstein distance,
{sw / floor:.0f}x the distance between two exact sample sets. The target keeps {kept:.0%} of the
class in its narrow component next to class 0; CFG keeps {kept_cfg:.0%} (and {kept_cfg_7:.0%} at
$w = 7.5$): its extrapolated drift pushes trajectories away from the other class before they can
settle there. Its within-class spread at $w = 7.5$ is {spread:.2f}, the target's
{target_spread:.2f}.
"""


def methods_compared(study: GuidanceStudy, cfg_sweep, at3: pd.DataFrame, auto_narrow) -> str:
    """Precision against the prior, the method closest to the target at w = 3, rescale's
    spread and autoguidance's distance to its own target."""
    mixture, problem = study.problem.mixture, study.problem
    p0, p1, p3 = (cfg_sweep.loc[w, "precision"] for w in (0.0, 1.0, 3.0))
    prior = float(mixture.weights[mixture.labels == problem.label].sum())
    best = at3.drop(["exact_target", "autoguidance_target", "autoguidance"])["sliced W"].idxmin()
    sw_best, sw_cfg, sw_auto = (at3.loc[m, "sliced W"] for m in (best, "cfg", "autoguidance"))
    rescale, plain = at3.loc["cfg_rescale", "spread"], at3.loc["cfg", "spread"]
    rescale_more = "more" if rescale > plain else "less"
    return f"""
CFG's precision is {p0:.3f} at $w=0$ (the class prior is {prior:.2f}), {p1:.3f} at $w=1$ and
{p3:.3f} at $w=3$. At $w = 3$ the method closest to the tilted target is **{best}** (sliced W
{sw_best:.3f}, CFG {sw_cfg:.3f}); guidance rescale keeps {rescale_more} spread than plain CFG
({rescale:.3f} against {plain:.3f}). Autoguidance is
{sw_auto:.3f} from its own target and keeps {auto_narrow:.0%} of the class in the narrow component.
"""


def solver_error_growth(grids: dict, at10: pd.DataFrame, top: float, difference: float) -> str:
    """How the 10-NFE error grows with the scale, per solver, and diffusers' agreement."""
    growth = at10["growth w=1 to max"]
    plain, thresholded = at10[f"w={top:g}"], at10[f"w={top:g}, thresholded"]
    return f"""
At 10 NFE the error grows between $w=1$ and $w={top:g}$ by a factor from {growth.min():.1f}
({growth.idxmin()}) to {growth.max():.0f} ({growth.idxmax()}); at
$w={top:g}$ DPM-Solver-v3 (plain CFG) is at {grids[("cfg", "dpm_solver_v3")].loc[top, 10]:.2e}
against DPM-Solver++(2M)'s {plain["dpmpp_2m"]:.2e}. Thresholding turns DPM-Solver++(2M)'s
{plain["dpmpp_2m"]:.2e} into {thresholded["dpmpp_2m"]:.2e}. diffusers' schedulers on the same
CFG model ($w = 7.5$, 10 steps) agree with ours to {difference:.1e}.
"""


def v3_on_thresholding(study: GuidanceStudy, grids: dict) -> str:
    """Where DPM-Solver-v3 diverges on the thresholded model and why ("" if not measured)."""
    if ("cfg_threshold", "dpm_solver_v3") not in grids:  # (not in SMOKE)
        return ""
    errors = grids[("cfg_threshold", "dpm_solver_v3")]
    broken = errors.index[errors.isna().any(axis=1)]
    everywhere = bool(errors.loc[broken].isna().all().all())
    slopes = [float(study.ems("cfg_threshold", w).s.abs().max()) for w in broken]
    worst = max(slopes, default=0)
    return f"""
DPM-Solver-v3 on the thresholded model diverges at {len(broken)} of {len(errors)} scales
({", ".join(f"{w:g}" for w in broken)}), at {"every" if everywhere else "some"} NFE. Its
statistic $s$ is a least-squares slope
$\\mathrm{{cov}}(f, f')/\\mathrm{{var}}(f)$ over samples; where thresholding clips every high-noise
prediction to nearly the same $x_0$, $f$ hardly varies between samples and the slope reaches
$|s| =$ {worst:.0f}, whose exponential overflows in the first step. Thresholding and
model-fitted solver statistics do not mix without regularizing that fit.
"""


def smc_against_cfg(smc_table: pd.DataFrame, particles: int, steps: int) -> str:
    """FK-SMC's distance to the target against the unweighted SDE's and the ODE's."""
    mean = smc_table.groupby(level="w").mean()
    seeds = smc_table.index.get_level_values("seed").nunique()
    at_3, at_7 = mean.loc[3.0], mean.loc[7.5]
    return f"""
With {particles} particles and {steps} steps, FK-SMC is {at_3["FK-SMC"]:.3f} from the
target at $w=3$ (mean over {seeds} seed(s)) against {at_3["CFG SDE"]:.3f} for the
unweighted SDE and {at_3["CFG ODE"]:.3f} for the ODE (floor {at_3["exact draws"]:.3f}); at
$w=7.5$, {at_7["FK-SMC"]:.3f} against {at_7["CFG SDE"]:.3f} and {at_7["CFG ODE"]:.3f}. The
weights spread (ESS down to {at_7["min ESS"]:.2f} of N before resampling at $w = 7.5$) where the
classes separate, around log-SNR λ ≈ 0 in the figure. Reweighting can only move mass among the
particles the guided SDE puts there, and CFG empties the narrow component (above): the larger the
scale, the fewer particles carry the correction, and the farther SMC stays from the floor.
"""


def svdd_gain(svdd_table: pd.DataFrame) -> str:
    """SVDD's precision from the unconditional model, one candidate against the most."""
    unconditional = svdd_table.loc[0.0, "precision"]
    most = unconditional.index[-1]
    return f"""
From the unconditional model, precision goes from {unconditional.iloc[0]:.3f} with one candidate
(plain sampling, at the class prior) to {unconditional.iloc[-1]:.3f} with {most}, at
{most}x the model calls per step.
"""
