"""Tensors of the Open Inference Protocol as numpy arrays, both ways.

A request tensor's data comes either in its typed ``contents`` or, in the same order
as the inputs, in ``raw_input_contents``: the little-endian bytes of the flattened
array (BYTES elements each prefixed by their 4-byte little-endian length). FP16 has no
typed field and travels raw only. Answers mirror the request: raw outputs for a raw
request, typed ones otherwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from astra._gen.inference import grpc_predict_v2_pb2 as pb

#: The protocol's datatypes and their numpy dtypes (BYTES: an object array of bytes).
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
#: The typed-contents field of each datatype that has one.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
#: ONNX Runtime's element types (``tensor(float)``...) as protocol datatypes.
ONNX_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
#: The numpy type each integer contents field holds on the wire.
_WIDE = {"int_contents": np.dtype("<i4"), "uint_contents": np.dtype("<u4")}
_LENGTH = struct.Struct("<I")


class TensorDataError(ValueError):
    """A tensor's data does not fit its datatype and shape; the message says how."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model's input or output: its name, datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """Whether ``shape`` has this spec's rank and matches every fixed dimension."""
        return len(shape) == len(self.shape) and all(
            want in (-1, got) for want, got in zip(self.shape, shape, strict=True)
        )

    def __str__(self) -> str:
        return f"{self.datatype} [{', '.join(map(str, self.shape))}]"

    def metadata(self) -> pb.ModelMetadataResponse.TensorMetadata:
        """This spec as the protocol's tensor metadata."""
        return pb.ModelMetadataResponse.TensorMetadata(
            name=self.name, datatype=self.datatype, shape=self.shape
        )


def decode_raw(data: bytes, datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The array that ``data`` (raw contents) holds.

    Raises:
        TensorDataError: the size of ``data`` does not match ``shape``.
    """
    count = int(np.prod(shape, dtype=np.int64))
    if datatype == "BYTES":
        return _split_bytes(data, count).reshape(shape)
    dtype = DTYPES[datatype]
    if len(data) != count * dtype.itemsize:
        raise TensorDataError(
            f"has {len(data)} bytes of raw contents, expected {count * dtype.itemsize} "
            f"({count} x {datatype})"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def decode_typed(
    contents: pb.InferTensorContents, datatype: str, shape: tuple[int, ...]
) -> np.ndarray:
    """The array that typed ``contents`` hold.

    Raises:
        TensorDataError: the datatype has no typed contents (FP16), the data is in
            another datatype's field, or the element count does not match ``shape``.
    """
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise TensorDataError(f"datatype {datatype} travels in raw_input_contents only")
    others = [
        descriptor.name for descriptor, _ in contents.ListFields() if descriptor.name != field
    ]
    if others:
        raise TensorDataError(f"holds {others[0]}, expected {field} for {datatype}")
    values = getattr(contents, field)
    count = int(np.prod(shape, dtype=np.int64))
    if len(values) != count:
        raise TensorDataError(
            f"has {len(values)} elements in {field}, expected {count} for shape {list(shape)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    dtype = DTYPES[datatype]
    array = np.array(values, dtype=_WIDE.get(field, dtype))
    if array.dtype != dtype:  # int_contents and uint_contents carry narrower types too
        narrow = array.astype(dtype)
        if not np.array_equal(narrow, array):
            raise TensorDataError(f"has a value out of {datatype}'s range in {field}")
        array = narrow
    return array.reshape(shape)


def encode_raw(array: np.ndarray, datatype: str) -> bytes:
    """``array`` as raw contents of ``datatype``."""
    if datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(item)) + item for item in map(_as_bytes, array.flat))
    return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()


def encode_typed(array: np.ndarray, datatype: str) -> pb.InferTensorContents:
    """``array`` as typed contents of ``datatype`` (not FP16: it has none)."""
    field = CONTENTS_FIELD[datatype]
    values = (
        [_as_bytes(item) for item in array.flat] if datatype == "BYTES" else array.ravel().tolist()
    )
    contents = pb.InferTensorContents()
    getattr(contents, field).extend(values)
    return contents


def _as_bytes(item: str | bytes) -> bytes:
    return item.encode() if isinstance(item, str) else bytes(item)


def _split_bytes(data: bytes, count: int) -> np.ndarray:
    items = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + _LENGTH.size > len(data):
            raise TensorDataError(f"raw BYTES contents end after {index} of {count} elements")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise TensorDataError(f"raw BYTES element {index} claims {length} bytes past the end")
        items[index] = data[offset : offset + length]
        offset += length
    if offset != len(data):
        raise TensorDataError(
            f"raw BYTES contents have {len(data) - offset} bytes after {count} elements"
        )
    return items
