"""The studies behind notebooks 03 and 04, defined once: sizes (SMOKE and full), sweeps,
coordinate checks, the sentences the notebooks print and the metrics they record. The
notebooks, their explorers and the served app all call these, so they share one disk cache
(workbench.sweep) and, within a process, one memo (workbench.memo).

SMOKE sizes finish in seconds and run every code path; full sizes reproduce the claims.

    study = width_study(smoke=False)            # notebook 03
    adam = study.transfer([("sp", "adam"), ("mup", "adam")])
    adam.table, adam.drift[("mup", "adam")], study.summaries()   # the explorer's sweeps
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import pandas as pd

from workbench.claims import Claim, readable
from workbench.memo import Memo
from workbench.registry import Registry
from workbench.scaling.coord_check import coordinate_check
from workbench.scaling.optimizers import SCALING_OPTIMIZERS
from workbench.scaling.parametrizations import PARAMETRIZATIONS
from workbench.scaling.summaries import CoordChecks, Transfer, TransferSweep
from workbench.scaling.sweeps import DEFAULT_BATCH, lr_sweep
from workbench.scaling.tasks import DEFAULT_TASK, get_task

# log2(lr) ranges per (parametrization, optimizer), wide enough to bracket every width's optimum
WIDTH_RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("sp", "adam"): (-14, -1),
    ("mup", "adam"): (-12, -1),
    ("umup", "adam"): (-8, 3),
    ("sp", "sgd"): (-6, 6),
    ("mup", "sgd"): (-6, 6),
    ("mup", "adam_atan2"): (-12, -1),
}
# the coordinate check's learning rate per parametrization (u-muP's rates are absolute)
COORD_LRS = {"sp": 2.0**-6, "mup": 2.0**-6, "umup": 2.0**-1}


@dataclass(frozen=True)
class DepthConfig:
    """A residual configuration of notebook 04: branch exponent and block learning rates."""

    alpha: float
    lr_correction: bool  # whether the blocks' learning rates get the depth correction
    label: str


DEPTH_CONFIGS: Registry[DepthConfig] = Registry("depth configuration")
DEPTH_CONFIGS.add("alpha0_global", DepthConfig(0.0, False, "alpha 0, global lr (plain ResNet)"))
DEPTH_CONFIGS.add("alpha0_corrected", DepthConfig(0.0, True, "alpha 0, lr x L^-1"))
DEPTH_CONFIGS.add("alpha_half_global", DepthConfig(0.5, False, "alpha 1/2, global lr"))
DEPTH_CONFIGS.add(
    "alpha_half_corrected", DepthConfig(0.5, True, "alpha 1/2, lr x L^-1/2 (Depth-muP)")
)
DEPTH_CONFIGS.add("alpha1", DepthConfig(1.0, True, "alpha 1 (no correction needed)"))
COORD_ALPHAS = (0.0, 0.5, 1.0)
DEPTH_LOG2_RANGE = (-14, 0)
# float64: a deep plain ResNet's training is chaotic near its optimum, so float32 rounding
# (1e-7) grows to ~1% of the final loss in 150 steps; at depth 32 the seed-averaged curve is
# flat within 0.05 over 2^-11..2^-7, so the 5-point parabola through those points (and the
# grid minimum it is centred on) follows the rounding: the fitted optimum moved 0.15 octaves
# between MKL_CBWR=COMPATIBLE and the default path here, 0.5 on an AVX-512 Xeon.
# In float64 every metric of the full run agrees to 2e-14 across code paths (the full notebook
# takes ~1.8x as long: 171 s against 96 s here).
DEPTH_DTYPE = "float64"

# the papers whose claims notebooks 03 and 04 measure, cited as the notebooks cite them
TENSOR_PROGRAMS_V = "Yang et al. 2022, arXiv:2203.03466"
U_MUP = "Blake et al. 2024, arXiv:2407.17465"
ADAM_ATAN2 = "Everett et al. 2024, arXiv:2407.05872"
DEPTHWISE_TRANSFER = "Bordelon et al. 2023, arXiv:2309.16620"
DEPTH_MUP = "Yang et al. 2023, arXiv:2310.02244"

# Notebook 03's verdict: each claim tied to a metric the notebook records. "Transfers" means the
# fitted optimum moves less than an octave from the narrowest to the widest model.
WIDTH_CLAIMS = (
    Claim(
        "Under SP the optimal Adam learning rate falls as the model widens (by more than "
        "2 octaves, narrowest to widest)",
        TENSOR_PROGRAMS_V,
        "sp.adam.drift_octaves",
        above=2.0,
    ),
    Claim(
        "Under muP the optimal Adam learning rate transfers across width (moves less than an "
        "octave)",
        TENSOR_PROGRAMS_V,
        "mup.adam.drift_octaves",
        below=1.0,
    ),
    Claim(
        "Under u-muP it transfers too (moves less than an octave)",
        U_MUP,
        "umup.adam.drift_octaves",
        below=1.0,
    ),
    Claim(
        "Tuning the narrowest model and training the widest at its optimum costs less loss "
        "under muP than under SP",
        TENSOR_PROGRAMS_V,
        "mup.adam.transfer_penalty",
        below="sp.adam.transfer_penalty",
    ),
    Claim(
        "Coordinate check: under SP one Adam step makes activations grow with the width",
        TENSOR_PROGRAMS_V,
        "coord_check.SP.verdict",
        equals="growing",
    ),
    Claim(
        "Coordinate check: under muP every layer stays flat",
        TENSOR_PROGRAMS_V,
        "coord_check.muP.verdict",
        equals="flat",
    ),
    Claim(
        "Coordinate check: under u-muP every layer stays flat",
        U_MUP,
        "coord_check.u-muP.verdict",
        equals="flat",
    ),
    Claim(
        "muP's SGD rules (MuSGD) transfer the SGD learning rate across width",
        TENSOR_PROGRAMS_V,
        "mup.sgd.drift_octaves",
        below=1.0,
    ),
    Claim(
        "Under muP Adam-atan2's optimum transfers like Adam's (moves less than an octave)",
        ADAM_ATAN2,
        "mup.adam_atan2.drift_octaves",
        below=1.0,
    ),
    Claim(
        "Adam-atan2's optimum sits within an octave of Adam's at every width",
        ADAM_ATAN2,
        "mup.adam_atan2.max_offset_from_adam",
        below=1.0,
    ),
)

# Notebook 04's verdict, from the metrics it records.
DEPTH_CLAIMS = (
    Claim(
        "In a plain ResNet (alpha 0, one global learning rate) the optimal learning rate falls "
        "as blocks are added (by more than an octave)",
        DEPTHWISE_TRANSFER,
        "alpha0_global.drift_octaves",
        above=1.0,
    ),
    Claim(
        "With Depth-muP (alpha 1/2, block learning rates x L^-1/2) the optimum transfers "
        "across depth (moves less than an octave)",
        DEPTH_MUP,
        "alpha_half_corrected.drift_octaves",
        below=1.0,
    ),
    Claim(
        "Tuning the shallowest model and training the deepest at its optimum costs less loss "
        "with Depth-muP than in a plain ResNet",
        DEPTH_MUP,
        "alpha_half_corrected.transfer_penalty",
        below="alpha0_global.transfer_penalty",
    ),
    Claim(
        "Coordinate check: with alpha 0 the residual stream grows with depth",
        DEPTHWISE_TRANSFER,
        "coord_check.alpha0.verdict",
        equals="growing",
    ),
    Claim(
        "Coordinate check: with 1/sqrt(depth) branches (alpha 1/2) it stays flat",
        DEPTHWISE_TRANSFER,
        "coord_check.alpha0.5.verdict",
        equals="flat",
    ),
)

# the sizes of each profile: (SMOKE, full)
WIDTHS = ((16, 32, 64), (16, 32, 64, 128, 256))
COORD_WIDTHS = ((32, 64, 128), (32, 64, 128, 256, 512))
DEPTHS = ((2, 4, 8), (2, 4, 8, 16, 32))
SMOKE_STEPS, SMOKE_SEEDS, SMOKE_COORD_STEPS = 30, 1, 2  # and a 2-octave learning-rate grid
FULL_STEPS, FULL_SEEDS, FULL_COORD_STEPS = 150, 2, 4

_SWEEPS = Memo("learning-rate transfer sweeps", maxsize=32)
_SUMMARIES = Memo("learning-rate transfer summaries", maxsize=32)


def log2_grid(low: int, high: int, step: int = 1) -> list[float]:
    """Learning rates 2**low, 2**(low + step), ... up to 2**high."""
    for name, value in (("low", low), ("high", high), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"log2 lr range: {name} must be an integer exponent, got {value!r}")
    if not low < high:
        raise ValueError(f"log2 lr range must run low < high, got ({low}, {high})")
    if step < 1:
        raise ValueError(f"log2 lr range: step must be >= 1, got {step}")
    return [2.0**k for k in range(low, high + 1, step)]


@dataclass(frozen=True)
class StudySize:
    """One profile of a study: what is swept, how long, and the coordinate check's sizes."""

    values: tuple[int, ...]  # the widths (notebook 03) or depths (04) swept
    steps: int
    seeds: tuple[int, ...]
    octaves: int  # spacing of the log2 learning-rate grid
    coord_values: tuple[int, ...]  # the widths or depths of the coordinate check
    coord_steps: int

    @classmethod
    def of(cls, sizes, coord_sizes, smoke: bool, steps: int, seeds: int) -> StudySize:
        """SMOKE: the small sizes, 30 steps, one seed, a 2-octave grid; full: `steps` and
        `seeds` (the notebook's parameters)."""
        if smoke:
            steps, seeds, octaves, coord_steps = SMOKE_STEPS, SMOKE_SEEDS, 2, SMOKE_COORD_STEPS
        else:
            octaves, coord_steps = 1, FULL_COORD_STEPS
        profile = 0 if smoke else 1
        return cls(
            sizes[profile], steps, tuple(range(seeds)), octaves, coord_sizes[profile], coord_steps
        )


def _describe(models: str, size: StudySize) -> str:
    """The task and what a study trains: the first lines a notebook prints."""
    task = get_task(DEFAULT_TASK)
    return (
        f"task: {task.description}; Bayes loss {task.irreducible_loss:.4f} nats\n"
        f"{models}, {size.steps} steps of batch {DEFAULT_BATCH}, seeds {size.seeds}"
    )


def _sweep(study, key: Hashable) -> pd.DataFrame:
    return _SWEEPS.get((study, key), lambda: study.compute_sweep(key))


def _summary(study, key: Hashable) -> TransferSweep:
    axis = study.axis
    return _SUMMARIES.get((study, key), lambda: TransferSweep.from_sweep(_sweep(study, key), axis))


def _transfer(study, keys: Sequence[Hashable]) -> Transfer:
    sweeps = {key: _sweep(study, key) for key in keys}
    summaries = {key: _summary(study, key) for key in keys}
    labels = {key: study.label(key) for key in keys}
    return Transfer.of(sweeps, labels, study.axis, summaries)


# --------------------------------------------------------------------------- notebook 03
def width_sweep_label(key: tuple[str, str]) -> str:
    """A (parametrization, optimizer) sweep's one label, in tables, legends and controls."""
    parametrization, optimizer = key
    return f"{PARAMETRIZATIONS.label(parametrization)} {SCALING_OPTIMIZERS.label(optimizer)}"


def _octaves(x: float) -> str:
    return f"{readable(x)} octave" + ("" if x == 1 else "s")


def _percent(x: float) -> str:
    return f"{readable(100 * x)}%"


@dataclass(frozen=True)
class WidthStudy:
    """Notebook 03: MLP sweeps over widths, keyed by (parametrization, optimizer)."""

    size: StudySize
    axis = "width"

    def label(self, key: tuple[str, str]) -> str:
        return width_sweep_label(key)

    def compute_sweep(self, key: tuple[str, str]) -> pd.DataFrame:
        parametrization, optimizer = key
        low, high = WIDTH_RANGES[key]
        return lr_sweep(
            parametrization=parametrization,
            optimizer=optimizer,
            widths=self.size.values,
            lrs=log2_grid(low, high, self.size.octaves),
            seeds=self.size.seeds,
            steps=self.size.steps,
        )

    def transfer(self, keys: Sequence[tuple[str, str]]) -> Transfer:
        return _transfer(self, keys)

    def summaries(self, keys=tuple(WIDTH_RANGES)) -> dict[tuple[str, str], TransferSweep]:
        """The explorer's sweeps: (parametrization, optimizer) -> summary."""
        return {key: _summary(self, key) for key in keys}

    def coordinate_checks(self, parametrizations=("sp", "mup", "umup")) -> CoordChecks:
        checks = {
            p: coordinate_check(
                parametrization=p,
                widths=self.size.coord_values,
                lr=COORD_LRS[p],
                steps=self.size.coord_steps,
            )
            for p in parametrizations
        }
        return CoordChecks(checks, {p: PARAMETRIZATIONS.label(p) for p in parametrizations})

    def describe(self) -> str:
        return _describe(f"widths {self.size.values}", self.size)

    def adam_summary(self, adam: Transfer) -> str:
        drift, penalty, widths = adam.drift, adam.penalty, self.size.values
        sp, mup, umup = ("sp", "adam"), ("mup", "adam"), ("umup", "adam")
        return (
            f"Across {widths[-1] // widths[0]}x width the Adam optimum moves "
            f"**{_octaves(drift[sp])} under SP**, {_octaves(drift[mup])} under muP and "
            f"{_octaves(drift[umup])} under u-muP. Training the width-{widths[-1]} model at the "
            f"width-{widths[0]} optimum costs {_percent(penalty[sp])} in loss under SP, "
            f"{_percent(penalty[mup])} under muP and {_percent(penalty[umup])} under u-muP."
        )

    def sgd_summary(self, sgd: Transfer, adam: Transfer) -> str:
        sgd_sp, sgd_mup = sgd.drift[("sp", "sgd")], sgd.drift[("mup", "sgd")]
        adam_sp = adam.drift[("sp", "adam")]
        # the lowest final loss of each sweep over all its widths
        best = {key: t.best_loss(key) for t in (sgd, adam) for key in t.sweeps}
        return (
            f"With SGD the SP optimum moves {_octaves(sgd_sp)} and muP's {_octaves(sgd_mup)}. "
            f"At width {self.size.values[-1]} the best loss is {readable(best[('sp', 'sgd')])} "
            f"(SP) and {readable(best[('mup', 'sgd')])} (muP) with SGD, against "
            f"{readable(best[('sp', 'adam')])} and {readable(best[('mup', 'adam')])} with Adam in "
            f"the same {self.size.steps} steps. Under SGD SP's optimum moves "
            f"{'less' if sgd_sp < adam_sp else 'no less'} than under Adam ({_octaves(sgd_sp)} "
            f"against {_octaves(adam_sp)})."
        )

    def atan2_summary(self, atan2: Transfer) -> str:
        drift = atan2.drift[("mup", "adam_atan2")]
        offset = atan2.offset(("mup", "adam_atan2"), ("mup", "adam"))
        return (
            f"Under muP the Adam-atan2 optimum moves {_octaves(drift)} across the widths and "
            f"sits at most {_octaves(offset)} from Adam's at any width."
        )

    def metric_tables(
        self, adam: Transfer, sgd: Transfer, atan2: Transfer
    ) -> dict[str, dict[str, dict[str, float]]]:
        """parametrization -> optimizer -> metric -> value (`record_table` rows)."""
        tables: dict[str, dict[str, dict[str, float]]] = {}
        for (p, o), drift in adam.drift.items():
            row = {"drift_octaves": drift, "transfer_penalty": adam.penalty[(p, o)]}
            for width, log2_lr in adam.log2_lr((p, o)).items():
                row[f"log2_lr_width{width}"] = log2_lr
            tables.setdefault(p, {})[o] = row
        for (p, o), drift in sgd.drift.items():
            tables.setdefault(p, {})[o] = {"drift_octaves": drift}
        key = ("mup", "adam_atan2")
        tables["mup"]["adam_atan2"] = {
            "drift_octaves": atan2.drift[key],
            "max_offset_from_adam": atan2.offset(key, ("mup", "adam")),
        }
        return tables


def coord_metric_rows(checks: CoordChecks) -> dict[str, dict[str, object]]:
    """Notebook 03's coordinate-check metrics, by the parametrization's label."""
    return {
        checks.labels[key]: {
            "verdict": check.verdict,
            "steepest_output_slope": checks.steepest_slope(key, "output"),
        }
        for key, check in checks.checks.items()
    }


def width_study(smoke: bool = False, *, steps: int = FULL_STEPS, seeds: int = FULL_SEEDS):
    """Notebook 03's study at its SMOKE or full size."""
    return WidthStudy(StudySize.of(WIDTHS, COORD_WIDTHS, smoke, steps, seeds))


# --------------------------------------------------------------------------- notebook 04
@dataclass(frozen=True)
class DepthStudy:
    """Notebook 04: muP residual MLPs of one width over depths, keyed by DEPTH_CONFIGS id."""

    size: StudySize
    width: int = 32
    axis = "depth"

    def label(self, key: str) -> str:
        return DEPTH_CONFIGS.label(key)

    def compute_sweep(self, key: str) -> pd.DataFrame:
        config, (low, high) = DEPTH_CONFIGS[key], DEPTH_LOG2_RANGE
        return lr_sweep(
            parametrization="mup",
            model="resmlp",
            alpha=config.alpha,
            lr_correction=config.lr_correction,
            widths=[self.width],
            depths=self.size.values,
            lrs=log2_grid(low, high, self.size.octaves),
            seeds=self.size.seeds,
            steps=self.size.steps,
            dtype=DEPTH_DTYPE,
        )

    def transfer(self, keys: Sequence[str] = tuple(DEPTH_CONFIGS)) -> Transfer:
        return _transfer(self, keys)

    def summaries(self, keys=tuple(DEPTH_CONFIGS)) -> dict[tuple[float, bool], TransferSweep]:
        """The explorer's sweeps: (alpha, lr_correction) -> summary."""
        return {
            (DEPTH_CONFIGS[key].alpha, DEPTH_CONFIGS[key].lr_correction): _summary(self, key)
            for key in keys
        }

    def coordinate_checks(self, alphas=COORD_ALPHAS) -> CoordChecks:
        checks = {
            f"alpha{alpha:g}": coordinate_check(
                parametrization="mup",
                model="resmlp",
                alpha=alpha,
                widths=(self.width,),
                depths=self.size.coord_values,
                steps=self.size.coord_steps,
            )
            for alpha in alphas
        }
        # labelled as DEPTH_CONFIGS are ("alpha 1/2"); the ids are the recorded metrics' names
        labels = {f"alpha{a:g}": f"alpha {Fraction(a).limit_denominator(8)}" for a in alphas}
        return CoordChecks(checks, labels)

    def depth_summary(self, depth: Transfer) -> str:
        drift, depths = depth.drift, self.size.values
        plain, depth_mup = drift["alpha0_global"], drift["alpha_half_corrected"]
        corrected_zero, half_global = drift["alpha0_corrected"], drift["alpha_half_global"]
        verdict = "stays within 1 octave" if depth_mup <= 1.0 else "moves by more than an octave"
        if corrected_zero <= 1.0 < half_global:
            lesson = (
                "at these depths it is the learning-rate correction, more than the branch "
                "scale, that decides whether the optimum transfers"
            )
        elif corrected_zero > 1.0:
            lesson = "the learning-rate correction alone does not make alpha 0 transfer"
        else:
            lesson = "here alpha 1/2 transfers even without its correction"
        return (
            f"From depth {depths[0]} to {depths[-1]} the plain ResNet's optimum moves "
            f"**{_octaves(plain)}** and Depth-muP's (alpha 1/2 with lr x L^-1/2) "
            f"**{_octaves(depth_mup)}**: it {verdict}. Without its learning-rate correction "
            f"alpha 1/2 moves {_octaves(half_global)}; alpha 0 with the L^-1 correction moves "
            f"{_octaves(corrected_zero)}: {lesson}."
        )

    def stream_growth_summary(self, checks: CoordChecks) -> str:
        depths = self.size.coord_values
        growth = [
            f"{readable(g)} with {checks.labels[key]}" for key, g in checks.stream_growth().items()
        ]
        listed = ", ".join(growth[:-1]) + " and " + growth[-1] if len(growth) > 1 else growth[0]
        return (
            f"At initialization the residual stream's RMS grows from depth {depths[0]} to "
            f"depth {depths[-1]} by a factor of {listed}."
        )

    def describe(self) -> str:
        models = f"muP residual MLPs of width {self.width}, depths {self.size.values}"
        return _describe(models, self.size)


def depth_config_id(alpha: float, lr_correction: bool) -> str:
    """The DEPTH_CONFIGS id of a branch exponent and learning-rate rule; at alpha 1 the
    correction is depth**0 = 1, so both rules are the one configuration "alpha1"."""
    for key in DEPTH_CONFIGS:
        config = DEPTH_CONFIGS[key]
        same_rule = config.lr_correction == lr_correction or config.alpha == 1.0
        if config.alpha == alpha and same_rule:
            return key
    swept = "; ".join(DEPTH_CONFIGS.labels().values())
    raise ValueError(
        f"no depth configuration has alpha {alpha:g} with "
        f"{'the depth-corrected' if lr_correction else 'one global'} learning rate; "
        f"configurations: {swept}"
    )


def stream_metric_rows(checks: CoordChecks) -> dict[str, dict[str, object]]:
    """Notebook 04's coordinate-check metrics, by check id."""
    growth = checks.stream_growth()
    return {
        key: {"verdict": check.verdict, "stream_growth": growth[key]}
        for key, check in checks.checks.items()
    }


def depth_study(
    smoke: bool = False, *, steps: int = FULL_STEPS, seeds: int = FULL_SEEDS, width: int = 32
) -> DepthStudy:
    """Notebook 04's study at its SMOKE or full size."""
    return DepthStudy(StudySize.of(DEPTHS, DEPTHS, smoke, steps, seeds), width)
