"""Simulated fleets against the real Resource and Node services on a real etcd."""

from __future__ import annotations

from tests.node_agent.conftest import plane, store

__all__ = ["plane", "store"]
