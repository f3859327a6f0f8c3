"""The Ray-backed replica runtime behind the agent's :class:`~node_agent.ReplicaRuntime`
seam: per replica, a Ray node of its own (its cluster's head, or a worker joined to the
head) and the replica's actor on it, supervised and restarted on crashes.

``astra agent --runtime node_agent.runtime:RayRuntime`` runs it.
"""

from node_agent.runtime._procs import (
    MAX_TEMP_DIR,
    ChildProcess,
    RayNodeSpec,
    RayStartError,
    RedisTarget,
    ReplicaHost,
    free_ports,
    start_ray_node,
)
from node_agent.runtime._ray import RayRuntime, RayRuntimeConfig, ray_ip_for

__all__ = [
    "MAX_TEMP_DIR",
    "ChildProcess",
    "RayNodeSpec",
    "RayRuntime",
    "RayRuntimeConfig",
    "RayStartError",
    "RedisTarget",
    "ReplicaHost",
    "free_ports",
    "ray_ip_for",
    "start_ray_node",
]
