"""Replicas of a service working together through the store: the one watch loop
(:func:`follow_prefix`: every change of a prefix, re-read across compactions), a
:class:`Follower` of every key on it and :class:`Ownership`
(leases and rendezvous hashing: which live replica owns which name).
"""

from astra.coordination._follow import Follower, Listener, follow_prefix
from astra.coordination._ownership import Ownership

__all__ = ["Follower", "Listener", "Ownership", "follow_prefix"]
