"""The replicas assigned to this node, followed from the Node service and handed to the runtime."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import grpc

from astra._gen.astra.v1 import node_service_pb2, replica_pb2
from astra.rpc import TRANSIENT, Backoff
from node_agent._config import AgentConfig
from node_agent._reporter import StatusReporter
from node_agent._runtime import ReplicaRuntime
from node_agent._stubs import node_stub

_log = logging.getLogger(__name__)

#: Replica fields that are status, not spec: a change of only these starts nothing.
_STATUS_FIELDS = (
    "phase",
    "endpoint",
    "execution_provider",
    "message",
    "conditions",
    "create_time",
    "update_time",
)


def spec_of(replica: replica_pb2.Replica) -> bytes:
    """What the runtime acts on in ``replica``, comparable between two versions."""
    spec = replica_pb2.Replica()
    spec.CopyFrom(replica)
    for name in _STATUS_FIELDS:
        spec.ClearField(name)
    return spec.SerializeToString(deterministic=True)


class Assignments:
    """Follows WatchAssignments for this node: a snapshot, then changes, resumed from the
    last revision after a lost stream (from a fresh snapshot if that is too old).

    New or changed replicas go to ``runtime.start``, retired ones (``retire_time``
    set: they have left their routes) to ``runtime.drain``, removed ones to
    ``runtime.stop``.
    Without a runtime the agent only acknowledges its assignments: it keeps and logs
    them and reports nothing it cannot vouch for. Once :meth:`drain` began, new
    replicas are not started.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        config: AgentConfig,
        *,
        runtime: ReplicaRuntime | None,
        reporter: StatusReporter,
    ) -> None:
        self._stub = node_stub(channel)
        self._config = config
        self._runtime = runtime
        self._reporter = reporter
        self._backoff = Backoff(base=config.backoff_base, cap=config.backoff_cap)
        self._lock = asyncio.Lock()  # one runtime call at a time, in assignment order
        self._accepting = True
        self._started: set[str] = set()
        #: The replicas assigned to the node, as last received.
        self.replicas: dict[str, replica_pb2.Replica] = {}
        #: The revision the assignments are up to (0: none received yet).
        self.revision = 0

    async def run(self) -> None:
        """Follow the assignments until cancelled."""
        while True:
            request = node_service_pb2.WatchAssignmentsRequest(
                node=self._config.name, start_revision=self.revision + 1 if self.revision else 0
            )
            try:
                async for message in self._stub.WatchAssignments(request):
                    await self._apply(message)
                    self._backoff.reset()
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.OUT_OF_RANGE:
                    _log.info(
                        "assignments of %s resume from a snapshot: %s",
                        self._config.name,
                        exc.details(),
                    )
                    self.revision = 0
                    continue
                if exc.code() not in TRANSIENT:
                    raise
                _log.warning("assignment stream lost: %s %s", exc.code().name, exc.details())
            await self._backoff.sleep()

    async def _apply(self, message: node_service_pb2.WatchAssignmentsResponse) -> None:
        async with self._lock:
            gone = set(message.removed_replicas)
            if message.snapshot:
                gone |= self.replicas.keys() - {replica.name for replica in message.replicas}
            for name in sorted(gone):
                await self._stop(name)
            for replica in message.replicas:
                previous = self.replicas.get(replica.name)
                self.replicas[replica.name] = replica
                if replica.HasField("retire_time"):
                    if previous is None or not previous.HasField("retire_time"):
                        await self._retire(replica.name)
                elif previous is None or spec_of(previous) != spec_of(replica):
                    await self._start(replica)
            self.revision = message.revision

    async def _start(self, replica: replica_pb2.Replica) -> None:
        if self._runtime is None:
            _log.info(
                "%s assigned to %s (no replica runtime: acknowledged only)",
                replica.name,
                self._config.name,
            )
            return
        if not self._accepting:
            _log.warning("%s assigned to draining %s: not started", replica.name, self._config.name)
            return
        self._started.add(replica.name)
        try:
            await self._runtime.start(replica)
        except Exception as exc:
            _log.exception("starting %s failed", replica.name)
            self._report_failed(replica.name, f"start failed: {exc}")

    async def _retire(self, name: str) -> None:
        """Drain a replica its scheduler retired (it has left its routes); its record
        goes once it reports DRAINED. One never started here is reported DRAINED."""
        if name not in self._started or self._runtime is None:
            self._report(name, replica_pb2.REPLICA_PHASE_DRAINED, "retired")
            return
        _log.info("%s retired by its scheduler: draining it", name)
        await self._drain(self._runtime, name)

    async def _drain(self, runtime: ReplicaRuntime, name: str) -> None:
        try:
            await runtime.drain(name)
        except Exception as exc:
            _log.exception("draining %s failed", name)
            self._report_failed(name, f"drain failed: {exc}")

    def _report_failed(self, name: str, message: str) -> None:
        self._report(name, replica_pb2.REPLICA_PHASE_FAILED, message)

    def _report(self, name: str, phase: replica_pb2.ReplicaPhase, message: str) -> None:
        self._reporter.report(
            node_service_pb2.ReplicaStatusReport(replica=name, phase=phase, message=message)
        )

    async def _stop(self, name: str) -> None:
        self.replicas.pop(name, None)
        if name in self._started and self._runtime is not None:
            self._started.discard(name)
            try:
                await self._runtime.stop(name)
            except Exception:
                _log.exception("stopping %s failed", name)
        self._reporter.forget(name)

    async def stop(self, names: Iterable[str]) -> None:
        """Stop replicas the Node service says are no longer assigned."""
        async with self._lock:
            for name in names:
                await self._stop(name)

    async def drain(self) -> list[str]:
        """Start no new replica, and ask the runtime to drain every running one; returns
        the names of those draining."""
        async with self._lock:
            self._accepting = False
            names = sorted(self._started)
            if self._runtime is not None:  # replicas are started only with a runtime
                for name in names:
                    await self._drain(self._runtime, name)
            return names

    async def close(self) -> None:
        """Stop every replica and close the runtime."""
        async with self._lock:
            if self._runtime is not None:
                self._started.clear()
                await self._runtime.close()
