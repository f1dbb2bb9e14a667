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
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aioice.ice
from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from engine.types import SAMPLE_RATE
from streaming import inputs
from streaming.access import AVATARS, CONFIG, SESSIONS, authorized_session, bearer_token, json_error
from streaming.avatars import AvatarCache, AvatarFactory, LiveAvatar, bundle_names, engine_avatar_factory
from streaming.config import ServerConfig
from streaming.metrics import CONTENT_TYPE, Metric, exposition
from streaming.session import INPUTS, Session, SessionRegistry

__all__ = ["ServerConfig", "create_app"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# An avatar a viewer may ask for: a bundle name under avatars/, never a path.
AVATAR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CLOSED_STATES = ("failed", "closed")


def create_app(config: ServerConfig, avatar_factory: AvatarFactory | None = None) -> web.Application:
    """The server's app; `avatar_factory` makes the LiveAvatar of a name (default: bundles
    rendered by the engine, with their speech models when trained)."""
    app = web.Application()
    app[CONFIG] = config
    app[SESSIONS] = SessionRegistry()
    app[AVATARS] = AvatarCache(avatar_factory or engine_avatar_factory(config.engine))
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
    app.router.add_static("/static/", WEB_DIR)
    if loopback_address(config.host):
        app.cleanup_ctx.append(ice_on_loopback_only)
    app.on_startup.append(use_worker_threads)
    app.on_startup.append(load_default_avatar)
    app.on_shutdown.append(close_sessions)
    return app


# ---- handlers ---------------------------------------------------------------------------------


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "sessions": len(request.app[SESSIONS])})


async def avatars(request: web.Request) -> web.Response:
    default = request.app[CONFIG].avatar
    names = bundle_names()
    return web.json_response({"default": default, "avatars": names if default in names else [default, *names]})


async def metrics(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    totals = sessions.totals()
    live = list(sessions)
    latencies = [s.pipeline.latency / s.clock.sample_rate for s in live if s.pipeline]
    rows = [
        Metric("sessions", "gauge", "Live sessions.", len(live)),
        Metric("sessions_speaking", "gauge", "Live sessions whose avatar is speaking.", sum(s.speaking() for s in live)),
        Metric("pipeline_latency_seconds", "gauge", "Largest speech-to-output delay of the live sessions (audio and video alike).", max(latencies, default=0.0)),
        Metric("audio_queue_seconds", "gauge", "Speech audio scheduled ahead of the clock, summed over the live sessions.", sum(s.audio.ahead(s.clock.now_samples()) for s in live) / SAMPLE_RATE),
        Metric("pipeline_queued_frames", "gauge", "Frames waiting in the speech stages' queues, summed over the live sessions.", sum(s.pipeline.queued() for s in live if s.pipeline)),
        Metric("sessions_opened_total", "counter", "Sessions opened.", sessions.opened),
        Metric("sessions_rejected_total", "counter", "Offers refused because the server was full.", sessions.rejected),
        Metric("session_errors_total", "counter", "Sessions closed by an error in their media.", sessions.errors),
        Metric("frames_sent_total", "counter", "Video frames sent.", totals["frames_sent"]),
        Metric("frames_dropped_total", "counter", "Video frames skipped because rendering fell behind the clock.", totals["frames_dropped"]),
        Metric("render_seconds_total", "counter", "Time spent rendering the video frames sent.", totals["render_seconds"]),
        Metric("audio_packets_sent_total", "counter", "20 ms audio packets sent.", totals["audio_packets_sent"]),
        Metric("speech_frames_late_total", "counter", "Speech frames made after their time on screen (never shown).", totals["speech_frames_late"]),
        Metric("audio_seconds_late_total", "counter", "Speech audio made after its time to play (never played).", totals["audio_seconds_late"]),
        Metric("interrupts_total", "counter", "Interruptions (barge-in), new utterances included.", totals["interrupts"]),
        Metric("speech_inputs_late_total", "counter", "Utterances restarted because their input arrived later than the margin (each widens its session's margin).", totals["speech_inputs_late"]),
    ]
    return web.Response(text=exposition(rows), headers={"Content-Type": CONTENT_TYPE})


async def offer(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    sessions = request.app[SESSIONS]
    sdp, name, input, echo = await read_offer(request, default_avatar=config.avatar)
    check_capacity(sessions, config)
    avatar = await load_avatar(request.app[AVATARS], name)
    if input == "mic" and avatar.speech is None:
        raise json_error(web.HTTPServiceUnavailable, avatar.speech_error)
    check_capacity(sessions, config)  # again: other offers may have filled it meanwhile

    # The session is registered before the next await, so concurrent offers cannot overbook.
    pc = RTCPeerConnection(rtc_configuration(config))
    session = Session(pc, avatar, input, echo, config.pipeline, on_error=lambda error: sessions.fail(session.id))
    sessions.add(session)

    @pc.on("connectionstatechange")
    async def on_connection_state() -> None:
        if pc.connectionState in CLOSED_STATES:
            await sessions.close(session.id)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio" and input == "mic":
            session.run(inputs.consume_microphone(session, track))

    try:
        await answer(session, sdp)
    except BaseException:
        await sessions.close(session.id)
        raise
    session.run(close_unless_connected(sessions, session, config.connect_timeout_s))
    log.info("session %s opened for avatar %r, %s input", session.id, avatar.name, input)
    return web.json_response({
        "sdp": pc.localDescription.sdp,
        "type": "answer",
        "session_id": session.id,
        "token": session.token,
        "latency_ms": session.status()["latency_ms"],
        "speech": avatar.speech is not None,
        "speech_error": avatar.speech_error,
    })


async def session_status(request: web.Request) -> web.Response:
    return web.json_response(authorized_session(request, bearer_token(request)).status())


async def delete_session(request: web.Request) -> web.Response:
    session = authorized_session(request, bearer_token(request))
    await request.app[SESSIONS].close(session.id)
    return web.json_response({"session_id": session.id, "status": "closed"})


# ---- offers -----------------------------------------------------------------------------------


async def read_offer(request: web.Request, default_avatar: str) -> tuple[str, str, str, bool]:
    """The offer's SDP, avatar name, input and echo, or a 400 that says what is wrong with the request."""
    try:
        body = await request.json()
    except ValueError:
        raise json_error(web.HTTPBadRequest, 'the body must be JSON like {"sdp": "...", "type": "offer"}') from None
    if not isinstance(body, dict):
        raise json_error(web.HTTPBadRequest, 'the body must be a JSON object like {"sdp": "...", "type": "offer"}')
    sdp, kind, avatar = body.get("sdp"), body.get("type"), body.get("avatar", default_avatar)
    input, echo = body.get("input", "websocket"), body.get("echo", False)
    if not isinstance(sdp, str) or not sdp.strip():
        raise json_error(web.HTTPBadRequest, "'sdp' must be a non-empty string")
    if kind != "offer":
        raise json_error(web.HTTPBadRequest, f"'type' must be \"offer\", got {json.dumps(kind)}")
    if avatar != default_avatar and not (isinstance(avatar, str) and AVATAR_NAME.fullmatch(avatar)):
        raise json_error(web.HTTPBadRequest, "'avatar' must be an avatar name: letters, digits, '-' and '_'")
    if input not in INPUTS:
        raise json_error(web.HTTPBadRequest, f"'input' must be one of {', '.join(INPUTS)}, got {json.dumps(input)}")
    if not isinstance(echo, bool):
        raise json_error(web.HTTPBadRequest, "'echo' must be true or false")
    return sdp, avatar, input, echo


def check_capacity(sessions: SessionRegistry, config: ServerConfig) -> None:
    if len(sessions) >= config.max_sessions:
        sessions.rejected += 1
        raise json_error(web.HTTPServiceUnavailable, f"the server is serving its maximum of {config.max_sessions} sessions; try again later")


async def load_avatar(cache: AvatarCache, name: str) -> LiveAvatar:
    try:
        return await cache.get(name)
    except (LookupError, ValueError, OSError) as e:  # what a factory raises for a missing or broken avatar
        log.warning("cannot load avatar %r: %s", name, e)
        raise json_error(web.HTTPBadRequest, f"unknown avatar {name!r}") from None


async def answer(session: Session, sdp: str) -> None:
    """Answers the offer with the avatar's video and voice; setLocalDescription waits for ICE
    gathering, so the answer carries every candidate and the viewer needs no trickle ICE."""
    pc = session.pc
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" in kinds:
            pc.addTrack(session.video)
            if "audio" in kinds:
                pc.addTrack(session.audio_track)
            await pc.setLocalDescription(await pc.createAnswer())
    except Exception as e:  # aiortc fails on malformed SDP with many types: ValueError, KeyError, AttributeError...
        raise json_error(web.HTTPBadRequest, f"the offer's SDP cannot be used ({type(e).__name__}: {e})") from None
    if "video" not in kinds:  # aiortc accepts any text without media sections as an empty offer
        raise json_error(web.HTTPBadRequest, "the offer has no video section to receive the avatar on")


async def close_unless_connected(sessions: SessionRegistry, session: Session, timeout_s: float) -> None:
    """An offer whose viewer never connects (gave up, or lost its network) frees its place."""
    await asyncio.sleep(timeout_s)
    if session.pc.connectionState != "connected":
        log.info("session %s: no connection after %.0f s", session.id, timeout_s)
        await sessions.close(session.id)


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


async def use_worker_threads(app: web.Application) -> None:
    """The loop's default executor, where sessions render, run their models and encode (aiortc
    encodes there too), gets config.workers threads; the loop shuts it down when it closes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = app[CONFIG].workers or cores
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers, thread_name_prefix="session"))


async def load_default_avatar(app: web.Application) -> None:
    """Fails at startup, not at the first viewer, when the default avatar cannot be served."""
    await app[AVATARS].get(app[CONFIG].avatar)


async def close_sessions(app: web.Application) -> None:
    await app[SESSIONS].close_all()
