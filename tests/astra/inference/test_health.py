"""ServerLive and ServerReady, served by a real server from one ServerHealth."""

from __future__ import annotations

import grpc

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from astra.inference import ServerHealth
from astra.server import Server


class Toggled(ServerHealth, pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self) -> None:
        self.ready = False

    def server_ready(self) -> bool:
        return self.ready


async def test_live_while_it_answers_ready_as_it_says() -> None:
    servicer = Toggled()
    server = Server("127.0.0.1:0", grace=0.5)
    server.add_servicer(
        servicer,
        pb_grpc.add_GRPCInferenceServiceServicer_to_server,
        pb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert (await stub.ServerLive(pb.ServerLiveRequest())).live
            assert not (await stub.ServerReady(pb.ServerReadyRequest())).ready
            servicer.ready = True
            assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    finally:
        await server.shutdown()
