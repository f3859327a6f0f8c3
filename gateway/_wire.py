"""Protobuf wire format, read without decoding: the pure-Python twin of ``src/wire.cpp``.

:func:`model_of` reads the model a serialized ``ModelInferRequest`` names (fields 1 and
2) and skips every other field by its length, tensors included; :func:`fields` walks
the top-level fields of any message (the gateway reads ORCA load reports with it).
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT, FIXED64, LENGTH_DELIMITED, START_GROUP, END_GROUP, FIXED32 = range(6)
#: Groups may nest; a deeper message is refused, as protobuf's default recursion limit does.
MAX_DEPTH = 100


class WireError(ValueError):
    """The bytes are not a protobuf message."""


def encode_varint(value: int) -> bytes:
    """``value`` (>= 0) as a varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at ``at`` and the position after it."""
    value = shift = 0
    for position in range(at, min(at + 10, len(data))):
        byte = data[position]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & 0xFFFF_FFFF_FFFF_FFFF, position + 1
        shift += 7
    raise WireError("a varint is truncated or longer than 10 bytes")


def _tag(data: bytes, at: int) -> tuple[int, int, int]:
    key, at = _varint(data, at)
    if key > 0xFFFF_FFFF or not key >> 3:
        raise WireError(f"bad field tag {key}")
    return key >> 3, key & 7, at


def _value(data: bytes, at: int, number: int, wire_type: int, depth: int) -> tuple[int, int]:
    """Where the value of a field of ``wire_type`` starting at ``at`` is: ``(start,
    end)``; a length-delimited value starts after its length."""
    if wire_type == VARINT:
        return at, _varint(data, at)[1]
    if wire_type == LENGTH_DELIMITED:
        length, at = _varint(data, at)
        end = at + length
    elif wire_type in (FIXED64, FIXED32):
        end = at + (8 if wire_type == FIXED64 else 4)
    elif wire_type == START_GROUP:
        return at, _skip_group(data, at, number, depth + 1)
    else:
        raise WireError(f"unexpected wire type {wire_type}")
    if end > len(data):
        raise WireError("a field is truncated")
    return at, end


def _skip_group(data: bytes, at: int, group: int, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise WireError("groups nest too deep")
    while at < len(data):
        number, wire_type, at = _tag(data, at)
        if wire_type == END_GROUP:
            if number != group:
                raise WireError("a group ends with another group's tag")
            return at
        at = _value(data, at, number, wire_type, depth)[1]
    raise WireError("a group is not closed")


def fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """Each top-level field as ``(number, wire_type, start, end)``: its value is
    ``data[start:end]`` (a varint's bytes, a fixed value's bytes, a length-delimited
    field's payload, or a group's fields).

    Raises:
        WireError: ``data`` is not a protobuf message.
    """
    at = 0
    while at < len(data):
        number, wire_type, at = _tag(data, at)
        start, at = _value(data, at, number, wire_type, 0)
        yield number, wire_type, start, at


def model_bytes(request: bytes) -> tuple[bytes, bytes]:
    """Fields 1 (``model_name``) and 2 (``model_version``) of a serialized
    ``ModelInferRequest``, as bytes; the last occurrence of each wins, and a field 1 or
    2 of another wire type is an unknown field. O(number of top-level fields).

    Raises:
        WireError: ``request`` is not a protobuf message.
    """
    name = version = b""
    for number, wire_type, start, end in fields(request):
        if wire_type == LENGTH_DELIMITED and number in (1, 2):
            if number == 1:
                name = request[start:end]
            else:
                version = request[start:end]
    return name, version


def model_of(request: bytes) -> tuple[str, str]:
    """The model name and version a serialized ``ModelInferRequest`` names (invalid
    UTF-8 replaced), reading nothing else.

    Raises:
        ValueError: ``request`` is not a protobuf message.
    """
    try:
        name, version = model_bytes(request)
    except WireError as exc:
        raise ValueError("not a serialized ModelInferRequest") from exc
    return name.decode(errors="replace"), version.decode(errors="replace")
