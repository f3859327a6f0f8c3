"""AppService's standard methods over real gRPC: validation with field paths, etags,
field masks, generations, pagination and the error statuses."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from astra._gen.astra.v1 import app_pb2
from astra._gen.astra.v1 import app_service_pb2 as aps
from tests.services.app.plane import Plane, spec


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def update(app: app_pb2.App, *paths: str) -> aps.UpdateAppRequest:
    return aps.UpdateAppRequest(app=app, update_mask=field_mask_pb2.FieldMask(paths=paths))


async def test_create_returns_the_app_with_its_output_fields(control: Plane) -> None:
    request = spec(replicas=0, labels={"team": "search"}, generation=99, etag="forged", uid="mine")
    created = await control.create("ranker", request)
    assert created.name == "apps/ranker"
    assert created.generation == 1
    assert created.uid and created.uid != "mine"
    assert created.etag and created.etag != "forged"
    assert created.create_time.seconds > 0
    assert created.labels == {"team": "search"}
    assert created.models[0].sha256 == "ab" * 32
    fetched = await control.app("ranker")
    assert (fetched.uid, fetched.etag, fetched.models) == (
        created.uid,
        created.etag,
        created.models,
    )


@pytest.mark.parametrize(
    ("app_id", "app", "paths"),
    [
        ("Ranker", spec(), ["app_id"]),
        ("-ranker", spec(), ["app_id"]),
        ("r" * 64, spec(), ["app_id"]),
        ("ranker", spec(models=()), ["app.models"]),
        ("ranker", spec(replicas=-1), ["app.replicas"]),
        (
            "ranker",
            spec(cpu_millis=0, memory_bytes=0),
            ["app.resources.cpu_millis", "app.resources.memory_bytes"],
        ),
        ("ranker", spec(gpus=65), ["app.resources.gpus"]),
        ("ranker", spec(models=(("bad/name", "1"),)), ["app.models[0].name"]),
        ("ranker", spec(models=(("resnet", "1"), ("resnet", "1"))), ["app.models[1].version"]),
        (
            "ranker",
            spec(
                placement=app_pb2.Placement(watermark=1.5, anti_affinity=["other"], max_per_node=-1)
            ),
            [
                "app.placement.anti_affinity[0]",
                "app.placement.watermark",
                "app.placement.max_per_node",
            ],
        ),
        (
            "ranker",
            spec(placement=app_pb2.Placement(affinity=["apps/a"], anti_affinity=["apps/a"])),
            ["app.placement.anti_affinity"],
        ),
        ("ranker", spec(placement=app_pb2.Placement(strategy=42)), ["app.placement.strategy"]),
        ("ranker", spec(labels={"bad key": "x"}), ["app.labels.bad key"]),
        (
            "ranker",
            spec(replicas=5, ray=app_pb2.RayClusterSpec(clusters=2, workers_per_cluster=1)),
            ["app.replicas"],
        ),
        ("ranker", spec(name="apps/other"), ["app.name"]),
        (
            "ranker",
            spec(rollout=app_pb2.RolloutPolicy(max_surge=0, max_unavailable=0)),
            ["app.rollout.max_surge"],
        ),
        (
            "ranker",
            spec(rollout=app_pb2.RolloutPolicy(max_surge=-1, max_unavailable=-2)),
            ["app.rollout.max_surge", "app.rollout.max_unavailable"],
        ),
    ],
)
async def test_an_invalid_spec_names_every_bad_field(
    control: Plane, app_id: str, app: app_pb2.App, paths: list[str]
) -> None:
    error = await rpc_error(control.create(app_id, app))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    for path in paths:
        assert f"{path}: " in error.details(), error.details()
    assert len(error.details().split("; ")) == len(paths), error.details()


async def test_each_model_field_is_checked(control: Plane) -> None:
    app = spec()
    del app.models[:]
    app.models.add(name="m", version="v 1", uri="models/m.onnx", sha256="xyz")
    error = await rpc_error(control.create("ranker", app))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    for path in ("version", "uri", "sha256", "format"):
        assert f"app.models[0].{path}: " in error.details()


async def test_rollout_budgets_default_to_one_surge_and_none_unavailable(control: Plane) -> None:
    created = await control.create("ranker", spec(replicas=0))
    assert created.rollout.HasField("max_surge") and created.rollout.max_surge == 1
    assert created.rollout.max_unavailable == 0
    full = await control.create(
        "full",
        spec(
            replicas=0,
            models=(("bert", "1"),),
            rollout=app_pb2.RolloutPolicy(max_surge=0, max_unavailable=1),
        ),
    )
    assert (full.rollout.max_surge, full.rollout.max_unavailable) == (0, 1)


async def test_workers_per_cluster_derives_the_replica_count(control: Plane) -> None:
    created = await control.create(
        "ranker", spec(replicas=0, ray=app_pb2.RayClusterSpec(clusters=2, workers_per_cluster=3))
    )
    assert created.replicas == 8
    assert created.replica_counts.desired == 8


async def test_a_duplicate_create_answers_already_exists(control: Plane) -> None:
    await control.create("ranker", spec(replicas=0))
    error = await rpc_error(control.create("ranker", spec(replicas=0)))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "apps/ranker" in error.details()


async def test_unknown_and_malformed_names(control: Plane) -> None:
    error = await rpc_error(control.apps.GetApp(aps.GetAppRequest(name="apps/missing")))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await rpc_error(control.apps.GetApp(aps.GetAppRequest(name="missing")))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("name: ")
    error = await rpc_error(control.apps.DeleteApp(aps.DeleteAppRequest(name="apps/missing")))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await rpc_error(
        control.apps.UpdateApp(update(app_pb2.App(name="apps/missing"), "replicas"))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await rpc_error(
        control.apps.ListReplicas(aps.ListReplicasRequest(parent="apps/missing"))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_update_changes_only_masked_fields_and_bumps_the_generation(control: Plane) -> None:
    created = await control.create("ranker", spec(replicas=0, priority=3, labels={"a": "1"}))
    patch = spec(replicas=0, priority=7, labels={"b": "2"}, cpu_millis=4000)
    patch.name, patch.etag = created.name, created.etag
    updated = (await control.apps.UpdateApp(update(patch, "priority", "resources.cpu_millis"))).app
    assert (updated.priority, updated.resources.cpu_millis) == (7, 4000)
    assert updated.labels == {"a": "1"}
    assert updated.resources.memory_bytes == created.resources.memory_bytes
    assert updated.generation == 2
    assert updated.etag != created.etag
    assert updated.uid == created.uid
    patch.etag = updated.etag
    again = (await control.apps.UpdateApp(update(patch, "priority"))).app
    assert (again.generation, again.etag) == (2, updated.etag), "no change, no new generation"
    fetched = await control.app("ranker")
    assert (fetched.priority, fetched.generation, fetched.etag) == (7, 2, updated.etag)


async def test_a_message_path_replaces_the_whole_message(control: Plane) -> None:
    created = await control.create(
        "ranker",
        spec(replicas=0, placement=app_pb2.Placement(max_per_node=2, node_selector={"pool": "a"})),
    )
    patch = app_pb2.App(name=created.name, placement=app_pb2.Placement(spread_zones=True))
    updated = (await control.apps.UpdateApp(update(patch, "placement"))).app
    assert updated.placement == app_pb2.Placement(spread_zones=True)
    everything = spec(replicas=0, priority=9)
    everything.name = created.name
    replaced = (await control.apps.UpdateApp(update(everything, "*"))).app
    assert (replaced.priority, replaced.placement) == (9, app_pb2.Placement())


async def test_a_stale_etag_answers_aborted(control: Plane) -> None:
    created = await control.create("ranker", spec(replicas=0))
    patch = app_pb2.App(name=created.name, etag=created.etag, priority=1)
    await control.apps.UpdateApp(update(patch, "priority"))
    patch.priority = 2
    error = await rpc_error(control.apps.UpdateApp(update(patch, "priority")))
    assert error.code() is grpc.StatusCode.ABORTED
    error = await rpc_error(
        control.apps.DeleteApp(aps.DeleteAppRequest(name=created.name, etag=created.etag))
    )
    assert error.code() is grpc.StatusCode.ABORTED
    assert (await control.app("ranker")).priority == 1


async def test_the_update_mask_is_validated(control: Plane) -> None:
    created = await control.create("ranker", spec(replicas=0))
    patch = app_pb2.App(name=created.name)
    error = await rpc_error(control.apps.UpdateApp(update(patch)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "update_mask.paths: is required"
    error = await rpc_error(
        control.apps.UpdateApp(update(patch, "replicas", "generation", "nope.x"))
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "update_mask.paths[1]: " in error.details() and "update_mask.paths[2]: " in error.details()
    )
    error = await rpc_error(control.apps.UpdateApp(update(patch, "resources.cpu_millis")))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("app.resources.cpu_millis: ")
    assert (await control.app("ranker")).generation == 1


async def test_list_pages_in_name_order_with_stable_tokens(control: Plane) -> None:
    for app_id in ("b", "d", "f", "h", "j", "l", "n"):
        await control.create(app_id, spec(replicas=0, models=((app_id, "1"),)))
    first = await control.apps.ListApps(aps.ListAppsRequest(page_size=3))
    assert [app.name for app in first.apps] == ["apps/b", "apps/d", "apps/f"]
    await control.create(
        "a", spec(replicas=0, models=(("a", "1"),))
    )  # before the cursor: never shows up later
    await control.create("g", spec(replicas=0, models=(("g", "1"),)))  # after it: shows up
    await control.apps.DeleteApp(aps.DeleteAppRequest(name="apps/h"))
    names = []
    token = first.next_page_token
    while token:
        page = await control.apps.ListApps(aps.ListAppsRequest(page_size=3, page_token=token))
        names += [app.name for app in page.apps]
        token = page.next_page_token
    assert names == ["apps/g", "apps/j", "apps/l", "apps/n"]
    everything = await control.apps.ListApps(aps.ListAppsRequest())
    assert len(everything.apps) == 8 and not everything.next_page_token


async def test_list_rejects_bad_pages(control: Plane) -> None:
    for request in (
        aps.ListAppsRequest(page_size=-1),
        aps.ListAppsRequest(page_size=1001),
        aps.ListAppsRequest(page_token="not-a-token"),
    ):
        error = await rpc_error(control.apps.ListApps(request))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().split(":")[0] in ("page_size", "page_token")


async def test_delete_then_create_again(control: Plane) -> None:
    created = await control.create("ranker", spec(replicas=0))
    await control.apps.DeleteApp(aps.DeleteAppRequest(name=created.name, etag=created.etag))
    error = await rpc_error(control.apps.GetApp(aps.GetAppRequest(name=created.name)))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    again = await control.create("ranker", spec(replicas=0))
    assert again.uid != created.uid
    assert again.generation == 1
