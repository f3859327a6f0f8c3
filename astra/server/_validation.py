"""Request validation for servicers: collect every violation, then fail once::

    violations = Violations()
    app = violations.at("app")
    app.require(request.app.name, "name")
    app.at("resources").check(request.app.resources.cpu_millis > 0, "cpu_millis", "must be > 0")
    violations.raise_if_any()

raises :class:`astra.errors.InvalidArgumentError`, which the server answers with
INVALID_ARGUMENT and a message naming each field path:
``app.name: is required; app.resources.cpu_millis: must be > 0``.
"""

from __future__ import annotations

import copy

from astra.errors import FieldViolation, InvalidArgumentError


class Violations:
    """Field violations of one request, addressed by dotted path (``models[2].name``)."""

    def __init__(self) -> None:
        self._found: list[FieldViolation] = []
        self._path = ""

    def at(self, field: str | int) -> Violations:
        """A view that records under ``field`` (a name, or an index into a repeated field)."""
        scoped = copy.copy(self)  # shares the list of violations
        scoped._path = self._join(field)
        return scoped

    def _join(self, field: str | int) -> str:
        if isinstance(field, int):
            return f"{self._path}[{field}]"
        return f"{self._path}.{field}" if self._path else field

    def add(self, field: str | int, description: str) -> None:
        """Record that ``field`` is invalid, e.g. ``add("cpu_millis", "must be > 0")``."""
        self._found.append(FieldViolation(self._join(field), description))

    def check(self, ok: bool, field: str | int, description: str) -> bool:
        """Record a violation of ``field`` unless ``ok``; returns ``ok``."""
        if not ok:
            self.add(field, description)
        return ok

    def require(self, value: object, field: str) -> bool:
        """Record ``field: is required`` when ``value`` is empty (proto3's unset)."""
        return self.check(bool(value), field, "is required")

    def __bool__(self) -> bool:
        """Whether any violation was recorded (in this view or any other of the request)."""
        return bool(self._found)

    def raise_if_any(self) -> None:
        """Raise every violation recorded so far at once.

        Raises:
            InvalidArgumentError: at least one violation was recorded.
        """
        if self._found:
            raise InvalidArgumentError(self._found)
