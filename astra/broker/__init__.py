"""The async inference broker's Redis protocol, shared by the gateway (which accepts
inferences and answers for their results) and the replicas (which pull and run them).

- :class:`Broker`: submission with an admission limit, inference records with TTLs,
  waiting on them without polling (:mod:`astra.broker._broker`).
- :class:`Consumer`, :class:`Delivery`: a replica's capacity-bounded pulls with a
  consumer group per model version, renewal of what it runs, and the take-over of
  what dead replicas left (:mod:`astra.broker._consumer`).
- The key layout is in :mod:`astra.broker._keys`.
"""

from astra.broker._broker import (
    BLOCK,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Broker,
    now_ms,
    timestamp,
)
from astra.broker._consumer import SUBSET_BLOCK, Consumer, Delivery
from astra.broker._keys import GROUP, INFERENCE_ID, queue, record

__all__ = [
    "BLOCK",
    "FAILED",
    "FINISHED",
    "GROUP",
    "INFERENCE_ID",
    "QUEUED",
    "RUNNING",
    "SUBSET_BLOCK",
    "SUCCEEDED",
    "Broker",
    "Consumer",
    "Delivery",
    "now_ms",
    "queue",
    "record",
    "timestamp",
]
