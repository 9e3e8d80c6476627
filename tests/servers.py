"""Servers the tests start on a free local port (JupyterLab, the Panel app) and stop again."""

from __future__ import annotations

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
