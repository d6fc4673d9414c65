"""A real headless Chromium for the page tests: Debian's ``chromium`` package driven by Playwright's Python
client (never ``playwright install``: no browser download), and screenshots into a folder CI keeps.

``ZOO_TEST_CHROMIUM`` names another Chromium binary; ``ZOO_TEST_ARTIFACTS`` another folder than
``test-artifacts/`` at the repository's root (gitignored) for the screenshots.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
SCREENSHOTS = Path(os.environ.get("ZOO_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts") / "screenshots"


def chromium_path() -> str:
    """The Chromium to drive; a missing browser fails the test (it is a dependency, not an option)."""
    path = os.environ.get("ZOO_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail("no Chromium for the page tests: install it with `apt-get install -y chromium chromium-driver` "
                    "(scripts/setup.sh does, as root) or point ZOO_TEST_CHROMIUM at one")
    return path


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def shoot(page, name: str) -> Path:
    """A full-page screenshot for people to look at (CI keeps test-artifacts/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
