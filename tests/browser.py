"""Debian's chromium, headless, driven by Selenium through Debian's chromedriver (an explicit
path: Selenium's manager never looks for a driver on the network). A browser that cannot start
fails the test: CI installs both (.ci/run)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ARGS = ("--headless=new", "--no-sandbox", "--disable-background-networking",
        "--disable-component-update", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1200,900", "--no-first-run", "--disable-extensions",
        # WebGL (Plotly's parallel coordinates) in software: the page is reprun's own.
        "--enable-unsafe-swiftshader")


def start_browser(downloads: Path | None = None) -> Any:
    """A headless chromium; pytest.fail (never skip) when it cannot start."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[dev]'", pytrace=False)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromedriver are needed for the web view's tests: "
                    "apt-get install chromium chromium-driver", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ARGS:
        options.add_argument(arg)
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(executable_path=driver), options=options)
    except Exception as exc:  # the browser or its driver cannot start: a failure, not a skip
        pytest.fail(f"chromium could not start: {str(exc).splitlines()[0]}", pytrace=False)


def wait_for(browser: Any, check: Callable[[Any], Any], timeout: float = 20,
             what: str = "") -> Any:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)  # the page is redrawn
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.1,
                             ignored_exceptions=ignored).until(check)
    except TimeoutException:
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        raise AssertionError(f"timed out waiting for {what or check}; page: "
                             f"{browser.current_url}; console: {errors}") from None
