"""A real headless browser for the tests: Playwright's Python package driving Debian's chromium
(Playwright's own browser download needs a network this machine does not have).

    with headless_browser() as browser:
        page = browser.new_page()
        ...
        page.screenshot(path=artifact("jupyterlab/01_eda.png"), full_page=True)

Screenshots and other artifacts go under `test-artifacts/` at the project root (git-ignored;
the GitHub workflow uploads it), or $FAULTWATCH_TEST_ARTIFACTS.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .paths import REPO

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The system's Chromium (or Chrome), or $FAULTWATCH_CHROMIUM."""
    explicit = os.environ.get("FAULTWATCH_CHROMIUM")
    if explicit:
        return explicit
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def artifact(relative: str) -> Path:
    """A path under the test artifacts folder, its parent created."""
    base = Path(os.environ.get("FAULTWATCH_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path = base / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def headless_browser() -> Iterator:
    """A headless Chromium, closed (with its processes) when the block ends, even on failure.
    Skips when no Chromium is installed (`make system` installs Debian's)."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium on PATH: make system (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    args = ["--disable-dev-shm-usage", "--disable-gpu"]
    if os.geteuid() == 0:  # Chromium refuses to run as root with its sandbox
        args.append("--no-sandbox")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()
