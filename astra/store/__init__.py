"""The control plane's store: one async interface with etcd semantics, two backends.

- etcd (production): a real etcd cluster, through ``aetcd``'s gRPC stubs.
- embedded: the same semantics in-process, persisted to SQLite in WAL mode, or only
  in memory (tests and simulations).

Use :func:`open_store` with a URL: ``etcd://host:port[,host:port]``,
``sqlite:///path/to/state.db`` or ``memory://``.
"""

from astra.store._base import Store, prefix_end
from astra.store._errors import (
    CompactedError,
    EmptyKeyError,
    LeaseNotFoundError,
    LimitError,
    StoreError,
    TooManyOpsError,
    UnavailableError,
    ValueTooLargeError,
)
from astra.store._open import open_store
from astra.store._types import (
    MAX_REQUEST_BYTES,
    MAX_TXN_OPS,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    Event,
    EventType,
    Get,
    KeyValue,
    Lease,
    Op,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
)

__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_TXN_OPS",
    "CompactedError",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Delete",
    "DeleteResult",
    "EmptyKeyError",
    "Event",
    "EventType",
    "Get",
    "KeyValue",
    "Lease",
    "LeaseNotFoundError",
    "LimitError",
    "Op",
    "Put",
    "PutResult",
    "RangeResult",
    "Store",
    "StoreError",
    "TooManyOpsError",
    "TxnResult",
    "UnavailableError",
    "ValueTooLargeError",
    "open_store",
    "prefix_end",
]
