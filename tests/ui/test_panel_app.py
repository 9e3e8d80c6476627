"""The served Panel app in a real browser: the index links every page (screenshot
runs/ui/panel-index.png). That moving each page's main control changes its figure is checked
in test_layout.py, on the visit that measures the page's width."""

from __future__ import annotations

import pytest
from chromium import ROOT, screenshot
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
