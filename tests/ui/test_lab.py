"""JupyterLab in a real browser: open a topic notebook (its SMOKE copy), Run All, move the
explorer's main control, and see the figure change. Screenshots: runs/ui/lab-*.png."""

from __future__ import annotations

import pytest
from chromium import LAB_TOKEN, ROOT, lab_slider, open_notebook, run_all_cells, screenshot
from conftest import move_slider_and_wait_for_figure
from servers import jupyter_lab, lab_ready, serving

from widgets.topics import TOPICS

pytestmark = pytest.mark.ui

# The topics whose explorers are exercised in Lab (the issue: steps, guidance scale, LR).
LAB_NOTEBOOKS = ("01_solver_steps.ipynb", "02_guidance_scales.ipynb", "03_lr_transfer_width.ipynb")
LAB_PAGES = [p for p in TOPICS if p.notebook in LAB_NOTEBOOKS]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a folder of SMOKE-parameterized copies of the notebooks."""
    import papermill

    folder = tmp_path_factory.mktemp("lab")
    for entry in LAB_PAGES:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / entry.notebook),
            str(folder / entry.notebook),
            parameters={"SMOKE": True},
            prepare_only=True,
            kernel_name="python3",
        )

    argv = jupyter_lab(folder, LAB_TOKEN)
    with serving(argv, lab_ready(LAB_TOKEN), folder / "lab.log", cwd=folder) as url:
        yield url


RUN_ALL_TIMEOUT_MS = 300_000


@pytest.mark.parametrize("entry", LAB_PAGES, ids=[p.notebook for p in LAB_PAGES])
def test_run_all_then_move_the_main_control(page, lab, entry):
    workspace = entry.notebook.removesuffix(".ipynb")
    try:
        run_all_and_move(page, lab, entry)
    finally:  # the screenshot is the artifact to look at, pass or fail
        screenshot(page, f"lab-{workspace}")


def run_all_and_move(page, lab, entry):
    label = entry.app(True).controls[entry.control].label
    open_notebook(page, lab, entry.notebook)
    run_all_cells(page)
    slider = lab_slider(page, label)
    # The explorer is drawn once every cell above it ran: in notebook 01 that includes the
    # converged grid fits (two starts per solver and step count, ~40 s alone), and under
    # pytest -n 2 the other worker halves the CPU.
    slider.wait_for(timeout=RUN_ALL_TIMEOUT_MS)
    # the explorer's own figure: in the output that holds the slider (earlier cells have plots)
    output = page.locator(".jp-OutputArea-output", has=slider)
    figure = output.locator(".js-plotly-plot").first
    move_slider_and_wait_for_figure(page, slider.locator(".noUi-handle"), figure)
