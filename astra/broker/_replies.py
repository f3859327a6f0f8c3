"""Redis stream replies, typed as the broker's client receives them.

The client speaks RESP2 and does not decode (``decode_responses=False``), so stream
names, entry ids and fields are ``bytes``. redis-py types its replies for every
protocol and decoding at once; these functions narrow them to that one shape.
"""

from __future__ import annotations

from typing import Any, cast

from redis.typing import StreamRangeResponse, XReadGroupResponse, XReadResponse

#: A stream entry's fields.
Fields = dict[bytes, bytes]
#: A stream entry: its id and fields.
Entry = tuple[bytes, Fields]
#: An entry of a group's pending list: no fields once it was deleted while pending.
PendingEntry = tuple[bytes, Fields | None]


def entries(reply: StreamRangeResponse | None) -> list[Entry]:
    """An XRANGE or XREVRANGE reply: its entries, in order."""
    return cast("list[Entry]", reply or [])  # RESP2, undecoded: bytes ids and fields


def read(reply: XReadResponse | None) -> list[tuple[bytes, list[Entry]]]:
    """An XREAD reply: each stream read and its new entries, in order."""
    return [(name, found) for name, found in _resp2(reply)]


def read_group(reply: XReadGroupResponse | None) -> list[tuple[bytes, list[PendingEntry]]]:
    """An XREADGROUP reply: each stream read and its entries, in order."""
    return [(name, found) for name, found in _resp2(reply)]


def _resp2(reply: XReadResponse | XReadGroupResponse | None) -> list[list[Any]]:
    """A stream read's reply, as RESP2 gives it: ``[name, entries]`` per stream.

    Raises:
        TypeError: a RESP3 reply (the client was not made as the broker asks).
    """
    if not reply:
        return []
    if not isinstance(reply, list):
        raise TypeError("a RESP3 reply: the broker's Redis client must speak RESP2")
    return reply
