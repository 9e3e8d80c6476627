"""Torch settings for the workbench's compute modules, applied once when one is imported.

The tensors here are small (thousands of 2-D points): torch's intra-op threads cost more in
synchronization than they gain, and with two processes on two cores (pytest -n 2, a kernel
beside a server) they oversubscribe: a mixture denoiser call measured 120 ms with 2 threads
against 7.6 ms with 1 under load. WORKBENCH_THREADS overrides. Kept out of `workbench/__init__`
so that the runner's CLI (`python -m workbench list`) does not import torch.
"""

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


_THREADS = thread_count()  # a bad value fails here, before torch loads

import torch  # noqa: E402

torch.set_num_threads(_THREADS)
