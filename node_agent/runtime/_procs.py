"""The processes a :class:`~node_agent.runtime.RayRuntime` runs for a replica: its Ray node
(``ray start --head`` or a worker joined to its head, with ``--block`` so one process
stands for the node) and its driver (``python -m node_agent.replica``).

Each runs in its own session, so stopping it (SIGTERM, then SIGKILL after a grace)
reaches its whole process group: the GCS, raylet and Ray's workers with it. Several
Ray nodes share a machine, each with its own ports and temp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from node_agent.replica import DRAIN, HostConfig

_log = logging.getLogger(__name__)
#: The file ``ray start`` writes into its temp dir once the node runs.
_STARTED_MARKER = "ray_current_cluster"
#: Unix socket paths are limited to 107 bytes; Ray's sit about 62 bytes below the temp dir.
MAX_TEMP_DIR = 44


class RayStartError(RuntimeError):
    """A Ray node did not start; the message ends with its log's last lines."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago, on every interface."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """The Redis that heads keep their GCS state in (Ray's GCS fault tolerance)."""

    address: str
    password: str = ""
    username: str = ""

    @classmethod
    def from_url(cls, url: str) -> RedisTarget:
        """``redis://[user:password@]host:port`` or ``rediss://...`` (TLS).

        Raises:
            ValueError: another scheme (Ray's GCS takes these two only).
        """
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(
                f"Ray's GCS needs a redis:// or rediss:// URL with a host, got {url!r}"
            )
        address = f"{parts.hostname}:{parts.port or 6379}"
        if parts.scheme == "rediss":
            address = f"rediss://{address}"
        return cls(address=address, password=parts.password or "", username=parts.username or "")

    def delete_namespace(self, namespace: str) -> None:
        """Delete a cluster's GCS state (blocking; the cluster is gone for good)."""
        # Ray's own, though private: Ray has no public call for it, and the keys its GCS
        # writes (hashes under RAY<namespace>@, in cluster mode too) are its internals, so
        # deleting them ourselves would tie us to that layout. ray is pinned (==2.60.0);
        # tests/node_agent/test_ray_procs.py checks the function and its signature.
        from ray._private.gcs_utils import cleanup_redis_storage

        host, _, port = self.address.removeprefix("rediss://").rpartition(":")
        cleanup_redis_storage(
            host=host,
            port=int(port),
            password=self.password,
            use_ssl=self.address.startswith("rediss://"),
            storage_namespace=namespace,
            username=self.username or None,
        )


@dataclass(frozen=True, slots=True)
class RayNodeSpec:
    """One Ray node of a replica.

    Attributes:
        temp_dir: its own temp dir (short: Unix socket paths live under it).
        ip: the IP address it advertises.
        head_address: the head's GCS ``ip:port`` a worker joins; empty for a head.
        gcs_port: a head's GCS port (kept across restarts: workers reconnect to it).
        cpus: the CPU millis it offers (rounded up to whole CPUs, at least one).
        gpus: the GPUs it offers.
        memory_bytes: the memory it offers; 0 leaves it to Ray.
        resources: custom resources it offers.
        object_store_bytes: its object store's size.
        redis: where a head keeps its GCS state; ``None`` for no fault tolerance.
        storage_namespace: the head's key namespace in that Redis (one per cluster).
        cuda_devices: ``CUDA_VISIBLE_DEVICES`` for it (its GPUs), when it has GPUs.
    """

    temp_dir: Path
    ip: str
    head_address: str = ""
    gcs_port: int = 0
    cpus: int = 1000
    gpus: int = 0
    memory_bytes: int = 0
    resources: Mapping[str, float] = field(default_factory=dict)
    object_store_bytes: int = 80_000_000
    redis: RedisTarget | None = None
    storage_namespace: str = ""
    cuda_devices: str | None = None

    @property
    def head(self) -> bool:
        """Whether this node is its cluster's head."""
        return not self.head_address

    @property
    def gcs_address(self) -> str:
        """The cluster's GCS, ``ip:port``."""
        return self.head_address or f"{self.ip}:{self.gcs_port}"

    def command(self) -> list[str]:
        """``ray start --block`` for this node, with fresh free ports for everything but
        a head's GCS."""
        ports = free_ports(8)
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
            f"--node-ip-address={self.ip}",
            f"--temp-dir={self.temp_dir}",
            f"--num-cpus={max(1, math.ceil(self.cpus / 1000))}",
            f"--num-gpus={self.gpus}",
            f"--resources={json.dumps(dict(self.resources))}",
            f"--object-store-memory={self.object_store_bytes}",
            f"--node-manager-port={ports[0]}",
            f"--object-manager-port={ports[1]}",
            f"--metrics-export-port={ports[2]}",
            f"--dashboard-agent-listen-port={ports[3]}",
            f"--dashboard-agent-grpc-port={ports[4]}",
            f"--runtime-env-agent-port={ports[5]}",
            "--min-worker-port=0", "--max-worker-port=0",
            "--include-log-monitor=false",
            "--disable-usage-stats",
        ]  # fmt: skip
        if self.memory_bytes > 0:
            command.append(f"--memory={self.memory_bytes}")
        if not self.head:
            return [*command, f"--address={self.head_address}"]
        command += [
            "--head",
            f"--port={self.gcs_port}",
            f"--ray-client-server-port={ports[6]}",
            f"--dashboard-port={ports[7]}",
            "--include-dashboard=false",
        ]
        if self.redis is not None and self.redis.password:
            command.append(f"--redis-password={self.redis.password}")
        if self.redis is not None and self.redis.username:
            command.append(f"--redis-username={self.redis.username}")
        return command

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The node's environment: ``base`` with its GPUs and, for a head with Redis,
        GCS fault tolerance."""
        env = dict(base)
        if self.cuda_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.cuda_devices
        # The agent drains replicas itself; Ray's own drain on SIGTERM only delays stopping.
        env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
        if self.head and self.redis is not None:
            env["RAY_REDIS_ADDRESS"] = self.redis.address
            env["RAY_external_storage_namespace"] = self.storage_namespace
        return env


class ChildProcess:
    """A child process in a session of its own; :meth:`stop` ends its whole group."""

    def __init__(self, process: asyncio.subprocess.Process, *, what: str) -> None:
        self.process = process
        self.what = what

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        what: str,
        env: Mapping[str, str],
        log: Path,
        cwd: Path,
        pipes: bool = False,
    ) -> ChildProcess:
        """Start ``argv``; stderr (and stdout unless ``pipes``) go to ``log``.

        Args:
            what: names the process in logs and errors.
            pipes: give it a stdin and a stdout pipe.
        """
        with log.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                cwd=cwd,
                stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if pipes else sink,
                stderr=sink,
                start_new_session=True,
            )
        return cls(process, what=what)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait(self) -> int:
        """Wait until it exits; returns its exit code."""
        return await self.process.wait()

    async def stop(self, *, grace: float) -> None:
        """SIGTERM its process group, then SIGKILL it after ``grace`` seconds. Idempotent."""
        if self.process.returncode is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)
        self._signal(signal.SIGKILL)  # whatever is left of the group, even after its leader exited
        await self.process.wait()

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


async def start_ray_node(
    spec: RayNodeSpec, *, timeout: float, env: Mapping[str, str]
) -> ChildProcess:
    """Start ``spec``'s node and return once it runs.

    Raises:
        RayStartError: it exited or did not come up within ``timeout`` seconds.
    """
    if len(str(spec.temp_dir)) > MAX_TEMP_DIR:
        raise RayStartError(
            f"Ray temp dir {spec.temp_dir} is longer than {MAX_TEMP_DIR} characters"
        )
    spec.temp_dir.mkdir(parents=True, exist_ok=True)
    marker = spec.temp_dir / _STARTED_MARKER
    # A stale marker would also make `ray start --head` refuse to start a head at the same
    # address while a worker of the cluster still runs on this machine.
    marker.unlink(missing_ok=True)
    log = spec.temp_dir / "node.log"
    role = "head" if spec.head else "worker"
    node = await ChildProcess.spawn(
        spec.command(), what=f"Ray {role}", env=spec.env(env), log=log, cwd=spec.temp_dir
    )
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if node.returncode is not None or time.monotonic() > deadline:
                why = (
                    f"exited with {node.returncode}"
                    if node.returncode
                    else f"did not start within {timeout:g}s"
                )
                raise RayStartError(f"Ray {role} at {spec.temp_dir} {why}:\n{_log_tail(log)}")
            await asyncio.sleep(0.1)
    except (
        BaseException
    ):  # a failed start, or the caller gave up (cancelled): leave nothing running
        await node.stop(grace=0)
        raise
    return node


class ReplicaHost:
    """The agent's end of a replica's driver process (:mod:`node_agent.replica._protocol`)."""

    def __init__(self, process: ChildProcess) -> None:
        self._process = process

    @classmethod
    async def spawn(
        cls, config: HostConfig, *, env: Mapping[str, str], log: Path, cwd: Path
    ) -> ReplicaHost:
        """Start the driver of ``config``'s replica."""
        process = await ChildProcess.spawn(
            [sys.executable, "-m", "node_agent.replica"],
            what="replica driver",
            env=env,
            log=log,
            cwd=cwd,
            pipes=True,
        )
        assert process.process.stdin is not None
        process.process.stdin.write(config.to_line())
        return cls(process)

    @property
    def process(self) -> ChildProcess:
        return self._process

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The driver's events, until its stdout closes."""
        stdout = self._process.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            try:
                yield json.loads(line)
            except ValueError:
                _log.warning(
                    "replica driver %d wrote a line that is no event: %r",
                    self._process.pid,
                    line[:200],
                )

    async def drain(self) -> None:
        """Ask the replica to drain; it answers with a ``drained`` event."""
        stdin = self._process.process.stdin
        assert stdin is not None
        with contextlib.suppress(ConnectionError):
            stdin.write(DRAIN.encode() + b"\n")
            await stdin.drain()

    async def stop(self, *, grace: float) -> None:
        """Close its stdin (the replica stops), then stop the process after ``grace``."""
        stdin = self._process.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), grace)
        await self._process.stop(grace=grace)
