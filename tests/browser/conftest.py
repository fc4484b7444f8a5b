"""Browser tests: Debian's chromium driven by Playwright, one browser for the whole session.

Never ``playwright install``: it downloads a browser, which cannot work offline. The
browser is the system's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it).
Without it the tests skip on a laptop and fail under ``CI=true``, like the other services.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_chromium() -> str:
    """The chromium executable; skip without one on a laptop, fail under CI (as ``require_service`` does)."""
    executable = shutil.which("chromium")
    if executable is not None:
        return executable
    if IN_CI:
        pytest.fail("Debian's chromium is required under CI=true but is not installed", pytrace=False)
    pytest.skip("chromium not installed — apt-get install chromium to run the browser tests")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = require_chromium()
    launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page at a desktop size, closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()
