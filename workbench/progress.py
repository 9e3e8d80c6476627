"""One progress bar for every long loop, interactive in Lab and one line in an executed notebook.

    from workbench.progress import progress

    for rate in progress(learning_rates, desc="race"):
        ...
    bar = progress(total=len(items), desc="cells")   # updated by hand
    bar.update()
    bar.close()

Interactively this is `tqdm.auto` (a widget bar in JupyterLab, text in a terminal), gone when
the loop ends. Headless (`headless()`: the runner executes a notebook with
WORKBENCH_HEADLESS=1) the bar writes nothing while it runs and one line when it closes,
"race: 40/40 in 12.3 s": a widget bar stored without its widget state shows frozen at 0% in
the executed notebook and its HTML export, and a text bar stores every redraw.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

HEADLESS_ENV = "WORKBENCH_HEADLESS"


def headless() -> bool:
    """True when running under the runner (papermill), with no reader to watch the loop."""
    return os.environ.get(HEADLESS_ENV) == "1"


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    disable: bool = False,
):
    """A progress bar over `iterable` (iterate it) or over `total` steps (call `update()` and
    `close()`, or use it as a context manager). `disable` shows nothing at all."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if disable or headless():
        return FinalLine(iterable, total=total, desc=desc, silent=disable)
    # imported here: tqdm.auto probes for ipywidgets on import, which the CLI never needs
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


class FinalLine:
    """A bar that counts silently and prints "desc: n/total in t s" once, when it closes
    (when its iteration ends, or at `close()`); `silent` prints nothing even then."""

    def __init__(self, iterable=None, *, total=None, desc=None, silent=False):
        self.iterable, self.total, self.desc, self.silent = iterable, total, desc, silent
        self.n = 0
        self.closed = False
        self.start = time.perf_counter()

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def line(self) -> str:
        """The closing line, e.g. "race: 40/40 in 12.3 s"."""
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        prefix = f"{self.desc}: " if self.desc else ""
        return f"{prefix}{count} in {time.perf_counter() - self.start:.1f} s"

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.silent:
            print(self.line(), flush=True)  # stdout: the kernel's stream when run

    def __enter__(self) -> FinalLine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
