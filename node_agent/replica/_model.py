"""One loaded ONNX model: its metadata, the validation of requests against it, and
inference with ONNX Runtime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.inference import (
    ONNX_DATATYPES,
    TensorDataError,
    TensorSpec,
    decode_raw,
    decode_typed,
    encode_raw,
    encode_typed,
)
from astra.server import Violations
from node_agent.replica._errors import ModelLoadError
from node_agent.replica._providers import ProviderPlan

#: The ``platform`` reported in model metadata (Triton's name for ONNX Runtime).
PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated request: the arrays to feed, the outputs to return, and whether the
    answer goes in raw contents."""

    feeds: dict[str, np.ndarray]
    outputs: list[str]
    raw: bool


def _specs(args: Sequence[ort.NodeArg]) -> dict[str, TensorSpec]:
    specs = {}
    for arg in args:
        datatype = ONNX_DATATYPES.get(arg.type)
        if datatype is None:
            raise ModelLoadError(
                f"tensor {arg.name} has type {arg.type}, which the protocol cannot carry"
            )
        shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
        specs[arg.name] = TensorSpec(arg.name, datatype, shape)
    return specs


class OnnxModel:
    """A model version in an ONNX Runtime session. Thread-safe: sessions run
    concurrently."""

    def __init__(self, name: str, version: str, session: ort.InferenceSession) -> None:
        self.name = name
        self.version = version
        self.session = session
        self.inputs = _specs(session.get_inputs())
        self.outputs = _specs(session.get_outputs())

    @classmethod
    def load(
        cls, name: str, version: str, path: Path, *, plan: ProviderPlan, threads: int
    ) -> OnnxModel:
        """Load ``path`` in a session with the ``plan``'s providers and ``threads``
        intra-op threads.

        Raises:
            ModelLoadError: ONNX Runtime refused the file (its message is kept), or a
                tensor has a type the protocol cannot carry.
        """
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: our log says which provider runs
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=list(plan.providers)
            )
        except Exception as exc:
            raise ModelLoadError(
                f"ONNX Runtime cannot load model {name} version {version}: {exc}"
            ) from exc
        return cls(name, version, session)

    @property
    def providers(self) -> list[str]:
        """The providers the session runs on, best first."""
        return list(self.session.get_providers())

    def metadata(self) -> pb.ModelMetadataResponse:
        """The model's metadata, as ModelMetadata answers."""
        return pb.ModelMetadataResponse(
            name=self.name,
            versions=[self.version],
            platform=PLATFORM,
            inputs=[spec.metadata() for spec in self.inputs.values()],
            outputs=[spec.metadata() for spec in self.outputs.values()],
        )

    def prepare(self, request: pb.ModelInferRequest) -> Prepared:
        """Check ``request`` against the model's inputs and outputs and decode its tensors.

        Raises:
            InvalidArgumentError: naming each bad tensor and what was expected.
        """
        violations = Violations()
        raw = bool(request.raw_input_contents)
        violations.check(
            not raw or len(request.raw_input_contents) == len(request.inputs),
            "raw_input_contents",
            f"holds {len(request.raw_input_contents)} tensors, "
            f"expected one per input ({len(request.inputs)})",
        )
        feeds: dict[str, np.ndarray] = {}
        for index, tensor in enumerate(request.inputs):
            at = violations.at("inputs").at(index)
            array = self._decode(at, index, tensor, request)
            if array is not None:
                feeds[tensor.name] = array
        named = {tensor.name for tensor in request.inputs}
        for spec in self.inputs.values():
            violations.check(
                spec.name in named, "inputs", f'input "{spec.name}" ({spec}) is missing'
            )
        outputs = []
        for index, wanted in enumerate(request.outputs):
            if (
                violations.at("outputs")
                .at(index)
                .check(
                    wanted.name in self.outputs,
                    "name",
                    f'unknown output "{wanted.name}"; {self._describe(self.outputs, "output")}',
                )
            ):
                outputs.append(wanted.name)
        violations.raise_if_any()
        return Prepared(feeds, outputs or list(self.outputs), raw)

    def _decode(
        self,
        at: Violations,
        index: int,
        tensor: pb.ModelInferRequest.InferInputTensor,
        request: pb.ModelInferRequest,
    ) -> np.ndarray | None:
        spec = self.inputs.get(tensor.name)
        if spec is None:
            at.add("name", f'unknown input "{tensor.name}"; {self._describe(self.inputs, "input")}')
            return None
        shape = tuple(tensor.shape)
        ok = at.check(
            tensor.datatype == spec.datatype,
            "datatype",
            f'input "{tensor.name}" is {tensor.datatype or "unset"}, expected {spec.datatype}',
        )
        ok &= at.check(
            spec.accepts(shape) and min(shape, default=0) >= 0,
            "shape",
            f'input "{tensor.name}" has shape {list(shape)}, '
            f"expected {list(spec.shape)} (-1: any size)",
        )
        if not ok:
            return None
        raw = request.raw_input_contents
        try:
            if raw:
                if index >= len(raw):
                    return None  # reported with raw_input_contents
                array = decode_raw(raw[index], spec.datatype, shape)
            else:
                array = decode_typed(tensor.contents, spec.datatype, shape)
            return _as_onnx_strings(array) if spec.datatype == "BYTES" else array
        except TensorDataError as exc:
            at.add("contents", f'input "{tensor.name}" {exc}')
            return None

    @staticmethod
    def _describe(specs: dict[str, TensorSpec], kind: str) -> str:
        return f"the model's {kind}s are " + ", ".join(
            f'"{name}" ({spec})' for name, spec in specs.items()
        )

    def run(self, prepared: Prepared) -> list[np.ndarray]:
        """Run the session on ``prepared``'s feeds (blocking; ONNX Runtime releases the
        GIL while it computes)."""
        results: list[np.ndarray] = self.session.run(prepared.outputs, prepared.feeds)
        return results

    def respond(
        self, request: pb.ModelInferRequest, prepared: Prepared, results: list[np.ndarray]
    ) -> pb.ModelInferResponse:
        """The answer to ``request``: raw outputs if it was raw (or an output is FP16,
        which has no typed contents), typed ones otherwise."""
        response = pb.ModelInferResponse(
            model_name=self.name, model_version=self.version, id=request.id
        )
        datatypes = [self.outputs[name].datatype for name in prepared.outputs]
        raw = prepared.raw or "FP16" in datatypes
        for name, datatype, array in zip(prepared.outputs, datatypes, results, strict=True):
            output = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
            if raw:
                response.raw_output_contents.append(encode_raw(array, datatype))
            else:
                output.contents.CopyFrom(encode_typed(array, datatype))
        return response


def _as_onnx_strings(array: np.ndarray) -> np.ndarray:
    """BYTES elements as the text ONNX string tensors hold."""
    try:
        return (
            np.vectorize(lambda item: item.decode(), otypes=[object])(array)
            if array.size
            else array
        )
    except UnicodeDecodeError as exc:
        raise TensorDataError(
            f"has a BYTES element that is not UTF-8 (ONNX strings are text): {exc}"
        ) from exc
