"""The replica as a Ray actor: a :class:`ReplicaServer` in an async actor, pinned to its
replica's Ray node. Its driver (:mod:`node_agent.replica._host`) creates it."""

from __future__ import annotations

import asyncio
import logging

import ray

from astra import telemetry
from astra._gen.astra.v1 import replica_pb2
from astra.config import OtelSettings
from node_agent.replica._server import ReplicaServer
from node_agent.replica._settings import ReplicaSettings


class ReplicaActor:
    """One replica's model server, in its app's Ray cluster.

    Ray runs its async methods on the actor's event loop, where the gRPC server lives
    too. Errors of :meth:`start` reach the driver as the cause of a ``RayTaskError``.
    The methods are marked ``ray.method`` (nothing changes at run time), which is how
    Ray types ``handle.method.remote()`` for the driver.
    """

    def __init__(self, replica: bytes, settings: dict[str, object]) -> None:
        """
        Args:
            replica: the serialized ``astra.v1.Replica``.
            settings: :meth:`ReplicaSettings.to_dict`'s form.
        """
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
        )
        spec = replica_pb2.Replica.FromString(replica)
        replica_settings = ReplicaSettings.from_dict(settings)
        if replica_settings.otel is not None:
            otel = OtelSettings(**replica_settings.otel)
            service_name = f"{otel.service_name}-replica"
            telemetry.configure(otel.model_copy(update={"service_name": service_name}))
        self._server = ReplicaServer(spec.models, replica_settings)

    @ray.method
    async def start(self) -> tuple[str, str]:
        """Load the models and serve; returns the endpoint and execution provider.

        Raises:
            ModelError: a model cannot be served (the replica fails for good).
        """
        serving = await self._server.start()
        return serving.endpoint, serving.execution_provider

    @ray.method
    async def serve(self) -> None:
        """Return once the server has stopped (the driver watches the actor with it)."""
        await self._server.wait()

    @ray.method
    async def drain(self) -> None:
        """Take no new inference; return once those in flight have finished."""
        await self._server.drain()

    @ray.method
    async def stop(self) -> None:
        """Stop serving; flush telemetry (off the loop: exporting blocks)."""
        await self._server.stop()
        await asyncio.to_thread(telemetry.shutdown)
