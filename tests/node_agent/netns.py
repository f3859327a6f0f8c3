"""A host of the test's own: a network namespace joined to this one by a veth pair on a
/30 the test picks, so a process run in it has a non-loopback address and reaches the
test's servers only across that link. Needs root; always removed on the way out."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Host:
    """A network namespace and its link to this one.

    Attributes:
        namespace: the namespace's name (``ip netns exec NAME ...``).
        address: its end of the link, the only address it has besides loopback.
        peer: this namespace's end of the link (where the test's servers listen).
    """

    namespace: str
    address: str
    peer: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run in the namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def pids(self) -> list[int]:
        """The processes whose network is the namespace's."""
        out = _ip("netns", "pids", self.namespace, check=False)
        return [int(pid) for pid in out.split()]


def require_root() -> None:
    """Fail (never skip) with what to do when not root: network namespaces need it."""
    if os.geteuid() != 0:
        pytest.fail(
            "this test builds network namespaces and veth pairs, which needs root: run it "
            "as root (CI does)",
            pytrace=False,
        )


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _free_link() -> ipaddress.IPv4Network:
    """A /30 of 10.0.0.0/8 (private) that no route of this namespace overlaps."""
    routes: list[ipaddress.IPv4Network] = []
    for line in _ip("-4", "route", "show", "table", "all").splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            routes.append(ipaddress.IPv4Network(first, strict=False))
    for _ in range(100):
        link = ipaddress.IPv4Network(f"10.{random.randrange(64, 250)}.{random.randrange(256)}.0/30")
        if not any(link.overlaps(route) for route in routes if route.prefixlen > 0):
            return link
    raise AssertionError("no free /30 in 10.0.0.0/8 for the test's link")


@contextlib.contextmanager
def isolated_host() -> Iterator[Host]:
    """A namespace with a veth link to this one; on the way out every process in it is
    killed and the namespace (with the link) deleted, whatever happened."""
    require_root()
    tag = uuid.uuid4().hex[:8]
    namespace, outer, inner = f"astra-t{tag}", f"at{tag}h", f"at{tag}n"
    link = _free_link()
    peer, address = (str(ip) for ip in link.hosts())
    host = Host(namespace=namespace, address=address, peer=peer)
    try:
        _ip("netns", "add", namespace)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", namespace)
        _ip("addr", "add", f"{peer}/30", "dev", outer)
        _ip("link", "set", outer, "up")
        inside = ("-n", namespace)
        _ip(*inside, "addr", "add", f"{address}/30", "dev", inner)
        _ip(*inside, "link", "set", inner, "up")
        _ip(*inside, "link", "set", "lo", "up")
        yield host
    finally:
        _kill_all(host)
        _ip("link", "del", outer, check=False)  # the pair goes with either end
        _ip("netns", "del", namespace, check=False)


def _kill_all(host: Host, timeout: float = 10.0) -> None:
    """SIGKILL every process in the namespace and wait until none is left."""
    deadline = time.monotonic() + timeout
    while pids := host.pids():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert time.monotonic() < deadline, f"processes {pids} outlive {host.namespace}"
        time.sleep(0.05)
