"""Resource service: node registry, heartbeats, failure detection, pre-aggregated cluster watch.

Heartbeats stay in memory; only transitions (joined, spec changed, DRAINING, DEAD,
removed) reach the store, in order, and are held while the store is away. Several
replicas split the nodes by rendezvous hashing over their leases. Subscribers of
WatchCluster get a snapshot, then coalesced deltas per tick with per-pool summaries.

>>> service = ResourceService(store, address="127.0.0.1:7100")
>>> service.add_to(server)              # an astra.server.Server
>>> async with service:                 # loads the fleet, joins the replicas
...     await server.serve_forever()

``astra serve resource`` runs one replica on its own.
"""

from services.resource._component import resource_component
from services.resource._service import DESCRIPTOR, ResourceService

__all__ = ["DESCRIPTOR", "ResourceService", "resource_component"]
