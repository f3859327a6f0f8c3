"""What the agent and a replica's driver process (``python -m node_agent.replica``) say
to each other. No Ray here: the agent imports this, not Ray.

- The agent writes one JSON line of :class:`HostConfig` on the driver's stdin, then
  commands, one per line: ``drain``. Closing stdin stops the replica.
- The driver writes events on its stdout, one JSON object per line: ``ready`` (with
  ``endpoint`` and ``execution_provider``), ``failed`` (with ``message``), ``drained``.
- It exits 0 when stopped, :data:`EXIT_FAILED` when the replica failed for good (a bad
  model: restarting cannot help), anything else when it crashed.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from astra._gen.astra.v1 import replica_pb2
from node_agent.replica._settings import ReplicaSettings

#: The driver's exit code for a replica that failed for good.
EXIT_FAILED = 3
#: The command that drains the replica.
DRAIN = "drain"

READY = "ready"
FAILED = "failed"
DRAINED = "drained"


@dataclass(frozen=True, slots=True)
class HostConfig:
    """What a replica's driver needs: where its Ray node is, and the actor to run there.

    Attributes:
        gcs_address: the cluster's GCS, ``ip:port``.
        temp_dir: the Ray node's temp dir; the driver attaches to that node.
        node_ip: the Ray node's IP address.
        namespace: the Ray namespace of the actor.
        actor_name: the actor's name in that namespace.
        replica: the replica (its models are served).
        settings: how the replica serves.
        num_cpus: CPUs the actor holds.
        num_gpus: GPUs the actor holds.
        resources: custom resources the actor holds (pinning it to its node).
    """

    gcs_address: str
    temp_dir: str
    node_ip: str
    namespace: str
    actor_name: str
    replica: replica_pb2.Replica
    settings: ReplicaSettings
    num_cpus: float = 1.0
    num_gpus: int = 0
    resources: dict[str, float] = field(default_factory=dict)

    def to_line(self) -> bytes:
        """One JSON line, read back by :meth:`from_line`."""
        data: dict[str, Any] = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("replica", "settings")
        }
        data["replica"] = base64.b64encode(self.replica.SerializeToString()).decode()
        data["settings"] = self.settings.to_dict()
        return json.dumps(data).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> HostConfig:
        """The config :meth:`to_line` wrote."""
        data = json.loads(line)
        data["replica"] = replica_pb2.Replica.FromString(base64.b64decode(data["replica"]))
        data["settings"] = ReplicaSettings.from_dict(data["settings"])
        return cls(**data)


def event(kind: str, **fields: str) -> bytes:
    """One event line."""
    return json.dumps({"event": kind, **fields}).encode() + b"\n"
