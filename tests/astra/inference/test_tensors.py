"""Open Inference Protocol tensors to numpy and back, for every datatype."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.inference import (
    CONTENTS_FIELD,
    DTYPES,
    TensorDataError,
    TensorSpec,
    decode_raw,
    decode_typed,
    encode_raw,
    encode_typed,
)

SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False], [False, True]]),
    "UINT8": np.array([[0, 255], [7, 8]], dtype=np.uint8),
    "UINT16": np.array([[0, 65535], [7, 8]], dtype=np.uint16),
    "UINT32": np.array([[0, 2**32 - 1], [7, 8]], dtype=np.uint32),
    "UINT64": np.array([[0, 2**64 - 1], [7, 8]], dtype=np.uint64),
    "INT8": np.array([[-128, 127], [0, 1]], dtype=np.int8),
    "INT16": np.array([[-32768, 32767], [0, 1]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1], [0, 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1], [0, 1]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.25], [65504, 0]], dtype=np.float16),
    "FP32": np.array([[0.5, -1.25], [3.4e38, 0]], dtype=np.float32),
    "FP64": np.array([[0.5, -1.25], [1e300, 0]], dtype=np.float64),
    "BYTES": np.array([[b"", b"a"], [b"\x00\xff", "é".encode()]], dtype=object),
}


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_raw_roundtrip(datatype: str) -> None:
    array = SAMPLES[datatype]
    decoded = decode_raw(encode_raw(array, datatype), datatype, array.shape)
    assert decoded.dtype == DTYPES[datatype]
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize("datatype", sorted(CONTENTS_FIELD))
def test_typed_roundtrip(datatype: str) -> None:
    array = SAMPLES[datatype]
    contents = encode_typed(array, datatype)
    assert [field.name for field, _ in contents.ListFields()] == [CONTENTS_FIELD[datatype]]
    np.testing.assert_array_equal(decode_typed(contents, datatype, array.shape), array)


def test_raw_bytes_are_length_prefixed() -> None:
    raw = encode_raw(np.array([b"ab", b""], dtype=object), "BYTES")
    assert raw == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)


@pytest.mark.parametrize(
    ("data", "shape", "message"),
    [
        (struct.pack("<I", 5) + b"ab", (1,), "claims 5 bytes past the end"),
        (struct.pack("<I", 1) + b"a", (2,), "end after 1 of 2 elements"),
        (struct.pack("<I", 1) + b"ab", (1,), "1 bytes after 1 elements"),
    ],
)
def test_malformed_raw_bytes(data: bytes, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(TensorDataError, match=message):
        decode_raw(data, "BYTES", shape)


def test_raw_size_must_match_the_shape() -> None:
    with pytest.raises(
        TensorDataError, match=r"has 8 bytes of raw contents, expected 12 \(3 x FP32\)"
    ):
        decode_raw(b"\x00" * 8, "FP32", (3,))


def test_typed_contents_are_checked() -> None:
    with pytest.raises(TensorDataError, match="has 1 elements in fp32_contents, expected 4"):
        decode_typed(pb.InferTensorContents(fp32_contents=[1.0]), "FP32", (2, 2))
    with pytest.raises(TensorDataError, match="holds int_contents, expected fp32_contents"):
        decode_typed(pb.InferTensorContents(int_contents=[1]), "FP32", (1,))
    with pytest.raises(TensorDataError, match="travels in raw_input_contents only"):
        decode_typed(pb.InferTensorContents(), "FP16", (0,))
    with pytest.raises(TensorDataError, match="out of INT8's range"):
        decode_typed(pb.InferTensorContents(int_contents=[300]), "INT8", (1,))


def test_spec_accepts_matching_shapes() -> None:
    spec = TensorSpec("x", "FP32", (-1, 4))
    assert spec.accepts((0, 4)) and spec.accepts((9, 4))
    assert not spec.accepts((9, 5)) and not spec.accepts((4,)) and not spec.accepts((1, 4, 1))
    assert str(spec) == "FP32 [-1, 4]"
