"""The signalling deployment: the page and the API of the single-process server on one address
(streaming/app.py's handlers where they serve as they are; docs/PROTOCOL.md), for sessions that
live in the session hosts.

POST /offer is checked here as the server checks it (body, SDP, the client's limits), then is one
streaming call to the session-host deployment, which Serve routes to a replica with room; the
call's first item is that replica's answer, returned as it is, and the call stays open while the
session lives. Per-session requests and the websocket are forwarded to the replica's server. A
call that fails (its replica died) forgets the replica's session: its requests get a 404.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import cast

import aiohttp
from aiohttp import WSMsgType, web
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from streaming import app as server
from streaming.access import (
    CONFIG,
    OFFERS,
    checked_request,
    client_address,
    json_error,
    read_json,
)
from streaming.cluster.config import ClusterConfig
from streaming.cluster.metrics import merge
from streaming.config import ServerConfig
from streaming.inputs import input_websocket
from streaming.limits import PerClientWindow
from streaming.metrics import CONTENT_TYPE
from streaming.session import token_matches

log = logging.getLogger(__name__)

FORWARDED_HEADERS = ("Authorization", "Content-Type")  # of a session's requests, to its replica
REPLIED_HEADERS = ("Content-Type", "WWW-Authenticate")  # of its replica's answers, to the client


@dataclasses.dataclass
class RemoteSession:
    """A session as the front knows it: from its replica's answer, and the open call."""

    id: str
    token: str
    url: str  # its replica's server
    host: str  # its replica
    client: str
    speech_error: str
    call: asyncio.Task | None = None  # holds the streaming call open until the session ends
    websocket: web.WebSocketResponse | None = None  # its forwarded websocket input: one at a time

    def authorizes(self, token: str) -> bool:
        return token_matches(token, self.token)


class FrontSessions:
    """The cluster's live sessions by id, and the offers on their way to a replica (counted
    against their client's share while they are, so concurrent offers cannot overbook)."""

    def __init__(self) -> None:
        self.sessions: dict[str, RemoteSession] = {}
        self.hosts: dict[str, str] = {}  # replicas that answered an offer -> their server's URL
        self.pending: dict[str, int] = {}  # client -> offers being answered
        self.rejected = 0
        self.draining = False  # stopping: no new sessions, the live ones finish

    def __len__(self) -> int:
        return len(self.sessions) + sum(self.pending.values())

    def of_client(self, client: str) -> int:
        return self.pending.get(client, 0) + sum(s.client == client for s in self.sessions.values())

    def per_host(self) -> dict[str, int]:
        return dict(Counter(session.host for session in self.sessions.values()))

    def known(self, request: web.Request) -> RemoteSession:
        session = self.sessions.get(request.match_info["session_id"])
        if session is None:
            raise json_error(web.HTTPNotFound, "there is no session with this id")
        return session


SESSION_HOSTS = web.AppKey("session_hosts", DeploymentHandle)
FRONT = web.AppKey("front", FrontSessions)
HTTP = web.AppKey("http", aiohttp.ClientSession)


def create_front(config: ServerConfig, hosts: DeploymentHandle) -> web.Application:
    """The front's app: `config` as the single-process server's (its max_sessions: the cluster's
    capacity), `hosts` the session-host deployment."""
    app = web.Application(middlewares=[checked_request], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[SESSION_HOSTS] = hosts
    app[FRONT] = FrontSessions()
    app[OFFERS] = PerClientWindow(config.offers_per_minute, 60.0)
    app[server.PAGE] = server.read_page()
    app.router.add_get("/", server.index)
    app.router.add_get("/static/{name}", server.static)
    app.router.add_get("/avatars", server.avatars)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/offer", offer)
    app.router.add_get("/ws/{session_id}", websocket)
    app.router.add_get("/sessions/{session_id}", forward)
    app.router.add_delete("/sessions/{session_id}", forward)
    app.router.add_post("/sessions/{session_id}/say", forward)
    app.router.add_post("/sessions/{session_id}/interrupt", forward)
    app.cleanup_ctx.append(http_client)
    app.on_shutdown.append(end_calls)
    return app


async def http_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as http:
        app[HTTP] = http
        yield


async def end_calls(app: web.Application) -> None:
    """The front's calls end with it: their replicas close the sessions."""
    calls = [s.call for s in app[FRONT].sessions.values() if s.call is not None]
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)


async def health(request: web.Request) -> web.Response:
    front = request.app[FRONT]
    return web.json_response({"status": "ok", "sessions": len(front.sessions), "hosts": front.per_host()})


async def metrics(request: web.Request) -> web.Response:
    """The replicas' figures merged; a replica that does not answer is left out (and forgotten)."""
    front, http = request.app[FRONT], request.app[HTTP]

    async def text(host: str, url: str) -> str:
        try:
            async with http.get(f"{url}/metrics") as reply:
                return await reply.text()
        except aiohttp.ClientError:
            front.hosts.pop(host, None)
            return ""

    texts = await asyncio.gather(*(text(host, url) for host, url in list(front.hosts.items())))
    return web.Response(text=merge(texts), headers={"Content-Type": CONTENT_TYPE})


async def offer(request: web.Request) -> web.Response:
    config, front = request.app[CONFIG], request.app[FRONT]
    client = client_address(request)
    body = await read_json(request, server.OFFER_EXAMPLE)
    server.parse_offer(body, config)  # a bad offer is answered here, not by a replica
    if not request.app[OFFERS].take(client):
        raise json_error(
            web.HTTPTooManyRequests,
            f"at most {config.offers_per_minute} offers a minute per client; try again later",
        )
    if front.draining:
        raise json_error(web.HTTPServiceUnavailable, "the server is shutting down; try again later")
    server.check_capacity(front, config, client)
    front.pending[client] = front.pending.get(client, 0) + 1
    call = cast(
        DeploymentResponseGenerator,
        request.app[SESSION_HOSTS].options(stream=True, method_name="open").remote(body),
    )
    try:
        first = await asyncio.wait_for(anext(call), config.connect_timeout_s)
    except asyncio.CancelledError:  # the front is stopping: no session is made for this offer
        call.cancel()
        raise
    except Exception as e:  # no replica took it in time, or its replica failed
        call.cancel()
        log.warning("an offer found no session host: %r", e)
        raise json_error(
            web.HTTPServiceUnavailable, "no session host could take the session; try again later"
        ) from None
    finally:
        front.pending[client] -= 1
        if not front.pending[client]:
            del front.pending[client]
    front.hosts[first["host"]] = first["url"]
    answer = first["body"]
    if first["status"] == 200:
        session = RemoteSession(
            answer["session_id"], answer["token"], first["url"], first["host"], client, answer["speech_error"]
        )
        front.sessions[session.id] = session
        session.call = asyncio.create_task(hold(front, session, call))
    return web.json_response(answer, status=first["status"])


async def hold(front: FrontSessions, session: RemoteSession, call: DeploymentResponseGenerator) -> None:
    """Waits out the session's call; when it ends (the session closed) or fails (its replica
    died), the front forgets the session."""
    try:
        async for _ in call:
            pass
    except asyncio.CancelledError:
        call.cancel()
        raise
    except Exception as e:
        log.warning("session %s: its host %s failed: %r", session.id, session.host, e)
        front.hosts.pop(session.host, None)
    finally:
        front.sessions.pop(session.id, None)


async def forward(request: web.Request) -> web.Response:
    """A session's request, answered by its replica's server."""
    session = request.app[FRONT].known(request)
    headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
    body = await request.read() if request.can_read_body else None
    try:
        async with request.app[HTTP].request(
            request.method, session.url + request.path_qs, headers=headers, data=body
        ) as reply:
            answer = web.Response(
                status=reply.status,
                body=await reply.read(),
                headers={name: reply.headers[name] for name in REPLIED_HEADERS if name in reply.headers},
            )
    except aiohttp.ClientError as e:  # its replica is gone; the failed call forgets the session
        log.warning("session %s: its host %s cannot be reached: %r", session.id, session.host, e)
        raise json_error(web.HTTPNotFound, "there is no session with this id") from None
    return answer


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """The session's websocket input, relayed to its replica's server message for message (close
    codes included); the checks the server makes before accepting one are made here first."""
    config, session = request.app[CONFIG], request.app[FRONT].known(request)
    if not session.authorizes(request.query.get("token", "")):
        raise json_error(web.HTTPUnauthorized, "the token does not match this session")
    if session.speech_error:
        raise json_error(web.HTTPServiceUnavailable, session.speech_error)
    if session.websocket is not None:
        raise json_error(web.HTTPConflict, "this session already has a websocket input")
    ws = input_websocket(config)
    session.websocket = ws
    try:
        upstream = await request.app[HTTP].ws_connect(
            session.url + request.path_qs, max_msg_size=config.max_message_bytes, compress=0
        )
    except aiohttp.ClientError as e:
        session.websocket = None
        log.warning("session %s: its host refused the websocket: %r", session.id, e)
        raise json_error(web.HTTPBadGateway, "the session's host did not take the websocket") from None
    try:
        await ws.prepare(request)
        await relay(ws, upstream)
    finally:
        session.websocket = None
        await upstream.close()
    return ws


async def relay(viewer: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Messages both ways until either side closes; the other side is closed with its code."""
    ends = [asyncio.create_task(pump(viewer, upstream)), asyncio.create_task(pump(upstream, viewer))]
    done, pending = await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    code, reason = done.pop().result()
    for side in (viewer, upstream):
        if not side.closed:
            await side.close(code=code, message=reason)


async def pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> tuple[int, bytes]:
    """Forwards text and binary messages; returns the close code and reason that ended it."""
    while True:
        message = await source.receive()
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.CLOSE:
            return message.data, (message.extra or "").encode()
        else:  # closing, closed, or an error (too big, broken): the code aiohttp closed it with
            return source.close_code or 1000, b""


class Signalling:
    """Runs the front on `config.host:config.port` from the moment the replica starts."""

    def __init__(self, config: ServerConfig, cluster: ClusterConfig, hosts: DeploymentHandle) -> None:
        front = dataclasses.replace(config, max_sessions=cluster.capacity)
        self.runner = web.AppRunner(create_front(front, hosts))
        self.config = front
        self.started = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> str:
        await self.runner.setup()
        await web.TCPSite(self.runner, self.config.host, self.config.port).start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def url(self) -> str:
        """Where the front listens (once it does)."""
        return await self.started

    async def drain(self, timeout_s: float) -> int:
        """Takes no new sessions and waits, at most `timeout_s`, for the live ones to end; returns
        how many are still live."""
        front = self.runner.app[FRONT]
        front.draining = True
        calls = [session.call for session in front.sessions.values() if session.call is not None]
        if calls:
            await asyncio.wait(calls, timeout=timeout_s)
        return len(front.sessions)

    async def __del__(self) -> None:
        await self.runner.cleanup()


SIGNALLING = serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1)(Signalling)
