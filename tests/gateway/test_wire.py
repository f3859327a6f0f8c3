"""Reading the model from a ModelInferRequest's bytes, and routing by it, on both
implementations; protobuf's own parser is the reference."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from gateway._wire import encode_varint as varint
from tests.gateway.conftest import native_core, python_core

relaxed = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def request(name: str = "resnet", version: str = "2", **fields: Any) -> bytes:
    message = pb.ModelInferRequest(model_name=name, model_version=version, id="r-1", **fields)
    tensor = message.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    tensor.parameters["binary_data_size"].int64_param = 16
    message.parameters["priority"].int64_param = 3
    message.raw_input_contents.append(b"\x00" * 16)
    message.outputs.add(name="y")
    return message.SerializeToString()


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    return varint(number << 3 | wire_type) + payload


def test_reads_name_and_version_of_a_full_request(core: Any) -> None:
    assert core.model_of(request("bert-large", "17")) == ("bert-large", "17")
    assert core.model_of(b"") == ("", "")


def test_the_last_occurrence_wins_as_in_protobuf(core: Any) -> None:
    merged = request("a", "1") + request("b")  # concatenation is a protobuf merge
    assert core.model_of(merged) == ("b", "2")
    assert pb.ModelInferRequest.FromString(merged).model_name == "b"


def test_fields_of_another_wire_type_are_unknown_fields(core: Any) -> None:
    data = field(1, 0, varint(5)) + field(2, 5, b"abcd") + request("m", "3") + field(1, 1, b"x" * 8)
    assert core.model_of(data) == ("m", "3")


def test_groups_are_skipped_however_nested(core: Any) -> None:
    inner = field(7, 3, field(8, 0, varint(1))) + field(7, 4, b"")
    group = field(9, 3, inner + field(1, 2, varint(3) + b"bad")) + field(9, 4, b"")
    assert core.model_of(group + request("ok", "1")) == ("ok", "1")


@pytest.mark.parametrize(
    "data",
    [
        request()[:-3],  # a tensor cut short
        b"\x0a\x05abc",  # a name longer than the message
        b"\x0e",  # wire type 6
        b"\x0f",  # wire type 7
        b"\x00",  # field number 0
        b"\x08" + b"\xff" * 10 + b"\x01",  # a varint of 11 bytes
        field(9, 3, b""),  # a group never closed
        field(9, 4, b""),  # a group closed that never opened
        field(9, 3, field(8, 4, b"")),  # a group closed by another's tag
        b"\xff\xff\xff\xff\x7f",  # a tag beyond 32 bits
        field(9, 3, b"") * 101 + field(9, 4, b"") * 101,  # groups 101 deep
    ],
)
def test_malformed_bytes_are_refused(core: Any, data: bytes) -> None:
    with pytest.raises(ValueError):
        core.model_of(data)
    with pytest.raises(Exception):  # noqa: B017 - protobuf's parser agrees
        pb.ModelInferRequest.FromString(data)
    assert core.Router().route(data) == core.MALFORMED


def test_invalid_utf8_is_replaced_in_names_read_back(core: Any) -> None:
    data = field(1, 2, varint(2) + b"\xff\xfe")
    assert core.model_of(data) == ("\ufffd\ufffd", "")


@relaxed
@given(
    name=st.text(max_size=40),
    version=st.text(max_size=8),
    blobs=st.lists(st.binary(max_size=300), max_size=4),
    identifier=st.text(max_size=10),
)
def test_any_request_reads_as_protobuf_reads_it(
    name: str, version: str, blobs: list[bytes], identifier: str
) -> None:
    message = pb.ModelInferRequest(
        model_name=name, model_version=version, id=identifier, raw_input_contents=blobs
    )
    data = message.SerializeToString()
    assert native_core().model_of(data) == python_core().model_of(data) == (name, version)


@relaxed
@given(data=st.binary(max_size=64))
def test_both_implementations_agree_on_any_bytes(data: bytes) -> None:
    outcomes = []
    for core in (native_core(), python_core()):
        try:
            outcomes.append(core.model_of(data))
        except ValueError:
            outcomes.append("malformed")
    assert outcomes[0] == outcomes[1]


def test_routes_by_name_and_version(core: Any) -> None:
    router = core.Router()
    one, two = core.Picker(), core.Picker()
    one.update([(11, 1)])
    two.update([(21, 1), (22, 1)])
    router.set("m", "1", one)
    router.set("m", "2", two)
    router.set("m", "", two)  # what an empty version means: the caller's choice
    assert len(router) == 3 and router.get("m", "1") is one and router.get("x", "1") is None
    assert router.route(request("m", "1")) == 11
    assert {router.route(request("m", "")) for _ in range(4)} == {21, 22}
    assert router.route(request("m", "3")) == core.UNKNOWN
    assert router.route(request("other", "1")) == core.UNKNOWN
    two.update([(21, 0), (22, 0)])
    assert router.route(request("m", "2")) == core.NO_ENDPOINT


def test_removing_a_route(core: Any) -> None:
    router = core.Router()
    picker = core.Picker()
    picker.update([(1, 1)])
    router.set("m", "1", picker)
    router.set("m", "1", None)
    router.set("gone", "1", None)  # removing an absent route is a no-op
    assert len(router) == 0 and router.get("m", "1") is None
    assert router.route(request("m", "1")) == core.UNKNOWN
