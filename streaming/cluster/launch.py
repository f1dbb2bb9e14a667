"""Cluster mode started: Ray started here or joined, the session hosts, the batcher (when on) and
the signalling front deployed as one Serve application; `deploy` returns the front's URL."""

from __future__ import annotations

import contextlib
import logging

import ray
from ray import serve
from ray.serve.deployment import Application
from ray.serve.exceptions import RayServeException

from streaming.avatars import AvatarFactory
from streaming.cluster.batcher import BATCHER
from streaming.cluster.config import ClusterConfig
from streaming.cluster.front import SIGNALLING
from streaming.cluster.host import SESSION_HOSTS
from streaming.config import ServerConfig

APP_NAME = "avatar"

log = logging.getLogger(__name__)


def start_ray(cluster: ClusterConfig) -> None:
    """Joins the Ray cluster at cluster.address, or starts one on this machine; Serve without its
    HTTP proxy (the front serves HTTP itself)."""
    if cluster.address:
        ray.init(address=cluster.address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=cluster.local_cpus or None, include_dashboard=False, logging_level=logging.WARNING)
    serve.start(proxy_location="Disabled")


def application(
    config: ServerConfig, cluster: ClusterConfig, factory: AvatarFactory | None = None
) -> Application:
    """The three deployments bound: `factory` makes the avatars (default: bundles, as the server)."""
    batcher = None
    if cluster.batcher:
        batcher = BATCHER.options(
            num_replicas=cluster.batcher_replicas,
            # every session of the node may wait on it at once
            max_ongoing_requests=max(cluster.capacity, config.batch_max),
            ray_actor_options={"num_cpus": 0, "num_gpus": cluster.batcher_gpus},
        ).bind(config.engine, factory, config.batch_max, config.batch_wait_ms)
    hosts = SESSION_HOSTS.options(
        max_ongoing_requests=cluster.sessions_per_replica,
        graceful_shutdown_timeout_s=cluster.drain_s,
        ray_actor_options={"num_cpus": cluster.host_cpus},
        **scaling(cluster),
    ).bind(config, cluster, factory, batcher)
    return SIGNALLING.bind(config, cluster, hosts)


def scaling(cluster: ClusterConfig) -> dict:
    """A fixed number of session hosts, or autoscaling between replicas and max_replicas on the
    sessions each holds (their open calls)."""
    if cluster.most_replicas == cluster.replicas:
        return {"num_replicas": cluster.replicas}
    return {
        "autoscaling_config": {
            "min_replicas": cluster.replicas,
            "initial_replicas": cluster.replicas,
            "max_replicas": cluster.most_replicas,
            "target_ongoing_requests": cluster.sessions_per_replica,
        }
    }


def deploy(config: ServerConfig, cluster: ClusterConfig, factory: AvatarFactory | None = None) -> str:
    """Runs the application (Ray started or joined first) and returns the front's URL."""
    if not ray.is_initialized():
        start_ray(cluster)
    front = serve.run(application(config, cluster, factory), name=APP_NAME, route_prefix=None)
    return front.url.remote().result()


def shutdown(drain_s: float = 0.0) -> None:
    """The front drains for at most `drain_s` (no new sessions, the live ones finish), then the
    application is deleted (the sessions still live close) and this process leaves Ray (a Ray
    instance it started stops). Again: nothing more happens."""
    if not ray.is_initialized():
        return
    if drain_s > 0:
        with contextlib.suppress(RayServeException):  # the application is not (or no longer) running
            live = serve.get_app_handle(APP_NAME).drain.remote(drain_s).result()
            if live:
                log.warning("%d session(s) still live after %.0f s of draining: closing them", live, drain_s)
    serve.delete(APP_NAME)  # this application only: a joined cluster may serve others
    ray.shutdown()
