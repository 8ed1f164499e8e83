"""Fixtures for the browser end-to-end tests.

- ``demo_server``: the demo app (``raysfu.demo.create_app(debug_hooks=True)``) served in-process
  by an aiohttp AppRunner on 127.0.0.1 and a free port, on the local Ray of ``ray_session``.
- ``browser``: Debian's Chromium (``/usr/bin/chromium``) driven by Python playwright with fake
  camera and microphone (flags from research/browser-testing.md).
- ``lab_server``/``lab_peer``: the browser lab (``tests/e2e/lab.py``): a bare page with
  mediasoup-client that the test signals from Python against its own routers;
  ``await lab_peer(name) -> LabPeer``.
- ``worker``: one raysfu worker per test module (``create_worker()`` on the local Ray of
  ``ray_session``), closed after the module.
- ``open_peer``: opens one page per peer, each in its own browser context, joins a room and waits
  for ``window.raysfu.ready``; pages and contexts are closed after the test.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
BUNDLE = DEMO_DIR / "static" / "bundle.js"
LAB_BUNDLE = DEMO_DIR / "static" / "lab.js"

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/",
]

READY_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
async def worker(ray_session):
    """A worker for the module's tests; closed after them, with a moment for the close (a
    fire-and-forget request) to reach the actor before the next module starts."""
    from raysfu.actors import create_worker

    w = await create_worker()
    yield w
    w.close()
    await asyncio.sleep(0.3)


def _ensure_bundle() -> None:
    """Build demo/static/bundle.js and lab.js when missing (``make test`` builds them beforehand)."""
    if BUNDLE.exists() and LAB_BUNDLE.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"{BUNDLE} is missing and npm is not installed: run `make bundle`")
    if not (DEMO_DIR / "node_modules").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=DEMO_DIR, check=True)
    subprocess.run([npm, "run", "build"], cwd=DEMO_DIR, check=True)


@pytest.fixture(scope="module")
async def demo_server(ray_session):
    """``(base_url, app)`` of the demo app running in-process with debug hooks."""
    from aiohttp import web

    from raysfu.demo import create_app

    _ensure_bundle()
    app = create_app(debug_hooks=True, listen_ip="127.0.0.1")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def browser():
    """A headless Chromium (Debian's) shared by the module's tests."""
    from playwright.async_api import async_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test does it)")
    pw = await async_playwright().start()
    try:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
    finally:
        await pw.stop()


async def close_contexts(contexts: list) -> None:
    """Close playwright browser contexts, ignoring ones whose browser is already gone."""
    for context in contexts:
        try:
            await context.close()
        except Exception:  # noqa: BLE001 - browser already gone
            pass


@dataclass
class PeerPage:
    """One browser peer: its name, playwright page and the console lines it printed."""

    name: str
    page: Any
    console: list[str] = field(default_factory=list)

    async def stats(self) -> dict[str, list[dict[str, Any]]]:
        """``window.raysfu.stats()``: ``{inbound: [per consumer], outbound: [per producer]}``."""
        return await self.page.evaluate("window.raysfu.stats()")

    def console_tail(self, n: int = 25) -> str:
        return "\n".join(f"  [{self.name}] {line}" for line in self.console[-n:])


@pytest.fixture
async def open_peer(browser, demo_server):
    """``await open_peer(room, name, debug_receive_loss=None) -> PeerPage``, joined and ready."""
    base_url, _app = demo_server
    contexts = []

    async def _open(room: str, name: str, debug_receive_loss: float | None = None) -> PeerPage:
        context = await browser.new_context(viewport={"width": 1000, "height": 700})
        contexts.append(context)
        page = await context.new_page()
        peer = PeerPage(name, page)
        page.on("console", lambda msg: peer.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: peer.console.append(f"pageerror: {exc}"))
        url = f"{base_url}/?room={room}&peer={name}"
        if debug_receive_loss is not None:
            url += f"&debugReceiveLoss={debug_receive_loss}"
        await page.goto(url)
        try:
            await asyncio.wait_for(page.evaluate("window.raysfu.ready.then(() => true)"),
                                   READY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - report the page's own log with the failure
            pytest.fail(f"peer {name} did not get ready: {exc!r}\n{peer.console_tail()}")
        return peer

    try:
        yield _open
    finally:
        await close_contexts(contexts)


@pytest.fixture(scope="module")
async def lab_server():
    """Base URL of a static server for ``demo/static`` (the lab page needs a secure origin:
    http://127.0.0.1, never about:blank)."""
    from aiohttp import web

    _ensure_bundle()
    app = web.Application()
    app.router.add_static("/", DEMO_DIR / "static", show_index=False)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def lab_peer(browser, lab_server):
    """``await lab_peer(name) -> LabPeer``: a lab page in its own browser context, ready to be
    driven (see tests/e2e/lab.py); closed after the test."""
    from .lab import LabPeer

    contexts = []

    async def _open(name: str) -> LabPeer:
        context = await browser.new_context(viewport={"width": 800, "height": 600})
        contexts.append(context)
        peer = LabPeer(name, await context.new_page())
        try:
            await peer._open(f"{lab_server}/lab.html")
        except Exception as exc:  # noqa: BLE001 - report the page's own log with the failure
            pytest.fail(f"lab peer {name} did not load: {exc!r}\n{peer.console_tail()}")
        return peer

    try:
        yield _open
    finally:
        await close_contexts(contexts)
