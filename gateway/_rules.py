"""The retry and fault rules of ModelInfer through the gateway: one table, read by both
fronts, the grpc.aio server (:mod:`gateway._forward`) and the C++ fast lane (handed the
same table at construction, :mod:`gateway._lane`).

A request is retried (once, on another endpoint of its route) when it failed before any
replica could have run it: the connection to the replica could not be made, or the
replica refused it while draining (:attr:`RetryRules.refused_code` with the
:attr:`RetryRules.refused_trailer` trailer). Anything that may have run is retried only
when the request is marked idempotent (:attr:`RetryRules.idempotent_key` metadata with
one of :attr:`RetryRules.idempotent_values`) and failed with one of
:attr:`RetryRules.idempotent_retry`.

What an attempt says of its endpoint: a refusal drains it; a failure in
:attr:`RetryRules.weight_errors` lowers its weight and, when it is also one of
:attr:`RetryRules.replica_faults`, counts towards its ejection; an answer, or running
out of the client's time, is a latency sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc

Metadata = tuple[tuple[str, str | bytes], ...]

_Codes = frozenset[grpc.StatusCode]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryRules:
    """Which failed attempts are retried, and which count against their replica.

    Raises:
        ValueError: a replica fault that does not lower the weight.
    """

    #: The trailer with which a replica says it refused a request without running it.
    refused_trailer: str = "x-astra-refused"
    #: The status a refusal comes with.
    refused_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    #: Request metadata marking a request safe to run twice ...
    idempotent_key: str = "x-astra-idempotent"
    #: ... when it has one of these values.
    idempotent_values: frozenset[str] = frozenset({"true", "1"})
    #: What an idempotent request is retried on.
    idempotent_retry: _Codes = frozenset(
        {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.ABORTED,
        }
    )
    #: Failures that lower a replica's weight.
    weight_errors: _Codes = frozenset(
        {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.DATA_LOSS,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        }
    )
    #: Failures of a replica's making, among the weight errors: they count towards its
    #: ejection.
    replica_faults: _Codes = frozenset(
        {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.DATA_LOSS,
        }
    )

    def __post_init__(self) -> None:
        if not self.replica_faults <= self.weight_errors:
            extra = ", ".join(
                sorted(code.name for code in self.replica_faults - self.weight_errors)
            )
            raise ValueError(f"replica faults must lower the weight too: {extra}")

    def refused(self, code: grpc.StatusCode, trailers: Iterable[tuple[str, object]]) -> bool:
        """The replica refused the request without running it (it is draining)."""
        return code == self.refused_code and any(key == self.refused_trailer for key, _ in trailers)

    def idempotent(self, metadata: Metadata) -> bool:
        """The request is marked safe to run twice."""
        return any(
            key == self.idempotent_key and value in self.idempotent_values
            for key, value in metadata
        )


def status_number(code: grpc.StatusCode) -> int:
    """A gRPC status code's number, as the wire (and the C++ lane) has it."""
    number: int = code.value[0]
    return number


def status_numbers(codes: Iterable[grpc.StatusCode]) -> list[int]:
    """The numbers of gRPC status codes, in order."""
    return sorted(status_number(code) for code in codes)


#: The gateway's rules, unless it is given others.
RULES = RetryRules()
#: The request metadata of :data:`RULES` that marks a request idempotent.
IDEMPOTENT = RULES.idempotent_key
#: The trailer of :data:`RULES` with which a replica refuses a request while draining.
REFUSED = RULES.refused_trailer
