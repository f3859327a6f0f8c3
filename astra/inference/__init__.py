"""The Open Inference Protocol, shared by the replicas that serve it, the gateway and
the clients (``astra infer``) that call it: its tensors as numpy arrays, both ways, and
its server health (:class:`ServerHealth`)."""

from astra.inference._health import ServerHealth
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
    "ServerHealth",
    "TensorDataError",
    "TensorSpec",
    "decode_raw",
    "decode_typed",
    "encode_raw",
    "encode_typed",
]
