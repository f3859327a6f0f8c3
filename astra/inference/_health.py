"""The Open Inference Protocol's server health, ``ServerLive`` and ``ServerReady``, for
every server that speaks it (the replicas, the gateway)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import grpc

from astra._gen.inference import grpc_predict_v2_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]


class ServerHealth(ABC):
    """``ServerLive`` and ``ServerReady`` of ``inference.GRPCInferenceService``: live as
    long as it answers, ready as :meth:`server_ready` says. Mix it into the servicer,
    before the generated base class."""

    @abstractmethod
    def server_ready(self) -> bool:
        """Whether the server takes inference requests now."""

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.server_ready())
