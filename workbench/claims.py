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
    """A number as a reader wants it: 0.0123, 41, 36000, 3.2e-5; yes/no for a bool; text as is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if x == 0 or not math.isfinite(x):
            return f"{x:g}"
        if 1e-3 <= abs(x) < 1e5:  # plain digits: three significant, all of the integer part
            return f"{x:.{max(3, math.floor(math.log10(abs(x))) + 1)}g}"
        mantissa, exponent = f"{x:.2e}".split("e")  # .3g would print 0.000654 plainly
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent):+d}"  # 3.2e-5, 1.23e+5: no zero padding
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Claim:
    """A paper's claim and the recorded metric that tests it.

    The claim holds when the metric's value is below `below`, above `above`, equal to
    `equals` and, for a list recorded as text ("a, b"), includes `contains` (each optional; a
    threshold is a number or the name of another recorded metric, for "A beats B"). A metric
    that is text where a number is needed ("not reached") does not hold. `paper` is a short
    citation ("Lu et al. 2022, arXiv:2211.01095"); `claim` says what the paper claims, in the
    notebook's words.
    """

    claim: str
    paper: str
    metric: str
    below: float | str | None = None
    above: float | str | None = None
    equals: Any = _UNSET
    contains: str | None = None

    def __post_init__(self) -> None:
        tests = (self.below, self.above, self.contains)
        if all(t is None for t in tests) and self.equals is _UNSET:
            raise ValueError(f"claim {self.claim!r}: give below=, above=, equals= or contains=")

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
        text, holds = readable(value), True
        bounds = {}
        for side, bound in (("below", self.below), ("above", self.above)):
            if bound is None:
                continue
            threshold = values[bound] if isinstance(bound, str) else bound
            named = f" ({bound})" if isinstance(bound, str) else ""
            bounds[side] = f"{readable(threshold)}{named}"
            comparable = _is_number(value) and _is_number(threshold)
            holds &= comparable and (value < threshold if side == "below" else value > threshold)
        if "above" in bounds and "below" in bounds:  # a band reads low < value < high
            text = f"{bounds['above']} < {text} < {bounds['below']}"
        elif bounds:
            text += f" < {bounds['below']}" if "below" in bounds else f" > {bounds['above']}"
        parts = [text]
        if self.equals is not _UNSET:
            # True must not pass for 1 (nor 1 for True): a verdict and a count differ
            same_kind = isinstance(value, bool) == isinstance(self.equals, bool)
            equal = same_kind and value == self.equals
            if not equal:
                parts.append(f"(expected {readable(self.equals)})")
            holds &= equal
        if self.contains is not None:
            # a list recorded as text, "a, b, c": the claim is about one of its items
            items = [item.strip() for item in str(value).split(",")]
            found = self.contains in items
            parts.append(f"({'includes' if found else 'lacks'} {self.contains})")
            holds &= found
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
