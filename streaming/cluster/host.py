"""The session-host deployment: each replica runs the single-process server (streaming.app, its
batching included) on its node, and each session it serves is one streaming call that stays
open while the session lives, so Serve's router and autoscaler see the real load
(`max_ongoing_requests` = sessions per replica). Media flows between the viewer and the
replica's node directly; the front forwards the session's requests to the replica's server."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

import ray
import torch
from ray import serve
from ray.serve.handle import DeploymentHandle

from engine.runtime import tune_allocator
from streaming.avatars import AvatarFactory
from streaming.cluster.batcher import batched_factory
from streaming.cluster.config import ClusterConfig
from streaming.cluster.local import LocalServer
from streaming.config import ServerConfig
from streaming.ice import loopback_address

log = logging.getLogger(__name__)

# The replica's server takes offers from its front alone, on loopback: the clients' own limits
# (offers a minute, sessions per client) are the front's to apply.
FROM_FRONT = 1_000_000


def host_config(front: ServerConfig, sessions: int) -> ServerConfig:
    """A replica's server: the front's settings, on a free port of this node's address (the
    loopback address when the front is on loopback: the whole cluster is this machine), at most
    `sessions` sessions."""
    host = front.host if loopback_address(front.host) else ray.util.get_node_ip_address()
    return dataclasses.replace(
        front,
        host=host,
        port=0,
        max_sessions=sessions,
        max_sessions_per_client=sessions,
        offers_per_minute=FROM_FRONT,
        allowed_hosts=(),
        allowed_origins=(),
    )


class SessionHost:
    """`batcher`: the batcher deployment's handle, when sessions render through it."""

    def __init__(
        self,
        config: ServerConfig,
        cluster: ClusterConfig,
        factory: AvatarFactory | None = None,
        batcher: DeploymentHandle | None = None,
    ) -> None:
        tune_allocator()  # as run_server.py does: this process is a server too
        torch.set_num_threads(cluster.torch_threads)
        if batcher is not None:
            batcher._init(_prefer_local_routing=True)  # this node's batcher first (Serve's handle option)
            factory = batched_factory(config.engine, batcher, factory)
        self.server = LocalServer(host_config(config, cluster.sessions_per_replica), factory)
        self.name = ray.get_runtime_context().get_actor_name()  # its Ray actor, in namespace "serve"
        log.info("session host %s serving at %s", self.name, self.server.url)

    async def open(self, offer: object) -> AsyncIterator[dict]:
        """One session: yields the server's answer to `offer` ({"status", "body": the answer or
        the JSON error, "url": where the session's requests go, "host": this replica's actor name}), then,
        when a session was opened, stays open until it closes. Cancelling the call closes it."""
        status, body = await self.server.run(self.server.offer(offer))
        yield {"status": status, "body": body, "url": self.server.url, "host": self.name}
        if status != 200:
            return
        try:
            await self.server.run(self.server.session_closed(body["session_id"]))
        finally:  # the session ended, or its front is gone: either way, it closes
            await asyncio.shield(self.server.run(self.server.close_session(body["session_id"])))

    def __del__(self) -> None:
        """Serve's graceful shutdown: called once the replica's calls have ended or its
        graceful_shutdown_timeout_s (the drain time) is over; the sessions still live close."""
        self.server.stop()


SESSION_HOSTS = serve.deployment(ray_actor_options={"num_cpus": 1})(SessionHost)
