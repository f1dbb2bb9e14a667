"""The live server: the viewer page, WebRTC offers, and the sessions they open.

POST /offer answers a browser's offer with the avatar's video on a new session; DELETE
/sessions/{id} (with the session's bearer token) ends it; GET /health reports the session count.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aioice.ice
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from streaming.session import Session, SessionRegistry
from streaming.tracks import AvatarVideoTrack, FrameSource

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# An avatar a viewer may ask for: a bundle name under avatars/, never a path.
AVATAR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CLOSED_STATES = ("failed", "closed")

SourceFactory = Callable[[str], FrameSource]


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080  # 0 picks a free port
    avatar: str = "default"  # served when an offer names none; a name under avatars/ or a bundle path
    device: str = "cpu"
    size: int = 256  # video frames are size x size pixels
    max_sessions: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.size <= 0 or self.size % 2:
            raise ValueError(f"size must be a positive even number of pixels (4:2:0 video needs even sizes), got {self.size}")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")


class SourceCache:
    """One FrameSource per avatar, made on first use in a worker thread (rendering setup is slow
    and must not stall the sessions already live) and shared by every session of that avatar."""

    def __init__(self, factory: SourceFactory) -> None:
        self._factory = factory
        self._sources: dict[str, asyncio.Future[FrameSource]] = {}

    async def get(self, avatar: str) -> FrameSource:
        source = self._sources.get(avatar)
        if source is None:
            source = asyncio.get_running_loop().run_in_executor(None, self._factory, avatar)
            self._sources[avatar] = source
        try:
            # shielded: a viewer who gives up must not cancel the setup other viewers wait for
            return await asyncio.shield(source)
        except Exception:
            if self._sources.get(avatar) is source:
                del self._sources[avatar]  # not cached, so the next offer tries again
            raise


def idle_avatar_factory(config: ServerConfig) -> SourceFactory:
    """Sources that render an avatar idling: blinks and small head motion, mouth closed."""

    def make(avatar: str) -> FrameSource:
        from engine.pipeline.idle import IdleAvatar  # lazily: torch and the renderer load on first use

        return IdleAvatar(avatar, size=config.size, device=config.device)

    return make


CONFIG = web.AppKey("config", ServerConfig)
SESSIONS = web.AppKey("sessions", SessionRegistry)
SOURCES = web.AppKey("sources", SourceCache)


def create_app(config: ServerConfig, source_factory: SourceFactory | None = None) -> web.Application:
    """The server's app; `source_factory` makes the FrameSource of an avatar name (default: the
    idle avatar of engine.pipeline.idle, at config.size on config.device)."""
    app = web.Application()
    app[CONFIG] = config
    app[SESSIONS] = SessionRegistry()
    app[SOURCES] = SourceCache(source_factory or idle_avatar_factory(config))
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_post("/offer", offer)
    app.router.add_delete("/sessions/{session_id}", delete_session)
    app.router.add_static("/static/", WEB_DIR)
    if loopback_address(config.host):
        app.cleanup_ctx.append(ice_on_loopback_only)
    app.on_startup.append(load_default_avatar)
    app.on_shutdown.append(close_sessions)
    return app


# ---- handlers ---------------------------------------------------------------------------------


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "sessions": len(request.app[SESSIONS])})


async def offer(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    sessions = request.app[SESSIONS]
    sdp, avatar = await read_offer(request, default_avatar=config.avatar)
    if len(sessions) >= config.max_sessions:
        raise json_error(web.HTTPServiceUnavailable, f"the server is serving its maximum of {config.max_sessions} sessions; try again later")

    # The session is registered before the first await, so concurrent offers cannot overbook.
    session = Session.open(RTCPeerConnection(rtc_configuration(config)))
    sessions.add(session)

    @session.pc.on("connectionstatechange")
    async def on_connection_state() -> None:
        if session.pc.connectionState in CLOSED_STATES:
            await sessions.close(session.id)

    try:
        source = await load_source(request.app[SOURCES], avatar)
        await answer(session.pc, sdp, AvatarVideoTrack(source, session.clock))
    except BaseException:
        await sessions.close(session.id)
        raise
    log.info("session %s opened for avatar %r", session.id, avatar)
    answer_sdp = session.pc.localDescription.sdp
    return web.json_response({"sdp": answer_sdp, "type": "answer", "session_id": session.id, "token": session.token})


async def delete_session(request: web.Request) -> web.Response:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise json_error(web.HTTPUnauthorized, "an 'Authorization: Bearer TOKEN' header with the session's token is required")
    sessions = request.app[SESSIONS]
    session = sessions.get(request.match_info["session_id"])
    if session is None:
        raise json_error(web.HTTPNotFound, "there is no session with this id")
    if not session.authorizes(token):
        raise json_error(web.HTTPUnauthorized, "the token does not match this session")
    await sessions.close(session.id)
    return web.json_response({"session_id": session.id, "status": "closed"})


# ---- offers -----------------------------------------------------------------------------------


async def read_offer(request: web.Request, default_avatar: str) -> tuple[str, str]:
    """The offer's SDP and avatar name, or a 400 that says what is wrong with the request."""
    try:
        body = await request.json()
    except ValueError:
        raise json_error(web.HTTPBadRequest, 'the body must be JSON like {"sdp": "...", "type": "offer"}') from None
    if not isinstance(body, dict):
        raise json_error(web.HTTPBadRequest, 'the body must be a JSON object like {"sdp": "...", "type": "offer"}')
    sdp, kind, avatar = body.get("sdp"), body.get("type"), body.get("avatar", default_avatar)
    if not isinstance(sdp, str) or not sdp.strip():
        raise json_error(web.HTTPBadRequest, "'sdp' must be a non-empty string")
    if kind != "offer":
        raise json_error(web.HTTPBadRequest, f"'type' must be \"offer\", got {json.dumps(kind)}")
    if avatar != default_avatar and not (isinstance(avatar, str) and AVATAR_NAME.fullmatch(avatar)):
        raise json_error(web.HTTPBadRequest, "'avatar' must be an avatar name: letters, digits, '-' and '_'")
    return sdp, avatar


async def load_source(sources: SourceCache, avatar: str) -> FrameSource:
    try:
        return await sources.get(avatar)
    except (LookupError, ValueError, OSError) as e:  # what a factory raises for a missing or broken avatar
        log.warning("cannot load avatar %r: %s", avatar, e)
        raise json_error(web.HTTPBadRequest, f"unknown avatar {avatar!r}") from None


async def answer(pc: RTCPeerConnection, sdp: str, track: AvatarVideoTrack) -> None:
    """Answers the offer with the avatar's video; setLocalDescription waits for ICE gathering, so
    the answer carries every candidate and the viewer needs no trickle ICE."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        has_video = any(t.kind == "video" for t in pc.getTransceivers())
        if has_video:
            pc.addTrack(track)
            await pc.setLocalDescription(await pc.createAnswer())
    except Exception as e:  # aiortc fails on malformed SDP with many types: ValueError, KeyError, AttributeError...
        raise json_error(web.HTTPBadRequest, f"the offer's SDP cannot be used ({type(e).__name__}: {e})") from None
    if not has_video:  # aiortc accepts any text without media sections as an empty offer
        raise json_error(web.HTTPBadRequest, "the offer has no video section to receive the avatar on")


def json_error(error: type[web.HTTPError], message: str) -> web.HTTPError:
    headers = {"WWW-Authenticate": "Bearer"} if error is web.HTTPUnauthorized else None
    return error(text=json.dumps({"error": message}), content_type="application/json", headers=headers)


# ---- ICE and lifecycle ------------------------------------------------------------------------


def loopback_address(host: str) -> str | None:
    """The address to advertise in ICE when `host` is a loopback address, else None."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:  # a host name
        return None


def rtc_configuration(config: ServerConfig) -> RTCConfiguration:
    # A loopback-only server has no use for STUN (aiortc's default is a public server): asking an
    # unreachable one would only delay each answer by aioice's gathering timeout.
    return RTCConfiguration(iceServers=[]) if loopback_address(config.host) else RTCConfiguration()


async def ice_on_loopback_only(app: web.Application) -> AsyncIterator[None]:
    """While the app runs, ICE gathers host candidates on the loopback address only.

    A server bound to loopback serves this machine alone, so it should not advertise its other
    interfaces to viewers (their addresses would leak and ICE would try paths nobody can use).
    aioice gathers on every interface with no per-connection option, so this replaces its
    module-level get_host_addresses for the process, and puts it back on cleanup."""
    address = loopback_address(app[CONFIG].host)
    every_interface = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address]
    yield
    aioice.ice.get_host_addresses = every_interface


async def load_default_avatar(app: web.Application) -> None:
    """Fails at startup, not at the first viewer, when the default avatar cannot be served."""
    await app[SOURCES].get(app[CONFIG].avatar)


async def close_sessions(app: web.Application) -> None:
    await app[SESSIONS].close_all()
