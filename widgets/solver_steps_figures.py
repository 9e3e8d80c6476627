"""Notebook 01's static figures: they draw what `workbench.diffusion` computed, and run nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

if TYPE_CHECKING:
    from workbench.diffusion.dpm_solver_v3 import EMS


def ems_figure(ems: EMS, dimension: int = 0) -> go.Figure:
    """DPM-Solver-v3's statistics l, s, b of one coordinate against lambda."""
    figure = go.Figure()
    coordinate = "xyz"[dimension] if dimension < 3 else str(dimension)
    for name, values in (("l", ems.l), ("s", ems.s), ("b", ems.b)):
        figure.add_scatter(
            x=ems.lambdas.numpy(),
            y=values[:, dimension].numpy(),
            name=f"{name} ({coordinate}-coordinate)",
        )
    # no width: the figure takes its container's
    figure.update_layout(xaxis_title="λ = log(α/σ)", yaxis_title="statistic", height=320)
    return figure
