"""ModelInfer through the gateway: route the request's bytes, forward them untouched,
and retry once on another endpoint when :mod:`gateway._rules` allows it. The client's
deadline goes to the replica: each attempt gets the time the client has left.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable
from typing import Any, NoReturn, cast

import grpc
from opentelemetry import trace

from astra import telemetry
from astra.server import observed
from gateway import _native
from gateway._endpoints import MODEL_INFER, Member, State
from gateway._health import Health
from gateway._rules import RULES, Metadata, RetryRules
from gateway._table import Table
from gateway._telemetry import Observed, record_request

Context = grpc.aio.ServicerContext[Any, Any]

#: How gRPC words a call that never reached the server.
CONNECT_FAILURES = ("failed to connect to all addresses", "DNS resolution failed")
#: Request metadata that belongs to the hop, not the request.
_HOP = frozenset({"user-agent"})
_RESERVED = ("grpc-", ":")


def never_sent(error: grpc.aio.AioRpcError) -> bool:
    """The call failed before a connection to the replica existed."""
    return error.code() == grpc.StatusCode.UNAVAILABLE and (error.details() or "").startswith(
        CONNECT_FAILURES
    )


def refused(rules: RetryRules, error: grpc.aio.AioRpcError) -> bool:
    """The replica refused the request without running it, by ``rules``."""
    return rules.refused(error.code(), error.trailing_metadata() or ())


def retriable(rules: RetryRules, error: grpc.aio.AioRpcError, metadata: Metadata) -> bool:
    """Whether a failed attempt may be made again on another endpoint, by ``rules``."""
    if refused(rules, error) or never_sent(error):
        return True
    return error.code() in rules.idempotent_retry and rules.idempotent(metadata)


def forwarded(metadata: Iterable[tuple[str, str | bytes]] | None) -> Metadata:
    """The client's metadata that goes on to the replica (tracing headers included)."""
    if not metadata:
        return ()
    return tuple(
        [
            (key, value)
            for key, value in metadata
            if key not in _HOP and not key.startswith(_RESERVED)
        ]
    )


class Forwarder:
    """The ModelInfer handler: raw request bytes in, raw response bytes out, retried
    and observed by ``rules``."""

    def __init__(self, table: Table, health: Health, *, rules: RetryRules = RULES) -> None:
        self._table = table
        self._health = health
        self._rules = rules

    async def __call__(self, request: bytes, context: Context) -> bytes:
        if telemetry.enabled():
            return await self._observed(request, context)
        return await self._forward(request, context, None)

    async def _observed(self, request: bytes, context: Context) -> bytes:
        """:meth:`_forward`, traced and counted (:mod:`gateway._telemetry`)."""
        seen = Observed()
        with observed(context, functools.partial(record_request, seen)):
            return await self._forward(request, context, seen)

    async def _forward(self, request: bytes, context: Context, seen: Observed | None) -> bytes:
        table = self._table
        slot = table.router.route(request)
        if slot < 0:
            await self._unroutable(slot, request, context, seen)
        member = table.slots[slot]
        assert member is not None, "a picker answered a free slot"
        metadata = forwarded(context.invocation_metadata())
        if seen is not None:
            seen.route = member.route
        try:
            if seen is None:  # the hot path: one frame less
                return await self._send(member, request, context, metadata)
            return await self._attempt(member, request, context, metadata, seen)
        except grpc.aio.AioRpcError as error:
            other = self._other(member) if retriable(self._rules, error, metadata) else None
            if other is None:
                await _abort(context, error)
        try:
            return await self._attempt(other, request, context, metadata, seen)
        except grpc.aio.AioRpcError as error:
            await _abort(context, error)

    async def _attempt(
        self,
        member: Member,
        request: bytes,
        context: Context,
        metadata: Metadata,
        seen: Observed | None,
    ) -> bytes:
        """:meth:`_send`; traced, when ``seen``, in a CLIENT span whose context (not the
        client's) goes to the replica."""
        if seen is None:
            return await self._send(member, request, context, metadata)
        span = telemetry.start_client_span(MODEL_INFER, member.endpoint.address)
        span.set_attribute("astra.attempt", seen.attempts)
        seen.attempts += 1
        with trace.use_span(span, end_on_exit=False):
            metadata = tuple(telemetry.inject(metadata))
        code, details = grpc.StatusCode.UNKNOWN, ""
        try:
            response = await self._send(member, request, context, metadata)
            code = grpc.StatusCode.OK
            return response
        except grpc.aio.AioRpcError as error:
            code, details = error.code(), error.details() or ""
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            # grpc's stubs say code() always has one; it is None until the handler sets one.
            ended = cast("grpc.StatusCode | None", context.code())
            telemetry.end_client_span(span, ended or code, details)

    async def _send(
        self, member: Member, request: bytes, context: Context, metadata: Metadata
    ) -> bytes:
        timeout = context.time_remaining()
        if timeout is not None and timeout <= 0:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the request was sent"
            )
        endpoint = member.endpoint
        endpoint.in_flight += 1
        start = time.perf_counter()
        try:
            response: bytes = await endpoint.infer(
                request, timeout=timeout, metadata=metadata or None
            )
        except grpc.aio.AioRpcError as error:
            self._observe(member, error, time.perf_counter() - start)
            raise
        else:
            member.samples += 1
            member.sample_seconds += time.perf_counter() - start
            endpoint.failures_in_row = 0
            return response
        finally:
            endpoint.in_flight -= 1
            if endpoint.retired and not endpoint.in_flight:
                self._table.release(endpoint)

    def _observe(self, member: Member, error: grpc.aio.AioRpcError, seconds: float) -> None:
        code = error.code()
        if refused(self._rules, error):
            self._health.refused(member.endpoint)
        elif code in self._rules.weight_errors:
            member.failed += 1
            member.failed_seconds += seconds
            if code in self._rules.replica_faults:
                self._health.failed(member.endpoint)
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            member.samples += 1  # out of time: at least this slow
            member.sample_seconds += seconds

    def _other(self, member: Member) -> Member | None:
        """Another endpoint of the member's route, by its picker, if it has one."""
        picker = member.route.picker
        for _ in range(min(len(picker), 8)):
            slot = picker.pick()
            if slot != member.slot:
                return self._table.slots[slot]
        return None

    async def _unroutable(
        self, code: int, request: bytes, context: Context, seen: Observed | None
    ) -> NoReturn:
        if code == _native.MALFORMED:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the request is not a ModelInferRequest"
            )
        model, version = _native.model_of(request)
        route = self._table.route(model, version)
        if route is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, unknown(self._table, model, version))
        if seen is not None:
            seen.route = route
        states = [member.endpoint.state for member in route.members.values()]
        detail = ", ".join(
            f"{states.count(state)} {state.value}" for state in State if states.count(state)
        )
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"model {route.name} has no ready endpoint ({detail or 'none listed'})",
        )
        raise AssertionError("abort returned")


def unknown(table: Table, model: str, version: str) -> str:
    """Why ``(model, version)`` is not found."""
    versions = table.versions(model)
    if not versions:
        return f"model {model!r} is not served"
    listed = ", ".join(repr(known) for known in versions)
    return f"model {model!r} has no version {version!r} (versions: {listed})"


async def _abort(context: Context, error: grpc.aio.AioRpcError) -> NoReturn:
    """End the call with the replica's status, details and trailers."""
    await context.abort(error.code(), error.details() or "", error.trailing_metadata() or ())
    raise AssertionError("abort returned")
