"""Replicas of a service working together through the store: a :class:`Follower` of a
prefix (a snapshot, then every change, across compactions) and :class:`Ownership`
(leases and rendezvous hashing: which live replica owns which name).
"""

from astra.coordination._follow import Follower, Listener
from astra.coordination._ownership import Ownership

__all__ = ["Follower", "Listener", "Ownership"]
