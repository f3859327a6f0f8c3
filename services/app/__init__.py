"""The App service: the apps' API and one optimistic shared-state scheduler per app.

Apps are spread across the service's replicas by leases and rendezvous hashing
(:class:`astra.coordination.Ownership`); each replica hosts the schedulers of the apps
it owns (:class:`SchedulerHost`), fed by the Resource service's ``WatchCluster`` stream
(:class:`scheduling.ClusterFeed`) and the store's watch of allocations, and writes
their status.
The scheduling core is :mod:`scheduling`.

>>> service = AppService(store, resource="127.0.0.1:7100")
>>> service.add_to(server)
>>> async with service: await server.start(); ...
"""

from services.app._component import app_component
from services.app._host import SchedulerHost
from services.app._service import DESCRIPTOR, AppService

__all__ = [
    "DESCRIPTOR",
    "AppService",
    "SchedulerHost",
    "app_component",
]
