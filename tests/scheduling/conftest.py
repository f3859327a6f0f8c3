"""An etcd of the scheduling tests' own: schedulers take every node they find, so they
must not see (or fill) the nodes of other tests sharing the session's etcd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from astra.testing import EtcdProcess, running


@pytest.fixture(scope="module")
def own_etcd() -> Iterator[EtcdProcess]:
    with running(EtcdProcess()) as server:
        assert isinstance(server, EtcdProcess)
        yield server
