"""The gateway's tests: both routing cores, each imported by name."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from gateway._native import python_core


def native_core() -> Any:
    """``gateway._core``, imported by name: a missing or broken build fails here."""
    return importlib.import_module("gateway._core")


CORES = {"native": native_core, "python": python_core}


@pytest.fixture(params=sorted(CORES), scope="module")
def core(request: pytest.FixtureRequest) -> Any:
    """Each implementation of the routing core in turn."""
    return CORES[request.param]()
