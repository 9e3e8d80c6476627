"""Backends: same results in item order on every backend, and a worker killed mid-sweep
costs a rerun of its task, never a missing or duplicated result."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from workbench.backends import BackendError, Dask, InProcess, Processes, get_backend


def square_with_pid(item):
    return item * item, os.getpid()


def die_once(item):
    """Task `item` = (index, marker): the task whose marker is given kills its worker process
    the first time it runs (os._exit: no exception, no cleanup, like an OOM kill)."""
    index, marker = item
    if marker is not None and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return index, os.getpid()


def items_with_one_killer(tmp_path, n=12, killer=5):
    marker = str(tmp_path / "killed")
    return [(i, marker if i == killer else None) for i in range(n)], Path(marker)


def test_get_backend_parses_names_and_refuses_unknown_ones():
    assert isinstance(get_backend(None), InProcess)
    assert get_backend("processes:3") == Processes(workers=3)
    assert get_backend("dask:2").workers == 2
    assert get_backend("dask://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    assert get_backend("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    with pytest.raises(BackendError, match="unknown backend 'slurm'"):
        get_backend("slurm")
    with pytest.raises(BackendError, match="positive integer"):
        get_backend("processes:0")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("dask://", "no host given"),
        ("tcp://", "no host given"),
        ("tcp://:8786", "no host given"),
        ("dask://host:port", "the port must be a number"),
        ("dask://host:0", "the port must be from 1 to 65535"),
        ("dask://host/path", "expected dask://HOST[:PORT]"),
    ],
)
def test_scheduler_addresses_need_a_host_and_a_valid_port(spec, reason):
    with pytest.raises(BackendError, match=re.escape(reason)):
        get_backend(spec)
    assert get_backend("dask://[::1]:9000").address == "tcp://[::1]:9000"


def test_a_scheduler_address_where_nothing_listens_fails_the_probe_quickly():
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(
        BackendError, match=f"no Dask scheduler reachable at tcp://127.0.0.1:{port}"
    ):
        get_backend(f"dask://127.0.0.1:{port}").probe()
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    "backend", [InProcess(), Processes(workers=2)], ids=["inprocess", "processes"]
)
def test_each_result_is_handed_over_as_it_arrives(backend):
    seen = []
    results = backend.map(
        square_with_pid, list(range(5)), on_result=lambda i, r: seen.append((i, r[0]))
    )
    assert sorted(seen) == [(i, i * i) for i in range(5)]
    assert [r for r, _ in results] == [i * i for i in range(5)]


def test_every_backend_returns_results_in_item_order():
    items = list(range(7))
    expected = [i * i for i in items]
    assert [r for r, _ in InProcess().map(square_with_pid, items)] == expected
    assert [r for r, _ in Processes(workers=2).map(square_with_pid, items)] == expected


def test_processes_backend_survives_a_killed_worker(tmp_path):
    items, marker = items_with_one_killer(tmp_path)
    results = Processes(workers=2).map(die_once, items)
    assert marker.exists(), "the killer task never ran"
    assert [index for index, _ in results] == list(range(len(items)))
    killed = int(marker.read_text())
    assert results[5][1] != killed  # task 5 was rerun in a new process


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cloudpickle = pytest.importorskip("cloudpickle")
    # the workers cannot import this test module: ship its functions by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_backend_matches_inprocess(dask_client):
    items = list(range(9))
    seen = []
    got = Dask(client=dask_client).map(
        square_with_pid, items, on_result=lambda i, r: seen.append(i)
    )
    assert sorted(seen) == items
    assert [r for r, _ in got] == [r for r, _ in InProcess().map(square_with_pid, items)]


def test_dask_sweep_completes_when_a_worker_is_killed_mid_sweep(dask_client, tmp_path):
    items, marker = items_with_one_killer(tmp_path, n=16)
    workers_before = set(dask_client.scheduler_info()["workers"])
    results = Dask(client=dask_client).map(die_once, items)
    assert marker.exists(), "the killer task never ran"
    indices = [index for index, _ in results]
    assert indices == list(range(16)) and len(set(indices)) == 16  # all, none duplicated
    assert results[5][1] != int(marker.read_text())  # task 5 ran again on another worker
    # the nanny replaced the dead worker: a new worker address joined
    assert set(dask_client.scheduler_info()["workers"]) != workers_before


# ------------------------------------------------------------------ the sweep on a backend
def sweep_cell(index, marker):
    """One sweep cell: dies once (the killer cell) like die_once, returns one row."""
    _, pid = die_once((index, marker))
    return [{"square": index * index, "pid": pid}]


def test_sweep_on_processes_equals_the_inprocess_sweep(tmp_path):
    from workbench.sweep import grid, run_sweep

    cells = grid(index=list(range(6)), marker=[None])
    here = run_sweep(sweep_cell, cells, name="backend-eq", cache=False, progress=False)
    there = run_sweep(
        sweep_cell, cells, name="backend-eq", cache=False, progress=False, backend="processes:2"
    )
    columns = ["index", "marker", "square"]
    assert here[columns].equals(there[columns])


def test_dask_sweep_with_a_worker_killed_mid_sweep_has_every_row_once(dask_client, tmp_path):
    from workbench.sweep import run_sweep

    marker = str(tmp_path / "killed")
    cells = [{"index": i, "marker": marker if i == 7 else None} for i in range(20)]
    frame = run_sweep(
        sweep_cell, cells, name="dask-kill", cache=False, progress=False,
        backend=Dask(client=dask_client),
    )  # fmt: skip
    assert Path(marker).exists(), "the killer cell never ran"
    assert frame["index"].tolist() == list(range(20))  # every cell, in order, none twice
    assert frame["square"].tolist() == [i * i for i in range(20)]
    assert frame.loc[7, "pid"] != int(Path(marker).read_text())


def test_lr_sweep_on_dask_equals_the_inprocess_sweep(dask_client):
    from workbench.scaling import lr_sweep

    kwargs = dict(
        parametrization="mup", widths=[16, 32], lrs=[1e-3, 1e-2], steps=5, cache=False,
        progress=False, dtype="float64",
    )  # fmt: skip
    here = lr_sweep(**kwargs)
    there = lr_sweep(**kwargs, backend=Dask(client=dask_client))
    assert here["final_loss"].tolist() == there["final_loss"].tolist()  # same arithmetic
