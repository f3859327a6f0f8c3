"""Apps in the store: ``/astra/v1/apps/{app}`` written with optimistic transactions.

Every write compares the record's ``mod_revision``. A spec update that loses a race
to a status write (the owner reporting progress) reads again and re-applies the mask,
so only a stale *etag* makes it fail; a status write that loses to a spec update
leaves the newer record alone (its owner reconciles it next).

Deletion is two steps: the API marks the app ``deleting`` (it is gone for the API
from then on), and its owner removes the record once every replica is freed.

Model versions are owned (:mod:`services.app._model_owners`): a write of the spec
claims and frees the index keys of its models in the same transaction as the record,
and the removal frees them, so a deleted app's names are free once its record is gone.
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
from services.app import _model_owners as owners
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
        """Store a new app from its (valid) spec, owning its model versions; returns it
        and the revision written.

        Raises:
            AlreadyExistsError: an app of that name exists, or another app serves one
                of its model versions.
            FailedPreconditionError: an app of that name is still being deleted, or
                the only apps serving its model versions are.
            ConflictError: too many races lost to other claims of its model versions.
        """
        now = self._clock()
        record = AppRecord(app_id=app_id, uid=uuid.uuid4().hex, create_time=now, update_time=now)
        _set_spec(record, app)
        key = keys.app(app_id)
        wanted = owners.claimed(record.models)
        for _ in range(_ATTEMPTS):
            claims = await owners.plan(self._store, app_id, held=(), wanted=wanted)
            result = await self._store.txn(
                [Compare.version(key) == 0, *claims.compares],
                [Put(key, record.to_bytes()), *claims.ops],
                [Get(key)],
            )
            if result.succeeded:
                return record, result.revision
            existing = _only(result.results[0])
            if existing is not None and AppRecord.from_bytes(existing.value).deleting:
                raise FailedPreconditionError(
                    f"{app_name(app_id)} is still being deleted; create it again once it is gone"
                )
            if existing is not None:
                raise AlreadyExistsError(f"{app_name(app_id)} already exists")
            # a claim of one of its model versions moved: read the owners again
        raise ConflictError(
            f"the model versions of {app_name(app_id)} changed owners {_ATTEMPTS} times "
            "during the create; retry"
        )

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
            AlreadyExistsError: another app serves a model version the update adds.
            FailedPreconditionError: the only apps serving the model versions it adds
                are being deleted.
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
            claims = await owners.plan(
                self._store,
                app_id,
                held=owners.claimed(record.models),
                wanted=owners.claimed(updated.models),
            )
            revision = await self._swap(kv, updated, claims)
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
        """Delete the record of an app marked deleting, and free its model versions in
        the same transaction; whether it was deleted."""
        kv = await self._store.get(keys.app(app_id))
        if kv is None:
            return False
        record = AppRecord.from_bytes(kv.value)
        if not record.deleting:
            return False
        claims = await owners.plan(
            self._store, app_id, held=owners.claimed(record.models), wanted=()
        )
        result = await self._store.txn(
            [Compare.mod_revision(kv.key) == kv.mod_revision, *claims.compares],
            [Delete(kv.key), *claims.ops],
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

    async def _swap(
        self, kv: KeyValue, record: AppRecord, claims: owners.Claims | None = None
    ) -> int:
        """Write ``record`` over ``kv`` unless it changed (or a claim's compare fails),
        with the ``claims`` of its model versions; the revision written, or 0."""
        compares, ops = (claims.compares, claims.ops) if claims is not None else ((), ())
        result = await self._store.txn(
            [Compare.mod_revision(kv.key) == kv.mod_revision, *compares],
            [Put(kv.key, record.to_bytes()), *ops],
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
