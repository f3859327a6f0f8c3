"""The gateway's async broker: ``astra.v1.AsyncInferenceService`` over Redis, for
long requests.

SubmitInference checks the request (it parses, names a model, has inputs, a valid
optional id), resolves the model version by the gateway's routes (NOT_FOUND for a model
or version they do not have) and queues it in that version's stream
(:mod:`astra.broker`), where the replicas pull from; a full backlog answers
RESOURCE_EXHAUSTED. Tensors are checked by the replica that runs the inference: a
mismatch ends it FAILED with INVALID_ARGUMENT, as ModelInfer would have answered.
GetInferenceResult and WatchInferenceResult read the inference's record, waiting on it
without polling. A Redis that cannot be reached answers UNAVAILABLE.

SubmitInference is served on raw bytes and parsed here, so that a message that does
not parse is INVALID_ARGUMENT rather than the INTERNAL gRPC gives a failed
deserialization.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry import propagate, trace
from redis.exceptions import RedisError

from astra import telemetry
from astra._gen.astra.v1 import async_inference_service_pb2 as apb
from astra.broker import INFERENCE_ID, Broker
from astra.config import Settings
from astra.errors import FieldViolation, InvalidArgumentError, NotFoundError
from astra.server import Violations
from astra.store import UnavailableError
from gateway._forward import unknown
from gateway._front import service_handler
from gateway._table import Table

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = apb.DESCRIPTOR.services_by_name["AsyncInferenceService"]
#: Seconds kept off a Get's deadline when it waits, to answer before the deadline.
_MARGIN = 0.05


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """The gateway's async broker.

    Attributes:
        redis_url: the broker's Redis (``redis://``, ``rediss://``, ``unix://``).
        max_backlog: inferences (queued or running) a model version may have; more
            submissions are refused with RESOURCE_EXHAUSTED.
        result_ttl: seconds a finished inference's result is kept.
        pending_ttl: seconds an accepted inference is kept while it waits or runs.
    """

    redis_url: str
    max_backlog: int = 10_000
    result_ttl: float = 600.0
    pending_ttl: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerOptions | None:
        """The options ``settings`` give (``redis_url``, ``broker.*``); ``None`` without a
        Redis."""
        if settings.redis_url is None:
            return None
        return cls(
            redis_url=settings.redis_url,
            max_backlog=settings.broker.max_backlog,
            result_ttl=settings.broker.result_ttl,
            pending_ttl=settings.broker.pending_ttl,
        )

    def broker(self) -> Broker:
        """A broker on these options' Redis."""
        return Broker.from_url(
            self.redis_url,
            max_backlog=self.max_backlog,
            result_ttl=self.result_ttl,
            pending_ttl=self.pending_ttl,
        )


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """Redis failures as UNAVAILABLE."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise UnavailableError(f"the async broker's Redis cannot be reached: {exc}") from exc


def _check_id(violations: Violations, inference_id: str, *, required: bool) -> None:
    if required and not violations.require(inference_id, "inference_id"):
        return
    violations.check(
        not inference_id or INFERENCE_ID.fullmatch(inference_id) is not None,
        "inference_id",
        f"must be 1 to 128 letters, digits, '.', '_' or '-', got {inference_id[:140]!r}",
    )


class AsyncInference:
    """The service's methods, over ``broker``, validating models by ``table``."""

    def __init__(self, table: Table, broker: Broker) -> None:
        self._table = table
        self._broker = broker
        self._submissions = telemetry.meter("astra.gateway.broker").create_counter(
            "astra.broker.submissions", description="Async inferences submitted, by outcome"
        )

    async def SubmitInference(self, raw: bytes, context: Context) -> bytes:
        try:
            submit = apb.SubmitInferenceRequest.FromString(raw)
        except DecodeError as exc:
            raise InvalidArgumentError(
                [FieldViolation("", f"the SubmitInferenceRequest does not parse: {exc}")]
            ) from exc
        violations = Violations()
        request = submit.request
        if violations.check(submit.HasField("request"), "request", "is required"):
            at = violations.at("request")
            at.require(request.model_name, "model_name")
            at.check(bool(request.inputs), "inputs", "must have at least one input tensor")
        _check_id(violations, submit.inference_id, required=False)
        violations.raise_if_any()
        route = self._table.route(request.model_name, request.model_version)
        attributes = {"astra.model": request.model_name}
        if route is None:
            self._submissions.add(1, {**attributes, "outcome": "not_found"})
            raise NotFoundError(unknown(self._table, request.model_name, request.model_version))
        request.model_version = route.version
        with telemetry.tracer("astra.gateway.broker").start_as_current_span(
            "AsyncInference.enqueue",
            kind=trace.SpanKind.PRODUCER,
            attributes={**attributes, "astra.model_version": route.version},
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            try:
                with _reachable():
                    inference = await self._broker.submit(
                        request,
                        inference_id=submit.inference_id,
                        traceparent=carrier.get("traceparent", ""),
                    )
            except Exception:
                self._submissions.add(1, {**attributes, "outcome": "refused"})
                raise
            span.set_attribute("astra.inference_id", inference.inference_id)
        self._submissions.add(1, {**attributes, "outcome": "accepted"})
        return apb.SubmitInferenceResponse(inference=inference).SerializeToString()

    async def GetInferenceResult(
        self, request: apb.GetInferenceResultRequest, context: Context
    ) -> apb.GetInferenceResultResponse:
        violations = Violations()
        _check_id(violations, request.inference_id, required=True)
        wait = request.wait.ToTimedelta().total_seconds()
        violations.check(wait >= 0, "wait", f"must not be negative, got {wait:g}s")
        violations.raise_if_any()
        remaining = context.time_remaining()
        if remaining is not None:
            wait = min(wait, max(0.0, remaining - _MARGIN))
        with _reachable():
            if wait > 0:
                inference = await self._broker.wait(request.inference_id, wait)
            else:
                inference = await self._broker.get(request.inference_id)
        return apb.GetInferenceResultResponse(inference=inference)

    async def WatchInferenceResult(
        self, request: apb.WatchInferenceResultRequest, context: Context
    ) -> AsyncIterator[apb.WatchInferenceResultResponse]:
        violations = Violations()
        _check_id(violations, request.inference_id, required=True)
        violations.raise_if_any()
        with _reachable():
            async for inference in self._broker.watch(request.inference_id):
                yield apb.WatchInferenceResultResponse(inference=inference)


def async_inference_service(table: Table, broker: Broker) -> grpc.ServiceRpcHandler:
    """``astra.v1.AsyncInferenceService`` over ``broker``: SubmitInference on raw
    bytes, the rest typed."""
    service = AsyncInference(table, broker)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "SubmitInference": grpc.unary_unary_rpc_method_handler(service.SubmitInference),
        "GetInferenceResult": grpc.unary_unary_rpc_method_handler(
            service.GetInferenceResult,
            request_deserializer=apb.GetInferenceResultRequest.FromString,
            response_serializer=apb.GetInferenceResultResponse.SerializeToString,
        ),
        "WatchInferenceResult": grpc.unary_stream_rpc_method_handler(
            service.WatchInferenceResult,
            request_deserializer=apb.WatchInferenceResultRequest.FromString,
            response_serializer=apb.WatchInferenceResultResponse.SerializeToString,
        ),
    }
    return service_handler(SERVICE.full_name, handlers)
