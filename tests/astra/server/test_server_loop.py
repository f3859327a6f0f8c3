"""The signals that stop a process: ``stop_on_signals`` on the running loop."""

from __future__ import annotations

import asyncio
import os
import signal

from astra.server import stop_on_signals


async def test_sigterm_sets_the_event_and_the_handlers_go_with_the_block() -> None:
    loop = asyncio.get_running_loop()
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(5):
            await stop.wait()
    assert not loop.remove_signal_handler(signal.SIGTERM)  # none left installed
    assert not loop.remove_signal_handler(signal.SIGINT)
