"""The Ray-backed :class:`~node_agent.ReplicaRuntime`: each replica placed on the node
gets its own Ray node (its cluster's head, or a worker joined to the head) and, on it,
a Ray actor serving its models (:mod:`node_agent.replica`).

``astra agent --runtime node_agent.runtime:RayRuntime`` runs it, configured from the
agent's settings (:meth:`RayRuntimeConfig.from_settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from astra import telemetry
from astra._gen.astra.v1 import node_service_pb2, replica_pb2
from astra.config import Settings
from astra.rpc import Backoff
from astra.server import Tasks
from node_agent._config import node_address
from node_agent._probe import find_gpus
from node_agent._runtime import ReportStatus
from node_agent.replica import DRAINED, EXIT_FAILED, FAILED, READY, HostConfig, ReplicaSettings
from node_agent.runtime._procs import (
    ChildProcess,
    RayNodeSpec,
    RayStartError,
    RedisTarget,
    ReplicaHost,
    free_ports,
    start_ray_node,
)

_log = logging.getLogger(__name__)
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
#: Ray rewrites these to the machine's outward address; Ray on a loopback node uses this.
_LOOPBACK_RAY_IP = "127.0.0.2"


def ray_ip_for(address: str) -> str:
    """The IP Ray nodes advertise on a node reached at ``address``.

    Ray replaces 127.0.0.1 and localhost by the machine's outward address, so a node
    on loopback runs Ray on 127.0.0.2 (Linux routes all of 127.0.0.0/8 to loopback):
    a one-machine install stays on loopback.
    """
    return _LOOPBACK_RAY_IP if address in ("127.0.0.1", "localhost", "::1") else address


@dataclass(frozen=True, slots=True)
class RayRuntimeConfig:
    """How a :class:`RayRuntime` runs replicas.

    Attributes:
        address: where replicas on this machine are reached (they listen there).
        ray_ip: the IP Ray nodes advertise (:func:`ray_ip_for` of ``address``).
        root: where each replica's Ray temp dir goes; keep it short (Unix sockets).
        cache_dir: the machine's model cache.
        redis_url: with one, heads keep their GCS state in that Redis and a restarted
            head recovers its cluster, and replicas pull async inferences from it.
        claim_idle: seconds after which a dead replica's async inferences go to another.
        gpus: GPUs on this machine (indices 0..gpus-1 are handed out to replicas).
        object_store_bytes: each Ray node's object store (replicas pass no objects).
        start_timeout: seconds a Ray node gets to start.
        stop_grace: seconds processes get to exit before they are killed.
        backoff_base: the first delay before restarting a crashed replica.
        backoff_cap: the longest delay before restarting a crashed replica.
        head_reconnect_timeout: how long workers and drivers wait for a lost head's GCS
            to come back before they give up (Ray's default is 60 s; a restarted head
            on a busy machine can take longer).
        env: the environment of the processes started (default: the agent's).
    """

    address: str
    cache_dir: Path
    root: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / f"astra-ray-{os.getuid()}"
    )
    ray_ip: str = ""
    redis_url: str | None = None
    claim_idle: float = 5.0
    gpus: int = 0
    object_store_bytes: int = 80_000_000
    start_timeout: float = 60.0
    stop_grace: float = 5.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    head_reconnect_timeout: float = 300.0
    env: Mapping[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RayRuntimeConfig:
        """From the agent's settings: the node address (``node_address``, else this
        host's address towards the API), ``redis_url`` and ``broker.claim_idle``, and
        the model cache under ``state_dir``; GPUs as the machine shows them."""
        return cls(
            address=node_address(settings),
            cache_dir=settings.state_dir / "models",
            redis_url=settings.redis_url,
            claim_idle=settings.broker.claim_idle,
            gpus=len(find_gpus()),
        )


class RayRuntime:
    """Runs each replica as a Ray node of its own plus its actor on that node.

    A HEAD replica starts ``ray start --head`` (GCS port kept across restarts, with GCS
    fault tolerance on Redis when configured) and reports the head's address; a WORKER
    replica waits for its ``ray_head_address`` and joins it. Each is supervised: a
    crashed Ray node or driver is restarted with backoff (reported STARTING with the
    reason); a replica that failed for good (bad model) is reported FAILED and waits
    for a new spec. A change of what the replica runs (models, resources, role,
    cluster, a worker's head) restarts it; other changes are ignored.
    """

    def __init__(
        self,
        report: ReportStatus,
        *,
        settings: Settings | None = None,
        config: RayRuntimeConfig | None = None,
    ) -> None:
        """
        Args:
            report: the agent's callback for replica statuses.
            settings: the agent's settings, which make the configuration
                (:meth:`RayRuntimeConfig.from_settings`) unless ``config`` is given.
            config: the runtime's configuration.

        Raises:
            TypeError: neither ``settings`` nor ``config`` was given.
        """
        if config is None:
            if settings is None:
                raise TypeError("RayRuntime needs the agent's settings or a RayRuntimeConfig")
            config = RayRuntimeConfig.from_settings(settings)
        self._config = replace(config, ray_ip=config.ray_ip or ray_ip_for(config.address))
        self._report = report
        self._units: dict[str, _Unit] = {}
        self._tasks = Tasks()
        self._free_gpus = list(range(config.gpus))
        self._redis = RedisTarget.from_url(config.redis_url) if config.redis_url else None

    @property
    def config(self) -> RayRuntimeConfig:
        """The configuration in use."""
        return self._config

    def unit(self, name: str) -> _Unit | None:
        """What runs replica ``name`` (for inspection)."""
        return self._units.get(name)

    async def start(self, replica: replica_pb2.Replica) -> None:
        unit = self._units.get(replica.name)
        if unit is None:
            unit = _Unit(replica, runtime=self)
            self._units[replica.name] = unit
            unit.task = self._tasks.spawn(unit.run(), name=f"astra.replica[{replica.name}]")
        else:
            unit.update(replica)

    async def drain(self, name: str) -> None:
        unit = self._units.get(name)
        if unit is not None:
            await unit.drain()

    async def stop(self, name: str) -> None:
        unit = self._units.pop(name, None)
        if unit is not None:
            await unit.close()

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self._units)))
        await self._tasks.close()

    # -- for units ---------------------------------------------------------------------

    def _send(self, report: node_service_pb2.ReplicaStatusReport) -> None:
        self._report(report)

    def _take_gpus(self, count: int) -> list[int]:
        if count > len(self._free_gpus):
            raise RayStartError(f"needs {count} GPU(s), {len(self._free_gpus)} free on this node")
        taken, self._free_gpus = self._free_gpus[:count], self._free_gpus[count:]
        return taken

    def _give_gpus(self, gpus: list[int]) -> None:
        self._free_gpus = sorted({*self._free_gpus, *gpus})

    def _env(self) -> dict[str, str]:
        env = dict(os.environ if self._config.env is None else self._config.env)
        paths = [_PROJECT_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["RAY_gcs_rpc_server_reconnect_timeout_s"] = str(
            int(self._config.head_reconnect_timeout)
        )
        return env


class _FailedForGood(Exception):
    """The replica cannot serve its spec (a bad model): restarting will not help."""


def _short_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def _runs(replica: replica_pb2.Replica) -> bytes:
    """What a replica's processes are made of: a change of it needs a restart."""
    spec = replica_pb2.Replica(
        ray_cluster=replica.ray_cluster,
        role=replica.role,
        resources=replica.resources,
        models=replica.models,
    )
    if replica.role == replica_pb2.REPLICA_ROLE_WORKER:
        spec.ray_head_address = replica.ray_head_address
    return spec.SerializeToString(deterministic=True)


class _Unit:
    """One replica's Ray node and driver, supervised."""

    def __init__(self, replica: replica_pb2.Replica, *, runtime: RayRuntime) -> None:
        self.replica = replica
        self.task: asyncio.Task[None] | None = None
        self.restarts = 0
        self._runtime = runtime
        config = runtime.config
        self._id = _short_id(replica.name)
        self._temp_dir = config.root / self._id
        self._gcs_port = free_ports(1)[0]
        self._changed = asyncio.Event()
        self._backoff = Backoff(base=config.backoff_base, cap=config.backoff_cap)
        self._node: ChildProcess | None = None
        self._host: ReplicaHost | None = None
        self._gpus: list[int] = []
        self._ready = False
        self._draining = False
        self._head_address = ""
        self._endpoint = ""
        self._provider = ""

    @property
    def head(self) -> bool:
        return self.replica.role != replica_pb2.REPLICA_ROLE_WORKER

    @property
    def node(self) -> ChildProcess | None:
        """The Ray node's process while it runs."""
        return self._node

    @property
    def temp_dir(self) -> Path:
        """The Ray node's temp dir (the driver's and node's logs are there too)."""
        return self._temp_dir

    @property
    def storage_namespace(self) -> str:
        """A head's key namespace in Redis."""
        return f"astra-{self._id}"

    def _report(self, phase: replica_pb2.ReplicaPhase, message: str = "") -> None:
        ready = phase in (replica_pb2.REPLICA_PHASE_READY, replica_pb2.REPLICA_PHASE_DRAINING)
        self._runtime._send(
            node_service_pb2.ReplicaStatusReport(
                replica=self.replica.name,
                phase=phase,
                endpoint=self._endpoint if ready else "",
                execution_provider=self._provider,
                message=message,
                ray_head_address=self._head_address,
            )
        )

    def update(self, replica: replica_pb2.Replica) -> None:
        """Bring the replica to ``replica``'s spec: restart it if what it runs changed."""
        changed = _runs(replica) != _runs(self.replica)
        self.replica = replica
        if changed and not self._draining:
            self._changed.set()

    async def run(self) -> None:
        """Run the replica, restarting it when it crashes or its spec changes."""
        while True:
            self._changed.clear()
            try:
                crash = await self._run_once()
            except _FailedForGood as exc:
                await self._teardown()
                self._report(replica_pb2.REPLICA_PHASE_FAILED, str(exc))
                await self._changed.wait()  # a bad model stays bad: wait for a new spec
                continue
            finally:
                await self._teardown()
            if crash is None:
                continue  # the spec changed: start over at once
            self.restarts += 1
            if self._draining:
                self._report(replica_pb2.REPLICA_PHASE_FAILED, f"crashed while draining: {crash}")
                return
            delay = self._backoff.next_delay()
            _log.warning("%s crashed (%s); restarting in %.1fs", self.replica.name, crash, delay)
            self._report(replica_pb2.REPLICA_PHASE_STARTING, f"{crash}; restarting in {delay:.1f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay)

    async def _run_once(self) -> str | None:
        """Start the replica and follow it; returns why it crashed, or ``None`` when its
        spec changed."""
        replica, config = self.replica, self._runtime.config
        self._report(replica_pb2.REPLICA_PHASE_STARTING)
        if not self.head and not replica.ray_head_address:
            self._report(
                replica_pb2.REPLICA_PHASE_STARTING, "waiting for the address of its Ray head"
            )
            await self._changed.wait()
            return None
        try:
            self._gpus = self._runtime._take_gpus(replica.resources.gpus)
            spec = self._node_spec(replica)
            self._node = await start_ray_node(
                spec, timeout=config.start_timeout, env=self._runtime._env()
            )
        except RayStartError as exc:
            return str(exc)
        if self.head:
            self._head_address = spec.gcs_address
            self._report(replica_pb2.REPLICA_PHASE_STARTING)
        self._host = await ReplicaHost.spawn(
            self._host_config(replica, spec),
            env=self._runtime._env(),
            log=self._temp_dir / "driver.log",
            cwd=self._temp_dir,
        )
        return await self._follow(self._node, self._host)

    async def _follow(self, node: ChildProcess, host: ReplicaHost) -> str | None:
        node_exit = asyncio.ensure_future(node.wait())
        changed = asyncio.ensure_future(self._changed.wait())
        events = asyncio.ensure_future(self._relay(host))
        try:
            done, _ = await asyncio.wait(
                {node_exit, changed, events}, return_when=asyncio.FIRST_COMPLETED
            )
            if events in done:
                return events.result()
            if node_exit in done:
                return f"Ray {'head' if self.head else 'worker'} exited with {node_exit.result()}"
            return None  # the spec changed
        finally:
            for task in (node_exit, changed, events):
                task.cancel()

    async def _relay(self, host: ReplicaHost) -> str:
        """Report the driver's events; returns why it exited.

        Raises:
            _FailedForGood: the replica failed for good.
        """
        failure = ""
        async for item in host.events():
            kind = item.get("event")
            if kind == READY:
                self._ready, self._endpoint, self._provider = (
                    True,
                    item["endpoint"],
                    item["execution_provider"],
                )
                self._backoff.reset()
                self._report(replica_pb2.REPLICA_PHASE_READY)
            elif kind == FAILED:
                failure = item.get("message", "")
            elif kind == DRAINED:
                self._report(replica_pb2.REPLICA_PHASE_DRAINED)
        code = await host.process.wait()
        if code == EXIT_FAILED:
            raise _FailedForGood(failure or "the replica failed (see its driver log)")
        return f"replica driver exited with {code}" + (f": {failure}" if failure else "")

    def _node_spec(self, replica: replica_pb2.Replica) -> RayNodeSpec:
        config, resources = self._runtime.config, replica.resources
        return RayNodeSpec(
            temp_dir=self._temp_dir,
            ip=config.ray_ip,
            head_address="" if self.head else replica.ray_head_address,
            gcs_port=self._gcs_port,
            cpus=resources.cpu_millis or 1000,
            gpus=resources.gpus,
            memory_bytes=resources.memory_bytes,
            resources={self._marker: 1},
            object_store_bytes=config.object_store_bytes,
            redis=self._runtime._redis,
            storage_namespace=self.storage_namespace,
            cuda_devices=",".join(map(str, self._gpus)) if self._gpus else None,
        )

    @property
    def _marker(self) -> str:
        """The custom resource that pins the actor to this replica's Ray node."""
        return f"astra_replica_{self._id}"

    def _host_config(self, replica: replica_pb2.Replica, spec: RayNodeSpec) -> HostConfig:
        config = self._runtime.config
        cpus = (replica.resources.cpu_millis or 1000) / 1000
        threads = max(1, math.floor(cpus))
        app, _, replica_id = replica.name.rpartition("/replicas/")
        return HostConfig(
            gcs_address=spec.gcs_address,
            temp_dir=str(spec.temp_dir),
            node_ip=spec.ip,
            namespace=app or "astra",
            actor_name=replica_id or replica.name,
            replica=replica,
            settings=ReplicaSettings(
                host=config.address,
                cache_dir=str(config.cache_dir),
                gpus=replica.resources.gpus,
                threads=threads,
                workers=threads + 1,
                otel=_telemetry_settings(),
                redis_url=config.redis_url,
                claim_idle=config.claim_idle,
            ),
            num_cpus=cpus,
            num_gpus=replica.resources.gpus,
            resources={self._marker: 1},
        )

    async def drain(self) -> None:
        """Stop taking requests: a serving replica finishes those in flight and reports
        DRAINED; one not serving yet has none and is DRAINED at once."""
        if self._draining:
            return
        self._draining = True
        self._report(replica_pb2.REPLICA_PHASE_DRAINING)
        if self._ready and self._host is not None:
            await self._host.drain()
            return
        await self._cancel()
        self._report(replica_pb2.REPLICA_PHASE_DRAINED)

    async def close(self) -> None:
        """Stop the replica for good; a head's GCS state leaves Redis."""
        await self._cancel()
        redis = self._runtime._redis
        if self.head and redis is not None:
            try:
                await asyncio.to_thread(redis.delete_namespace, self.storage_namespace)
            except Exception:
                _log.exception("could not delete the GCS state of %s from Redis", self.replica.name)

    async def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self._teardown()

    async def _teardown(self) -> None:
        grace = self._runtime.config.stop_grace
        host, node, self._host, self._node = self._host, self._node, None, None
        self._ready = False
        if host is not None:
            await host.stop(grace=grace)
        if node is not None:
            await node.stop(grace=grace)
        if self._gpus:
            self._runtime._give_gpus(self._gpus)
            self._gpus = []


def _telemetry_settings() -> dict[str, Any] | None:
    """The agent's OpenTelemetry settings, for its replicas' processes (None: off)."""
    settings = telemetry.settings()
    return None if settings is None else settings.model_dump()
