"""A store that cannot be reached answers UNAVAILABLE, never INTERNAL."""

from __future__ import annotations

import grpc
import pytest

from astra._gen.astra.v1 import app_pb2, app_service_pb2_grpc
from astra._gen.astra.v1 import app_service_pb2 as aps
from astra.server import Server
from astra.store import open_store
from astra.testing import EtcdProcess, running
from services.app import AppService
from tests.services.app.plane import spec


async def test_an_unreachable_store_answers_unavailable() -> None:
    with running(EtcdProcess()) as etcd:
        assert isinstance(etcd, EtcdProcess)
        async with await open_store(etcd.url) as store:
            service = AppService(store, resource="127.0.0.1:1")  # CRUD only: never started
            server = Server("127.0.0.1:0", grace=0.2)
            service.add_to(server)
            async with server, grpc.aio.insecure_channel(server.address) as channel:
                stub = app_service_pb2_grpc.AppServiceStub(channel)
                request = aps.CreateAppRequest(app_id="ranker", app=spec(replicas=0))
                created = (await stub.CreateApp(request)).app
                etcd.stop()
                calls = (
                    stub.GetApp(aps.GetAppRequest(name=created.name)),
                    stub.CreateApp(aps.CreateAppRequest(app_id="other", app=spec(replicas=0))),
                    stub.UpdateApp(
                        aps.UpdateAppRequest(
                            app=app_pb2.App(name=created.name, priority=1),
                            update_mask={"paths": ["priority"]},
                        )
                    ),
                    stub.DeleteApp(aps.DeleteAppRequest(name=created.name)),
                    stub.ListReplicas(aps.ListReplicasRequest(parent=created.name)),
                )
                for call in calls:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await call
                    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, caught.value
