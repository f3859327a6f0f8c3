"""Write to an embedded store until killed, printing each acknowledged write.

Run by test_embedded.py as ``python _crash_writer.py PATH HISTORY``. Write ``i`` is one
transaction: put ``/crash/k/{i}`` (attached to a lease), put ``/crash/tmp/{i}`` and
delete ``/crash/tmp/{i-1}``. Once it is acknowledged, the line ``{i} {revision}`` is
printed; the first line is ``lease {id}``.
"""

from __future__ import annotations

import asyncio
import sys

from astra.store import Delete, Put
from astra.store._embedded import EmbeddedStore

VALUE = bytes(range(256)) * 32  # 8 KiB: a commit spans several pages


async def write_forever(path: str, history: int) -> None:
    store = await EmbeddedStore.open(path, history=history)
    lease = await store.lease_grant(3600)
    print(f"lease {lease.id}", flush=True)
    index = 0
    while True:
        ops = [Put(f"/crash/k/{index}", VALUE, lease.id), Put(f"/crash/tmp/{index}", b"")]
        result = await store.txn([], [*ops, Delete(f"/crash/tmp/{index - 1}")])
        print(index, result.revision, flush=True)
        index += 1


if __name__ == "__main__":
    asyncio.run(write_forever(sys.argv[1], int(sys.argv[2])))
