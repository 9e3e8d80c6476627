"""Plotly trace builders shared by the explorers: plain dicts, cheap to rebuild per update."""

from __future__ import annotations

import math

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


def square_axes(
    bounds: tuple[float, float, float, float], titles: tuple[str, str] | None = None
) -> dict:
    """Layout with equal x/y scale over the bounds, no legend; `titles` names the two axes.

    constrain="domain": in a panel as wide as its container the equal scale shrinks the plot
    area to a square, instead of widening an axis past the bounds."""
    x_min, x_max, y_min, y_max = bounds
    layout = {
        "xaxis": {"range": [x_min, x_max], "zeroline": False, "constrain": "domain"},
        "yaxis": {
            "range": [y_min, y_max],
            "scaleanchor": "x",
            "zeroline": False,
            "constrain": "domain",
        },
        "margin": {"l": 40, "r": 10, "t": 40, "b": 30},
        "showlegend": False,
    }
    if titles is not None:  # room for the titles
        layout["xaxis"]["title"] = {"text": titles[0]}
        layout["yaxis"]["title"] = {"text": titles[1]}
        layout["margin"] = {"l": 50, "r": 10, "t": 40, "b": 45}
    return layout


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


# --------------------------------------------------------------------------------------------
# Colors and axes every explorer and notebook figure shares
# --------------------------------------------------------------------------------------------


def palette(n: int) -> list[str]:
    """`n` distinct colors, as many as there are choices (never cycling back to the first).

    Plotly's ten default colors while they suffice (what readers know), Dark24 up to 24,
    beyond that evenly spaced hues of Turbo (no two equal, though close ones get hard to tell).
    """
    from plotly.colors import qualitative, sample_colorscale

    if n < 0:
        raise ValueError(f"palette needs n >= 0, got {n}")
    if n <= len(qualitative.Plotly):
        return list(qualitative.Plotly[:n])
    if n <= len(qualitative.Dark24):
        return list(qualitative.Dark24[:n])
    return sample_colorscale("Turbo", [0.05 + 0.9 * i / (n - 1) for i in range(n)])


def color_map(ids) -> dict:
    """One color per id, in the given order: the same id keeps its color in every panel."""
    ids = list(dict.fromkeys(ids))
    return dict(zip(ids, palette(len(ids)), strict=True))


_MAX_LOG_TICKS = 10


def _power_text(base: int, k: int) -> str:
    if base == 2:
        return f"2<sup>{k}</sup>"
    if -3 < k < 4:
        return f"{10.0**k:g}"
    return f"1e{k}"


def log_axis(title: str, values=None, *, base: int = 10) -> dict:
    """A readable log axis: one tick per power of `base`, labelled 2<sup>k</sup> or 0.01 / 1e-4.

    Plotly's default log ticks print SI prefixes ("100μ") and crowd minor labels over short
    ranges. With `values` (the data shown), the ticks are the powers inside their range; with
    fewer than two there, 1-2-3-5 steps (base 10) or every half power (base 2) fill in.
    """
    axis = {"type": "log", "title": {"text": title}, "minor": {"ticks": ""}}
    if values is None:  # no data to place ticks by: one per power, as 10 with a superscript
        step = 1 if base == 10 else math.log10(2)
        return axis | {"dtick": step, "exponentformat": "power", "showexponent": "all"}
    array = np.asarray(values, dtype=float).ravel()
    array = array[np.isfinite(array) & (array > 0)]
    if not len(array):
        return axis
    low, high = math.log(array.min(), base), math.log(array.max(), base)
    powers = list(range(math.ceil(low - 1e-9), math.floor(high + 1e-9) + 1))
    stride = math.ceil(len(powers) / _MAX_LOG_TICKS)  # every power, or every 2nd, 3rd, ...
    ticks = [(float(base) ** k, _power_text(base, k)) for k in powers if k % stride == 0]
    if len(ticks) < 2:
        if base == 10:
            steps = [
                m * 10.0**k
                for k in range(math.floor(low) - 1, math.ceil(high) + 1)
                for m in (1, 2, 3, 5)
            ]
        else:
            steps = [2.0 ** (k / 2) for k in range(math.floor(2 * low), math.ceil(2 * high) + 1)]
        ticks = [(v, f"{v:.3g}") for v in steps if array.min() / 1.001 <= v <= array.max() * 1.001]
    axis["tickvals"] = [v for v, _ in ticks]
    axis["ticktext"] = [t for _, t in ticks]
    return axis
