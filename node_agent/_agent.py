"""The node agent: joins the fleet, stays in it, runs what is placed on it, and leaves
gracefully."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from astra._gen.astra.v1 import node_pb2
from astra.rpc import Backoff, open_channel
from astra.server import Tasks
from node_agent._assignments import Assignments
from node_agent._config import AgentConfig
from node_agent._membership import Membership
from node_agent._probe import Machine, probe_machine, read_usage
from node_agent._reporter import StatusReporter
from node_agent._runtime import RuntimeFactory

_log = logging.getLogger(__name__)

#: How long the last calls of a graceful exit (drain, deregister) keep retrying.
LEAVE_TIMEOUT = 10.0
#: How long queued replica statuses get to reach the Node service before deregistering.
_FLUSH_TIMEOUT = 5.0


class NodeAgent:
    """One machine's agent.

    :meth:`run` registers the node, then heartbeats it and follows its assignments
    until :meth:`request_drain` (SIGTERM), or a DRAIN directive (``astra agent
    prestop``, or a drain from an operator). Then it exits gracefully:

    1. the node is marked DRAINING (it leaves every route, takes no new replica);
    2. the runtime drains every replica it runs;
    3. the agent waits until they all report DRAINED (or FAILED), or the drain
       timeout passes, then stops them;
    4. it stops heartbeating and deregisters the node.

    Heartbeats go on during the drain, so a long drain is not mistaken for a death.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        runtime: RuntimeFactory | None = None,
        machine: Machine | None = None,
        usage: Callable[[], node_pb2.NodeUsage] = read_usage,
    ) -> None:
        """
        Args:
            config: the agent's configuration.
            runtime: makes the runtime that runs replicas; without one, assignments
                are only acknowledged.
            machine: what the machine offers; probed when not given.
            usage: reads the machine's usage for each heartbeat.
        """
        self._config = config
        self._runtime_factory = runtime
        self._machine = machine
        self._usage = usage
        self._drain_requested = asyncio.Event()
        self._drain_reason = ""
        self.membership: Membership | None = None
        self.assignments: Assignments | None = None

    def request_drain(self, reason: str) -> None:
        """Leave gracefully (SIGTERM's handler). Idempotent; safe from signal handlers
        registered with ``loop.add_signal_handler``."""
        if not self._drain_requested.is_set():
            _log.info("%s leaves: %s", self._config.name, reason)
            self._drain_reason = reason
            self._drain_requested.set()

    async def run(self) -> int:
        """Run until the node has left; returns the exit code: 0 once the node is
        deregistered (or was never registered), 1 if deregistration failed.

        Raises:
            RegistrationError: the Resource service refused the node for good.
        """
        config = self._config
        machine = self._machine
        if machine is None:
            machine = await asyncio.to_thread(probe_machine)
        membership = Membership(config, machine, usage=self._usage, on_drain=self.request_drain)
        channel = open_channel(
            config.server, backoff=Backoff(base=config.backoff_base, cap=config.backoff_cap)
        )
        reporter = StatusReporter(channel, config, on_removed=self._stop_removed)
        runtime = self._runtime_factory(reporter.report) if self._runtime_factory else None
        assignments = Assignments(channel, config, runtime=runtime, reporter=reporter)
        self.membership, self.assignments = membership, assignments
        tasks = Tasks()
        try:
            joining = tasks.spawn(membership.register(), name="astra.agent.register")
            if not await self._until_drain(joining):
                return 0  # asked to leave before it joined: nothing to drain
            heartbeats = tasks.spawn(membership.heartbeat(), name="astra.agent.heartbeat")
            tasks.spawn(reporter.run(), name="astra.agent.reporter")
            following = tasks.spawn(assignments.run(), name="astra.agent.assignments")
            await self._until_drain(heartbeats, following)
            await self._leave(membership, assignments, reporter, heartbeats)
            deregistered = await membership.deregister(deadline=time.monotonic() + LEAVE_TIMEOUT)
            return 0 if deregistered else 1
        finally:
            await tasks.close()
            await assignments.close()
            await membership.close()
            await channel.close()

    async def _until_drain(self, *tasks: asyncio.Task[object]) -> bool:
        """Wait for a drain request; a task among ``tasks`` that ends first raises its
        error (or, for registration, ends the wait). ``False`` if a drain came before
        the first task finished."""
        drain = asyncio.ensure_future(self._drain_requested.wait())
        try:
            done, _ = await asyncio.wait({drain, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drain.cancel()
        for task in tasks:
            if task in done:
                task.result()  # raises a failure
                return True
        return False

    async def _leave(
        self,
        membership: Membership,
        assignments: Assignments,
        reporter: StatusReporter,
        heartbeats: asyncio.Task[None],
    ) -> None:
        start = time.monotonic()
        await membership.drain(self._drain_reason, deadline=start + LEAVE_TIMEOUT)
        draining = await assignments.drain()
        if not await reporter.wait_settled(draining, deadline=start + self._config.drain_timeout):
            _log.warning(
                "drain timeout (%.1fs) passed with replicas still draining: %s",
                self._config.drain_timeout,
                ", ".join(reporter.unsettled(draining)),
            )
        await assignments.close()
        await reporter.flush(timeout=_FLUSH_TIMEOUT)
        heartbeats.cancel()
        _log.info("%s drained in %.2fs", self._config.name, time.monotonic() - start)

    async def _stop_removed(self, names: list[str]) -> None:
        if self.assignments is not None:
            await self.assignments.stop(names)
