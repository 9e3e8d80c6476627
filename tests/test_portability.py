"""Every notebook's SMOKE baselines hold when the math libraries take another code path.

MKL picks its kernels by CPU (AVX2, AVX-512, ...), and each path rounds differently; a fresh
clone on another CPU must still reproduce every recorded metric. `MKL_CBWR` forces a path:
COMPATIBLE (the generic SSE2 kernels) and AVX2 here. Each setting runs every notebook in one
`python -m workbench run` process, with the variable in its environment (papermill's kernel
inherits it; MKL reads it once, when it loads) and a fresh sweep cache (a cached sweep would
replay the numbers of another code path), then `workbench check` compares with the baselines.
A metric that moves under a setting is a fit or search landing elsewhere under rounding (fix
it), or rounding-level spread (a tolerance measured from these runs, noted next to it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["COMPATIBLE", "AVX2"]
TIMEOUT_S = 1800  # all six SMOKE notebooks take ~3-5 min on 2 busy cores


@pytest.mark.notebooks
@pytest.mark.parametrize("mkl_cbwr", SETTINGS)
def test_every_smoke_baseline_holds_under_another_mkl_code_path(mkl_cbwr, tmp_path):
    env = {
        **os.environ,
        "MKL_CBWR": mkl_cbwr,
        "WORKBENCH_CACHE": str(tmp_path / "sweep-cache"),
        "WORKBENCH_ROOT": str(ROOT),
    }
    run_dir = tmp_path / "run"

    def workbench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "workbench", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )

    ran = workbench("run", "--smoke", "--run-dir", str(run_dir), "--no-html", "-q")
    assert ran.returncode == 0, f"MKL_CBWR={mkl_cbwr}: a notebook failed\n{ran.stdout[-3000:]}"
    checked = workbench("check", "--run", str(run_dir))
    drifts = [line for line in checked.stdout.splitlines() if not line.startswith(("ok", "check"))]
    assert checked.returncode == 0, f"MKL_CBWR={mkl_cbwr}:\n" + "\n".join(drifts)
