"""Explorer update latency: headless, through the JupyterLab widgets, and against a rebuild.

Each explorer is first swept once (its expensive work is computed and cached on first visit,
as in a notebook), then timed while its main control moves over the same values.

For each explorer, a control is swept over values 50 times and three paths are timed:
  headless   Explorer.update: compute plus building every panel's trace dicts
  ipywidget  setting the control widget through to the FigureWidgets updated in place
  rebuild    the common notebook pattern, the peer: compute, then a new plotly Figure per
             panel serialized for display (what `fig.show()` in an interact callback costs)

Run: python benchmarks/explorer_latency.py [--updates 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import plotly.graph_objects as go

from widgets import measure_latency
from widgets.explorers import noised_mixture_explorer
from widgets.explorers.guidance_scales import guidance_app
from widgets.explorers.lr_transfer import lr_depth_app, lr_width_app
from widgets.explorers.optimizers import optimizer_explorer
from widgets.explorers.solver_steps import solver_steps_explorer

# name -> (factory, control, (low, high), step of the values: 1 for integers, 0 continuous)
EXPLORERS = {
    "tour: noised mixture (4,000 samples)": (noised_mixture_explorer, "sigma", (0.05, 0.95), 0),
    "01: solver steps 1-20 (4,000 samples)": (solver_steps_explorer, "steps", (1, 20), 1),
    "02: guidance scale w 0-15 (2,000 samples)": (guidance_app, "scale", (0, 15), 0.5),
    "03: learning rate 2^-12..2^-1 (muP Adam)": (lr_width_app, "log2_lr", (-12, -1), 1),
    "04: residual branch exponent alpha 0-1": (lr_depth_app, "alpha", (0, 1), 0.5),
    "05: optimizers, lr x 2^-4..2^4": (optimizer_explorer, "lr_shift", (-4, 4), 1),
}


def rebuild_latency(explorer, control: str, values) -> dict:
    times = []
    for value in values:
        start = time.perf_counter()
        update = explorer.update(**{control: value})
        for figure in update.figures.values():
            go.Figure(figure).to_json()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=50)
    args = parser.parse_args()
    columns = ("headless", "ipywidget", "rebuild", "rebuild/ipywidget")
    header = f"{'explorer':40} " + " ".join(f"{c:>10}" for c in columns[:3]) + f" {columns[3]:>18}"
    print(header)
    print("-" * len(header))
    for name, (factory, control, (lo, hi), step) in EXPLORERS.items():
        explorer = factory()
        values = list(np.linspace(lo, hi, args.updates))
        if step == 1:
            values = np.rint(values).astype(int).tolist()
        elif step:
            values = (np.rint(np.array(values) / step) * step).tolist()
        for value in sorted(set(values)):  # first visits compute and cache; time the selection
            explorer.update(**{control: value})
        headless = measure_latency(explorer, control, values, frontend="headless")
        widget = measure_latency(explorer, control, values, frontend="ipywidget")
        rebuild = rebuild_latency(explorer, control, values)
        ratio = rebuild["median_ms"] / widget["median_ms"]
        print(
            f"{name:40} {headless['median_ms']:8.1f}ms {widget['median_ms']:8.1f}ms "
            f"{rebuild['median_ms']:8.1f}ms {ratio:17.1f}x"
        )
    print("medians over", args.updates, "updates; lower is better")


if __name__ == "__main__":
    main()
