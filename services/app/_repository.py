"""Apps in the store: ``/astra/v1/apps/{app}`` written with optimistic transactions.

Every write compares the record's ``mod_revision``. A spec update that loses a race
to a status write (the owner reporting progress) reads again and re-applies the mask,
so only a stale *etag* makes it fail; a status write that loses to a spec update
leaves the newer record alone (its owner reconciles it next).

Deletion is two steps: the API marks the app ``deleting`` (it is gone for the API
from then on), and its owner removes the record once every replica is freed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from astra import keys
from astra._gen.astra.v1 import app_pb2
from astra.errors import AlreadyExistsError, ConflictError, FailedPreconditionError, NotFoundError
from astra.names import app_name
from astra.records import AppRecord
from astra.server import Violations
from astra.store import Compare, Delete, Get, KeyValue, Put, RangeResult, Store
from services.app._convert import apply_spec, etag, spec_of, to_app
from services.app._status import AppStatus, apply_status
from services.app._validation import check_spec, derived_replicas, merge

#: Races an update may lose to status writes before it gives up with ABORTED.
_ATTEMPTS = 16


class AppRepository:
    """Reads and writes app records.

    Args:
        store: the store.
        clock: the wall clock written into records.
    """

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def create(self, app_id: str, app: app_pb2.App) -> tuple[AppRecord, int]:
        """Store a new app from its (valid) spec; returns it and the revision written.

        Raises:
            AlreadyExistsError: an app of that name exists.
            FailedPreconditionError: an app of that name is still being deleted.
        """
        now = self._clock()
        record = AppRecord(app_id=app_id, uid=uuid.uuid4().hex, create_time=now, update_time=now)
        _set_spec(record, app)
        key = keys.app(app_id)
        result = await self._store.txn(
            [Compare.version(key) == 0], [Put(key, record.to_bytes())], [Get(key)]
        )
        if not result.succeeded:
            existing = _only(result.results[0])
            if existing is not None and AppRecord.from_bytes(existing.value).deleting:
                raise FailedPreconditionError(
                    f"{app_name(app_id)} is still being deleted; create it again once it is gone"
                )
            raise AlreadyExistsError(f"{app_name(app_id)} already exists")
        return record, result.revision

    async def get(self, app_id: str) -> tuple[AppRecord, KeyValue]:
        """The app and the key-value it was read from.

        Raises:
            NotFoundError: no such app (or it is being deleted).
        """
        kv = await self._store.get(keys.app(app_id))
        record = _live(app_id, kv)
        assert kv is not None  # _live raised NotFoundError otherwise
        return record, kv

    async def update(
        self, app_id: str, patch: app_pb2.App, paths: list[str], expected_etag: str
    ) -> tuple[AppRecord, int]:
        """Replace the fields named by ``paths`` with ``patch``'s; the generation goes up
        when the spec changes. Returns the app and the revision written (0: unchanged).

        Raises:
            NotFoundError: no such app.
            ConflictError: ``expected_etag`` is set and stale, or too many races lost.
            InvalidArgumentError: the updated spec is invalid (paths under ``app``).
        """
        for _ in range(_ATTEMPTS):
            record, kv = await self.get(app_id)
            _check_etag(record, expected_etag)
            merged = merge(to_app(record), patch, paths)
            violations = Violations()
            check_spec(merged, violations.at("app"), replicas_given="replicas" in paths)
            violations.raise_if_any()
            updated = AppRecord.from_bytes(kv.value)
            _set_spec(updated, merged)
            if spec_of(updated) == spec_of(record):
                return record, 0
            updated.generation += 1
            updated.update_time = self._clock()
            revision = await self._swap(kv, updated)
            if revision:
                return updated, revision
        raise ConflictError(
            f"{app_name(app_id)} changed {_ATTEMPTS} times during the update; retry"
        )

    async def mark_deleting(self, app_id: str, expected_etag: str) -> int:
        """Mark the app deleted for the API (its owner frees it); returns the revision.

        Raises:
            NotFoundError: no such app.
            ConflictError: ``expected_etag`` is set and stale.
        """
        for _ in range(_ATTEMPTS):
            record, kv = await self.get(app_id)
            _check_etag(record, expected_etag)
            record.deleting = True
            record.update_time = self._clock()
            revision = await self._swap(kv, record)
            if revision:
                return revision
        raise ConflictError(
            f"{app_name(app_id)} changed {_ATTEMPTS} times during the delete; retry"
        )

    async def remove(self, app_id: str) -> bool:
        """Delete the record of an app marked deleting; whether it was deleted."""
        kv = await self._store.get(keys.app(app_id))
        if kv is None or not AppRecord.from_bytes(kv.value).deleting:
            return False
        result = await self._store.txn(
            [Compare.mod_revision(kv.key) == kv.mod_revision], [Delete(kv.key)]
        )
        return result.succeeded

    async def write_status(self, app_id: str, status: AppStatus) -> bool:
        """Write ``status`` unless the spec moved past its generation, the app is being
        deleted or nothing changed; whether it was written."""
        for _ in range(_ATTEMPTS):
            kv = await self._store.get(keys.app(app_id))
            if kv is None:
                return False
            record = AppRecord.from_bytes(kv.value)
            if record.deleting or record.generation != status.observed_generation:
                return False
            if not apply_status(record, status, self._clock()):
                return False
            if await self._swap(kv, record):
                return True
        return False

    async def _swap(self, kv: KeyValue, record: AppRecord) -> int:
        """Write ``record`` over ``kv`` unless it changed; the revision written, or 0."""
        result = await self._store.txn(
            [Compare.mod_revision(kv.key) == kv.mod_revision], [Put(kv.key, record.to_bytes())]
        )
        return result.revision if result.succeeded else 0


def _set_spec(record: AppRecord, app: app_pb2.App) -> None:
    apply_spec(record, app)
    if app.ray.workers_per_cluster:
        record.replicas = derived_replicas(app)


def _live(app_id: str, kv: KeyValue | None) -> AppRecord:
    record = AppRecord.from_bytes(kv.value) if kv is not None else None
    if record is None or record.deleting:
        raise NotFoundError(f"{app_name(app_id)} not found")
    return record


def _check_etag(record: AppRecord, expected: str) -> None:
    if expected and expected != etag(record):
        raise ConflictError(
            f"{app_name(record.app_id)} changed since it was read (stale etag): "
            "get it again and retry"
        )


def _only(result: object) -> KeyValue | None:
    assert isinstance(result, RangeResult)
    return result.kvs[0] if result.kvs else None
