"""The routing core the gateway runs on: the C++ module ``gateway._core``, or its
pure-Python twin when ``ASTRA_PURE_PYTHON=1`` (or, with a warning, when the native
module was never built).

Both give the same picks for the same inputs; tests import each by name. Type
checkers see the twin's classes: the native ones have the same API (``_core.pyi``).
"""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

_log = logging.getLogger(__name__)

#: Set (to anything but "" or "0") to use the pure-Python implementation.
PURE_PYTHON_ENV = "ASTRA_PURE_PYTHON"


def python_core() -> Any:
    """The pure-Python twin, under the names ``gateway._core`` has."""
    from gateway import _picker, _router, _wire

    return SimpleNamespace(
        MALFORMED=_router.MALFORMED,
        MAX_WEIGHT=_picker.MAX_WEIGHT,
        NO_ENDPOINT=_router.NO_ENDPOINT,
        SCALE=_picker.SCALE,
        UNKNOWN=_router.UNKNOWN,
        Picker=_picker.Picker,
        Router=_router.Router,
        model_of=_wire.model_of,
    )


def native_core() -> Any:
    """The C++ module itself; ImportError when it was never built (no fallback)."""
    from gateway import _core

    return _core


def _load() -> tuple[str, Any]:
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return "python", python_core()
    try:
        from gateway import _core
    except ImportError:
        _log.warning(
            "gateway._core is not built (pip install . builds it): routing on the "
            "pure-Python picker; %s=1 says that is meant",
            PURE_PYTHON_ENV,
        )
        return "python", python_core()
    return "native", _core


#: "native" or "python".
IMPLEMENTATION, _impl = _load()
MALFORMED: int = _impl.MALFORMED
MAX_WEIGHT: int = _impl.MAX_WEIGHT
NO_ENDPOINT: int = _impl.NO_ENDPOINT
SCALE: int = _impl.SCALE
UNKNOWN: int = _impl.UNKNOWN
if TYPE_CHECKING:
    from gateway._picker import Picker
    from gateway._router import Router
    from gateway._wire import model_of
else:
    Picker = _impl.Picker
    Router = _impl.Router
    model_of = _impl.model_of

__all__ = [
    "IMPLEMENTATION",
    "MALFORMED",
    "MAX_WEIGHT",
    "NO_ENDPOINT",
    "PURE_PYTHON_ENV",
    "SCALE",
    "UNKNOWN",
    "Picker",
    "Router",
    "model_of",
]
