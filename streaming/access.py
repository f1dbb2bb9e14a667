"""Who may use which session: the app's shared state, bearer tokens, and JSON errors."""
from __future__ import annotations

import json

from aiohttp import web

from streaming.avatars import AvatarCache
from streaming.config import ServerConfig
from streaming.session import Session, SessionRegistry

CONFIG = web.AppKey("config", ServerConfig)
SESSIONS = web.AppKey("sessions", SessionRegistry)
AVATARS = web.AppKey("avatars", AvatarCache)


def json_error(error: type[web.HTTPError], message: str) -> web.HTTPError:
    headers = {"WWW-Authenticate": "Bearer"} if error is web.HTTPUnauthorized else None
    return error(text=json.dumps({"error": message}), content_type="application/json", headers=headers)


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise json_error(web.HTTPUnauthorized, "an 'Authorization: Bearer TOKEN' header with the session's token is required")
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
