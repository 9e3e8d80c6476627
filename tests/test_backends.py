"""Backends: same results in item order on every backend, and a worker killed mid-sweep
costs a rerun of its task, never a missing or duplicated result."""

from __future__ import annotations

import os
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
    got = Dask(client=dask_client).map(square_with_pid, items)
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
