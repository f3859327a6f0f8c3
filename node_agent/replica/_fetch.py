"""Where model files come from: a :class:`ModelFetcher` per kind of URI.

Fetchers are given the declared sha256 as well as the URI, so a peer-to-peer fetcher
(ask the other nodes' caches for that digest first) fits the same protocol and can be
put before the others. Fetchers block; the cache runs them in a thread.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from node_agent.replica._errors import FetchError

#: Receives the file's bytes, chunk by chunk, in order.
Sink = Callable[[bytes], None]
_CHUNK = 1 << 20


@runtime_checkable
class ModelFetcher(Protocol):
    """Fetches model files of some URIs."""

    def handles(self, uri: str) -> bool:
        """Whether this fetcher can fetch ``uri``."""

    def fetch(self, uri: str, sha256: str, sink: Sink) -> None:
        """Send the bytes of the file at ``uri`` (declared digest ``sha256``) to ``sink``.

        Raises:
            FetchError: the file cannot be had.
        """


class LocalFetcher:
    """Files on this machine: an absolute path or a ``file://`` URL."""

    def handles(self, uri: str) -> bool:
        return uri.startswith("/") or urlsplit(uri).scheme == "file"

    def fetch(self, uri: str, sha256: str, sink: Sink) -> None:
        path = Path(urlsplit(uri).path if uri.startswith("file:") else uri)
        try:
            with path.open("rb") as source:
                while chunk := source.read(_CHUNK):
                    sink(chunk)
        except OSError as exc:
            raise FetchError(f"cannot read model file {path}: {exc.strerror or exc}") from exc


class HttpFetcher:
    """Files served over HTTP or HTTPS, streamed (never held whole in memory)."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        """
        Args:
            timeout: seconds to wait for a connection or for each read.
        """
        self._timeout = timeout

    def handles(self, uri: str) -> bool:
        return urlsplit(uri).scheme in ("http", "https")

    def fetch(self, uri: str, sha256: str, sink: Sink) -> None:
        try:
            # Only http(s) URIs get here (see handles()).
            with urllib.request.urlopen(uri, timeout=self._timeout) as response:
                while chunk := response.read(_CHUNK):
                    sink(chunk)
        except urllib.error.HTTPError as exc:
            raise FetchError(f"cannot fetch {uri}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchError(f"cannot fetch {uri}: {reason}") from exc


def default_fetchers() -> list[ModelFetcher]:
    """The fetchers a cache uses unless told otherwise: local files, then HTTP(S)."""
    return [LocalFetcher(), HttpFetcher()]
