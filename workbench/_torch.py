"""Torch settings for the workbench's compute modules, applied once when one is imported.

The tensors here are small (thousands of 2-D points): torch's intra-op threads cost more in
synchronization than they gain, and with two processes on two cores (pytest -n 2, a kernel
beside a server) they oversubscribe: a mixture denoiser call measured 120 ms with 2 threads
against 7.6 ms with 1 under load. WORKBENCH_THREADS overrides. Kept out of `workbench/__init__`
so that the runner's CLI (`python -m workbench list`) does not import torch.
"""

from workbench._threads import thread_count

_THREADS = thread_count()  # a bad value fails here, before torch loads

import torch  # noqa: E402

torch.set_num_threads(_THREADS)
