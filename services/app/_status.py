"""An app's status from what its scheduler did and what its replicas report.

- ``replica_counts``: placed (records on live nodes), ready (those READY), unplaceable
  (replicas no node can take now).
- "Placed": TRUE once every wanted replica is placed; FALSE with the most common
  reason (e.g. ``InsufficientGpu``) while some cannot be; UNKNOWN while placements are
  still being retried.
- "Ready": TRUE once every wanted replica serves; FALSE with ``ReplicaFailed`` and the
  replica's own message when one of the current spec FAILED.
- "Rollout": ``Complete`` (TRUE) once every replica runs the current template and
  none is draining; ``Stalled`` (FALSE) when a replica of the current template FAILED
  (the old ones keep serving: the surge budget bounds the failures); ``Progressing``
  (UNKNOWN) otherwise. ``rollout`` counts updated, updated_ready, old, retiring, failed.
- ``reconciling``: the placed replicas differ from the spec (in number, or placed for
  another template, or retired and draining).

A condition keeps its ``last_transition_time`` while its status stays the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from astra.records import AppRecord, ReplicaPhase, ReplicaRecord
from scheduling import AppSpec, ReconcileResult, is_current

PLACED = "Placed"
READY = "Ready"
ROLLOUT = "Rollout"
_TRUE, _FALSE, _UNKNOWN = "TRUE", "FALSE", "UNKNOWN"
#: Distinct unplaceable messages quoted in the "Placed" condition's message.
_MESSAGES = 3


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class AppStatus:
    """What an app's owner reports after a reconcile of generation ``observed_generation``."""

    observed_generation: int
    reconciling: bool
    placed: int
    ready: int
    unplaceable: int
    conditions: tuple[Condition, ...]
    rollout: dict[str, int]


def status_of(
    spec: AppSpec,
    result: ReconcileResult,
    replicas: Iterable[ReplicaRecord],
    is_lost: Callable[[str], bool],
) -> AppStatus:
    """The status after reconciling ``spec`` (``result``), given the app's replica
    records read after it. A replica placed for another template than the spec's is
    old: the app is reconciling while one remains, or one retired is still draining."""
    live = [record for record in replicas if not is_lost(record.node_id)]
    serving = [record for record in live if not record.retire_time]
    updated = [record for record in serving if is_current(record, spec)]
    failed = [record for record in updated if record.phase == ReplicaPhase.FAILED]
    rollout = {
        "updated": len(updated),
        "updated_ready": sum(record.phase == ReplicaPhase.READY for record in updated),
        "old": len(serving) - len(updated),
        "retiring": len(live) - len(serving),
        "failed": len(failed),
    }
    placed = len(serving)
    ready = sum(record.phase == ReplicaPhase.READY for record in serving)
    desired = result.desired
    rolling = bool(rollout["old"] or rollout["retiring"])
    return AppStatus(
        observed_generation=spec.generation,
        reconciling=placed != desired or rolling or bool(result.pending or result.unplaceable),
        placed=placed,
        ready=ready,
        unplaceable=len(result.unplaceable),
        conditions=(
            _placed(result, placed, desired),
            _ready(ready, desired, failed),
            _rollout(rollout, desired, failed),
        ),
        rollout=rollout,
    )


def _failure(failed: list[ReplicaRecord]) -> str:
    first = min(failed, key=lambda record: record.replica_id)
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"replica {first.name} failed{more}: {first.message or 'no reason reported'}"


def _placed(result: ReconcileResult, placed: int, desired: int) -> Condition:
    if result.unplaceable:
        reasons = Counter(item.reason.value for item in result.unplaceable.values())
        messages = Counter(item.message for item in result.unplaceable.values())
        quoted = "; ".join(message for message, _ in messages.most_common(_MESSAGES))
        return Condition(
            PLACED,
            _FALSE,
            reasons.most_common(1)[0][0],
            f"{len(result.unplaceable)} of {desired} replicas cannot be placed: {quoted}",
        )
    if placed == desired and not result.pending:
        return Condition(PLACED, _TRUE, "AllPlaced", f"{placed} of {desired} replicas placed")
    return Condition(PLACED, _UNKNOWN, "Placing", f"{placed} of {desired} replicas placed so far")


def _ready(ready: int, desired: int, failed: list[ReplicaRecord]) -> Condition:
    if ready >= desired:
        return Condition(READY, _TRUE, "AllReady", f"{ready} of {desired} replicas ready")
    if failed:
        return Condition(
            READY, _FALSE, "ReplicaFailed", f"{ready} of {desired} ready; {_failure(failed)}"
        )
    return Condition(READY, _FALSE, "ReplicasNotReady", f"{ready} of {desired} replicas ready")


def _rollout(counts: dict[str, int], desired: int, failed: list[ReplicaRecord]) -> Condition:
    progress = (
        f"{counts['updated_ready']} of {desired} updated and ready, {counts['old']} old, "
        f"{counts['retiring']} draining"
    )
    if failed:
        return Condition(ROLLOUT, _FALSE, "Stalled", f"{progress}; {_failure(failed)}")
    if not counts["old"] and not counts["retiring"] and counts["updated_ready"] >= desired:
        return Condition(ROLLOUT, _TRUE, "Complete", progress)
    return Condition(ROLLOUT, _UNKNOWN, "Progressing", progress)


def apply_status(record: AppRecord, status: AppStatus, now: float) -> bool:
    """Write ``status`` into ``record``; returns whether anything changed."""
    previous = {condition.get("type"): condition for condition in record.conditions}
    conditions: list[dict[str, Any]] = []
    for condition in status.conditions:
        before = previous.get(condition.type, {})
        same = before.get("status") == condition.status
        conditions.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "last_transition_time": before.get("last_transition_time", now) if same else now,
            }
        )
    wanted = {
        "observed_generation": status.observed_generation,
        "reconciling": status.reconciling,
        "placed": status.placed,
        "ready": status.ready,
        "unplaceable": status.unplaceable,
        "conditions": conditions,
        "rollout": status.rollout,
    }
    if all(getattr(record, name) == value for name, value in wanted.items()):
        return False
    for name, value in wanted.items():
        setattr(record, name, value)
    record.update_time = now
    return True
