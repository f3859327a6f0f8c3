"""Model names are owned, over real gRPC on the in-memory store and a real etcd: a model
version is served by one app, racing claims cannot both win, and names are freed when
an app drops them or its record is removed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence

import grpc
import pytest
from google.protobuf import field_mask_pb2

from astra import keys
from astra._gen.astra.v1 import app_pb2
from astra._gen.astra.v1 import app_service_pb2 as aps
from astra.store import Store, open_store
from astra.testing import EtcdProcess, running
from services.app import _model_owners
from services.app._repository import AppRepository
from tests.node_agent.waiting import eventually
from tests.services.app.plane import Plane, app_record, spec


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdProcess]:
    """An etcd of this module's own, so that its keyspace holds only what its tests write."""
    with running(EtcdProcess()) as server:
        assert isinstance(server, EtcdProcess)
        yield server


@pytest.fixture(params=["memory", "etcd"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Each test on the embedded store and on etcd (this module's, emptied first)."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("etcd").url
    async with await open_store(url) as opened:
        await opened.delete(keys.ROOT, prefix=True)
        yield opened


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def details(error: BaseException) -> str:
    """The status message of a failed call."""
    assert isinstance(error, grpc.aio.AioRpcError), error
    return error.details() or ""


def serving(*models: tuple[str, str]) -> app_pb2.App:
    return spec(replicas=0, models=models)


async def owner(store: Store, model: str, version: str) -> str | None:
    kv = await store.get(keys.model_owner(model, version))
    return kv.value.decode() if kv is not None else None


async def set_models(control: Plane, app_id: str, models: Sequence[tuple[str, str]]) -> app_pb2.App:
    patch = serving(*models)
    patch.name = f"apps/{app_id}"
    request = aps.UpdateAppRequest(
        app=patch, update_mask=field_mask_pb2.FieldMask(paths=["models"])
    )
    response: aps.UpdateAppResponse = await control.apps.UpdateApp(request)
    return response.app


async def test_a_second_app_claiming_a_model_version_is_refused(control: Plane) -> None:
    await control.create("first", serving(("demo", "1")))
    error = await rpc_error(control.create("second", serving(("demo", "1"))))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert details(error).startswith("model demo version 1 is served by apps/first; ")
    assert await app_record(control.store, "second") is None
    assert await owner(control.store, "demo", "1") == "first"


async def test_an_empty_version_is_version_1(control: Plane) -> None:
    await control.create("first", serving(("demo", "")))
    assert await owner(control.store, "demo", "1") == "first"
    error = await rpc_error(control.create("second", serving(("demo", "1"))))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "model demo version 1 is served by apps/first" in details(error)


async def test_an_update_adding_a_claimed_model_is_refused_and_loses_nothing(
    control: Plane,
) -> None:
    await control.create("first", serving(("demo", "1")))
    before = await control.create("second", serving(("other", "1")))
    error = await rpc_error(set_models(control, "second", [("other", "1"), ("demo", "1")]))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "model demo version 1 is served by apps/first" in details(error)
    after = await control.app("second")
    assert (after.generation, after.etag, after.models) == (
        before.generation,
        before.etag,
        before.models,
    )
    assert await owner(control.store, "demo", "1") == "first"
    assert await owner(control.store, "other", "1") == "second"


async def test_racing_creates_of_one_model_version_have_one_winner(control: Plane) -> None:
    for round_ in range(20):
        model = f"m{round_}"
        contenders = [f"a{round_}", f"b{round_}"]
        results = await asyncio.gather(
            *(control.create(app_id, serving((model, "1"))) for app_id in contenders),
            return_exceptions=True,
        )
        won = [
            app_id
            for app_id, result in zip(contenders, results, strict=True)
            if not isinstance(result, BaseException)
        ]
        assert len(won) == 1, results
        (winner,) = won
        (lost,) = [result for result in results if isinstance(result, BaseException)]
        assert isinstance(lost, grpc.aio.AioRpcError), lost
        assert lost.code() is grpc.StatusCode.ALREADY_EXISTS, details(lost)
        assert f"is served by apps/{winner}" in details(lost)
        assert await owner(control.store, model, "1") == winner
        (loser,) = set(contenders) - {winner}
        assert await app_record(control.store, loser) is None


async def test_claims_that_both_read_the_name_free_are_settled_by_the_transaction(
    control: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both creates plan their claims before either commits; the store lets one win."""
    real_plan = _model_owners.plan
    both_planned = asyncio.Event()
    planned: list[str] = []

    async def plan_together(
        store: Store, app_id: str, **versions: Sequence[tuple[str, str]]
    ) -> _model_owners.Claims:
        claims = await real_plan(store, app_id, **versions)
        planned.append(app_id)
        if len(planned) == 2:
            both_planned.set()
        await asyncio.wait_for(both_planned.wait(), timeout=5)
        return claims

    monkeypatch.setattr(_model_owners, "plan", plan_together)
    results = await asyncio.gather(
        control.create("left", serving(("demo", "1"))),
        control.create("right", serving(("demo", "1"))),
        return_exceptions=True,
    )
    assert planned[:2] in (["left", "right"], ["right", "left"])
    errors = [result for result in results if isinstance(result, grpc.aio.AioRpcError)]
    assert len(errors) == 1, results
    assert errors[0].code() is grpc.StatusCode.ALREADY_EXISTS
    winner = await owner(control.store, "demo", "1")
    assert winner in ("left", "right")
    assert f"is served by apps/{winner}" in details(errors[0])


async def test_deleting_the_owner_frees_its_names_once_its_record_is_removed(
    control: Plane,
) -> None:
    await control.create("first", serving(("demo", "1"), ("extra", "2")))
    await control.apps.DeleteApp(aps.DeleteAppRequest(name="apps/first"))

    async def removed() -> bool:
        return await app_record(control.store, "first") is None

    await eventually(removed, what="apps/first removed")
    assert await owner(control.store, "demo", "1") is None
    assert await owner(control.store, "extra", "2") is None
    await control.create("second", serving(("demo", "1")))
    assert await owner(control.store, "demo", "1") == "second"


async def test_a_claim_on_an_app_being_deleted_is_a_failed_precondition(
    control: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def kept(self: AppRepository, app_id: str) -> bool:
        return False  # its owner never gets to remove the record

    monkeypatch.setattr(AppRepository, "remove", kept)
    assert control.app_service is not None
    monkeypatch.setattr(control.app_service, "_delete_wait", 0.1)
    await control.create("first", serving(("demo", "1")))
    await control.apps.DeleteApp(aps.DeleteAppRequest(name="apps/first"))
    error = await rpc_error(control.create("second", serving(("demo", "1"))))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert details(error) == (
        "model demo version 1 is served by apps/first, which is being deleted; "
        "retry when it is gone"
    )
    await control.create("third", serving(("demo", "2")))


async def test_an_app_updated_to_drop_a_model_frees_it(control: Plane) -> None:
    await control.create("first", serving(("demo", "1"), ("extra", "1")))
    await set_models(control, "first", [("extra", "1")])
    assert await owner(control.store, "demo", "1") is None
    await control.create("second", serving(("demo", "1")))
    assert await owner(control.store, "demo", "1") == "second"
    assert await owner(control.store, "extra", "1") == "first"


async def test_one_app_may_serve_several_versions_of_a_model(control: Plane) -> None:
    await control.create("first", serving(("demo", "1"), ("demo", "2")))
    assert await owner(control.store, "demo", "1") == "first"
    assert await owner(control.store, "demo", "2") == "first"
    error = await rpc_error(control.create("second", serving(("demo", "2"))))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "model demo version 2 is served by apps/first" in details(error)
    await control.create("third", serving(("demo", "3")))
    updated = await set_models(control, "first", [("demo", "2"), ("demo", "4")])
    assert [model.version for model in updated.models] == ["2", "4"]
    assert await owner(control.store, "demo", "1") is None
    assert await owner(control.store, "demo", "4") == "first"


async def test_a_stale_owner_key_is_taken_over(control: Plane) -> None:
    """A key naming an app that no longer serves the version (one written before the
    index was kept in step, say) does not block the name forever."""
    await control.store.put(keys.model_owner("demo", "1"), b"gone")
    await control.create("first", serving(("demo", "1")))
    assert await owner(control.store, "demo", "1") == "first"
