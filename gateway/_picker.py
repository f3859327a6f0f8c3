"""The picker: smooth weighted round robin, in pure Python (the twin of ``gateway._core``).

The algorithm is *earliest eligible virtual deadline first* (EEVDF, Stoica et al. 1996;
the order WF2Q+ serves packets in) over integer virtual times:

- endpoint *i* has an integer weight ``w_i`` in ``[1, MAX_WEIGHT]``; each pick of it
  is a request ``SCALE // w_i`` long in virtual time, from its eligible time ``e_i``
  to its deadline ``e_i + SCALE // w_i``;
- the clock advances by ``SCALE / W`` per pick (``W = sum(w)``, kept exact as a
  quotient and a remainder), so that endpoint *i*'s weighted share of the picks is
  ``w_i * (virtual time elapsed)``. Its *lag* is that share minus what it got:
  ``w_i * (now - e_i) / SCALE`` picks;
- a pick takes, among the endpoints with ``e_i <= now`` (eligible: not ahead of their
  share), the earliest deadline; ties go to the lowest slot. The picked endpoint's
  next request starts at its deadline. When no endpoint is eligible (every one is
  ahead), the clock jumps to the earliest eligible time;
- an update (endpoints added, removed or reweighted, in a batch) first clears every
  endpoint's claim (a positive lag becomes 0), keeps every endpoint's advance (a
  negative lag stays as many picks at its new weight), and starts new endpoints level
  (lag 0).

Bound (smoothness). Every endpoint's lag stays in (-1, 1) at every moment, whatever
the weights and updates: an endpoint is picked only when its lag is >= 0, and a pick
lowers it by 1, so it stays > -1; an update leaves no lag above 0, and from such a
state every request is served by its deadline (EEVDF's argument: the requests due by
any virtual time never exceed the picks available by then), so it stays < 1. Hence
over any run of picks with no update in between, each endpoint's count is within 2 of
its share ``w_i * (virtual time elapsed)``; from a fresh picker, or in any run the
clock does not jump in (it jumps only after an update left every endpoint ahead),
that share is exactly ``m * w_i / W`` for ``m`` picks. An update costs each endpoint
at most the one pick of claim it clears. Virtual times are integers, so the two
implementations agree to the bit; the only rounding is a request length of
``SCALE // w_i`` instead of ``SCALE / w_i``: an endpoint gains less than 2^-26 of a
pick per pick of it (one pick in 67 million), and an update clears that too.

Cost: a pick is O(log n): the eligible endpoints are in a heap by deadline, the others
by eligible time (here a second heap; in C++ a radix heap, O(1) amortized), and a pick
moves about one endpoint each way. An update is O(n + k log k) for k changes. Virtual
times are shifted down once the clock reaches ``REBASE_AT`` (after a pick, a jump of
the clock or an update), which keeps every key the C++ heaps hold in 44 bits (beside
a 20-bit index); the shift is invisible in the picks.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

#: Virtual time per unit of weight: a request of an endpoint of weight w is SCALE // w.
SCALE = 1 << 42
#: The largest weight; weights are integers in [1, MAX_WEIGHT].
MAX_WEIGHT = 1 << 16
#: The most endpoints one picker holds.
MAX_ENDPOINTS = 1 << 20
#: When the clock reaches REBASE_AT, virtual times are shifted down by a multiple of
#: REBASE_BY that brings it into [REBASE_BY, REBASE_AT).
REBASE_AT = 1 << 42
REBASE_BY = 1 << 41


class Picker:
    """Smooth weighted round robin over endpoints named by integer slots (module docs).

    >>> picker = Picker()
    >>> picker.update([(7, 2), (9, 1)])
    >>> [picker.pick() for _ in range(6)]
    [7, 9, 7, 7, 9, 7]
    """

    __slots__ = (
        "_eligible",
        "_eligible_at",
        "_now",
        "_remainder",
        "_shifted",
        "_step",
        "_step_remainder",
        "_strides",
        "_total",
        "_waiting",
        "_weights",
    )

    def __init__(self) -> None:
        self._weights: dict[int, int] = {}
        self._strides: dict[int, int] = {}
        self._eligible_at: dict[int, int] = {}
        self._total = 0
        # The clock: now = _now + _remainder / _total, advanced by SCALE / _total per
        # pick (_step + _step_remainder / _total).
        self._now = 0
        self._remainder = 0
        self._step = 0
        self._step_remainder = 0
        self._shifted = 0.0  # the virtual time shifted away, for virtual_time
        self._eligible: list[tuple[int, int]] = []  # (deadline, slot)
        self._waiting: list[tuple[int, int]] = []  # (eligible time, slot)

    def update(self, changes: Iterable[tuple[int, int]]) -> None:
        """Apply weight changes as one update: ``(slot, weight)`` adds an endpoint or sets its
        weight, weight 0 removes it (an absent slot is ignored). O(n + k log k).

        Raises:
            ValueError: a weight outside ``[0, MAX_WEIGHT]``, a slot given twice, or more
                than ``MAX_ENDPOINTS`` endpoints.
        """
        batch = sorted(changes)
        for position, (slot, weight) in enumerate(batch):
            if not 0 <= weight <= MAX_WEIGHT:
                raise ValueError(f"weight {weight} of slot {slot} is not in [0, 2^16]")
            if position and batch[position - 1][0] == slot:
                raise ValueError(f"slot {slot} is given twice")
        now = self._now + (self._remainder > 0)  # the clock, settled on a whole tick
        weights, eligible_at = dict(self._weights), dict(self._eligible_at)
        for slot, weight in batch:
            at = eligible_at.pop(slot, now)  # a new endpoint starts level with its share
            old = weights.pop(slot, 0)
            if not weight:
                continue
            if at > now:  # ahead of its share: by as many picks at its new weight
                at = now + -(-(at - now) * old // weight)
            weights[slot] = weight
            eligible_at[slot] = at
        if len(weights) > MAX_ENDPOINTS:
            raise ValueError("a picker holds at most 2^20 endpoints")
        self._now, self._remainder = now, 0
        self._weights, self._eligible_at = weights, eligible_at
        if now >= REBASE_AT:
            self._shift_clock()
        self._strides = {slot: SCALE // weight for slot, weight in weights.items()}
        self._total = total = sum(weights.values())
        self._step, self._step_remainder = divmod(SCALE, total) if total else (0, 0)
        self._forgive_and_rebuild()

    def _forgive_and_rebuild(self) -> None:
        now, eligible_at, strides = self._now, self._eligible_at, self._strides
        self._eligible, self._waiting = [], []
        for slot, at in eligible_at.items():
            if at <= now:
                eligible_at[slot] = now  # no endpoint carries a claim into an update
                self._eligible.append((now + strides[slot], slot))
            else:
                self._waiting.append((at, slot))
        heapq.heapify(self._eligible)
        heapq.heapify(self._waiting)

    def _promote(self) -> None:
        waiting, eligible, now = self._waiting, self._eligible, self._now
        while waiting and waiting[0][0] <= now:
            at, slot = heapq.heappop(waiting)
            heapq.heappush(eligible, (at + self._strides[slot], slot))

    def pick(self) -> int:
        """The next endpoint's slot, or -1 when there is none. O(log n)."""
        if not self._total:
            return -1
        eligible, waiting = self._eligible, self._waiting
        if not eligible:  # every endpoint is ahead of the clock: jump to the first
            self._now = waiting[0][0]
            self._remainder = 0
            if self._now >= REBASE_AT:
                self._rebase()
            self._promote()
        deadline, slot = eligible[0]
        self._eligible_at[slot] = deadline  # its deadline starts its next request
        self._now += self._step
        self._remainder += self._step_remainder
        if self._remainder >= self._total:
            self._remainder -= self._total
            self._now += 1
        if deadline <= self._now:
            heapq.heapreplace(eligible, (deadline + self._strides[slot], slot))
        else:
            heapq.heappop(eligible)
            heapq.heappush(waiting, (deadline, slot))
        self._promote()
        if self._now >= REBASE_AT:
            self._rebase()
        return slot

    def skip(self, count: int) -> None:
        """Make ``count`` picks and drop them (benchmarks, fast-forwarding)."""
        for _ in range(count):
            self.pick()

    def _shift_clock(self) -> int:
        amount = (self._now // REBASE_BY - 1) * REBASE_BY
        self._now -= amount
        for slot in self._eligible_at:
            self._eligible_at[slot] -= amount
        self._shifted += amount
        return amount

    def _rebase(self) -> None:
        amount = self._shift_clock()
        self._eligible[:] = [(key - amount, slot) for key, slot in self._eligible]
        self._waiting[:] = [(key - amount, slot) for key, slot in self._waiting]

    def weights(self) -> list[tuple[int, int]]:
        """The endpoints as ``(slot, weight)``, by slot."""
        return sorted(self._weights.items())

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, slot: object) -> bool:
        return slot in self._weights

    def lag(self, slot: int) -> float:
        """How many picks ``slot`` is owed (> 0) or ahead (< 0) against its share.

        Raises:
            KeyError: no endpoint in ``slot``.
        """
        weight = self._weights[slot]
        behind = (self._now - self._eligible_at[slot]) + self._remainder / self._total
        return behind * weight / SCALE

    @property
    def virtual_time(self) -> float:
        """The clock, in picks per unit of weight since the picker was created."""
        fraction = self._remainder / self._total if self._total else 0.0
        return (self._shifted + (self._now + fraction)) / SCALE
