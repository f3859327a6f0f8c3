"""ONNX models for the replica tests, built with onnx.helper (nothing is downloaded)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from onnx import TensorProto, helper

#: Each input of the echo model: name -> (protocol datatype, ONNX element type).
ECHO_INPUTS = {
    "f64": ("FP64", TensorProto.DOUBLE),
    "i32": ("INT32", TensorProto.INT32),
    "i64": ("INT64", TensorProto.INT64),
    "u8": ("UINT8", TensorProto.UINT8),
    "flag": ("BOOL", TensorProto.BOOL),
    "text": ("BYTES", TensorProto.STRING),
}


def write_model(path: Path, data: bytes) -> tuple[Path, str]:
    """Write ``data`` to ``path``; returns the path and its sha256."""
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def echo_model(
    directory: Path, name: str = "echo", inputs: dict[str, tuple[str, int]] = ECHO_INPUTS
) -> tuple[Path, str]:
    """A model that answers each of ``inputs`` ([-1, 2] each) unchanged as
    ``<input>_out``; written as ``directory/<name>.onnx``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [tensor], [f"{tensor}_out"]) for tensor in inputs],
        name,
        [
            helper.make_tensor_value_info(tensor, kind, ["n", 2])
            for tensor, (_, kind) in inputs.items()
        ],
        [
            helper.make_tensor_value_info(f"{tensor}_out", kind, ["n", 2])
            for tensor, (_, kind) in inputs.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return write_model(directory / f"{name}.onnx", model.SerializeToString())


def half_model(directory: Path) -> tuple[Path, str]:
    """An echo of one FP16 input ``h`` (FP16 has no typed contents: raw only)."""
    return echo_model(directory, "half", {"h": ("FP16", TensorProto.FLOAT16)})
