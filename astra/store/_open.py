"""Open a store from a URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from astra.store._base import Store


async def open_store(url: str) -> Store:
    """Open the store named by ``url``.

    - ``etcd://host:port[,host:port...]``: a real etcd cluster (``aetcd``).
    - ``sqlite:///abs/path/state.db`` or ``sqlite://relative/state.db``: the embedded
      store persisted to SQLite (WAL mode); the file and its directory are created.
    - ``memory://``: the embedded store, in memory only (tests and simulations).

    Raises:
        ValueError: the URL's scheme is none of these.
    """
    parts = urlsplit(url)
    if parts.scheme == "etcd":
        from astra.store._etcd import EtcdStore

        endpoints = [endpoint for endpoint in parts.netloc.split(",") if endpoint]
        if not endpoints:
            raise ValueError(f"store URL {url!r} names no etcd endpoint (etcd://host:port)")
        return await EtcdStore.connect(endpoints)
    if parts.scheme in ("sqlite", "memory"):
        from astra.store._embedded import EmbeddedStore

        if parts.scheme == "memory":
            return await EmbeddedStore.open(None)
        path = parts.netloc + parts.path
        if not path:
            raise ValueError(f"store URL {url!r} names no file (sqlite:///path/to/state.db)")
        return await EmbeddedStore.open(path)
    raise ValueError(
        f"unknown store URL {url!r}: use etcd://host:port, sqlite:///path or memory://"
    )
