"""The node's membership in the fleet, kept with the Resource service: registration, the
heartbeat stream and the directives it brings back, the drain and deregistration."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from astra._gen.astra.v1 import (
    common_pb2,
    node_pb2,
    resource_service_pb2,
)
from astra.rpc import Backoff, open_channel, retry_call
from node_agent._config import AgentConfig
from node_agent._heartbeat import heartbeat_stream
from node_agent._probe import Machine
from node_agent._stubs import resource_stub

_log = logging.getLogger(__name__)

_Action = resource_service_pb2.HeartbeatAction


class RegistrationError(Exception):
    """The Resource service refused the node for good (e.g. INVALID_ARGUMENT)."""


class _RedirectError(Exception):
    def __init__(self, address: str) -> None:
        super().__init__(f"redirected to {address}")
        self.address = address


class Membership:
    """Registers the node, heartbeats it and follows the service's directives.

    - REREGISTER: the service forgot the node (or its uid is stale): register again,
      and drain again if the node was draining.
    - DRAIN: the node is draining (``DrainNode`` from elsewhere, e.g. ``astra agent
      prestop``): ``on_drain(reason)`` tells the agent.
    - REDIRECT: another replica of the service owns the node: heartbeat there.

    A lost stream is reopened after a backoff with jitter.
    """

    def __init__(
        self,
        config: AgentConfig,
        machine: Machine,
        *,
        usage: Callable[[], node_pb2.NodeUsage],
        on_drain: Callable[[str], None],
    ) -> None:
        self._config = config
        self._machine = machine
        self._usage = usage
        self._on_drain = on_drain
        self._backoff = Backoff(base=config.backoff_base, cap=config.backoff_cap)
        self._address = config.server
        self._channel = open_channel(self._address, backoff=self._backoff)
        self._stub = resource_stub(self._channel)
        self._uid = ""
        self._interval = config.heartbeat_interval
        #: Why the node leaves, once it does.
        self._drain_reason: str | None = None
        #: Whether the service has the node DRAINING (since its latest registration).
        self._marked_draining = False

    @property
    def uid(self) -> str:
        """The uid the service gave the node at its latest registration."""
        return self._uid

    @property
    def interval(self) -> float:
        """Seconds between heartbeats, as the service asked."""
        return self._interval

    @property
    def address(self) -> str:
        """The Resource service replica the node talks to now."""
        return self._address

    def node_spec(self) -> node_pb2.Node:
        """The node as this agent registers it."""
        config, machine = self._config, self._machine
        return node_pb2.Node(
            name=config.name,
            labels=dict(config.labels),
            zone=config.zone,
            accelerator=config.accelerator or machine.accelerator,
            capacity=common_pb2.Resources(
                cpu_millis=machine.cpu_cores * 1000,
                memory_bytes=machine.memory_bytes,
                gpus=len(machine.gpus),
            ),
            gpus=[
                node_pb2.GpuDevice(model=gpu.model, memory_bytes=gpu.memory_bytes, uuid=gpu.uuid)
                for gpu in machine.gpus
            ],
            address=config.address,
            agent_version=config.agent_version,
        )

    # -- registration ------------------------------------------------------------------

    async def register(self) -> node_pb2.Node:
        """Register the node, retrying transient failures and following redirects.

        Raises:
            RegistrationError: the service refused the node for good.
        """
        request = resource_service_pb2.RegisterNodeRequest(node=self.node_spec())
        while True:
            try:
                response = await retry_call(
                    lambda: self._stub.RegisterNode(request, timeout=self._config.call_timeout),
                    what=f"registering {self._config.name} at {self._address}",
                    backoff=self._backoff,
                )
            except grpc.aio.AioRpcError as exc:
                raise RegistrationError(
                    f"{self._config.name} refused by {self._address}: {exc.details()}"
                ) from exc
            if response.redirect_address and response.redirect_address != self._address:
                await self._reconnect(response.redirect_address)
                continue
            break
        self._uid = response.node.uid
        self._marked_draining = False
        if response.heartbeat_interval.ToNanoseconds() > 0:
            self._interval = response.heartbeat_interval.ToNanoseconds() / 1e9
        _log.info("registered %s (uid %s) at %s", self._config.name, self._uid, self._address)
        if self._drain_reason is not None:  # the service forgot the drain with the node
            await self.drain(self._drain_reason, deadline=None)
        return response.node

    # -- heartbeats --------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Heartbeat until cancelled, reopening the stream after losing it.

        Raises:
            RegistrationError: a re-registration was refused for good.
        """
        while True:
            try:
                await self._session()
            except _RedirectError as redirect:
                await self._reconnect(redirect.address)
                continue
            except grpc.aio.AioRpcError as exc:
                _log.warning(
                    "heartbeat stream to %s lost: %s %s",
                    self._address,
                    exc.code().name,
                    exc.details(),
                )
            await self._backoff.sleep()

    async def _session(self) -> None:
        await heartbeat_stream(
            self._stub,
            beat=self._beat,
            follow=self._follow,
            interval=lambda: self._interval,
            healthy=self._backoff.reset,
        )

    def _beat(self) -> resource_service_pb2.HeartbeatRequest:
        beat = resource_service_pb2.NodeHeartbeat(
            node=self._config.name, uid=self._uid, usage=self._usage()
        )
        return resource_service_pb2.HeartbeatRequest(heartbeats=[beat])

    async def _follow(self, directive: resource_service_pb2.HeartbeatDirective) -> None:
        if directive.node != self._config.name:
            return
        if directive.action == _Action.HEARTBEAT_ACTION_REREGISTER:
            _log.info("%s must register again: %s", self._config.name, directive.message)
            await self.register()
        elif directive.action == _Action.HEARTBEAT_ACTION_DRAIN:
            self._marked_draining = True
            if self._drain_reason is None:
                self._drain_reason = "Drain"
                self._on_drain(f"the service drains it ({directive.message})")
        elif directive.action == _Action.HEARTBEAT_ACTION_REDIRECT and directive.redirect_address:
            raise _RedirectError(directive.redirect_address)

    async def _reconnect(self, address: str) -> None:
        _log.info("%s moves from %s to %s", self._config.name, self._address, address)
        await self._channel.close()
        self._address = address
        self._channel = open_channel(address, backoff=self._backoff)
        self._stub = resource_stub(self._channel)

    # -- leaving -----------------------------------------------------------------------

    async def drain(self, reason: str, *, deadline: float | None) -> None:
        """Mark the node DRAINING (it leaves every route and takes no new replica), unless
        the service has it DRAINING already (it said so with a DRAIN directive).

        A node the service does not know is left to the heartbeats: they register it
        again and then drain it again. Gives up at ``deadline`` (``time.monotonic()``).
        """
        self._drain_reason = reason
        if self._marked_draining:
            return
        request = resource_service_pb2.DrainNodeRequest(name=self._config.name, reason=reason)
        try:
            await retry_call(
                lambda: self._stub.DrainNode(request, timeout=self._config.call_timeout),
                what=f"draining {self._config.name}",
                backoff=self._backoff,
                deadline=deadline,
            )
        except grpc.aio.AioRpcError as exc:
            _log.warning(
                "could not drain %s: %s %s", self._config.name, exc.code().name, exc.details()
            )
        else:
            self._marked_draining = True
            _log.info("%s is draining (%s)", self._config.name, reason)

    async def deregister(self, *, deadline: float) -> bool:
        """Remove the node from the fleet; ``True`` once it is gone (or was already).
        Stop heartbeating first, or the service asks the node to register again."""
        request = resource_service_pb2.DeleteNodeRequest(name=self._config.name)
        try:
            await retry_call(
                lambda: self._stub.DeleteNode(request, timeout=self._config.call_timeout),
                what=f"deregistering {self._config.name}",
                backoff=self._backoff,
                deadline=deadline,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return True
            _log.error(
                "could not deregister %s: %s %s", self._config.name, exc.code().name, exc.details()
            )
            return False
        _log.info("%s deregistered", self._config.name)
        return True

    async def close(self) -> None:
        """Close the connection. Idempotent."""
        await self._channel.close()
