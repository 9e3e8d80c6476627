"""The sweeps behind notebooks 03 and 04, defined once: the notebooks, their explorers and the
served app (widgets.app) all call these, so they share one disk cache (workbench.sweep).

SMOKE sizes finish in seconds and run every code path; full sizes reproduce the claims.
"""

from __future__ import annotations

import pandas as pd

from workbench.scaling.sweeps import lr_sweep

# log2(lr) ranges per (parametrization, optimizer), wide enough to bracket every width's optimum
WIDTH_RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("sp", "adam"): (-14, -1),
    ("mup", "adam"): (-12, -1),
    ("umup", "adam"): (-8, 3),
    ("sp", "sgd"): (-6, 6),
    ("mup", "sgd"): (-6, 6),
    ("mup", "adam_atan2"): (-12, -1),
}
# (alpha, depth correction of the block learning rates) per residual configuration
DEPTH_CONFIGS: dict[str, tuple[float, bool]] = {
    "alpha 0, global lr (plain ResNet)": (0.0, False),
    "alpha 0, lr x L^-1": (0.0, True),
    "alpha 1/2, global lr": (0.5, False),
    "alpha 1/2, lr x L^-1/2 (Depth-muP)": (0.5, True),
    "alpha 1 (no correction needed)": (1.0, True),
}
DEPTH_LOG2_RANGE = (-14, 0)
# float64: a deep plain ResNet's training is chaotic near its optimum, so float32 rounding
# (1e-7) grows to ~1% of the final loss in 150 steps; at depth 32 the seed-averaged curve is
# flat within 0.05 over 2^-11..2^-7, so the 5-point parabola through those points (and the
# grid minimum it is centred on) follows the rounding: the fitted optimum moved 0.15 octaves
# between MKL_CBWR=COMPATIBLE and the default path here, 0.5 on an AVX-512 Xeon.
# In float64 every metric of the full run agrees to 2e-14 across code paths (the full notebook
# takes ~1.8x as long: 171 s against 96 s here).
DEPTH_DTYPE = "float64"


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


def width_sizes(smoke: bool) -> tuple[int, ...]:
    return (16, 32, 64) if smoke else (16, 32, 64, 128, 256)


def depth_sizes(smoke: bool) -> tuple[int, ...]:
    return (2, 4, 8) if smoke else (2, 4, 8, 16, 32)


def width_sweep(
    parametrization: str,
    optimizer: str,
    *,
    smoke: bool = False,
    steps: int = 150,
    seeds: int = 2,
    backend=None,
) -> pd.DataFrame:
    """Notebook 03's sweep of one (parametrization, optimizer) over widths 16..256
    (SMOKE: three widths, 30 steps, one seed, a 2-octave grid)."""
    low, high = WIDTH_RANGES[(parametrization, optimizer)]
    return lr_sweep(
        parametrization=parametrization,
        optimizer=optimizer,
        widths=width_sizes(smoke),
        lrs=log2_grid(low, high, 2 if smoke else 1),
        seeds=tuple(range(1 if smoke else seeds)),
        steps=30 if smoke else steps,
        backend=backend,
    )


def width_sweeps(
    keys=tuple(WIDTH_RANGES), *, smoke: bool = False, steps: int = 150, seeds: int = 2, backend=None
) -> dict[tuple[str, str], pd.DataFrame]:
    return {
        key: width_sweep(*key, smoke=smoke, steps=steps, seeds=seeds, backend=backend)
        for key in keys
    }


def depth_sweeps(
    *, smoke: bool = False, steps: int = 150, seeds: int = 2, width: int = 32, backend=None
) -> dict[str, pd.DataFrame]:
    """Notebook 04's sweeps: muP residual MLPs of `width` over depths 2..32, one per
    DEPTH_CONFIGS entry (SMOKE: depths 2-8, 30 steps, one seed, a 2-octave grid)."""
    low, high = DEPTH_LOG2_RANGE
    return {
        name: lr_sweep(
            parametrization="mup",
            model="resmlp",
            alpha=alpha,
            lr_correction=corrected,
            widths=[width],
            depths=depth_sizes(smoke),
            lrs=log2_grid(low, high, 2 if smoke else 1),
            seeds=tuple(range(1 if smoke else seeds)),
            steps=30 if smoke else steps,
            dtype=DEPTH_DTYPE,
            backend=backend,
        )
        for name, (alpha, corrected) in DEPTH_CONFIGS.items()
    }
