"""A small synchronous client of the Open Inference Protocol (KServe v2 gRPC,
``inference.GRPCInferenceService``) with numpy tensors: the gateway serves it, and so
does every replica.

Inputs travel as raw contents; outputs are read from raw or typed contents, whichever
the server sent. The tensor codec is the replicas' own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc
from programs.cli._client import Connection


@dataclass(frozen=True, slots=True)
class Tensor:
    """A model's input or output as its metadata describes it (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name} {self.datatype} [{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What ModelMetadata says of a model."""

    name: str
    versions: tuple[str, ...]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


class InferenceClient(Connection):
    """The Open Inference Protocol at ``address`` (see :class:`Connection`)."""

    def __init__(self, address: str, *, timeout: float = 30.0) -> None:
        super().__init__(address, timeout=timeout)
        self._stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    def metadata(self, model: str, version: str = "") -> ModelInfo:
        """The model's versions, inputs and outputs."""
        request = pb.ModelMetadataRequest(name=model, version=version)
        response = self._call(self._stub.ModelMetadata, request)
        return ModelInfo(
            name=response.name,
            versions=tuple(response.versions),
            inputs=tuple(_tensor(item) for item in response.inputs),
            outputs=tuple(_tensor(item) for item in response.outputs),
        )

    def infer(
        self,
        model: str,
        inputs: Mapping[str, tuple[str, np.ndarray]],
        *,
        version: str = "",
    ) -> dict[str, tuple[str, np.ndarray]]:
        """Run the model on ``inputs`` (name → (datatype, array)); returns its outputs the
        same way, in the server's order."""
        from astra.inference import encode_raw  # numpy codec of the replicas

        request = pb.ModelInferRequest(model_name=model, model_version=version)
        for name, (datatype, array) in inputs.items():
            request.inputs.add(name=name, datatype=datatype, shape=array.shape)
            request.raw_input_contents.append(encode_raw(array, datatype))
        response = self._call(self._stub.ModelInfer, request)
        return _outputs(response)


def _tensor(metadata: pb.ModelMetadataResponse.TensorMetadata) -> Tensor:
    return Tensor(metadata.name, metadata.datatype, tuple(metadata.shape))


def _outputs(response: pb.ModelInferResponse) -> dict[str, tuple[str, np.ndarray]]:
    from astra.inference import decode_raw, decode_typed

    outputs = {}
    for index, output in enumerate(response.outputs):
        shape = tuple(output.shape)
        if index < len(response.raw_output_contents):
            array = decode_raw(response.raw_output_contents[index], output.datatype, shape)
        else:
            array = decode_typed(output.contents, output.datatype, shape)
        outputs[output.name] = (output.datatype, array)
    return outputs
