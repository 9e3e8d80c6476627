"""The README's claims about the tests stay true: the fault-case counts per area."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| [^|]+ \| `(tests/[\w/]+\.py)` \| (\d+) \|$")


def readme_fault_counts() -> dict[str, int]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Reliability", 1)[1].split("\n## ", 1)[0]
    return {m[1]: int(m[2]) for line in section.splitlines() if (m := ROW.match(line))}


def collected_counts(files: list[str]) -> Counter:
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Counter(line.split("::", 1)[0] for line in listing.splitlines() if "::" in line)


def test_readme_counts_the_fault_cases_of_every_fault_file():
    claimed = readme_fault_counts()
    fault_files = sorted(
        p.relative_to(ROOT).as_posix() for p in ROOT.glob("tests/test_faults_*.py")
    )
    assert set(fault_files) <= set(claimed), "a fault-test file is missing from the README table"
    collected = collected_counts(sorted(claimed))
    assert {f: collected[f] for f in claimed} == claimed
