"""Notebook 02's sentences about its measurements: each function takes the tables the
notebook computed (`guidance_experiments`) and returns a Markdown paragraph, so the words
chosen from measured values ("more" or "less", "every" or "some") are decided here. Numbers
are written by `workbench.claims.readable`, methods and solvers by their registry labels."""

from __future__ import annotations

import pandas as pd

from workbench.claims import readable
from workbench.diffusion.guidance import GUIDANCE
from workbench.diffusion.guidance_study import GuidanceStudy
from workbench.diffusion.sampling import SOLVERS


def _count(n: int, noun: str) -> str:
    """ "1 seed", "3 seeds"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _scales(scales) -> str:
    """ "1, 3 and 7.5"."""
    texts = [f"{w:g}" for w in scales]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} and {texts[-1]}"


def setting(study: GuidanceStudy) -> str:
    """What is sampled: the schedule, the starting points and the class."""
    problem = study.problem
    mixture = problem.mixture
    classes = sorted({int(c) for c in mixture.labels})
    return (
        f"Schedule: {problem.schedule.name}. Every guided solve starts from the same "
        f"{study.n_samples:,} noise draws and samples class {problem.label} of a "
        f"{mixture.dim}-D mixture of {mixture.n_components} Gaussian components in "
        f"{len(classes)} classes."
    )


def exact_answers(
    log_z: float, mc_log_z: float, mc_error: float, acceptance: float, data_range: float
) -> str:
    """The tilted target's normalizer on the grid against Monte Carlo, the rejection
    sampler's acceptance rate at w = 15 and thresholding's data range."""
    errors = abs(log_z - mc_log_z) / mc_error
    agree = "agrees with" if errors < 3 else "differs from"
    return f"""
At $w = 3$ the grid's $\\log Z$ is {readable(log_z)}: it {agree} the Monte Carlo estimate
{readable(mc_log_z)} ± {readable(mc_error)} ({readable(errors)} standard errors apart). The
rejection sampler accepts {acceptance:.0%} of its proposals at $w = 15$. Dynamic thresholding's
data range $R$ (the 99.5% quantile of $|x_0|$) is {readable(data_range)}.
"""


def ode_error_floor(largest_error: float, scales, sliced_w: float) -> str:
    """DPM-Solver++(2M)'s largest error in 50 steps against the distances measured with it."""
    under = "far under" if largest_error < sliced_w / 5 else "not far under"
    return f"""
DPM-Solver++(2M)'s largest error in 50 steps over $w$ = {_scales(scales)} is
{readable(largest_error)}, {under} CFG's distance to the target at $w = 3$
({readable(sliced_w)}).
"""


def cfg_misses_the_target(cfg_sweep, target_sweep, modes: pd.DataFrame) -> str:
    """CFG's distance to the tilted target at w = 3 and how it empties the narrow mode."""
    sw, floor = cfg_sweep.loc[3.0, "sliced W"], target_sweep.loc[3.0, "sliced W"]
    kept, kept_cfg = modes.loc[3.0, "exact target"], modes.loc[3.0, "CFG"]
    kept_cfg_7 = modes.loc[7.5, "CFG"]
    spread, target_spread = cfg_sweep.loc[7.5, "spread"], target_sweep.loc[7.5, "spread"]
    return f"""
At $w = 3$ CFG's samples are {readable(sw)} from the tilted target in sliced Wasserstein
distance, {readable(sw / floor)} times the distance between two exact sample sets. The target
keeps {kept:.0%} of the class in its narrow component next to class 0; CFG keeps {kept_cfg:.0%}
(and {kept_cfg_7:.0%} at $w = 7.5$): its extrapolated drift pushes trajectories away from the
other class before they can settle there. Its within-class spread at $w = 7.5$ is
{readable(spread)}, the target's {readable(target_spread)}.
"""


def methods_compared(study: GuidanceStudy, cfg_sweep, at3: pd.DataFrame, auto_narrow) -> str:
    """Precision against the prior, the method closest to the target at w = 3, rescale's
    spread and autoguidance's distance to its own target."""
    mixture, problem = study.problem.mixture, study.problem
    p0, p1, p3 = (readable(cfg_sweep.loc[w, "precision"]) for w in (0.0, 1.0, 3.0))
    prior = float(mixture.weights[mixture.labels == problem.label].sum())
    best = at3.drop(["exact_target", "autoguidance_target", "autoguidance"])["sliced W"].idxmin()
    sw_best, sw_cfg, sw_auto = (
        readable(at3.loc[m, "sliced W"]) for m in (best, "cfg", "autoguidance")
    )
    rescale, plain = at3.loc["cfg_rescale", "spread"], at3.loc["cfg", "spread"]
    rescale_more = "more" if rescale > plain else "less"
    return f"""
CFG's precision is {p0} at $w=0$ (the class prior is {readable(prior)}), {p1} at $w=1$ and
{p3} at $w=3$. At $w = 3$ the method closest to the tilted target is
**{GUIDANCE.label(best)}** (sliced W {sw_best}, CFG {sw_cfg}); guidance rescale keeps
{rescale_more} spread than plain CFG ({readable(rescale)} against {readable(plain)}).
Autoguidance is {sw_auto} from its own target and keeps {auto_narrow:.0%} of the class in the
narrow component.
"""


def solver_error_growth(grids: dict, at10: pd.DataFrame, top: float, difference: float) -> str:
    """How the 10-NFE error grows with the scale, per solver, and diffusers' agreement."""
    growth = at10["growth w=1 to max"]
    plain, thresholded = at10[f"w={top:g}"], at10[f"w={top:g}, thresholded"]
    v3 = grids[("cfg", "dpm_solver_v3")].loc[top, 10]
    return f"""
At 10 NFE the error grows between $w=1$ and $w={top:g}$ by a factor from
{readable(growth.min())} ({SOLVERS.label(growth.idxmin())}) to {readable(growth.max())}
({SOLVERS.label(growth.idxmax())}); at $w={top:g}$ DPM-Solver-v3 (plain CFG) is at
{readable(v3)} against DPM-Solver++(2M)'s {readable(plain["dpmpp_2m"])}. Thresholding turns
DPM-Solver++(2M)'s {readable(plain["dpmpp_2m"])} into {readable(thresholded["dpmpp_2m"])}.
diffusers' schedulers on the same CFG model ($w = 7.5$, 10 steps) agree with ours to
{readable(difference)}.
"""


def v3_on_thresholding(study: GuidanceStudy, grids: dict) -> str:
    """Where DPM-Solver-v3 diverges on the thresholded model and why ("" if not measured)."""
    if ("cfg_threshold", "dpm_solver_v3") not in grids:  # (not in SMOKE)
        return ""
    errors = grids[("cfg_threshold", "dpm_solver_v3")]
    broken = errors.index[errors.isna().any(axis=1)]
    if not len(broken):
        return f"""
DPM-Solver-v3 on the thresholded model converges at all {len(errors)} scales and every NFE.
"""
    everywhere = bool(errors.loc[broken].isna().all().all())
    worst = max(float(study.ems("cfg_threshold", w).s.abs().max()) for w in broken)
    return f"""
DPM-Solver-v3 on the thresholded model diverges at {len(broken)} of {len(errors)} scales
($w$ = {_scales(broken)}), at {"every" if everywhere else "some"} NFE. Its
statistic $s$ is a least-squares slope
$\\mathrm{{cov}}(f, f')/\\mathrm{{var}}(f)$ over samples; where thresholding clips every
high-noise prediction to nearly the same $x_0$, $f$ hardly varies between samples and the slope
reaches $|s| =$ {readable(worst)}, whose exponential overflows in the first step. Thresholding
and model-fitted solver statistics do not mix without regularizing that fit.
"""


def smc_against_cfg(smc_table: pd.DataFrame, particles: int, steps: int) -> str:
    """FK-SMC's distance to the target against the unweighted SDE's and the ODE's."""
    mean = smc_table.groupby(level="w").mean().map(readable)
    seeds = smc_table.index.get_level_values("seed").nunique()
    at_3, at_7 = mean.loc[3.0], mean.loc[7.5]
    return f"""
With {particles:,} particles and {steps} steps, FK-SMC is {at_3["FK-SMC"]} from the target at
$w=3$ (mean over {_count(seeds, "seed")}) against {at_3["CFG SDE"]} for the unweighted SDE and
{at_3["CFG ODE"]} for the ODE (floor {at_3["exact draws"]}); at $w=7.5$, {at_7["FK-SMC"]}
against {at_7["CFG SDE"]} and {at_7["CFG ODE"]}. The weights spread (ESS down to
{at_7["min ESS"]} of N before resampling at $w = 7.5$) where the classes separate, around
log-SNR λ ≈ 0 in the figure. Reweighting can only move mass among the particles the guided SDE
puts there, and CFG empties the narrow component (above): the larger the scale, the fewer
particles carry the correction, and the farther SMC stays from the floor.
"""


def svdd_gain(svdd_table: pd.DataFrame) -> str:
    """SVDD's precision from the unconditional model, one candidate against the most."""
    unconditional = svdd_table.loc[0.0, "precision"]
    most = unconditional.index[-1]
    return f"""
From the unconditional model, precision goes from {readable(unconditional.iloc[0])} with one
candidate (plain sampling, at the class prior) to {readable(unconditional.iloc[-1])} with
{most}, at {most} times the model calls per step.
"""
