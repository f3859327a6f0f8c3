"""The node agent: registers its machine, heartbeats it, follows the replicas placed on
it and hands them to a :class:`ReplicaRuntime`, and leaves gracefully on SIGTERM or
``astra agent prestop``.
"""

from node_agent._agent import LEAVE_TIMEOUT, NodeAgent
from node_agent._assignments import Assignments
from node_agent._cli import agent as agent_command
from node_agent._config import AgentConfig
from node_agent._heartbeat import heartbeat_stream
from node_agent._membership import Membership, RegistrationError
from node_agent._prestop import prestop
from node_agent._probe import (
    NVIDIA_SMI_QUERY,
    Gpu,
    Machine,
    address_towards,
    find_gpus,
    parse_nvidia_smi,
    probe_machine,
    read_usage,
)
from node_agent._reporter import StatusReporter
from node_agent._runtime import (
    NamedRuntime,
    ReplicaRuntime,
    ReportStatus,
    RuntimeFactory,
    load_runtime_factory,
)

__all__ = [
    "LEAVE_TIMEOUT",
    "NVIDIA_SMI_QUERY",
    "AgentConfig",
    "Assignments",
    "Gpu",
    "Machine",
    "Membership",
    "NamedRuntime",
    "NodeAgent",
    "RegistrationError",
    "ReplicaRuntime",
    "ReportStatus",
    "RuntimeFactory",
    "StatusReporter",
    "address_towards",
    "agent_command",
    "find_gpus",
    "heartbeat_stream",
    "load_runtime_factory",
    "parse_nvidia_smi",
    "prestop",
    "probe_machine",
    "read_usage",
]
