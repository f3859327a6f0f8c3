"""The embedded store's file: SQLite in WAL mode, written in atomic batches of revisions.

The layout is etcd's own: a table of key versions in revision order, which is at once
the history and, through each key's latest row, the state. A commit appends the rows
of its revisions; compaction deletes the rows no retained revision needs (see
:meth:`Keyspace.obsolete_rows`); opening replays every row, O(live keys + retained
events).

Durability: ``synchronous=NORMAL`` (the default) makes every commit a write to the WAL
before the store acknowledges it, which survives the process being killed at any
instant; power loss may lose the last commits before a checkpoint, never consistency.
``synchronous=FULL`` also fsyncs each commit, surviving power loss at the cost of one
fsync per commit. The file is opened with an exclusive lock: one store per file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from astra.store._errors import LimitError, UnavailableError
from astra.store._mvcc import Keyspace, Row
from astra.store._types import Event, EventType

Synchronous = Literal["NORMAL", "FULL"]

_FORMAT = 1
#: The page size of a new file (an existing one keeps its own). Rows are written in
#: batches of many revisions, and 16 KiB pages take the same batch to the WAL in a
#: quarter of the writes that SQLite's default 4 KiB pages need: about half the
#: system time of a commit, a micro-second per row.
_PAGE_SIZE = 16384
#: A row's id is its revision shifted left by this, plus its position in the revision.
_POSITION_BITS = 24
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    value BLOB,
    create_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
_SELECT_ROWS = (
    f"SELECT id >> {_POSITION_BITS}, key, value, create_rev, version, lease FROM kv ORDER BY id"
)
_INSERT_ROW = "INSERT INTO kv VALUES (?, ?, ?, ?, ?, ?)"
#: A revision's rows are adjacent: finding one by key scans only them.
_DELETE_ROW = "DELETE FROM kv WHERE id >= ?1 AND id < ?2 AND key = ?3"
#: Keys deleted from one revision's rows per statement (far under SQLite's variable limit).
_DELETE_CHUNK = 256
_SET_COMPACTED = "INSERT OR REPLACE INTO meta VALUES ('compacted', ?)"
_INSERT_LEASE = "INSERT INTO lease VALUES (?, ?)"
_DELETE_LEASE = "DELETE FROM lease WHERE id = ?"


def _rows(events: Sequence[Event]) -> list[tuple[int, str, bytes | None, int, int, int]]:
    """The rows of one revision's events: a deletion has no value."""
    if len(events) >> _POSITION_BITS:
        raise LimitError(f"one revision cannot change more than {1 << _POSITION_BITS} keys")
    base = events[0].kv.mod_revision << _POSITION_BITS
    rows = []
    for position, event in enumerate(events):
        kv = event.kv
        if event.type is EventType.PUT:
            rows.append(
                (base + position, kv.key, kv.value, kv.create_revision, kv.version, kv.lease)
            )
        else:
            rows.append((base + position, kv.key, None, 0, 0, 0))
    return rows


class Journal:
    """The SQLite file of one embedded store. Not thread-safe: one user at a time."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: str, *, synchronous: Synchronous) -> tuple[Journal, Keyspace]:
        """Open (or create) the file and load its keyspace. Blocking.

        Raises:
            UnavailableError: another store holds the file, or SQLite cannot open it.
            StoreError: the file is not a consistent store.
            ValueError: ``synchronous`` is neither NORMAL nor FULL.
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Used from the thread that loads it, then from the event loop's: never both at once.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        try:
            journal = cls(db, path)
            journal._setup(synchronous)
            return journal, journal._load()
        except BaseException:
            db.close()
            raise

    def _setup(self, synchronous: Synchronous) -> None:
        db = self._db
        with self._errors("open"):
            # Before the first table is created, which fixes the page size of the file.
            db.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            # Before journal_mode, so that WAL keeps its index in memory, not in a -shm file.
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            db.execute("BEGIN IMMEDIATE")  # takes the lock now, and keeps it until close
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version not in (0, _FORMAT):
                db.execute("ROLLBACK")
                raise UnavailableError(f"{self.path}: store format {version} is not {_FORMAT}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {_FORMAT}")
            db.execute("COMMIT")

    def _load(self) -> Keyspace:
        db = self._db
        with self._errors("read"):
            row = db.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
            leases = db.execute("SELECT id, ttl FROM lease").fetchall()
            rows: Iterator[Row] = db.execute(_SELECT_ROWS)
            return Keyspace.restore(rows, compacted=row[0] if row else 0, leases=leases)

    def write(
        self,
        revisions: Sequence[Sequence[Event]] = (),
        *,
        obsolete: Sequence[tuple[int, str]] = (),
        compacted: int = 0,
        granted: Sequence[tuple[int, int]] = (),
        revoked: Sequence[int] = (),
    ) -> None:
        """Commit changes of the store in one SQLite transaction: all of them or nothing.

        Args:
            revisions: the events of each new revision, in order.
            obsolete: (revision, key) of rows to delete.
            compacted: the new compaction point, if not 0.
            granted: (id, ttl) of new leases.
            revoked: ids of leases gone.

        Raises:
            UnavailableError: SQLite failed (disk full, I/O error); nothing was written.
        """
        db = self._db
        with self._errors("write"):
            db.execute("BEGIN")
            try:
                if revisions:
                    db.executemany(
                        _INSERT_ROW, [row for events in revisions for row in _rows(events)]
                    )
                if obsolete:
                    self._delete_rows(obsolete)
                if compacted:
                    db.execute(_SET_COMPACTED, (compacted,))
                if granted:
                    db.executemany(_INSERT_LEASE, granted)
                if revoked:
                    db.executemany(_DELETE_LEASE, [(lease_id,) for lease_id in revoked])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _delete_rows(self, rows: Sequence[tuple[int, str]]) -> None:
        """Delete rows by (revision, key). The keys of one revision go in one statement,
        so freeing a revision of n keys scans its n rows once, not n times."""
        by_revision: dict[int, list[str]] = {}
        for revision, key in rows:
            by_revision.setdefault(revision, []).append(key)
        single = []
        for revision, keys in by_revision.items():
            low, high = revision << _POSITION_BITS, (revision + 1) << _POSITION_BITS
            if len(keys) == 1:
                single.append((low, high, keys[0]))
                continue
            for start in range(0, len(keys), _DELETE_CHUNK):
                chunk = keys[start : start + _DELETE_CHUNK]
                self._db.execute(
                    "DELETE FROM kv WHERE id >= ? AND id < ? AND key IN "
                    f"({','.join('?' * len(chunk))})",
                    (low, high, *chunk),
                )
        if single:
            self._db.executemany(_DELETE_ROW, single)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn SQLite's operational errors (locked, I/O, disk full) into UnavailableError."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise UnavailableError(f"{self.path}: cannot {doing} the store file: {exc}") from exc


__all__ = ["Journal", "Synchronous"]
