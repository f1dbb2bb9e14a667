"""The server's avatars: the engine's renderer for a bundle, its speech models or the reason why
not, made once and shared."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from engine.avatar.bundle import MotionStats
from engine.pipeline.idle import IdleMotion
from engine.types import FaceParams
from streaming.avatars import AvatarCache, EngineOptions, LiveAvatar, bundle_names, engine_avatar_factory

SIZE = 64


def test_a_bundle_is_rendered_by_the_engine_and_speaks_or_says_why(avatar):
    live = engine_avatar_factory(EngineOptions(size=SIZE))("default")
    assert live.name == "default" and live.renderer.size == SIZE
    frame = live.renderer.render(
        0, FaceParams(np.repeat(live.rest.array, live.renderer.past + 1, 0))
    )  # at rest
    assert (
        frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8 and frame.std() > 10
    )  # a picture, not a blank
    if live.speech is None:  # until the models are trained: a reason that says what to do
        assert (
            "speech input is unavailable for avatar 'default'" in live.speech_error
            and "train" in live.speech_error
        )
    else:
        assert live.speech.wait_frames >= 1


def test_the_idle_avatar_moves_on_the_engine_renderer(avatar):
    live = engine_avatar_factory(EngineOptions(size=SIZE))("default")
    idle = IdleMotion(live.rest, live.motion, seed=0)
    frames = [live.renderer.render(i, idle.params(range(i - live.renderer.past, i + 1))) for i in (0, 45)]
    assert np.abs(frames[0].astype(float) - frames[1]).mean() > 0.5


def test_an_avatar_without_speech_needs_the_reason():
    with pytest.raises(ValueError):
        LiveAvatar("x", renderer=None, rest=FaceParams.neutral(), motion=MotionStats())


def test_bundle_names_lists_the_bundles():
    assert "default" in bundle_names()


async def test_the_cache_makes_each_avatar_once_and_retries_after_a_failure():
    calls: list[str] = []
    fail = threading.Event()
    fail.set()

    def factory(name: str) -> str:
        calls.append(name)
        if fail.is_set():
            fail.clear()
            raise LookupError("not yet")
        return f"avatar {name}"

    cache = AvatarCache(factory, retry_s=0)
    with pytest.raises(LookupError):
        await cache.get("a")
    results = await asyncio.gather(*(cache.get("a") for _ in range(3)))
    assert results == ["avatar a"] * 3 and calls == ["a", "a"]


async def test_the_cache_remembers_a_failure_for_retry_s():
    calls: list[str] = []

    def factory(name: str) -> str:
        calls.append(name)
        raise LookupError("broken")

    cache = AvatarCache(factory, retry_s=60)
    for _ in range(3):
        with pytest.raises(LookupError):
            await cache.get("a")
    assert calls == ["a"]


@pytest.mark.parametrize("cores, r2v", [(2, False), (8, True)])
def test_auto_serves_r2v_live_only_with_the_cores_for_it(cores, r2v):
    live = engine_avatar_factory(EngineOptions(), cores=cores)("default")  # default size: R2V's region pasted
    assert live.renderer.source.uses_r2v == r2v and live.renderer.size == 512
    forced = engine_avatar_factory(EngineOptions(size=SIZE, renderer="r2v"))("default")
    assert forced.renderer.source.uses_r2v
