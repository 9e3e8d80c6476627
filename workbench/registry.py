"""One registry type for every kind of named choice: solvers, grids, schedules, guidance
methods, optimizers, problems.

A `Registry` maps a name to an entry, remembers a label for the UI, and refuses an unknown
name with one message that lists the valid ones:

    SOLVERS = Registry("solver")
    SOLVERS.add("ddim", spec, label="DDIM")          # or @SOLVERS.register("ddim") on a function
    SOLVERS["ddpm"]   # ValueError: unknown solver 'ddpm'; choose from ddim, dpmpp_2m, ...
    SOLVERS.options() # {"DDIM": "ddim", ...}: what a dropdown shows -> what the code receives

`check_choice` gives the same message for a fixed tuple of names (a prediction kind, a form).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> ValueError:
    """The one error for a name outside a set of valid names."""
    return ValueError(f"unknown {kind} {value!r}; choose from {', '.join(map(str, choices))}")


def check_choice(kind: str, value: str, choices: Iterable[str]) -> str:
    """`value` if it is one of `choices`, else the one unknown-choice error."""
    choices = tuple(choices)
    if value not in choices:
        raise unknown_choice(kind, value, choices)
    return value


class Registry(Mapping[str, T], Generic[T]):
    """Name -> entry, in registration order, with a UI label per name."""

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._labels: dict[str, str] = {}
        for name, entry in (entries or {}).items():
            self.add(name, entry)

    def add(self, name: str, entry: T, *, label: str | None = None) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        self._labels[name] = label or getattr(entry, "label", None) or name
        return entry

    def register(self, name: str, *, label: str | None = None) -> Callable[[T], T]:
        """Decorator form of `add`."""

        def decorate(entry: T) -> T:
            return self.add(name, entry, label=label)

        return decorate

    @contextmanager
    def temporarily(self, name: str, entry: T, *, label: str | None = None) -> Iterator[T]:
        """`entry` registered as `name` inside the block only (tests of a deliberately broken
        method, say); removed on the way out, even on an exception."""
        self.add(name, entry, label=label)
        try:
            yield entry
        finally:
            del self._entries[name], self._labels[name]

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise unknown_choice(self.kind, name, self._entries) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def check(self, name: str) -> str:
        """`name` if registered, else the unknown-choice error."""
        self[name]
        return name

    def label(self, name: str) -> str:
        self.check(name)
        return self._labels[name]

    def labels(self) -> dict[str, str]:
        """Name -> label."""
        return dict(self._labels)

    def options(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Label -> name, for a dropdown (all names, or the given ones in their order)."""
        chosen = list(self._entries) if names is None else [self.check(n) for n in names]
        return {self._labels[name]: name for name in chosen}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
