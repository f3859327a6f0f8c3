"""Domain errors shared by AstraRay's services, CLI and configuration.

Servicers raise these and never build gRPC statuses themselves: the server maps each
one to its status in one place (:mod:`astra.server`). The hierarchy::

    AstraError
    ├── InvalidArgumentError      the request is malformed; names each bad field
    ├── NotFoundError             the named resource does not exist
    ├── AlreadyExistsError        a resource with that name exists already
    ├── ConflictError             a stale etag or a lost optimistic race: re-read, retry
    ├── FailedPreconditionError   the system is not in a state that allows the request
    ├── ResourceExhaustedError    a bounded queue or quota is full: retry later, with backoff
    └── ConfigError               a setting is invalid (CLI, environment or TOML file)

Store errors (:mod:`astra.store`) are a separate tree; the server maps
``UnavailableError`` to UNAVAILABLE, ``LimitError`` to INVALID_ARGUMENT and
``CompactedError`` (a watch resumed from a forgotten revision) to OUT_OF_RANGE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AstraError(Exception):
    """Base class of AstraRay's domain errors."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request, e.g. ``app.resources.cpu_millis``: ``must be > 0``."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}" if self.field else self.description


class InvalidArgumentError(AstraError, ValueError):
    """A request breaks its schema; ``violations`` lists every offending field."""

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        if not violations:
            raise ValueError("InvalidArgumentError needs at least one violation")
        super().__init__("; ".join(map(str, violations)))
        self.violations = tuple(violations)


class NotFoundError(AstraError, LookupError):
    """The named resource does not exist."""


class AlreadyExistsError(AstraError):
    """A resource with the same name already exists."""


class ConflictError(AstraError):
    """The caller's view is stale (an etag that no longer matches) or another writer won an
    optimistic race. Re-read the resource and try again (AIP-154: ABORTED)."""


class FailedPreconditionError(AstraError):
    """The system is not in a state that allows the request (e.g. draining a dead node);
    retrying will not help until that state changes."""


class ResourceExhaustedError(AstraError):
    """A bounded queue or quota is full (e.g. a model's async backlog); retry later, with
    backoff."""


class ConfigError(AstraError, ValueError):
    """A setting is invalid; the message names the setting and where it can be set."""


__all__ = [
    "AlreadyExistsError",
    "AstraError",
    "ConfigError",
    "ConflictError",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "ResourceExhaustedError",
]
