"""The Open Inference Protocol's tensors as numpy arrays, both ways, shared by the
replicas that serve it and the clients (``astra infer``) that call it."""

from astra.inference._tensors import (
    CONTENTS_FIELD,
    DTYPES,
    ONNX_DATATYPES,
    TensorDataError,
    TensorSpec,
    decode_raw,
    decode_typed,
    encode_raw,
    encode_typed,
)

__all__ = [
    "CONTENTS_FIELD",
    "DTYPES",
    "ONNX_DATATYPES",
    "TensorDataError",
    "TensorSpec",
    "decode_raw",
    "decode_typed",
    "encode_raw",
    "encode_typed",
]
