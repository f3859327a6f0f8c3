"""What one node agent is configured with: its part of the settings, resolved once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import astra
from astra.config import Settings
from node_agent._probe import address_towards


def node_address(settings: Settings) -> str:
    """Where the node's replicas are reached: ``node_address`` if set, else this host's
    address towards the API."""
    return settings.node_address or address_towards(settings.api_address)


def with_node_address(settings: Settings) -> Settings:
    """``settings`` with ``node_address`` resolved (:func:`node_address`): the agent
    resolves it once and hands the result to its runtime."""
    return settings.model_copy(update={"node_address": node_address(settings)})


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """An agent's configuration.

    Attributes:
        node_id: the node's id; its resource name is ``nodes/{node_id}``.
        server: ``host:port`` of the control plane's API (Resource and Node services).
        address: the host address replicas on this machine are reached at.
        zone: the failure domain, e.g. ``us-east-1a``.
        accelerator: the accelerator type; empty means "as the GPUs found suggest".
        labels: labels for placement selectors.
        heartbeat_interval: seconds between heartbeats until the server says otherwise.
        drain_timeout: how long a graceful exit waits for replicas to drain.
        call_timeout: the deadline of each unary call to the control plane.
        backoff_base: the first delay before a retry, in seconds.
        backoff_cap: the longest delay before a retry, in seconds.
    """

    node_id: str
    server: str
    address: str
    zone: str = ""
    accelerator: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    heartbeat_interval: float = 1.0
    drain_timeout: float = 30.0
    call_timeout: float = 5.0
    backoff_base: float = 0.1
    backoff_cap: float = 5.0
    agent_version: str = astra.__version__

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentConfig:
        """The agent's configuration from its settings."""
        return cls(
            node_id=settings.node_id,
            server=settings.api_address,
            address=node_address(settings),
            zone=settings.node_zone,
            accelerator=settings.node_accelerator,
            labels=settings.node_labels,
            heartbeat_interval=settings.heartbeat_interval,
            drain_timeout=settings.drain_timeout,
        )

    @property
    def name(self) -> str:
        """The node's resource name."""
        return f"nodes/{self.node_id}"
