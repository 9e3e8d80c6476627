"""Plotly trace builders shared by the explorers: plain dicts, cheap to rebuild per update."""

from __future__ import annotations

import numpy as np


def _numpy(values) -> np.ndarray:
    """float32 numpy: plots need no more, and it halves what each update sends to the browser."""
    array = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array


def heatmap(
    xs,
    ys,
    z,
    *,
    name: str,
    colorscale: str = "Viridis",
    showscale: bool = False,
    zmin: float | None = None,
    zmax: float | None = None,
) -> dict:
    trace = {
        "type": "heatmap",
        "x": _numpy(xs),
        "y": _numpy(ys),
        "z": _numpy(z),
        "name": name,
        "colorscale": colorscale,
        "showscale": showscale,
        "hoverinfo": "skip",
    }
    if zmin is not None:
        trace["zmin"], trace["zmax"] = zmin, zmax
    return trace


def contour(xs, ys, z, *, name: str, n_levels: int = 12) -> dict:
    return {
        "type": "contour",
        "x": _numpy(xs),
        "y": _numpy(ys),
        "z": _numpy(z),
        "name": name,
        "ncontours": n_levels,
        "contours": {"coloring": "lines"},
        "colorscale": "Greys",
        "showscale": False,
        "line": {"width": 1},
        "hoverinfo": "skip",
    }


def points(xy, *, name: str, color: str = "white", size: float = 3, opacity: float = 0.6) -> dict:
    xy = _numpy(xy)
    return {
        "type": "scattergl",
        "x": xy[:, 0],
        "y": xy[:, 1],
        "mode": "markers",
        "name": name,
        "marker": {"color": color, "size": size, "opacity": opacity},
        "hoverinfo": "skip",
    }


def ring(
    x,
    y,
    *,
    color: str,
    size: float = 14,
    width: float = 2,
    name: str | None = None,
    legendgroup: str | None = None,
) -> dict:
    """Open circles around the selected point(s); in the legend only when named."""
    trace = {
        "type": "scatter",
        "x": x,
        "y": y,
        "mode": "markers",
        "marker": {"color": color, "size": size, "symbol": "circle-open", "line": {"width": width}},
    }
    if name is None:
        trace["showlegend"] = False
    else:
        trace["name"] = name
    if legendgroup is not None:
        trace["legendgroup"] = legendgroup
    return trace


def polylines(paths, *, name: str, color: str, width: float = 1.0, markers: bool = False) -> dict:
    """Many polylines as one line trace, separated by gaps: paths is (points per line, lines, 2).

    One trace instead of one per line keeps an update to a single array write.
    """
    paths = _numpy(paths)
    gap = np.full((1, *paths.shape[1:]), np.nan, dtype=paths.dtype)
    xy = np.concatenate([paths, gap]).transpose(1, 0, 2).reshape(-1, 2)
    return {
        "type": "scatter",
        "x": xy[:, 0],
        "y": xy[:, 1],
        "mode": "lines+markers" if markers else "lines",
        "name": name,
        "line": {"color": color, "width": width},
        "marker": {"size": 3},
        "hoverinfo": "skip",
        "connectgaps": False,
    }


def arrows(starts, vectors, *, name: str, color: str = "black", head: float = 0.25) -> dict:
    """Many arrows as one trace: each a shaft and a two-stroke head, drawn as polylines."""
    starts, vectors = _numpy(starts), _numpy(vectors)
    ends = starts + vectors
    # Heads: two short strokes back from the tip, rotated +-25 degrees from the shaft.
    angle = np.deg2rad(25.0)
    back = -vectors * head
    rotations = [
        np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) for a in (angle, -angle)
    ]
    left, right = (ends + back @ r.T for r in rotations)
    shafts = np.stack([starts, ends])  # (2, n, 2)
    heads = np.stack([left, ends, right])  # (3, n, 2)
    gap = np.full_like(shafts[:1], np.nan)
    return polylines(np.concatenate([shafts, gap, heads]), name=name, color=color, width=1.2)


def fit_arrows(vectors, spacing: float, fill: float = 0.9) -> tuple[np.ndarray, float]:
    """Scale vectors so the longest is `fill` grid spacings; returns (scaled, factor).

    A field drawn at its true length overlaps itself wherever it is large (near sharp modes);
    one factor per frame keeps relative lengths honest and is shown to the reader.
    """
    vectors = _numpy(vectors)
    longest = float(np.linalg.norm(vectors, axis=1).max()) if len(vectors) else 0.0
    factor = fill * spacing / longest if longest > 0 else 1.0
    return vectors * factor, factor


def square_axes(bounds: tuple[float, float, float, float]) -> dict:
    """Layout with equal x/y scale over the bounds (the panel should be square), no legend."""
    x_min, x_max, y_min, y_max = bounds
    return {
        "xaxis": {"range": [x_min, x_max], "zeroline": False},
        "yaxis": {"range": [y_min, y_max], "scaleanchor": "x", "zeroline": False},
        "margin": {"l": 40, "r": 10, "t": 40, "b": 30},
        "showlegend": False,
    }


def run_history(runs, value: str = "runtime_s", *, title: str, y_title: str) -> dict:
    """One line per notebook and profile across recorded runs (workbench.history.runs), with
    the commit in the hover: how a notebook's cost or metric moved, run after run."""
    traces = []
    for (notebook, profile), group in runs.groupby(["notebook", "profile"], sort=True):
        commits = group["git_commit"].fillna("").str[:8]
        traces.append(
            {
                "type": "scatter",
                "x": group["recorded_at"].dt.strftime("%Y-%m-%d %H:%M:%S").tolist(),
                "y": group[value].to_numpy(dtype=float),
                "mode": "lines+markers",
                "name": f"{notebook} ({profile})",
                "line": {"dash": "dot" if profile == "smoke" else "solid"},
                "customdata": commits.to_numpy()[:, None],
                "hovertemplate": "%{y:.3g}<br>%{x}<br>commit %{customdata[0]}<extra></extra>",
            }
        )
    layout = {
        "title": {"text": title},
        "xaxis": {"title": {"text": "run finished at"}},
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "height": 380,
        "legend": {"orientation": "h", "y": -0.45},  # below the date line and axis title
    }
    return {"data": traces, "layout": layout}
