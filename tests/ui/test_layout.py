"""Nothing a reader sees is wider than its place at 1280 px: every explorer in the served app,
and in JupyterLab with the file browser open, and (given a SMOKE run folder) every output of
every executed notebook. Screenshots: runs/ui/layout-panel-<slug>.png, layout-lab-<slug>.png.
On the same visit each served page's main control is moved and its figure must change (one
page load per topic for both checks: CI's time goes to browsers and kernels).

What is covered by default: each topic's explorer, live (its SMOKE explorer in a one-cell
notebook in Lab; its served page), which is where the fixed ~1070 px figures were. The
executed notebooks' other outputs (static figures, tables) are checked when
WORKBENCH_UI_RUN names a folder written by `python -m workbench run --smoke --run-dir DIR`
(a full SMOKE run costs more than the suite's budget on two cores).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from chromium import (
    LAB_TOKEN,
    ROOT,
    explorer_notebook,
    lab_slider,
    new_page,
    open_notebook,
    panel_slider,
    run_all_cells,
    screenshot,
)
from conftest import move_slider_and_wait_for_figure
from servers import jupyter_lab, lab_ready, panel_app, serving, shut_down_kernels

from widgets.topics import TOPICS

pytestmark = pytest.mark.ui

WIDTH = 1280
EXPLORER_TIMEOUT_MS = 300_000  # kernel start and a SMOKE explorer's first compute, under load
RUN_FOLDER = os.environ.get("WORKBENCH_UI_RUN")

# Every element wider than its place, as "what: scroll/client px" lines (empty: none). It
# looks into shadow roots (Bokeh renders in them). An output area or the page may not scroll
# sideways; a plotly figure may not reach past its container or the window.
OVERFLOWS = r"""
(scope) => {
  const all = (selector, root = document, found = []) => {
    found.push(...root.querySelectorAll(selector));
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) all(selector, el.shadowRoot, found);
    }
    return found;
  };
  const problems = [];
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth + 1) {
    problems.push(`page: ${page.scrollWidth} > ${page.clientWidth} px`);
  }
  for (const area of all(scope)) {
    if (area.scrollWidth > area.clientWidth + 1) {
      problems.push(`${scope}: scrolls ${area.scrollWidth} > ${area.clientWidth} px`);
    }
  }
  for (const figure of all('.js-plotly-plot')) {
    const box = figure.getBoundingClientRect();
    const parent = (figure.parentNode.host || figure.parentNode).getBoundingClientRect();
    const title = (figure.querySelector('.gtitle') || {}).textContent || 'a figure';
    if (box.right > parent.right + 1 || box.right > window.innerWidth + 1) {
      problems.push(`figure "${title}": right edge ${box.right.toFixed(0)} > container ` +
                    `${parent.right.toFixed(0)} / window ${window.innerWidth} px`);
    }
  }
  return problems;
}
"""


def overflows(page, scope: str) -> list[str]:
    return page.evaluate(OVERFLOWS, scope)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    log = tmp_path_factory.mktemp("panel") / "server.log"
    with serving(panel_app, "/", log, cwd=ROOT) as url:
        yield url


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a folder of one-cell explorer notebooks (and, with
    WORKBENCH_UI_RUN, the executed notebooks of that SMOKE run)."""
    folder = tmp_path_factory.mktemp("lab-layout")
    for entry in TOPICS:
        nbformat.write(explorer_notebook(entry.slug), folder / f"explorer-{entry.slug}.ipynb")
    if RUN_FOLDER:
        for executed in Path(RUN_FOLDER).glob("*.ipynb"):
            (folder / f"executed-{executed.name}").write_bytes(executed.read_bytes())
    argv = jupyter_lab(folder, LAB_TOKEN)
    with serving(argv, lab_ready(LAB_TOKEN), folder / "lab.log", cwd=folder) as url:
        yield url


@pytest.fixture
def narrow_page(browser):
    with new_page(browser, width=WIDTH, height=900) as page:
        yield page


def label_of(entry) -> str:
    return entry.app(True).controls[entry.control].label


@pytest.mark.parametrize("entry", TOPICS, ids=[t.slug for t in TOPICS])
def test_served_explorer_fits_1280_px_and_its_control_moves_its_figure(narrow_page, served, entry):
    page = narrow_page
    page.goto(f"{served}/{entry.slug}")
    panel_slider(page, label_of(entry)).wait_for(timeout=EXPLORER_TIMEOUT_MS)
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=EXPLORER_TIMEOUT_MS)
    page.wait_for_timeout(1_000)  # figures resize to their cells after the first draw
    screenshot(page, f"layout-panel-{entry.slug}")
    assert overflows(page, "body") == []
    slider = panel_slider(page, label_of(entry))
    title_before = slider.locator(".bk-slider-title").inner_text()
    figure = page.locator(".js-plotly-plot").first
    move_slider_and_wait_for_figure(page, slider.locator(".noUi-handle"), figure)
    assert slider.locator(".bk-slider-title").inner_text() != title_before
    assert overflows(page, "body") == []


def open_with_file_browser(page, lab: str, notebook: str) -> None:
    open_notebook(page, lab, notebook)
    if not page.locator(".jp-FileBrowser").is_visible():
        page.locator(".jp-SideBar [data-id='filebrowser']").first.click()
    page.locator(".jp-FileBrowser").wait_for()


@pytest.mark.parametrize("entry", TOPICS, ids=[t.slug for t in TOPICS])
def test_lab_explorer_fits_1280_px_with_the_file_browser_open(narrow_page, lab, entry):
    page = narrow_page
    try:
        open_with_file_browser(page, lab, f"explorer-{entry.slug}.ipynb")
        run_all_cells(page)
        lab_slider(page, label_of(entry)).wait_for(timeout=EXPLORER_TIMEOUT_MS)
        page.locator(".jp-OutputArea-output .js-plotly-plot .main-svg").first.wait_for(
            timeout=120_000
        )
        page.wait_for_timeout(1_000)
        assert overflows(page, ".jp-OutputArea-output") == []
    finally:
        screenshot(page, f"layout-lab-{entry.slug}")
        shut_down_kernels(lab, LAB_TOKEN)  # six kernels at once would crowd two cores


EXECUTED = sorted(p.name for p in Path(RUN_FOLDER).glob("*.ipynb")) if RUN_FOLDER else []


@pytest.mark.skipif(not RUN_FOLDER, reason="WORKBENCH_UI_RUN names no SMOKE run folder")
@pytest.mark.parametrize("notebook", EXECUTED)
def test_executed_notebook_outputs_fit_1280_px_with_the_file_browser_open(
    narrow_page, lab, notebook
):
    page = narrow_page
    open_with_file_browser(page, lab, f"executed-{notebook}")
    page.locator(".jp-OutputArea-output").first.wait_for()
    # Lab draws cells as they scroll into view: visit every output before measuring.
    outputs = page.locator(".jp-OutputArea-output")
    for index in range(outputs.count()):
        outputs.nth(index).scroll_into_view_if_needed()
    page.wait_for_timeout(1_000)
    screenshot(page, f"layout-executed-{Path(notebook).stem}")
    assert overflows(page, ".jp-OutputArea-output") == []
