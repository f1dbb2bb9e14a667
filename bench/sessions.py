"""Sessions benchmark: the largest number of concurrent sessions that each hold >= 29 fps.

The server runs in its own process (bench.live.server_process: default avatar, default size, one
torch thread per call) on CPU, or on CUDA when there is one. For N = 1, 2, ... sessions: N aiortc
viewers connect and every session speaks all the time (espeak-ng phrases streamed in real time
over its websocket, looped); after a warm-up, each viewer counts the frames it receives over
WINDOW_S. The viewers count encoded frames without decoding them: their decoding is the viewers'
load, not the server's (they share the machine). A session holds when it receives >= 29 fps.
The series stops at the first N where one does not (or at MAX_SESSIONS).

Cases, by what speaks: the avatar's trained models when they exist; until then the probe
(streaming.probe: the cost of everything but the models) and a stand-in of the real models'
cost (the built-in features and a full-size FACIAL-GAN with random weights); and idle sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import aiohttp
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.live import BLOCK, PHRASES, Server, loopback_client, server_process, viewer
from bench.report import write_report
from engine.runtime import usable_cores
from engine.types import SAMPLE_RATE
from streaming.config import ServerConfig

TARGET_FPS = 29
MAX_SESSIONS = 8
WARMUP_S = 2.0


def count_frames_without_decoding() -> None:
    """This process's aiortc hands encoded video frames to the tracks undecoded, and drops audio."""
    from aiortc import rtcrtpreceiver

    class Undecoded:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def decode(self, encoded_frame) -> list:
            return [encoded_frame] if self.kind == "video" else []

    rtcrtpreceiver.get_decoder = lambda codec: Undecoded(codec.mimeType.split("/")[0])


def looped_speech() -> np.ndarray:
    from engine.audio.tts import text_to_speech

    pause = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    return (
        np.concatenate([part for phrase in PHRASES for part in (text_to_speech(phrase), pause)]) * 32767
    ).astype("<i2")


async def session_fps(server: Server, sessions: int, window_s: float, speech: np.ndarray | None) -> dict:
    """Received fps of each of `sessions` concurrent sessions over window_s, and the server's load."""
    counts = [0] * sessions
    counting = asyncio.Event()
    stop = asyncio.Event()

    async def one(index: int, http: aiohttp.ClientSession) -> None:
        async with viewer(http, server.url) as (pc, session, tracks):
            feeding = asyncio.create_task(feed(http, session)) if speech is not None else None
            try:
                while not stop.is_set():
                    await tracks["video"].recv()
                    if counting.is_set():
                        counts[index] += 1
            finally:
                if feeding:
                    feeding.cancel()

    async def feed(http: aiohttp.ClientSession, session: dict) -> None:
        async with http.ws_connect(f"{server.url}/ws/{session['session_id']}?token={session['token']}") as ws:
            await ws.send_json({"type": "start", "sample_rate": SAMPLE_RATE})
            start, sent = time.monotonic(), 0
            while True:
                await asyncio.sleep(max(0.0, start + (sent + BLOCK) / SAMPLE_RATE - time.monotonic()))
                block = np.take(speech, np.arange(sent, sent + BLOCK), mode="wrap")
                await ws.send_bytes(block.tobytes())
                sent += BLOCK

    async with aiohttp.ClientSession() as http:
        viewers = [asyncio.create_task(one(i, http)) for i in range(sessions)]
        await asyncio.sleep(WARMUP_S + 0.5 * sessions)  # connected, speaking
        metrics_before = await counters(http, server)
        cpu_before, start = server.cpu_seconds(), time.monotonic()
        counting.set()
        await asyncio.sleep(window_s)
        counting.clear()
        elapsed = time.monotonic() - start
        cpu = (server.cpu_seconds() - cpu_before) / elapsed
        counted = {
            name: value - metrics_before[name] for name, value in (await counters(http, server)).items()
        }
        stop.set()
        for task in viewers:
            task.cancel()
        await asyncio.gather(*viewers, return_exceptions=True)
    fps = np.array(counts) / elapsed
    return {
        "sessions": sessions,
        "min_fps": float(fps.min()),
        "mean_fps": float(fps.mean()),
        "server_cpu_cores": cpu,
        **counted,
    }


COUNTERS = {  # the server's metric -> its column here
    "avatar_frames_dropped_total": "frames_dropped",
    "avatar_speech_frames_late_total": "speech_frames_late",
    "avatar_speech_inputs_late_total": "speech_inputs_late",
}


async def counters(http: aiohttp.ClientSession, server: Server) -> dict[str, int]:
    """The server's COUNTERS now: frames it dropped, speech made too late to show, late inputs."""
    async with http.get(f"{server.url}/metrics") as response:
        values = dict(
            line.split()[:2]
            for line in (await response.text()).splitlines()
            if line.split()[:1] and line.split()[0] in COUNTERS
        )
    if len(values) < len(COUNTERS):
        raise RuntimeError(f"the server's metrics lack {sorted(set(COUNTERS) - set(values))}")
    return {column: int(float(values[metric])) for metric, column in COUNTERS.items()}


def fps_row(labels: dict, server: object, sessions: int, window_s: float, speech: np.ndarray | None) -> dict:
    """`labels`, then session_fps's figures for `sessions` concurrent sessions; printed."""
    row = {**labels, **asyncio.run(session_fps(server, sessions, window_s, speech))}
    print(
        "  " + "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
        flush=True,
    )
    return row


def capacity_rows(labels: dict, server: object, window_s: float, speech: np.ndarray | None) -> list[dict]:
    """Sessions added one by one until one receives fewer than TARGET_FPS (or MAX_SESSIONS)."""
    rows = []
    for n in range(1, MAX_SESSIONS + 1):
        rows.append(fps_row(labels, server, n, window_s, speech))
        if rows[-1]["min_fps"] < TARGET_FPS:
            break
    return rows


def held(rows: list[dict]) -> int:
    """The most concurrent sessions that each received TARGET_FPS in `rows`."""
    return max((r["sessions"] for r in rows if r["min_fps"] >= TARGET_FPS), default=0)


def plot_capacity(ax: Axes, series: dict[str, list[dict]], xlabel: str) -> None:
    """The lowest received fps against the number of sessions, a line per series of rows, and the target."""
    for label, rows in series.items():
        ax.plot([r["sessions"] for r in rows], [r["min_fps"] for r in rows], marker="o", label=label)
    ax.axhline(TARGET_FPS, color="tab:red", linestyle="--", linewidth=1, label=f"{TARGET_FPS} fps")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("lowest received fps of a session")


def run(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    loopback_client()
    count_frames_without_decoding()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    window_s = 3.0 if args.quick else 8.0
    speech = looped_speech()
    rows, held_by = [], {}
    for mode in ("auto", "gan-standin", "none"):
        # every viewer comes from this machine: one client address may take every session
        limits = {"max_sessions": MAX_SESSIONS, "max_sessions_per_client": MAX_SESSIONS}
        with server_process(speech=mode, device=device, **limits) as server:
            if mode == "gan-standin" and not rows[0]["speech"].startswith("probe"):
                continue  # the trained models are measured: no stand-in needed
            print(f"  server speech: {server.speech}", flush=True)
            labels = {"speech": server.speech, "device": device}
            found = capacity_rows(labels, server, window_s, speech if mode != "none" else None)
            rows += found
            held_by[server.speech] = held(found)
    summary = "; ".join(f"{speech}: {n}" for speech, n in held_by.items())
    notes = (
        f"Largest number of concurrent sessions each receiving >= {TARGET_FPS} fps ({summary}). "
        f"Default avatar, direct compositor at {ServerConfig.size}x{ServerConfig.size}, {device}; "
        "every session speaks all the time over its websocket except the idle case. "
        "Viewers on the same machine count encoded frames (no decoding). Target: >= 2 on a 2-core CPU. "
        f"Command: python -m bench sessions. Machine load when it started: {load:.1f} runnable "
        f"processes on {usable_cores()} cores (other work shares it)"
    )

    def plot(fig: Figure) -> None:
        ax = fig.add_subplot()
        series = {speech[:60]: [r for r in rows if r["speech"] == speech] for speech in held_by}
        plot_capacity(ax, series, "concurrent sessions")
        ax.legend(fontsize=7)

    write_report(
        "sessions",
        rows,
        title="Concurrent live sessions at 29 fps",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )
