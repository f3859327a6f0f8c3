"""A replica's driver process, ``python -m node_agent.replica``: attaches to the
replica's own Ray node, creates the replica's actor there, and relays between the
agent (stdin, stdout: :mod:`node_agent.replica._protocol`) and the actor.

The actor is owned by this process: when it exits, Ray ends the actor too, so a
replica never outlives its driver. The driver in turn dies with the agent (Linux's
parent-death signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from typing import Any, BinaryIO

from node_agent.replica._errors import ModelError
from node_agent.replica._protocol import (
    DRAIN,
    DRAINED,
    EXIT_FAILED,
    FAILED,
    READY,
    HostConfig,
    event,
)

_log = logging.getLogger(__name__)
#: Seconds the actor gets to stop before it is killed.
_STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Get SIGTERM when the agent (the parent) dies, where Linux allows it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(config: HostConfig, out: BinaryIO, commands: asyncio.StreamReader) -> int:
    """Run the replica of ``config`` until stdin closes; returns the exit code."""
    import ray

    from node_agent.replica._actor import ReplicaActor

    def emit(kind: str, **fields: str) -> None:
        out.write(event(kind, **fields))
        out.flush()

    ray.init(
        address=config.gcs_address,
        _node_ip_address=config.node_ip,
        _temp_dir=config.temp_dir,
        namespace=config.namespace,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    with contextlib.suppress(ValueError):  # a previous driver's actor, not yet gone
        ray.kill(ray.get_actor(config.actor_name))
    actor = (
        ray.remote(ReplicaActor)
        .options(
            name=config.actor_name,
            num_cpus=config.num_cpus,
            num_gpus=config.num_gpus,
            resources=config.resources,
            max_restarts=0,
        )
        .remote(config.replica.SerializeToString(), config.settings.to_dict())
    )
    try:
        endpoint, provider = await actor.start.remote()
    except ray.exceptions.RayError as exc:
        cause: Any = getattr(exc, "cause", None)
        if isinstance(cause, ModelError):
            emit(FAILED, message=str(cause))
            return EXIT_FAILED
        emit(FAILED, message=f"{type(exc).__name__}: {exc}"[:2000])
        return 1
    emit(READY, endpoint=endpoint, execution_provider=provider)
    serving = asyncio.ensure_future(_watch(actor.serve.remote()))
    try:
        while True:
            line = asyncio.ensure_future(commands.readline())
            await asyncio.wait({serving, line}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                line.cancel()
                _log.error("the replica's actor ended: %s", serving.result())
                return 1
            raw = line.result()
            if not raw:  # stdin closed: stop
                with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
                    await asyncio.wait_for(
                        asyncio.wrap_future(actor.stop.remote().future()), _STOP_TIMEOUT
                    )
                # Ray types what .remote() made as the handle or the class (so that its
                # methods type-check); it is the handle.
                assert isinstance(actor, ray.actor.ActorHandle)
                ray.kill(actor)
                return 0
            command = raw.strip().decode()
            if command == DRAIN:
                await actor.drain.remote()
                emit(DRAINED)
            elif command:
                _log.warning("unknown command %r", command)
    finally:
        serving.cancel()


async def _watch(ref: Any) -> str:
    """Why the actor's ``serve`` call ended."""
    import ray

    try:
        await ref
    except ray.exceptions.RayError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "its server stopped"


def main() -> int:
    """The driver's entry point."""
    _die_with_parent()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not garble events

    async def go() -> int:
        commands = await _stdin_lines()
        return await run(HostConfig.from_line(await commands.readline()), out, commands)

    return asyncio.run(go())
