"""The seam between the agent and what runs replicas (Ray and the model servers).

The agent hands a :class:`ReplicaRuntime` the replicas assigned to its node and
forwards every status the runtime reports to the Node service. A runtime is made by a
:data:`RuntimeFactory` given the agent's ``report`` callback; ``astra agent
--runtime module:factory`` loads one by name (a :class:`NamedRuntime`), which is handed
the agent's settings too.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from astra._gen.astra.v1 import node_service_pb2, replica_pb2
from astra.config import Settings

#: How a runtime reports a replica's phase (STARTING, READY with its endpoint, DRAINING,
#: DRAINED, FAILED with a reason). Never blocks; the agent sends it on.
ReportStatus = Callable[[node_service_pb2.ReplicaStatusReport], None]


@runtime_checkable
class ReplicaRuntime(Protocol):
    """Runs the replicas placed on one node.

    The agent calls these methods one at a time, in the order assignments arrive. Each
    returns promptly: the work (starting Ray, loading models, finishing in-flight
    requests) goes on in the runtime, which reports its progress through ``report``.
    """

    async def start(self, replica: replica_pb2.Replica) -> None:
        """Run ``replica``, or bring a running one to this spec (e.g. new models, or
        its Ray head's address). Report STARTING, then READY or FAILED."""

    async def drain(self, name: str) -> None:
        """Stop taking requests for replica ``name`` and let those in flight finish.
        Report DRAINING, then DRAINED (or FAILED)."""

    async def stop(self, name: str) -> None:
        """Stop replica ``name`` now and forget it. Unknown names are ignored."""

    async def close(self) -> None:
        """Stop every replica and release what the runtime holds. Idempotent."""


RuntimeFactory = Callable[[ReportStatus], ReplicaRuntime]


class NamedRuntime(Protocol):
    """What ``--runtime module:attribute`` names: called with the agent's ``report``
    callback and its settings (``node_address`` resolved), makes the runtime."""

    def __call__(self, report: ReportStatus, *, settings: Settings) -> ReplicaRuntime: ...


def load_runtime_factory(spec: str, settings: Settings) -> RuntimeFactory:
    """The :class:`NamedRuntime` ``module:attribute`` (e.g.
    ``node_agent.runtime:RayRuntime``), given ``settings``.

    Raises:
        ValueError: ``spec`` is not ``module:attribute`` or names nothing callable.
        ImportError: the module does not import.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"runtime {spec!r} must be module:attribute")
    named: NamedRuntime | None = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(named):
        raise ValueError(f"runtime {spec!r}: {module_name} has no callable {attribute}")
    return functools.partial(named, settings=settings)
