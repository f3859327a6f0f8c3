"""Replica statuses, from the runtime to the Node service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import grpc

from astra._gen.astra.v1 import node_service_pb2, replica_pb2
from astra.rpc import Backoff, retry_call
from node_agent._config import AgentConfig
from node_agent._stubs import node_stub

_log = logging.getLogger(__name__)

#: Phases after which a draining replica needs nothing more.
SETTLED = frozenset({replica_pb2.REPLICA_PHASE_DRAINED, replica_pb2.REPLICA_PHASE_FAILED})
#: What a forgotten (stopped) replica counts as.
SETTLED_PHASE = replica_pb2.REPLICA_PHASE_DRAINED
#: Reports per request (the Node service takes up to 127).
_BATCH = 100


class StatusReporter:
    """Sends each replica's latest status to the Node service.

    :meth:`report` is the runtime's ``report`` callback: it never blocks. Statuses not
    sent yet are coalesced per replica (only the latest counts) and go in batches;
    transient failures are retried with backoff. Replicas the service answers as no
    longer assigned are handed to ``on_removed`` to be stopped.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        config: AgentConfig,
        *,
        on_removed: Callable[[list[str]], Awaitable[None]],
    ) -> None:
        self._stub = node_stub(channel)
        self._config = config
        self._on_removed = on_removed
        self._backoff = Backoff(base=config.backoff_base, cap=config.backoff_cap)
        self._pending: dict[str, node_service_pb2.ReplicaStatusReport] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._changed = asyncio.Event()
        #: The latest phase the runtime reported for each replica it runs.
        self.phases: dict[str, replica_pb2.ReplicaPhase] = {}

    def report(self, status: node_service_pb2.ReplicaStatusReport) -> None:
        """Queue ``status`` for sending (the runtime's ``report`` callback)."""
        self.phases[status.replica] = status.phase
        self._pending.pop(status.replica, None)  # keep the latest last, in report order
        self._pending[status.replica] = status
        self._idle.clear()
        self._wake.set()
        self._changed.set()

    def forget(self, name: str) -> None:
        """Drop what is known of replica ``name`` (it was stopped)."""
        self.phases.pop(name, None)
        self._pending.pop(name, None)
        self._changed.set()

    def unsettled(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` still running: neither DRAINED, FAILED nor forgotten."""
        return sorted(name for name in names if self.phases.get(name, SETTLED_PHASE) not in SETTLED)

    async def wait_settled(self, names: Iterable[str], *, deadline: float) -> bool:
        """Wait until none of ``names`` is :meth:`unsettled`, or until ``deadline``
        (``time.monotonic()``); ``True`` if they all settled in time."""
        names = set(names)
        while self.unsettled(names):
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait(), timeout=max(0.0, deadline - time.monotonic())
                )
            if time.monotonic() >= deadline:
                return False
        return True

    async def flush(self, *, timeout: float) -> bool:
        """Wait until every queued status was sent (or given up); ``True`` if in time."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Send statuses as they come, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                names = list(self._pending)[:_BATCH]
                await self._send([self._pending.pop(name) for name in names])
            self._idle.set()

    async def _send(self, reports: list[node_service_pb2.ReplicaStatusReport]) -> None:
        request = node_service_pb2.ReportReplicaStatusRequest(
            node=self._config.name, reports=reports
        )
        try:
            response = await retry_call(
                lambda: self._stub.ReportReplicaStatus(request, timeout=self._config.call_timeout),
                what=f"reporting {len(reports)} replica status(es)",
                backoff=self._backoff,
            )
        except grpc.aio.AioRpcError as exc:
            if len(reports) > 1:  # a batch fails whole: find the report at fault
                for report in reports:
                    await self._send([report])
                return
            _log.warning(
                "status of %s refused: %s %s", reports[0].replica, exc.code().name, exc.details()
            )
            return
        if response.removed_replicas:
            await self._on_removed(list(response.removed_replicas))
