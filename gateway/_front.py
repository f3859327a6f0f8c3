"""The gateway's Open Inference Protocol service (``inference.GRPCInferenceService``).

ModelInfer goes through :class:`Forwarder` on raw bytes. The other methods answer
from what the gateway knows: the routes, their endpoints' states, and the tensor
metadata of each model version, asked once of one of its replicas and kept while the
route lasts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

import astra
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.inference import ServerHealth
from gateway._endpoints import SERVICE
from gateway._forward import Forwarder, unknown
from gateway._table import Route, Table

Context = grpc.aio.ServicerContext[Any, Any]
#: The ``name`` ServerMetadata answers.
SERVER_NAME = "astra-gateway"


class Metadata(ServerHealth):
    """ServerLive, ServerReady (ready once the routes are in), ModelReady,
    ServerMetadata and ModelMetadata."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._tensors: dict[tuple[str, str], tuple[Route, pb.ModelMetadataResponse]] = {}

    def server_ready(self) -> bool:
        return self._table.synced

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=astra.__version__)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        """Ready when the model version has an endpoint that takes requests."""
        route = await self._route(request.name, request.version, context)
        return pb.ModelReadyResponse(
            ready=any(member.endpoint.routable for member in route.members.values())
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        """The tensors from a replica (asked once per route), with every version the
        gateway routes."""
        route = await self._route(request.name, request.version, context)
        key = (route.model, route.version)
        cached = self._tensors.get(key)
        if cached is None or cached[0] is not route:
            answer = await self._ask(route, context)
            # What was asked of routes gone since is of no use any more.
            self._tensors = {
                known: entry
                for known, entry in self._tensors.items()
                if self._table.route(*known) is entry[0]
            }
            cached = self._tensors[key] = (route, answer)
        response = pb.ModelMetadataResponse()
        response.CopyFrom(cached[1])
        del response.versions[:]
        response.versions.extend(self._table.versions(route.model))
        return response

    async def _route(self, model: str, version: str, context: Context) -> Route:
        route = self._table.route(model, version)
        if route is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, unknown(self._table, model, version))
        assert route is not None
        return route

    async def _ask(self, route: Route, context: Context) -> pb.ModelMetadataResponse:
        endpoints = [
            member.endpoint for member in route.members.values() if member.endpoint.routable
        ]
        failure: grpc.aio.AioRpcError | None = None
        for endpoint in endpoints:
            ask = endpoint.channel.unary_unary(
                f"/{SERVICE}/ModelMetadata",
                request_serializer=pb.ModelMetadataRequest.SerializeToString,
                response_deserializer=pb.ModelMetadataResponse.FromString,
            )
            try:
                return await ask(
                    pb.ModelMetadataRequest(name=route.model, version=route.version),
                    timeout=context.time_remaining(),
                )
            except grpc.aio.AioRpcError as exc:
                failure = exc
        reason = f": {failure.code().name}: {failure.details()}" if failure is not None else ""
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"model {route.name} has no ready endpoint to describe it{reason}",
        )
        raise AssertionError("abort returned")


def service_handler(
    service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
) -> grpc.ServiceRpcHandler:
    """``service``'s methods as one handler, as :meth:`astra.server.Server.add_generic_handler`
    takes them."""
    handler = grpc.method_handlers_generic_handler(service, handlers)
    # grpc's stubs say GenericRpcHandler; grpc makes a ServiceRpcHandler (it is named).
    assert isinstance(handler, grpc.ServiceRpcHandler)
    return handler


def _typed(
    method: Callable[[Any, Context], Awaitable[Any]], request: Any
) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=request.FromString,
        response_serializer=lambda response: response.SerializeToString(),
    )


def inference_service(table: Table, forward: Forwarder) -> grpc.ServiceRpcHandler:
    """The whole ``inference.GRPCInferenceService`` of the gateway: ModelInfer on raw
    bytes (no serializer either way), the rest typed."""
    metadata = Metadata(table)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(forward),
        "ServerLive": _typed(metadata.ServerLive, pb.ServerLiveRequest),
        "ServerReady": _typed(metadata.ServerReady, pb.ServerReadyRequest),
        "ModelReady": _typed(metadata.ModelReady, pb.ModelReadyRequest),
        "ServerMetadata": _typed(metadata.ServerMetadata, pb.ServerMetadataRequest),
        "ModelMetadata": _typed(metadata.ModelMetadata, pb.ModelMetadataRequest),
    }
    return service_handler(SERVICE, handlers)
