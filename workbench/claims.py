"""The verdict at the end of a notebook: each paper claim it tests, what was measured, holds or not.

A topic declares its claims once, next to its study (a tuple of `Claim`), each naming the
recorded metric that tests it. The notebook's last cell records its metrics and shows
`claims_table(CLAIMS)`, computed from those recorded values, so the verdict a reader sees
and the numbers the regression check compares are the same numbers. The full list of recorded
metrics is in the run folder (`<notebook>.metrics.json`), not at the end of the notebook.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.reporting import recorded

__all__ = ["Claim", "claims_table", "readable"]

_UNSET: Any = object()


def readable(value: Any) -> str:
    """A number as a reader wants it: 0.0123, 41, 3.2e-05; yes/no for a bool; text as given."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if x == 0 or not math.isfinite(x):
            return f"{x:g}"
        return (
            f"{x:.3g}"
            if 1e-3 <= abs(x) < 1e5
            else f"{x:.2e}".replace("e-0", "e-").replace("e+0", "e+")
        )
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Claim:
    """A paper's claim and the recorded metric that tests it.

    The claim holds when the metric's value is below `below`, above `above` and equal to
    `equals` (each optional; a threshold is a number or the name of another recorded metric,
    for "A beats B"). A metric that is text where a number is needed ("not reached") does not
    hold. `paper` is a short citation ("Lu et al. 2022, arXiv:2211.01095"); `claim` says what
    the paper claims, in the notebook's words.
    """

    claim: str
    paper: str
    metric: str
    below: float | str | None = None
    above: float | str | None = None
    equals: Any = _UNSET

    def __post_init__(self) -> None:
        if self.below is None and self.above is None and self.equals is _UNSET:
            raise ValueError(f"claim {self.claim!r}: give below=, above= or equals=")

    def metrics(self) -> list[str]:
        """Every recorded metric this claim reads."""
        names = [self.metric]
        names += [t for t in (self.below, self.above) if isinstance(t, str)]
        return names

    def verdict(self, values: Mapping[str, Any]) -> tuple[str, bool]:
        """(what was measured, as text; whether the claim holds) from recorded `values`."""
        missing = [name for name in self.metrics() if name not in values]
        if missing:
            raise KeyError(
                f"claim {self.claim!r} reads {', '.join(missing)}, which this run did not record"
            )
        value = values[self.metric]
        parts, holds = [readable(value)], True
        for bound, sign, passes in (
            (self.below, "<", lambda a, b: a < b),
            (self.above, ">", lambda a, b: a > b),
        ):
            if bound is None:
                continue
            threshold = values[bound] if isinstance(bound, str) else bound
            named = f" ({bound})" if isinstance(bound, str) else ""
            parts.append(f"{sign} {readable(threshold)}{named}")
            holds &= _is_number(value) and _is_number(threshold) and passes(value, threshold)
        if self.equals is not _UNSET:
            parts.append(f"= {readable(self.equals)}")
            # True must not pass for 1 (nor 1 for True): a verdict and a count differ
            same_kind = isinstance(value, bool) == isinstance(self.equals, bool)
            holds &= same_kind and value == self.equals
        return " ".join(parts), bool(holds)


def claims_table(claims: Sequence[Claim], values: Mapping[str, Any] | None = None):
    """One row per claim: the claim, the paper, the measured value against its bound, the
    verdict ("holds" / "does not hold"). `values` default to this session's recorded metrics."""
    import pandas as pd

    values = recorded() if values is None else values
    rows = []
    for claim in claims:
        measured, holds = claim.verdict(values)
        verdict = "holds" if holds else "does not hold"
        rows.append(
            {"claim": claim.claim, "paper": claim.paper, "measured": measured, "verdict": verdict}
        )
    table = pd.DataFrame(rows, columns=["claim", "paper", "measured", "verdict"])
    table.index = pd.RangeIndex(1, len(rows) + 1, name="#")
    return table
