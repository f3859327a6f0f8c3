"""``astra sim nodes --count N``: N simulated nodes against the API, until SIGINT or SIGTERM.

While it runs, lines on standard input control single nodes: ``silence INDEX``,
``unsilence INDEX``, ``drain INDEX``, ``stats``. The ``astra`` group registers the
command.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import time

import click
import grpc

from astra import configure_logging, server
from astra.config import Settings, settings_options
from programs.sim._fleet import SimFleet

_log = logging.getLogger("programs.sim")

#: Seconds between progress lines.
_REPORT_EVERY = 5.0


@click.group(name="sim")
def sim() -> None:
    """Simulations for scale: many lightweight nodes in one process, on the real API."""


@sim.command()
@settings_options
@click.option("--count", type=click.IntRange(min=1), required=True, help="how many nodes")
@click.option("--prefix", default="sim-", show_default=True, help="node id prefix")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="heartbeats per request",
)
@click.option(
    "--zones", default="sim-a", show_default=True, help="comma-separated zones, dealt round-robin"
)
@click.option("--accelerator", default="", help="every node's accelerator type")
@click.option(
    "--drain-seconds", type=click.FloatRange(min=0), default=0.0, help="how long a drain takes"
)
@click.option(
    "--leave/--no-leave", default=False, help="deregister every node on exit (else they go DEAD)"
)
def nodes(
    settings: Settings,
    count: int,
    prefix: str,
    batch_size: int,
    zones: str,
    accelerator: str,
    drain_seconds: float,
    leave: bool,
) -> None:
    """Run COUNT simulated nodes against --api-address until SIGINT or SIGTERM. Control
    single nodes with lines on stdin: silence N, unsilence N, drain N, stats."""
    configure_logging(settings.log_level)
    fleet = SimFleet(
        settings.api_address,
        count,
        prefix=prefix,
        batch_size=batch_size,
        heartbeat_interval=settings.heartbeat_interval,
        zones=tuple(zone.strip() for zone in zones.split(",") if zone.strip()) or ("sim-a",),
        accelerator=accelerator,
        drain_seconds=drain_seconds,
    )
    server.run(_run(fleet, leave=leave))


async def _run(fleet: SimFleet, *, leave: bool) -> None:
    with server.stop_on_signals() as stop:
        await _until_stopped(fleet, stop, leave=leave)


async def _until_stopped(fleet: SimFleet, stop: asyncio.Event, *, leave: bool) -> None:
    start = time.monotonic()
    starting = asyncio.create_task(fleet.start())
    background = [asyncio.create_task(_report(fleet)), asyncio.create_task(_commands(fleet))]
    try:
        await asyncio.wait(
            {starting, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if starting.done():
            starting.result()
            _log.info("%d nodes registered in %.1fs", fleet.registered, time.monotonic() - start)
            await stop.wait()
        if leave:
            await fleet.leave_all()
            _log.info("every node deregistered")
    finally:
        for task in (starting, *background):
            task.cancel()
        await asyncio.gather(starting, *background, return_exceptions=True)
        await fleet.close()


async def _report(fleet: SimFleet) -> None:
    """A progress line every few seconds: nodes, heartbeats per second, directives."""
    beats = fleet.stats.heartbeats
    while True:
        await asyncio.sleep(_REPORT_EVERY)
        rate = (fleet.stats.heartbeats - beats) / _REPORT_EVERY
        beats = fleet.stats.heartbeats
        _log.info("%s", _summary(fleet, rate))


def _summary(fleet: SimFleet, rate: float | None = None) -> str:
    stats = fleet.stats
    directives = ", ".join(
        f"{name.removeprefix('HEARTBEAT_ACTION_')}={n}"
        for name, n in sorted(stats.directives.items())
    )
    per_second = "" if rate is None else f", {rate:,.0f} heartbeats/s"
    return (
        f"{fleet.registered}/{fleet.count} registered, {stats.left} left, "
        f"{stats.refused} refused{per_second}, {stats.stream_failures} stream failures, "
        f"directives: {directives or 'none'}"
    )


async def _commands(fleet: SimFleet) -> None:
    """Follow control lines on stdin; returns at end of input (or without a pipe or a
    terminal there)."""
    if not _is_interactive_input():
        return
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode():
        await _command(fleet, line.split())


def _is_interactive_input() -> bool:
    """Whether stdin is a pipe or a terminal: what an event loop can follow (uvloop
    aborts the process on others, such as /dev/null)."""
    if sys.stdin is None or sys.stdin.closed:
        return False
    mode = os.fstat(sys.stdin.fileno()).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or sys.stdin.isatty()


async def _command(fleet: SimFleet, words: list[str]) -> None:
    match words:
        case ["stats"]:
            click.echo(_summary(fleet))
        case [("silence" | "unsilence" | "drain") as action, index] if (
            index.isdigit() and int(index) < fleet.count
        ):
            if action == "silence":
                fleet.silence(int(index))
            elif action == "unsilence":
                fleet.unsilence(int(index))
            else:
                try:
                    await fleet.drain(int(index))
                except grpc.aio.AioRpcError as exc:
                    failure = f"{exc.code().name}: {exc.details()}"
                    click.echo(f"drain {fleet.name(int(index))} failed: {failure}", err=True)
                    return
            click.echo(f"{action} {fleet.name(int(index))}")
        case []:
            pass
        case _:
            click.echo(
                f"unknown command {' '.join(words)!r}: silence N, unsilence N, drain N, stats",
                err=True,
            )
