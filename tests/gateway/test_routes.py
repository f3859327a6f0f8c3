"""Following the Scheduler's routes: snapshot, changes, resume, starting over."""

from __future__ import annotations

import grpc
import pytest

from tests.gateway.conftest import Setup
from tests.gateway.replica import add_request, served_by
from tests.gateway.route_feed import route
from tests.node_agent.waiting import eventually


async def test_a_broken_stream_resumes_after_the_last_revision(setup: Setup) -> None:
    one = await setup.replica("one")
    two = await setup.replica("two", [("add", "1"), ("add", "2")])
    await setup.feed.publish([route("add", "1", one.address)])
    gateway = await setup.start_gateway()
    seen = gateway.routes.revision
    await setup.feed.break_streams()
    await setup.feed.publish([route("add", "2", two.address)])  # while the stream is down
    await eventually(
        lambda: gateway.table.route("add", "2") is not None, what="the missed change arrives"
    )
    assert setup.feed.start_revisions == [0, seen + 1]
    assert served_by(await setup.stub().ModelInfer(add_request([1.0], version="2"))) == "two"
    assert gateway.table.route("add", "1") is not None


async def test_a_revision_the_scheduler_forgot_starts_over_from_a_snapshot(setup: Setup) -> None:
    one = await setup.replica("one")
    await setup.feed.publish([route("add", "1", one.address), route("gone", "1", one.address)])
    gateway = await setup.start_gateway()
    await setup.feed.break_streams()
    await setup.feed.publish(removed=[("gone", "1")])
    setup.feed.compact()  # the change above is no longer in the history
    await eventually(
        lambda: gateway.table.route("gone", "1") is None, what="the snapshot drops the route"
    )
    assert setup.feed.start_revisions[0] == 0 and setup.feed.start_revisions[-1] == 0
    assert len(setup.feed.start_revisions) >= 3  # the resume was refused in between
    assert served_by(await setup.stub().ModelInfer(add_request([1.0]))) == "one"


async def test_routes_stay_in_use_while_the_scheduler_is_away(setup: Setup) -> None:
    one = await setup.replica("one")
    await setup.feed.publish([route("add", "1", one.address)])
    await setup.start_gateway()
    await setup.feed_server.shutdown(grace=0)
    stub = setup.stub()
    for _ in range(5):
        assert served_by(await stub.ModelInfer(add_request([1.0]))) == "one"


async def test_the_gateway_asks_only_for_its_models(setup: Setup) -> None:
    await setup.start_gateway(models=["add", "mul"])
    assert setup.feed.models_asked == [["add", "mul"]]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await setup.stub().ModelInfer(add_request([1.0]))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
