"""Any torch denoiser as a `DiffusionModel`: continuous-time networks and discrete-time ones
with an `alphas_cumprod` table.

A continuous network (`from_denoiser`) is fed x_t and one of the TIME_INPUTS (the schedule's
t, sigma, the log-SNR 2 lambda, the VE-equivalent sigma / alpha) or a callable of t. A
discrete one (`from_discrete`) is trained at N integer timesteps k with noise levels
alphas_cumprod[k] (the DDPM / diffusers / k-diffusion convention); the workbench sees it on
the schedule `discrete_schedule(alphas_cumprod)`, where timestep k sits at t = (k + 1) / N, and
each continuous t is mapped to the network's timestep by one of TIMESTEPS: the nearest
timestep in log-SNR, or a fractional timestep interpolated between the two neighbours in
log-SNR. Both follow k-diffusion's `DiscreteSchedule` (crowsonkb/k-diffusion,
k_diffusion/external.py: `sigma_to_t` with and without `quantize`), whose log sigma is our
-lambda.

dtype: the network runs in its own dtype (that of its first parameter, float64 when it has
none, or `dtype=` when given): x_t and the time input are cast to it, and its output is
returned as float64, the workbench's dtype. A float32 network therefore answers with float32
rounding (~1e-7 relative) in float64 storage. Gradients are tracked only when x_t requires
them (an autograd score check, a Jacobian-vector product); a plain solve runs without them,
so a network's graph never chains across the steps of a solve.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from workbench.diffusion.models import PREDICTIONS, DiffusionModel
from workbench.diffusion.schedules import DTYPE, NoiseSchedule, VPSchedule
from workbench.registry import Registry, check_choice

# what a continuous network is fed as its time: f(schedule, t) for float64 t
TIME_INPUTS: Registry[Callable[[NoiseSchedule, torch.Tensor], torch.Tensor]] = Registry(
    "time input"
)
TIME_INPUTS.add("t", lambda schedule, t: t, label="schedule time t")
TIME_INPUTS.add("sigma", lambda schedule, t: schedule.sigma(t), label="noise level sigma(t)")
TIME_INPUTS.add("log_snr", lambda schedule, t: 2 * schedule.lambda_(t), label="log-SNR")
TIME_INPUTS.add(
    "ve_sigma",
    # the noise level of Karras et al. 2022 (EDM, arXiv:2206.00364) and k-diffusion for a VP
    # model: x_t / alpha = x_0 + (sigma / alpha) eps; an EDM network on EDMSchedule takes "t"
    lambda schedule, t: schedule.sigma(t) / schedule.alpha(t),
    label="VE sigma = sigma / alpha",
)

# t slightly outside the table's range by float rounding of (k + 1) / N is still timestep k
RANGE_SLACK = 1e-12


def _nearest(lo: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # ties go to the lower timestep, as k-diffusion's argmin of |log sigma - log sigmas|
    return lo + (w > 0.5).long()


def _interpolated(lo: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return lo.to(DTYPE) + w


# continuous t -> the network's timestep, from the lower neighbour lo and the weight w in [0, 1]
# of the upper one (both in log-SNR)
TIMESTEPS: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry(
    "timestep mapping"
)
TIMESTEPS.add("nearest", _nearest, label="nearest timestep (quantized)")
TIMESTEPS.add("interpolate", _interpolated, label="fractional timestep (interpolated)")


def _dtype_and_device(net, dtype: torch.dtype | None):
    """The dtype and device a network runs in: its first parameter's (or buffer's)."""
    tensors = []
    if isinstance(net, torch.nn.Module):
        tensors = [*net.parameters(), *net.buffers()][:1]
    device = tensors[0].device if tensors else torch.device("cpu")
    if dtype is None:
        dtype = tensors[0].dtype if tensors and tensors[0].is_floating_point() else DTYPE
    return dtype, device


def _run(net, x: torch.Tensor, time: torch.Tensor, dtype, device) -> torch.Tensor:
    """net(x, time) in the network's dtype and device, back as float64 on x's device."""
    time = time.reshape(-1).expand(x.shape[0]) if time.numel() == 1 else time.reshape(-1)
    time = time.to(device, dtype if time.is_floating_point() else torch.long)
    with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
        out = net(x.to(device, dtype), time)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the network returned {got} for an input of shape {tuple(x.shape)}")
    return out.to(x.device, DTYPE)


def from_denoiser(
    net,
    prediction: str,
    schedule: NoiseSchedule,
    *,
    time_input: str | Callable[[torch.Tensor], torch.Tensor] = "t",
    dtype: torch.dtype | None = None,
    name: str = "network",
) -> DiffusionModel:
    """A network net(x_t, time) -> its prediction of kind `prediction` on `schedule`.

    `time_input` names one of TIME_INPUTS or is a callable t -> time (float64 in, any float
    tensor out); the time is fed as a (N,) tensor, one value per sample.
    """
    check_choice("prediction", prediction, PREDICTIONS)
    if callable(time_input):
        time_of = time_input
    else:
        feed = TIME_INPUTS[time_input]

        def time_of(t):
            return feed(schedule, t)

    run_dtype, device = _dtype_and_device(net, dtype)

    def fn(x, t):
        return _run(net, x, torch.as_tensor(time_of(t)), run_dtype, device)

    return DiffusionModel(fn, prediction, schedule, name)


def check_alphas_cumprod(alphas_cumprod) -> torch.Tensor:
    """The table as float64, refused unless 1-D, of >= 2 values in (0, 1), strictly decreasing."""
    table = torch.as_tensor(alphas_cumprod).detach().to("cpu", DTYPE)
    if table.ndim != 1 or len(table) < 2:
        raise ValueError(f"alphas_cumprod must be 1-D with >= 2 values, got {tuple(table.shape)}")
    bad = torch.nonzero(~((table > 0) & (table < 1))).flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"alphas_cumprod must be in (0, 1), got [{i}]={float(table[i])}")
    rising = torch.nonzero(table[1:] >= table[:-1]).flatten()
    if len(rising):
        i = int(rising[0]) + 1
        raise ValueError(
            f"alphas_cumprod must be strictly decreasing, got [{i - 1}]={float(table[i - 1])} "
            f"and [{i}]={float(table[i])}"
        )
    return table


def discrete_schedule(alphas_cumprod, name: str | None = None) -> VPSchedule:
    """`VPSchedule.discrete` of the betas that give this table: timestep k at t = (k + 1) / N,
    where alpha^2 is alphas_cumprod[k] (to float64 rounding of the cumulative product)."""
    table = check_alphas_cumprod(alphas_cumprod)
    # beta_k = 1 - a_k / a_{k-1}; expm1 of the log ratio keeps the small betas' digits
    log_table = torch.log(table)
    betas = -torch.expm1(torch.diff(log_table, prepend=torch.zeros(1, dtype=DTYPE)))
    return VPSchedule.discrete(betas, name=name or f"VP discrete ({len(table)} steps)")


def from_discrete(
    net,
    alphas_cumprod,
    prediction: str,
    *,
    timestep: str = "nearest",
    dtype: torch.dtype | None = None,
    name: str = "discrete network",
    schedule_name: str | None = None,
) -> DiffusionModel:
    """A network net(x_t, timestep) trained on `alphas_cumprod`, on `discrete_schedule(table)`.

    `timestep="nearest"` feeds an integer (long) timestep, the nearest in log-SNR, as models
    trained at integer timesteps need; "interpolate" feeds the fractional timestep between the
    two neighbours (in the network's dtype). Either way the output is read as a prediction at
    the continuous t, so a grid of the table's times (`table_times`) calls the network exactly
    at its timesteps. t outside [1 / N, 1] (timesteps 0..N-1) is refused in one line.
    """
    check_choice("prediction", prediction, PREDICTIONS)
    to_timestep = TIMESTEPS[timestep]
    schedule = discrete_schedule(alphas_cumprod, schedule_name)
    table = schedule.alphas_cumprod
    n = len(table)
    # log VE sigma of each timestep (k-diffusion's log_sigmas), increasing with k
    log_sigmas = 0.5 * (torch.log1p(-table) - torch.log(table))
    run_dtype, device = _dtype_and_device(net, dtype)

    def timestep_of(t: torch.Tensor) -> torch.Tensor:
        # written as "not inside" so that NaN is outside too
        outside = ~((t >= schedule.t_min - RANGE_SLACK) & (t <= schedule.t_max + RANGE_SLACK))
        if bool(outside.any()):
            bad = float(t.reshape(-1)[torch.nonzero(outside.reshape(-1))[0]])
            raise ValueError(
                f"t={bad:g} is outside the table's range [{schedule.t_min:g}, "
                f"{schedule.t_max:g}] (timesteps 0..{n - 1})"
            )
        log_sigma = -schedule.lambda_(t.clamp(schedule.t_min, schedule.t_max)).reshape(-1)
        hi = torch.searchsorted(log_sigmas, log_sigma).clamp(1, n - 1)
        lo = hi - 1
        w = (log_sigma - log_sigmas[lo]) / (log_sigmas[hi] - log_sigmas[lo])
        return to_timestep(lo, w.clamp(0.0, 1.0))

    def fn(x, t):
        return _run(net, x, timestep_of(torch.as_tensor(t, dtype=DTYPE)), run_dtype, device)

    return DiffusionModel(fn, prediction, schedule, name)


def table_times(alphas_cumprod, timesteps=None) -> torch.Tensor:
    """The schedule times t = (k + 1) / N of timesteps k (all of them, decreasing, by default):
    a grid on which a discrete network is called only at the noise levels it was trained on."""
    n = len(check_alphas_cumprod(alphas_cumprod))
    ks = torch.arange(n - 1, -1, -1) if timesteps is None else torch.as_tensor(timesteps)
    if bool(((ks < 0) | (ks > n - 1)).any()):
        raise ValueError(f"timesteps must be in 0..{n - 1}, got {ks.tolist()}")
    return VPSchedule.timestep_to_t(ks, n)
