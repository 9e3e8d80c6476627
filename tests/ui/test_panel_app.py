"""The served Panel app in a real browser: the index links every page, and on every page
moving the main control changes the figure. Screenshots: runs/ui/panel-*.png."""

from __future__ import annotations

import pytest
from chromium import ROOT, panel_slider, screenshot
from conftest import move_slider_and_wait_for_figure
from servers import panel_app, serving

from widgets.topics import TOPICS

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    log = tmp_path_factory.mktemp("panel") / "server.log"
    with serving(panel_app, "/", log, cwd=ROOT) as url:
        yield url


def test_index_links_every_page(page, app_url):
    page.goto(f"{app_url}/")
    page.locator("a[href^='./']").first.wait_for()  # rendered once the session connects
    for entry in TOPICS:
        assert page.locator(f"a[href='./{entry.slug}']").count() == 1, entry.slug
    screenshot(page, "panel-index")


@pytest.mark.parametrize("entry", TOPICS, ids=[p.slug for p in TOPICS])
def test_moving_the_main_control_updates_the_figure(page, app_url, entry):
    label = entry.app(True).controls[entry.control].label
    page.goto(f"{app_url}/{entry.slug}")
    figure = page.locator(".js-plotly-plot").first
    slider = panel_slider(page, label)
    slider.wait_for()
    title_before = slider.locator(".bk-slider-title").inner_text()
    move_slider_and_wait_for_figure(page, slider.locator(".noUi-handle"), figure)
    assert slider.locator(".bk-slider-title").inner_text() != title_before
    screenshot(page, f"panel-{entry.slug}")
