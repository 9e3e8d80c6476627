"""The tour's explorer: a mixture's noised marginal, its samples and its score field."""

from __future__ import annotations

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, Slider
from workbench.claims import readable
from workbench.toy.fields import NoisedSnapshot, noised_snapshot, variance_preserving
from workbench.toy.tour import DATASETS, NOISE_LEVEL, dataset, tour_size

# The clean density has peaks ~50x the noised one's: a fixed colour range would wash out one
# end of the slider, so the heatmap shows log-density clipped a fixed depth below its maximum.
LOG_DENSITY_DEPTH = 10.0
PANEL_HEIGHT = 430  # px; the width is the container's, equal axis scale keeps the plane square


def plane_layout(bounds: tuple[float, float, float, float], title: str) -> dict:
    """Equal-scale axes over the data plane, titled x₁ and x₂ (with room for the titles)."""
    return {**figures.square_axes(bounds, ("x₁", "x₂")), "title": {"text": title}}


def noised_mixture_app(smoke: bool = False) -> Explorer:
    """The tour's explorer at notebook 00's full or SMOKE size and noise level (the served
    page)."""
    size = tour_size(smoke)
    return noised_mixture_explorer(
        n_samples=size.n_samples, grid_size=size.grid_size, sigma=NOISE_LEVEL
    )


def noised_mixture_explorer(
    n_samples: int = 4000, seed: int = 0, grid_size: int = 120, sigma: float = NOISE_LEVEL
) -> Explorer:
    """The explorer, starting at noise level `sigma` (the notebook passes its NOISE_LEVEL)."""

    def compute(dataset_name: str, sigma: float) -> NoisedSnapshot:
        mixture = dataset(dataset_name)
        alpha, sigma = variance_preserving(sigma)
        return noised_snapshot(
            mixture, alpha, sigma, n_samples=n_samples, seed=seed, grid_size=grid_size
        )

    def density_traces(snap: NoisedSnapshot) -> list[dict]:
        log_density = snap.log_density.numpy()
        top = float(log_density.max())
        heatmap = figures.heatmap(
            snap.xs,
            snap.ys,
            np.maximum(log_density, top - LOG_DENSITY_DEPTH),
            name="log p_t",
            showscale=True,
            zmin=top - LOG_DENSITY_DEPTH,
            zmax=top,
        )
        heatmap["colorbar"] = {"title": {"text": "log p<sub>t</sub>(x)"}, "thickness": 14}
        return [
            heatmap,
            figures.points(snap.samples, name="samples x_t"),
        ]

    def score_traces(snap: NoisedSnapshot) -> list[dict]:
        spacing = float(snap.arrow_points[1, 0] - snap.arrow_points[0, 0])
        arrows, _ = figures.fit_arrows(snap.tweedie_steps, spacing)
        return [
            figures.contour(snap.xs, snap.ys, snap.log_density, name="log p_t"),
            figures.arrows(snap.arrow_points, arrows, name="σ²·∇log p_t"),
        ]

    def bounds(snap: NoisedSnapshot) -> tuple[float, float, float, float]:
        return (float(snap.xs[0]), float(snap.xs[-1]), float(snap.ys[0]), float(snap.ys[-1]))

    def density_layout(snap: NoisedSnapshot) -> dict:
        title = f"log p<sub>t</sub> and samples, σ = {snap.sigma:.2f}"
        return plane_layout(bounds(snap), title)

    def score_layout(snap: NoisedSnapshot) -> dict:
        spacing = float(snap.arrow_points[1, 0] - snap.arrow_points[0, 0])
        _, factor = figures.fit_arrows(snap.tweedie_steps, spacing)
        title = f"σ²∇log p<sub>t</sub> (arrows ×{readable(factor)})"
        return plane_layout(bounds(snap), title)

    return Explorer(
        title="A Gaussian mixture under noise, exactly",
        description=(
            "x_t = α x_0 + σ ε with α² + σ² = 1. Left: the exact noised log-density and exact "
            "samples of it (the same x_0 and ε at every σ). Right: σ²∇log p_t(x) = "
            "α E[x_0 | x_t = x] − x, the step Tweedie's formula takes toward the denoised point "
            "(arrows scaled by the factor in the title so the longest fits the grid)."
        ),
        controls=[
            Choice("dataset_name", "dataset", DATASETS.options(), "ring"),
            Slider("sigma", "noise level σ (α = √(1−σ²))", 0.0, 0.99, sigma, step=0.01),
        ],
        compute=compute,
        panels=[
            FigurePanel(
                "density",
                "noised density and samples",
                density_traces,
                density_layout,
                height=PANEL_HEIGHT,
            ),
            FigurePanel(
                "score",
                "score field",
                score_traces,
                score_layout,
                height=PANEL_HEIGHT,
            ),
        ],
    )
