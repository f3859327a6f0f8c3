"""A replica's model server: fetch and verify its models, load them in ONNX Runtime,
serve them over the Open Inference Protocol, drain, stop. Knows nothing of Ray: the
actor (:mod:`node_agent.replica._actor`) runs one, and so can tests and benchmarks."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from astra._gen.astra.v1 import app_pb2
from astra._gen.inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from astra.broker import Broker, Consumer
from astra.server import Server
from node_agent.replica._cache import ModelCache
from node_agent.replica._errors import ModelError
from node_agent.replica._load import LoadReport, LoadTracker
from node_agent.replica._model import OnnxModel
from node_agent.replica._orca import orca_handler
from node_agent.replica._providers import check_providers, plan_providers
from node_agent.replica._puller import Puller
from node_agent.replica._servicer import InferenceServicer
from node_agent.replica._settings import ReplicaSettings

_log = logging.getLogger(__name__)
_SERVICE = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
#: The version of a model declared without one.
DEFAULT_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Serving:
    """Where a started replica serves, and on which execution provider."""

    endpoint: str
    execution_provider: str


class ReplicaServer:
    """Serves one replica's models.

    :meth:`start` fetches every model into the node's cache (verifying its sha256),
    loads it with the execution providers the replica's hardware allows, and only then
    listens, so a replica with a bad model never serves. With a ``redis_url`` in its
    settings it also pulls its models' queued inferences from the async broker
    (:attr:`puller`). :meth:`drain` refuses new inferences, stops pulling, and returns
    once those in flight are done; :meth:`stop` closes.
    """

    def __init__(
        self,
        models: Sequence[app_pb2.Model],
        settings: ReplicaSettings,
        *,
        cache: ModelCache | None = None,
    ) -> None:
        self._specs = list(models)
        self._settings = settings
        self._cache = cache or ModelCache(Path(settings.cache_dir))
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, settings.workers), thread_name_prefix="astra-infer"
        )
        self._load = LoadTracker(workers=settings.workers)
        self._server: Server | None = None
        self._servicer: InferenceServicer | None = None
        self._broker: Broker | None = None
        #: The async broker's puller, when the settings name a Redis.
        self.puller: Puller | None = None

    async def start(self) -> Serving:
        """Load the models and serve.

        Raises:
            ModelError: a model cannot be fetched, fails its sha256, or cannot be
                loaded (or would run on the CPU although the replica has GPUs).
            OSError: the address cannot be listened on.
        """
        if not self._specs:
            raise ModelError("the replica declares no model")
        settings = self._settings
        plan = plan_providers(
            gpus=settings.gpus,
            available=ort.get_available_providers(),
            engine_cache=self._cache.root / "tensorrt",
        )
        models: dict[tuple[str, str], OnnxModel] = {}
        providers = []
        for spec in self._specs:
            version = spec.version or DEFAULT_VERSION
            if (spec.name, version) in models:
                raise ModelError(f"model {spec.name} version {version} is declared twice")
            if spec.format not in (app_pb2.MODEL_FORMAT_UNSPECIFIED, app_pb2.MODEL_FORMAT_ONNX):
                raise ModelError(f"model {spec.name}: only ONNX models can be served")
            path = await asyncio.to_thread(self._cache.get, spec.uri, spec.sha256)
            model = await asyncio.to_thread(
                OnnxModel.load, spec.name, version, path, plan=plan, threads=settings.threads
            )
            providers.append(
                check_providers(f"{spec.name}:{version}", plan, model.providers, gpus=settings.gpus)
            )
            models[spec.name, version] = model
        self._servicer = InferenceServicer(
            models, executor=self._executor, load=self._load, service_time=settings.service_time
        )
        server = Server(f"{settings.host}:{settings.port}", grace=settings.grace)
        server.add_servicer(
            self._servicer,
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
            _SERVICE,
        )
        server.add_generic_handler(orca_handler(self._load.report))
        await server.start()
        self._server = server
        if settings.redis_url:
            self._pull(server, list(models))
        serving = Serving(endpoint=server.address, execution_provider=providers[0])
        _log.info(
            "serving %s at %s on %s",
            ", ".join(f"{n}:{v}" for n, v in models),
            serving.endpoint,
            providers[0],
        )
        return serving

    def _pull(self, server: Server, models: list[tuple[str, str]]) -> None:
        """Pull queued inferences of ``models`` from the async broker, as a task the
        server owns."""
        settings = self._settings
        assert self._servicer is not None and settings.redis_url
        self._broker = Broker.from_url(settings.redis_url)
        consumer = Consumer(
            self._broker,
            models,
            name=f"{server.address}/{uuid.uuid4().hex[:8]}",
            claim_idle=settings.claim_idle,
        )
        self.puller = Puller(
            self._servicer,
            consumer,
            concurrency=settings.broker_concurrency or settings.workers,
            replica=server.address,
        )
        server.spawn(self.puller.run(), name="replica.puller")
        _log.info("pulling async inferences as %s", consumer.name)

    @property
    def load(self) -> LoadReport:
        """The replica's load now."""
        return self._load.report()

    async def drain(self) -> None:
        """Take no new inference and return once those in flight have finished."""
        if self._servicer is None or self._server is None:
            return
        if self.puller is not None:
            self.puller.stop_pulling()
        self._servicer.gate.shut()
        for service in ("", _SERVICE.full_name):
            await self._server.set_serving(service, False)
        await self._servicer.gate.idle()

    async def wait(self) -> None:
        """Return once the server has stopped."""
        if self._server is not None:
            await self._server.wait()

    async def stop(self) -> None:
        """Stop serving (in-flight calls get the settings' grace) and free the workers.
        Idempotent."""
        if self._server is not None:
            await self._server.shutdown()
        if self._broker is not None:
            await self._broker.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
