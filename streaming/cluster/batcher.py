"""The batcher deployment: the frames that session hosts of one node ask for within a tick,
rendered as one batch (`@serve.batch` over a renderer's `render_batch`, the same batch size and
wait as the in-process renderer service). Meant for GPU nodes, where R2V on a batch of 8 costs
about what one frame does; on a CPU it only adds the hop (bench/cluster.py measures it)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from engine.types import FaceParams
from streaming.avatars import AvatarFactory, EngineOptions, FaceRenderer, LiveAvatar, engine_avatar_factory


class Batcher:
    """Renders for every avatar it is asked for (loaded on first use); each batch is split by
    avatar, one render_batch call per avatar."""

    def __init__(
        self,
        options: EngineOptions,
        factory: AvatarFactory | None = None,
        batch_max: int = 8,
        batch_wait_ms: float = 10.0,
    ) -> None:
        self.factory = factory or engine_avatar_factory(options)
        self.renderers: dict[str, FaceRenderer] = {}
        self.batch_sizes: Counter[int] = Counter()  # batch size -> batches of that size so far
        # serve.batch over a bound method: the batch size and wait are this replica's settings
        self._queue = serve.batch(max_batch_size=batch_max, batch_wait_timeout_s=batch_wait_ms / 1000)(
            self._render_batch
        )

    def shape(self, avatar: str) -> tuple[int, int]:
        """The avatar renderer's (size, past): what a session's windows must hold."""
        renderer = self.renderer(avatar)
        return renderer.size, renderer.past

    def renderer(self, avatar: str) -> FaceRenderer:
        if avatar not in self.renderers:
            self.renderers[avatar] = self.factory(avatar).renderer
        return self.renderers[avatar]

    async def render(self, avatar: str, window: np.ndarray) -> np.ndarray:
        """One window ([past + 1, NUM_PARAMS] float32) of an avatar -> its frame [size, size, 3]
        uint8; the calls that arrive within the wait are rendered as one batch."""
        return await self._queue((avatar, window))

    async def _render_batch(self, requests: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        self.batch_sizes[len(requests)] += 1
        frames: list[np.ndarray] = [np.empty(0, np.uint8)] * len(requests)
        for avatar in dict.fromkeys(name for name, _ in requests):
            mine = [i for i, (name, _) in enumerate(requests) if name == avatar]
            params = FaceParams(np.concatenate([requests[i][1] for i in mine]))
            rendered = await asyncio.to_thread(self.renderer(avatar).render_batch, params)
            for i, frame in zip(mine, rendered, strict=True):
                frames[i] = frame
        return frames

    def batches(self) -> dict[int, int]:
        """Batch size -> how many batches of that size were rendered."""
        return dict(self.batch_sizes)


BATCHER = serve.deployment(ray_actor_options={"num_cpus": 0})(Batcher)


class BatchedRenderer:
    """A FaceRenderer whose frames come from the batcher deployment: called from a session's
    worker thread, it waits there for its frame's batch."""

    def __init__(self, batcher: DeploymentHandle, avatar: str, size: int, past: int) -> None:
        self.batcher, self.avatar = batcher, avatar
        self.size, self.past = size, past

    def render(self, index: int, window: FaceParams) -> np.ndarray:
        return self.batcher.render.remote(self.avatar, window.array).result()

    def render_batch(self, windows: FaceParams) -> np.ndarray:
        span = self.past + 1
        calls = [
            self.batcher.render.remote(self.avatar, windows.array[start : start + span])
            for start in range(0, len(windows), span)
        ]
        return np.stack([call.result() for call in calls])


def batched_factory(
    options: EngineOptions, batcher: DeploymentHandle, factory: AvatarFactory | None = None
) -> AvatarFactory:
    """Avatars whose frames the batcher renders; the rest (speech models, rest pose, motion) is
    made here as usual, with the direct compositor on the CPU standing in for the renderer that
    is never called."""
    make = factory or engine_avatar_factory(dataclasses.replace(options, renderer="composite", device="cpu"))

    def batched(name: str) -> LiveAvatar:
        avatar = make(name)
        size, past = batcher.shape.remote(avatar.name).result()
        return dataclasses.replace(avatar, renderer=BatchedRenderer(batcher, avatar.name, size, past))

    return batched
