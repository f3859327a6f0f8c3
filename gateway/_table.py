"""The gateway's routing table: routes from the Scheduler, their endpoints and pickers.

Each route (a model version) has a picker; each of its endpoints is a :class:`Member`
holding one slot of that picker, and the router maps ``(model, version)`` to the
picker, so the hot path goes from request bytes to a slot to a member without Python
dictionaries. Endpoints (replica addresses) are shared by the routes that list them.

An empty version in a request means the model's default version: its route of
version ``""`` if there is one, else its highest version (versions that are numbers
by value, above any other, which go by text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from astra._gen.astra.v1 import route_pb2, scheduler_service_pb2
from gateway import _native
from gateway._endpoints import Endpoint, Member, State
from gateway._weights import WeightPolicy, effective_weights, quantize


@dataclass(eq=False)
class Route:
    """The endpoints of one model version, and the picker that spreads requests over them."""

    model: str
    version: str
    picker: _native.Picker = field(default_factory=_native.Picker)
    members: dict[str, Member] = field(default_factory=dict)  # by address

    @property
    def name(self) -> str:
        return f"{self.model}:{self.version}" if self.version else self.model


def version_order(version: str) -> tuple[int, int, str]:
    """Sort key of versions: numbers by value, after any text."""
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


class Table:
    """Routes, endpoints and slots; applies WatchRoutes messages and recomputes weights.

    Args:
        policy: how weights are computed.
        clock: the time, in seconds (``time.monotonic``).
        on_added: called with each new endpoint.
        on_retired: called with an endpoint that left every route and has no request in
            flight, so that its channel gets closed.
        on_slot: called with ``(slot, address)`` when a slot takes an endpoint (before
            its picker does) and with ``(slot, None)`` when it is freed (the fast lane's
            map of slots).
    """

    def __init__(
        self,
        policy: WeightPolicy,
        *,
        clock: Callable[[], float],
        on_added: Callable[[Endpoint], None],
        on_retired: Callable[[Endpoint], None],
        on_slot: Callable[[int, str | None], None] | None = None,
    ) -> None:
        self.policy = policy
        self.router = _native.Router()
        self.routes: dict[tuple[str, str], Route] = {}
        self.endpoints: dict[str, Endpoint] = {}
        #: Members by slot; the hot path indexes it with what the router answers.
        self.slots: list[Member | None] = []
        self._free: list[int] = []
        self._clock = clock
        self._on_added = on_added
        self._on_retired = on_retired
        self._on_slot = on_slot
        self._defaults: dict[str, str] = {}  # model -> the version "" means
        self._synced = False
        self._rolled_at = clock()

    # -- what requests see -------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Whether a snapshot of the routes has arrived."""
        return self._synced

    def route(self, model: str, version: str) -> Route | None:
        """The route of ``model`` at ``version`` ("" for its default), or None."""
        if not version:
            version = self._defaults.get(model, "")
        return self.routes.get((model, version))

    def versions(self, model: str) -> list[str]:
        return sorted(
            (version for name, version in self.routes if name == model), key=version_order
        )

    # -- routes from the Scheduler -----------------------------------------------------

    def apply(self, message: scheduler_service_pb2.WatchRoutesResponse) -> None:
        """Apply one WatchRoutes message: a snapshot replaces every route; otherwise
        the routes in it replace theirs and ``removed_routes`` go."""
        now = self._clock()
        changed: set[str] = set()
        if message.snapshot:
            present = {(route.model, route.version) for route in message.routes}
            for key in [key for key in self.routes if key not in present]:
                self._drop(self.routes.pop(key))
                changed.add(key[0])
        for removed in message.removed_routes:
            model, _, version = removed.rpartition(":")
            route = self.routes.pop((model, version), None)
            if route is not None:
                self._drop(route)
                changed.add(model)
        for spec in message.routes:
            self._set(spec, now)
            changed.add(spec.model)
        for model in changed:
            self._choose_default(model)
        self._synced = self._synced or message.snapshot

    def _set(self, spec: route_pb2.Route, now: float) -> None:
        key = (spec.model, spec.version)
        route = self.routes.get(key)
        if route is None:
            route = self.routes[key] = Route(spec.model, spec.version)
            self.router.set(spec.model, spec.version, route.picker)
        wanted = {endpoint.address: endpoint.base_weight for endpoint in spec.endpoints}
        for address in [address for address in route.members if address not in wanted]:
            self._leave(route.members.pop(address))
        for address, base in wanted.items():
            member = route.members.get(address)
            if member is None:
                endpoint = self._endpoint(address, now)
                member = route.members[address] = Member(self._slot(), endpoint, route, base)
                self.slots[member.slot] = member
                endpoint.members.add(member)
                if self._on_slot is not None:
                    self._on_slot(member.slot, address)
            member.base = base
        self._reweigh(route, now)

    def _drop(self, route: Route) -> None:
        self.router.set(route.model, route.version, None)
        for member in route.members.values():
            self._leave(member)
        route.members.clear()

    def _leave(self, member: Member) -> None:
        self.slots[member.slot] = None
        self._free.append(member.slot)
        member.route.picker.update([(member.slot, 0)])
        if self._on_slot is not None:
            self._on_slot(member.slot, None)
        endpoint = member.endpoint
        endpoint.members.discard(member)
        if not endpoint.members:
            del self.endpoints[endpoint.address]
            endpoint.retired = True
            self.release(endpoint)

    def release(self, endpoint: Endpoint) -> None:
        """Hand a retired endpoint with nothing in flight over to be closed (the hot
        path calls this when the last request of a retired endpoint ends)."""
        if endpoint.retired and not endpoint.in_flight:
            self._on_retired(endpoint)

    def _endpoint(self, address: str, now: float) -> Endpoint:
        endpoint = self.endpoints.get(address)
        if endpoint is None:
            # Endpoints of the first snapshot take their full weight at once; later
            # ones start slow.
            endpoint = self.endpoints[address] = Endpoint(address, now=now, slow_start=self._synced)
            self._on_added(endpoint)
        return endpoint

    def _slot(self) -> int:
        if self._free:
            return self._free.pop()
        self.slots.append(None)
        return len(self.slots) - 1

    def _choose_default(self, model: str) -> None:
        versions = self.versions(model)
        default = "" if "" in versions else (versions[-1] if versions else None)
        if self._defaults.get(model) == default:
            return
        if default is None:
            self._defaults.pop(model, None)
            self.router.set(model, "", None)
            return
        self._defaults[model] = default
        self.router.set(model, "", self.routes[(model, default)].picker)

    # -- weights -----------------------------------------------------------------------

    def reweigh(self) -> None:
        """Fold the interval that ends into every endpoint's signals and recompute
        every route's weights."""
        now = self._clock()
        elapsed, self._rolled_at = now - self._rolled_at, now
        for endpoint in self.endpoints.values():
            endpoint.load = 0.0
            if endpoint.routable and now - endpoint.ready_since >= self.policy.ejection_max:
                endpoint.ejections = 0  # long enough in service: ejections start over
        for member in self.members():
            if elapsed > 0:  # Little's law: the mean in flight is the busy time per second
                member.endpoint.load += member.busy / elapsed
            member.roll(self.policy, elapsed)
        for route in self.routes.values():
            self._reweigh(route, now)

    def _reweigh(self, route: Route, now: float) -> None:
        """Set the route's picker to the weights its endpoints have now."""
        members = list(route.members.values())
        signals = [member.signals(self.policy, now) for member in members]
        effective = effective_weights(self.policy, signals)
        for member, weight in zip(members, effective, strict=True):
            member.weight = weight
        weights = quantize(effective, _native.MAX_WEIGHT)
        route.picker.update(
            [(member.slot, weight) for member, weight in zip(members, weights, strict=True)]
        )

    def set_state(self, endpoint: Endpoint, state: State, *, now: float) -> None:
        """Change whether ``endpoint`` takes requests, in every route it is in."""
        if endpoint.state is state:
            return
        endpoint.state = state
        if state is State.READY:
            endpoint.ready_since = now
            endpoint.slow_start = True
        for route in {member.route for member in endpoint.members}:
            self._reweigh(route, now)

    def members(self) -> Iterator[Member]:
        for route in self.routes.values():
            yield from route.members.values()
