"""Browser tests of the dashboard: Debian's Chromium (the system browser) driven by Playwright.

Playwright's Python package drives the browser found at ``TITAN_RAY_CHROMIUM`` or on PATH as
``chromium``; it downloads nothing. `.ci/run` installs Debian's ``chromium``. Screenshots go to
``$TITAN_RAY_ARTIFACTS`` (default ``tests/artifacts/``, git-ignored), one PNG per view and width.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
ARTIFACTS = Path(os.environ.get("TITAN_RAY_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")


def chromium_path() -> str | None:
    return os.environ.get("TITAN_RAY_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.fail("no Chromium: install Debian's `chromium` (`.ci/run` does: apt-get install chromium) or set "
                    "TITAN_RAY_CHROMIUM to a Chromium binary")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the `playwright` package is missing: pip install -e '.[test]'")
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@dataclass
class Opened:
    """A page in its own browser context, with what its console said."""

    page: Any
    name: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def shot(self, view: str, *, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{view}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size > 10_000, f"{path} is suspiciously small: the page drew nothing?"
        return path

    def snapshot(self) -> dict[str, Any]:
        """What the page says it shows (TitanRay.app.snapshot(): models, equity series, events seen)."""
        return self.page.evaluate("TitanRay.app.snapshot()")

    def wait_for(self, js: str, timeout_s: float = 20.0) -> None:
        # a function, compiled once by Playwright: a bare expression is eval'ed at every poll, which the
        # dashboard's Content-Security-Policy (script-src 'self', no 'unsafe-eval') refuses
        self.page.wait_for_function(f"() => ({js})", timeout=timeout_s * 1000)

    def assert_no_console_errors(self, allow: tuple[str, ...] = ()) -> None:
        errors = [e for e in self.errors if not any(a in e for a in allow)]
        assert not errors, f"console errors on {self.name}: {errors}"


@pytest.fixture
def open_page(browser, request) -> Iterator[Callable[..., Opened]]:
    """open_page(url, "desktop" | "phone", route=None) -> Opened; closed at the end of the test.

    ``route`` intercepts the requests that match ``route_pattern`` (Playwright's ``page.route``)."""
    contexts = []

    def _open(url: str, width: str = "desktop", *, route: Callable[[Any], None] | None = None,
              route_pattern: str = "**/v1/events") -> Opened:
        phone = width == "phone"
        context = browser.new_context(viewport=VIEWPORTS[width], device_scale_factor=1, is_mobile=phone,
                                      has_touch=phone)
        contexts.append(context)
        page = context.new_page()
        suite = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_dashboard_")
        opened = Opened(page, f"{suite}-{width}")
        page.on("console", lambda m: opened.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: opened.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: opened.requests.append(r.url))
        if route is not None:
            page.route(route_pattern, route)
        page.goto(url)
        page.wait_for_function("() => window.TitanRay && TitanRay.app && TitanRay.app.equity", timeout=15_000)
        return opened

    yield _open
    for context in contexts:
        context.close()

