"""JupyterLab in a real browser: open a topic notebook (its SMOKE copy), Run All, move the
explorer's main control, and see the figure change. Screenshots: runs/ui/lab-*.png."""

from __future__ import annotations

import pytest
from chromium import LAB_TOKEN, ROOT, lab_slider, open_notebook, run_all_cells, screenshot
from conftest import move_slider_and_wait_for_figure
from servers import PYTHON, jupyter_lab, lab_command_options, lab_ready, serving

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


def test_the_lab_command_opens_the_tour_without_news_and_reaches_runs(page, tmp_path):
    """`./dev lab` as a reader gets it (its options, the settings file its setup installs):
    the tour opens, no news prompt covers it, the file browser lists runs/ and opens it."""
    import shutil

    options = lab_command_options(ROOT)
    (default_url,) = [o.split("=", 1)[1] for o in options if o.startswith("--LabApp.default_url")]
    settings = tmp_path / "settings"
    (settings / "overrides.d").mkdir(parents=True)
    shutil.copy(ROOT / "jupyter" / "overrides.json", settings / "overrides.d" / "workbench.json")

    def argv(port: int) -> list[str]:
        return [
            PYTHON, "-m", "jupyterlab", "--no-browser", "--allow-root", *options,
            f"--ServerApp.port={port}", f"--ServerApp.token={LAB_TOKEN}",
            f"--LabApp.app_settings_dir={settings}", f"--LabApp.user_settings_dir={tmp_path}",
        ]  # fmt: skip

    with serving(argv, lab_ready(LAB_TOKEN), tmp_path / "lab.log", cwd=tmp_path) as url:
        page.goto(f"{url}{default_url}?token={LAB_TOKEN}")
        page.locator(".jp-Notebook >> visible=true").wait_for(timeout=90_000)
        assert page.locator(".lm-TabBar-tab.lm-mod-current", has_text="00_tour").count() == 1
        page.wait_for_timeout(5_000)  # Lab asks about news a moment after it starts
        news = page.get_by_text("official Jupyter news")
        screenshot(page, "lab-command-tour")
        assert news.count() == 0
        if not page.locator(".jp-FileBrowser").is_visible():
            page.locator(".jp-SideBar [data-id='filebrowser']").first.click()
        # it shows notebooks/, the tour's folder; the repository's root is one click up
        page.locator(".jp-FileBrowser .jp-BreadCrumbs-home").first.click()
        page.locator(".jp-DirListing-item", has_text="notebooks").first.wait_for()
        runs = page.locator(".jp-DirListing-item", has_text="runs").first
        runs.dblclick()
        page.locator(".jp-BreadCrumbs", has_text="runs").first.wait_for()
        assert page.locator(".jp-DirListing-item", has_text="ui").count() >= 1
