"""The broker's Redis key layout: the one place that knows where each thing lives.

::

    astra:infer:{model}:{version}   stream, one per model version: the queued
                                    inferences (fields id, request, submitted, ttl,
                                    pending, traceparent); consumer group "replicas"
    astra:inference:{id}            stream: one inference's states, newest last (fields
                                    state, record: a serialized astra.v1.Inference);
                                    expires (pending TTL while queued or running,
                                    result TTL once finished)

Model names and versions never hold ``:`` (the App service allows letters, digits,
``.``, ``_`` and ``-``), so the layout is unambiguous. The broker needs one Redis (not
Redis Cluster): its scripts touch a queue and a record together.
"""

from __future__ import annotations

import re

PREFIX = "astra:"
#: The consumer group of every queue: the replicas serving its model version.
GROUP = "replicas"
#: What an inference id may be.
INFERENCE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def queue(model: str, version: str) -> str:
    """The stream of ``model`` at ``version``'s queued inferences."""
    return f"{PREFIX}infer:{model}:{version}"


def record(inference_id: str) -> str:
    """The stream of an inference's states."""
    return f"{PREFIX}inference:{inference_id}"
