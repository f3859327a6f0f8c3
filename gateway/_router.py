"""The per-request hot path in pure Python: the twin of ``src/router.cpp``."""

from __future__ import annotations

from gateway._picker import Picker
from gateway._wire import WireError, model_bytes

#: What :meth:`Router.route` answers instead of a slot.
MALFORMED = -1  # the bytes are not a ModelInferRequest
UNKNOWN = -2  # no route for that model and version
NO_ENDPOINT = -3  # a route with no endpoint to pick


class Router:
    """Pickers by model name and version. Which version an empty one means is the
    caller's choice: it sets a picker under version ``""``."""

    __slots__ = ("_models",)

    def __init__(self) -> None:
        self._models: dict[bytes, dict[bytes, Picker]] = {}

    def set(self, name: str, version: str, picker: Picker | None) -> None:
        """Route ``(name, version)`` to ``picker``; ``None`` removes the route."""
        key, sub = name.encode(), version.encode()
        if picker is not None:
            self._models.setdefault(key, {})[sub] = picker
            return
        versions = self._models.get(key, {})
        versions.pop(sub, None)
        if not versions:
            self._models.pop(key, None)

    def get(self, name: str, version: str) -> Picker | None:
        """The picker of ``(name, version)``, or ``None``."""
        return self._models.get(name.encode(), {}).get(version.encode())

    def route(self, request: bytes) -> int:
        """The slot of the endpoint a serialized ``ModelInferRequest`` goes to, or
        :data:`MALFORMED`, :data:`UNKNOWN` or :data:`NO_ENDPOINT`."""
        try:
            name, version = model_bytes(request)
        except WireError:
            return MALFORMED
        picker = self._models.get(name, {}).get(version)
        if picker is None:
            return UNKNOWN
        return picker.pick() if len(picker) else NO_ENDPOINT

    def __len__(self) -> int:
        return sum(map(len, self._models.values()))
