"""Debian's chromium driven by Playwright, and what the browser tests and the browser latency
benchmark (benchmarks/browser_latency.py) both do with it: launch it, open a notebook in
JupyterLab and run it, find an explorer's main slider, keep a screenshot in runs/ui/."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

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
LAB_TOKEN = "workbench-ui-test"


def launch(playwright):
    """A headless chromium (Debian's, never a downloaded build)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@contextmanager
def new_page(browser, width: int = 1400, height: int = 1000, init_script: str | None = None):
    """A page in a fresh context (its own storage) of `width` x `height` CSS pixels."""
    context = browser.new_context(viewport={"width": width, "height": height})
    if init_script is not None:
        context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_notebook(page, lab: str, notebook: str, *, token: str = LAB_TOKEN) -> None:
    """Open `notebook` (a path under the Lab server's root) in a workspace of its own, accept
    the kernel Lab offers (the notebook's own), and wait until that kernel is idle."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    workspace = Path(notebook).stem
    page.goto(f"{lab}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={token}")
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


def run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def explorer_notebook(slug: str):
    """A one-cell notebook showing a topic's SMOKE explorer (its page slug) in JupyterLab."""
    import nbformat

    source = f"from widgets.topics import topic\n\ntopic({slug!r}).app(True).ipywidget()"
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(source))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return notebook


def lab_slider(page, label: str):
    """The ipywidgets slider whose description is `label` (an explorer control's label)."""
    return page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label)).first


def panel_slider(page, label: str):
    """The Bokeh slider (a served Panel page) whose title starts with `label`."""
    return page.locator(".bk-slider-title", has_text=label).locator("xpath=..")
