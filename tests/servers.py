"""Servers the tests start on a free local port (JupyterLab, the Panel app) and stop again."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def start_server(argv: list[str], url: str, log: Path, **kwargs) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("w")
    process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, **kwargs)
    try:
        wait_for_http(url, process)
    except Exception:
        process.kill()
        raise RuntimeError(f"{argv[:3]} failed to start; its log: {log}") from None
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serving(argv: Callable[[int], list[str]], ready: str, log: Path, **kwargs) -> Iterator[str]:
    """The URL of a server started with `argv(port)` on a free port, once `ready` (a path
    such as "/") answers there; stopped on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(argv(port), url + ready, log, **kwargs)
    try:
        yield url
    finally:
        stop(process)


def jupyter_lab(root: Path, token: str) -> Callable[[int], list[str]]:
    """argv(port) of a JupyterLab server on `root`: no browser, no news, no update checks."""

    def argv(port: int) -> list[str]:
        return [
            PYTHON, "-m", "jupyterlab", "--no-browser", "--allow-root",
            f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]  # fmt: skip

    return argv


def lab_ready(token: str) -> str:
    """The path that answers once a JupyterLab server started with `token` serves."""
    return f"/api/status?token={token}"


def panel_app(port: int) -> list[str]:
    """argv of the served explorers (`python -m widgets.app`) at their SMOKE sizes."""
    return [PYTHON, "-m", "widgets.app", "--port", str(port), "--smoke"]


def lab_command_options(root: Path) -> list[str]:
    """The ``--Class.trait=value`` options ``./dev lab`` gives ``jupyter lab``, $ROOT expanded
    (read from the dev script, so a test starts the Lab a reader gets)."""
    command = (root / "dev").read_text().split("exec jupyter lab", 1)[1].split(";;", 1)[0]
    options = re.findall(r'(--[A-Za-z]+\.[a-z_]+=)"?([^"\s\\]+)"?', command)
    return [name + value.replace("$ROOT", str(root)) for name, value in options]


def shut_down_kernels(url: str, token: str) -> None:
    """Stop every kernel of the Lab server (one topic's kernel must not load the next)."""
    auth = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/kernels", headers=auth)) as r:
        kernels = json.load(r)
    for kernel in kernels:
        request = urllib.request.Request(
            f"{url}/api/kernels/{kernel['id']}", headers=auth, method="DELETE"
        )
        urllib.request.urlopen(request).close()
