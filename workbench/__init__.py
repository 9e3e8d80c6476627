"""The workbench: exact toy problems and the methods the notebooks measure on them.

Compute only: nothing here imports a UI library (see widgets/ for that).
"""

import os

import torch

from workbench.reporting import record, recorded

# The workbench's tensors are small (thousands of 2-D points): torch's intra-op threads cost
# more in synchronization than they gain, and with two processes on two cores (pytest -n 2,
# a kernel beside a server) they oversubscribe: a mixture denoiser call measured 120 ms with
# 2 threads against 7.6 ms with 1 under load. WORKBENCH_THREADS overrides.
torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", "1")))

__version__ = "0.1.0"
__all__ = ["__version__", "record", "recorded"]
