"""The embedded store's file: SQLite in WAL mode, written in atomic batches of revisions.

A table of revisions in order, one row per revision: the new records of its keys,
packed in one msgpack blob, which is at once the history and, through each key's
latest record, the state. A commit appends the rows of its revisions, one SQLite row
each however many keys they change; compaction frees the records no retained revision
needs (see :meth:`Keyspace.obsolete_rows`): a row whose every record went is deleted,
one that keeps some is rewritten with those. Opening replays every row, O(live keys +
retained changes).

Durability: ``synchronous=NORMAL`` (the default) makes every commit a write to the WAL
before the store acknowledges it, which survives the process being killed at any
instant; power loss may lose the last commits before a checkpoint, never consistency.
``synchronous=FULL`` also fsyncs each commit, surviving power loss at the cost of one
fsync per commit. The file is opened with an exclusive lock: one store per file.

Format 1 (one row per key version) is converted to this one when opened.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import msgpack

from astra.store._errors import StoreError, UnavailableError
from astra.store._mvcc import Keyspace, Record, Row

Synchronous = Literal["NORMAL", "FULL"]

_FORMAT = 2
#: The page size of a new file (an existing one keeps its own). Rows are written in
#: batches of many revisions, and 16 KiB pages take the same batch to the WAL in a
#: quarter of the writes that SQLite's default 4 KiB pages need; a revision of 64
#: keys with small values fits one page.
_PAGE_SIZE = 16384
_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (revision INTEGER PRIMARY KEY, records BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
_SELECT_ROWS = "SELECT revision, records FROM log ORDER BY revision"
_SELECT_ROW = "SELECT records FROM log WHERE revision = ?"
_INSERT_ROW = "INSERT INTO log VALUES (?, ?)"
_UPDATE_ROW = "UPDATE log SET records = ?2 WHERE revision = ?1"
_DELETE_ROW = "DELETE FROM log WHERE revision = ?"
_SET_COMPACTED = "INSERT OR REPLACE INTO meta VALUES ('compacted', ?)"
_INSERT_LEASE = "INSERT INTO lease VALUES (?, ?)"
_DELETE_LEASE = "DELETE FROM lease WHERE id = ?"
#: Format 1's rows, one per key version: (revision, key, value or NULL, create, version,
#: lease), its id being the revision shifted left by 24 plus the position in it.
_SELECT_FORMAT_1 = "SELECT id >> 24, key, value, create_rev, version, lease FROM kv ORDER BY id"

_pack = msgpack.Packer(use_bin_type=True).pack


def _unpack(blob: bytes) -> Sequence[Record]:
    return msgpack.unpackb(blob, use_list=False, raw=False)  # type: ignore[no-any-return]


class Journal:
    """The SQLite file of one embedded store. Not thread-safe: one user at a time."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path
        #: How many records each row holds that compaction has not freed yet.
        self._live: dict[int, int] = {}

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
            if version not in (0, 1, _FORMAT):
                db.execute("ROLLBACK")
                raise UnavailableError(f"{self.path}: store format {version} is not {_FORMAT}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if version == 1:
                self._convert_format_1()
            db.execute(f"PRAGMA user_version = {_FORMAT}")
            db.execute("COMMIT")

    def _convert_format_1(self) -> None:
        """Pack format 1's rows, one per key version, into one row per revision."""
        rows = self._db.execute(_SELECT_FORMAT_1).fetchall()
        self._db.executemany(
            _INSERT_ROW,
            [
                (
                    revision,
                    _pack(
                        [
                            (key, value, create, revision, version, lease)
                            if value is not None
                            else (key, b"", 0, revision, 0, 0)
                            for _, key, value, create, version, lease in versions
                        ]
                    ),
                )
                for revision, versions in itertools.groupby(rows, key=lambda row: row[0])
            ],
        )
        self._db.execute("DROP TABLE kv")

    def _load(self) -> Keyspace:
        db = self._db
        with self._errors("read"):
            row = db.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
            leases = db.execute("SELECT id, ttl FROM lease").fetchall()
            return Keyspace.restore(
                self._rows(db.execute(_SELECT_ROWS)),
                compacted=row[0] if row else 0,
                leases=leases,
            )

    def _rows(self, cursor: Iterator[tuple[int, bytes]]) -> Iterator[Row]:
        live = self._live
        for revision, blob in cursor:
            records = _unpack(blob)
            live[revision] = len(records)
            yield revision, records

    def write(
        self,
        revisions: Sequence[Row] = (),
        *,
        obsolete: Mapping[int, Sequence[str]] | None = None,
        compacted: int = 0,
        granted: Sequence[tuple[int, int]] = (),
        revoked: Sequence[int] = (),
    ) -> None:
        """Commit changes of the store in one SQLite transaction: all of them or nothing.

        Args:
            revisions: each new revision and its records, in order.
            obsolete: the keys of the records to free, by the revision of their row.
            compacted: the new compaction point, if not 0.
            granted: (id, ttl) of new leases.
            revoked: ids of leases gone.

        Raises:
            UnavailableError: SQLite failed (disk full, I/O error); nothing was written.
            StoreError: the file lacks a record to free (it is not this store's).
        """
        db = self._db
        live = {revision: len(records) for revision, records in revisions}
        with self._errors("write"):
            db.execute("BEGIN")
            try:
                if revisions:
                    db.executemany(
                        _INSERT_ROW, [(revision, _pack(records)) for revision, records in revisions]
                    )
                if obsolete:
                    self._free(obsolete, live)
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
        self._live.update(live)
        for revision, count in live.items():
            if not count:
                del self._live[revision]

    def _free(self, obsolete: Mapping[int, Sequence[str]], live: dict[int, int]) -> None:
        """Delete the rows left with no record, rewrite those left with some, and note
        how many each keeps in ``live``. A row is rewritten at most once per record it
        holds; one whose keys all change again in one later revision is deleted whole,
        without being read."""
        gone = []
        for revision, keys in obsolete.items():
            count = (live[revision] if revision in live else self._live[revision]) - len(keys)
            live[revision] = count
            if not count:
                gone.append((revision,))
                continue
            (blob,) = self._db.execute(_SELECT_ROW, (revision,)).fetchone()
            freed = set(keys)
            kept = [record for record in _unpack(blob) if record[0] not in freed]
            if len(kept) != count:
                raise StoreError(f"{self.path}: revision {revision} lacks records to free")
            self._db.execute(_UPDATE_ROW, (revision, _pack(kept)))
        if gone:
            self._db.executemany(_DELETE_ROW, gone)

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
