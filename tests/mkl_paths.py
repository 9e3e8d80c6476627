"""Run one script under each MKL code path (MKL_CBWR), for tests that compare the numbers.

MKL reads MKL_CBWR once, when it loads, so each setting needs its own Python process. The
script prints its numbers as JSON on its last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

MKL_PATHS = ("COMPATIBLE", "AVX2")


def results_under_each_mkl_path(script: str) -> list:
    """The last stdout line of `python -c script`, parsed as JSON, once per MKL path."""
    results = []
    for mode in MKL_PATHS:
        env = {**os.environ, "MKL_CBWR": mode}
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    return results
