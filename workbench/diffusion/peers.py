"""diffusers' schedulers driven by our exact models: the peer the solvers are checked against.

diffusers' default config (linear betas 1e-4..0.02 over 1000 steps) is VPSchedule.linear_ddpm(),
with timestep k at t = (k + 1) / 1000. Its schedulers take an epsilon model; ours answer through
`as_prediction("noise")`. Where diffusers ends decides our end: final_sigmas_type="sigma_min" is
one more step to t = 1/1000 (timestep 0); "zero" is a last x_0 prediction (our
`denoise_to_zero`); DDIM's set_alpha_to_one=True is that same x_0 prediction.
"""

from __future__ import annotations

import torch

from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.schedules import VPSchedule

T_MIN_DIFFUSERS = float(VPSchedule.timestep_to_t(0))  # the "sigma_min" end: timestep 0


def run_diffusers(
    scheduler,
    model: DiffusionModel,
    x_T: torch.Tensor,
    steps: int,
    *,
    float64: bool = True,
    image_like: bool = False,
) -> torch.Tensor:
    """diffusers' own sampling loop (set_timesteps, then step per timestep) on our model.

    With `float64`, diffusers' float32 noise levels are replaced by the same values in float64
    so that differences measure the algorithms, not the storage (see `use_float64`).
    `image_like` hands the scheduler (N, D, 1) samples: its dynamic thresholding flattens the
    dimensions after the channel axis and fails on (N, D), where that product is empty.
    """
    eps_model = model.as_prediction("noise")
    scheduler.set_timesteps(steps)
    if float64:
        use_float64(scheduler, model.schedule)
    x = x_T.clone()
    for timestep in scheduler.timesteps:
        eps = eps_model(x, VPSchedule.timestep_to_t(timestep))
        if image_like:
            step = scheduler.step(eps[..., None], timestep, x[..., None])
            x = step.prev_sample[..., 0]
        else:
            x = scheduler.step(eps, timestep, x).prev_sample
    return x


def use_float64(scheduler, schedule: VPSchedule) -> None:
    """Replace diffusers' float32 alphas_cumprod / sigmas by the same ones in float64.

    They are float32 whatever the sample dtype; that alone moves a 20-step third-order solve by
    ~1e-4. The values are the same, only with more digits.
    """
    alphas_cumprod = schedule.alphas_cumprod
    if hasattr(scheduler, "final_alpha_cumprod"):  # DDIM
        one = bool(scheduler.final_alpha_cumprod == 1.0)
        scheduler.alphas_cumprod = alphas_cumprod.clone()
        # the very same number as alphas_cumprod[0]: DDIM takes sqrt(1 - a_t / a_prev) of it
        scheduler.final_alpha_cumprod = (
            torch.ones((), dtype=torch.float64) if one else alphas_cumprod[0]
        )
        return
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()  # VE-equivalent, per timestep
    ends_at_zero = scheduler.sigmas[-1] == 0
    last = torch.zeros((), dtype=torch.float64) if ends_at_zero else sigmas[0]
    exact = torch.cat([sigmas[scheduler.timesteps], last[None]])
    theirs = scheduler.sigmas.to(torch.float64)
    # Karras and uniform-lambda spacings put sigmas between integer timesteps (the model is
    # then called at the rounded timestep, diffusers' own behaviour): keep those values.
    same = torch.allclose(theirs, exact, rtol=1e-3, atol=0)  # float32 storage: ~1e-4 off
    scheduler.sigmas = exact if same else theirs


def diffusers_times(scheduler, steps: int) -> list[float]:
    """Our times t of a diffusers scheduler's timesteps for `steps` steps."""
    scheduler.set_timesteps(steps)
    return [float(VPSchedule.timestep_to_t(k)) for k in scheduler.timesteps]


def diffusers_configurations() -> dict[str, object]:
    """Name -> factory of the diffusers configurations the benchmark compares: DPM-Solver++ and
    UniPC with their default, Karras and (DPM++) uniform-lambda spacings, orders 2 and 3, and DEIS.

    All end at sigma_min (timestep 0), where the workbench's reference ends; NFE = steps.
    """
    import diffusers

    def dpm(order, **kw):
        return lambda: diffusers.DPMSolverMultistepScheduler(
            solver_order=order, final_sigmas_type="sigma_min", **kw
        )

    def unipc(order, **kw):
        return lambda: diffusers.UniPCMultistepScheduler(
            solver_order=order, final_sigmas_type="sigma_min", **kw
        )

    configs = {
        "DEIS 2": lambda: diffusers.DEISMultistepScheduler(solver_order=2),
        "DEIS 3": lambda: diffusers.DEISMultistepScheduler(solver_order=3),
    }
    for order in (2, 3):
        configs[f"DPM++ {order}M"] = dpm(order)
        configs[f"DPM++ {order}M karras"] = dpm(order, use_karras_sigmas=True)
        configs[f"DPM++ {order}M lu-lambdas"] = dpm(order, use_lu_lambdas=True)
        configs[f"UniPC bh2 {order}"] = unipc(order)
        configs[f"UniPC bh2 {order} karras"] = unipc(order, use_karras_sigmas=True)
    return configs


def crosscheck(model: DiffusionModel, x_T: torch.Tensor, steps: int):
    """Max |ours - diffusers| per algorithm on identical grids, ends and orders (a DataFrame).

    Each pair is configured to the same algorithm: diffusers stepping to sigma_min (timestep 0)
    is our grid of its times plus t = 1/1000; its lower-order final steps below 15 steps match
    ours, except UniPC, which lowers them at every step count, so it is switched to match.
    """
    import diffusers
    import pandas as pd

    from workbench.diffusion.sampling import SOLVERS, sample

    pairs = {
        "DDIM": (lambda: diffusers.DDIMScheduler(clip_sample=False), "ddim", {}, False),
        "DPM-Solver++ 2M": (
            lambda: diffusers.DPMSolverMultistepScheduler(final_sigmas_type="sigma_min"),
            "dpmpp_2m",
            {},
            True,
        ),
        "DPM-Solver++ 3M": (
            lambda: diffusers.DPMSolverMultistepScheduler(
                solver_order=3, final_sigmas_type="sigma_min"
            ),
            "dpmpp_3m",
            {},
            True,
        ),
        "UniPC bh2": (
            lambda: diffusers.UniPCMultistepScheduler(
                final_sigmas_type="sigma_min", lower_order_final=steps < 15
            ),
            "unipc_bh2",
            {},
            True,
        ),
        "DEIS 3": (
            lambda: diffusers.DEISMultistepScheduler(solver_order=3),
            "deis",
            {"order": 3},
            True,
        ),
    }
    rows = []
    for name, (make, solver, options, to_sigma_min) in pairs.items():
        theirs = run_diffusers(make(), model, x_T, steps)
        times = diffusers_times(make(), steps)
        grid = [*times, T_MIN_DIFFUSERS] if to_sigma_min else times
        # DDIM's default set_alpha_to_one=True makes its last step an x_0 prediction
        ours = sample(
            model,
            x_T,
            solver=solver,
            steps=None,
            grid=grid,
            denoise_to_zero=not to_sigma_min,
            **options,
        ).x
        rows.append(
            {
                "algorithm": name,
                "ours": SOLVERS.label(solver),
                "steps": steps,
                "max |ours - diffusers|": (ours - theirs).abs().max().item(),
            }
        )
    return pd.DataFrame(rows).set_index("algorithm")
