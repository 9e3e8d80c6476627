"""The served Panel app in a real browser: the index links every page, and on every page
moving the main control changes the figure. Screenshots: runs/ui/panel-*.png."""

from __future__ import annotations

import pytest
from conftest import PYTHON, ROOT, free_port, screenshot, start_server, stop

from widgets.app import PAGES

pytestmark = pytest.mark.ui

# The plotted data of the first figure, as the browser holds it (plotly keeps `data` on its div).
DIGEST = "JSON.stringify(el.data.map(t => [t.x, t.y, t.z, t.cells && t.cells.values]))"
FIGURE_DATA = f"el => {DIGEST}"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("panel") / "server.log"
    process = start_server(
        [PYTHON, "-m", "widgets.app", "--port", str(port), "--smoke"], f"{url}/", log, cwd=ROOT
    )
    yield url
    stop(process)


def test_index_links_every_page(page, app_url):
    page.goto(f"{app_url}/")
    page.locator("a[href^='./']").first.wait_for()  # rendered once the session connects
    for entry in PAGES:
        assert page.locator(f"a[href='./{entry.slug}']").count() == 1, entry.slug
    screenshot(page, "panel-index")


@pytest.mark.parametrize("entry", PAGES, ids=[p.slug for p in PAGES])
def test_moving_the_main_control_updates_the_figure(page, app_url, entry):
    label = entry.build(smoke=True).controls[entry.control].label
    page.goto(f"{app_url}/{entry.slug}")
    figure = page.locator(".js-plotly-plot").first
    figure.wait_for()
    page.wait_for_function("el => el.data && el.data.length > 0", arg=figure.element_handle())
    before = figure.evaluate(FIGURE_DATA)
    slider = page.locator(".bk-slider-title", has_text=label).locator("xpath=..")
    title_before = slider.locator(".bk-slider-title").inner_text()
    handle = slider.locator(".noUi-handle")
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")
    page.wait_for_function(
        f"([el, old]) => {DIGEST} !== old",
        arg=[figure.element_handle(), before],
        timeout=30_000,
    )
    assert slider.locator(".bk-slider-title").inner_text() != title_before
    screenshot(page, f"panel-{entry.slug}")
