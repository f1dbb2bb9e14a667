"""Speech through the live server end to end on loopback: websocket PCM and a microphone reach
an aiortc viewer as lips and sound together; an interruption reaches it within 200 ms."""
from __future__ import annotations

import asyncio
import time

import pytest
from viewers import LOUD, OPEN, RECEIVE_TIMEOUT_S, Microphone, Viewer, tone_with_pauses

from engine.types import FPS

pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture
def audio_without_prefetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc's receiver holds 4 audio packets (80 ms) before releasing any; a browser syncs its
    playout to the video instead. Without the hold, arrival times compare audio with video."""
    from aiortc import jitterbuffer, rtcrtpreceiver

    monkeypatch.setattr(
        rtcrtpreceiver,
        "JitterBuffer",
        lambda capacity, prefetch=0, is_video=False: jitterbuffer.JitterBuffer(capacity, 0, is_video),
    )


async def test_websocket_speech_reaches_the_viewer_with_lips_and_sound_together(
    server, http, audio_without_prefetch
):
    viewer = Viewer()
    try:
        await viewer.connect(http, server)
        await viewer.record(0.3)  # connected and receiving
        ws = await viewer.speak(http, server, tone_with_pauses(0.3, 0.5))
        await ws.send_json({"type": "end"})
        received = await viewer.record(1.5)
        await ws.close()
    finally:
        await viewer.pc.close()
    opened = [index for _, index, jaw in received.video if jaw > OPEN]
    assert (
        0.5 * 0.5 * FPS <= len(opened) <= 0.5 * FPS + 3
    )  # the tone's frames (some may drop on a busy machine)
    assert received.video[-1][2] < 0.1  # closed again after it
    loud = [t for t, level in received.audio if level > LOUD]
    assert 0.4 <= loud[-1] - loud[0] <= 0.7  # 0.5 s of tone, heard
    # The server sends the frame and the audio of one instant together; on loopback they arrive
    # together too (a loose bound: a busy 2-core machine delays either by a few frames).
    assert abs(received.first_open() - received.first_sound()) < 0.1


async def test_an_interruption_reaches_the_viewer_within_200_ms(server, http, audio_without_prefetch):
    viewer = Viewer()
    try:
        await viewer.connect(http, server)
        ws = await viewer.speak(http, server, tone_with_pauses(0.0, 3.0))
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while not any(jaw > OPEN for _, _, jaw in (await viewer.record(0.1)).video):
                pass
        interrupted = time.monotonic()
        await ws.send_json({"type": "interrupt"})
        received = await viewer.record(0.8)
        await ws.close()
    finally:
        await viewer.pc.close()
    settled = interrupted + 0.2 + 0.1  # 200 ms, plus the way through codec and loopback
    assert all(jaw < 0.1 for t, _, jaw in received.video if t > settled)
    assert all(level < 0.01 for t, level in received.audio if t > settled)
    assert any(t > settled + 0.3 for t, _, _ in received.video)  # and the video goes on


async def test_microphone_input_moves_the_lips_and_is_echoed_only_when_asked(server, http):
    pcm = tone_with_pauses(0.3, 0.6, rate=48_000)
    quiet, echoed = Viewer(Microphone(pcm)), Viewer(Microphone(pcm))
    try:
        await quiet.connect(http, server, input="mic")
        await echoed.connect(http, server, input="mic", echo=True)
        await asyncio.gather(quiet.record(1.5), echoed.record(1.5))
    finally:
        await asyncio.gather(quiet.pc.close(), echoed.pc.close())
    for viewer in (quiet, echoed):
        assert max(jaw for _, _, jaw in viewer.received.video) > OPEN
    assert max(level for _, level in quiet.received.audio) < 0.01  # the viewer's voice is not sent back ...
    assert max(level for _, level in echoed.received.audio) > LOUD  # ... unless asked
