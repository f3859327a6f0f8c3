"""The retry and fault rules' table: what it reads from a response and a request.
Both fronts following it is tested end to end in test_reliability.py."""

from __future__ import annotations

import grpc
import pytest

from gateway import IDEMPOTENT, REFUSED, RetryRules
from gateway._rules import RULES, status_numbers


def test_a_refusal_is_the_refused_code_with_the_trailer() -> None:
    assert RULES.refused(grpc.StatusCode.UNAVAILABLE, [(REFUSED, "draining")])
    assert not RULES.refused(grpc.StatusCode.UNAVAILABLE, [("other", "x")])
    assert not RULES.refused(grpc.StatusCode.INTERNAL, [(REFUSED, "draining")])


def test_idempotent_takes_its_key_and_values() -> None:
    assert RULES.idempotent(((IDEMPOTENT, "true"),)) and RULES.idempotent(((IDEMPOTENT, "1"),))
    assert not RULES.idempotent(((IDEMPOTENT, "yes"),)) and not RULES.idempotent(())
    other = RetryRules(idempotent_key="x-twice", idempotent_values=frozenset({"yes"}))
    assert other.idempotent((("x-twice", "yes"),)) and not other.idempotent(((IDEMPOTENT, "1"),))


def test_status_numbers_are_the_wire_numbers_in_order() -> None:
    assert status_numbers(RULES.replica_faults) == [2, 13, 14, 15]


def test_replica_faults_must_lower_the_weight() -> None:
    with pytest.raises(ValueError, match="DATA_LOSS"):
        RetryRules(
            weight_errors=frozenset({grpc.StatusCode.UNAVAILABLE}),
            replica_faults=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS}),
        )
