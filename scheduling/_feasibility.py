"""Feasibility: can a replica go on a node? Small checkers, each with its reason.

A :class:`Request` is built once per app and pass; it keeps only the checkers its
spec needs, so a node is judged in a few attribute reads. Accelerators are not
checked here: candidates are drawn from the accelerator's index (see ``_scoring``),
which only holds READY nodes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from scheduling._model import NodeState
from scheduling._spec import AppSpec


class Reason(enum.StrEnum):
    """Why a replica is not placed; the reasons of the App's "Placed" condition."""

    INSUFFICIENT_CPU = "InsufficientCpu"
    INSUFFICIENT_MEMORY = "InsufficientMemory"
    INSUFFICIENT_GPU = "InsufficientGpu"
    NODE_SELECTOR_MISMATCH = "NodeSelectorMismatch"
    ANTI_AFFINITY = "AntiAffinity"
    MAX_PER_NODE = "MaxPerNode"
    ACCELERATOR_UNAVAILABLE = "AcceleratorUnavailable"
    """No READY node has an acceptable accelerator (or, without GPUs asked, any node)."""
    RAY_HEAD_UNPLACEABLE = "RayHeadUnplaceable"
    """The head of the replica's Ray cluster cannot be placed, so neither can its workers."""


Checker = Callable[[NodeState, "Request"], Reason | None]


def fits_resources(node: NodeState, request: Request) -> Reason | None:
    if request.cpu > node.free_cpu:
        return Reason.INSUFFICIENT_CPU
    if request.memory > node.free_memory:
        return Reason.INSUFFICIENT_MEMORY
    if request.gpus > node.free_gpus:
        return Reason.INSUFFICIENT_GPU
    return None


def matches_selector(node: NodeState, request: Request) -> Reason | None:
    labels = node.labels
    for key, value in request.node_selector:
        if labels.get(key) != value:
            return Reason.NODE_SELECTOR_MISMATCH
    return None


def avoids_anti_affinity(node: NodeState, request: Request) -> Reason | None:
    held = node.held_apps
    for app_id in request.anti_affinity:
        if app_id in node.apps or (held and app_id in held):
            return Reason.ANTI_AFFINITY
    return None


def under_max_per_node(node: NodeState, request: Request) -> Reason | None:
    return Reason.MAX_PER_NODE if node.count(request.app_id) >= request.max_per_node else None


@dataclass(frozen=True, slots=True)
class Request:
    """One replica's needs, with the checkers that apply to them."""

    app_id: str
    cpu: int
    memory: int
    gpus: int
    node_selector: tuple[tuple[str, str], ...]
    anti_affinity: frozenset[str]
    max_per_node: int
    checkers: tuple[Checker, ...]

    @classmethod
    def of(cls, spec: AppSpec) -> Request:
        checkers: list[Checker] = [fits_resources]
        if spec.node_selector:
            checkers.append(matches_selector)
        if spec.anti_affinity:
            checkers.append(avoids_anti_affinity)
        if spec.max_per_node:
            checkers.append(under_max_per_node)
        resources = spec.resources
        return cls(
            app_id=spec.app_id,
            cpu=resources.cpu_millis,
            memory=resources.memory_bytes,
            gpus=resources.gpus,
            node_selector=tuple(sorted(spec.node_selector.items())),
            anti_affinity=spec.anti_affinity,
            max_per_node=spec.max_per_node,
            checkers=tuple(checkers),
        )

    def check(self, node: NodeState) -> Reason | None:
        """Why the replica cannot go on ``node`` now, or ``None`` when it can. O(checks)."""
        for checker in self.checkers:
            reason = checker(node, self)
            if reason is not None:
                return reason
        return None


__all__ = [
    "Checker",
    "Reason",
    "Request",
    "avoids_anti_affinity",
    "fits_resources",
    "matches_selector",
    "under_max_per_node",
]
