"""Domain errors raised by servicers reach callers as the mapped gRPC status."""

from __future__ import annotations

import logging

import grpc
import pytest

from astra.errors import (
    AlreadyExistsError,
    ConflictError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
)
from astra.server import status_for
from astra.store import CompactedError, EmptyKeyError, TooManyOpsError, UnavailableError

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
MAPPED = [
    (InvalidArgumentError([FieldViolation("app.name", "required")]), INVALID_ARGUMENT),
    (NotFoundError("app shop not found"), grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError("app shop exists"), grpc.StatusCode.ALREADY_EXISTS),
    (ConflictError("etag 7 is stale"), grpc.StatusCode.ABORTED),
    (FailedPreconditionError("node n1 is dead"), grpc.StatusCode.FAILED_PRECONDITION),
    (UnavailableError("etcd is unreachable"), grpc.StatusCode.UNAVAILABLE),
    (TooManyOpsError(129, 128), INVALID_ARGUMENT),
    (EmptyKeyError(), INVALID_ARGUMENT),
    (CompactedError(3, 10), grpc.StatusCode.OUT_OF_RANGE),
    (NotImplementedError("Method not implemented!"), grpc.StatusCode.UNIMPLEMENTED),
]


def raising(error: BaseException):
    async def behaviour(request: bytes, context: object) -> bytes:
        raise error

    return behaviour


@pytest.mark.parametrize(("error", "code"), MAPPED, ids=[type(e).__name__ for e, _ in MAPPED])
async def test_a_raised_domain_error_is_answered_with_its_status(serve, error, code):
    running = await serve(unary={"Fail": raising(error)})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.unary("Fail")(b"", timeout=5)
    assert caught.value.code() is code
    assert caught.value.details() == str(error)


async def test_errors_map_through_subclasses():
    class AppNotFoundError(NotFoundError):
        pass

    assert status_for(AppNotFoundError("x")) is grpc.StatusCode.NOT_FOUND
    assert status_for(KeyError("x")) is None


async def test_an_unexpected_error_is_internal_with_a_generic_message_and_logged(serve, caplog):
    running = await serve(unary={"Fail": raising(KeyError("secret internals"))})
    with (
        caplog.at_level(logging.ERROR, logger="astra.server"),
        pytest.raises(grpc.aio.AioRpcError) as caught,
    ):
        await running.unary("Fail")(b"", timeout=5)
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"
    logged = [record for record in caplog.records if record.name == "astra.server._errors"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert "/astra.test.Probe/Fail" in logged[0].getMessage()
    assert "secret internals" in str(logged[0].exc_info[1])


async def test_a_servicers_own_abort_is_kept(serve):
    async def deny(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")

    running = await serve(unary={"Deny": deny})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.unary("Deny")(b"", timeout=5)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "not yours"


async def test_an_error_in_the_middle_of_a_stream_ends_it_with_its_status(serve):
    async def generator(request: bytes, context: object):
        yield b"first"
        raise ConflictError("lost the race")

    async def writer(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        await context.write(b"first")
        raise ConflictError("lost the race")

    running = await serve(stream={"Generator": generator, "Writer": writer})
    for method in ("Generator", "Writer"):
        call = running.stream(method)(b"", timeout=5)
        assert await call.read() == b"first"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() is grpc.StatusCode.ABORTED
        assert caught.value.details() == "lost the race"
