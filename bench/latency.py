"""Live latency benchmark: speech in over the websocket, the avatar's video and voice out over
WebRTC, measured end to end on loopback by a client that decodes both.

The server runs in its own process (bench/live.py: as `run_server.py` does, default avatar,
its default size, CPU), with the avatar's trained speech models. While they are not trained, it uses
streaming.probe's speech model instead (loudness opens the jaw, no look-ahead): everything else
(clock, queues, rendering, codecs, transport) is then measured for real, and the report says so
and gives the pipeline latency the trained models would add.

The client sends UTTERANCES phrases of espeak-ng speech in real time (20 ms messages), each
followed by silence. Per phrase:
- send-to-mouth: from sending the message with the speech onset to receiving the first frame
  whose mouth is open (engine.render.mouth_meter: MediaPipe on the received frames, openness past
  OPEN: 30% of the way to a half-open jaw);
- A/V offset: how much later the mouth moves than the sound it goes with, against the engine's
  own alignment. Before the run, the client makes the reference: the same models turn the same
  audio into face parameters offline, drawn and measured like the received frames, frame k at
  the audio's sample frame_pts(k) (in sync by construction, whatever the model's articulation).
  Per phrase, cross-correlation (5 ms steps) finds the audio's delay (received loudness against
  the sent audio's) and the video's (received openness against the reference's); the offset is
  their difference (positive: the video is late). A mouth that opens before or after its sound
  because that is how the model articulates is not an offset; any lag the live path adds is.
Plus received fps, frame-time jitter (std of frame intervals), frames lost in transport, frames
the server dropped, and the server process's CPU per session (100% = one core).

Receiver corrections: aiortc's jitter buffer holds 4 audio packets before releasing one (disabled
here; a browser syncs audio to video instead), and releases a frame only when the next frame's
first packet arrives: arrivals are taken one frame interval (video 1/FPS, audio 20 ms) earlier.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
from collections.abc import Iterator

import aiohttp
import numpy as np
from matplotlib.figure import Figure

from bench.live import (
    BLOCK,
    Server,
    loopback_client,
    server_process,
    session_figures,
    speech_model,
    speech_script,
    viewer,
)
from bench.report import write_report
from engine.runtime import usable_cores
from engine.types import FPS, SAMPLE_RATE, FaceParams, frame_pts
from streaming.config import ServerConfig

UTTERANCES = 10
MAX_DELAY_S = 0.6  # audio delays searched (send to receive)
MAX_LAG_S = 0.2  # A/V offsets searched around the audio's delay
LAG_STEP_S = 0.005
LEVELS_PER_S = 200  # loudness every 5 ms
LEVEL_HOP = SAMPLE_RATE // LEVELS_PER_S
OPEN = 0.3  # mouth openness (engine.render.mouth_meter: 0 rest, 1 jaw half open) that counts as open


def openness(jpegs: list[bytes], size: int, chunk: int = 200) -> np.ndarray:
    """The default avatar's mouth openness [N] in received frames (JPEG-compressed while receiving)."""
    import io

    from PIL import Image

    decode = lambda jpeg: np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))  # noqa: E731
    return measured_openness(
        [np.stack([decode(j) for j in jpegs[i : i + chunk]]) for i in range(0, len(jpegs), chunk)], size
    )


def measured_openness(batches: Iterator[np.ndarray], size: int) -> np.ndarray:
    """Batches of frames [n, S, S, 3] uint8 of the default avatar -> mouth openness [N]."""
    from engine.avatar.bundle import load
    from engine.render.mouth_meter import MouthMeter

    meter = MouthMeter(load("default"), size)
    return np.concatenate([meter(batch) for batch in batches])


def reference_openness(pcm: np.ndarray, size: int, batch: int = 200) -> np.ndarray:
    """[N] the mouth openness of 30-fps frames 0 .. N-1 of `pcm` (int16 at SAMPLE_RATE) as the
    server's avatar says it: its speech models offline (one utterance, as streamed), drawn by
    its renderer, measured as the received frames are. Sound and face in sync by construction."""
    from engine.pipeline.idle import IdleMotion
    from streaming.app import ServerConfig
    from streaming.avatars import engine_avatar_factory

    config = ServerConfig()
    avatar = engine_avatar_factory(config.engine)("default")
    speech = speech_model(avatar, "auto", config)
    animator = speech.new_animator(0, IdleMotion(avatar.rest, avatar.motion, seed=0))
    params = animator.push(speech.extractor.offline(pcm.astype(np.float32) / 32768))
    rows = np.concatenate([params.array, animator.flush().array])
    past = avatar.renderer.past

    def frames(first: int) -> np.ndarray:
        indices = range(first, min(first + batch, len(rows)))
        return np.stack(
            [
                avatar.renderer.render(i, FaceParams(rows[np.clip(np.arange(i - past, i + 1), 0, None)]))
                for i in indices
            ]
        )

    return measured_openness((frames(first) for first in range(0, len(rows), batch)), size)


def jpeg(frame) -> bytes:  # noqa: ANN001 (av.VideoFrame)
    """A received frame, kept small until it is measured."""
    import io

    out = io.BytesIO()
    frame.to_image().save(out, format="JPEG", quality=95)
    return out.getvalue()


async def measure(server: Server, utterances: int, size: int) -> dict:
    pcm, onsets = speech_script(utterances)
    reference = reference_openness(pcm, size)
    video, frames, audio, sent = (
        [],
        [],
        [],
        [],
    )  # (arrival, pts) / JPEG / (arrival, rate, mono PCM) / send time per block
    async with aiohttp.ClientSession() as http, viewer(http, server.url) as (pc, session, tracks):
        done = asyncio.Event()

        async def receive(track, note) -> None:
            while not done.is_set():
                note(await track.recv())

        def note_video(frame) -> None:
            video.append((time.monotonic() - 1 / FPS, frame.pts))
            frames.append(jpeg(frame))

        def note_audio(frame) -> None:
            samples = (
                frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(1) / 32768.0
            )  # packed s16
            audio.append((time.monotonic() - samples.size / frame.sample_rate, frame.sample_rate, samples))

        receivers = [
            asyncio.create_task(receive(tracks["video"], note_video)),
            asyncio.create_task(receive(tracks["audio"], note_audio)),
        ]
        await asyncio.sleep(1.0)  # connected and settled
        cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
        async with http.ws_connect(f"{server.url}/ws/{session['session_id']}?token={session['token']}") as ws:
            await ws.send_json({"type": "start", "sample_rate": SAMPLE_RATE})
            await ws.receive_json()  # ready
            start = time.monotonic()  # sample s of the script is captured at start + s / SAMPLE_RATE
            for k in range(0, len(pcm), BLOCK):  # real time: block k leaves once it has been "captured"
                await asyncio.sleep(max(0.0, start + (k + BLOCK) / SAMPLE_RATE - time.monotonic()))
                await ws.send_bytes(pcm[k : k + BLOCK].tobytes())
                sent.append(time.monotonic())
            await ws.send_json({"type": "end"})
        await asyncio.sleep(1.0)
        cpu = (server.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
        figures = await session_figures(http, server.url, session)
        done.set()
        await asyncio.wait(receivers, timeout=2)
    video = np.concatenate(
        [np.array(video), openness(frames, size)[:, None]], 1
    )  # measured after the run, off the clock
    video = video[np.isfinite(video[:, 2])]
    # The sent audio and the reference face on the capture clock; the received audio as loudness.
    levels = loudness(pcm / 32768.0, LEVEL_HOP)
    sent_audio = Trace(start + np.arange(len(levels)) * LEVEL_HOP / SAMPLE_RATE, levels)
    received_audio = received_loudness(audio)
    found = np.isfinite(reference)  # frames where the meter found the face (all, in practice)
    sent_face = Trace(start + frame_pts(np.flatnonzero(found)) / SAMPLE_RATE, reference[found])
    onsets_sent = [sent[onset // BLOCK] for onset in onsets]
    return analyse(video, sent_audio, received_audio, sent_face, onsets_sent, OPEN, cpu, figures)


@dataclasses.dataclass
class Trace:
    """A signal sampled at times t (seconds on the client's clock)."""

    t: np.ndarray
    x: np.ndarray


def loudness(pcm: np.ndarray, hop: int) -> np.ndarray:
    """RMS of each `hop` samples of mono PCM."""
    n = len(pcm) // hop
    return np.sqrt(np.mean(np.square(pcm[: n * hop].reshape(n, hop), dtype=np.float64), 1))


def received_loudness(packets: list[tuple[float, int, np.ndarray]]) -> Trace:
    """Received audio packets (arrival of the first sample, sample rate, mono PCM) -> loudness
    every 5 ms."""
    t, x = [], []
    for arrival, rate, samples in packets:
        levels = loudness(samples, rate // LEVELS_PER_S)
        t.append(arrival + np.arange(len(levels)) / LEVELS_PER_S)
        x.append(levels)
    return Trace(np.concatenate(t), np.concatenate(x))


def best_lag(reference: Trace, received: Trace, start: float, end: float, lags: np.ndarray) -> float:
    """The lag (s, of `lags`) at which received(t + lag) best matches reference(t) over t in
    [start, end): the peak of their cross-correlation."""
    grid = np.arange(start, end, LAG_STEP_S)
    ref = np.interp(grid, reference.t, reference.x)
    ref -= ref.mean()
    return round(
        float(
            lags[int(np.argmax([np.dot(ref, np.interp(grid + lag, received.t, received.x)) for lag in lags]))]
        ),
        6,
    )


def analyse(
    video: np.ndarray,
    sent_audio: Trace,
    received_audio: Trace,
    sent_face: Trace,
    onsets_sent: list[float],
    open_threshold: float,
    cpu: float,
    figures: dict,
) -> dict:
    arrivals, pts, mouth = video.T
    received_face = Trace(arrivals, mouth)
    delays = np.arange(0, MAX_DELAY_S, LAG_STEP_S)
    offsets_searched = np.arange(-MAX_LAG_S, MAX_LAG_S + LAG_STEP_S / 2, LAG_STEP_S)
    to_mouth, offsets, audio_delays = [], [], []
    for k, sent in enumerate(onsets_sent):
        until = onsets_sent[k + 1] if k + 1 < len(onsets_sent) else arrivals[-1] - MAX_DELAY_S
        opened = arrivals[(arrivals > sent - 0.1) & (arrivals < until) & (mouth > open_threshold)]
        if len(opened):
            to_mouth.append(opened[0] - sent)
            audio_delay = best_lag(sent_audio, received_audio, sent - 0.1, until, delays)
            audio_delays.append(audio_delay)
            offsets.append(
                best_lag(sent_face, received_face, sent - 0.1, until, audio_delay + offsets_searched)
                - audio_delay
            )
    if not to_mouth:
        raise RuntimeError("no utterance was seen with an open mouth and heard: check the mouth threshold")
    intervals = np.diff(arrivals)
    steps = np.round(np.diff(pts) / (90_000 / FPS))
    ms = lambda seconds, q: float(1000 * np.percentile(seconds, q))  # noqa: E731
    return {
        "utterances": f"{len(to_mouth)}/{len(onsets_sent)}",
        "send_to_mouth_p50_ms": ms(to_mouth, 50),
        "send_to_mouth_p95_ms": ms(to_mouth, 95),
        "send_to_hear_p50_ms": ms(audio_delays, 50),
        "av_offset_p50_ms": ms(offsets, 50),
        "av_offset_abs_p95_ms": ms(np.abs(offsets), 95),
        "pipeline_latency_ms": float(figures["latency_ms"]),  # at the end: late input widens it
        "speech_inputs_late": int(figures["speech_inputs_late"]),
        "fps": float((len(arrivals) - 1) / (arrivals[-1] - arrivals[0])),
        "frame_jitter_ms": float(1000 * intervals.std()),
        "frames_lost": int((steps - 1).clip(0).sum()),
        "frames_dropped_server": int(figures["frames_dropped"]),
        "speech_frames_late": int(figures["speech_frames_late"]),
        "cpu_per_session_pct": 100 * cpu,
        "_to_mouth": to_mouth,
        "_offsets": offsets,
    }


def trained_latency_note() -> str:
    """What the trained models' look-ahead would add to the pipeline latency, at the server's defaults."""
    from engine.audio.features import FeatureError, extractor
    from engine.pipeline.animator import StreamConfig
    from streaming.app import ServerConfig

    config = ServerConfig()
    try:
        features = extractor("builtin")
    except FeatureError as e:
        return f"; the built-in features cannot be loaded either ({e})"
    gan = StreamConfig(config.lookahead, config.stride).latency_frames
    extra_ms = 1000 * (features.lookahead_frames + gan) / FPS
    return (
        f". With the built-in features ({features.lookahead_frames} frames of look-ahead) and FACIAL-GAN at "
        "the server's "
        f"defaults (look-ahead {config.lookahead}, stride {config.stride}: {gan} frames), the pipeline "
        f"latency is {extra_ms:.0f} ms more"
    )


def run(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    loopback_client()
    size = ServerConfig.size
    with server_process(size=size) as server:
        print(f"  server: {server.speech}", flush=True)
        result = asyncio.run(measure(server, 3 if args.quick else UTTERANCES, size))
    to_mouth, offsets = result.pop("_to_mouth"), result.pop("_offsets")
    probe = server.speech.startswith("probe")  # streaming.probe's description
    row = {"case": "probe speech model" if probe else "trained speech models", **result}
    print(
        "  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
        flush=True,
    )
    print(
        f"  per utterance, ms: send to mouth {np.round(1000 * np.array(to_mouth)).astype(int).tolist()}, A/V "
        f"offset {np.round(1000 * np.array(offsets)).astype(int).tolist()}",
        flush=True,
    )
    notes = (
        f"Default avatar at {size}x{size} (the server's auto renderer: on fewer than 4 CPU cores the direct "
        "compositor), CPU, server in its own process (one torch thread per call); "
        f"speech: {server.speech}. aiortc client on loopback, espeak-ng phrases sent in real time over the "
        "websocket. "
        "A/V offset: the video's delay (received mouth openness against the same models' offline reference) "
        "minus the audio's (received against sent loudness), per phrase. "
        f"Targets: p95 send-to-mouth <= 250 ms, |A/V offset| <= 40 ms. Command: python -m bench latency"
        f". Machine load when it started: {load:.1f} runnable processes on {usable_cores()} cores (other "
        "work shares it)"
    )
    if probe:
        notes += (
            ". The trained models are not there yet: this measures the probe (loudness opens the jaw, no "
            "look-ahead)"
            + trained_latency_note()
        )

    def plot(fig: Figure) -> None:
        left, right = fig.subplots(1, 2)
        x = np.arange(len(to_mouth))
        left.bar(x - 0.2, 1000 * np.array(to_mouth), 0.4, label="send to mouth")
        left.bar(x + 0.2, 1000 * np.array(offsets), 0.4, label="A/V offset (video - audio)")
        left.axhline(250, color="tab:red", linestyle="--", linewidth=1, label="250 ms target")
        left.set_ylim(min(0, 1100 * min(offsets)), max(300, 1100 * max(to_mouth)))
        left.set_xlabel("utterance")
        left.set_ylabel("ms")
        left.legend(fontsize=8)
        right.hist(1000 * np.array(offsets), bins=10)
        right.axvspan(-40, 40, color="tab:green", alpha=0.15, label="+-40 ms")
        right.set_xlabel("A/V offset, ms")
        right.set_ylabel("utterances")
        right.legend(fontsize=8)

    write_report(
        "latency",
        [row],
        title="Live speech-to-mouth latency on loopback",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )
