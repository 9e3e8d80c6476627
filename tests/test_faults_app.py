"""The served app survives its own URLs, and importing any module of the project does nothing.

Issue 11, part 5: `GET /components/workbench.__main__/x/__css__/a.css` made Panel's component
resource handler import `workbench.__main__`, whose module-level `sys.exit(main())` parsed the
server's argv and exited the server. Here: every module imports without side effects; the
server refuses to import modules named in URLs and keeps answering after odd requests; and on
a non-loopback address the websocket origin allow-list admits this machine's names (a remote
browser is not refused with 403) but not other origins.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from servers import PYTHON, free_port, lab_command_options, serving, stop

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter whose cwd is an empty folder: imports every module of the given
# packages, one after the other, and reports per module what its import did.
AUDIT = textwrap.dedent(
    r"""
    import importlib, io, json, os, pkgutil, signal, sys, threading, logging

    root, packages = sys.argv[1], sys.argv[2:]
    # Set by third-party imports, not by the project: pyviz_comms (imported with panel) marks
    # itself installed in os.environ for its Jupyter detection.
    THIRD_PARTY_ENV = {"_PYVIZ_COMMS_INSTALLED"}
    SENTINEL = ["audit-probe", "--not-an-option", "57193"]
    events = []

    def writes(flags_or_mode):
        if isinstance(flags_or_mode, str):
            return any(c in flags_or_mode for c in "wax+")
        if isinstance(flags_or_mode, int):
            return bool(flags_or_mode & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        return False

    def inside(path):
        try:
            path = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        if "__pycache__" in path:
            return False
        return any(path == d or path.startswith(d + os.sep) for d in (root, os.getcwd()))

    def hook(event, args):
        if event == "open" and len(args) >= 3 and args[0] is not None:
            if (writes(args[1]) or writes(args[2])) and inside(args[0]):
                events.append(f"opens {args[0]} for writing")
        elif event in ("os.mkdir", "os.rename", "os.remove", "shutil.rmtree") and inside(args[0]):
            events.append(f"{event} {args[0]}")
        elif event == "sqlite3.connect" and args and inside(args[0]):
            events.append(f"opens the database {args[0]}")
        elif event in ("socket.bind", "socket.connect"):
            events.append(f"{event} {args[1]!r}")
        elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork"):
            events.append(f"{event} {args[:2]!r}")
        elif event == "webbrowser.open":
            events.append(f"opens a browser: {args!r}")

    def state():
        return {
            "argv": list(sys.argv),
            "env": dict(os.environ),
            "threads": sorted(t.name for t in threading.enumerate()),
            "signals": {s: repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)},
            "root_logger": [repr(h) for h in logging.getLogger().handlers],
            "cwd_files": sorted(os.listdir(".")),
        }

    names = []
    for package in packages:
        names.append(package)
        module = importlib.import_module(package)
        names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
    sys.addaudithook(hook)
    report = {}
    for name in names:
        sys.argv = list(SENTINEL)
        before, out, err = state(), io.StringIO(), io.StringIO()
        real_out, real_err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        problems = []
        del events[:]
        try:
            importlib.import_module(name)
        except SystemExit as exc:
            problems.append(f"raises SystemExit({exc.code!r})")
        except BaseException as exc:
            problems.append(f"raises {type(exc).__name__}: {exc}")
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        after = state()
        if out.getvalue():
            problems.append(f"prints {out.getvalue()[:200]!r}")
        if err.getvalue():
            problems.append(f"writes to stderr {err.getvalue()[:200]!r}")
        for key, old in before.items():
            new = after[key]
            if key == "env":
                changed = sorted(
                    k for k in (set(old) | set(new)) - THIRD_PARTY_ENV if old.get(k) != new.get(k)
                )
                if changed:
                    problems.append(f"changes os.environ {changed}")
            elif new != old:
                problems.append(f"changes {key}: {old!r} -> {new!r}")
        problems += events
        if problems:
            report[name] = problems
    print(json.dumps({"modules": names, "problems": report}))
    """
)


def _audit(*packages: str) -> dict:
    import tempfile

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
    env.pop("WORKBENCH_APP_SMOKE", None)
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [PYTHON, "-c", AUDIT, str(ROOT), *packages],
            cwd=cwd,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        leftovers = os.listdir(cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["cwd_leftovers"] = leftovers
    return result


def test_importing_any_module_has_no_side_effects():
    """No SystemExit, no output, no files in the repository or the cwd, no threads, sockets,
    processes or browsers, and sys.argv, os.environ, signal handlers and logging untouched."""
    result = _audit("workbench", "widgets")
    assert "workbench.__main__" in result["modules"]
    assert "widgets.app" in result["modules"]
    assert len(result["modules"]) > 30  # the walk found the subpackages
    assert result["problems"] == {}
    assert result["cwd_leftovers"] == []


def test_the_audit_catches_the_old_main_module(tmp_path):
    """The audit is not vacuous: the unguarded `sys.exit(main())` of before is reported."""
    package = tmp_path / "oldmain"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "import sys\n\nfrom workbench.cli import main\n\nsys.exit(main())\n"
    )
    (package / "chatty.py").write_text(
        "import threading, time\nprint('hello')\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True, name='stray').start()\n"
        "open('made-at-import.txt', 'w').close()\n"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [PYTHON, "-c", AUDIT, str(tmp_path), "oldmain"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    problems = json.loads(done.stdout.strip().splitlines()[-1])["problems"]
    assert any("SystemExit(2)" in p for p in problems["oldmain.__main__"])
    chatty = " | ".join(problems["oldmain.chatty"])
    assert "prints 'hello" in chatty
    assert "stray" in chatty
    assert "made-at-import.txt" in chatty


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, workbench.cli; print(sorted(m for m in sys.modules if m == 'torch'))"
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_python_dash_m_workbench_still_runs_the_cli():
    done = subprocess.run(
        [PYTHON, "-m", "workbench", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: workbench" in done.stdout


# ---------------------------------------------------------------------------- the server


def get(url: str, timeout: float = 30) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def raw_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 request as written (no client-side path normalization) to 127.0.0.1."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and headers and "Upgrade" in headers:
                break  # a websocket answer stays open
    status_line = data.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), data


def start_app(port: int, log: Path, *args: str) -> subprocess.Popen:
    handle = log.open("w")
    env = {k: v for k, v in os.environ.items() if k != "BOKEH_ALLOW_WS_ORIGIN"}
    process = subprocess.Popen(
        [PYTHON, "-m", "widgets.app", "--port", str(port), "--smoke", *args],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited: {log.read_text()[-3000:]}"
        try:
            if get(f"http://127.0.0.1:{port}/", timeout=5) == 200:
                return process
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    process.kill()
    raise TimeoutError(f"the app did not answer; its log: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def loopback_app(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "server.log"
    process = start_app(port, log)
    yield port, process, log
    stop(process)


ODD_URLS = [
    "/components/workbench.__main__/x/__css__/a.css",  # the URL that shut the server down
    "/components/os/x/__css__/a.css",
    "/components/antigravity/x/__css__/a.css",  # importing it opens a web browser
    "/components/this/x/__css__/a.css",  # importing it prints the Zen of Python
    "/components/workbench.cli/main/__css__/a.css",
    "/components/widgets.app/serve/__css__/a.css",
    "/components/panel/x/__css__/../../../../etc/passwd",
    "/components/a",
    "/components/",
    "/../../etc/passwd",
    "/static/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/" + "a" * 20_000,
    "/no-such-page",
    "/noised-mixture/../../../etc/passwd",
]


@pytest.mark.parametrize("path", ODD_URLS, ids=lambda p: p[:60])
def test_odd_urls_are_refused_and_the_server_keeps_answering(loopback_app, path):
    port, process, log = loopback_app
    status, body = raw_get(port, path)
    assert status in (400, 403, 404, 414, 431), (status, body[:300])
    assert b"root:" not in body
    time.sleep(0.2)
    assert process.poll() is None, f"the server exited: {log.read_text()[-3000:]}"
    assert get(f"http://127.0.0.1:{port}/") == 200


def test_urls_do_not_make_the_server_import_modules(loopback_app):
    port, _, log = loopback_app
    for module in ("antigravity", "this", "workbench.__main__", "tomllib", "wsgiref.simple_server"):
        assert raw_get(port, f"/components/{module}/x/__css__/a.css")[0] == 404
    text = log.read_text()
    assert "Module not found" in text
    assert "The Zen of Python" not in text
    assert "usage: workbench" not in text


def test_a_listed_component_resource_is_still_served(loopback_app):
    """What Panel's handler served, this one still serves: a file that a component of an
    imported module lists (FastListTemplate's css; `import panel` imports the module)."""
    import panel as pn
    from panel.io.resources import component_resource_path

    template = pn.template.FastListTemplate
    css = next(Path(c) for c in template._css if Path(c).name == "fast_list_template.css")
    path = "/" + component_resource_path(template, "_css", css)
    assert path.startswith("/components/panel.template.fast.list/FastListTemplate/_css/")
    port, _, _ = loopback_app
    status, body = raw_get(port, path)
    assert status == 200
    assert css.read_bytes()[:200] in body
    # ... and nothing the component does not list, of the same module
    assert raw_get(port, path.replace("fast_list_template.css", "__init__.py"))[0] == 403


def test_every_page_still_loads(loopback_app):
    from widgets.topics import TOPICS

    port, _, _ = loopback_app
    for page in TOPICS:
        assert get(f"http://127.0.0.1:{port}/{page.slug}", timeout=300) == 200, page.slug


# ------------------------------------------------------- concurrent sessions, readable math

# A server whose one topic takes SLOW_BUILD_S to build its explorer (argv: port, a file it
# writes when the build starts).
SLOW_BUILD_S = 8
SLOW_SERVER = textwrap.dedent(
    f"""
    import sys, time
    from pathlib import Path
    from widgets.app import serve
    from widgets.explorer import Explorer, FigurePanel, Slider
    from widgets.topics import TOPICS, Topic

    def slow_app(smoke):
        Path(sys.argv[2]).write_text("building")
        time.sleep({SLOW_BUILD_S})
        line = FigurePanel("p", "p", lambda x: [{{"type": "scatter", "y": [0.0, x]}}])
        return Explorer("slow", [Slider("x", "x", 0.0, 1.0, 0.5)], lambda x: x, [line])

    slow = Topic(TOPICS[0].notebook, "slow-page", slow_app, "x", (0.0, 1.0, 0.0))
    serve(port=int(sys.argv[1]), topics=[slow])
    """
)


def timed_get(url: str) -> tuple[int, float]:
    start = time.monotonic()
    status = get(url, timeout=60)
    return status, time.monotonic() - start


def test_a_slow_page_holds_up_neither_the_index_nor_another_session(tmp_path):
    port, started = free_port(), tmp_path / "build-started"
    with (tmp_path / "server.log").open("w") as log:
        process = subprocess.Popen(
            [PYTHON, "-c", SLOW_SERVER, str(port), str(started)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if get(url + "/", timeout=5) == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.3)
        status, seconds = timed_get(url + "/slow-page")
        assert status == 200 and seconds < 3  # the page shell, its explorer still building
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline, "the page's build never started"
            time.sleep(0.05)
        building_since = time.monotonic()
        for _ in range(3):
            status, seconds = timed_get(url + "/")
            assert status == 200 and seconds < 1.0, seconds
        status, seconds = timed_get(url + "/slow-page")  # a second reader of the slow page
        assert status == 200 and seconds < 3
        assert time.monotonic() - building_since < SLOW_BUILD_S  # all while it was building
    finally:
        stop(process)


def test_the_page_shows_computing_then_its_explorer():
    from widgets.app import BUILDING, page_view
    from widgets.explorer import Explorer, FigurePanel, Slider
    from widgets.topics import TOPICS, Topic

    def app(smoke):
        time.sleep(0.5)
        line = FigurePanel("p", "p", lambda x: [{"type": "scatter", "y": [0.0, x]}])
        return Explorer("later", [Slider("x", "x", 0.0, 1.0, 0.25)], lambda x: x, [line])

    page = page_view(Topic(TOPICS[0].notebook, "later", app, "x", (0.0, 1.0, 0.0)))
    assert BUILDING in page[1][1].object  # at once: the note, not the explorer
    deadline = time.monotonic() + 30
    while not hasattr(page[1], "_explorer_view"):
        assert time.monotonic() < deadline, "the explorer never replaced the note"
        time.sleep(0.05)
    view = page[1]._explorer_view
    assert view.background and view.figures["p"]["data"][0]["y"] == [0.0, 0.25]


def test_the_index_and_page_headers_show_math_as_symbols():
    from widgets.app import _header, index_view, notebook_catalog
    from widgets.tex import tex_html
    from widgets.topics import topic

    index = index_view().objects[1].object
    assert "$" not in index and "\\" not in index
    assert "p<sub>w</sub>(x | c) ∝ p(x | c)<sup>w</sup> p(x)<sup>1−w</sup>" in index
    header = _header(topic("guidance-scales")).object
    assert "∝" in header and "$" not in header
    for about in notebook_catalog().values():  # every title and summary converts fully
        for text in (about["title"], about["summary"]):
            assert "$" not in tex_html(text) and "\\" not in tex_html(text), text
    assert (
        tex_html(r"noise $\sigma_t^2$ & <b>") == "noise σ<sub>t</sub><sup>2</sup> &amp; &lt;b&gt;"
    )


# ------------------------------------------------------------------------- the lab command


def test_the_lab_command_opens_the_tour_on_the_repository_without_the_news_prompt(tmp_path):
    import shutil

    options = lab_command_options(ROOT)
    assert f"--ServerApp.root_dir={ROOT}" in options  # runs/ reachable from the file browser
    (default_url,) = [o.split("=", 1)[1] for o in options if o.startswith("--LabApp.default_url")]
    assert default_url == "/lab/tree/notebooks/00_tour.ipynb"
    # ./dev setup installs the settings file where JupyterLab reads overrides.d/*.json ...
    dev = (ROOT / "dev").read_text()
    assert "cp jupyter/overrides.json" in dev
    assert '"$VENV/share/jupyter/lab/settings/overrides.d/workbench.json"' in dev
    assert 'mkdir -p "$ROOT/runs"' in dev  # a fresh clone has no run folder yet
    (ROOT / "runs").mkdir(exist_ok=True)  # as the lab command does
    # ... and here, in a Lab started with the lab command's options, the file takes effect
    overrides = tmp_path / "settings" / "overrides.d"
    overrides.mkdir(parents=True)
    shutil.copy(ROOT / "jupyter" / "overrides.json", overrides / "workbench.json")
    token = "lab-command-test"

    def argv(port: int) -> list[str]:
        return [
            PYTHON, "-m", "jupyterlab", "--no-browser", "--allow-root", *options,
            f"--ServerApp.port={port}", f"--ServerApp.token={token}",
            f"--LabApp.app_settings_dir={tmp_path / 'settings'}",
        ]  # fmt: skip

    with serving(argv, f"/api/status?token={token}", tmp_path / "lab.log", cwd=tmp_path) as url:
        assert get(f"{url}{default_url}?token={token}") == 200

        def api(path: str) -> dict:
            with urllib.request.urlopen(f"{url}{path}?token={token}", timeout=60) as response:
                return json.load(response)

        assert api("/api/contents/runs")["type"] == "directory"
        assert api("/api/contents/notebooks/00_tour.ipynb")["type"] == "notebook"
        notification = api("/lab/api/settings/@jupyterlab/apputils-extension:notification")
        properties = notification["schema"]["properties"]
        # "none" (the default) is what makes Lab ask; "false" is the answer "never"
        assert properties["fetchNews"]["default"] == "false"
        assert properties["checkForUpdates"]["default"] is False


# ---------------------------------------------------------------------- websocket origins


def upgrade(port: int, page: str, origin: str) -> int:
    """Open the page's websocket on 127.0.0.1 with the given Origin; the HTTP status."""
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "Origin": origin,
    }
    # Bokeh wants the session token as a subprotocol; a page request hands one out.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{page}", timeout=300) as response:
        html = response.read().decode()
    token = html.split('"token":"', 1)[1].split('"', 1)[0] if '"token":"' in html else None
    if token is None:
        import re

        match = re.search(r"token&quot;:&quot;([^&]+)&quot;|\"token\": ?\"([^\"]+)\"", html)
        token = next(g for g in match.groups() if g) if match else None
    assert token, "no session token in the page"
    headers["Sec-WebSocket-Protocol"] = f"bokeh, {token}"
    path = f"/{page}/ws" if page else "/ws"
    return raw_get(port, path, headers)[0]


@pytest.fixture(scope="module")
def network_app(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "server.log"
    process = start_app(
        port, log, "--address", "0.0.0.0", "--allow-websocket-origin", "proxy.example.org:8443"
    )
    yield port, log
    stop(process)


def test_origins_on_a_network_address_name_this_machine():
    from widgets.app import websocket_origins

    origins = websocket_origins("0.0.0.0", 5100, ["proxy.example.org"])
    assert f"{socket.gethostname().lower()}:5100" in origins
    assert f"{socket.getfqdn().lower()}:5100" in origins
    assert {"localhost:5100", "127.0.0.1:5100", "proxy.example.org"} <= set(origins)
    assert "0.0.0.0:5100" not in origins
    assert all(o.count(":") <= 1 for o in origins)  # what Bokeh's allow-list can parse
    # On loopback: localhost only (and the address itself), plus what was asked for.
    assert set(websocket_origins("127.0.0.1", 5006)) == {"localhost:5006", "127.0.0.1:5006"}


def test_a_remote_browser_is_admitted_and_another_origin_refused(network_app):
    port, log = network_app
    hostname = socket.gethostname()
    page = "noised-mixture"
    for origin in (
        f"http://{hostname}:{port}",
        f"http://{socket.getfqdn()}:{port}",
        f"http://localhost:{port}",
        "https://proxy.example.org:8443",
    ):
        assert upgrade(port, page, origin) == 101, (origin, log.read_text()[-2000:])
    for origin in ("http://evil.example:1234", f"http://evil.example:{port}", "null"):
        assert upgrade(port, page, origin) == 403, origin
    assert upgrade(port, "", f"http://{hostname}:{port}") == 101


def test_a_proxy_on_https_default_port_is_admitted():
    """A browser on https://lab.example.org/ sends `Origin: https://lab.example.org` (no port),
    which Bokeh compares as lab.example.org:80: `--allow-websocket-origin HOST:443` covers it."""
    from bokeh.server.util import check_allowlist, create_hosts_allowlist

    from widgets.app import websocket_origins

    allowed = create_hosts_allowlist(
        websocket_origins("0.0.0.0", 5006, ["lab.example.org:443"]), 5006
    )
    assert check_allowlist("lab.example.org", allowed)
    assert check_allowlist("lab.example.org:443", allowed)
    assert not check_allowlist("evil.example", allowed)
    assert not check_allowlist("lab.example.org:8080", allowed)


def test_the_server_address_is_admitted_on_a_specific_interface():
    from widgets.app import websocket_origins

    origins = websocket_origins("192.0.2.7", 5006)
    assert "192.0.2.7:5006" in origins
    assert "localhost:5006" in origins
