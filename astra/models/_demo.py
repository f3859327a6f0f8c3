"""The demo model: a perceptron of ``depth`` ReLU layers, ``input`` [batch, inputs] FP32
to ``output`` [batch, outputs] FP32, with fixed seeded weights."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

#: The opset the model is built for; ONNX Runtime >= 1.14 runs it.
OPSET = 17
#: The ONNX IR version written (the newest that ONNX Runtime 1.18, our floor, reads).
IR_VERSION = 9


@dataclass(frozen=True, slots=True)
class DemoModel:
    """A written demo model.

    Attributes:
        path: the ``.onnx`` file.
        sha256: the file's sha256, in hex.
        weights: (matrix, bias) per layer, as the model computes with them.
    """

    path: Path
    sha256: str
    weights: tuple[tuple[np.ndarray, np.ndarray], ...]

    def reference(self, batch: np.ndarray) -> np.ndarray:
        """What the model answers for ``batch`` ([n, inputs] FP32), computed with numpy:
        ReLU after every layer but the last."""
        out = batch.astype(np.float32)
        for index, (matrix, bias) in enumerate(self.weights):
            out = out @ matrix + bias
            if index < len(self.weights) - 1:
                out = np.maximum(out, 0)
        return out


def _weights(
    inputs: int, hidden: int, outputs: int, depth: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = [inputs, *([hidden] * (depth - 1)), outputs]
    return [
        (
            rng.standard_normal((fan_in, fan_out)).astype(np.float32) / np.float32(np.sqrt(fan_in)),
            rng.standard_normal(fan_out).astype(np.float32) * np.float32(0.1),
        )
        for fan_in, fan_out in itertools.pairwise(sizes)
    ]


def build_demo_model(
    *, inputs: int = 4, hidden: int = 16, outputs: int = 3, depth: int = 2, seed: int = 0
) -> tuple[onnx.ModelProto, tuple[tuple[np.ndarray, np.ndarray], ...]]:
    """The demo model and its weights; ``depth`` layers (at least 1), ``hidden`` wide.

    A bigger ``hidden`` or ``depth`` makes each inference slower, for tests that need
    requests to stay in flight a while.
    """
    from onnx import TensorProto, checker, helper, numpy_helper

    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    weights = _weights(inputs, hidden, outputs, depth, seed)
    nodes, initializers = [], []
    current = "input"
    for index, (matrix, bias) in enumerate(weights):
        last = index == len(weights) - 1
        initializers += [
            numpy_helper.from_array(matrix, f"w{index}"),
            numpy_helper.from_array(bias, f"b{index}"),
        ]
        product, total = f"matmul{index}", "output" if last else f"add{index}"
        nodes += [
            helper.make_node("MatMul", [current, f"w{index}"], [product]),
            helper.make_node("Add", [product, f"b{index}"], [total]),
        ]
        current = total
        if not last:
            current = f"relu{index}"
            nodes.append(helper.make_node("Relu", [total], [current]))
    graph = helper.make_graph(
        nodes,
        "astra-demo",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", outputs])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="astra"
    )
    model.ir_version = IR_VERSION
    checker.check_model(model)
    return model, tuple(weights)


def write_demo_model(directory: Path, *, name: str = "demo.onnx", **shape: int) -> DemoModel:
    """Build the demo model (``shape``: :func:`build_demo_model`'s keywords) and write it
    as ``directory/name``."""
    model, weights = build_demo_model(**shape)
    data = model.SerializeToString()
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return DemoModel(path=path, sha256=hashlib.sha256(data).hexdigest(), weights=weights)
