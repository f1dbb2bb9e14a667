"""The live server: the page, WebRTC offers, the sessions they open, and their inputs.

  GET  /                          the page (web/)
  POST /offer                     {"sdp", "type": "offer", "avatar"?, "input"?: "websocket"|"mic", "echo"?}
                                  -> {"sdp", "type": "answer", "session_id", "token", "latency_ms", "speech"}
  GET  /ws/{session_id}?token=T   websocket speech input (streaming/inputs.py)
  POST /sessions/{id}/say         {"text"}: server-side text-to-speech     } Authorization:
  POST /sessions/{id}/interrupt   stop speaking now (barge-in)            } Bearer TOKEN
  GET  /sessions/{id}             the session's figures                   }
  DELETE /sessions/{id}           end it                                 }
  GET  /avatars, /health, /metrics (Prometheus text)

Every request passes the Host and Origin checks (streaming/access.py); offers are checked before
a peer connection is made for them (streaming/offer.py); docs/SECURITY.md lists the limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from streaming import inputs
from streaming.access import (
    AVATARS,
    CONFIG,
    OFFERS,
    SESSIONS,
    TTS,
    authorized_session,
    bearer_token,
    checked_request,
    client_address,
    json_error,
    read_json,
)
from streaming.avatars import AvatarCache, AvatarFactory, LiveAvatar, bundle_names, engine_avatar_factory
from streaming.batching import RenderService
from streaming.clock import FrameGrid
from streaming.config import ServerConfig, cpu_cores
from streaming.ice import loopback_address, loopback_only, rtc_configuration
from streaming.limits import PerClientWindow
from streaming.metrics import CONTENT_TYPE, exposition, server_metrics
from streaming.offer import Offer, OfferError, check_sdp
from streaming.session import Session, SessionRegistry
from streaming.vp8 import use_steady_vp8

__all__ = ["ServerConfig", "create_app"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PAGE_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
CLOSED_STATES = ("failed", "closed")
RTC = web.AppKey("rtc", RTCConfiguration)  # the peer connections' configuration, made at startup
PAGE = web.AppKey("page", dict)  # web/ file name -> (bytes, content type), read at startup
GRID = web.AppKey("grid", FrameGrid)  # the frame grid every session's clock starts on
RENDERS = web.AppKey("renders", RenderService)  # draws every session's frames, batched
OFFER_EXAMPLE = '{"sdp": "...", "type": "offer"}'


def create_app(config: ServerConfig, avatar_factory: AvatarFactory | None = None) -> web.Application:
    """The server's app; `avatar_factory` makes the LiveAvatar of a name (default: bundles
    rendered by the engine, with their speech models when trained)."""
    use_steady_vp8()
    app = web.Application(middlewares=[checked_request], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[SESSIONS] = SessionRegistry()
    app[OFFERS] = PerClientWindow(config.offers_per_minute, 60.0)
    app[PAGE] = read_page()
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/avatars", avatars)
    app.router.add_post("/offer", offer)
    app.router.add_get("/ws/{session_id}", inputs.websocket_input)
    app.router.add_get("/sessions/{session_id}", session_status)
    app.router.add_delete("/sessions/{session_id}", delete_session)
    app.router.add_post("/sessions/{session_id}/say", inputs.say)
    app.router.add_post("/sessions/{session_id}/interrupt", inputs.interrupt)
    app.router.add_get("/static/{name}", static)
    app.cleanup_ctx.append(threads_and_ice(avatar_factory))
    app.on_startup.append(load_default_avatar)
    app.on_shutdown.append(close_sessions)
    return app


# ---- handlers ---------------------------------------------------------------------------------


def read_page() -> dict[str, tuple[bytes, str]]:
    """The page's files, held in memory: serving them takes no thread and no disk access."""
    return {
        path.name: (path.read_bytes(), PAGE_TYPES[path.suffix])
        for path in WEB_DIR.iterdir()
        if path.suffix in PAGE_TYPES
    }


async def index(request: web.Request) -> web.Response:
    return page_file(request, "index.html")


async def static(request: web.Request) -> web.Response:
    return page_file(request, request.match_info["name"])


def page_file(request: web.Request, name: str) -> web.Response:
    if name not in request.app[PAGE]:
        raise json_error(web.HTTPNotFound, "no such file")
    data, content_type = request.app[PAGE][name]
    return web.Response(
        body=data, content_type=content_type, charset="utf-8" if content_type.startswith("text/") else None
    )


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "sessions": len(request.app[SESSIONS])})


async def avatars(request: web.Request) -> web.Response:
    default = request.app[CONFIG].avatar
    names = bundle_names()
    return web.json_response(
        {"default": default, "avatars": names if default in names else [default, *names]}
    )


async def metrics(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    rows = server_metrics(
        sessions, sessions.totals(), sessions.opened, sessions.rejected, sessions.errors,
        request.app[RENDERS].stats,
    )
    return web.Response(text=exposition(rows), headers={"Content-Type": CONTENT_TYPE})


async def offer(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    sessions = request.app[SESSIONS]
    client = client_address(request)
    offer = parse_offer(await read_json(request, OFFER_EXAMPLE), config)
    if not request.app[OFFERS].take(client):  # every offer counts, refused ones too
        raise json_error(
            web.HTTPTooManyRequests,
            f"at most {config.offers_per_minute} offers a minute per client; try again later",
        )
    check_capacity(sessions, config, client)
    avatar = await load_avatar(request.app[AVATARS], offer.avatar)
    if offer.input == "mic" and avatar.speech is None:
        raise json_error(web.HTTPServiceUnavailable, avatar.speech_error)
    check_capacity(sessions, config, client)  # again: other offers may have filled it meanwhile

    # The session is registered before the next await, so concurrent offers cannot overbook.
    pc = RTCPeerConnection(request.app[RTC])
    session = Session(
        pc,
        avatar,
        request.app[GRID],
        request.app[RENDERS],
        offer.input,
        offer.echo,
        config.pipeline,
        on_error=lambda error: sessions.fail(session.id),
        client=client,
        controls_per_s=config.max_controls_per_s,
        close_timeout_s=config.close_timeout_s,
    )
    sessions.add(session)

    @pc.on("connectionstatechange")
    async def on_connection_state() -> None:
        if pc.connectionState in CLOSED_STATES:
            await sessions.close(session.id)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio" and offer.input == "mic":
            session.run(inputs.consume_microphone(session, track))

    try:
        await answer(session, offer.sdp)
    except BaseException:
        await sessions.close(session.id)
        raise
    session.run(close_unless_connected(sessions, session, config.connect_timeout_s))
    session.run(close_at_end_of_life(sessions, session, config.max_session_s))
    log.info("session %s opened for avatar %r, %s input", session.id, avatar.name, offer.input)
    return web.json_response(
        {
            "sdp": pc.localDescription.sdp,
            "type": "answer",
            "session_id": session.id,
            "token": session.token,
            "latency_ms": session.status()["latency_ms"],
            "speech": avatar.speech is not None,
            "speech_error": avatar.speech_error,
        }
    )


async def session_status(request: web.Request) -> web.Response:
    return web.json_response(authorized_session(request, bearer_token(request)).status())


async def delete_session(request: web.Request) -> web.Response:
    session = authorized_session(request, bearer_token(request))
    await request.app[SESSIONS].close(session.id)
    return web.json_response({"session_id": session.id, "status": "closed"})


# ---- offers -----------------------------------------------------------------------------------


class Occupancy(Protocol):
    """Live sessions counted for the capacity checks (a server's registry, or a cluster's front)."""

    rejected: int  # offers refused because the server, or the client's share of it, was full

    def __len__(self) -> int: ...

    def of_client(self, client: str) -> int: ...


def parse_offer(body: object, config: ServerConfig) -> Offer:
    """A POST /offer body checked (its SDP's bounds included) before any peer connection; else a 400."""
    try:
        offer = Offer.from_json(body, default_avatar=config.avatar)
        check_sdp(offer.sdp, config.max_sdp_bytes, config.max_candidates)
    except OfferError as e:
        raise json_error(web.HTTPBadRequest, str(e)) from None
    return offer


def check_capacity(sessions: Occupancy, config: ServerConfig, client: str) -> None:
    if len(sessions) >= config.max_sessions:
        sessions.rejected += 1
        raise json_error(
            web.HTTPServiceUnavailable,
            f"the server is serving its maximum of {config.max_sessions} sessions; try again later",
        )
    if sessions.of_client(client) >= config.max_sessions_per_client:
        sessions.rejected += 1
        raise json_error(
            web.HTTPTooManyRequests,
            f"at most {config.max_sessions_per_client} sessions per client; close one first",
        )


async def load_avatar(cache: AvatarCache, name: str) -> LiveAvatar:
    try:
        return await cache.get(name)
    except Exception as e:  # a missing or broken bundle, whatever its loader raises: logged here, not told
        log.warning("cannot load avatar %r: %s", name, e)
        raise json_error(web.HTTPBadRequest, f"unknown avatar {name!r}, or it cannot be loaded") from None


async def answer(session: Session, sdp: str) -> None:
    """Answers the offer with the avatar's video and voice; setLocalDescription waits for ICE
    gathering, so the answer carries every candidate and the viewer needs no trickle ICE.

    The server only sends, except the audio of a microphone session: whatever else the viewer
    offers to send is answered sendonly, so aiortc neither receives nor decodes it."""
    pc = session.pc
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" in kinds:
            pc.addTrack(session.video)
            if "audio" in kinds:
                pc.addTrack(session.audio_track)
            for transceiver in pc.getTransceivers():
                receives = transceiver.kind == "audio" and session.input == "mic"
                transceiver.direction = "sendrecv" if receives else "sendonly"
            await pc.setLocalDescription(await pc.createAnswer())
    except (
        Exception
    ) as e:  # aiortc fails on malformed SDP with many types: ValueError, KeyError, AttributeError...
        log.info("session %s: unusable SDP: %r", session.id, e)
        raise json_error(
            web.HTTPBadRequest, "the offer's SDP cannot be used: it is not a valid WebRTC offer"
        ) from None
    if "video" not in kinds:  # aiortc accepts any text without media sections as an empty offer
        raise json_error(web.HTTPBadRequest, "the offer has no video section to receive the avatar on")


async def close_unless_connected(sessions: SessionRegistry, session: Session, timeout_s: float) -> None:
    """An offer whose viewer never connects (gave up, or lost its network) frees its place."""
    await asyncio.sleep(timeout_s)
    if session.pc.connectionState != "connected":
        log.info("session %s: no connection after %.0f s", session.id, timeout_s)
        await sessions.close(session.id)


async def close_at_end_of_life(sessions: SessionRegistry, session: Session, lifetime_s: float) -> None:
    await asyncio.sleep(max(0.0, session.created + lifetime_s - time.time()))
    log.info("session %s: its %.0f s are over", session.id, lifetime_s)
    await sessions.close(session.id)


# ---- threads, ICE and lifecycle ---------------------------------------------------------------


def threads_and_ice(avatar_factory: AvatarFactory | None):  # noqa: ANN201 (an aiohttp cleanup context)
    async def setup(app: web.Application) -> AsyncIterator[None]:
        """The app's threads, made here and shut down with it, its frame grid and renderer service,
        and ICE:
        - the loop's default executor, where sessions render (the renderer service's batches), run
          their models and encode (aiortc encodes there too), gets config.workers threads (0: one
          per core);
        - avatars are made in a thread of their own, and text-to-speech runs in another (espeak-ng
          keeps global state: one synthesis at a time);
        - a loopback server gathers ICE candidates on its address only; others use the STUN
          server, looked up once here."""
        config = app[CONFIG]
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            ThreadPoolExecutor(config.workers or cpu_cores(), thread_name_prefix="session")
        )
        app[GRID] = FrameGrid()  # its epoch: now
        app[RENDERS] = RenderService(config.batching)
        setup_thread = ThreadPoolExecutor(1, thread_name_prefix="avatar-setup")
        app[TTS] = ThreadPoolExecutor(1, thread_name_prefix="tts")
        factory = avatar_factory or engine_avatar_factory(config.engine)
        app[AVATARS] = AvatarCache(factory, setup_thread, retry_s=config.avatar_retry_s)
        app[RTC] = await loop.run_in_executor(
            setup_thread, rtc_configuration, config.host, config.stun_server
        )
        address = loopback_address(config.host)
        try:
            if address:
                with loopback_only(address):
                    yield
            else:
                yield
        finally:
            app[RENDERS].close()
            setup_thread.shutdown(wait=False, cancel_futures=True)
            app[TTS].shutdown(wait=False, cancel_futures=True)

    return setup


async def load_default_avatar(app: web.Application) -> None:
    """Fails at startup, not at the first viewer, when the default avatar cannot be served."""
    await app[AVATARS].get(app[CONFIG].avatar)


async def close_sessions(app: web.Application) -> None:
    await app[SESSIONS].close_all()
