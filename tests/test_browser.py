"""The viewer page in headless Chromium plays the avatar's video from the real server.

The test saves a screenshot of the page: run pytest with -s to see its path, then open the PNG in
any image viewer (pytest keeps the files of its last three runs under /tmp/pytest-of-$USER/).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cdp import CdpPage
from live_server import live_server

from streaming.app import ServerConfig

CHROMIUM = Path("/usr/bin/chromium")
SIZE = 256
FRAMES = 30
LAUNCH_TIMEOUT_S = 20
PLAY_TIMEOUT_S = 30
POLL_S = 0.1
CLOCK_WATCH_S = 0.5  # how long to watch the video's currentTime move
VIDEO = "document.getElementById('avatar')"

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--allow-loopback-in-peer-connection",  # offer 127.0.0.1 as an ICE candidate
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # plain addresses: the server resolves no mDNS names
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",  # a free port, written to DevToolsActivePort
    "--window-size=720,720",
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Debian chromium at {CHROMIUM} (apt-get install chromium)"),
]


@contextlib.asynccontextmanager
async def chromium(url: str, profile: Path) -> AsyncIterator[int]:
    """Headless Chromium showing `url`; yields its DevTools port. Killed on exit, always."""
    profile.mkdir()
    log = profile / "chromium.log"
    with log.open("wb") as output:
        browser = await asyncio.create_subprocess_exec(
            CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url,
            stdout=output, stderr=output, start_new_session=True,
        )
    try:
        yield await devtools_port(profile / "DevToolsActivePort", browser, log)
    finally:
        # its own process group: this ends the browser and every helper process it started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        await browser.wait()


async def devtools_port(port_file: Path, browser: asyncio.subprocess.Process, log: Path) -> int:
    async with asyncio.timeout(LAUNCH_TIMEOUT_S):
        while not port_file.exists() or not port_file.read_text().strip():
            if browser.returncode is not None:
                raise RuntimeError(f"chromium exited with status {browser.returncode}:\n{log.read_text()[-2000:]}")
            await asyncio.sleep(POLL_S)
    return int(port_file.read_text().split()[0])


async def until(page: CdpPage, expression: str) -> Any:
    """Polls a JavaScript expression until it is truthy; returns its value."""
    while not (value := await page.evaluate(expression)):
        await asyncio.sleep(POLL_S)
    return value


async def test_page_plays_the_avatar(tmp_path: Path) -> None:
    async with (
        live_server(ServerConfig(port=0, size=SIZE)) as url,
        chromium(f"{url}/?autostart=1", tmp_path / "profile") as port,
        aiohttp.ClientSession() as http,
        CdpPage.connect(http, port) as page,
    ):
        try:
            async with asyncio.timeout(PLAY_TIMEOUT_S):
                await until(page, f"window.avatarStats?.framesDecoded >= {FRAMES}")
        except TimeoutError:
            stats = await page.evaluate("JSON.stringify(window.avatarStats)")
            pytest.fail(f"the page did not decode {FRAMES} frames in {PLAY_TIMEOUT_S} s: {stats}")
        assert await page.evaluate("window.avatarStats.state") == "connected"
        assert await page.evaluate(f"[{VIDEO}.videoWidth, {VIDEO}.videoHeight]") == [SIZE, SIZE]
        before = await page.evaluate(f"{VIDEO}.currentTime")
        await asyncio.sleep(CLOCK_WATCH_S)
        assert await page.evaluate(f"{VIDEO}.currentTime") > before

        screenshot = tmp_path / "avatar_page.png"
        await page.screenshot(screenshot)
        print(f"screenshot of the page: {screenshot}")
