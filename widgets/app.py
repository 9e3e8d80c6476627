"""Every explorer served as a Panel app: an index page linking one page per topic.

    ./dev serve                        # http://127.0.0.1:5006 (localhost only)
    python -m widgets.app --port 8080 --address 0.0.0.0   # to share on a network, deliberately
    python -m widgets.app --address 0.0.0.0 --allow-websocket-origin lab.example.org:443  # a proxy

Each page is the topic notebook's explorer, with the notebook's title and summary, usable
without JupyterLab. Every browser session gets its own explorer (its own control values);
the expensive work behind them is cached per process, so the second visitor pays nothing.

Sessions run concurrently: a page answers with its header and a "computing…" note at once and
builds its explorer on a thread of its own, and every explorer computes on its own worker
thread (see ``widgets.explorer.ExplorerView``), so one slow page never holds up the index or
another reader's page.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence

import panel as pn
from panel.io.server import ComponentResourceHandler
from tornado.web import HTTPError

from widgets._panel import PanelExplorerView
from widgets.tex import tex_html
from widgets.topics import TOPICS, Topic
from workbench.memo import memoized
from workbench.runner import Project, catalog

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5006
SMOKE_ENV = "WORKBENCH_APP_SMOKE"  # 1: every page at its notebook's SMOKE size (tests, demos)
BUILDING = "computing… (building the explorer: seconds on a first visit)"

logger = logging.getLogger(__name__)


def build(topic: Topic, smoke: bool | None = None):
    """The topic's explorer; SMOKE-sized when asked, or when WORKBENCH_APP_SMOKE=1."""
    if smoke is None:
        smoke = os.environ.get(SMOKE_ENV, "") not in ("", "0")
    return topic.app(smoke)


@memoized("notebook catalog", maxsize=1)
def notebook_catalog() -> dict[str, dict[str, str]]:
    """Title and one-line summary of each notebook, read from the notebooks themselves."""
    return {entry["notebook"]: entry for entry in catalog(Project.find().notebooks_dir)}


def _about(topic: Topic) -> dict[str, str]:
    return notebook_catalog().get(topic.notebook, {"title": topic.slug, "summary": ""})


def _header(topic: Topic | None) -> pn.pane.Markdown:
    if topic is None:
        return pn.pane.Markdown("# The workbench\nOne page per topic notebook's explorer.")
    about = _about(topic)
    return pn.pane.Markdown(
        f"[← all topics](./)\n\n# {tex_html(about['title'])}\n{tex_html(about['summary'])}\n\n"
        f"*From `notebooks/{topic.notebook}`; open it in JupyterLab (`./dev lab`) for the "
        "narrative and the measurements.*",
        sizing_mode="stretch_width",
    )


def index_view(topics: Sequence[Topic] = TOPICS) -> pn.Column:
    rows = [
        f"- [**{tex_html(_about(topic)['title'])}**](./{topic.slug}) — "
        f"{tex_html(_about(topic)['summary'])}"
        for topic in topics
    ]
    return pn.Column(_header(None), pn.pane.Markdown("\n".join(rows)), sizing_mode="stretch_width")


def page_view(topic: Topic) -> pn.Column:
    """The page at once, with a "computing…" note where the explorer goes; the explorer is
    built on a thread (not on the server's event loop, which every session shares) and
    replaces the note when it is ready."""
    building = pn.Row(
        pn.indicators.LoadingSpinner(value=True, size=22, margin=(4, 10)),
        pn.pane.HTML(BUILDING, margin=(6, 0)),
    )
    # The page's figures arrive after the page itself: load plotly.js with the page.
    pn.extension("plotly")
    page = pn.Column(_header(topic), building, sizing_mode="stretch_width")
    doc = pn.state.curdoc if pn.state.curdoc and pn.state.curdoc.session_context else None
    threading.Thread(
        target=_build_into, args=(page, topic, doc), name=f"page {topic.slug}", daemon=True
    ).start()
    return page


# One build of a topic at a time: a second reader arriving during a first visit waits for it
# and then finds everything cached, instead of computing the same results alongside.
_BUILDING: dict[str, threading.Lock] = {}


def _build_into(page: pn.Column, topic: Topic, doc) -> None:
    """Build the topic's explorer and put it in place of the page's "computing…" note."""
    try:
        with _BUILDING.setdefault(topic.slug, threading.Lock()):  # setdefault is atomic
            explorer = build(topic)
        content = PanelExplorerView(explorer, background=True).root
    except Exception as exc:  # the page says so; the server and other pages carry on
        logger.exception("page %s failed to build", topic.slug)
        content = pn.pane.Alert(
            f"This page failed to build: {type(exc).__name__}: {exc}", alert_type="danger"
        )

    def show() -> None:
        page[1] = content

    if doc is None:  # not in a served session (a test, a notebook): no event loop to wait for
        show()
        return
    # Bokeh's one thread-safe Document method: run `show` on the session's event loop.
    try:
        doc.add_next_tick_callback(show)
    except Exception:  # the reader left before the page was ready: nobody to show it to
        logger.info("page %s built after its session ended", topic.slug)


def routes(topics: Sequence[Topic] = TOPICS) -> dict[str, Callable[[], pn.viewable.Viewable]]:
    """URL path -> a function building that page for one browser session."""
    table: dict[str, Callable] = {"/": lambda: index_view(topics)}
    for topic in topics:
        table[topic.slug] = lambda topic=topic: page_view(topic)
    return table


class ImportedComponentResources(ComponentResourceHandler):
    """Panel's `/components/<module>/<component>/<attribute>/<path>` handler without its import.

    Panel's own handler imports `<module>` straight from the URL, so any request could make the
    server import any importable module and run its import-time code (`workbench.__main__` ran
    the CLI, which parsed the server's argv and exited the server). Here the module must already
    be imported (the module of every component a page renders is) and the component must be
    defined in it (no module `__getattr__` hooks, which may import); the rest is Panel's check
    that the file asked for is one the component lists.
    """

    def parse_url_path(self, path: str) -> str:
        module_name, _, rest = path.partition("/")
        module = sys.modules.get(module_name)
        if module is None:
            raise HTTPError(404, "Module not found")
        if rest.partition("/")[0] not in vars(module):
            raise HTTPError(404, "Component not found")
        return super().parse_url_path(path)


# Ahead of Panel's own route for the same path (Tornado takes the first match).
COMPONENT_ROUTES = [(r"/components/(.*)", ImportedComponentResources, {})]


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _machine_names(address: str) -> set[str]:
    """The names and addresses a remote browser may use to reach `address` on this machine."""
    names = {socket.gethostname(), socket.getfqdn()}
    if address not in ("", "0.0.0.0", "::"):
        names.add(address)  # bound to one interface: its address (or the name given) only
    else:
        import psutil

        for addresses in psutil.net_if_addrs().values():
            names.update(a.address for a in addresses if a.family == socket.AF_INET)
    try:
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:  # the host name does not resolve: the names above remain
        pass
    # Bokeh's allow-list is host[:port]; an IPv6 literal has colons it cannot parse.
    return {n.lower() for n in names if n and ":" not in n and not _is_loopback(n)}


def websocket_origins(address: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """Bokeh's websocket origin allow-list (HOST:PORT entries; HOST alone means port 80).

    Always localhost and 127.0.0.1; on a non-loopback address also this machine's host name,
    FQDN and IPv4 addresses (of every interface for 0.0.0.0), each with the port, so a remote
    browser is not refused with 403. `extra` adds names, e.g. a reverse proxy's HOST[:PORT];
    HOST:443 also admits HOST alone, since a browser on https://HOST/ sends an Origin without a
    port, which Bokeh compares as HOST:80.
    """
    hosts = {"localhost", "127.0.0.1"}
    if _is_loopback(address):
        hosts.add(address)
    else:
        hosts |= _machine_names(address)
    origins = sorted(f"{host}:{port}" for host in hosts)
    for origin in filter(None, extra):
        origins.append(origin)
        if origin.endswith(":443"):
            origins.append(origin.removesuffix(":443"))
    return origins


def serve(
    *,
    address: str = DEFAULT_ADDRESS,
    port: int = DEFAULT_PORT,
    topics: Sequence[Topic] = TOPICS,
    show: bool = False,
    allow_websocket_origin: Sequence[str] = (),
):
    """Start the server (blocking). Bound to localhost unless `address` says otherwise."""
    return pn.serve(
        routes(topics),
        address=address,
        port=port,
        websocket_origin=websocket_origins(address, port, allow_websocket_origin),
        show=show,
        title={"/": "The workbench", **{t.slug: _about(t)["title"] for t in topics}},
        verbose=True,
        extra_patterns=list(COMPONENT_ROUTES),
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
    parser.add_argument(
        "--allow-websocket-origin",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="also accept browsers whose page came from HOST[:PORT] (e.g. a reverse proxy's "
        "name; port 80 when omitted, HOST:443 also accepts https://HOST/); repeatable. "
        "Localhost, and on a non-loopback --address this machine's names and addresses, are "
        "always accepted",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ[SMOKE_ENV] = "1"
    print(f"serving the workbench explorers on http://{args.address}:{args.port}/", flush=True)
    serve(
        address=args.address,
        port=args.port,
        show=args.show,
        allow_websocket_origin=args.allow_websocket_origin,
    )


if __name__ == "__main__":
    main()
