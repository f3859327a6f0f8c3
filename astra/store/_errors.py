"""Errors raised by every store backend.

The hierarchy, in one place::

    StoreError
    ├── UnavailableError        the backend cannot be reached now (a write's outcome may be unknown)
    ├── CompactedError          the requested revision was compacted away
    ├── LeaseNotFoundError      the lease does not exist (expired or revoked)
    └── LimitError              a request breaks a documented limit (never retry)
        ├── EmptyKeyError
        ├── ValueTooLargeError
        └── TooManyOpsError
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error a store raises."""


class UnavailableError(StoreError):
    """The backend cannot be reached. Reads may be retried; a write may or may not have
    been applied, so retry writes only when they are guarded by a compare (a txn)."""


class CompactedError(StoreError):
    """The requested revision is older than the oldest one the store keeps.

    Attributes:
        compact_revision: the store's compaction point; resume at or after it
            after re-reading the current state.
    """

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted (compact revision is "
            f"{compact_revision}); re-read the current state and watch from its revision"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class LeaseNotFoundError(StoreError):
    """The lease is unknown: it expired or was revoked."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease {lease_id:#x} not found (expired or revoked)")
        self.lease_id = lease_id


class LimitError(StoreError, ValueError):
    """A request breaks one of the store's limits; retrying cannot help."""


class EmptyKeyError(LimitError):
    """A key was empty."""

    def __init__(self) -> None:
        super().__init__("key must not be empty")


class ValueTooLargeError(LimitError):
    """A value, or a whole request, is over the request size limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"request of {size} bytes is over the {limit}-byte limit (max request bytes)"
        )
        self.size = size
        self.limit = limit


class TooManyOpsError(LimitError):
    """A transaction has more operations than the limit allows."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"transaction has {count} operations in one branch; the limit is {limit} "
            f"(etcd --max-txn-ops): split it into smaller batches"
        )
        self.count = count
        self.limit = limit
