"""Traces across processes: a CLIENT span per outgoing RPC, its context sent on as the W3C
``traceparent`` (and ``tracestate``) request metadata that the servers'
:class:`astra.server.TelemetryInterceptor` joins.

Every control-plane channel the project opens comes from :func:`channel` (grpc.aio) or
goes through :func:`intercept_channel` (synchronous grpc). While telemetry is off, both
give a plain channel: no interceptor, nothing per call. Hot paths that open their own
channels (the gateway's, towards replicas) call :func:`inject` themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import grpc
from opentelemetry import propagate, trace

from astra.telemetry._setup import enabled, tracer

_SCOPE = "astra.client"
Metadata = tuple[tuple[str, str | bytes], ...]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Sent = TypeVar("_Sent")
_UnaryCall = TypeVar(
    "_UnaryCall", bound=grpc.aio.UnaryUnaryCall[Any, Any] | grpc.aio.StreamUnaryCall[Any, Any]
)
_StreamCall = TypeVar(
    "_StreamCall", bound=grpc.aio.UnaryStreamCall[Any, Any] | grpc.aio.StreamStreamCall[Any, Any]
)
_SyncCall = TypeVar("_SyncCall", bound=grpc.Call)


def inject(metadata: Iterable[tuple[str, str | bytes]] | None) -> list[tuple[str, str | bytes]]:
    """``metadata`` with the current span's context as ``traceparent``/``tracestate``,
    replacing any the caller had (the trace goes on from this process's span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    kept = [(key, value) for key, value in metadata or () if key not in carrier]
    return [*kept, *carrier.items()]


def start_client_span(method: str, target: str) -> trace.Span:
    """A started CLIENT span for a call of ``method`` (``/package.Service/Method``)."""
    service, _, name = method.lstrip("/").partition("/")
    return tracer(_SCOPE).start_span(
        method.lstrip("/"),
        kind=trace.SpanKind.CLIENT,
        attributes={
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
            "server.address": target,
        },
    )


def end_client_span(span: trace.Span, code: grpc.StatusCode | None, details: str = "") -> None:
    """End ``span`` with the status the call ended with (``None``: not known)."""
    if code is not None:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{code.name}: {details}"))
    span.end()


def _method_name(method: str | bytes) -> str:
    return method.decode() if isinstance(method, bytes) else method


# -- grpc.aio --------------------------------------------------------------------------


class _AioTracing:
    """A CLIENT span per call, its context in the call's metadata. Unary responses end
    the span with the call's status; a stream's span ends when the stream does.

    grpc.aio files each interceptor under one kind only: one subclass per kind below.
    """

    def __init__(self, target: str) -> None:
        self._target = target

    def _start(
        self, details: grpc.aio.ClientCallDetails
    ) -> tuple[trace.Span, grpc.aio.ClientCallDetails]:
        span = start_client_span(_method_name(details.method), self._target)
        with trace.use_span(span, end_on_exit=False):
            metadata = grpc.aio.Metadata(*inject(details.metadata))
        traced = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return span, traced

    async def _unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, _Sent], Awaitable[_UnaryCall]],
        details: grpc.aio.ClientCallDetails,
        request: _Sent,
    ) -> _UnaryCall:
        span, details = self._start(details)
        try:
            call = await continuation(details, request)
            try:
                await call
            except grpc.aio.AioRpcError as error:
                end_client_span(span, error.code(), error.details() or "")
            else:
                end_client_span(span, grpc.StatusCode.OK)
            return call
        except BaseException:
            if span.is_recording():
                end_client_span(span, grpc.StatusCode.CANCELLED)
            raise

    async def _streaming(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, _Sent], Awaitable[_StreamCall]],
        details: grpc.aio.ClientCallDetails,
        request: _Sent,
    ) -> _StreamCall:
        span, details = self._start(details)
        try:
            call = await continuation(details, request)
        except BaseException:
            end_client_span(span, grpc.StatusCode.CANCELLED)
            raise
        call.add_done_callback(lambda done: end_client_span(span, None))
        return call


class _UnaryUnary(_AioTracing, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Request],
            Awaitable[grpc.aio.UnaryUnaryCall[_Request, _Response]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Request,
    ) -> grpc.aio.UnaryUnaryCall[_Request, _Response]:
        return await self._unary(continuation, client_call_details, request)


class _StreamUnary(_AioTracing, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, AsyncIterable[_Request] | Iterable[_Request]],
            Awaitable[grpc.aio.StreamUnaryCall[_Request, _Response]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[_Request] | Iterable[_Request],
    ) -> grpc.aio.StreamUnaryCall[_Request, _Response]:
        return await self._unary(continuation, client_call_details, request_iterator)


class _UnaryStream(_AioTracing, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Request],
            Awaitable[grpc.aio.UnaryStreamCall[_Request, _Response]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Request,
    ) -> grpc.aio.UnaryStreamCall[_Request, _Response]:
        return await self._streaming(continuation, client_call_details, request)


class _StreamStream(_AioTracing, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, AsyncIterable[_Request] | Iterable[_Request]],
            Awaitable[grpc.aio.StreamStreamCall[_Request, _Response]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[_Request] | Iterable[_Request],
    ) -> grpc.aio.StreamStreamCall[_Request, _Response]:
        return await self._streaming(continuation, client_call_details, request_iterator)


def channel(target: str, *, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """An insecure grpc.aio channel to ``target`` that carries traces while telemetry is
    on (decided now: call it after :func:`astra.telemetry.configure`)."""
    kinds = (_UnaryUnary, _StreamUnary, _UnaryStream, _StreamStream)
    interceptors = [kind(target) for kind in kinds] if enabled() else None
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)


# -- synchronous grpc ------------------------------------------------------------------


class _CallDetails(
    NamedTuple(
        "_CallDetails",
        [
            ("method", str),
            ("timeout", float | None),
            ("metadata", Metadata | None),
            ("credentials", grpc.CallCredentials | None),
            ("wait_for_ready", bool | None),
            ("compression", grpc.Compression | None),
        ],
    ),
    grpc.ClientCallDetails,
):
    pass


class _SyncTracing(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """The synchronous twin of :class:`_AioTracing`, for unary requests."""

    def __init__(self, target: str) -> None:
        self._target = target

    def _call(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _SyncCall],
        details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _SyncCall:
        span = start_client_span(_method_name(details.method), self._target)
        with trace.use_span(span, end_on_exit=False):
            metadata = tuple(inject(details.metadata))
        traced = _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        try:
            call = continuation(traced, request)
        except BaseException:
            end_client_span(span, grpc.StatusCode.CANCELLED)
            raise
        # grpc's calls are Futures as well (its stubs say so of unary responses only), whose
        # callbacks are given the call itself. (A typed local: mypy cannot narrow _SyncCall.)
        rpc: grpc.Call = call
        if isinstance(rpc, grpc.Future):
            rpc.add_done_callback(lambda done: end_client_span(span, rpc.code(), rpc.details()))
        else:
            end_client_span(span, None)
        return call

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _SyncCall],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _SyncCall:
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _SyncCall],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _SyncCall:
        return self._call(continuation, client_call_details, request)


def intercept_channel(channel: grpc.Channel, target: str) -> grpc.Channel:
    """``channel`` (synchronous, to ``target``) carrying traces while telemetry is on."""
    if not enabled():
        return channel
    return grpc.intercept_channel(channel, _SyncTracing(target))
