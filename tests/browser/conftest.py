"""One JupyterLab (``nasiko-nb lab --demo``) and one headless Debian chromium for the module's browser tests.

Playwright drives the system's ``/usr/bin/chromium`` (``.ci/run`` installs it); it never downloads a browser.
Screenshots go to ``test-artifacts/screenshots/`` (git-ignored) for a person to look at.
"""
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.lab_process import interrupt, start_lab
from tests.paths import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCENARIO = "image-pull-missing-secret"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
TIMEOUT_MS = 60_000     # a shared 2-core machine: JupyterLab's first page load and a kernel start take seconds


@dataclass
class Lab:
    base: str           # http://127.0.0.1:PORT/
    token: str
    kubeconfig: Path

    def kubectl(self, *args: str) -> str:
        """kubectl (an independent client) against the demo cluster the lab's kernels use."""
        command = [shutil.which("kubectl") or "kubectl", "--kubeconfig", str(self.kubeconfig),
                   "--cache-dir", str(self.kubeconfig.parent / "kubectl-cache"), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout

    def shut_down_sessions(self) -> None:
        """Stop every notebook's kernel, so the next runbook opens on its own."""
        auth = {"Authorization": f"token {self.token}"}
        for session in requests.get(f"{self.base}api/sessions", headers=auth, timeout=30).json():
            requests.delete(f"{self.base}api/sessions/{session['id']}", headers=auth, timeout=30)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`nasiko-nb lab --demo` on a free loopback port, serving a copy of the runbooks (JupyterLab's autosave must
    never write outputs into the committed ones), its workspaces and settings kept out of the user's."""
    home = tmp_path_factory.mktemp("lab-home")
    runbooks = shutil.copytree(REPO / "runbooks", home / "runbooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    env = {**os.environ, "NASIKO_RUNBOOKS": str(runbooks), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTER_CONFIG_DIR": str(home / "config")}
    process, printed = start_lab("--demo", SCENARIO, "--port", "0", env=env)
    try:
        base, token = printed["url"].split("lab?token=")
        yield Lab(base, token, Path(printed["kubeconfig"]))
    finally:
        assert interrupt(process) == 0
    assert not (runbooks / ".ipynb_checkpoints").exists(), "checkpoints belong to the lab's session folder"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless chromium with a fresh profile."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser, lab, request):
    """A tab for one test; its screenshot is saved at the end (also when the test failed), its kernels stopped."""
    tab = browser.new_page()
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    full_screenshot(tab, SCREENSHOTS / f"{request.node.name}.png")
    tab.close()
    lab.shut_down_sessions()


def full_screenshot(page, path: Path) -> None:
    """The whole notebook, not just the part in view: the viewport is grown to the notebook's height first."""
    height = page.evaluate("""() => Math.max(0, ...[...document.querySelectorAll('.jp-WindowedPanel-outer')]
                                  .map(panel => { panel.scrollTop = 0; return panel.scrollHeight; }))""")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(size["height"], height + 200), 12_000)})
    page.wait_for_timeout(500)   # JupyterLab lays the taller panel out
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
