"""RegisterNode, GetNode and ListNodes over a real server, on memory and on etcd."""

from __future__ import annotations

import grpc
import pytest

from astra import keys
from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra.records import NodeRecord
from astra.store import Store
from tests.services.resource.conftest import Replica, make_node


async def test_registering_a_node_stores_it_ready_with_a_uid_and_generation_1(
    replica: Replica, store: Store
):
    response = await replica.stub.RegisterNode(
        rs.RegisterNodeRequest(node=make_node("nodes/n1", labels={"pool": "cheap"}))
    )

    node = response.node
    assert node.name == "nodes/n1"
    assert node.phase == node_pb2.NODE_PHASE_READY
    assert node.phase_reason == "Registered"
    assert len(node.uid) == 32
    assert node.generation == 1
    assert node.capacity.cpu_millis == 8000
    assert dict(node.labels) == {"pool": "cheap"}
    assert node.create_time.seconds > 0 and node.etag
    assert response.heartbeat_interval.ToTimedelta().total_seconds() == 0.5
    assert not response.redirect_address
    stored = NodeRecord.from_bytes((await store.get(keys.node("n1"))).value)
    assert (stored.uid, stored.phase, stored.generation) == (node.uid, "READY", 1)
    assert await replica.get("nodes/n1") == node


async def test_registering_again_unchanged_is_idempotent(replica: Replica, store: Store):
    first = await replica.register("nodes/n1")
    revision = (await store.get(keys.node("n1"))).mod_revision

    again = await replica.register("nodes/n1")

    assert again == first
    assert (await store.get(keys.node("n1"))).mod_revision == revision  # nothing written


async def test_registering_again_with_changed_capacity_is_a_new_generation_not_a_duplicate(
    replica: Replica,
):
    first = await replica.register("nodes/n1", cpu_millis=8000)

    updated = await replica.register("nodes/n1", cpu_millis=16000, gpus=2)

    assert updated.uid == first.uid
    assert updated.generation == 2
    assert (updated.capacity.cpu_millis, updated.capacity.gpus) == (16000, 2)
    assert updated.create_time == first.create_time
    assert updated.etag != first.etag
    listed = await replica.stub.ListNodes(rs.ListNodesRequest())
    assert [node.name for node in listed.nodes] == ["nodes/n1"]
    assert listed.nodes[0].generation == 2


def _invalid(**changes: object) -> node_pb2.Node:
    node = make_node("nodes/n1")
    for path, value in changes.items():
        target, _, field = path.rpartition("__")
        message = getattr(node, target) if target else node
        if isinstance(value, dict):
            getattr(message, field).update(value)
        else:
            setattr(message, field, value)
    return node


INVALID = {
    "negative cpu": (_invalid(capacity__cpu_millis=-1), "node.capacity.cpu_millis"),
    "absurd memory": (_invalid(capacity__memory_bytes=1 << 60), "node.capacity.memory_bytes"),
    "negative gpus": (_invalid(capacity__gpus=-2), "node.capacity.gpus"),
    "absurd gpus": (_invalid(capacity__gpus=100_000), "node.capacity.gpus"),
    "too many labels": (_invalid(labels={f"k{i}": "v" for i in range(65)}), "node.labels"),
    "label key too long": (_invalid(labels={"k" * 64: "v"}), 'node.labels["' + "k" * 63),
    "label value too long": (_invalid(labels={"team": "v" * 64}), 'node.labels["team"]'),
    "zone too long": (_invalid(zone="z" * 64), "node.zone"),
    "bad name": (_invalid(name="node/n1"), "node.name"),
    "no address": (_invalid(address=""), "node.address"),
}


@pytest.mark.parametrize(("node", "field"), INVALID.values(), ids=INVALID.keys())
async def test_invalid_registrations_answer_invalid_argument_naming_the_field(
    replica: Replica, store: Store, node, field
):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await replica.stub.RegisterNode(rs.RegisterNodeRequest(node=node))

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()
    assert (await store.range(keys.NODES)).kvs == []


async def test_a_registration_without_capacity_names_it(replica: Replica):
    node = make_node("nodes/n1")
    node.ClearField("capacity")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await replica.stub.RegisterNode(rs.RegisterNodeRequest(node=node))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "node.capacity: is required" in caught.value.details()


async def test_get_of_an_unknown_node_is_not_found(replica: Replica):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await replica.get("nodes/nope")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_list_pages_in_name_order_and_filters_by_phase_and_labels(replica: Replica):
    for index in range(7):
        await replica.register(f"nodes/n{index}", labels={"pool": "cheap" if index % 2 else "gold"})
    await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/n3"))

    names, token = [], ""
    while True:
        page = await replica.stub.ListNodes(rs.ListNodesRequest(page_size=3, page_token=token))
        assert len(page.nodes) <= 3
        names += [node.name for node in page.nodes]
        token = page.next_page_token
        if not token:
            break
    assert names == [f"nodes/n{index}" for index in range(7)]

    cheap_ready = await replica.stub.ListNodes(
        rs.ListNodesRequest(phase=node_pb2.NODE_PHASE_READY, label_selector={"pool": "cheap"})
    )
    assert [node.name for node in cheap_ready.nodes] == ["nodes/n1", "nodes/n5"]


async def test_list_rejects_a_bad_page_token_and_a_negative_page_size(replica: Replica):
    for request, field in (
        (rs.ListNodesRequest(page_token="%%%"), "page_token"),
        (rs.ListNodesRequest(page_size=-1), "page_size"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await replica.stub.ListNodes(request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in caught.value.details()
