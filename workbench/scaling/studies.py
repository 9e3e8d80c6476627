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
        lrs=[2.0**k for k in range(low, high + 1, 2 if smoke else 1)],
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
            lrs=[2.0**k for k in range(low, high + 1, 2 if smoke else 1)],
            seeds=tuple(range(1 if smoke else seeds)),
            steps=30 if smoke else steps,
            backend=backend,
        )
        for name, (alpha, corrected) in DEPTH_CONFIGS.items()
    }
