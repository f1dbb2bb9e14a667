"""Who may use the server and which session: the app's shared state, the checks every request
passes (Host, Origin), JSON bodies read safely, bearer tokens, and JSON errors."""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from aiohttp import web

from streaming.avatars import AvatarCache
from streaming.config import ServerConfig
from streaming.ice import loopback_address
from streaming.limits import PerClientWindow
from streaming.session import Session, SessionRegistry

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", ServerConfig)
SESSIONS = web.AppKey("sessions", SessionRegistry)
AVATARS = web.AppKey("avatars", AvatarCache)
TTS = web.AppKey("tts", ThreadPoolExecutor)  # text-to-speech: espeak-ng keeps global state, one thread
OFFERS = web.AppKey("offers", PerClientWindow)  # offers by client address, a minute
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def json_error(error: type[web.HTTPError], message: str) -> web.HTTPError:
    headers = {"WWW-Authenticate": "Bearer"} if error is web.HTTPUnauthorized else None
    return error(text=json.dumps({"error": message}), content_type="application/json", headers=headers)


def client_address(request: web.Request) -> str:
    """The client's IP address (its TCP peer: behind a proxy, the proxy's)."""
    return request.remote or "unknown"


# ---- checks on every request --------------------------------------------------------------------


@web.middleware
async def checked_request(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuses requests for other host names (DNS rebinding) and from other sites' pages (a
    browser sends their Origin), and turns any unexpected error into a 500 without details."""
    config = request.app[CONFIG]
    if not host_allowed(request.host, config):
        raise json_error(web.HTTPForbidden, "this server does not answer to that host name")
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, request.host, config):
        raise json_error(web.HTTPForbidden, "pages of this origin may not use this server")
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:  # a bug: logged with its traceback here, never sent to the client
        log.exception("%s %s failed", request.method, request.path)
        raise json_error(web.HTTPInternalServerError, "internal error") from None


def host_allowed(host: str, config: ServerConfig) -> bool:
    name = _host_name(host)
    if config.allowed_hosts:
        return name in config.allowed_hosts
    return name in LOOPBACK_NAMES if loopback_address(config.host) else True


def origin_allowed(origin: str, host: str, config: ServerConfig) -> bool:
    """The server's own page (same host and port, whatever the scheme a proxy adds), or a
    configured origin. "null" (sandboxed or file pages) is never allowed."""
    if origin in config.allowed_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def _host_name(host: str) -> str:
    """'name:port', '[v6]:port' or 'name' -> the name alone, lower case."""
    host = host.lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# ---- bodies -------------------------------------------------------------------------------------


async def read_json(request: web.Request, example: str) -> object:
    """The request's JSON body; a 415 unless it says it is JSON, a 413 when it is over the size
    limit, else a 400 that shows `example` when it is not JSON."""
    if request.content_type != "application/json":
        raise json_error(
            web.HTTPUnsupportedMediaType,
            f"the body must be JSON (Content-Type: application/json) like {example}",
        )
    charset = request.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        raise json_error(web.HTTPUnsupportedMediaType, "the body's charset is unknown; send UTF-8") from None
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_body_bytes
        raise web.HTTPRequestEntityTooLarge(
            limit,
            request.content_length or limit + 1,
            text=json.dumps({"error": f"the body is larger than {limit} bytes"}),
            content_type="application/json",
        ) from None
    try:
        return json.loads(data.decode(charset))
    except (ValueError, RecursionError):  # not JSON, not in its charset, or nested too deep
        raise json_error(web.HTTPBadRequest, f"the body must be JSON like {example}") from None


# ---- tokens -------------------------------------------------------------------------------------


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise json_error(
            web.HTTPUnauthorized,
            "an 'Authorization: Bearer TOKEN' header with the session's token is required",
        )
    return token


def authorized_session(request: web.Request, token: str) -> Session:
    """The session named in the URL, if `token` is its token; else a 404 or a 401."""
    session = request.app[SESSIONS].get(request.match_info["session_id"])
    if session is None:
        raise json_error(web.HTTPNotFound, "there is no session with this id")
    if not session.authorizes(token):
        raise json_error(web.HTTPUnauthorized, "the token does not match this session")
    return session


def speaking_session(request: web.Request, token: str) -> Session:
    """An authorized session whose avatar can speak; else the reason, as a 503."""
    session = authorized_session(request, token)
    if session.pipeline is None:
        raise json_error(web.HTTPServiceUnavailable, session.avatar.speech_error)
    return session


def controlled(session: Session) -> None:
    """A control (say, interrupt) within the session's rate; else a 429."""
    if not session.controls.take():
        raise json_error(web.HTTPTooManyRequests, "too many controls for this session: slow down")
