"""The live server's boundary against hostile clients, before and around a session: SDP bounds,
who may open sessions and for how long, clean 4xx without internals, avatar names (findings 2, 3,
10 and 11 of the security review; docs/SECURITY.md lists them with the limits that answer them).
A real server on loopback, real aiortc and aiohttp clients. Inside a session: test_server_hostile.py."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import aiohttp
import pytest
from hostile_clients import SIZE, bearer, offer_sdp, post
from live_server import gradient_avatar, live_server
from viewers import Viewer, open_session

from streaming.app import ServerConfig
from streaming.avatars import engine_avatar_factory
from streaming.probe import loudness_speech

pytestmark = pytest.mark.usefixtures("loopback_ice")


# ---- 2. SDP is bounded before a peer connection is made ----------------------------------------


def with_video_sections(sdp: str, count: int) -> str:
    head, *sections = re.split(r"(?=^m=)", sdp, flags=re.M)
    video = next(s for s in sections if s.startswith("m=video"))
    return head + "".join(sections) + video * (count - 1)


def with_candidates(sdp: str, count: int) -> str:
    lines = "".join(
        f"a=candidate:{i} 1 udp 2130706431 10.{i // 250}.{i % 250}.1 9 typ host\r\n" for i in range(count)
    )
    return sdp.replace("a=end-of-candidates\r\n", "", 1).replace("a=mid:0\r\n", "a=mid:0\r\n" + lines, 1)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda sdp: sdp + "a=x-padding:" + "x" * 40_000 + "\r\n", "bytes"),
        (lambda sdp: with_video_sections(sdp, 2), "section"),
        (lambda sdp: with_video_sections(sdp, 1500), "bytes"),
        (lambda sdp: with_candidates(sdp, 100), "candidates"),
    ],
    ids=["40KiB", "2 video sections", "1500 sections", "100 candidates"],
)
async def test_oversized_or_overshaped_sdp_is_refused_at_once(
    http: aiohttp.ClientSession, change, words: str
) -> None:
    """Finding 2: size, sections per kind and candidates are bounded before aiortc sees the SDP."""
    async with live_server(ServerConfig(port=0, size=SIZE)) as url:
        start = time.monotonic()
        status, body = await post(http, f"{url}/offer", {"sdp": change(await offer_sdp()), "type": "offer"})
        assert status in (400, 413) and words in body["error"], (status, body)
        assert time.monotonic() - start < 1.0
        async with http.get(f"{url}/health") as response:
            assert (await response.json())["sessions"] == 0


# ---- 3. who may open sessions, how many, for how long -------------------------------------------


async def test_one_client_cannot_take_every_session_or_offer_without_end(http: aiohttp.ClientSession) -> None:
    """Finding 3: per-client session cap and offer rate."""
    config = ServerConfig(port=0, size=SIZE, max_sessions=4, max_sessions_per_client=1, offers_per_minute=3)
    async with live_server(config) as url:
        sdp = await offer_sdp()
        first = await post(http, f"{url}/offer", {"sdp": sdp, "type": "offer"})
        second = await post(http, f"{url}/offer", {"sdp": sdp, "type": "offer"})
        assert first[0] == 200 and second[0] == 429 and "per client" in second[1]["error"], second
        async with http.delete(
            f"{url}/sessions/{first[1]['session_id']}", headers=bearer(first[1])
        ) as response:
            assert response.status == 200
        third = await post(http, f"{url}/offer", {"sdp": sdp, "type": "offer"})
        fourth = await post(http, f"{url}/offer", {"sdp": sdp, "type": "offer"})
        assert third[0] == 200 and fourth[0] == 429 and "a minute" in fourth[1]["error"], fourth


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Host": "evil.example"}, {"Origin": "null"}],
    ids=["foreign origin", "rebound host", "null origin"],
)
async def test_other_sites_cannot_open_sessions(http: aiohttp.ClientSession, headers: dict) -> None:
    """Finding 3: a web page of another site (Origin), or a rebound DNS name (Host), is refused."""
    async with live_server(ServerConfig(port=0, size=SIZE)) as url:
        status, body = await post(
            http, f"{url}/offer", {"sdp": await offer_sdp(), "type": "offer"}, headers=headers
        )
        assert status == 403, (status, body)
        # the page's own origin is welcome
        status, _ = await post(
            http, f"{url}/offer", {"sdp": await offer_sdp(), "type": "offer"}, headers={"Origin": url}
        )
        assert status == 200


async def test_an_offer_must_be_json(http: aiohttp.ClientSession) -> None:
    """Finding 3: a form post (which any page may send without asking) is not an offer."""
    async with live_server(ServerConfig(port=0, size=SIZE)) as url:
        body = json.dumps({"sdp": await offer_sdp(), "type": "offer"})
        async with http.post(f"{url}/offer", data=body, headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 415, await response.text()


async def test_sessions_end_at_their_maximum_lifetime(http: aiohttp.ClientSession) -> None:
    """Finding 3: a session lives at most max_session_s."""
    async with live_server(ServerConfig(port=0, size=SIZE, max_session_s=1.5)) as url:
        viewer = Viewer()
        try:
            session = await viewer.connect(http, url)
            await asyncio.sleep(3)
            async with http.get(
                f"{url}/sessions/{session['session_id']}", headers=bearer(session)
            ) as response:
                assert response.status == 404
        finally:
            await viewer.pc.close()


# ---- 10. clean 4xx, no internals ----------------------------------------------------------------


ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.-]+/)+[\w.-]*")


def clean(body: str) -> bool:
    return "Traceback" not in body and "Error:" not in body and not ABSOLUTE_PATH.search(body)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ('{"sdp": "x", "type": "offer"}', "application/json; charset=no-such-charset"),
        ("[" * 30_000 + "]" * 30_000, "application/json"),
        (
            '{"sdp": "v=0\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96\\r\\na=rtpmap:x\\r\\n", "type": "offer"}',
            "application/json",
        ),
        ('{"sdp": "%s", "type": "offer", "avatar": "broken"}', "application/json"),
    ],
    ids=["unknown charset", "deep nesting", "broken sdp", "avatar raising"],
)
async def test_bad_offers_get_clean_4xx(http: aiohttp.ClientSession, data: str, content_type: str) -> None:
    """Finding 10."""

    def factory(name: str):  # noqa: ANN202
        if name == "broken":
            raise RuntimeError(f"{Path.home()}/secret/model.pt: unpickling failed")
        return gradient_avatar(name, SIZE, loudness_speech())

    async with live_server(ServerConfig(port=0, size=SIZE), factory) as url:
        if "%s" in data:
            data = data % (await offer_sdp()).replace("\r\n", "\\r\\n")
        async with http.post(f"{url}/offer", data=data, headers={"Content-Type": content_type}) as response:
            text = await response.text()
            assert 400 <= response.status < 500 and clean(text), (response.status, text)
            assert "error" in await response.json(content_type=None)


async def test_non_ascii_tokens_are_refused_cleanly(http: aiohttp.ClientSession) -> None:
    """Finding 10: a token the session's cannot be compared with is a 401, not a 500."""
    async with live_server(ServerConfig(port=0, size=SIZE)) as url:
        session = await open_session(http, url)
        async with http.get(
            f"{url}/sessions/{session['session_id']}", headers={"Authorization": "Bearer h\u00e9"}
        ) as response:
            assert response.status == 401
        async with http.get(f"{url}/ws/{session['session_id']}?token=%C3%A9") as response:
            assert response.status == 401


# ---- 11. avatars: failures cached, names only under avatars/ ------------------------------------


async def test_a_broken_avatar_is_not_reloaded_on_every_offer(http: aiohttp.ClientSession) -> None:
    """Finding 11."""
    calls: list[str] = []

    def factory(name: str):  # noqa: ANN202
        calls.append(name)
        if name == "broken":
            raise ValueError("broken bundle")
        return gradient_avatar(name, SIZE)

    async with live_server(ServerConfig(port=0, size=SIZE), factory) as url:
        sdp = await offer_sdp()
        for _ in range(3):
            status, _ = await post(http, f"{url}/offer", {"sdp": sdp, "type": "offer", "avatar": "broken"})
            assert status == 400
    assert calls.count("broken") == 1, calls


async def test_avatar_names_are_not_looked_up_in_the_working_directory(
    http: aiohttp.ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, avatar
) -> None:
    """Finding 11: a viewer's avatar name is a bundle under avatars/, never a path from the
    server's current directory."""
    (tmp_path / "planted").symlink_to(avatar.path, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    config = ServerConfig(port=0, size=SIZE)
    engine = engine_avatar_factory(config.engine)
    async with live_server(
        config, lambda name: gradient_avatar(name, SIZE) if name == "default" else engine(name)
    ) as url:
        status, body = await post(
            http, f"{url}/offer", {"sdp": await offer_sdp(), "type": "offer", "avatar": "planted"}
        )
        assert status == 400 and "unknown avatar" in body["error"], (status, body)
