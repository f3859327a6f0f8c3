"""The App service: the apps' API and one optimistic shared-state scheduler per app.

Apps are spread across the service's replicas by leases and rendezvous hashing
(:class:`Ownership`); each replica hosts the schedulers of the apps it owns
(:class:`SchedulerHost`), fed by the Resource service's ``WatchCluster`` stream
(:class:`ClusterFeed`) and the store's watch of allocations, and writes their status.
The scheduling core is :mod:`services.app.scheduling`.

>>> service = AppService(store, resource="127.0.0.1:7100")
>>> service.add_to(server)
>>> async with service: await server.start(); ...
"""

from services.app._cluster import ClusterFeed, ResourceTarget, node_record
from services.app._component import api_address, app_component
from services.app._follow import Follower
from services.app._host import SchedulerHost
from services.app._names import DEFAULT_VERSION, app_id_of, app_name, is_model_name
from services.app._ownership import Ownership
from services.app._service import DESCRIPTOR, AppService
from services.app._standalone import main as standalone_main

__all__ = [
    "DEFAULT_VERSION",
    "DESCRIPTOR",
    "AppService",
    "ClusterFeed",
    "Follower",
    "Ownership",
    "ResourceTarget",
    "SchedulerHost",
    "api_address",
    "app_component",
    "app_id_of",
    "app_name",
    "is_model_name",
    "node_record",
    "standalone_main",
]
