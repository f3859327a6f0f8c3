"""The Open Inference Protocol (``inference.GRPCInferenceService``) over a replica's
loaded models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any

import grpc

import astra
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc
from astra.errors import NotFoundError
from astra.inference import ServerHealth
from node_agent.replica._load import LOAD_HEADER, LoadTracker
from node_agent.replica._model import OnnxModel, Prepared
from node_agent.replica._orca import ORCA_TRAILER, to_orca

Context = grpc.aio.ServicerContext[Any, Any]
#: The ``name`` ServerMetadata answers.
SERVER_NAME = "astra-replica"


class InferenceFailed(Exception):
    """The model failed while running a request (ONNX Runtime's message is kept)."""


class Gate:
    """Admits requests until shut, and tells when the admitted ones are all done."""

    def __init__(self) -> None:
        self.open = True
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> bool:
        """Admit one request; ``False`` once closed."""
        if not self.open:
            return False
        self._in_flight += 1
        self._idle.clear()
        return True

    def leave(self) -> None:
        """An admitted request is done."""
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()

    def shut(self) -> None:
        """Admit no more requests."""
        self.open = False

    async def idle(self) -> None:
        """Return once every admitted request is done."""
        await self._idle.wait()


class InferenceServicer(ServerHealth, grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    """Serves ``models`` (by name and version; the first declared version of a name is
    its default) through ``executor``'s inference workers.

    Once :attr:`gate` is shut (drain), ModelInfer answers UNAVAILABLE before touching
    the request, so a client or gateway may retry it elsewhere, and readiness turns
    false; liveness stays true until the server stops.

    ``service_time`` (benchmarks and tests only) holds each inference's worker that many
    more seconds after the model ran (:class:`~node_agent.replica.ReplicaSettings`).
    """

    def __init__(
        self,
        models: Mapping[tuple[str, str], OnnxModel],
        *,
        executor: Executor,
        load: LoadTracker,
        service_time: float = 0.0,
    ) -> None:
        self._models = dict(models)
        self._defaults: dict[str, OnnxModel] = {}
        for (name, _), model in self._models.items():
            self._defaults.setdefault(name, model)
        self._executor = executor
        self._load = load
        self._service_time = service_time
        self.gate = Gate()

    def model(self, name: str, version: str) -> OnnxModel:
        """The model ``name`` at ``version`` ("" for its default).

        Raises:
            NotFoundError: no such model or version here.
        """
        model = self._models.get((name, version)) if version else self._defaults.get(name)
        if model is None:
            serving = ", ".join(
                f"{model_name} ({model_version})" for model_name, model_version in self._models
            )
            wanted = f"model {name!r}" + (f" version {version!r}" if version else "")
            raise NotFoundError(f"{wanted} is not served here; serving: {serving}")
        return model

    def server_ready(self) -> bool:
        return self.gate.open

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        self.model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.gate.open)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=astra.__version__)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        return self.model(request.name, request.version).metadata()

    async def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        """Run ``request`` on its model in an inference worker, counted in the load:
        what ModelInfer and the broker's puller both do.

        Raises:
            NotFoundError: the model (version) is not served here.
            InvalidArgumentError: the tensors do not fit the model.
            InferenceFailed: the model failed on them.
        """
        start = self._load.begin()
        failed = False
        try:
            model = self.model(request.model_name, request.model_version)
            prepared = model.prepare(request)
            try:
                results, seconds = await asyncio.get_running_loop().run_in_executor(
                    self._executor, _timed, model, prepared, self._service_time
                )
            except Exception as exc:
                failed = True
                raise InferenceFailed(f"model {model.name} failed: {exc}") from exc
            self._load.busy(seconds)
            return model.respond(request, prepared, results)
        finally:
            self._load.end(start, failed=failed)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        if not self.gate.enter():
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the replica is draining: send the request elsewhere"
            )
        try:
            return await self.infer(request)
        except InferenceFailed as exc:
            failure = str(exc)
        finally:
            report = self._load.report()
            context.set_trailing_metadata(
                (
                    (LOAD_HEADER, report.header()),
                    (ORCA_TRAILER, to_orca(report).SerializeToString()),
                )
            )
            self.gate.leave()
        await context.abort(grpc.StatusCode.INTERNAL, failure)


def _timed(
    model: OnnxModel, prepared: Prepared, service_time: float = 0.0
) -> tuple[list[Any], float]:
    """Run ``model`` on ``prepared`` (in an inference worker), then hold the worker
    ``service_time`` more seconds; returns the results and the seconds it took."""
    start = time.perf_counter()
    results = model.run(prepared)
    if service_time > 0:
        time.sleep(service_time)
    return results, time.perf_counter() - start
