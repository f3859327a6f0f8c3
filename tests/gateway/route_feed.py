"""The route feed of the gateway's tests: :mod:`astra.testing`'s, under the names the
tests use."""

from astra.testing import SCHEDULER_SERVICE as DESCRIPTOR
from astra.testing import RouteFeed
from astra.testing import route_spec as route
from astra.testing import serve_route_feed as serve_feed

__all__ = ["DESCRIPTOR", "RouteFeed", "route", "serve_feed"]
