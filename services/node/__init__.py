"""The Node service: hands each node agent the replicas placed on its node (a snapshot,
then changes) and writes the replica status agents report. It is where a node's
endpoints become ready and where they leave.
"""

from services.node._component import node_service
from services.node._hub import AssignmentHub, Delta, Subscription
from services.node._servicer import NodeService
from services.node._status import MAX_REPORTS, REPORTABLE_PHASES

__all__ = [
    "MAX_REPORTS",
    "REPORTABLE_PHASES",
    "AssignmentHub",
    "Delta",
    "NodeService",
    "Subscription",
    "node_service",
]
