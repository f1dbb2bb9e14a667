"""Serve the live avatar: python run_server.py [--host --port --avatar --device --size --max-sessions]."""
from __future__ import annotations

import argparse
import logging
import sys

import uvloop
from aiohttp import web

from engine.runtime import tune_allocator
from streaming.app import ServerConfig, create_app


def parse_config(argv: list[str] | None = None) -> ServerConfig:
    default = ServerConfig()
    parser = argparse.ArgumentParser(description="Serve the talking avatar live over WebRTC; open the printed URL in a browser.")
    parser.add_argument("--host", default=default.host, help="address to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=default.port, help="TCP port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--avatar", default=default.avatar, help="avatar name under avatars/ or a bundle directory (default: %(default)s)")
    parser.add_argument("--device", default=default.device, help="torch device that renders the frames (default: %(default)s)")
    parser.add_argument("--size", type=int, default=default.size, help="video frame size in pixels (default: %(default)s)")
    parser.add_argument("--max-sessions", type=int, default=default.max_sessions, help="viewers served at once (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        return ServerConfig(args.host, args.port, args.avatar, args.device, args.size, args.max_sessions)
    except ValueError as e:
        parser.error(str(e))  # exits with status 2


def main() -> None:
    config = parse_config()
    tune_allocator()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("streaming").setLevel(logging.INFO)
    try:
        # The avatar loads at startup, so a bad --avatar fails here rather than at the first viewer.
        web.run_app(create_app(config), host=config.host, port=config.port, loop=uvloop.new_event_loop())
    except (ImportError, LookupError, ValueError, OSError) as e:
        print(f"run_server: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
