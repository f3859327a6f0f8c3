"""Scheduler service: disaster recovery (re-placement, Ray federation) and gateway routes.

It follows the fleet (the Resource service's ``WatchCluster``) and the replica records,
evicts the replicas of DRAINING nodes so that their apps' schedulers place them again
(:class:`Evictor`), computes each model's routes (:class:`RouteTable`: READY replicas
of live Ray clusters on READY nodes, weighted by capacity and hardware), writes them to
``/astra/v1/routes/{model}`` (:class:`RoutePublisher`) and serves them to gateways with
GetRoutes and WatchRoutes.

>>> service = SchedulerService(store, resource="127.0.0.1:7100", performance={"nvidia-h100": 4.0})
>>> service.add_to(server)
>>> async with service: await server.start(); ...
"""

from services.scheduler._component import scheduler_component
from services.scheduler._publisher import RoutePublisher
from services.scheduler._recovery import Evictor
from services.scheduler._routes import RouteTable, base_weight
from services.scheduler._service import DESCRIPTOR, SchedulerService
from services.scheduler._stream import routes_of

__all__ = [
    "DESCRIPTOR",
    "Evictor",
    "RoutePublisher",
    "RouteTable",
    "SchedulerService",
    "base_weight",
    "routes_of",
    "scheduler_component",
]
