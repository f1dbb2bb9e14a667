"""A viewer's offer, read and checked before any peer connection is made for it: the JSON body
(POST /offer) and the shape of its SDP (sizes, sections, candidates)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

AVATAR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a bundle name under avatars/, never a path
INPUTS = ("websocket", "mic")
MEDIA_KINDS = ("audio", "video")


class OfferError(ValueError):
    """What is wrong with an offer, in one sentence for its sender."""


@dataclass(frozen=True)
class Offer:
    sdp: str
    avatar: str
    input: str = "websocket"  # "websocket" or "mic"
    echo: bool = False  # microphone input is played back to the viewer

    @classmethod
    def from_json(cls, body: object, default_avatar: str) -> Offer:
        """The offer in a parsed POST /offer body; raises OfferError."""
        if not isinstance(body, dict):
            raise OfferError('the body must be a JSON object like {"sdp": "...", "type": "offer"}')
        sdp, kind, avatar = body.get("sdp"), body.get("type"), body.get("avatar", default_avatar)
        input, echo = body.get("input", "websocket"), body.get("echo", False)
        if not isinstance(sdp, str) or not sdp.strip():
            raise OfferError("'sdp' must be a non-empty string")
        if kind != "offer":
            raise OfferError(f"'type' must be \"offer\", got {quoted(kind)}")
        if avatar != default_avatar and not (isinstance(avatar, str) and AVATAR_NAME.fullmatch(avatar)):
            raise OfferError("'avatar' must be an avatar name: letters, digits, '-' and '_'")
        if input not in INPUTS:
            raise OfferError(f"'input' must be one of {', '.join(INPUTS)}, got {quoted(input)}")
        if not isinstance(echo, bool):
            raise OfferError("'echo' must be true or false")
        return cls(sdp, avatar, input, echo)


def check_sdp(sdp: str, max_bytes: int, max_candidates: int) -> None:
    """Raises OfferError unless the SDP is small, has at most one audio and one video section (and
    nothing else) and at most `max_candidates` ICE candidates. The peer connection parses only
    what passes: a huge or many-sectioned SDP would hold the event loop, and each candidate makes
    the server send connectivity checks to an address of the sender's choosing."""
    size = len(sdp.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise OfferError(f"the SDP is {size} bytes; at most {max_bytes} bytes are accepted")
    if not sdp.isascii():
        raise OfferError("the SDP must be ASCII text")
    kinds = [line[2:].split(" ", 1)[0] for line in sdp.splitlines() if line.startswith("m=")]
    if any(kind not in MEDIA_KINDS for kind in kinds) or len(set(kinds)) < len(kinds):
        raise OfferError("the SDP may have one audio and one video section, nothing else")
    candidates = sum(line.startswith("a=candidate:") for line in sdp.splitlines())
    if candidates > max_candidates:
        raise OfferError(f"the SDP has {candidates} ICE candidates; at most {max_candidates} are accepted")


def quoted(value: object) -> str:
    """A JSON value quoted back to its sender, cut short."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."
