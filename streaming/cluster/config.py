"""Cluster mode's settings: how many session hosts, how many sessions each, the batcher, drain."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterConfig:
    address: str = ""  # a running Ray cluster to join ("auto", "ray://head:10001"); "": start one here
    replicas: int = 2  # session hosts at start, and the fewest autoscaling keeps
    max_replicas: int = 0  # the most autoscaling makes; 0: `replicas` (no autoscaling)
    sessions_per_replica: int = 4  # a session host's max_ongoing_requests: one open call per session
    host_cpus: float = 1.0  # Ray CPUs each session host reserves (placement, not a thread count)
    torch_threads: int = 1  # torch threads per render or model call in a session host (--threads)
    # Sessions render through the batcher deployment (`@serve.batch`): one batch per tick for
    # all the sessions of a node; meant for GPU nodes, where a batch costs about what one frame does.
    batcher: bool = False
    batcher_gpus: float = 0.0  # GPUs each batcher replica takes (1 on a GPU node)
    batcher_replicas: int = 1  # one per GPU
    # A replica told to stop (downscale, shutdown) takes no new sessions and lets its live ones
    # finish for at most this long, then closes them.
    drain_s: float = 300.0
    local_cpus: int = 0  # CPUs a locally started Ray may schedule on; 0: Ray counts them

    def __post_init__(self) -> None:
        if min(self.replicas, self.sessions_per_replica, self.batcher_replicas, self.torch_threads) < 1:
            raise ValueError(
                "replicas, sessions_per_replica, batcher_replicas and torch_threads must be at least 1"
            )
        if self.max_replicas and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas must be 0 or at least replicas ({self.replicas})")
        if self.host_cpus < 0 or self.batcher_gpus < 0 or self.drain_s <= 0 or self.local_cpus < 0:
            raise ValueError("host_cpus, batcher_gpus and local_cpus must be >= 0 and drain_s positive")

    @property
    def most_replicas(self) -> int:
        return self.max_replicas or self.replicas

    @property
    def capacity(self) -> int:
        """Sessions the cluster serves at most, with every replica up."""
        return self.most_replicas * self.sessions_per_replica
