"""The topic table: every topic once, as importable objects.

A topic is one notebook, one study in `workbench/` (sizes, caches and every number shown),
one explorer module here (controls, selection of the study's results, panels), and one entry
below. The served app (`widgets.app`), the latency benchmark (`benchmarks/explorer_latency.py`),
the browser tests (`tests/ui/`), and the checks of `workbench list` and the README's notebook
table (`tests/test_topics.py`) all iterate this table; a notebook without an entry, or an entry
without a notebook, fails that test.

Each `app(smoke)` builds the topic's explorer at its notebook's full or SMOKE size (the
study defines both); the served page, the benchmark and the browser tests call only that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from widgets.explorer import Explorer
from widgets.explorers.flows import flows_app
from widgets.explorers.guidance_scales import guidance_app
from widgets.explorers.inverse_problems import inverse_problems_app
from widgets.explorers.isosurfaces import isosurfaces_app
from widgets.explorers.learned_models import learned_models_app
from widgets.explorers.lr_transfer import lr_depth_app, lr_width_app
from widgets.explorers.noised_mixture import noised_mixture_app
from widgets.explorers.optimizers import optimizers_app
from widgets.explorers.solver_steps import solver_steps_app
from workbench.registry import unknown_choice


@dataclass(frozen=True)
class Topic:
    notebook: str  # its notebook in notebooks/, e.g. "01_solver_steps.ipynb"
    slug: str  # the served page's URL path: /<slug>
    app: Callable[[bool], Explorer]  # app(smoke) -> the topic's explorer
    control: str  # the main control: the browser tests and the latency benchmark move it
    sweep: tuple[float, float, float]  # (low, high, step) the benchmark moves it over; step 0:
    # continuous

    @property
    def number(self) -> str:
        """The notebook's number, "00".."99" (orders the table and names benchmark rows)."""
        return self.notebook.split("_", 1)[0]


TOPICS: tuple[Topic, ...] = (
    Topic("00_tour.ipynb", "noised-mixture", noised_mixture_app, "sigma", (0.05, 0.95, 0)),
    Topic("01_solver_steps.ipynb", "solver-steps", solver_steps_app, "steps", (1, 20, 1)),
    Topic("02_guidance_scales.ipynb", "guidance-scales", guidance_app, "scale", (0, 15, 0.5)),
    Topic("03_lr_transfer_width.ipynb", "lr-transfer-width", lr_width_app, "log2_lr", (-12, -1, 1)),
    Topic("04_lr_transfer_depth.ipynb", "lr-transfer-depth", lr_depth_app, "alpha", (0, 1, 0.5)),
    Topic("05_optimizers.ipynb", "optimizers", optimizers_app, "lr_shift", (-4, 4, 1)),
    Topic("06_flows.ipynb", "flows", flows_app, "steps", (1, 50, 0)),
    Topic("07_isosurfaces.ipynb", "isosurfaces", isosurfaces_app, "log2_lr", (-7, -3, 2)),
    Topic("08_learned_models.ipynb", "learned-models", learned_models_app, "steps", (2, 20, 0)),
    Topic(
        "09_inverse_problems.ipynb",
        "inverse-problems",
        inverse_problems_app,
        "strength",
        (0.5, 1.0, 0.5),
    ),
)


def topic(key: str) -> Topic:
    """The topic with this notebook file name or page slug."""
    for entry in TOPICS:
        if key in (entry.notebook, entry.slug, entry.notebook.removesuffix(".ipynb")):
            return entry
    raise unknown_choice("topic", key, [entry.slug for entry in TOPICS])
