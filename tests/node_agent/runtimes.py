"""A real, small replica runtime for tests: each replica is a TCP server on the node's
address (loopback unless its settings say otherwise) that answers every connection with its replica name, and drains like a server does
(no new connections, then waits for the open ones to close).

``astra agent --runtime tests.node_agent.runtimes:TcpRuntime`` loads it in a real agent
process; ``ASTRA_TEST_DRAIN_SECONDS`` holds each drain open that long at least, and
``ASTRA_TEST_DRAIN_HANG=1`` makes drains never finish (to test the drain timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter

from astra._gen.astra.v1 import node_service_pb2, replica_pb2
from astra.config import Settings
from node_agent import ReportStatus

Phase = replica_pb2.ReplicaPhase.ValueType


class TcpRuntime:
    """Implements :class:`node_agent.ReplicaRuntime` with one TCP server per replica."""

    def __init__(self, report: ReportStatus, *, settings: Settings | None = None) -> None:
        self._report = report
        self._host = (settings.node_address if settings else None) or "127.0.0.1"
        self._servers: dict[str, asyncio.Server] = {}
        self._endpoints: dict[str, str] = {}
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._clients: dict[str, set[asyncio.StreamWriter]] = {}
        self._idle: dict[str, asyncio.Event] = {}
        self.drain_seconds = float(os.environ.get("ASTRA_TEST_DRAIN_SECONDS", "0"))
        self.drain_hangs = os.environ.get("ASTRA_TEST_DRAIN_HANG") == "1"
        #: How many times each replica was started (or brought to a new spec).
        self.starts: Counter[str] = Counter()
        self.specs: dict[str, replica_pb2.Replica] = {}

    def _send(self, name: str, phase: Phase, message: str = "") -> None:
        self._report(
            node_service_pb2.ReplicaStatusReport(
                replica=name, phase=phase, endpoint=self._endpoints.get(name, ""), message=message,
                execution_provider="CPUExecutionProvider",
            )
        )  # fmt: skip

    async def start(self, replica: replica_pb2.Replica) -> None:
        name = replica.name
        self.starts[name] += 1
        self.specs[name] = replica
        if name in self._servers:
            return  # a new spec: nothing of it matters to a TCP server
        self._send(name, replica_pb2.REPLICA_PHASE_STARTING)

        clients: set[asyncio.StreamWriter] = set()
        idle = asyncio.Event()
        idle.set()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            clients.add(writer)
            idle.clear()
            try:
                writer.write(name.encode() + b"\n")
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                    await reader.read()  # until the client closes
            finally:
                writer.close()
                clients.discard(writer)
                if not clients:
                    idle.set()

        self._clients[name], self._idle[name] = clients, idle

        server = await asyncio.start_server(answer, self._host, 0)
        self._servers[name] = server
        port = server.sockets[0].getsockname()[1]
        self._endpoints[name] = f"{self._host}:{port}"
        self._send(name, replica_pb2.REPLICA_PHASE_READY)

    async def drain(self, name: str) -> None:
        if name in self._servers and name not in self._drains:
            self._send(name, replica_pb2.REPLICA_PHASE_DRAINING)
            self._drains[name] = asyncio.create_task(self._drain(name))

    async def _drain(self, name: str) -> None:
        server = self._servers[name]
        server.close()
        await asyncio.sleep(self.drain_seconds)
        if self.drain_hangs:
            await asyncio.Event().wait()
        await self._idle[name].wait()  # requests in flight finish
        self._send(name, replica_pb2.REPLICA_PHASE_DRAINED)

    async def stop(self, name: str) -> None:
        drain = self._drains.pop(name, None)
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        server = self._servers.pop(name, None)
        self._endpoints.pop(name, None)
        if server is not None:
            server.close()
        for writer in self._clients.pop(name, set()):
            writer.close()
        self._idle.pop(name, None)

    async def close(self) -> None:
        for name in list(self._servers):
            await self.stop(name)

    @property
    def running(self) -> set[str]:
        """The replicas serving now."""
        return {name for name, server in self._servers.items() if server.is_serving()}
