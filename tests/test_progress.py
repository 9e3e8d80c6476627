"""The one progress bar: tqdm for a reader, one final line headless, nothing when disabled."""

from __future__ import annotations

import re

import pytest

from workbench import progress as progress_module
from workbench.backends import get_backend
from workbench.progress import FinalLine, headless, progress


@pytest.fixture
def headless_run(monkeypatch):
    monkeypatch.setenv(progress_module.HEADLESS_ENV, "1")


def test_headless_reads_the_runner_variable(monkeypatch):
    monkeypatch.delenv(progress_module.HEADLESS_ENV, raising=False)
    assert headless() is False
    monkeypatch.setenv(progress_module.HEADLESS_ENV, "0")
    assert headless() is False
    monkeypatch.setenv(progress_module.HEADLESS_ENV, "1")
    assert headless() is True


def test_interactive_bar_is_tqdm(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.delenv(progress_module.HEADLESS_ENV, raising=False)
    bar = progress(range(3), desc="race")
    assert isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2]


def test_headless_loop_prints_one_line_at_its_end(headless_run, capsys):
    bar = progress(range(40), desc="race")
    assert isinstance(bar, FinalLine)
    seen = []
    for item in bar:
        seen.append(item)
        assert capsys.readouterr().out == ""  # nothing while it runs
    assert seen == list(range(40))
    out = capsys.readouterr().out
    assert re.fullmatch(r"race: 40/40 in \d+\.\d s\n", out), out


def test_headless_manual_bar_counts_updates_and_closes_once(headless_run, capsys):
    with progress(total=5, desc="cells") as bar:
        bar.update()
        bar.update(3)
    bar.close()  # a second close prints nothing more
    assert re.fullmatch(r"cells: 4/5 in \d+\.\d s\n", capsys.readouterr().out)


def test_headless_bar_without_length_or_description(headless_run, capsys):
    list(progress(iter("abc")))
    assert re.fullmatch(r"3 in \d+\.\d s\n", capsys.readouterr().out)


def test_a_broken_loop_still_ends_with_its_line(headless_run, capsys):
    for item in progress(range(10), desc="scales"):
        if item == 2:
            break
    import gc

    gc.collect()  # the abandoned generator closes, and with it the bar
    assert re.fullmatch(r"scales: 2/10 in \d+\.\d s\n", capsys.readouterr().out)


def test_disabled_bar_is_silent_everywhere(monkeypatch, capsys):
    for value in ("1", "0"):
        monkeypatch.setenv(progress_module.HEADLESS_ENV, value)
        assert list(progress(range(4), desc="race", disable=True)) == [0, 1, 2, 3]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_backend_map_ends_with_one_line_headless(headless_run, capsys):
    results = get_backend("inprocess").map(abs, [-1, -2, 3], progress="cells")
    assert results == [1, 2, 3]
    assert re.fullmatch(r"cells: 3/3 in \d+\.\d s\n", capsys.readouterr().out)
    get_backend("inprocess").map(abs, [-1], progress=None)
    assert capsys.readouterr().out == ""
