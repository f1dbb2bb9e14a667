"""Serve the live avatar: python run_server.py [--host --port --avatar --device --max-sessions ...];
with --cluster or --ray-address, on Ray Serve (streaming/cluster, docs/SCALING.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from dataclasses import fields
from typing import TYPE_CHECKING

import uvloop
from aiohttp import web

from engine.avatar.bundle import load
from engine.backends import BACKENDS
from engine.errors import EngineError
from engine.pipeline.frames import RENDERERS
from engine.runtime import tune_allocator
from streaming.access import AVATARS
from streaming.app import ServerConfig, create_app
from streaming.avatars import bundle_path
from streaming.cluster.config import ClusterConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# --NAME for each of these ServerConfig fields, its type and default from the dataclass.
SERVING = {
    "host": "address to listen on; 127.0.0.1: this machine only",
    "port": "TCP port; 0 picks a free one",
    "avatar": "avatar name under avatars/ or a bundle directory",
    "device": "torch device for the models and rendering",
    "backend": "R2V inference backend",
    "renderer": "auto: R2V when the avatar has weights, else the direct compositor",
    "max_sessions": "viewers served at once",
    "size": "video frame size in pixels",
    "lookahead": "FACIAL-GAN look-ahead in frames: smoother lips, 33 ms more latency each",
    "stride": "FACIAL-GAN update stride in frames: less compute, 33 ms more latency each",
    "margin_ms": "margin for compute and late input in the pipeline latency; late input widens a "
    "session's margin",
    "workers": "threads for the sessions' rendering, models and codecs; 0: one per CPU core",
    "batch_max": "frames the renderer service draws together at most, across sessions; 1: no batching",
    "batch_wait_ms": "how long a batch waits for the frames due with its first at most",
}
CHOICES = {"device": ("cpu", "cuda"), "backend": tuple(BACKENDS), "renderer": tuple(RENDERERS)}
# Limits against hostile or broken clients (docs/SECURITY.md).
LIMITS = {
    "stun_server": "STUN server host:port for public addresses, '' for none",
    "max_sessions_per_client": "live sessions one client address may hold",
    "offers_per_minute": "offers one client address may make in a minute",
    "max_session_s": "a session's longest life in seconds",
    "max_body_bytes": "largest HTTP request body",
    "max_sdp_bytes": "largest SDP in an offer",
    "max_candidates": "most ICE candidates in an offer",
    "max_message_bytes": "largest websocket message",
    "max_messages_per_s": "websocket messages a second (bursts of 5 s)",
    "max_controls_per_s": "start/end/interrupt/say a second per session (bursts of 5 s)",
    "max_buffered_audio_s": "websocket audio waiting for the speech chain, in seconds",
    "max_text_chars": "text of one say",
    "max_say_s": "speech one say may make, in seconds",
    "connect_timeout_s": "seconds a viewer has to connect",
    "ws_heartbeat_s": "websocket ping interval in seconds",
    "close_timeout_s": "seconds each step of closing a session may take",
    "avatar_retry_s": "seconds before an avatar that failed to load is tried again",
}
# ClusterConfig fields (cluster mode on Ray Serve, docs/SCALING.md).
CLUSTER = {
    "replicas": "session hosts at start, and the fewest kept",
    "max_replicas": "the most session hosts autoscaling makes; 0: --replicas, no autoscaling",
    "host_cpus": "Ray CPUs each session host reserves",
    "batcher_gpus": "GPUs each batcher replica takes",
    "batcher_replicas": "batcher replicas: one per GPU",
    "drain_s": "seconds a stopping session host lets its live sessions finish",
}


def add_fields(group: argparse._ActionsContainer, defaults: DataclassInstance, helps: dict[str, str]) -> None:
    """--NAME for each field of the dataclass `defaults` named in `helps`, typed as it is declared."""
    types = {field.name: {"int": int, "float": float}.get(str(field.type), str) for field in fields(defaults)}
    for name, text in helps.items():
        group.add_argument(
            "--" + name.replace("_", "-"),
            type=types[name],
            default=getattr(defaults, name),
            choices=CHOICES.get(name),
            help=f"{text} (default: %(default)s)",
        )


def parse_args(argv: list[str] | None = None) -> tuple[ServerConfig, int, ClusterConfig | None]:
    """The server's settings, torch threads per call, and the cluster's settings in cluster mode."""
    parser = argparse.ArgumentParser(
        description="Serve the talking avatar live over WebRTC; open the printed URL in a browser."
    )
    add_fields(parser, ServerConfig(), SERVING)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per render or model call; sessions run in parallel threads "
        "(default: %(default)s)",
    )
    access = parser.add_argument_group("access and limits (docs/SECURITY.md)")
    access.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        dest="allowed_origins",
        metavar="ORIGIN",
        help="a site whose pages may use the server, e.g. https://app.example (repeat for more; "
        "the server's own page always may)",
    )
    access.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        dest="allowed_hosts",
        metavar="NAME",
        help="a Host name the server answers to (repeat for more; default: loopback names on a "
        "loopback address, else any)",
    )
    add_fields(access, ServerConfig(), LIMITS)
    cluster = parser.add_argument_group("cluster mode on Ray Serve (docs/SCALING.md)")
    cluster.add_argument(
        "--cluster", action="store_true", help="serve from session hosts on a Ray instance started here"
    )
    cluster.add_argument(
        "--ray-address",
        default="",
        metavar="ADDR",
        help="join this Ray cluster (e.g. auto, ray://head:10001)",
    )
    cluster.add_argument(
        "--sessions-per-replica",
        type=int,
        default=0,
        help="sessions each session host serves; 0: --max-sessions (default: %(default)s)",
    )
    cluster.add_argument(
        "--batcher",
        action="store_true",
        help="sessions render through the batcher deployment, one batch per node and tick (GPU nodes)",
    )
    add_fields(cluster, ClusterConfig(), CLUSTER)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    try:
        config = ServerConfig(
            allowed_origins=tuple(args.allowed_origins),
            allowed_hosts=tuple(args.allowed_hosts),
            **{name: getattr(args, name) for name in (*SERVING, *LIMITS)},
        )
        cluster_config = (
            ClusterConfig(
                address=args.ray_address,
                sessions_per_replica=args.sessions_per_replica or args.max_sessions,
                torch_threads=args.threads,
                batcher=args.batcher,
                **{name: getattr(args, name) for name in CLUSTER},
            )
            if args.cluster or args.ray_address
            else None
        )
    except ValueError as e:
        parser.error(str(e))  # exits with status 2
    return config, args.threads, cluster_config


async def serve(config: ServerConfig) -> None:
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()  # loads the default avatar: a bad --avatar fails here
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        host, port = runner.addresses[0][:2]
        avatar = await app[AVATARS].get(config.avatar)
        speech = (
            f"speech input: {avatar.speech.description}"
            if avatar.speech
            else f"WARNING: {avatar.speech_error}; the avatar idles"
        )
        print(
            f"run_server: avatar '{avatar.name}' live at http://{host}:{port}/ "
            f"(open it in Chromium or Firefox); {speech}",
            flush=True,
        )
        await asyncio.Event().wait()  # until Ctrl-C
    finally:
        await runner.cleanup()


def serve_cluster(config: ServerConfig, cluster: ClusterConfig) -> None:
    """Cluster mode: the front's URL printed, then serving until Ctrl-C; then the live sessions
    have --drain-s seconds to finish (a second Ctrl-C ends them at once)."""
    from streaming.cluster import launch  # imports ray: only in cluster mode

    load(bundle_path(config.avatar))  # a bad --avatar fails here, not in every replica
    try:
        url = launch.deploy(config, cluster)
        print(
            f"run_server: cluster of {cluster.replicas} session host(s) x {cluster.sessions_per_replica} "
            f"sessions live at {url}/ (open it in Chromium or Firefox)",
            flush=True,
        )
        try:
            threading.Event().wait()  # until Ctrl-C
        except KeyboardInterrupt:
            print(f"run_server: draining for at most {cluster.drain_s:.0f} s (Ctrl-C again: now)", flush=True)
            launch.shutdown(cluster.drain_s)
    finally:
        launch.shutdown()


def main() -> None:
    config, threads, cluster = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if cluster is not None:
        try:
            serve_cluster(config, cluster)
        except KeyboardInterrupt:
            pass
        except (EngineError, OSError, RuntimeError) as e:  # RuntimeError: Serve's failed deployment
            print(f"run_server: error: {e}", file=sys.stderr)
            sys.exit(2)
        return
    tune_allocator()
    import torch

    torch.set_num_threads(threads)
    logging.getLogger("streaming").setLevel(logging.INFO)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(config))
    except KeyboardInterrupt:
        pass
    except (ImportError, LookupError, EngineError, OSError) as e:
        print(f"run_server: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
