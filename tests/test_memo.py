"""The one in-memory memo: keys by content, never by identity; bounded; thread safe."""

from __future__ import annotations

import dataclasses
import math
import re
import threading

import numpy as np
import pytest
import scan
import torch

from workbench.diffusion.schedules import EDMSchedule, VPSchedule
from workbench.memo import Memo, clear_all, content_key, memoized
from workbench.toy import GaussianMixture


def test_equal_content_equal_key_and_any_change_a_new_key():
    a = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    assert content_key(a) == content_key(a.clone())
    assert content_key(a) != content_key(a.reshape(3, 2))  # same bytes, other shape
    assert content_key(a) != content_key(a.float())  # other dtype
    b = a.clone()
    b[0, 0] = 1e-300
    assert content_key(a) != content_key(b)
    assert content_key(0.1) != content_key(math.nextafter(0.1, 1.0))  # floats exactly
    assert content_key(1) != content_key(1.0) != content_key("1") != content_key(True)
    assert content_key((1, 2)) != content_key([1, 2]) != content_key((2, 1))
    assert content_key({"a": 1, "b": 2}) == content_key({"b": 2, "a": 1})
    assert content_key(np.zeros(3)) == content_key(np.zeros(3))


def test_models_schedules_and_mixtures_key_by_what_defines_them():
    ring, ring_again = GaussianMixture.ring(), GaussianMixture.ring()
    assert ring is not ring_again and content_key(ring) == content_key(ring_again)
    assert content_key(ring) != content_key(GaussianMixture.ring(std=0.2))
    vp = VPSchedule.linear()
    model = ring.denoiser(vp)
    assert content_key(model) == content_key(ring_again.denoiser(VPSchedule.linear()))
    assert content_key(model) != content_key(ring.denoiser(VPSchedule.linear(beta_max=19.0)))
    assert content_key(model) != content_key(ring.denoiser(vp, label=0))
    assert content_key(model) != content_key(model.as_prediction("noise"))
    assert content_key(EDMSchedule()) != content_key(EDMSchedule(sigma_max=70.0))
    assert content_key(VPSchedule.cosine()) != content_key(vp)


def test_what_has_no_content_identity_is_never_stored():
    from workbench.diffusion.models import DiffusionModel

    arbitrary = DiffusionModel(lambda x, t: x, "noise", VPSchedule.linear())
    assert content_key(arbitrary) is None and content_key(lambda: 0) is None

    @dataclasses.dataclass
    class Mutable:
        x: int

    assert content_key(Mutable(1)) is None and content_key(object()) is None
    memo, calls = Memo("test no content", maxsize=4), []
    for _ in range(2):
        memo.get((arbitrary, 1), lambda: calls.append(1))
    assert len(calls) == 2 and len(memo) == 0


def test_memo_is_bounded_least_recently_used_first():
    memo = Memo("test lru", maxsize=2)
    for key in (1, 2, 1, 3):  # 1 was used after 2: 2 goes
        memo.get(key, lambda key=key: key * 10)
    assert 1 in memo and 3 in memo and 2 not in memo
    assert memo.hits == 1 and memo.misses == 3
    with pytest.raises(ValueError, match="at least one entry"):
        Memo("bad", maxsize=0)


def test_memoized_binds_arguments_so_spellings_share_an_entry():
    calls = []

    @memoized("test memoized", maxsize=8)
    def scaled(x, factor=2.0):
        calls.append(x)
        return x * factor

    t = torch.ones(3, dtype=torch.float64)
    assert torch.equal(scaled(t), scaled(t.clone(), factor=2.0))
    assert torch.equal(scaled(x=t, factor=2.0), t * 2)
    assert len(calls) == 1
    scaled(t, 3.0)
    assert len(calls) == 2
    clear_all()
    scaled(t)
    assert len(calls) == 3


def test_concurrent_gets_agree():
    memo, results = Memo("test threads", maxsize=64), []

    def work():
        for i in range(200):
            results.append(memo.get(i % 16, lambda i=i: (i % 16) ** 2) == (i % 16) ** 2)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results) and len(results) == 800 and len(memo) == 16


def test_no_identity_keyed_caches_remain():
    """Caches key by content: no id() keys, no hand-written LRU dicts outside workbench.memo."""
    offenders = [
        f"{where}: {line.strip()}"
        for where, line in scan.package_lines(skip="memo.py")
        if re.search(r"\bid\(|OrderedDict|lru_cache|functools.cache\b|@cache\b", line)
    ]
    assert offenders == []


def test_typical_seconds_is_the_median_compute_time_of_misses():
    import time

    memo = Memo("timed", maxsize=8)
    assert memo.typical_seconds() is None
    for pause in (0.0, 0.05, 0.0):
        memo.get(("key", pause, time.perf_counter()), lambda pause=pause: time.sleep(pause))
    assert 0.0 <= memo.typical_seconds() < 0.05  # median of three: one slow, two instant
    memo.get(("slow",), lambda: time.sleep(0.05))
    memo.get(("slow",), lambda: time.sleep(0.05))  # a hit adds no time
    assert memo.misses == 4 and memo.hits == 1
    assert 0.04 < memo.typical_seconds() < 0.2  # median of four: the upper middle one
    memo.clear()
    assert memo.typical_seconds() is None


def test_memoized_cached_says_whether_a_call_would_be_a_hit():
    calls = []

    @memoized("cached probe")
    def square(x, power=2):
        calls.append(x)
        return x**power

    assert not square.cached(3)
    assert square(3) == 9
    assert square.cached(3) and square.cached(3, power=2) and square.cached(x=3)
    assert not square.cached(3, power=3)
    assert calls == [3]
