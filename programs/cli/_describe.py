"""Short, human words for resources: enum names, conditions, an app's state."""

from __future__ import annotations

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from astra._gen.astra.v1 import app_pb2, common_pb2

PLACED = "Placed"
READY = "Ready"


def enum_name(enum: EnumTypeWrapper, value: int) -> str:
    """An enum value's name without its type's prefix: ``NODE_PHASE_READY`` → ``READY``."""
    prefix = enum.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    return enum.Name(value).removeprefix(prefix)


def condition(app: app_pb2.App, kind: str) -> common_pb2.Condition:
    """The app's condition ``kind``; an empty one (status UNSPECIFIED) if it has none."""
    return next((item for item in app.conditions if item.type == kind), common_pb2.Condition())


def unplaceable(app: app_pb2.App) -> common_pb2.Condition | None:
    """The "Placed" condition, when the scheduler has acted on the current spec and some
    replica cannot be placed; else None."""
    placed = condition(app, PLACED)
    acted = app.observed_generation == app.generation
    return placed if acted and placed.status == common_pb2.CONDITION_STATUS_FALSE else None


def is_ready(app: app_pb2.App) -> bool:
    """Whether every replica of the current spec serves."""
    ready = condition(app, READY)
    acted = app.observed_generation == app.generation
    return acted and not app.reconciling and ready.status == common_pb2.CONDITION_STATUS_TRUE


def app_state(app: app_pb2.App) -> str:
    """One phrase for where the app is: ready, placing, starting, or why it cannot be
    placed."""
    counts = app.replica_counts
    if (placed := unplaceable(app)) is not None:
        return f"{placed.reason}: {placed.message}"
    if is_ready(app):
        return READY
    if app.observed_generation != app.generation:
        return f"Waiting for its scheduler to act on generation {app.generation}"
    if app.reconciling:
        return f"Placing: {counts.placed} of {counts.desired} placed, {counts.ready} ready"
    return f"Starting: {counts.ready} of {counts.desired} ready"
