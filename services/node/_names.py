"""Resource names of the Node service's API and the store keys they map to."""

from __future__ import annotations

from astra import keys

_NODE_PREFIX = "nodes/"


def node_id(name: str) -> str | None:
    """The id in ``nodes/{node_id}``, or ``None`` when ``name`` is not a node name."""
    node = name.removeprefix(_NODE_PREFIX)
    return node if node != name and _is_id(node) else None


def replica_key(name: str) -> str | None:
    """The store key of ``apps/{app_id}/replicas/{replica_id}``, or ``None`` when
    ``name`` is not a replica name."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "apps" or parts[2] != "replicas":
        return None
    if not (_is_id(parts[1]) and _is_id(parts[3])):
        return None
    return keys.replica(parts[1], parts[3])


def replica_name(key: str) -> str:
    """The resource name of the replica stored at ``key`` (``/astra/v1/replicas/{app}/{id}``)."""
    app_id, _, replica_id = key.removeprefix(keys.REPLICAS).partition("/")
    return f"apps/{app_id}/replicas/{replica_id}"


def _is_id(value: str) -> bool:
    return bool(value) and "/" not in value and value.isprintable()
