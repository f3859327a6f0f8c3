"""grpc.aio server interceptors: per-RPC logging and OpenTelemetry, on one wrapping mechanism.

An interceptor here wraps each method's behaviour in an async context manager
(:meth:`WrappingInterceptor.around`) that sees the call's context and how it ended.
Wrapped handlers are cached per method, so the per-call cost is the context manager
alone. Behaviours must be coroutines or async generators (grpc.aio style).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

import grpc
from opentelemetry import metrics, propagate, trace

from astra import telemetry

_log = logging.getLogger("astra.server.rpc")

#: Codes that mean the server failed (as 5xx in HTTP); the others are the caller's doing.
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
#: The details of the UNAVAILABLE that ends a stream when its server shuts down (see
#: :class:`~astra.server._stopping.StreamStopper`): expected, so logged as the caller's errors.
SHUTTING_DOWN = "the server is shutting down: watch again (on another replica)"

Context = grpc.aio.ServicerContext[Any, Any]
Around = Callable[[Context], AbstractAsyncContextManager[None]]
#: A method's handler: the interceptors here take any request and response messages.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic in the stubs alone
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
#: A grpc.aio behaviour: a coroutine function, or an async generator function for a
#: response stream (the stubs type the synchronous server's behaviours).
Behaviour = Callable[[Any, Context], Any]

_FACTORIES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def behaviour_of(handler: Handler) -> Behaviour:
    """The behaviour of ``handler``, whichever of the four kinds of method it serves."""
    attribute = _FACTORIES[handler.request_streaming, handler.response_streaming][0]
    behaviour: Behaviour = getattr(handler, attribute)
    return behaviour


def wrap_handler(handler: Handler, around: Around) -> Handler:
    """The same handler, with each call of its behaviour run inside ``around(context)``."""
    factory = _FACTORIES[handler.request_streaming, handler.response_streaming][1]
    behaviour = behaviour_of(handler)

    if inspect.isasyncgenfunction(behaviour):

        async def call_generator(request: Any, context: Any) -> AsyncIterator[Any]:
            async with around(context):
                async for response in behaviour(request, context):
                    yield response

        call: Callable[..., Any] = call_generator
    else:

        async def call_coroutine(request: Any, context: Any) -> Any:
            async with around(context):
                return await behaviour(request, context)

        call = call_coroutine
    return factory(
        call,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def final_status(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with, given the exception its behaviour raised (if any)."""
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = _code(context)
    if code is not None:
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


def _code(context: Context) -> grpc.StatusCode | None:
    """The code set on ``context`` so far: None until one is (the stubs say it always is)."""
    return context.code()


@contextlib.contextmanager
def observed(context: Context, report: Callable[[grpc.StatusCode, float], None]) -> Iterator[None]:
    """Run the block, then ``report(status, seconds)`` with how the call ended and how long
    it took, whether it returned or raised."""
    start = time.perf_counter()
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        report(final_status(context, error), time.perf_counter() - start)


class WrappingInterceptor(grpc.aio.ServerInterceptor, abc.ABC):
    """Runs every call of every method inside :meth:`around`."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = handler, wrap_handler(handler, functools.partial(self.around, method))
            self._wrapped[method] = cached
        return cached[1]

    @abc.abstractmethod
    def around(self, method: str, context: Context) -> AbstractAsyncContextManager[None]:
        """Wraps one call of ``method`` (``/package.Service/Method``)."""


class LoggingInterceptor(WrappingInterceptor):
    """Logs every RPC with its method, status code and duration: DEBUG when OK, WARNING
    for server errors (:data:`SERVER_ERRORS`), INFO for the caller's errors and for
    streams ended by the server's shutdown."""

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        with observed(context, functools.partial(self._log, method, context)):
            yield

    @staticmethod
    def _log(method: str, context: Context, code: grpc.StatusCode, seconds: float) -> None:
        if code is grpc.StatusCode.OK:
            level = logging.DEBUG
        elif code in SERVER_ERRORS and context.details() != SHUTTING_DOWN:
            level = logging.WARNING
        else:
            level = logging.INFO
        if _log.isEnabledFor(level):
            details = "" if code is grpc.StatusCode.OK else f": {context.details() or ''}"
            _log.log(level, "%s %s %.2fms%s", method, code.name, seconds * 1000, details)


class TelemetryInterceptor(WrappingInterceptor):
    """An OpenTelemetry server span per RPC, joined to the caller's trace by the W3C
    ``traceparent`` in the request metadata, with the gRPC status code as
    ``rpc.grpc.status_code``; and the ``rpc.server.duration`` histogram (ms).

    While :mod:`astra.telemetry` is off, handlers pass through untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self._duration: tuple[metrics.Meter, metrics.Histogram] | None = None

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        if not telemetry.enabled():
            return await continuation(handler_call_details)
        return await super().intercept_service(continuation, handler_call_details)

    def _duration_histogram(self) -> metrics.Histogram:
        meter = telemetry.meter("astra.server")
        if self._duration is None or self._duration[0] is not meter:
            histogram = meter.create_histogram(
                "rpc.server.duration", unit="ms", description="Duration of inbound RPCs"
            )
            self._duration = meter, histogram
        return self._duration[1]

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        service, _, name = method.lstrip("/").partition("/")
        attributes: dict[str, str | int] = {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
        }
        carrier = {
            key: value
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        }
        with (
            telemetry.tracer("astra.server").start_as_current_span(
                method.lstrip("/"),
                context=propagate.extract(carrier),
                kind=trace.SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            observed(context, functools.partial(self._record, span, attributes, context)),
        ):
            yield

    def _record(
        self,
        span: trace.Span,
        attributes: dict[str, str | int],
        context: Context,
        code: grpc.StatusCode,
        seconds: float,
    ) -> None:
        attributes["rpc.grpc.status_code"] = code.value[0]
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in SERVER_ERRORS:
            description = f"{code.name}: {context.details() or ''}"
            span.set_status(trace.Status(trace.StatusCode.ERROR, description))
        self._duration_histogram().record(seconds * 1000, attributes)
