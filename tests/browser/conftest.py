"""Chromium through Playwright, against pytest-django's live server.

The browser is Debian's ``/usr/bin/chromium``; Playwright's own browser downloads are
never used. Without it the tests skip, except in CI (``CI=true``, or ``chromium`` in
``TEST_REQUIRE_SERVICES``), where they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import _unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# Playwright launches Chromium without the back-forward cache; a user's Chrome has it.
BFCACHE_OFF = "--disable-back-forward-cache"


def _no_browser(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, but the browser test {reason}", pytrace=False)
    _unavailable(reason, "chromium")


@pytest.fixture(scope="module")
def playwright():
    """Playwright's sync API, for one test module."""
    if not os.access(CHROMIUM, os.X_OK):
        _no_browser(f"needs Chromium at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("needs the Python package playwright: pip install -e '.[test]'")
    with pytest.MonkeyPatch.context() as patch:
        # The sync API keeps an event loop running in this thread, and Django refuses ORM
        # calls where it sees one; the test's own queries are plain synchronous ones.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            yield playwright


@pytest.fixture(scope="module")
def chromium(playwright):
    """Headless Chromium as Playwright launches it: no back-forward cache."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def chromium_with_bfcache(playwright):
    """Headless Chromium with the back-forward cache on, as in a user's browser."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, ignore_default_args=[BFCACHE_OFF]
    )
    yield browser
    browser.close()


def _page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    return context, page


@pytest.fixture
def page(chromium):
    """A page in a fresh browser context: no cookies, no cache."""
    context, page = _page(chromium)
    yield page
    context.close()


@pytest.fixture
def page_with_bfcache(chromium_with_bfcache):
    """The same, in the browser that keeps pages in its back-forward cache."""
    context, page = _page(chromium_with_bfcache)
    yield page
    context.close()
