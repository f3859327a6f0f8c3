"""The etcd backend of the store.

It speaks etcd's v3 gRPC API through the protobuf messages and stubs that ``aetcd``
generates (``aetcd.rpc``), on channels of its own, rather than through
``aetcd.Client``: the client talks to one endpoint only, drops what etcd says about
errors (a compacted range does not say the compaction point, NOT_FOUND and
OUT_OF_RANGE become one generic error), loses ``more`` and limits of ranges inside
transactions, and delivers watch events one by one through callbacks and a bounded
queue, which cannot group a revision or resume exactly. Building the requests
directly also keeps every store call to one gRPC round trip with no extra layer.
"""

from astra.store._etcd._store import EtcdStore

__all__ = ["EtcdStore"]
