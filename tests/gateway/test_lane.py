"""Calls through the gateway's fronts that stress the fast lane's HTTP/2 (both fronts
run them, as every test of a Setup): tensors of several MB both ways, many concurrent
streams from one client and from h2load, a client's cancel reaching the replica, a
replica that shuts down (GOAWAY) and comes back at its address, and the connections to
an endpoint that left the routes closing once its last call is done."""

from __future__ import annotations

import asyncio
import collections
import re
import shutil
import subprocess

import grpc
import numpy as np
import psutil
import pytest

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from gateway._endpoints import MODEL_INFER
from tests.gateway.conftest import Setup
from tests.gateway.replica import UNLIMITED, Replica, add_request, served_by
from tests.gateway.route_feed import route
from tests.node_agent.waiting import eventually


def y_of(response: pb.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], dtype=np.float32)


async def test_tensors_of_several_megabytes_go_both_ways(setup: Setup) -> None:
    replica = await setup.replica("big")
    await setup.feed.publish([route("add", "1", replica.address)])
    gateway = await setup.start_gateway()
    x = np.random.default_rng(0).standard_normal(3_000_000).astype(np.float32)  # 12 MB
    async with grpc.aio.insecure_channel(gateway.address, options=UNLIMITED) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(2):
            response = await stub.ModelInfer(add_request(x.tolist()), timeout=60)
            assert np.array_equal(y_of(response), x + np.float32(1))
    assert replica.served == 2


async def test_many_concurrent_requests_get_each_their_own_answer(setup: Setup) -> None:
    replicas = [await setup.replica(name) for name in ("r1", "r2")]
    await setup.feed.publish([route("add", "1", *(replica.address for replica in replicas))])
    await setup.start_gateway()
    stub = setup.stub()
    calls = [stub.ModelInfer(add_request([float(k), -float(k)]), timeout=30) for k in range(400)]
    responses = await asyncio.gather(*calls)
    for k, response in enumerate(responses):
        assert y_of(response).tolist() == [k + 1.0, 1.0 - k]
    assert collections.Counter(map(served_by, responses)).keys() == {"r1", "r2"}


def _h2load(address: str, frame: bytes, tmp: str, requests: int) -> str:
    h2load = shutil.which("h2load")
    assert h2load, "h2load not found: install Debian's nghttp2-client"
    path = f"{tmp}/request.bin"
    with open(path, "wb") as file:
        file.write(frame)
    done = subprocess.run(
        [
            h2load,
            f"http://{address}{MODEL_INFER}",
            "-n", str(requests), "-c", "4", "-m", "32",
            "-d", path,
            "-H", "content-type: application/grpc",
            "-H", "te: trailers",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    return done.stdout


async def test_h2load_streams_all_get_complete_answers(setup: Setup, tmp_path: object) -> None:
    replicas = [await setup.replica(name) for name in ("r1", "r2")]
    await setup.feed.publish([route("add", "1", *(replica.address for replica in replicas))])
    gateway = await setup.start_gateway()
    request = add_request([1.0, 2.0, 3.0]).SerializeToString()
    response = await setup.stub().ModelInfer(add_request([1.0, 2.0, 3.0]))
    answer = len(response.SerializeToString()) + 5  # one length-prefixed message
    requests = 2000
    frame = b"\0" + len(request).to_bytes(4, "big") + request
    out = await asyncio.to_thread(_h2load, gateway.address, frame, str(tmp_path), requests)
    assert re.search(rf"requests: {requests} total, .* {requests} succeeded, 0 failed", out), out
    data = re.search(r"\((\d+)\) data", out)
    assert data is not None, out
    # Every stream got the whole answer (a failed call would carry no message).
    assert int(data.group(1)) == requests * answer
    assert sum(replica.served for replica in replicas) == requests + 1


async def test_a_clients_cancel_reaches_the_replica(setup: Setup) -> None:
    replica = await setup.replica("slow", delay=30.0)
    await setup.feed.publish([route("add", "1", replica.address)])
    await setup.start_gateway()
    call = setup.stub().ModelInfer(add_request([1.0]))
    await eventually(lambda: replica.in_flight == 1, what="the request reached the replica")
    call.cancel()
    await eventually(lambda: replica.in_flight == 0, timeout=5, what="the replica's call ended")
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_replica_that_shuts_down_and_comes_back_serves_again(setup: Setup) -> None:
    steady = await setup.replica("steady")
    bouncing = await setup.replica("bouncing")
    address = bouncing.address
    await setup.feed.publish([route("add", "1", steady.address, address)])
    await setup.start_gateway()
    stub = setup.stub()
    served: collections.Counter[str] = collections.Counter()
    failures: list[grpc.aio.AioRpcError] = []

    async def call() -> None:
        try:
            served[served_by(await stub.ModelInfer(add_request([1.0]), timeout=10))] += 1
        except grpc.aio.AioRpcError as exc:
            failures.append(exc)

    async def load(count: int) -> None:
        await asyncio.gather(*(call() for _ in range(count)))

    await load(40)
    assert served["bouncing"] > 0
    await bouncing.stop()  # GOAWAY, then the port closes
    await load(40)
    back = setup.replicas["bouncing"] = await Replica("bouncing", address=address).start()
    before = served["bouncing"]

    async def served_again() -> bool:
        await load(10)
        return served["bouncing"] > before

    await eventually(served_again, timeout=20, what="the restarted replica serves again")
    assert back.served > 0
    assert failures == []


def _connected_to(address: str) -> int:
    """This process's open TCP connections to ``address``."""
    port = int(address.rpartition(":")[2])
    return sum(
        1
        for connection in psutil.Process().net_connections(kind="tcp")
        if connection.raddr
        and connection.raddr.port == port
        and connection.status == psutil.CONN_ESTABLISHED
    )


async def test_an_endpoint_that_leaves_the_routes_is_disconnected_after_its_last_call(
    setup: Setup,
) -> None:
    leaving = await setup.replica("leaving", delay=0.5)
    staying = await setup.replica("staying")
    await setup.feed.publish([route("add", "1", leaving.address)])
    gateway = await setup.start_gateway()
    stub = setup.stub()
    call = stub.ModelInfer(add_request([1.0]), timeout=10)
    await eventually(lambda: leaving.in_flight == 1, what="a call in flight on it")
    await setup.feed.publish([route("add", "1", staying.address)])
    await eventually(lambda: leaving.address not in gateway.table.endpoints, what="it left")
    assert served_by(await stub.ModelInfer(add_request([1.0]))) == "staying"
    assert _connected_to(leaving.address) > 0, "its call is still in flight"
    assert served_by(await call) == "leaving"
    await eventually(
        lambda: _connected_to(leaving.address) == 0, what="no connection to it is left"
    )
