"""`python -m bench cluster [--quick]`: cluster mode (streaming/cluster) against the single-process
server, on this machine's cores (a local Ray instance).

Parts (rows, by "part"):
- hop: one frame rendered in process vs through the batcher deployment (the Serve hop: the call,
  the window and the frame through Ray), one caller at a time, p50/p95 ms per frame;
- delivery: the same speaking sessions served by the single process and by the cluster (one
  replica holding them all, and two sharing them): received fps, frames the servers dropped;
- capacity: sessions per replica at >= 29 fps (one replica, speaking sessions added one by one),
  and the single process measured the same way, now, for comparison (the single process's
  parts run before Ray starts: Ray's own processes share the cores);
- batching: the single-process server with ServerConfig.batch_max 1 (off) and 8 (on), the same
  sessions; it compares the in-process renderer service's batching, once the server has one.
Viewers run in this process and count encoded frames (no decoding), as `bench sessions` does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.live import loopback_client, server_process
from bench.report import write_report
from bench.sessions import (
    MAX_SESSIONS,
    TARGET_FPS,
    capacity_rows,
    count_frames_without_decoding,
    fps_row,
    held,
    looped_speech,
    plot_capacity,
)
from engine.runtime import usable_cores
from streaming.config import ServerConfig

SIZES = (128, 512)  # frame sizes for the hop
LIVE_SIZE = 256  # the live parts' frames: speaking sessions at 512 do not hold 30 fps on 2 CPU cores
DELIVERY_SESSIONS = 2  # speaking sessions compared in the delivery and batching parts
# every viewer is in this process: one client address may take every session
LIMITS = {"size": LIVE_SIZE, "max_sessions": MAX_SESSIONS, "max_sessions_per_client": MAX_SESSIONS}


@dataclasses.dataclass
class Cluster:
    """The cluster's front, and the CPU its replicas' processes use (the single process's counterpart)."""

    url: str

    def cpu_seconds(self) -> float:
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                text = stat.read_text()
                if "ServeReplica:avatar" in text.split(")")[0] or _replica(stat.parent):
                    fields = text.rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def _replica(proc: Path) -> bool:
    """A Serve replica of the avatar application (Ray names its processes by their actor)."""
    with contextlib.suppress(OSError):
        return (proc / "cmdline").read_bytes().startswith(b"ray::ServeReplica:avatar")
    return False


@contextlib.contextmanager
def cluster(replicas: int, sessions_per_replica: int) -> Iterator[Cluster]:
    """The cluster mode's application on the running Ray instance; deleted afterwards."""
    from ray import serve

    from streaming.cluster.config import ClusterConfig
    from streaming.cluster.launch import APP_NAME, deploy

    config = ServerConfig(port=0, **LIMITS)
    url = deploy(config, ClusterConfig(replicas=replicas, sessions_per_replica=sessions_per_replica))
    try:
        yield Cluster(url)
    finally:
        serve.delete(APP_NAME)


def frame_ms(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """p50 and p95 ms of `call`, after calls that warm it up."""
    for _ in range(10):
        call()
    ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        ms.append(1000 * (time.perf_counter() - start))
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def hop_rows(repeats: int) -> list[dict]:
    """p50/p95 ms of a frame rendered in process and through the batcher deployment (one caller,
    no batch wait), and their difference: the Serve hop."""
    from ray import serve

    from engine.types import FaceParams
    from streaming.avatars import EngineOptions, engine_avatar_factory
    from streaming.cluster.batcher import BATCHER

    rows = []
    for size in SIZES:
        options = EngineOptions(size=size, renderer="composite")
        avatar = engine_avatar_factory(options)("default")
        window = FaceParams(np.repeat(avatar.rest.array, avatar.renderer.past + 1, axis=0))
        batcher = serve.run(
            BATCHER.options(max_ongoing_requests=8).bind(options, None, 8, 0.0), name="hop", route_prefix=None
        )
        local = frame_ms(functools.partial(avatar.renderer.render_batch, window), repeats)
        remote = frame_ms(lambda: batcher.render.remote("default", window.array).result(), repeats)  # noqa: B023
        serve.delete("hop")
        for case, (p50, p95) in {
            "in process": local,
            "batcher deployment": remote,
            "overhead of the hop": (remote[0] - local[0], remote[1] - local[1]),
        }.items():
            rows.append({"part": "hop", "case": case, "size": size, "p50_ms": p50, "p95_ms": p95})
            print("  " + "  ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def run(args: argparse.Namespace) -> None:
    import ray
    import torch

    torch.set_num_threads(1)  # as the server's sessions render, and as Ray's workers run
    load = os.getloadavg()[0]
    loopback_client()
    count_frames_without_decoding()
    window_s = 3.0 if args.quick else 8.0
    speech = looped_speech()
    rows: list[dict] = []

    def delivery(part: str, setup: str, server: object) -> dict:
        return fps_row({"part": part, "setup": setup}, server, DELIVERY_SESSIONS, window_s, speech)

    def capacity(setup: str, server: object) -> list[dict]:
        return capacity_rows({"part": "capacity", "setup": setup}, server, window_s, speech)

    # The single process first, before Ray starts: Ray's own processes on the same 2 cores cost
    # it a third of its frames (20.9 against 27.9-30.0 fps for two speaking sessions at 256x256).
    with server_process(speech="auto", **LIMITS) as server:
        rows.append(delivery("delivery", "single process", server))
        if not args.quick:
            rows += capacity("single process", server)
    if not args.quick:
        for batch_max in (1, 8):
            with server_process(speech="auto", batch_max=batch_max, **LIMITS) as server:
                setup = f"single process, batch_max {batch_max}"
                rows.append(delivery("batching", setup, server))
    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    try:
        from ray import serve

        serve.start(proxy_location="Disabled")
        rows += hop_rows(10 if args.quick else 100)
        for replicas in (1, 2):
            with cluster(replicas, MAX_SESSIONS) as front:
                setup = f"cluster, {replicas} replica(s)"
                rows.append(delivery("delivery", setup, front))
                if replicas == 1 and not args.quick:
                    rows += capacity("cluster, 1 replica", front)
    finally:
        ray.shutdown()
    report(rows, args, load)


def report(rows: list[dict], args: argparse.Namespace, load: float) -> None:
    hop = {(r["case"], r["size"]): r for r in rows if r["part"] == "hop"}
    extra = [hop[("overhead of the hop", s)] for s in SIZES]
    overhead = "; ".join(f"{r['size']}x{r['size']}: {r['p50_ms']:.2f}/{r['p95_ms']:.2f}" for r in extra)
    capacity = (
        "not measured (--quick)"
        if args.quick
        else ", ".join(
            f"{name} {held([r for r in rows if r.get('setup') == setup])}"
            for name, setup in (("single process", "single process"), ("one replica", "cluster, 1 replica"))
        )
    )
    notes = (
        f"Serve hop per frame, p50/p95 ms (the direct compositor; one caller, no batch wait; a batch "
        f"waits up to ServerConfig.batch_wait_ms more for its frames): {overhead}. Speaking sessions at "
        f">= {TARGET_FPS} fps: {capacity}. Live parts: the default avatar at {LIVE_SIZE}x"
        f"{LIVE_SIZE} with the server's default renderer on this machine, every session speaking "
        "over its websocket (through the front in the cluster), viewers in the benchmark's process "
        "counting encoded frames. The cluster is a local Ray instance on the same cores (its controller, "
        "front and replicas are processes of their own); server_cpu_cores counts the server process, or "
        "the cluster's replicas. The batching part compares ServerConfig.batch_max 1 and 8, which differ "
        f"only once the server batches in process. Command: python -m bench cluster"
        f"{' --quick' if args.quick else ''}. Machine load when it started: {load:.1f} runnable processes "
        f"on {usable_cores()} cores (other work shares it)"
    )

    def plot(fig: Figure) -> None:
        hops, live = fig.subplots(1, 2)
        for case in ("in process", "batcher deployment"):
            series = [hop[(case, s)] for s in SIZES]
            hops.plot([str(s) for s in SIZES], [r["p50_ms"] for r in series], marker="o", label=f"{case} p50")
            hops.plot(
                [str(s) for s in SIZES],
                [r["p95_ms"] for r in series],
                marker="x",
                linestyle=":",
                label=f"{case} p95",
            )
        hops.set_xlabel("frame size")
        hops.set_ylabel("ms per frame")
        hops.legend(fontsize=7)
        added = [r for r in rows if r["part"] == "capacity"]  # sessions added one by one
        by_setup = {
            setup: [r for r in added if r["setup"] == setup]
            for setup in dict.fromkeys(r["setup"] for r in added)
        }
        plot_capacity(live, by_setup, "concurrent speaking sessions")
        for r in rows:
            if r["part"] in ("delivery", "batching"):
                live.scatter([r["sessions"]], [r["min_fps"]], marker="s", label=f"{r['part']}: {r['setup']}")
        live.legend(fontsize=6)

    write_report(
        "cluster",
        rows,
        title="Cluster mode (Ray Serve) against the single process",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )
