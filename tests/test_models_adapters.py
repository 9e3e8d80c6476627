"""Model adapters: the exact mixture model disguised as networks, and tiny diffusers UNets
saved to a temporary folder and loaded back.

The round trip is exact: a network that answers with the mixture's exact noise prediction at
its integer timestep's alphas_cumprod, wrapped by `from_discrete`, must give the exact model's
solves to 1e-10 (measured at most 9e-14) on grids of the table's timesteps; a network whose
timestep is off by one misses by 1.5e-2 to 1.7e-2, so the check catches it.
"""

from __future__ import annotations

import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from workbench.diffusion import PREDICTIONS, VPSchedule, sample  # noqa: E402
from workbench.models import (  # noqa: E402
    TIME_INPUTS,
    from_denoiser,
    from_diffusers,
    from_discrete,
    table_times,
)
from workbench.toy import GaussianMixture  # noqa: E402

TOLERANCE = 1e-10  # float64 rounding of the same formulas: measured <= 9e-14
MIXTURE = GaussianMixture.ring()
# diffusers' DDPM training table: 1000 linear betas 1e-4..0.02, stored in float32
TABLE = diffusers.DDPMScheduler().alphas_cumprod
SOLVERS = ["ddim", "dpmpp_2m", "dpmpp_3m", "unipc_bh2", "deis"]


def x_T(n: int = 64, d: int = 2, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class DiscreteEps(torch.nn.Module):
    """The exact mixture as a DDPM eps network: integer timestep k -> E[eps | x_t] at
    alpha^2 = alphas_cumprod[k + shift] (shift != 0: a network with an off-by-one bug)."""

    def __init__(self, table, shift: int = 0):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float64))
        self.shift = shift

    def forward(self, x, timestep):
        index = (timestep + self.shift).clamp(0, len(self.table) - 1)
        a = self.table[index]  # a float timestep cannot index: only integers are accepted
        return MIXTURE.noise_prediction(x, a.sqrt(), (1 - a).sqrt())


class InterpolatedEps(DiscreteEps):
    """A network on fractional timesteps: log VE sigma interpolated between the two
    neighbouring timesteps (k-diffusion's `t_to_sigma`), then the exact noise prediction."""

    def forward(self, x, timestep):
        log_sigmas = 0.5 * (torch.log1p(-self.table) - torch.log(self.table))
        lo, hi = timestep.floor().long(), timestep.ceil().long()
        w = timestep - lo
        sigma_ve = torch.exp((1 - w) * log_sigmas[lo] + w * log_sigmas[hi])
        alpha = 1 / torch.sqrt(1 + sigma_ve**2)
        return MIXTURE.noise_prediction(x, alpha, sigma_ve * alpha)


def max_difference(model, reference, x, **options) -> float:
    ours = sample(model, x, **options).x
    exact = sample(reference, x, **options).x
    return (ours - exact).abs().max().item()


def diffusers_grid(steps: int = 10) -> torch.Tensor:
    """diffusers' DPM-Solver++ timesteps for `steps` steps, then timestep 0: table times."""
    scheduler = diffusers.DPMSolverMultistepScheduler()
    scheduler.set_timesteps(steps)
    return table_times(TABLE, [*scheduler.timesteps.tolist(), 0])


# ------------------------------------------------------------------ (a) round trip
@pytest.mark.parametrize("solver", SOLVERS)
def test_discrete_eps_network_reproduces_the_exact_model(solver):
    model = from_discrete(DiscreteEps(TABLE), TABLE, "noise")
    exact = MIXTURE.denoiser(model.schedule)
    x = x_T()
    for grid in (diffusers_grid(10), diffusers_grid(25)):
        assert max_difference(model, exact, x, solver=solver, steps=None, grid=grid) <= TOLERANCE


def test_the_schedule_is_the_table():
    model = from_discrete(DiscreteEps(TABLE), TABLE, "noise")
    alphas = model.schedule.alpha(table_times(TABLE, torch.arange(1000)))
    assert (alphas**2 - TABLE.to(torch.float64)).abs().max().item() <= 1e-15  # measured 1.7e-16


@pytest.mark.parametrize("shift", [1, -1])
def test_an_off_by_one_network_fails_the_round_trip(shift):
    model = from_discrete(DiscreteEps(TABLE, shift), TABLE, "noise")
    exact = MIXTURE.denoiser(model.schedule)
    for solver in SOLVERS:
        error = max_difference(
            model, exact, x_T(), solver=solver, steps=None, grid=diffusers_grid()
        )
        assert error > 1e3 * TOLERANCE  # measured 1.5e-2 to 1.7e-2


def test_interpolated_timesteps_reproduce_the_exact_model_between_the_table_times():
    # the default log-SNR grid and singlestep DPM-Solver's midpoints fall between timesteps
    model = from_discrete(InterpolatedEps(TABLE), TABLE, "noise", timestep="interpolate")
    exact = MIXTURE.denoiser(model.schedule)
    nearest = from_discrete(DiscreteEps(TABLE), TABLE, "noise")
    x = x_T()
    for options in ({"solver": "dpmpp_2m"}, {"solver": "dpm_solver", "order": 3}):
        assert max_difference(model, exact, x, steps=10, **options) <= TOLERANCE
        # rounding to the nearest timestep moves the noise level by up to half a table step
        # (measured 1.0e-3 for dpmpp_2m, 7.4e-4 for dpm_solver 3; interpolated: 3e-15)
        assert max_difference(nearest, exact, x, steps=10, **options) > 1e-4


class Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fed = []

    def forward(self, x, time):
        self.fed.append(time)
        return torch.zeros_like(x)


@pytest.mark.parametrize("t", [0.001, 0.0015, 0.2004, 0.37, 0.5, 0.8123, 1.0])
def test_timesteps_are_k_diffusions_nearest_and_interpolated_log_sigma(t):
    nearest, interpolated = Recorder(), Recorder()
    from_discrete(nearest, TABLE, "noise")(x_T(3), t)
    model = from_discrete(interpolated, TABLE, "noise", timestep="interpolate")
    model(x_T(3), t)
    table = TABLE.to(torch.float64)
    log_sigmas = 0.5 * torch.log((1 - table) / table)
    log_sigma = -model.schedule.lambda_(t)
    # nearest: argmin over the table of |log sigma - log sigma_k| (brute force)
    assert nearest.fed[0].dtype == torch.long
    assert nearest.fed[0].tolist() == [int((log_sigmas - log_sigma).abs().argmin())] * 3
    # interpolated: the fractional timestep's interpolated log sigma is t's log sigma
    k = interpolated.fed[0][0]
    lo, hi = int(k.floor()), int(k.ceil())
    back = log_sigmas[lo] + (k - lo) * (log_sigmas[hi] - log_sigmas[lo])
    assert abs(float(back - log_sigma)) <= 1e-12


# ------------------------------------------------------------------ continuous networks
def time_disguise(kind: str):
    """The exact denoiser as a network fed time `kind`, recovering alpha, sigma from it."""
    schedule = VPSchedule.linear()

    def alpha_sigma(time):
        if kind == "t":
            return schedule.alpha(time), schedule.sigma(time)
        if kind == "sigma":
            return torch.sqrt(1 - time**2), time
        if kind == "log_snr":
            return torch.sigmoid(time).sqrt(), torch.sigmoid(-time).sqrt()
        alpha = 1 / torch.sqrt(1 + time**2)  # ve_sigma
        return alpha, time * alpha

    def net(x, time):
        assert time.shape == (x.shape[0],)
        return MIXTURE.denoise(x, *alpha_sigma(time))

    return net, schedule


@pytest.mark.parametrize("kind", list(TIME_INPUTS))
def test_every_time_input_feeds_the_stated_time(kind):
    net, schedule = time_disguise(kind)
    model = from_denoiser(net, "data", schedule, time_input=kind)
    exact = MIXTURE.denoiser(schedule)
    assert max_difference(model, exact, x_T(), solver="dpmpp_2m", steps=10) <= TOLERANCE


def test_a_callable_time_input():
    schedule = VPSchedule.linear()
    net, _ = time_disguise("t")
    # a network trained on t in [0, 1000] (a continuous DDPM timestep)
    model = from_denoiser(
        lambda x, s: net(x, s / 1000), "data", schedule, time_input=lambda t: t * 1000
    )
    exact = MIXTURE.denoiser(schedule)
    assert max_difference(model, exact, x_T(), solver="unipc_bh2", steps=8) <= TOLERANCE


@pytest.mark.parametrize("kind", PREDICTIONS)
def test_every_prediction_kind_round_trips(kind):
    schedule = VPSchedule.cosine()
    exact = MIXTURE.denoiser(schedule)
    as_kind = exact.as_prediction(kind)
    model = from_denoiser(lambda x, t: as_kind(x, t[0]), kind, schedule)
    assert max_difference(model, exact, x_T(), solver="dpmpp_3m", steps=10) <= 1e-9


class TinyMLP(torch.nn.Module):
    def __init__(self, dtype):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(3, 16), torch.nn.SiLU(), torch.nn.Linear(16, 2)
        ).to(dtype)

    def forward(self, x, time):
        return self.layers(torch.cat([x, time[:, None]], 1))


def test_a_float32_network_is_fed_float32_and_answers_in_float64():
    net, schedule = TinyMLP(torch.float32), VPSchedule.linear()
    model = from_denoiser(net, "noise", schedule, time_input="log_snr")
    x, t = x_T(5), torch.tensor(0.3, dtype=torch.float64)
    out = model(x, t)
    time = (2 * schedule.lambda_(t)).float().expand(5)
    assert out.dtype == torch.float64
    assert torch.equal(out, net(x.float(), time).double())  # bit for bit
    assert out.grad_fn is None  # a plain call tracks no graph through the parameters


def test_gradients_flow_when_x_requires_them():
    net, schedule = TinyMLP(torch.float64), VPSchedule.linear()
    model = from_denoiser(net, "noise", schedule)
    x = x_T(4).requires_grad_()
    (grad,) = torch.autograd.grad(model(x, 0.5).sum(), x)
    x2 = x.detach().clone().requires_grad_()
    time = torch.full((4,), 0.5, dtype=torch.float64)
    (direct,) = torch.autograd.grad(net(x2, time).sum(), x2)
    assert torch.equal(grad, direct)
    # forward mode too (DPM-Solver-v3's statistics take Jacobian-vector products)
    v = x_T(4, seed=1)
    _, ours = torch.func.jvp(lambda y: model(y, 0.5), (x.detach(),), (v,))
    _, theirs = torch.func.jvp(lambda y: net(y, time), (x.detach(),), (v,))
    # measured 1.4e-17: with grad mode off the same products take another kernel
    assert (ours - theirs).abs().max().item() <= 1e-15


# ------------------------------------------------------------------ (b) diffusers UNets
def tiny_unet_2d(out_channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=out_channels,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    ).eval()


@pytest.fixture(scope="module")
def saved_unet(tmp_path_factory):
    """A seeded random UNet2DModel and its DDIM scheduler (v prediction) saved to a folder."""
    folder = tmp_path_factory.mktemp("unet2d")
    unet = tiny_unet_2d()
    unet.save_pretrained(folder)
    diffusers.DDIMScheduler(prediction_type="v_prediction").save_pretrained(folder)
    return folder, unet


def in_memory(unet, x, timestep, shape):
    with torch.no_grad():
        ks = torch.full((x.shape[0],), timestep)
        return unet(x.float().reshape(x.shape[0], *shape), ks).sample.reshape(x.shape).double()


def test_a_saved_unet_loads_back_bit_for_bit(saved_unet):
    folder, unet = saved_unet
    model = from_diffusers(folder)
    assert (model.prediction, len(model.schedule.alphas_cumprod)) == ("v", 1000)
    x = x_T(4, 64)
    for timestep, t in [(0, 0.001), (499, 0.5), (499, 0.50004), (999, 1.0)]:
        assert torch.equal(model(x, t), in_memory(unet, x, timestep, (1, 8, 8)))


def test_a_loaded_unet_samples_like_diffusers_own_ddim_loop(saved_unet):
    folder, unet = saved_unet
    model, x = from_diffusers(folder), x_T(4, 64)
    scheduler = diffusers.DDIMScheduler(prediction_type="v_prediction", clip_sample=False)
    scheduler.set_timesteps(5)
    theirs = x.float().reshape(4, 1, 8, 8)
    with torch.no_grad():
        for timestep in scheduler.timesteps:
            theirs = scheduler.step(unet(theirs, timestep).sample, timestep, theirs).prev_sample
    grid = table_times(TABLE, scheduler.timesteps)
    ours = sample(model, x, solver="ddim", steps=None, grid=grid, denoise_to_zero=True)
    assert ours.nfe == 5 and ours.x.dtype == torch.float64
    # diffusers steps in float32 (its alphas_cumprod and the sample): measured 5.2e-7
    assert (ours.x - theirs.reshape(4, 64).double()).abs().max().item() <= 1e-5


def test_a_pipeline_layout_and_a_subfolder(tmp_path, saved_unet):
    _, unet = saved_unet
    unet.save_pretrained(tmp_path / "unet")
    diffusers.DDPMScheduler().save_pretrained(tmp_path / "scheduler")
    x = x_T(2, 64)
    for model in (from_diffusers(tmp_path), from_diffusers(tmp_path, subfolder="unet")):
        assert model.prediction == "noise"
        assert torch.equal(model(x, 0.25), in_memory(unet, x, 249, (1, 8, 8)))


def test_a_learned_variance_unet_answers_with_its_first_channels(tmp_path):
    unet = tiny_unet_2d(out_channels=2)
    unet.save_pretrained(tmp_path)
    diffusers.DDPMScheduler(variance_type="learned_range").save_pretrained(tmp_path)
    x = x_T(2, 64)
    with torch.no_grad():
        full = unet(x.float().reshape(2, 1, 8, 8), torch.full((2,), 99)).sample
    assert torch.equal(from_diffusers(tmp_path)(x, 0.1), full[:, :1].reshape(2, 64).double())


def test_a_saved_unet_1d_loads_back_and_samples(tmp_path):
    torch.manual_seed(0)
    unet = diffusers.UNet1DModel(
        sample_size=16,
        in_channels=2,
        out_channels=2,
        block_out_channels=(8, 16),
        time_embedding_type="positional",
        use_timestep_embedding=True,
        flip_sin_to_cos=False,
        freq_shift=1.0,
        out_block_type="OutConv1DBlock",
        mid_block_type="MidResTemporalBlock1D",
        down_block_types=("DownResnetBlock1D", "DownResnetBlock1D"),
        up_block_types=("UpResnetBlock1D",),
        act_fn="swish",
        norm_num_groups=4,
    ).eval()
    unet.save_pretrained(tmp_path)
    diffusers.DDPMScheduler(prediction_type="sample").save_pretrained(tmp_path)
    model, x = from_diffusers(tmp_path), x_T(3, 32)
    assert model.prediction == "data"
    assert torch.equal(model(x, 0.7), in_memory(unet, x, 699, (2, 16)))
    result = sample(model, x, solver="dpmpp_2m", steps=4)
    assert result.nfe == 4 and bool(torch.isfinite(result.x).all())


# ------------------------------------------------------------------ (c) bad input
def one_line_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match) as error:
        call()
    assert "\n" not in str(error.value)


def test_bad_input_is_one_line(tmp_path, saved_unet, monkeypatch):
    schedule, net = VPSchedule.linear(), TinyMLP(torch.float64)
    one_line_error(lambda: from_denoiser(net, "eps", schedule), "unknown prediction 'eps'")
    one_line_error(lambda: from_discrete(net, TABLE, "epsilon"), "unknown prediction")
    one_line_error(lambda: from_denoiser(net, "noise", schedule, time_input="tau"), "time input")
    one_line_error(lambda: from_discrete(net, TABLE, "noise", timestep="round"), "timestep")
    rising = TABLE.flip(0)
    one_line_error(
        lambda: from_discrete(net, rising, "noise"), r"decreasing, got \[0\]=4.0\d+e-05 and \[1\]"
    )
    flat = torch.tensor([0.9, 0.8, 0.8, 0.7])
    one_line_error(lambda: from_discrete(net, flat, "noise"), r"decreasing, got \[1\]=0.8")
    one_line_error(lambda: from_discrete(net, [1.0, 0.5], "noise"), r"in \(0, 1\), got \[0\]")
    one_line_error(lambda: from_discrete(net, [[0.9, 0.5]], "noise"), "1-D")
    model = from_discrete(DiscreteEps(TABLE), TABLE, "noise")
    for t in (0.0005, 1.5, float("nan")):
        one_line_error(lambda t=t: model(x_T(2), t), r"outside the table's range \[0.001, 1\]")
    wrong = from_denoiser(lambda x, time: x[:, :1], "noise", schedule)
    one_line_error(lambda: wrong(x_T(2), 0.5), r"returned \(2, 1\) for an input of shape \(2, 2\)")
    one_line_error(lambda: from_diffusers(tmp_path / "missing"), "no such folder")
    one_line_error(lambda: from_diffusers(tmp_path), "no diffusers model")
    folder, unet = saved_unet
    unet.save_pretrained(tmp_path / "alone")
    one_line_error(lambda: from_diffusers(tmp_path / "alone"), "no scheduler config")
    one_line_error(lambda: from_diffusers(folder, subfolder="unet"), "no diffusers model")
    (tmp_path / "alone" / "scheduler_config.json").write_text('{"_class_name": "EulerScheduler"}')
    one_line_error(lambda: from_diffusers(tmp_path / "alone"), "unknown diffusers scheduler")
    diffusers.DDPMScheduler(prediction_type="flow").save_pretrained(tmp_path / "alone")
    one_line_error(lambda: from_diffusers(tmp_path / "alone"), "unknown prediction_type 'flow'")
    diffusers.DDPMScheduler().save_pretrained(tmp_path / "alone")
    (tmp_path / "alone" / "diffusion_pytorch_model.safetensors").unlink()
    one_line_error(lambda: from_diffusers(tmp_path / "alone"), "pickled weights are never read")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if it were not installed
    one_line_error(lambda: from_diffusers(folder), "pip install diffusers")
