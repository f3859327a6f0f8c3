"""``python -m astra._with_parent PID COMMAND...``: run ``COMMAND`` so that it gets
SIGTERM when its parent (``PID``) dies, even by SIGKILL: Linux's parent-death signal.

The signal is set here, in a small single-threaded process that then execs ``COMMAND``
(the setting survives exec, and the PID stays the same), rather than between fork and
exec in a parent that runs threads, where Python code (``preexec_fn``) may deadlock. If
the parent died before the signal was set, ``COMMAND`` is not run. Linux sends the
signal when the *thread* that forked the child ends: fork from the event loop's thread,
which lives as long as the process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1
#: The exit code when the parent was gone before ``COMMAND`` could start.
EXIT_ORPHANED = 3


def with_parent(command: Sequence[str]) -> list[str]:
    """``command``, wrapped to get SIGTERM when this process dies (as it is off Linux)."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-m", "astra._with_parent", str(os.getpid()), *command]


def main(argv: Sequence[str]) -> None:
    """Set the parent-death signal, check the parent is still there, exec the command."""
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m astra._with_parent PID COMMAND...")
    parent, command = int(argv[0]), list(argv[1:])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent:
        sys.exit(EXIT_ORPHANED)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
