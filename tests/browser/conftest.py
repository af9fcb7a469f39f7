"""Browser fixtures: Debian's Chromium driven by Playwright, a real ``updraft server`` and real agents.

Chromium comes from ``scripts/install-packages.sh`` (packages chromium, chromium-driver); Playwright's own
browser download is never used (``executable_path``). Each page records its console errors and uncaught
exceptions, and a test fails if any appeared. Screenshots go to ``artifacts/browser/`` (ignored by git).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.cluster import ROOT, Cluster, ensure_docker
from updraft.security.tokens import Role

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "browser"
# The flags that work on these machines (no sandbox as root, no GPU, no calls home on a closed network).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
LIVE_S = 2.0
"""The issue's bound: a state change appears on an open page within 2 s, without a reload."""


@pytest.fixture(scope="module")  # not session: Playwright's sync API keeps an event loop running in this thread
def browser() -> Iterator[Browser]:  # until it stops, and every later asyncio.run() in the suite would fail
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-packages.sh (make test does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Dashboard:
    """A real ``updraft server`` (authentication on, as shipped), a token per role, and the test's agents."""

    cluster: Cluster
    tokens: dict[Role, str]

    @property
    def url(self) -> str:
        return self.cluster.url

    @property
    def admin(self) -> dict[str, str]:
        """Headers for the API, as the server's first-start admin."""
        return self.cluster.headers


def start_dashboard(workdir: Path, **config: Any) -> Dashboard:
    """Start the server with the project's CLI; make a token per role through ``POST /v1/tokens``."""
    c = Cluster(workdir)
    try:
        c.start_server(**config)
        assert c.admin_token, "the server wrote no DATA_DIR/admin.token"
        tokens = {Role.ADMIN: c.admin_token}
        for role in (Role.OPERATOR, Role.SUBMITTER, Role.METRICS):
            r = httpx.post(f"{c.url}/v1/tokens", json={"role": str(role), "description": "browser test"},
                           headers=c.headers, timeout=10)
            r.raise_for_status()
            tokens[role] = r.json()["token"]
    except Exception:
        c.close()
        raise
    return Dashboard(c, tokens)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A server and two agents (Docker): 'edge' (tag edge, origin of the tasks) and 'cloud' (tag low-util)."""
    ensure_docker()
    d = start_dashboard(tmp_path_factory.mktemp("dash"))
    try:
        d.cluster.start_agent("edge", tags=["edge"], labels={"zone": "a"}, cpus="0.5", cpuset="0", memory="1Gi")
        d.cluster.start_agent("cloud", tags=["low-util"], labels={"zone": "b"}, taints=["gpu=yes:PreferNoSchedule"],
                              cpus="1", cpuset="1", memory="2Gi")
        yield d
    finally:
        d.cluster.close()


@dataclass
class Screen:
    """A browser page with the console errors it logged."""

    page: Page
    base: str
    errors: list[str] = field(default_factory=list)
    confirm: bool = True
    """How the next confirmation dialog is answered."""

    def go(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def no_errors(self) -> None:
        assert self.errors == [], f"console errors: {self.errors}"


@pytest.fixture
def screen(browser: Browser) -> Iterator[Callable[[Dashboard, Role | None], Screen]]:
    """``screen(dashboard, role)``: a fresh browser context, logged in as ``role`` through the login form."""
    opened: list[Screen] = []

    def open_as(d: Dashboard, role: Role | None) -> Screen:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        s = Screen(page, d.url)

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                s.errors.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: s.errors.append(f"uncaught: {exc}"))
        page.on("dialog", lambda dialog: dialog.accept() if s.confirm else dialog.dismiss())
        if role is not None:
            s.go("/ui/login")
            page.fill("#token", d.tokens[role])
            page.click("#login")
            page.wait_for_load_state()
        opened.append(s)
        return s

    yield open_as
    for s in opened:
        s.page.context.close()
