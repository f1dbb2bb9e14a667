"""The live benchmarks' harness (latency, sessions, soak): the server in its own process, as
`run_server.py` runs it, aiortc viewers on loopback, and the espeak-ng speech they send.

Receiver corrections: aiortc's jitter buffer holds 4 audio packets before releasing one (disabled
by `loopback_client`; a browser syncs audio to video instead).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import numpy as np

from engine.types import SAMPLE_RATE

# Vowel first: the sound and the jaw start together, so the offset measures sync, not articulation.
PHRASES = ("Ah, I see.", "Oh, always.", "I am awake.", "Open all of it.", "Every answer.")
SILENCE_S = 1.2
BLOCK = SAMPLE_RATE // 50  # 20 ms messages, as a live client sends them
SOUND = 0.02  # RMS that counts as speech, sent or received
SERVER_START_S = 180  # loading the avatar and models in the server process


# ---- the server, in its own process -----------------------------------------------------------


SPEECH_MODES = {
    "auto": "the trained models, else the probe",
    "none": "no speech: the avatar idles",
    "gan-standin": (
        "the built-in features and a FACIAL-GAN of the real size with random weights: real cost, "
        "meaningless lips"
    ),
}


def _serve(options: dict, speech: str, connection) -> None:
    """The server process: the app on a free port, reporting (port, speech description)."""
    import torch
    import uvloop
    from aiohttp import web

    from engine.runtime import tune_allocator
    from streaming.access import AVATARS
    from streaming.app import ServerConfig, create_app
    from streaming.avatars import engine_avatar_factory

    tune_allocator()  # as run_server.py does
    torch.set_num_threads(1)
    config = ServerConfig(port=0, **options)
    engine = engine_avatar_factory(config.engine)

    def factory(name: str):
        avatar = engine(name)
        model = speech_model(avatar, speech, config)
        return dataclasses.replace(
            avatar, speech=model, speech_error="" if model else "no speech in this run"
        )

    async def main() -> None:
        app = create_app(config, factory)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, config.host, 0).start()
        avatar = await app[AVATARS].get(config.avatar)
        connection.send((runner.addresses[0][1], avatar.speech.description if avatar.speech else "none"))
        await asyncio.Event().wait()

    uvloop.run(main())


def speech_model(avatar, mode: str, config):
    """The speech model a benchmark run serves (see SPEECH_MODES)."""
    from streaming import probe

    if mode == "none":
        return None
    if mode == "auto":  # measure the rest of the path with the probe until the models are trained
        return avatar.speech or probe.loudness_speech(avatar.rest)
    import torch

    from engine.audio.features import extractor
    from engine.pipeline.animator import Gan, StreamConfig
    from engine.types import NUM_PARAMS
    from models.facial_gan import FacialGAN, FacialGANConfig
    from streaming.speech import SpeechModel

    features = extractor("builtin")  # the default avatar's kind
    torch.manual_seed(0)
    gan = Gan(
        FacialGAN(FacialGANConfig(feature_dim=features.dim, num_params=NUM_PARAMS)).eval(),
        features.kind,
        np.zeros(features.dim, np.float32),
    )
    model = SpeechModel.facial(features, gan, avatar.rest, StreamConfig(config.lookahead, config.stride))
    return dataclasses.replace(model, description="stand-in: " + model.description + ", random weights")


@dataclasses.dataclass
class Server:
    url: str
    speech: str  # what speaks: the trained models, or the probe
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_process(speech: str = "auto", **options: object) -> Iterator[Server]:
    """A server in its own process, ServerConfig `options`, speech from SPEECH_MODES."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_serve, args=(options, speech, send), daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not receive.poll(0.5):
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server process did not start (exit code {process.exitcode})")
        port, speech = receive.recv()
        yield Server(f"http://127.0.0.1:{port}", speech, process.pid)
    finally:
        process.terminate()
        process.join(10)


# ---- the client -------------------------------------------------------------------------------


def loopback_client() -> None:
    """This process's aiortc: loopback ICE only, and audio released as it arrives."""
    import aioice.ice
    from aiortc import jitterbuffer, rtcrtpreceiver

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    rtcrtpreceiver.JitterBuffer = lambda capacity, prefetch=0, is_video=False: jitterbuffer.JitterBuffer(
        capacity, 0, is_video
    )


@contextlib.asynccontextmanager
async def viewer(http: aiohttp.ClientSession, url: str) -> AsyncIterator[tuple[object, dict, dict]]:
    """A connected aiortc viewer: (peer connection, session from the answer, tracks by kind)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tracks: dict[str, asyncio.Future] = {
        kind: asyncio.get_running_loop().create_future() for kind in ("video", "audio")
    }
    pc.on("track", lambda track: tracks[track.kind].set_result(track))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with http.post(
            f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}
        ) as response:
            session = await response.json()
            if response.status != 200:
                raise RuntimeError(f"offer refused: {session.get('error')}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=session["sdp"], type="answer"))
        yield pc, session, {kind: await future for kind, future in tracks.items()}
    finally:
        await pc.close()


async def session_figures(http: aiohttp.ClientSession, url: str, session: dict) -> dict:
    """The server's figures of a session (GET /sessions/{id} with its token)."""
    async with http.get(
        f"{url}/sessions/{session['session_id']}", headers={"Authorization": f"Bearer {session['token']}"}
    ) as response:
        return await response.json()


def speech_script(utterances: int) -> tuple[np.ndarray, list[int]]:
    """int16 PCM at SAMPLE_RATE: phrases with silence after each, and each phrase's onset: the
    first sample of its first 20 ms block with sound."""
    from engine.audio.tts import text_to_speech
    from streaming.probe import rms

    parts, onsets, length = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)], [], int(0.5 * SAMPLE_RATE)
    for k in range(utterances):
        speech = text_to_speech(PHRASES[k % len(PHRASES)])
        levels = [rms(speech[i : i + BLOCK]) for i in range(0, len(speech), BLOCK)]
        onsets.append(length + BLOCK * next(i for i, level in enumerate(levels) if level > SOUND))
        parts += [speech, np.zeros(int(SILENCE_S * SAMPLE_RATE), np.float32)]
        length += len(speech) + int(SILENCE_S * SAMPLE_RATE)
    return (np.concatenate(parts) * 32767).astype("<i2"), onsets
