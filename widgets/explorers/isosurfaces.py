"""Notebook 07's explorer: learning rate, resolution, extractor, target shape and iteration of a
shape fit through a differentiable iso-surface extraction.

It declares the controls, asks `workbench.surfaces.study.iso_view` for what a setting shows
(the fits are computed and cached there) and builds the panels: the surface at the chosen
iteration over the exact target (2-D curves, 3-D a Mesh3d), the loss curves of the three
extractors, and the loss's gradient on the vertices as arrows. Only computed settings are
offered: the learning-rate and iteration sliders move between computed values.
"""

from __future__ import annotations

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, Slider
from workbench.surfaces.fitting import EXTRACTORS
from workbench.surfaces.shapes import SHAPES
from workbench.surfaces.study import (
    FitSetting,
    IsoView,
    iso_size,
    iso_view,
    iso_view_cost,
    iterations,
)

PANEL = 430
COLORS = figures.color_map(EXTRACTORS)
TARGET = "#999999"  # the exact target surface: the reference every fit is drawn over
DIVERGED_Y = 1.0  # where a diverged fit's final Chamfer is drawn (x markers, top of the panel)


def isosurfaces_app(smoke: bool = False) -> Explorer:
    """The served explorer at notebook 07's SMOKE or full size (sizes from the study)."""
    return isosurfaces_explorer(smoke=smoke)


def isosurfaces_explorer(smoke: bool = False, seed: int = 0) -> Explorer:
    size = iso_size(smoke)
    lrs = size.log2_lrs
    targets = (*size.targets, *size.volume_targets)
    stops = iterations(smoke)

    def setting(log2_lr, resolution, extractor, target) -> FitSetting:
        if SHAPES[target]().dim == 3:  # 3-D fits are computed at one resolution and lr
            resolution, log2_lr = size.volume_resolution, size.volume_log2_lr
        return FitSetting(target, extractor, int(resolution), int(log2_lr))

    def compute(log2_lr, resolution, extractor, target, iteration) -> IsoView:
        return iso_view(setting(log2_lr, resolution, extractor, target), iteration, smoke, seed)

    def cost(log2_lr, resolution, extractor, target, iteration) -> float | None:
        return iso_view_cost(setting(log2_lr, resolution, extractor, target), smoke, seed)

    return Explorer(
        title="Shape fitting through a differentiable iso-surface",
        description=(
            "A grid of SDF values starts as a circle (a sphere in 3-D) and is fitted by Adam on "
            "the Chamfer distance between the extracted surface and the exact target. The "
            "learning-rate slider moves between the computed rates (2^k); the iteration slider "
            f"between the kept snapshots (every {stops[1] - stops[0]} steps)."
        ),
        controls=[
            Slider("log2_lr", "learning rate (log2)", lrs[0], lrs[-1], -5, stops=lrs),
            Choice(
                "resolution", "grid points per axis", list(size.resolutions), size.resolutions[-1]
            ),
            Choice("extractor", "extraction", EXTRACTORS.options(), "meshsdf"),
            Choice("target", "target shape", SHAPES.options(targets), "box"),
            Slider("iteration", "iteration", stops[0], stops[-1], stops[-1], stops=stops),
        ],
        compute=compute,
        cost=cost,
        panels=[
            FigurePanel(
                "surface", "surface over the target", _surface_traces, _surface_layout, height=PANEL
            ),
            FigurePanel(
                "gradient",
                "gradient on the vertices",
                _gradient_traces,
                _gradient_layout,
                height=PANEL,
            ),
            FigurePanel("loss", "loss curves", _loss_traces, _loss_layout, height=PANEL),
            FigurePanel(
                "sweep",
                "final Chamfer vs learning rate",
                _sweep_traces,
                _sweep_layout,
                height=PANEL,
            ),
        ],
    )


def _snapshot(view: IsoView):
    return view.run.snapshots.get(view.iteration)


def _segments(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(2, F, 2): each segment's two ends, as `figures.polylines` draws many lines."""
    return vertices[faces].transpose(1, 0, 2)


def surface_traces(view: IsoView) -> list[dict]:
    """The exact target and the fit's surface at the view's iteration (2-D or 3-D)."""
    shot, color = _snapshot(view), COLORS[view.run.setting.extractor]
    label = EXTRACTORS.label(view.run.setting.extractor)
    if view.target.shape[1] == 3:
        traces = [{"type": "scatter3d", "x": view.target[:, 0], "y": view.target[:, 1],
                   "z": view.target[:, 2], "mode": "markers", "name": "exact target",
                   "marker": {"size": 1.5, "color": TARGET}}]  # fmt: skip
        if shot is not None:
            v, f, _ = shot
            traces.append({"type": "mesh3d", "x": v[:, 0], "y": v[:, 1], "z": v[:, 2],
                           "i": f[:, 0], "j": f[:, 1], "k": f[:, 2], "color": color,
                           "opacity": 0.6, "name": label, "flatshading": True})  # fmt: skip
        return traces
    outline = np.concatenate([view.target, view.target[:1]])
    traces = [{"type": "scatter", "x": outline[:, 0], "y": outline[:, 1], "mode": "lines",
               "name": "exact target", "line": {"color": TARGET, "width": 3}}]  # fmt: skip
    if shot is not None:
        v, f, _ = shot
        traces.append(figures.polylines(_segments(v, f), name=label, color=color, width=2,
                                        markers=True))  # fmt: skip
    return traces


def _surface_traces(view: IsoView) -> list[dict]:
    return surface_traces(view)


def _status(view: IsoView) -> str:
    run = view.run
    return f"diverged ({run.reason})" if run.diverged else f"iteration {view.iteration}"


def _surface_layout(view: IsoView) -> dict:
    title = f"{SHAPES.label(view.run.setting.target)}: {_status(view)}"
    if view.target.shape[1] == 3:
        title += f" (3-D: lr 2^{view.run.setting.log2_lr}, {view.run.setting.resolution}^3 only)"
        return {"title": {"text": title}, "showlegend": False,
                "scene": {"aspectmode": "cube", **{a: {"range": [-1, 1]} for a in
                                                    ("xaxis", "yaxis", "zaxis")}}}  # fmt: skip
    return {**figures.square_axes((-1, 1, -1, 1)), "title": {"text": title}}


def _gradient_traces(view: IsoView) -> list[dict]:
    shot = _snapshot(view)
    if shot is None or view.target.shape[1] == 3:
        return surface_traces(view)
    v, f, gradient = shot
    spacing = 2.0 / (view.run.setting.resolution - 1)
    arrows, _ = figures.fit_arrows(-gradient, spacing)
    return [
        figures.polylines(_segments(v, f), name="surface", color="#bbbbbb", width=1.5),
        figures.arrows(v, arrows, name="-dL/dv", color=COLORS[view.run.setting.extractor]),
    ]


def _gradient_layout(view: IsoView) -> dict:
    if view.target.shape[1] == 3:
        return {**_surface_layout(view), "title": {"text": "3-D: arrows drawn in 2-D only"}}
    shot = _snapshot(view)
    factor = 0.0
    if shot is not None:
        _, factor = figures.fit_arrows(-shot[2], 2.0 / (view.run.setting.resolution - 1))
    title = f"-dL/dv on the vertices (x {factor:.3g})"
    return {**figures.square_axes((-1, 1, -1, 1)), "title": {"text": title}}


def _loss_traces(view: IsoView) -> list[dict]:
    traces = []
    for run in view.compared:
        selected = run.setting == view.run.setting
        traces.append({
            "type": "scatter", "x": np.arange(len(run.losses)), "y": run.losses,
            "mode": "lines", "name": EXTRACTORS.label(run.setting.extractor),
            "line": {"color": COLORS[run.setting.extractor], "width": 3 if selected else 1.5},
        })  # fmt: skip
    if view.iteration < len(view.run.losses):
        traces.append(figures.ring([view.iteration], [view.run.losses[view.iteration]],
                                   color=COLORS[view.run.setting.extractor]))  # fmt: skip
    return traces


def _loss_layout(view: IsoView) -> dict:
    losses = np.concatenate([r.losses for r in view.compared if len(r.losses)] or [[1.0]])
    return {
        "xaxis": {"title": {"text": "iteration"}},
        "yaxis": figures.log_axis("Chamfer loss (squared)", losses),
        "title": {"text": f"lr 2^{view.run.setting.log2_lr}: every extraction"},
        "legend": {"orientation": "h", "y": -0.2},
    }


def sweep_traces(runs, selected=None) -> list[dict]:
    """Final Chamfer vs learning rate per extractor, diverged fits as x at the top."""
    traces = []
    for name in EXTRACTORS:
        mine = sorted((r for r in runs if r.setting.extractor == name),
                      key=lambda r: r.setting.log2_lr)  # fmt: skip
        ok = [r for r in mine if not r.diverged]
        bad = [r for r in mine if r.diverged]
        traces.append(
            {
                "type": "scatter",
                "x": [2.0**r.setting.log2_lr for r in ok],
                "y": [r.chamfer for r in ok],
                "mode": "lines+markers",
                "name": EXTRACTORS.label(name),
                "line": {"color": COLORS[name]},
            }
        )
        if bad:
            traces.append(
                {
                    "type": "scatter",
                    "x": [2.0**r.setting.log2_lr for r in bad],
                    "y": [DIVERGED_Y] * len(bad),
                    "mode": "markers",
                    "name": f"{EXTRACTORS.label(name)} diverged",
                    "showlegend": False,
                    "marker": {"color": COLORS[name], "symbol": "x", "size": 8},
                }
            )
    if selected is not None:
        y = DIVERGED_Y if selected.diverged else selected.chamfer
        traces.append(figures.ring([2.0**selected.setting.log2_lr], [y],
                                   color=COLORS[selected.setting.extractor]))  # fmt: skip
    return traces


def sweep_axes(runs) -> tuple[dict, dict]:
    finals = [r.chamfer for r in runs if not r.diverged] + [DIVERGED_Y]
    x = figures.log_axis("learning rate", [2.0**r.setting.log2_lr for r in runs], base=2)
    return x, figures.log_axis("final Chamfer to the exact target (x: diverged)", finals)


def _sweep_traces(view: IsoView) -> list[dict]:
    return sweep_traces(view.sweep, view.run)


def _sweep_layout(view: IsoView) -> dict:
    x, y = sweep_axes(view.sweep)
    title = f"{SHAPES.label(view.run.setting.target)}, {view.run.setting.resolution} points"
    return {
        "xaxis": x,
        "yaxis": y,
        "title": {"text": title},
        "legend": {"orientation": "h", "y": -0.2},
    }
