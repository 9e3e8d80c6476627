"""WORKBENCH_THREADS, the torch intra-op thread count, read without importing torch (the CLI
checks it before a run starts; workbench._torch applies it)."""

import os

THREADS_ENV = "WORKBENCH_THREADS"


class ThreadsError(ValueError):
    """WORKBENCH_THREADS is set to something that is not a thread count."""


def thread_count(value: str | None = None) -> int:
    """The torch intra-op thread count: WORKBENCH_THREADS (default 1), a positive integer."""
    text = os.environ.get(THREADS_ENV, "1") if value is None else value
    try:
        count = int(text.strip())
    except ValueError:
        count = 0
    if count < 1:
        raise ThreadsError(
            f"{THREADS_ENV}={text!r} is not allowed: it must be a positive integer, the number "
            "of torch threads per process (e.g. 1, the default, or 2)"
        )
    return count
