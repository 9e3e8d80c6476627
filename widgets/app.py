"""Every explorer served as a Panel app: an index page linking one page per topic.

    ./dev serve                        # http://127.0.0.1:5006 (localhost only)
    python -m widgets.app --port 8080 --address 0.0.0.0   # to share on a network, deliberately

Each page is the topic notebook's explorer, with the notebook's title and summary, usable
without JupyterLab. Every browser session gets its own explorer (its own control values);
the expensive work behind them is cached per process, so the second visitor pays nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import panel as pn

from workbench.runner import Project, catalog

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5006
SMOKE_ENV = "WORKBENCH_APP_SMOKE"  # 1: every page at its notebook's SMOKE size (tests, demos)


@dataclass(frozen=True)
class Page:
    slug: str  # the URL path: /<slug>
    notebook: str  # the topic notebook it belongs to, e.g. "01_solver_steps.ipynb"
    explorer: str  # "module:function" returning an Explorer (imported when first visited)
    control: str  # the page's main control (what the browser tests move)
    smoke: Mapping[str, Any] = field(default_factory=dict)  # the factory's SMOKE-size kwargs

    def build(self, smoke: bool | None = None):
        """The page's explorer; SMOKE-sized when asked, or when WORKBENCH_APP_SMOKE=1."""
        if smoke is None:
            smoke = os.environ.get(SMOKE_ENV, "") not in ("", "0")
        module, _, function = self.explorer.partition(":")
        factory: Callable = getattr(importlib.import_module(module), function)
        return factory(**(self.smoke if smoke else {}))


PAGES: tuple[Page, ...] = (
    Page(
        "noised-mixture",
        "00_tour.ipynb",
        "widgets.explorers.noised_mixture:noised_mixture_explorer",
        "sigma",
        {"n_samples": 1000},
    ),
    Page(
        "solver-steps",
        "01_solver_steps.ipynb",
        "widgets.explorers.solver_steps:solver_steps_explorer",
        "steps",
        {"n_samples": 500},
    ),
    Page(
        "guidance-scales",
        "02_guidance_scales.ipynb",
        "widgets.explorers.guidance_scales:guidance_app",
        "scale",
        {"smoke": True},
    ),
    Page(
        "lr-transfer-width",
        "03_lr_transfer_width.ipynb",
        "widgets.explorers.lr_transfer:lr_width_app",
        "log2_lr",
        {"smoke": True},
    ),
    Page(
        "lr-transfer-depth",
        "04_lr_transfer_depth.ipynb",
        "widgets.explorers.lr_transfer:lr_depth_app",
        "alpha",
        {"smoke": True},
    ),
    Page(
        "optimizers",
        "05_optimizers.ipynb",
        "widgets.explorers.optimizers:optimizer_explorer",
        "lr_shift",
        {"steps": 40, "lr_log2": (-5, -1)},
    ),
)


@lru_cache(maxsize=1)
def topics() -> dict[str, dict[str, str]]:
    """Title and one-line summary of each notebook, read from the notebooks themselves."""
    return {entry["notebook"]: entry for entry in catalog(Project.find().notebooks_dir)}


def _header(page: Page | None) -> pn.pane.Markdown:
    if page is None:
        return pn.pane.Markdown("# The workbench\nOne page per topic notebook's explorer.")
    topic = topics().get(page.notebook, {"title": page.slug, "summary": ""})
    return pn.pane.Markdown(
        f"[← all topics](./)\n\n# {topic['title']}\n{topic['summary']}\n\n"
        f"*From `notebooks/{page.notebook}`; open it in JupyterLab (`./dev lab`) for the "
        "narrative and the measurements.*",
        sizing_mode="stretch_width",
    )


def _title(page: Page) -> str:
    return topics().get(page.notebook, {"title": page.slug})["title"]


def index_view(pages: Sequence[Page] = PAGES) -> pn.Column:
    rows = []
    for page in pages:
        summary = topics().get(page.notebook, {"summary": ""})["summary"]
        rows.append(f"- [**{_title(page)}**](./{page.slug}) — {summary}")
    return pn.Column(_header(None), pn.pane.Markdown("\n".join(rows)), sizing_mode="stretch_width")


def page_view(page: Page) -> pn.Column:
    return pn.Column(_header(page), page.build().panel(), sizing_mode="stretch_width")


def routes(pages: Sequence[Page] = PAGES) -> dict[str, Callable[[], pn.viewable.Viewable]]:
    """URL path -> a function building that page for one browser session."""
    table: dict[str, Callable] = {"/": lambda: index_view(pages)}
    for page in pages:
        table[page.slug] = lambda page=page: page_view(page)
    return table


def serve(
    *,
    address: str = DEFAULT_ADDRESS,
    port: int = DEFAULT_PORT,
    pages: Sequence[Page] = PAGES,
    show: bool = False,
):
    """Start the server (blocking). Bound to localhost unless `address` says otherwise."""
    origins = [f"{host}:{port}" for host in {address, "localhost", "127.0.0.1"}]
    return pn.serve(
        routes(pages),
        address=address,
        port=port,
        websocket_origin=origins,
        show=show,
        title={"/": "The workbench", **{p.slug: _title(p) for p in pages}},
        verbose=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m widgets.app", description="Serve every explorer as a Panel app."
    )
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="default: localhost only")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--show", action="store_true", help="open a browser tab")
    parser.add_argument(
        "--smoke", action="store_true", help="SMOKE-sized pages: seconds to first figure"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ[SMOKE_ENV] = "1"
    print(f"serving the workbench explorers on http://{args.address}:{args.port}/", flush=True)
    serve(address=args.address, port=args.port, show=args.show)


if __name__ == "__main__":
    main()
