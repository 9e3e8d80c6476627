"""The package's own source, line by line, for tests that keep a pattern out of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workbench", "widgets")


def package_lines(*, skip: str) -> Iterator[tuple[str, str]]:
    """("path:number", line) for every line of every .py file under workbench/ and widgets/,
    but the files named `skip` (the one module allowed to hold the pattern)."""
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == skip:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                yield f"{path.relative_to(ROOT)}:{number}", line
