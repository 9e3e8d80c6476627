"""JupyterLab in a real browser: open a topic notebook (its SMOKE copy), Run All, move the
explorer's main control, and see the figure change. Screenshots: runs/ui/lab-*.png."""

from __future__ import annotations

import pytest
from conftest import ROOT, move_slider_and_wait_for_figure, screenshot
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from servers import PYTHON, serving

from widgets.topics import TOPICS

pytestmark = pytest.mark.ui

# The topics whose explorers are exercised in Lab (the issue: steps, guidance scale, LR).
LAB_NOTEBOOKS = ("01_solver_steps.ipynb", "02_guidance_scales.ipynb", "03_lr_transfer_width.ipynb")
LAB_PAGES = [p for p in TOPICS if p.notebook in LAB_NOTEBOOKS]
TOKEN = "workbench-ui-test"


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

    def argv(port: int) -> list[str]:
        return [
            PYTHON, "-m", "jupyterlab", "--no-browser", "--allow-root",
            f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={folder}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]  # fmt: skip

    with serving(argv, f"/api/status?token={TOKEN}", folder / "lab.log", cwd=folder) as url:
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
    workspace = entry.notebook.removesuffix(".ipynb")
    page.goto(f"{lab}/lab/workspaces/{workspace}/tree/{entry.notebook}?reset&token={TOKEN}")
    page.locator(".jp-Notebook >> visible=true").wait_for(timeout=90_000)
    # Lab may ask which kernel to start for a notebook it has not opened before: the default
    # it offers is the notebook's own (python3, "Python 3 (workbench)").
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=5_000)
        dialog.locator(".jp-mod-accept").click()
    except PlaywrightTimeout:
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label))
    # The explorer is drawn once every cell above it ran: in notebook 01 that includes the
    # converged grid fits (two starts per solver and step count, ~40 s alone), and under
    # pytest -n 2 the other worker halves the CPU.
    slider.first.wait_for(timeout=RUN_ALL_TIMEOUT_MS)
    # the explorer's own figure: in the output that holds the slider (earlier cells have plots)
    output = page.locator(".jp-OutputArea-output", has=slider.first)
    figure = output.locator(".js-plotly-plot").first
    move_slider_and_wait_for_figure(page, slider.first.locator(".noUi-handle"), figure)
