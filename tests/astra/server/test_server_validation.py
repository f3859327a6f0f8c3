"""Request validation: every violation named by its field path, answered INVALID_ARGUMENT."""

from __future__ import annotations

import json

import grpc
import pytest

from astra.errors import FieldViolation, InvalidArgumentError
from astra.server import Violations


def validate_app(request: dict) -> None:
    violations = Violations()
    app = violations.at("app")
    app.require(request["app"].get("name"), "name")
    cpu_millis = request["app"]["resources"]["cpu_millis"]
    app.at("resources").check(cpu_millis > 0, "cpu_millis", "must be > 0")
    for index, model in enumerate(request["app"]["models"]):
        app.at("models").at(index).check(model.endswith(".onnx"), "path", "must be an .onnx file")
    violations.raise_if_any()


async def create_app(request: bytes, context: object) -> bytes:
    validate_app(json.loads(request))
    return b"created"


def app_request(*, name: str, cpu_millis: int, models: list[str]) -> bytes:
    app = {"name": name, "resources": {"cpu_millis": cpu_millis}, "models": models}
    return json.dumps({"app": app}).encode()


async def test_violations_are_answered_invalid_argument_naming_each_field(serve):
    running = await serve(unary={"CreateApp": create_app})
    bad = app_request(name="", cpu_millis=0, models=["a.onnx", "b.txt"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.unary("CreateApp")(bad, timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "app.name: is required; app.resources.cpu_millis: must be > 0; "
        "app.models[1].path: must be an .onnx file"
    )
    good = app_request(name="shop", cpu_millis=500, models=["a.onnx"])
    assert await running.unary("CreateApp")(good, timeout=5) == b"created"


def test_views_share_one_list_and_report_every_violation():
    violations = Violations()
    assert not violations
    violations.raise_if_any()  # nothing recorded: no error
    nested = violations.at("spec").at("replicas")
    assert nested.check(True, "count", "must be > 0") is True
    assert nested.check(False, "count", "must be > 0") is False
    violations.add("etag", "is stale")
    assert violations and nested
    with pytest.raises(InvalidArgumentError) as caught:
        nested.raise_if_any()
    assert caught.value.violations == (
        FieldViolation("spec.replicas.count", "must be > 0"),
        FieldViolation("etag", "is stale"),
    )


def test_an_invalid_argument_error_needs_a_violation():
    with pytest.raises(ValueError, match="at least one violation"):
        InvalidArgumentError([])
