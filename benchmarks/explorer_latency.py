"""Explorer update latency: headless, through the JupyterLab widgets, and against a rebuild.

Each explorer is first swept once (its expensive work is computed and cached on first visit,
as in a notebook), then timed while its main control moves over the same values.

For each explorer, a control is swept over values 50 times and three paths are timed:
  headless   Explorer.update: compute plus building every panel's trace dicts
  ipywidget  setting the control widget through to the PlotGrid widget's message (every
             changed panel's figure, arrays as binary buffers)
  rebuild    the common notebook pattern, the peer: compute, then a new plotly Figure per
             panel serialized for display (what `fig.show()` in an interact callback costs)

Every topic of widgets/topics.py is measured, at its served (full) size unless --smoke.

Run: python benchmarks/explorer_latency.py [--updates 50] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import plotly.graph_objects as go

from widgets import measure_latency
from widgets.topics import TOPICS, Topic


def control_values(topic: Topic, n: int, stops: tuple[float, ...] | None = None) -> list:
    """n values of the topic's main control over its benchmark range, on the control's step
    (its `stops` inside the range, where it has them)."""
    low, high, step = topic.sweep
    if stops is not None:
        inside = [stop for stop in stops if low <= stop <= high]
        return [inside[i % len(inside)] for i in range(n)]  # each move to another stop
    values = np.linspace(low, high, n)
    if step == 1:
        return np.rint(values).astype(int).tolist()
    if step:
        return (np.rint(values / step) * step).tolist()
    return values.tolist()


def row_name(topic: Topic, explorer) -> str:
    """e.g. "01 solver-steps: steps 1..20" (the control's name; its label is in the explorer)."""
    explorer.controls[topic.control]  # the table's control exists (a KeyError names it if not)
    return f"{topic.number} {topic.slug}: {topic.control} {topic.sweep[0]:g}..{topic.sweep[1]:g}"


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
    parser.add_argument("--smoke", action="store_true", help="the topics at their SMOKE sizes")
    args = parser.parse_args()
    columns = ("headless", "ipywidget", "rebuild", "rebuild/ipywidget")
    header = f"{'explorer':42} " + " ".join(f"{c:>10}" for c in columns[:3]) + f" {columns[3]:>18}"
    print(header)
    print("-" * len(header))
    for topic in TOPICS:  # every topic in the table, at its served size
        explorer, control = topic.app(args.smoke), topic.control
        values = control_values(topic, args.updates, explorer.controls[control].stops)
        name = row_name(topic, explorer)
        for value in sorted(set(values)):  # first visits compute and cache; time the selection
            explorer.update(**{control: value})
        headless = measure_latency(explorer, control, values, frontend="headless")
        widget = measure_latency(explorer, control, values, frontend="ipywidget")
        rebuild = rebuild_latency(explorer, control, values)
        ratio = rebuild["median_ms"] / widget["median_ms"]
        print(
            f"{name:42} {headless['median_ms']:8.1f}ms {widget['median_ms']:8.1f}ms "
            f"{rebuild['median_ms']:8.1f}ms {ratio:17.1f}x"
        )
    print("medians over", args.updates, "updates; lower is better")


if __name__ == "__main__":
    main()
