"""Where independent pieces of work run: in this process, in local processes, or on Dask.

Sweeps and notebook grids are lists of independent tasks (a pure function applied to each
item). A backend applies the function to every item and returns the results in item order,
each exactly once, whatever happened on the way: a process that dies takes its task with
it, and the task is run again elsewhere (a task may therefore *run* twice, but its result is
kept once, keyed by its index).

    backend = get_backend("dask")                    # a LocalCluster started on demand
    backend = get_backend("dask://10.0.0.5:8786")    # an existing scheduler: scale out
    results = backend.map(fn, items, progress="cells")

`on_result(index, result)`, if given, is called here as each result arrives (the runner
writes each notebook's results as soon as it finishes). An interruption (Ctrl-C, or the
runner's SIGTERM handler) ends the worker processes a backend started, with their children.

`fn` and the items must be picklable for the process and Dask backends (a module-level
function, plain data), which is also what makes them cacheable.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from workbench.progress import progress as progress_bar

BACKENDS = ("inprocess", "processes", "dask")


DASK_PORT = 8786  # a scheduler's default port
CONNECT_TIMEOUT_S = 5.0  # how long to wait for a Dask scheduler to answer

OnResult = Callable[[int, Any], None] | None


class BackendError(RuntimeError):
    """A backend could not run the work (a bad name, a task failing again and again)."""


class _Backend:
    """What every backend shares: `probe` (nothing to reach by default) and `map`, which
    collects the results by index as `_run` delivers them, whatever order they come in."""

    def probe(self) -> None:
        """Nothing to reach: the work runs on this machine."""

    def map(
        self,
        fn: Callable,
        items: Sequence,
        *,
        progress: str | None = None,
        on_result: OnResult = None,
    ) -> list:
        results = _Results(len(items), progress, on_result)
        try:
            self._run(fn, items, results)
        finally:
            results.close()
        return results.in_order()

    def _run(self, fn: Callable, items: Sequence, results: _Results) -> None:
        raise NotImplementedError


class _Results:
    """The results of one map by item index; each arrival advances the progress bar and is
    passed to `on_result`."""

    def __init__(self, count: int, progress: str | None, on_result: OnResult):
        self.count, self.on_result = count, on_result
        self.by_index: dict[int, Any] = {}
        self.bar = progress_bar(total=count, desc=progress, disable=progress is None)

    def add(self, index: int, result: Any) -> None:
        self.by_index[index] = result
        self.bar.update()
        if self.on_result is not None:
            self.on_result(index, result)

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self.by_index]

    def in_order(self) -> list:
        return [self.by_index[i] for i in range(self.count)]

    def close(self) -> None:
        self.bar.close()


@dataclass
class InProcess(_Backend):
    """Run every task here, one after the other (the default: no pickling, easy to debug)."""

    name: str = "inprocess"

    def _run(self, fn: Callable, items: Sequence, results: _Results) -> None:
        for index, item in enumerate(items):
            results.add(index, fn(item))


@dataclass
class Processes(_Backend):
    """Local worker processes. A pool broken by a dead worker is replaced and the tasks that
    had not returned are resubmitted, up to `retries` times."""

    workers: int = 0  # 0: one per core
    retries: int = 3
    name: str = "processes"

    def _run(self, fn: Callable, items: Sequence, results: _Results) -> None:
        workers = self.workers or os.cpu_count() or 1
        for _attempt in range(self.retries + 1):
            pending = results.missing()
            if not pending:
                break
            # The workers ignore SIGINT: Ctrl-C reaches the whole foreground process group,
            # and this process, not each worker, ends the work (no traceback per worker). A
            # forked worker would inherit this process's handlers: SIGTERM ends it plainly.
            pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_signals)
            try:
                futures = {pool.submit(fn, items[i]): i for i in pending}
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        results.add(futures.pop(future), future.result())
            except BrokenProcessPool:
                pool.shutdown(wait=True)
                continue  # a worker died: resubmit what has not come back
            except BaseException:
                # interrupted (or on_result failed): end the workers and what they started
                # (kernels) now, rather than waiting for the tasks they are running
                end_process_trees(_pool_processes(pool))
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
        missing = results.missing()
        if missing:
            raise BackendError(
                f"{len(missing)} task(s) never completed after {self.retries} pool restarts "
                f"(worker processes kept dying), first: item {missing[0]}"
            )


def _worker_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pool_processes(pool: ProcessPoolExecutor) -> list:
    import psutil

    found = []
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            found.append(psutil.Process(process.pid))
        except (psutil.Error, TypeError):
            pass
    return found


def end_process_trees(processes: Sequence, *, grace_s: float = 3.0) -> None:
    """SIGTERM these psutil processes and every descendant (collected first, so a child is
    not lost when its parent dies), then SIGKILL whatever outlives `grace_s`."""
    import psutil

    everything = {}
    for process in processes:
        try:
            for member in (process, *process.children(recursive=True)):
                everything[member.pid] = member
        except psutil.Error:
            continue
    me = os.getpid()
    targets = [p for pid, p in everything.items() if pid != me]
    for process in targets:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(targets, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


@dataclass
class Dask(_Backend):
    """Dask distributed: a scheduler address to scale out, or a LocalCluster started (and
    closed) on demand. The scheduler reruns the tasks of a worker that dies
    (`distributed.scheduler.allowed-failures`, 3 by default)."""

    address: str | None = None
    workers: int = 0  # LocalCluster only; 0: one per core
    name: str = "dask"
    client: Any = field(default=None, repr=False)  # a Client the caller keeps open

    def probe(self) -> None:
        """For a scheduler address: something must accept connections there, within
        CONNECT_TIMEOUT_S, before a run starts (a Client alone waits 30 s, then fails)."""
        if not self.address:
            return
        host, port = _host_port(self.address)
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError as error:
            reason = error.strerror or type(error).__name__
            if isinstance(error, TimeoutError | socket.timeout):
                reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
            raise BackendError(
                f"no Dask scheduler reachable at {self.address} ({reason}); "
                "start one with `dask scheduler`, or use --backend dask:N for a local cluster"
            ) from None

    def _run(self, fn: Callable, items: Sequence, results: _Results) -> None:
        from distributed import as_completed

        with self._connect() as client:
            # pure=False: equal items are still separate tasks with separate results
            futures = client.map(fn, list(items), pure=False)
            index_of = {future.key: i for i, future in enumerate(futures)}
            try:
                for future in as_completed(futures):
                    results.add(index_of[future.key], future.result())
            except BaseException:
                client.cancel(futures)  # a remote cluster stops working for this run
                raise

    def _connect(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError as error:  # pragma: no cover - distributed is a test dependency
            raise BackendError(
                "the dask backend needs the `distributed` package: pip install 'dask[distributed]'"
            ) from error
        if self.client is not None:
            return _Borrowed(self.client)
        if self.address:
            try:
                return _Borrowed(Client(self.address, timeout=CONNECT_TIMEOUT_S), close=True)
            except (OSError, TimeoutError) as error:
                raise BackendError(
                    f"no Dask scheduler reachable at {self.address}: {error}"
                ) from None
        workers = self.workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        return _Owned(Client(cluster), cluster)


def _host_port(address: str) -> tuple[str, int]:
    """(host, port) of `tcp://HOST[:PORT]` (port 8786 when not given)."""
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, tail = rest[1:].partition("]")
        return host, int(tail[1:]) if tail.startswith(":") else DASK_PORT
    if rest.count(":") != 1:  # a bare IPv6 address, or no port
        return rest, DASK_PORT
    host, _, port = rest.partition(":")
    return host, int(port)


class _Borrowed:
    """A client the caller manages (tests, notebooks that keep a cluster up): not closed;
    or, with close=True, a client of a running scheduler: closed, the cluster left up."""

    def __init__(self, client, close: bool = False):
        self.client, self.close = client, close

    def __enter__(self):
        return self.client

    def __exit__(self, *exc: object) -> None:
        if self.close:
            self.client.close()


class _Owned:
    def __init__(self, client, cluster):
        self.client, self.cluster = client, cluster

    def __enter__(self):
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.cluster.close(timeout=10)


def get_backend(spec: str | InProcess | Processes | Dask | None = None):
    """A backend from its name: "inprocess" (default), "processes", "processes:N", "dask",
    "dask:N" (a LocalCluster of N workers) or "dask://host:port" / "tcp://host:port"."""
    if spec is None:
        return InProcess()
    if isinstance(spec, InProcess | Processes | Dask):
        return spec
    text = str(spec).strip()
    kind, _, rest = text.partition(":")
    if text.startswith(("tcp://", "tls://")):
        return Dask(address=_scheduler_address(text, text))
    if kind == "dask" and rest.startswith("//"):
        return Dask(address=_scheduler_address("tcp:" + rest, text))
    if kind in ("inprocess", "processes", "dask"):
        if kind == "inprocess":
            if rest:
                raise BackendError("the inprocess backend takes no worker count")
            return InProcess()
        workers = _worker_count(rest, text)
        return Processes(workers=workers) if kind == "processes" else Dask(workers=workers)
    raise BackendError(
        f"unknown backend {text!r}: use one of inprocess, processes[:N], dask[:N], "
        "dask://HOST:PORT or tcp://HOST:PORT"
    )


def _scheduler_address(address: str, spec: str) -> str:
    """A scheduler address with a host and, if given, a port from 1 to 65535."""
    usage = f"backend {spec!r}: expected dask://HOST[:PORT] or tcp://HOST[:PORT]"
    rest = address.split("://", 1)[1]
    if not rest or rest.startswith(":") or "/" in rest:
        raise BackendError(f"{usage} (no host given)" if not rest or rest[0] == ":" else usage)
    try:
        _, port = _host_port(address)
    except ValueError:
        raise BackendError(f"{usage} (the port must be a number)") from None
    if not 0 < port < 65536:
        raise BackendError(f"{usage} (the port must be from 1 to 65535)")
    return address


def _worker_count(text: str, spec: str) -> int:
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise BackendError(f"backend {spec!r}: the worker count must be a positive integer")
    return int(text)
