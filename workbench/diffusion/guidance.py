"""Guidance as model wrappers, and one registry of every guidance method.

Each deterministic method wraps models into a new `DiffusionModel` that any solver in SOLVERS
samples; the particle methods (Feynman-Kac SMC, SVDD; in `smc.py`) are samplers returning a
`ParticleResult`. `GUIDANCE[name].sample(problem, x_T, scale=..., solver=..., steps=...)` runs
either kind the same way, so the explorer and the notebook never branch on the method.
`GUIDANCE` is a `workbench.registry.Registry`: an unknown name lists the valid ones, and each
method carries its display label. Every guided model carries a content key (method, scale,
problem), so `workbench.memo` caches of solves, references and statistics key by it.

- `cfg`: classifier-free guidance, out_u + w (out_c - out_u), in the noise or the data form.
  For a fixed schedule the two are the same model: x0 is affine in eps with coefficients shared
  by both branches, and the weights 1 - w and w sum to 1. Options:
  - guidance rescale (Lin et al. 2023): the guided output's per-sample RMS reset to the
    conditional one's, blended by phi. Images use the std over pixels; over two coordinates
    the std only measures their difference, so the RMS (the std of a zero-mean output) is
    used. The registry applies it in the data form: in the noise form the guided eps passes
    through 0 near every mode, where resetting its size makes the field discontinuous (an
    exact ODE solve then took minutes instead of a second);
  - a guidance interval (Kynkäänniemi et al. 2024): scale w only while the VE-equivalent
    noise level sigma / alpha lies in (lo, hi], the conditional model (w = 1) elsewhere;
  - dynamic thresholding (Imagen): x0 clipped to s = max(quantile_p(|x0|), R) and scaled by
    R / s, per sample. Imagen's R = 1 is the range of image data; here R is the data's own
    range (the 99.5% quantile of |x_0| coordinates), since a 2-D mixture lives on its own
    scale. With two coordinates the per-sample quantile is nearly max |x0_i|: predictions
    outside the box [-R, R]^2 are pulled back onto it along their own direction.
- `classifier_guidance`: the unconditional score plus w grad log p(c | x_t) of the mixture's
  exact class posterior, by automatic differentiation (torch.func, so DPM-Solver-v3's
  statistics can differentiate through it). By Bayes' rule it equals CFG with exact models.
- `autoguidance` (Karras et al. 2024): CFG in the data form with a bad version of the same
  conditional model in place of the unconditional one: here the class's mixture with every
  component std inflated (a real smaller network as the bad model: `workbench.models.autoguidance`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch

from workbench.diffusion import smc
from workbench.diffusion.models import DiffusionModel, convert
from workbench.diffusion.sampling import SampleResult, sample
from workbench.diffusion.schedules import DTYPE, NoiseSchedule, VPSchedule
from workbench.registry import Registry, check_choice
from workbench.toy.mixture import GaussianMixture
from workbench.toy.tilted import TiltedTarget, inflated

FORMS = ("noise", "data")
TARGETS = ("guidance", "autoguidance")  # the tilted targets a method aims at
# Kynkäänniemi et al.'s interval for EDM2 on ImageNet-512 in EDM's sigma (= sigma / alpha),
# whose data also have unit-order scale: guidance off at the highest and lowest noise levels.
DEFAULT_INTERVAL = (0.28, 5.42)
DEFAULT_RESCALE = 0.7  # Lin et al.'s recommended phi
DEFAULT_CANDIDATES = 8  # SVDD's M in the registry


# ------------------------------------------------------------------ dynamic thresholding
@dataclass(frozen=True)
class DynamicThreshold:
    """Imagen's dynamic thresholding of x0 with the data range R instead of Imagen's 1."""

    data_range: float
    percentile: float = 0.995

    def __post_init__(self) -> None:
        if not (math.isfinite(self.data_range) and self.data_range > 0):
            raise ValueError(f"data_range must be positive and finite, got {self.data_range}")
        if not 0 < self.percentile <= 1:
            raise ValueError(f"percentile must be in (0, 1], got {self.percentile}")

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        s = torch.clamp(_row_quantile(x0.abs(), self.percentile), min=self.data_range)[:, None]
        return torch.minimum(torch.maximum(x0, -s), s) * (self.data_range / s)


def _row_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile(values, q, dim=1) (linear interpolation) from a sort, which forward-mode
    AD supports (DPM-Solver-v3's statistics differentiate the model with torch.func.jvp)."""
    ordered = torch.sort(values, dim=1).values
    position = q * (values.shape[1] - 1)
    lo = math.floor(position)
    hi = min(lo + 1, values.shape[1] - 1)
    return ordered[:, lo] + (position - lo) * (ordered[:, hi] - ordered[:, lo])


def data_range(mixture: GaussianMixture, quantile: float = 0.995, n: int = 200_000) -> float:
    """The `quantile` of |x_0| over all coordinates of data samples (fixed seed)."""
    return float(torch.quantile(mixture.sample(n, seed=12345).abs().flatten(), quantile))


# ------------------------------------------------------------------ classifier-free guidance
def cfg(
    model_c: DiffusionModel,
    model_u: DiffusionModel,
    scale: float,
    *,
    form: str = "noise",
    rescale: float = 0.0,
    interval: tuple[float, float] | None = None,
    threshold: DynamicThreshold | None = None,
    name: str | None = None,
) -> DiffusionModel:
    """Classifier-free guidance out_u + scale (out_c - out_u) as a model (see the module)."""
    schedule = _shared_schedule(model_c, model_u)
    _check_scale(scale)
    check_choice("form", form, FORMS)
    if not 0.0 <= rescale <= 1.0:
        raise ValueError(f"rescale (phi) must be in [0, 1], got {rescale}")
    if interval is not None and not 0 <= interval[0] < interval[1]:
        raise ValueError(f"interval must be (lo, hi) with 0 <= lo < hi, got {interval}")

    def fn(x, t):
        out_c = convert(
            model_c.fn(x, t), source=model_c.prediction, target=form, x=x, t=t, schedule=schedule
        )
        out_u = convert(
            model_u.fn(x, t), source=model_u.prediction, target=form, x=x, t=t, schedule=schedule
        )
        w = scale if interval is None else _interval_scale(schedule, t, scale, interval)
        guided = out_u + w * (out_c - out_u)
        if rescale > 0:
            guided = _rescaled(guided, out_c, rescale)
        if threshold is not None:
            guided = _thresholded(guided, form, x, t, schedule, threshold)
        return guided

    return DiffusionModel(fn, form, schedule, name or f"CFG w={scale:g} ({form})")


def _rescaled(guided: torch.Tensor, conditional: torch.Tensor, phi: float) -> torch.Tensor:
    """Lin et al.'s rescale with per-sample RMS over the coordinates (see the module)."""
    ratio = _rms(conditional) / _rms(guided).clamp_min(1e-300)
    return phi * guided * ratio + (1 - phi) * guided


def _rms(values: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((values**2).mean(1, keepdim=True))


def _interval_scale(schedule: NoiseSchedule, t, scale: float, interval) -> torch.Tensor:
    """scale inside lo < sigma/alpha <= hi, else 1; a tensor (no Python branch on t, which
    torch.func transforms may carry)."""
    level = schedule.sigma(t) / schedule.alpha(t)
    inside = (level > interval[0]) & (level <= interval[1])
    return torch.where(inside, torch.as_tensor(scale, dtype=DTYPE), torch.ones((), dtype=DTYPE))


def _thresholded(guided, form, x, t, schedule, threshold: DynamicThreshold) -> torch.Tensor:
    if form == "data":
        return threshold(guided)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    x0 = threshold((x - sigma * guided) / alpha)
    return (x - alpha * x0) / sigma


# ------------------------------------------------------------------ classifier guidance
def class_log_posterior(
    mixture: GaussianMixture, label: int, x: torch.Tensor, alpha, sigma
) -> torch.Tensor:
    """(N,) log p(c = label | x_t), from the component log-densities (stable far from c)."""
    component = mixture.component_log_probs(x, alpha, sigma)
    in_class = mixture.labels == int(label)
    return torch.logsumexp(component[:, in_class], 1) - torch.logsumexp(component, 1)


def class_log_posterior_gradient(
    mixture: GaussianMixture, label: int, x: torch.Tensor, alpha, sigma
) -> torch.Tensor:
    """(N, D) grad_x log p(c | x_t) by torch.func.grad (points are independent, so the
    gradient of the sum is each point's gradient)."""
    return torch.func.grad(lambda y: class_log_posterior(mixture, label, y, alpha, sigma).sum())(x)


def classifier_guidance(
    mixture: GaussianMixture,
    label: int,
    schedule: NoiseSchedule,
    scale: float,
    *,
    form: str = "noise",
) -> DiffusionModel:
    """Exact classifier guidance: score_u + scale grad log p(c | x_t), as noise or data."""
    _check_scale(scale)
    check_choice("form", form, FORMS)
    mixture.condition(label)  # a clear error for an unknown label

    def fn(x, t):
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        gradient = class_log_posterior_gradient(mixture, label, x, alpha, sigma)
        x0_u = mixture.denoise(x, alpha, sigma)
        if form == "data":  # x0 = (x + sigma^2 score) / alpha
            return x0_u + scale * sigma**2 / alpha * gradient
        return (x - alpha * x0_u) / sigma - scale * sigma * gradient  # eps = -sigma score

    return DiffusionModel(fn, form, schedule, f"classifier guidance w={scale:g} ({form})")


# ------------------------------------------------------------------ autoguidance
def autoguidance(
    model_good: DiffusionModel, model_bad: DiffusionModel, scale: float
) -> DiffusionModel:
    """D_bad + scale (D_good - D_bad) (Karras et al. 2024): CFG in the data form."""
    return cfg(model_good, model_bad, scale, form="data", name=f"autoguidance w={scale:g}")


# ------------------------------------------------------------------ rewards
def class_reward(mixture: GaussianMixture, label: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """x0 -> 1 where the exact clean posterior's argmax is `label`, else 0 (not differentiable)."""
    column = int(torch.nonzero(mixture.classes == int(label)).flatten()[0])

    def reward(x0: torch.Tensor) -> torch.Tensor:
        return (mixture.class_posterior(x0, 1.0, 0.0).argmax(1) == column).to(DTYPE)

    return reward


# ------------------------------------------------------------------ the problem
@dataclass(eq=False)
class GuidanceProblem:
    """A class-conditional mixture, the class to sample and the schedule: every model and
    exact target the guidance methods need (built once; their content keys the caches)."""

    mixture: GaussianMixture
    label: int
    schedule: NoiseSchedule
    bad_factor: float = 1.5  # autoguidance: the bad model's stds are this many times larger

    def __post_init__(self) -> None:
        self.mixture.condition(self.label)  # raises for an unknown label

    @classmethod
    def two_class(cls, label: int = 1) -> GuidanceProblem:
        return cls(GaussianMixture.two_class(), label, VPSchedule.linear_ddpm())

    def content_key(self):
        """What defines the problem (it keys workbench.memo entries of its guided models)."""
        return ("GuidanceProblem", self.mixture, self.label, self.schedule, self.bad_factor)

    @cached_property
    def model_c(self) -> DiffusionModel:
        return self.mixture.denoiser(self.schedule, self.label)

    @cached_property
    def model_u(self) -> DiffusionModel:
        return self.mixture.denoiser(self.schedule)

    @cached_property
    def model_bad(self) -> DiffusionModel:
        bad = inflated(self.mixture.condition(self.label), self.bad_factor)
        return bad.denoiser(self.schedule)

    @cached_property
    def threshold(self) -> DynamicThreshold:
        return DynamicThreshold(data_range(self.mixture))

    def target(self, kind: str, scale: float) -> TiltedTarget:
        if check_choice("target", kind, TARGETS) == "guidance":
            return TiltedTarget.guidance(self.mixture, self.label, scale)
        return TiltedTarget.autoguidance(self.mixture, self.label, scale, self.bad_factor)

    def plain_model(self, which: str) -> DiffusionModel:
        """The unguided model a method reduces to at some scale (see GuidanceMethod)."""
        return {"conditional": self.model_c, "unconditional": self.model_u, "bad": self.model_bad}[
            which
        ]


# ------------------------------------------------------------------ the registry
@dataclass(frozen=True)
class GuidanceMethod:
    """One guidance method: a model builder (deterministic) or a particle sampler.

    `reduces_to` lists exact identities: at that scale the method is that unguided model
    ("conditional", "unconditional", "bad"); tests check each to 1e-8.
    """

    name: str
    label: str  # what the explorer's dropdown shows
    description: str
    target: str = "guidance"
    reduces_to: Mapping[float, str] = field(default_factory=dict)
    build: Callable[[GuidanceProblem, float], DiffusionModel] | None = None
    run: Callable[..., smc.ParticleResult] | None = None

    @property
    def particle(self) -> bool:
        return self.run is not None

    def model(self, problem: GuidanceProblem, scale: float) -> DiffusionModel:
        """The guided model at `scale`, content-keyed by (method, scale, problem)."""
        if self.build is None:
            raise ValueError(f"{self.name} is a particle method: it has no single guided model")
        content = ("guidance", self.name, float(scale), problem.content_key())
        return replace(self.build(problem, float(scale)), content=content)

    def sample(
        self,
        problem: GuidanceProblem,
        x_T: torch.Tensor,
        *,
        scale: float,
        solver: str = "dpmpp_2m",
        steps: int = 10,
        seed: int = 0,
        model: DiffusionModel | None = None,
        solver_options: Mapping[str, object] | None = None,
    ) -> SampleResult:
        """Guided samples from x_T. Deterministic methods solve with `solver` (`model`, if
        given, is this method's model at `scale`, e.g. cached); particle methods ignore
        `solver` and step their own reverse SDE. `solver_options` are the solver's own (e.g.
        DPM-Solver-v3's statistics)."""
        if self.run is not None:
            return self.run(problem, x_T, float(scale), steps, seed)
        model = model or self.model(problem, scale)
        return sample(
            model, x_T, solver=solver, steps=steps, seed=seed, solver_options=solver_options
        )


def _cfg_builder(**options) -> Callable[[GuidanceProblem, float], DiffusionModel]:
    def build(problem: GuidanceProblem, scale: float) -> DiffusionModel:
        extra = dict(options)
        if extra.pop("threshold", False):
            extra["threshold"] = problem.threshold
        return cfg(problem.model_c, problem.model_u, scale, **extra)

    return build


def _run_fk_smc(problem: GuidanceProblem, x_T, scale, steps, seed) -> smc.ParticleResult:
    return smc.fk_smc(problem.model_c, problem.model_u, x_T, scale=scale, steps=steps, seed=seed)


def _run_svdd(problem: GuidanceProblem, x_T, scale, steps, seed) -> smc.ParticleResult:
    base = cfg(problem.model_c, problem.model_u, scale)
    reward = class_reward(problem.mixture, problem.label)
    return smc.svdd(base, x_T, reward=reward, candidates=DEFAULT_CANDIDATES, steps=steps, seed=seed)


GUIDANCE: Registry[GuidanceMethod] = Registry("guidance method")
for _method in (
    GuidanceMethod(
        "cfg",
        "classifier-free guidance (CFG)",
        "classifier-free guidance eps_u + w (eps_c - eps_u)",
        reduces_to={0.0: "unconditional", 1.0: "conditional"},
        build=_cfg_builder(),
    ),
    GuidanceMethod(
        "cfg_rescale",
        f"CFG + guidance rescale (φ = {DEFAULT_RESCALE})",
        f"CFG with guidance rescale phi = {DEFAULT_RESCALE} (Lin et al. 2023)",
        reduces_to={1.0: "conditional"},
        build=_cfg_builder(rescale=DEFAULT_RESCALE, form="data"),
    ),
    GuidanceMethod(
        "cfg_interval",
        "CFG + guidance interval",
        "CFG only for sigma/alpha in (0.28, 5.42] (Kynkäänniemi et al. 2024)",
        reduces_to={1.0: "conditional"},
        build=_cfg_builder(interval=DEFAULT_INTERVAL),
    ),
    GuidanceMethod(
        "cfg_threshold",
        "CFG + dynamic thresholding",
        "CFG with dynamic thresholding of x0 to the data range (Imagen)",
        build=_cfg_builder(threshold=True),
    ),
    GuidanceMethod(
        "classifier",
        "exact classifier guidance",
        "exact classifier guidance: score_u + w grad log p(c | x_t)",
        reduces_to={0.0: "unconditional", 1.0: "conditional"},
        build=lambda problem, scale: classifier_guidance(
            problem.mixture, problem.label, problem.schedule, scale
        ),
    ),
    GuidanceMethod(
        "autoguidance",
        "autoguidance (inflated-variance bad model)",
        "D_bad + w (D_good - D_bad), bad = inflated variance (Karras et al. 2024)",
        target="autoguidance",
        reduces_to={0.0: "bad", 1.0: "conditional"},
        build=lambda problem, scale: autoguidance(problem.model_c, problem.model_bad, scale),
    ),
    GuidanceMethod(
        "fk_smc",
        "Feynman-Kac corrector SMC",
        "Feynman-Kac corrector SMC on the CFG reverse SDE (Skreta et al. 2025)",
        run=_run_fk_smc,
    ),
    GuidanceMethod(
        "svdd",
        f"SVDD (best of {DEFAULT_CANDIDATES} candidates)",
        f"SVDD: best of M = {DEFAULT_CANDIDATES} SDE draws by class reward (Li et al. 2024)",
        run=_run_svdd,
    ),
):
    GUIDANCE.add(_method.name, _method, label=_method.label)


def method_names(particle: bool | None = None) -> list[str]:
    """Registered guidance methods (only particle or only model methods if asked)."""
    return [n for n, m in GUIDANCE.items() if particle is None or m.particle == particle]


# ------------------------------------------------------------------ checks
def _shared_schedule(model_a: DiffusionModel, model_b: DiffusionModel) -> NoiseSchedule:
    if model_a.schedule.name != model_b.schedule.name:
        raise ValueError(
            f"the models use different schedules: {model_a.schedule.name} and "
            f"{model_b.schedule.name}"
        )
    return model_a.schedule


def _check_scale(scale: float) -> None:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise ValueError(f"the guidance scale must be a finite number, got {scale!r}")
