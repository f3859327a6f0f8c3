"""The agent's parts against a real Node service on a real etcd."""

from __future__ import annotations

from tests.services.node.conftest import node_id, node_server, store

__all__ = ["node_id", "node_server", "store"]
