"""A replica in a process of its own, as Ray runs one: :class:`ReplicaActor` (without Ray)
serving the demo model with the OpenTelemetry settings it is given.

``python -m tests.gateway.traced_replica CONFIG_JSON`` prints the endpoint once it
serves, serves until its stdin closes, then stops (which flushes its telemetry). The
JSON holds ``uri``, ``sha256``, ``cache_dir`` and ``otel`` (OtelSettings' fields).
"""

from __future__ import annotations

import asyncio
import json
import sys

from astra._gen.astra.v1 import app_pb2, replica_pb2
from node_agent.replica import ReplicaSettings
from node_agent.replica._actor import ReplicaActor


async def main(config: dict[str, object]) -> None:
    model = app_pb2.Model(
        name="demo", version="1", uri=str(config["uri"]), sha256=str(config["sha256"])
    )
    replica = replica_pb2.Replica(name="apps/demo/replicas/traced", models=[model])
    settings = ReplicaSettings(
        host="127.0.0.1",
        cache_dir=str(config["cache_dir"]),
        otel=config["otel"],  # type: ignore[arg-type]
    )
    actor = ReplicaActor(replica.SerializeToString(), settings.to_dict())
    endpoint, _ = await actor.start()
    print(endpoint, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await actor.stop()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
