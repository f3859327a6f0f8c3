"""A small real Open Inference Protocol replica for the gateway's tests: model "add"
(any version it is given) answers ``y = x + 1`` on FP32 tensors, and says which replica
served it in the response parameter ``replica``.

It drains as AstraRay replicas do (new requests refused with UNAVAILABLE and the
``x-astra-refused`` trailer, those in flight finish, ServerReady turns false), can be
made slow or failing, and streams ORCA load reports out of band.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import numpy as np

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from astra.inference import ServerHealth
from astra.server import Server
from gateway import REFUSED
from gateway._orca import STREAM_CORE_METRICS

Context = grpc.aio.ServicerContext[Any, Any]
DESCRIPTOR = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]


def orca_report(rps: float, utilization: float, eps: float) -> bytes:
    """A serialized ``xds.data.orca.v3.OrcaLoadReport`` (fields 6, 7, 9: doubles)."""
    return b"".join(
        bytes([number << 3 | 1]) + struct.pack("<d", value)
        for number, value in ((6, rps), (7, eps), (9, utilization))
    )


def add_request(
    x: Sequence[float], *, model: str = "add", version: str = ""
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, model_version=version, id="t")
    request.inputs.add(name="x", datatype="FP32", shape=[len(x)])
    request.raw_input_contents.append(np.asarray(x, dtype=np.float32).tobytes())
    return request


def served_by(response: pb.ModelInferResponse) -> str:
    return response.parameters["replica"].string_param


#: Tensors of any size, as the gateway's own channels allow.
UNLIMITED = (("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1))


class Replica(ServerHealth, pb_grpc.GRPCInferenceServiceServicer):
    """One replica serving ``models`` ((name, version) pairs) at ``address`` (by default
    a free port)."""

    def __init__(
        self,
        name: str,
        models: Sequence[tuple[str, str]] = (("add", "1"),),
        *,
        delay: float = 0.0,
        address: str = "127.0.0.1:0",
    ) -> None:
        self.name = name
        self.models = set(models)
        self.delay = delay
        self.fail_with: grpc.StatusCode | None = None
        self.load = (0.0, 0.0, 0.0)  # (rps, utilization, eps) for ORCA reports
        self.draining = False
        self.attempts = 0  # every ModelInfer that reached it
        self.served = 0
        self.refused = 0
        self.in_flight = 0
        self.metadata: list[dict[str, Any]] = []  # what each served request carried
        self.time_left: list[float | None] = []
        self.server = Server(address, grace=5.0, options=UNLIMITED)
        self.server.add_servicer(
            self, pb_grpc.add_GRPCInferenceServiceServicer_to_server, DESCRIPTOR
        )
        self.server.add_generic_handler(
            grpc.method_handlers_generic_handler(
                "xds.service.orca.v3.OpenRcaService",
                {
                    STREAM_CORE_METRICS.rsplit("/", 1)[1]: grpc.unary_stream_rpc_method_handler(
                        self._reports
                    )
                },
            )
        )
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def address(self) -> str:
        return self.server.address

    async def start(self) -> Replica:
        await self.server.start()
        return self

    async def drain(self) -> None:
        """Refuse new requests; return once those in flight are done."""
        self.draining = True
        await self._idle.wait()

    async def stop(self) -> None:
        await self.server.shutdown()

    def server_ready(self) -> bool:
        return not self.draining and self.fail_with is None

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        versions = sorted(version for name, version in self.models if name == request.name)
        if not versions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.name}")
        return pb.ModelMetadataResponse(
            name=request.name,
            versions=versions,
            platform="numpy",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name="x", datatype="FP32", shape=[-1])],
            outputs=[
                pb.ModelMetadataResponse.TensorMetadata(name="y", datatype="FP32", shape=[-1])
            ],
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        self.attempts += 1
        if self.draining:
            self.refused += 1
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "draining", trailing_metadata=((REFUSED, "draining"),)
            )
        if self.fail_with is not None:
            await context.abort(self.fail_with, f"{self.name} fails on purpose")
        versions = sorted(version for name, version in self.models if name == request.model_name)
        if not versions or (request.model_version and request.model_version not in versions):
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"{self.name} does not serve {request.model_name}"
            )
        self.in_flight += 1
        self._idle.clear()
        try:
            self.metadata.append(
                {item.key: item.value for item in context.invocation_metadata() or ()}
            )
            self.time_left.append(context.time_remaining())
            if self.delay:
                await asyncio.sleep(self.delay)
            x = np.frombuffer(request.raw_input_contents[0], dtype=np.float32)
            response = pb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id
            )
            response.outputs.add(name="y", datatype="FP32", shape=[len(x)])
            response.raw_output_contents.append((x + 1).astype(np.float32).tobytes())
            response.parameters["replica"].string_param = self.name
            self.served += 1
            return response
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def _reports(self, request: bytes, context: Context) -> AsyncIterator[bytes]:
        while True:
            yield orca_report(*self.load)
            await asyncio.sleep(0.05)
