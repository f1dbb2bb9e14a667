"""Live sessions: one viewer's peer connection and the media clock all its tracks share."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection

from streaming.clock import MediaClock

log = logging.getLogger(__name__)


@dataclass
class Session:
    id: str
    token: str  # the bearer token that lets its viewer close it
    pc: RTCPeerConnection
    clock: MediaClock = field(default_factory=MediaClock)
    created: float = field(default_factory=time.time)  # wall-clock seconds

    @classmethod
    def open(cls, pc: RTCPeerConnection) -> Session:
        return cls(id=uuid.uuid4().hex, token=secrets.token_urlsafe(), pc=pc)

    def authorizes(self, token: str) -> bool:
        return secrets.compare_digest(token, self.token)


class SessionRegistry:
    """The server's live sessions by id. Closing is idempotent: a session closes once, whether
    its viewer, its connection state or the server's shutdown gets there first."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def add(self, session: Session) -> None:
        self._sessions[session.id] = session

    async def close(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        try:
            await session.pc.close()
        except Exception:  # aiortc can fail to close a connection whose negotiation broke half way
            log.exception("closing session %s", session_id)
        log.info("session %s closed after %.1f s", session_id, time.time() - session.created)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(session_id) for session_id in list(self._sessions)))
