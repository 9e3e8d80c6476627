"""Real-browser tests: Debian's chromium driven by Playwright (never a downloaded browser).

`./dev test` installs chromium with apt when it is missing and it can (root); otherwise these
tests are skipped with the reason printed in the summary. Screenshots land in runs/ui/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "runs" / "ui"
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags chromium keeps calling home on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (./dev test installs Debian's chromium as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# What plotly holds on a figure's div: the plotted data, as one string to compare.
DIGEST = "JSON.stringify(el.data.map(t => [t.x, t.y, t.z, t.cells && t.cells.values]))"


def move_slider_and_wait_for_figure(page, handle, figure, *, presses: int = 3, timeout_ms=60_000):
    """Move a noUiSlider (Bokeh's and ipywidgets' sliders both use one) by keyboard, then wait
    until the figure's plotted data differ from before the move."""
    figure.wait_for(timeout=timeout_ms)
    page.wait_for_function("el => el.data && el.data.length > 0", arg=figure.element_handle())
    before = figure.evaluate(f"el => {DIGEST}")
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(presses):
        handle.press("ArrowRight")
    page.wait_for_function(
        f"([el, old]) => {DIGEST} !== old",
        arg=[figure.element_handle(), before],
        timeout=timeout_ms,
    )
