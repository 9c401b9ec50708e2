"""Headless Chromium for the report tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download is not used (no network at test time): it launches the
system Chromium (``LMCPIPE_CHROMIUM``, default /usr/bin/chromium) with the flags a closed
network needs. Where Chromium cannot start, the tests skip and say why, unless
``LMCPIPE_REQUIRE_BROWSER=1`` (CI, see .ci/run) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def _unavailable(reason: str) -> None:
    if os.environ.get("LMCPIPE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"LMCPIPE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A Playwright Chromium browser, closed on exit; skips (or fails, in CI) without one."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    executable = os.environ.get("LMCPIPE_CHROMIUM") or shutil.which("chromium") or ""
    if not os.path.exists(executable):
        _unavailable("Chromium is not installed (Debian: apt-get install chromium)")
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        except Error as e:
            _unavailable(f"Chromium ({executable}) does not start: {str(e).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


# The images of a page that did not load (a broken src, an empty file).
BROKEN_IMAGES = "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))" \
                ".map(i => i.getAttribute('src'))"
