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
fsync per commit. One store per file: the store holds an exclusive ``flock`` on a lock
file beside it (``<file>-lock``) while open.

Checkpoints (copying the WAL into the database file, with an fsync of each) are the
costly part of writing: done inside a commit, as SQLite does by default, one stalls
the event loop for tens of milliseconds every 16 MiB. Here a thread of its own
(:class:`_Checkpointer`, with a second connection) copies the WAL while the store goes
on committing; once it is nearly caught up, the writer's next commit finishes the copy
(a few frames) and restarts the WAL from its start, so the WAL stays around 16 MiB of
records. A writer that gets 64 MiB ahead of the copy waits for it.

Format 1 (one row per key version) is converted to this one when opened.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import msgpack

from astra.store._errors import StoreError, UnavailableError
from astra.store._mvcc import Keyspace, Record, Row

_log = logging.getLogger(__name__)

Synchronous = Literal["NORMAL", "FULL"]

_FORMAT = 2
#: The page size of a new file (an existing one keeps its own). Rows are written in
#: batches of many revisions, and 16 KiB pages take the same batch to the WAL in a
#: quarter of the writes that SQLite's default 4 KiB pages need; a revision of 64
#: keys with small values fits one page.
_PAGE_SIZE = 16384
#: Bytes written since the last checkpoint after which the checkpointer starts one.
_CHECKPOINT_BYTES = 16 << 20
#: Bytes written since the last checkpoint after which the writer waits for the one
#: under way (a checkpointer starved of CPU or disk must not let the WAL grow unbounded).
_CHECKPOINT_LIMIT = 4 * _CHECKPOINT_BYTES
#: WAL frames (pages) the checkpointer may leave for the writer's commit to copy.
_CHECKPOINT_REMAINDER = 64
#: Rounds the checkpointer runs, each copying what was committed during the one before,
#: before it leaves the rest to the writer however much that is (so the WAL is bounded
#: even when commits outpace the copying).
_CHECKPOINT_ROUNDS = 8
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
#: Flushes a file's data to the disk (macOS has no fdatasync).
_sync_data = getattr(os, "fdatasync", os.fsync)


def _unpack(blob: bytes) -> Sequence[Record]:
    records: Sequence[Record] = msgpack.unpackb(blob, use_list=False, raw=False)
    return records


class Journal:
    """The SQLite file of one embedded store. Not thread-safe: one user at a time."""

    def __init__(self, connection: sqlite3.Connection, path: str, lock: int) -> None:
        self._db = connection
        self.path = path
        #: Files to close after the connection: the lock, then the checkpointer's.
        self._files = [lock]
        self._checkpointer: _Checkpointer | None = None
        #: Bytes written since the last checkpoint.
        self._unchecked = 0
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
        with contextlib.ExitStack() as undo:
            lock = _lock(path)
            undo.callback(os.close, lock)
            # Used from the thread that loads it, then from the event loop's: never both at once.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
            undo.callback(db.close)
            journal = cls(db, path, lock)
            journal._setup(synchronous)
            keyspace = journal._load()
            # SQLite's POSIX locks on a file go when any descriptor of it is closed: this
            # one is closed after the connections.
            database = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            undo.callback(os.close, database)
            journal._files.append(database)
            with journal._errors("open"):
                journal._checkpointer = _Checkpointer(path, synchronous, database)
            undo.pop_all()
        return journal, keyspace

    def _setup(self, synchronous: Synchronous) -> None:
        db = self._db
        with self._errors("open"):
            # Before the first table is created, which fixes the page size of the file.
            db.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            db.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's job
            db.execute("BEGIN IMMEDIATE")
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
        rows = [(revision, _pack(records)) for revision, records in revisions]
        written = sum(len(blob) for _, blob in rows)
        with self._errors("write"):
            db.execute("BEGIN")
            try:
                if rows:
                    db.executemany(_INSERT_ROW, rows)
                if obsolete:
                    written += self._free(obsolete, live)
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
        self._checkpoint(written)

    def _checkpoint(self, written: int) -> None:
        """Count ``written`` bytes; start a checkpoint once there are enough, and finish
        the one the checkpointer has nearly done (the WAL then restarts from its start)."""
        checkpointer = self._checkpointer
        assert checkpointer is not None
        self._unchecked += written
        if checkpointer.running and self._unchecked >= _CHECKPOINT_LIMIT:
            checkpointer.wait()
        if checkpointer.caught_up:
            try:
                self._db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.Error as exc:  # the WAL only grows until the next one
                _log.warning("checkpoint of %s failed: %s", self.path, exc)
            else:
                self._unchecked = 0
            checkpointer.finished()
        elif not checkpointer.running and self._unchecked >= _CHECKPOINT_BYTES:
            checkpointer.start()

    def _free(self, obsolete: Mapping[int, Sequence[str]], live: dict[int, int]) -> int:
        """Delete the rows left with no record, rewrite those left with some, and note
        how many each keeps in ``live``; returns the bytes rewritten. A row is rewritten
        at most once per record it holds; one whose keys all change again in one later
        revision is deleted whole, without being read."""
        gone = []
        written = 0
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
            blob = _pack(kept)
            written += len(blob)
            self._db.execute(_UPDATE_ROW, (revision, blob))
        if gone:
            self._db.executemany(_DELETE_ROW, gone)
        return written

    def close(self) -> None:
        """Stop the checkpointer, close the file (SQLite checkpoints it a last time and
        removes the WAL), and release the lock."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._db.close()
        for file in self._files:
            os.close(file)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn SQLite's operational errors (locked, I/O, disk full) into UnavailableError."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise UnavailableError(f"{self.path}: cannot {doing} the store file: {exc}") from exc


class _Checkpointer:
    """Copies the WAL into the database file on a thread of its own, through a
    connection of its own, while the writer goes on committing: a PASSIVE checkpoint
    never blocks a writer, and SQLite lets other threads run while it copies.

    The writer starts it (:meth:`start`). The thread then runs checkpoints, each
    copying what was committed during the one before and syncing the database file
    (``database``, a descriptor of it: SQLite syncs it only after a checkpoint that
    found no new commit at its end), until one finds at most ``_CHECKPOINT_REMAINDER``
    new frames (or ``_CHECKPOINT_ROUNDS`` ran); then it is :attr:`caught_up`. The
    writer finishes between two commits (a RESTART checkpoint: the last frames, a sync
    of what they changed, the WAL back to its start) and calls :meth:`finished`. One
    checkpoint at a time; a writer ``_CHECKPOINT_LIMIT`` bytes ahead of it waits.
    """

    def __init__(self, path: str, synchronous: Synchronous, database: int) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA synchronous = {synchronous}")  # how checkpoints sync
        self._database = database
        self._wake = threading.Event()
        self._done = threading.Event()
        self._closing = False
        #: A checkpoint is under way, or waits for the writer to finish it.
        self.running = False
        self._thread = threading.Thread(
            target=self._run, name="astra-store-checkpoint", daemon=True
        )
        self._thread.start()

    @property
    def caught_up(self) -> bool:
        """The thread's part of the running checkpoint is done."""
        return self._done.is_set()

    def start(self) -> None:
        self.running = True
        self._wake.set()

    def wait(self) -> None:
        """Block until the thread's part of the running checkpoint is done."""
        self._done.wait()

    def finished(self) -> None:
        self.running = False
        self._done.clear()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            try:
                self._copy()
            except (sqlite3.Error, OSError):  # the writer's part copies what this one could not
                _log.exception("background checkpoint failed")
            self._done.set()

    def _copy(self) -> None:
        copied = 0
        for _ in range(_CHECKPOINT_ROUNDS):
            _, frames, _ = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            _sync_data(self._database)
            if frames - copied <= _CHECKPOINT_REMAINDER:
                return
            copied = frames

    def close(self) -> None:
        """Wait for the checkpoint under way, if any, and stop; ``database`` stays open."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        self._db.close()


def _lock(path: str) -> int:
    """An open lock file beside ``path``, exclusively locked (released when closed).

    Raises:
        UnavailableError: another store holds it.
    """
    lock = os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise UnavailableError(f"{path}: the store file is locked by another store") from None
    return lock


__all__ = ["Journal", "Synchronous"]
