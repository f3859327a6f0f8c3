"""The node's content-addressed model cache: each file is kept once per machine, under
its sha256, whatever URI it came from and however many replicas use it."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from node_agent.replica._errors import ChecksumError, FetchError
from node_agent.replica._fetch import ModelFetcher, default_fetchers

_log = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelCache:
    """Model files under ``root/sha256/<digest>``, fetched on first use.

    A file enters the cache only once its bytes hash to the declared digest, and it
    enters atomically (written aside, then renamed), so a file in the cache is always
    whole and verified; it is not hashed again on later uses. Processes on one machine
    (replicas of several Ray clusters) share the cache: a lock file per digest makes
    the first one fetch while the others wait, so each model is fetched once per
    machine.
    """

    def __init__(self, root: Path, *, fetchers: Sequence[ModelFetcher] | None = None) -> None:
        """
        Args:
            root: the cache's directory (created if missing).
            fetchers: tried in order, the first that handles a URI fetches it;
                :func:`default_fetchers` when not given.
        """
        self.root = Path(root)
        self._fetchers = list(default_fetchers() if fetchers is None else fetchers)

    def path(self, sha256: str) -> Path:
        """Where the file of digest ``sha256`` is (or will be) kept."""
        return self.root / "sha256" / sha256

    def get(self, uri: str, sha256: str) -> Path:
        """The cached file of digest ``sha256``, fetched from ``uri`` if it is not cached
        yet. Blocks (run it in a thread); O(file size) on a miss, O(1) on a hit.

        Raises:
            FetchError: no fetcher handles ``uri``, or fetching failed.
            ChecksumError: the fetched bytes do not hash to ``sha256``.
            ValueError: ``sha256`` is not 64 hex digits.
        """
        sha256 = sha256.lower()
        if not _SHA256.match(sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
        path = self.path(sha256)
        if path.exists():
            return path
        with self._locked(sha256):
            if path.exists():  # another process fetched it while we waited
                return path
            self._fetch(uri, sha256, path)
        return path

    def _fetch(self, uri: str, sha256: str, path: Path) -> None:
        fetcher = next((fetcher for fetcher in self._fetchers if fetcher.handles(uri)), None)
        if fetcher is None:
            raise FetchError(
                f"no fetcher for {uri!r}: use an absolute path, file://, http:// or https://"
            )
        incoming = self.root / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=incoming, delete=False) as part:
            try:

                def sink(chunk: bytes) -> None:
                    digest.update(chunk)
                    part.write(chunk)

                fetcher.fetch(uri, sha256, sink)
                part.flush()
                os.fsync(part.fileno())
                if digest.hexdigest() != sha256:
                    raise ChecksumError(uri, expected=sha256, actual=digest.hexdigest())
                os.chmod(part.name, 0o444)
                os.replace(part.name, path)
            except BaseException:
                os.unlink(part.name)
                raise
        _log.info("cached %s as %s (%d bytes)", uri, sha256, path.stat().st_size)

    @contextlib.contextmanager
    def _locked(self, sha256: str) -> Iterator[None]:
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{sha256}.lock", "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
