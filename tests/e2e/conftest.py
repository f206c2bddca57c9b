"""Fixtures for the browser tests: Debian's Chromium driven by Playwright's
sync API (no pytest-playwright), the real server in a subprocess, and one
browser context per person, each watched by the console/CSP guard.

Run them on their own: ``pytest -m e2e tests/e2e`` (see the Makefile)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    CHROMIUM,
    CSP_LISTENER,
    LAUNCH_ARGS,
    A11y,
    Api,
    Guard,
    Server,
)

Actor = Callable[..., Any]


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (REQUIRE_BROWSER=1 makes this an error)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: install Debian's chromium to run the browser tests")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    expect.set_options(timeout=10_000)
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
    except Exception as exc:
        pw.stop()
        _unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
    yield b
    b.close()
    pw.stop()


@pytest.fixture(scope="session")
def server(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that do not need to stop it."""
    s = Server(tmp_path_factory.mktemp("e2e-data"))
    s.prepare()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def own_server(browser: Any, tmp_path: Path) -> Iterator[Server]:
    """A server this test may stop and restart."""
    s = Server(tmp_path / "data")
    s.prepare()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.close()


@pytest.fixture
def guard() -> Guard:
    return Guard()


@pytest.fixture
def a11y() -> A11y:
    return A11y()


@pytest.fixture
def actors(browser: Any, guard: Guard) -> Iterator[Actor]:
    """``actors(name, base_url, width=, height=)`` opens a fresh browser
    context (its own cookies: one person) and returns its page."""
    contexts: list[Any] = []

    def open_actor(name: str, base_url: str, *, width: int = 1280, height: int = 720) -> Any:
        ctx = browser.new_context(
            base_url=base_url, viewport={"width": width, "height": height}, accept_downloads=True
        )
        ctx.set_default_timeout(10_000)
        ctx.add_init_script(CSP_LISTENER)
        contexts.append(ctx)
        page = ctx.new_page()
        guard.watch(page, name)
        return page

    yield open_actor
    for ctx in contexts:
        ctx.close()
