"""The page in headless Firefox against the real server, driven over WebDriver BiDi: it plays the
avatar at 25 fps or more, speaks typed text (mouth and voice), the interrupt button stops the
speech, and the (fake) microphone opens the mouth. test_browser.py checks the same page in
Chromium, with lip sync to a speech WAV: Firefox's fake microphone can only play a steady tone.

The voice is measured from the receiver's WebRTC statistics (totalAudioEnergy of the decoded
audio), not with an AudioContext: headless Firefox runs no AudioContext on a machine without a
sound device.

The first test saves a screenshot of the page: run pytest with -s to see its path.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from bidi import BidiPage, firefox, firefox_binary
from live_server import jaw_box, live_server
from page_checks import CLOCK_WATCH_S, MIN_FPS, WATCH_MOUTH, check_playing, say_and_interrupt, until

from streaming.app import ServerConfig

SIZE = 256
TEST_TIMEOUT_S = 50  # each test, start to end, browser launch included
FPS_WATCH_S = 3.0  # how long to count decoded frames
STATS_POLL_S = 0.02  # app.js updates its figures every 500 ms: notice an update this quickly
SILENCE_WATCH_S = 0.5

# Preloaded before app.js: keeps the page's peer connections where the test can read their stats.
RECORD_PEER_CONNECTIONS = """() => {
  const Native = window.RTCPeerConnection;
  window.peerConnections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.peerConnections.push(this); }
  };
}"""
# Energy (sum of level squared times seconds) of the avatar's voice decoded so far.
VOICE_ENERGY = """(async () => {
  let energy = 0;
  (await window.peerConnections.at(-1).getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') energy += s.totalAudioEnergy ?? 0;
  });
  return energy;
})()"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(firefox_binary() is None, reason="needs Firefox (apt-get install firefox-esr)"),
    pytest.mark.timeout(TEST_TIMEOUT_S + 10),
]


@asynccontextmanager
async def firefox_page(url: str, profile: Path) -> AsyncIterator[BidiPage]:
    """Headless Firefox showing `url` (loaded, with RECORD_PEER_CONNECTIONS), killed on exit."""
    async with (
        firefox(profile) as port,
        aiohttp.ClientSession() as http,
        BidiPage.connect(http, port) as page,
    ):
        await page.add_preload_script(RECORD_PEER_CONNECTIONS)
        await page.navigate(url)
        yield page


async def next_frames_decoded(page: BidiPage) -> tuple[int, float]:
    """(frames decoded, monotonic seconds) at the page's next stats update."""
    before = await page.evaluate("window.avatarStats.framesDecoded")
    while (frames := await page.evaluate("window.avatarStats.framesDecoded")) == before:  # noqa: ASYNC110 (polls the page: the browser sends the test no event for it)
        await asyncio.sleep(STATS_POLL_S)
    return frames, time.monotonic()


async def test_page_plays_the_avatar_in_firefox(tmp_path: Path) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        async with (
            live_server(ServerConfig(port=0, size=SIZE)) as url,
            firefox_page(f"{url}/?autostart=1", tmp_path / "profile") as page,
        ):
            await until(page, "window.avatarStats.framesDecoded >= 10")
            await check_playing(page, SIZE)

            # decoded frames counted between two stats updates FPS_WATCH_S or more apart
            first, start = await next_frames_decoded(page)
            await asyncio.sleep(FPS_WATCH_S)
            last, end = await next_frames_decoded(page)
            fps = (last - first) / (end - start)
            assert fps >= MIN_FPS, f"{fps:.1f} frames decoded per second"
            assert float(await page.evaluate("document.getElementById('fps').textContent")) > 0

            screenshot = tmp_path / "avatar_page_firefox.png"
            await page.screenshot(screenshot)
            print(f"screenshot of the page in Firefox: {screenshot}")


@pytest.mark.slow
async def test_typed_text_is_spoken_and_the_interrupt_button_stops_it_in_firefox(tmp_path: Path) -> None:
    size = 128
    async with asyncio.timeout(TEST_TIMEOUT_S):
        async with (
            live_server(ServerConfig(port=0, size=size)) as url,
            firefox_page(f"{url}/?autostart=1", tmp_path / "profile") as page,
        ):
            await until(page, "window.avatarStats.framesDecoded >= 10 && window.avatarStats.speech")
            idle_energy = await page.evaluate(VOICE_ENERGY)
            await say_and_interrupt(page, jaw_box(size))
            spoken_energy = await page.evaluate(VOICE_ENERGY) - idle_energy
            await asyncio.sleep(SILENCE_WATCH_S)
            after_energy = await page.evaluate(VOICE_ENERGY) - idle_energy - spoken_energy
            # the voice was heard, and is silent after the interrupt
            assert spoken_energy > 0.01 and after_energy < 0.01 * spoken_energy, (spoken_energy, after_energy)
            assert (await page.evaluate("document.getElementById('latency').textContent")).endswith(" ms")


@pytest.mark.slow
async def test_the_microphone_opens_the_mouth_in_firefox(tmp_path: Path) -> None:
    """getUserMedia -> WebRTC -> the server's speech chain (loudness model). Firefox's fake
    microphone plays a steady tone: the mouth opens and stays open."""
    size = 128
    async with asyncio.timeout(TEST_TIMEOUT_S):
        async with (
            live_server(ServerConfig(port=0, size=size)) as url,
            firefox_page(f"{url}/?autostart=1&mic=1", tmp_path / "profile") as page,
        ):
            await until(page, "window.avatarStats.framesDecoded >= 10 && window.avatarStats.server")
            assert await page.evaluate("window.avatarStats.server.input") == "mic"
            await page.evaluate(f"({WATCH_MOUTH})({jaw_box(size)}, 'grey')")
            opened = await until(page, "window.mouthSamples.findIndex(([t, jaw]) => jaw > 0.1) + 1")
            await asyncio.sleep(CLOCK_WATCH_S)
            mouth = await page.evaluate(f"window.mouthSamples.slice({opened}).map(([t, jaw]) => jaw)")
            assert len(mouth) > 5 and min(mouth) > 0.1, mouth
