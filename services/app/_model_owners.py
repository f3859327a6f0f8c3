"""Model names are owned: one app serves a model version, named by an index key.

``/astra/v1/model-owners/{model}/{version}`` (:func:`astra.keys.model_owner`) holds the
id of the app whose spec lists that model version. The key is written, kept or deleted
in the same transaction as the app record it follows (see :class:`AppRepository`),
guarded by compares on what :func:`plan` read: the key absent (``create_revision == 0``)
or unchanged since. So two racing writes that claim one version cannot both commit; the
loser reads again and finds the winner. Without the index, a second app serving "demo"
version "1" would join the first app's route, and requests for "demo" would reach
either app.

The rules:

- A version another app serves answers ALREADY_EXISTS, naming that app.
- A version an app being deleted serves answers FAILED_PRECONDITION, as creating an
  app of a name being deleted does: the state is transient (the app's replicas are
  being freed and its names go with its record), so the caller retries once it is gone.
- One app may serve several versions of one model: each version's key names it.
- A key whose app no longer claims it (the app's record is gone, or its spec lacks
  that version: written by a replica older than the index) is stale, and a claim takes
  it over, guarded by that app's record being unchanged as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from astra import keys
from astra.errors import AlreadyExistsError, FailedPreconditionError
from astra.names import DEFAULT_VERSION, app_name
from astra.records import AppRecord
from astra.store import Compare, Delete, Get, KeyValue, Op, Put, RangeResult, Store

#: A model version: (name, version), the version normalised.
ModelVersion = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Claims:
    """What a write of one app's record must also compare and do to the index."""

    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)


def claimed(models: Iterable[Mapping[str, Any]]) -> list[ModelVersion]:
    """The model versions a record's ``models`` serve, in spec order (names validated)."""
    return [(model["name"], model.get("version") or DEFAULT_VERSION) for model in models]


async def plan(
    store: Store,
    app_id: str,
    *,
    held: Sequence[ModelVersion],
    wanted: Sequence[ModelVersion],
) -> Claims:
    """The compares and ops that leave ``app_id`` owning exactly ``wanted``, freeing the
    versions of ``held`` (what its stored record serves) that ``wanted`` drops.

    Raises:
        AlreadyExistsError: another app serves a version of ``wanted``.
        FailedPreconditionError: only apps being deleted serve the versions taken.
    """
    me = app_id.encode()
    found = await _read(
        store, [keys.model_owner(*version) for version in dict.fromkeys([*wanted, *held])]
    )
    others = {
        kv.value.decode()
        for version in wanted
        if (kv := found.get(keys.model_owner(*version))) is not None and kv.value != me
    }
    owners = await _read(store, [keys.app(owner) for owner in sorted(others)]) if others else {}
    claims = Claims()
    taken: list[tuple[ModelVersion, str, bool]] = []
    for version in wanted:
        key = keys.model_owner(*version)
        kv = found.get(key)
        if kv is None:
            claims.compares.append(Compare.create_revision(key) == 0)
            claims.ops.append(Put(key, me))
        elif kv.value == me:
            claims.compares.append(Compare.mod_revision(key) == kv.mod_revision)
        else:
            owner = kv.value.decode()
            owner_kv = owners.get(keys.app(owner))
            record = AppRecord.from_bytes(owner_kv.value) if owner_kv is not None else None
            if record is not None and version in claimed(record.models):
                taken.append((version, owner, record.deleting))
                continue
            claims.compares.append(Compare.mod_revision(key) == kv.mod_revision)
            claims.compares.append(
                Compare.mod_revision(keys.app(owner)) == owner_kv.mod_revision
                if owner_kv is not None
                else Compare.version(keys.app(owner)) == 0
            )
            claims.ops.append(Put(key, me))
    if taken:
        _refuse(taken)
    for version in dict.fromkeys(held):
        key = keys.model_owner(*version)
        kv = found.get(key)
        if version not in wanted and kv is not None and kv.value == me:
            claims.compares.append(Compare.mod_revision(key) == kv.mod_revision)
            claims.ops.append(Delete(key))
    return claims


def _refuse(taken: list[tuple[ModelVersion, str, bool]]) -> None:
    """Raise the error for versions served by other apps (ALREADY_EXISTS unless every
    one of those apps is being deleted)."""
    reasons = [
        f"model {name} version {version} is served by {app_name(owner)}"
        + (", which is being deleted; retry when it is gone" if deleting else "")
        for (name, version), owner, deleting in taken
    ]
    if all(deleting for _, _, deleting in taken):
        raise FailedPreconditionError("; ".join(reasons))
    raise AlreadyExistsError(
        "; ".join(reasons) + "; a model version is served by one app: "
        "choose another name or version, or update the app that serves it"
    )


async def _read(store: Store, wanted: Sequence[str]) -> dict[str, KeyValue]:
    """The present keys of ``wanted``, read at one revision (one transaction)."""
    result = await store.txn((), [Get(key) for key in wanted])
    found: dict[str, KeyValue] = {}
    for read in result.results:
        assert isinstance(read, RangeResult)
        found.update((kv.key, kv) for kv in read.kvs)
    return found
