"""Request checks of the Resource service: every offending field is named.

Limits keep one node's record small (the store writes it on every transition and every
replica holds all of them) and reject values no real machine has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra.server import Violations

NAME_PREFIX = "nodes/"
#: A node id: a DNS-subdomain-like machine name.
_NODE_ID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
_LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")

MAX_LABELS = 64
MAX_GPU_DEVICES = 64
MAX_CPU_MILLIS = 65_536_000  # 65,536 cores
MAX_MEMORY_BYTES = 1 << 50  # 1 PiB
MAX_GPUS = 1024
MAX_GPU_MEMORY_BYTES = 1 << 42  # 4 TiB
MAX_TEXT = 63  # zone, accelerator, agent version, label keys and values
MAX_ADDRESS = 255
MAX_REASON = 256
MAX_HEARTBEATS = 10_000
MAX_PAGE_SIZE = 5000
DEFAULT_PAGE_SIZE = 500


def node_id(name: str) -> str | None:
    """The id in ``nodes/{node_id}``, or ``None`` when ``name`` is not a node name."""
    if not name.startswith(NAME_PREFIX):
        return None
    node = name[len(NAME_PREFIX) :]
    return node if _NODE_ID.fullmatch(node) else None


def check_name(violations: Violations, name: str, field: str) -> str:
    """The node id of ``name``; records a violation of ``field`` when it is none."""
    if not name:
        violations.add(field, "is required")
        return ""
    node = node_id(name)
    violations.check(node is not None, field, 'must be "nodes/{node_id}" with a DNS-like node id')
    return node or ""


def check_register(request: rs.RegisterNodeRequest) -> str:
    """Validate a registration; returns the node id.

    Raises:
        InvalidArgumentError: naming each bad field (``node.capacity.cpu_millis``...).
    """
    violations = Violations()
    if not violations.check(request.HasField("node"), "node", "is required"):
        violations.raise_if_any()
    node = request.node
    at = violations.at("node")
    node_id_ = check_name(at, node.name, "name")
    _check_capacity(at, node)
    _check_labels(at, node.labels)
    for field in ("zone", "accelerator", "agent_version"):
        _check_length(at, getattr(node, field), field, MAX_TEXT)
    if at.require(node.address, "address"):
        at.check(
            len(node.address) <= MAX_ADDRESS and not any(c.isspace() for c in node.address),
            "address",
            f"must be a host or host:port of at most {MAX_ADDRESS} characters",
        )
    _check_gpus(at, node.gpus)
    violations.raise_if_any()
    return node_id_


def _check_capacity(at: Violations, node: node_pb2.Node) -> None:
    if not at.check(node.HasField("capacity"), "capacity", "is required"):
        return
    capacity, scope = node.capacity, at.at("capacity")
    _check_range(scope, capacity.cpu_millis, "cpu_millis", 1, MAX_CPU_MILLIS)
    _check_range(scope, capacity.memory_bytes, "memory_bytes", 1, MAX_MEMORY_BYTES)
    _check_range(scope, capacity.gpus, "gpus", 0, MAX_GPUS)


def _check_range(at: Violations, value: int, field: str, low: int, high: int) -> None:
    at.check(low <= value <= high, field, f"must be between {low} and {high}, got {value}")


def _check_length(at: Violations, value: str, field: str, limit: int) -> None:
    at.check(len(value) <= limit, field, f"must be at most {limit} characters, got {len(value)}")


def _check_labels(at: Violations, labels: Mapping[str, str]) -> None:
    if not at.check(
        len(labels) <= MAX_LABELS, "labels", f"at most {MAX_LABELS} labels, got {len(labels)}"
    ):
        return
    for key, value in labels.items():
        field = f'labels["{key[:MAX_TEXT]}"]'
        if not _LABEL_KEY.fullmatch(key):
            at.add(
                field,
                f"key must be 1 to {MAX_TEXT} letters, digits, '-', '_', '.' or '/', "
                "starting and ending with a letter or digit",
            )
        elif not _LABEL_VALUE.fullmatch(value):
            at.add(
                field,
                f"value must be at most {MAX_TEXT} letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
            )


def _check_gpus(at: Violations, gpus: Sequence[node_pb2.GpuDevice]) -> None:
    if not at.check(
        len(gpus) <= MAX_GPU_DEVICES, "gpus", f"at most {MAX_GPU_DEVICES} GPUs, got {len(gpus)}"
    ):
        return
    for index, gpu in enumerate(gpus):
        entry = at.at("gpus").at(index)
        _check_length(entry, gpu.model, "model", 128)
        _check_length(entry, gpu.uuid, "uuid", 128)
        _check_range(entry, gpu.memory_bytes, "memory_bytes", 0, MAX_GPU_MEMORY_BYTES)


def check_usage(violations: Violations, usage: node_pb2.NodeUsage) -> None:
    """Utilizations are fractions in [0, 1]; memory is not negative."""
    for field in ("cpu_utilization", "gpu_utilization"):
        value = getattr(usage, field)
        violations.check(0.0 <= value <= 1.0, field, f"must be between 0 and 1, got {value}")
    violations.check(usage.memory_used_bytes >= 0, "memory_used_bytes", "must be >= 0")


def check_heartbeat_size(request: rs.HeartbeatRequest) -> None:
    violations = Violations()
    count = len(request.heartbeats)
    violations.check(
        count <= MAX_HEARTBEATS, "heartbeats", f"at most {MAX_HEARTBEATS} per request, got {count}"
    )
    violations.raise_if_any()


def check_drain(request: rs.DrainNodeRequest) -> str:
    violations = Violations()
    node = check_name(violations, request.name, "name")
    _check_length(violations, request.reason, "reason", MAX_REASON)
    violations.raise_if_any()
    return node


def check_named(name: str) -> str:
    """The node id of a Get/Delete request's ``name``."""
    violations = Violations()
    node = check_name(violations, name, "name")
    violations.raise_if_any()
    return node


def check_list(request: rs.ListNodesRequest) -> int:
    """The page size to use (AIP-158: 0 is the default, above the maximum is coerced)."""
    violations = Violations()
    violations.check(request.page_size >= 0, "page_size", "must be >= 0")
    violations.raise_if_any()
    return min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
