"""The store's key layout: the one place that knows where each record lives.

::

    /astra/v1/nodes/{node}          NodeRecord: capacity, labels, zone, phase
    /astra/v1/alloc/{node}          AllocRecord: what is placed on the node (the contended
                                    object of optimistic commits)
    /astra/v1/apps/{app}            the app spec and status
    /astra/v1/replicas/{app}/{id}   a replica: node, Ray cluster, role, phase, endpoint
    /astra/v1/routes/{model}        a model's endpoints and base weights
    /astra/v1/model-owners/{model}/{version}
                                    the id of the one app serving that model version,
                                    written with the app record (names are owned)
    /astra/v1/owners/{service}/...  leases of service replicas that own shards

Ids are the last segment of a resource name ("nodes/{node}" -> "{node}").
"""

from __future__ import annotations

ROOT = "/astra/v1/"
NODES = ROOT + "nodes/"
ALLOC = ROOT + "alloc/"
APPS = ROOT + "apps/"
REPLICAS = ROOT + "replicas/"
ROUTES = ROOT + "routes/"
OWNERS = ROOT + "owners/"
MODEL_OWNERS = ROOT + "model-owners/"


def node(node_id: str) -> str:
    return NODES + node_id


def alloc(node_id: str) -> str:
    return ALLOC + node_id


def app(app_id: str) -> str:
    return APPS + app_id


def replicas_of(app_id: str) -> str:
    """The prefix of every replica of an app."""
    return f"{REPLICAS}{app_id}/"


def replica(app_id: str, replica_id: str) -> str:
    return f"{REPLICAS}{app_id}/{replica_id}"


def route(model: str) -> str:
    return ROUTES + model


def model_owner(model: str, version: str) -> str:
    """The key naming the app that serves ``model`` at ``version``.

    Both are validated (:func:`astra.names.is_model_name`, no ``/`` in either) and the
    version normalised (empty is :data:`astra.names.DEFAULT_VERSION`), so that one
    model version has exactly one key.
    """
    return f"{MODEL_OWNERS}{model}/{version}"


def last_segment(key: str) -> str:
    """The id at the end of a key or a resource name."""
    return key.rsplit("/", 1)[-1]
