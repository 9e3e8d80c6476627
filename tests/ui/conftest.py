"""Real-browser tests: Debian's chromium driven by Playwright (never a downloaded browser).

`./dev test` installs chromium with apt when it is missing and it can (root); otherwise these
tests are skipped with the reason printed in the summary. Screenshots land in runs/ui/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chromium import CHROMIUM, launch, new_page


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (./dev test installs Debian's chromium as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    with new_page(browser) as page:
        yield page


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
