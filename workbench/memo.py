"""One in-memory memo for every cache in the workbench, keyed by the content of the arguments.

    REFERENCES = Memo("reference solutions", maxsize=32)
    x_end = REFERENCES.get((model, x_T, t_start, t_end), lambda: solve(...))

    @memoized("fitted grids", maxsize=64)
    def fit_grid(model, steps, ...): ...

A key is a SHA-1 over a canonical encoding of its parts: numbers exactly (floats by their hex
form), strings, tuples, lists, dicts, tensors and arrays by dtype, shape and bytes, frozen
dataclasses field by field, module-level functions by their qualified name, and any object
with a `content_key()` method by what that returns. Two objects with the same content share
an entry; one object mutated in place gets a new one. An object without a content identity
(a closure, a model built from an arbitrary callable) makes the key None, and the memo then
computes without storing, so it can never return another object's result (an `id()` key
could, once the first object is freed and its id reused).

Entries live for the process, least recently used dropped first; `clear_all()` empties every
memo (tests, or after changing a module's code in a live kernel). The on-disk cache of sweeps
is `workbench.sweep`'s, not this.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import inspect
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, TypeVar

import numpy as np

V = TypeVar("V")

_MEMOS: list[Memo] = []
_TIMED_MISSES = 16


class NoContent(TypeError):
    """An argument has no content identity (it cannot key a memo)."""


def content_key(*parts: Any) -> str | None:
    """A hex digest of the parts' content, or None when one of them has no content identity."""
    digest = hashlib.sha1()
    try:
        for part in parts:
            _encode(part, digest)
    except NoContent:
        return None
    return digest.hexdigest()


def _encode(obj: Any, digest) -> None:
    update = digest.update
    if obj is None or isinstance(obj, bool):
        update(f"<{obj!r}>".encode())
    elif isinstance(obj, enum.Enum):
        update(f"enum:{type(obj).__qualname__}.{obj.name};".encode())
    elif isinstance(obj, int | np.integer):
        update(f"i{int(obj)};".encode())
    elif isinstance(obj, float | np.floating):
        update(f"f{float(obj).hex()};".encode())
    elif isinstance(obj, str):
        update(f"s{len(obj)}:".encode() + obj.encode())
    elif isinstance(obj, PurePath):
        update(f"path:{obj};".encode())
    elif isinstance(obj, bytes):
        update(f"b{len(obj)}:".encode() + obj)
    elif isinstance(obj, tuple | list):
        update(f"{type(obj).__name__}{len(obj)}(".encode())
        for item in obj:
            _encode(item, digest)
        update(b")")
    elif isinstance(obj, dict):
        update(f"dict{len(obj)}(".encode())
        for key in sorted(obj, key=repr):
            _encode(key, digest)
            _encode(obj[key], digest)
        update(b")")
    elif _is_tensor(obj):
        _encode_array(obj.detach().cpu().contiguous().numpy(), str(obj.dtype), digest)
    elif isinstance(obj, np.ndarray):
        _encode_array(np.ascontiguousarray(obj), str(obj.dtype), digest)
    elif callable(getattr(obj, "content_key", None)):
        content = obj.content_key()
        if content is None:  # the object says it has no content identity
            raise NoContent(f"{type(obj).__qualname__} has no content key")
        update(f"obj:{type(obj).__qualname__}(".encode())
        _encode(content, digest)
        update(b")")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if not type(obj).__dataclass_params__.frozen:
            raise NoContent(f"{type(obj).__qualname__} is a mutable dataclass")
        update(f"dc:{type(obj).__module__}.{type(obj).__qualname__}(".encode())
        for f in dataclasses.fields(obj):
            if f.compare:
                update(f.name.encode())
                _encode(getattr(obj, f.name), digest)
        update(b")")
    elif inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj):
        name = getattr(obj, "__qualname__", "")
        if "<locals>" in name or "<lambda>" in name or getattr(obj, "__closure__", None):
            raise NoContent(f"{name} is a closure")
        update(f"fn:{obj.__module__}.{name};".encode())
    elif isinstance(obj, functools.partial):
        update(b"partial(")
        _encode((obj.func, obj.args, obj.keywords), digest)
        update(b")")
    else:
        raise NoContent(f"{type(obj).__qualname__} has no content identity")


def _is_tensor(obj: Any) -> bool:
    torch = __import__("sys").modules.get("torch")  # never import torch just to hash
    return torch is not None and isinstance(obj, torch.Tensor)


def _encode_array(array: np.ndarray, dtype: str, digest) -> None:
    digest.update(f"arr:{dtype}:{array.shape}:".encode())
    digest.update(hashlib.sha1(array.tobytes()).digest())


class Memo:
    """A bounded, thread-safe, content-keyed store of computed values."""

    def __init__(self, name: str, maxsize: int = 128):
        if maxsize < 1:
            raise ValueError(f"a memo needs room for at least one entry, got maxsize={maxsize}")
        self.name = name
        self.maxsize = maxsize
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        # How long the recent misses took: what a reader waits on a first visit.
        self._seconds: deque[float] = deque(maxlen=_TIMED_MISSES)
        _MEMOS.append(self)

    def get(self, key: Any, compute: Callable[[], V]) -> V:
        """The stored value for `key`'s content, else `compute()` (stored when keyable).

        `key` is anything `content_key` accepts (usually a tuple of the arguments)."""
        digest = key if isinstance(key, _Digest) else content_key(key)
        if digest is not None:
            with self._lock:
                if digest in self._entries:
                    self._entries.move_to_end(digest)
                    self.hits += 1
                    return self._entries[digest]
        # computed outside the lock: two sessions asking at once may both compute (same value)
        start = time.perf_counter()
        value = compute()
        with self._lock:
            self._seconds.append(time.perf_counter() - start)
            self.misses += 1
            if digest is not None:
                self._entries[digest] = value
                self._entries.move_to_end(digest)
                while len(self._entries) > self.maxsize:
                    self._entries.popitem(last=False)
        return value

    def __contains__(self, key: Any) -> bool:
        digest = key if isinstance(key, _Digest) else content_key(key)
        with self._lock:
            return digest is not None and digest in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def typical_seconds(self) -> float | None:
        """The median time of the recent computes (misses), None before the first: how long a
        reader should expect a value not yet stored to take ("first visit, about N s")."""
        with self._lock:
            seconds = sorted(self._seconds)
        return seconds[len(seconds) // 2] if seconds else None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._seconds.clear()
            self.hits = self.misses = 0

    def __repr__(self) -> str:
        return f"Memo({self.name!r}: {len(self)}/{self.maxsize}, {self.hits} hits)"


class _Digest(str):
    """A precomputed content key (skips hashing again)."""


def memoized(name: str, maxsize: int = 128) -> Callable[[Callable[..., V]], Callable[..., V]]:
    """Decorator: the function's result memoized by the content of its bound arguments."""

    def decorate(fn: Callable[..., V]) -> Callable[..., V]:
        memo = Memo(name, maxsize)
        signature = inspect.signature(fn)
        qualified = f"{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            digest = content_key(qualified, dict(bound.arguments))
            if digest is None:
                return fn(*args, **kwargs)
            return memo.get(_Digest(digest), lambda: fn(*args, **kwargs))

        def cached(*args, **kwargs) -> bool:
            """Whether a call with these arguments would be answered from the memo."""
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            digest = content_key(qualified, dict(bound.arguments))
            return digest is not None and _Digest(digest) in memo

        wrapper.memo = memo  # type: ignore[attr-defined]
        wrapper.cached = cached  # type: ignore[attr-defined]
        return wrapper

    return decorate


def memos() -> list[Memo]:
    return list(_MEMOS)


def clear_all() -> None:
    """Empty every memo in the process."""
    for memo in _MEMOS:
        memo.clear()
