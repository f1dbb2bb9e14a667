"""`python -m bench soak [--quick]`: one live session talking for 10 minutes on end. Do sound and
lips stay together, the frame rate hold, the server's memory stay flat?

The server runs in its own process (bench.live.server_process: default avatar at the default
size, the trained models) and serves one aiortc viewer on loopback, to which espeak-ng phrases stream in real
time over the websocket, looped, the whole time. The viewer notes, for every video frame and
audio frame, when it arrived and its timestamp (pts in its stream's clock). Both streams are
stamped from the session's one media clock, so (arrival - pts) moves the same way for both unless
they drift apart: per WINDOW_S window, the median of video's minus audio's, less the first
window's, is the A/V drift (RTP timestamps start at random origins, so the absolute offset is
`python -m bench latency`'s business). Also per window: fps; at the end: frames the server
dropped, and the server's resident memory every MEMORY_EVERY_S. Target: drift within +-40 ms.
`--quick`: 1 minute.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np
from matplotlib.figure import Figure

from bench.live import BLOCK, loopback_client, server_process, session_figures, speech_script, viewer
from bench.report import write_report
from engine.types import FPS, SAMPLE_RATE
from streaming.config import ServerConfig

MINUTES = 10
WINDOW_S = 10.0
TARGET_MS = 40
MEMORY_EVERY_S = 5.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def soak(server, seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:  # noqa: ANN001
    """video [N, 2] and audio [M, 2] (arrival s, pts s), the server's memory [K, 2] (s, MiB RSS)
    every MEMORY_EVERY_S while the session talks, and the session's figures."""
    pcm, _ = speech_script(8)
    video, audio, memory = [], [], []
    async with aiohttp.ClientSession() as http, viewer(http, server.url) as (pc, session, tracks):
        done = asyncio.Event()

        async def receive(track, out: list) -> None:  # noqa: ANN001
            while not done.is_set():
                frame = await track.recv()
                out.append((time.monotonic(), float(frame.pts * frame.time_base)))

        async def watch_memory() -> None:
            while not done.is_set():
                memory.append((time.monotonic(), rss_mib(server.pid)))
                await asyncio.sleep(MEMORY_EVERY_S)

        receivers = [
            asyncio.create_task(receive(tracks["video"], video)),
            asyncio.create_task(receive(tracks["audio"], audio)),
        ]
        await asyncio.sleep(1.0)
        receivers.append(asyncio.create_task(watch_memory()))
        async with http.ws_connect(f"{server.url}/ws/{session['session_id']}?token={session['token']}") as ws:
            await ws.send_json({"type": "start", "sample_rate": SAMPLE_RATE})
            await ws.receive_json()
            start, sent = time.monotonic(), 0
            while time.monotonic() - start < seconds:  # real time, the script looped
                await asyncio.sleep(max(0.0, start + (sent + BLOCK) / SAMPLE_RATE - time.monotonic()))
                k = sent % len(pcm)
                await ws.send_bytes(pcm[k : k + BLOCK].tobytes())
                sent += BLOCK
            await ws.send_json({"type": "end"})
        figures = await session_figures(http, server.url, session)
        done.set()
        await asyncio.wait(receivers, timeout=2)
    return np.array(video), np.array(audio), np.array(memory), figures


def windows(video: np.ndarray, audio: np.ndarray, memory: np.ndarray) -> list[dict]:
    """Per WINDOW_S window: drift (ms, vs the first window), fps, the server's memory at its end."""
    # aiortc releases a video frame when the next one starts arriving, audio as it comes (the
    # viewer's jitter buffer is off): arrivals are taken one frame interval earlier, as bench latency does.
    v_lag = video[:, 0] - 1 / FPS - video[:, 1]
    a_lag = audio[:, 0] - 0.02 - audio[:, 1]
    t0, rows = video[0, 0], []
    for lo in np.arange(t0, video[-1, 0] - WINDOW_S / 2, WINDOW_S):
        v = (video[:, 0] >= lo) & (video[:, 0] < lo + WINDOW_S)
        a = (audio[:, 0] >= lo) & (audio[:, 0] < lo + WINDOW_S)
        if v.sum() > 1 and a.any():
            rows.append(
                {
                    "minute": round((lo - t0) / 60, 2),
                    "offset_ms": 1000 * (np.median(v_lag[v]) - np.median(a_lag[a])),
                    "fps": (v.sum() - 1) / (video[v, 0][-1] - video[v, 0][0]),
                    "server_rss_mib": round(float(np.interp(lo + WINDOW_S, *memory.T)), 1),
                }
            )
    first = rows[0]["offset_ms"]
    for row in rows:
        row["drift_ms"] = round(row.pop("offset_ms") - first, 2)
        row["fps"] = round(row["fps"], 2)
    return rows


def run(args: argparse.Namespace) -> None:
    minutes = 1 if args.quick else MINUTES
    loopback_client()
    with server_process() as server:
        print(f"  server: {server.speech}; {minutes} min", flush=True)
        video, audio, memory, figures = asyncio.run(soak(server, 60 * minutes))
    rows = windows(video, audio, memory)
    rss_start, rss_end = memory[0, 1], memory[-1, 1]
    drift = np.array([r["drift_ms"] for r in rows])
    fps = np.array([r["fps"] for r in rows])
    notes = (
        f"`python -m bench soak{' --quick' if args.quick else ''}`: one session talking for {minutes} min "
        f"(espeak-ng phrases looped over its websocket in real time), trained models ({server.speech}), "
        f"default avatar {ServerConfig.size}x{ServerConfig.size} on CPU. A/V drift (video's minus audio's "
        f"arrival-minus-timestamp, per {WINDOW_S:.0f} s window, vs the first): max |drift| "
        f"{np.abs(drift).max():.1f} ms (target <= {TARGET_MS}); fps per window min {fps.min():.1f}, "
        f"mean {fps.mean():.1f}; frames dropped by the server {figures['frames_dropped']}; "
        f"server memory {rss_start:.0f} MiB at the start, {rss_end:.0f} MiB at the end."
    )
    print("  " + notes, flush=True)

    def plot(fig: Figure) -> None:
        left, middle, right = fig.subplots(1, 3)
        minute = [r["minute"] for r in rows]
        left.plot(minute, drift, marker=".")
        left.axhspan(-TARGET_MS, TARGET_MS, color="tab:green", alpha=0.15, label=f"+-{TARGET_MS} ms")
        left.set(xlabel="minute", ylabel="A/V drift, ms")
        left.legend()
        middle.plot(minute, fps, marker=".")
        middle.set(xlabel="minute", ylabel="fps per window", ylim=(0, 35))
        right.plot((memory[:, 0] - memory[0, 0]) / 60, memory[:, 1])
        right.set(xlabel="minute", ylabel="server memory (RSS), MiB")

    write_report(
        "soak",
        rows,
        title="Live session soak: A/V drift and frame rate",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )
