"""The README's claims stay true: the fault-case counts per area, and every number it quotes
from a notebook is the one in that notebook's baseline."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

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


# ------------------------------------------------------------------ numbers quoted from runs
BASELINES = ROOT / "tests" / "baselines"


def full_baseline(notebook: str) -> dict:
    """A notebook's full-profile baseline, metric -> value: the README quotes full runs."""
    profiles = json.loads((BASELINES / f"{notebook}.json").read_text())["profiles"]
    return {name: entry["value"] for name, entry in profiles["full"].items()}


def rotation_cost(v: dict, optimizer: str) -> float:
    """How many times larger `optimizer`'s final loss is on the rotated kappa-1e4 quadratic
    than on the axis-aligned one (notebook 05 records log10 losses)."""
    rotated, aligned = (
        v[f"rotation.kappa10000.{hessian}.{optimizer}.log10_final_loss"]
        for hessian in ("rotated", "axis-aligned")
    )
    return 10 ** (rotated - aligned)


def short_e(x: float) -> str:
    """3.6e4, as the README writes a large factor."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def bound(x: float, limit: float, words: str) -> str:
    """`words` ("under 1") when x is below `limit`, else the value (which then fails)."""
    return words if x < limit else f"{x:.2g}"


def up_to_tens_percent(ratio: float) -> str:
    """1.19 -> "20": the README's "within 20%" is the excess rounded up to tens of percent."""
    return f"{10 * math.ceil(10 * (ratio - 1)):.0f}"


@dataclass(frozen=True)
class Quote:
    """A phrase of the README with the numbers in it (`{}`), each number computed from the
    notebook's full baseline by `shown`, formatted as the README rounds it."""

    notebook: str
    phrase: str
    shown: Callable[[dict], tuple[str, ...]]

    def expected(self) -> str:
        return self.phrase.format(*self.shown(full_baseline(self.notebook)))


GUIDANCE, WIDTH, DEPTH, OPTIMIZERS = (
    "02_guidance_scales",
    "03_lr_transfer_width",
    "04_lr_transfer_depth",
    "05_optimizers",
)
DPMPP_W15, DPMPP_W1 = "error.cfg.dpmpp_2m.w15.nfe10", "error.cfg.dpmpp_2m.w1.nfe10"
THRESHOLDED_W15 = "error.cfg_threshold.dpmpp_2m.w15.nfe10"
QUOTES = [
    Quote(
        GUIDANCE,
        "at w=3 CFG is {} from the target in sliced Wasserstein ({}x the floor of two exact "
        "sample sets)",
        lambda v: (
            f"{v['cfg.sliced_w_w3']:.2f}",
            f"{v['cfg.sliced_w_w3'] / v['target.sliced_w_floor_w3']:.0f}",
        ),
    ),
    Quote(
        GUIDANCE,
        "which the target keeps at {}%",
        lambda v: (f"{100 * v['target.narrow_mode_weight_w3']:.0f}",),
    ),
    Quote(GUIDANCE, "FK-SMC reaches {}", lambda v: (f"{v['smc.w3.FK-SMC']:.2f}",)),
    Quote(
        GUIDANCE,
        "DPM-Solver++(2M) at 10 NFE: {}x worse at w=15 than at w=1, thresholding cuts it {}x",
        lambda v: (
            f"{v[DPMPP_W15] / v[DPMPP_W1]:.0f}",
            f"{v[DPMPP_W15] / v[THRESHOLDED_W15]:.0f}",
        ),
    ),
    Quote(
        WIDTH,
        "Adam's optimum moves {} octaves under SP and {} under muP and u-muP",
        lambda v: (
            f"{v['sp.adam.drift_octaves']:.1f}",
            bound(max(v["mup.adam.drift_octaves"], v["umup.adam.drift_octaves"]), 1, "under 1"),
        ),
    ),
    Quote(
        DEPTH,
        "the plain ResNet's optimum moves {} octaves, Depth-muP's (alpha 1/2, lr / sqrt(depth)) {}",
        lambda v: (
            f"{v['alpha0_global.drift_octaves']:.1f}",
            f"{v['alpha_half_corrected.drift_octaves']:.1f}",
        ),
    ),
    Quote(
        OPTIMIZERS,
        "at kappa 1e4 Adam's final loss is {}x worse rotated, SOAP's {}, Shampoo's within {}%",
        lambda v: (
            short_e(rotation_cost(v, "adam")),
            bound(abs(rotation_cost(v, "soap") - 1), 0.01, "unchanged"),
            up_to_tens_percent(rotation_cost(v, "shampoo")),
        ),
    ),
    Quote(
        OPTIMIZERS,
        "SOAP with Adam's betas: {} steps to target vs Adam's {}",
        lambda v: (
            str(v["race.mlp.soap_adam_betas.steps_to_target"]),
            str(v["race.mlp.adam.steps_to_target"]),
        ),
    ),
]

# The numbers of the notebook table that are settings, not measurements (not checked).
SETTINGS = {
    "00_tour": [],
    "01_solver_steps": ["DPM-Solver 1-3", "DPM-Solver++ 2M/3M", "DPM-Solver-v3", "v3's"],
    GUIDANCE: ["two-class", "scale x NFE", "DPM-Solver-v3"],
    WIDTH: ["width 16 to 256", "order-2", "Adam-atan2"],
    DEPTH: ["2 to 32 blocks", "depth^-alpha"],
    OPTIMIZERS: [],
    "06_flows": [],
    "07_isosurfaces": ["3-D"],
    "08_learned_models": ["DPM-Solver-v3"],
    "09_inverse_problems": [],
}


def notebook_rows() -> dict[str, str]:
    """The notebook table of the README: notebook stem -> its 'what it shows' cell."""
    text = (ROOT / "README.md").read_text()
    row = re.compile(r"^\| \[`(\d\d_\w+)\.ipynb`\]\([^)]+\) \| (.+) \|$", re.MULTILINE)
    return dict(row.findall(text))


@pytest.mark.parametrize("quote", QUOTES, ids=lambda q: f"{q.notebook}:{q.phrase[:30]}")
def test_every_quoted_number_is_the_baselines(quote):
    row = notebook_rows()[quote.notebook]
    assert quote.expected() in row, (
        f"README.md's row for {quote.notebook} should say {quote.expected()!r} "
        f"(from tests/baselines/{quote.notebook}.json, full profile)"
    )


def test_no_number_in_the_notebook_table_goes_unchecked():
    """A number added to the table without a Quote (or named a setting) fails here."""
    rows = notebook_rows()
    assert list(rows) == list(SETTINGS)
    for notebook, row in rows.items():
        for quote in (q for q in QUOTES if q.notebook == notebook):
            row = row.replace(quote.expected(), "")
        for setting in SETTINGS[notebook]:
            row = row.replace(setting, "")
        row = re.sub(r"p\(x\\\|c\)\^w p\(x\)\^\(1-w\)", "", row)  # the target's formula
        assert not re.search(r"\d", row), f"{notebook}: an unchecked number in {row!r}"


def test_the_example_run_table_counts_the_tour_baseline():
    """The README's example run prints "N within baseline" for 00_tour in SMOKE mode."""
    text = (ROOT / "README.md").read_text()
    line = re.search(r"^00_tour\s+smoke\s+ok\s+.*?(\d+) within baseline$", text, re.MULTILINE)
    profiles = json.loads((BASELINES / "00_tour.json").read_text())["profiles"]
    assert line is not None and int(line[1]) == len(profiles["smoke"])
