"""The websocket client snippet in README.md, run as a user would (`python tts_client.py URL
speech.wav`) against the real server: it gets the ready message, and the session speaks its WAV."""
from __future__ import annotations

import asyncio
import os
import re
import sys
import wave
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from live_server import live_server
from viewers import open_session

from streaming.app import ServerConfig

README = Path(__file__).resolve().parents[1] / "README.md"
CLIENT_TIMEOUT_S = 30

pytestmark = pytest.mark.usefixtures("loopback_ice")


def readme_client() -> str:
    """The Python block that follows the README's `tts_client.py` command line."""
    text = README.read_text()
    found = re.search(r"python tts_client\.py .*?```python\n(.*?)```", text, re.S)
    assert found, "README.md no longer shows the websocket client snippet after its command line"
    return found.group(1)


def speech_wav(path: Path) -> Path:
    """Two seconds of a 220 Hz tone at 48 kHz (the client sends any rate the WAV has)."""
    rate = 48_000
    t = np.arange(2 * rate) / rate
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes())
    return path


async def test_the_readme_websocket_client_makes_the_avatar_speak(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    client = tmp_path / "tts_client.py"
    client.write_text(readme_client())
    async with live_server(ServerConfig(port=0, size=64)) as url:
        session = await open_session(http, url)
        ws_url = f"{url.replace('http://', 'ws://')}/ws/{session['session_id']}?token={session['token']}"
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(client), ws_url, str(speech_wav(tmp_path / "speech.wav")),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(README.parent)},  # the snippet imports streaming.client
        )
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert "'type': 'ready'" in out.decode() and "'sample_rate': 48000" in out.decode()
        async with http.get(
            f"{url}/sessions/{session['session_id']}", headers={"Authorization": f"Bearer {session['token']}"}
        ) as response:
            status = await response.json()
        # faster than real time, so its speech is still queued or playing when the client is done
        assert status["speaking"] and 0 < status["audio_queue_ms"] <= 2000 + status["latency_ms"]
