"""Where independent pieces of work run: in this process, in local processes, or on Dask.

Sweeps and notebook grids are lists of independent tasks (a pure function applied to each
item). A backend applies the function to every item and returns the results in item order,
each exactly once, whatever happened on the way: a process that dies takes its task with
it, and the task is run again elsewhere (a task may therefore *run* twice, but its result is
kept once, keyed by its index).

    backend = get_backend("dask")                    # a LocalCluster started on demand
    backend = get_backend("dask://10.0.0.5:8786")    # an existing scheduler: scale out
    results = backend.map(fn, items, progress="cells")

`fn` and the items must be picklable for the process and Dask backends (a module-level
function, plain data), which is also what makes them cacheable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

BACKENDS = ("inprocess", "processes", "dask")


class BackendError(RuntimeError):
    """A backend could not run the work (a bad name, a task failing again and again)."""


@dataclass
class InProcess:
    """Run every task here, one after the other (the default: no pickling, easy to debug)."""

    name: str = "inprocess"

    def map(self, fn: Callable, items: Sequence, *, progress: str | None = None) -> list:
        return [fn(item) for item in _bar(items, progress)]


@dataclass
class Processes:
    """Local worker processes. A pool broken by a dead worker is replaced and the tasks that
    had not returned are resubmitted, up to `retries` times."""

    workers: int = 0  # 0: one per core
    retries: int = 3
    name: str = "processes"

    def map(self, fn: Callable, items: Sequence, *, progress: str | None = None) -> list:
        workers = self.workers or os.cpu_count() or 1
        results: dict[int, Any] = {}
        bar = _progress(total=len(items), desc=progress)
        for _attempt in range(self.retries + 1):
            pending = [i for i in range(len(items)) if i not in results]
            if not pending:
                break
            try:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    futures = {pool.submit(fn, items[i]): i for i in pending}
                    while futures:
                        done, _ = wait(futures, return_when=FIRST_COMPLETED)
                        for future in done:
                            index = futures.pop(future)
                            results[index] = future.result()
                            bar.update()
            except BrokenProcessPool:
                continue  # a worker died: resubmit what has not come back
        bar.close()
        missing = [i for i in range(len(items)) if i not in results]
        if missing:
            raise BackendError(
                f"{len(missing)} task(s) never completed after {self.retries} pool restarts "
                f"(worker processes kept dying), first: item {missing[0]}"
            )
        return [results[i] for i in range(len(items))]


@dataclass
class Dask:
    """Dask distributed: a scheduler address to scale out, or a LocalCluster started (and
    closed) on demand. The scheduler reruns the tasks of a worker that dies
    (`distributed.scheduler.allowed-failures`, 3 by default)."""

    address: str | None = None
    workers: int = 0  # LocalCluster only; 0: one per core
    name: str = "dask"
    client: Any = field(default=None, repr=False)  # a Client the caller keeps open

    def map(self, fn: Callable, items: Sequence, *, progress: str | None = None) -> list:
        from distributed import as_completed

        with self._connect() as client:
            # pure=False: equal items are still separate tasks with separate results
            futures = client.map(fn, list(items), pure=False)
            index_of = {future.key: i for i, future in enumerate(futures)}
            results: dict[int, Any] = {}
            bar = _progress(total=len(items), desc=progress)
            for future in as_completed(futures):
                results[index_of[future.key]] = future.result()
                bar.update()
            bar.close()
        return [results[i] for i in range(len(items))]

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
            return Client(self.address)
        workers = self.workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        return _Owned(Client(cluster), cluster)


class _Borrowed:
    """A client the caller manages (tests, notebooks that keep a cluster up): not closed."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc: object) -> None:
        pass


class _Owned:
    def __init__(self, client, cluster):
        self.client, self.cluster = client, cluster

    def __enter__(self):
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.cluster.close()


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
        return Dask(address=text)
    if kind == "dask" and rest.startswith("//"):
        return Dask(address="tcp:" + rest)
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


def _worker_count(text: str, spec: str) -> int:
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise BackendError(f"backend {spec!r}: the worker count must be a positive integer")
    return int(text)


def _bar(items: Sequence, progress: str | None) -> Iterator:
    return iter(_progress(items=items, desc=progress))


def _progress(*, desc: str | None, items: Sequence | None = None, total: int | None = None):
    """A tqdm bar, disabled without a description. Imported here, not at module level:
    tqdm.auto probes for ipywidgets on import, which the CLI and the runner never need."""
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=desc, disable=desc is None, leave=False)
