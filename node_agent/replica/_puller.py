"""A replica's side of the async broker: pull queued inferences while there is room,
run them like ModelInfer does, write their results, acknowledge.

The :class:`Puller` holds at most ``concurrency`` entries at once (the replica's
inference workers unless set otherwise): it asks the broker only for its spare room,
so a busy replica leaves work to idle ones (pull, not push). One loop pulls: every
``claim_idle / 2`` seconds it first takes over entries that dead replicas left pending
(``XAUTOCLAIM``), then reads new ones, blocking until that time at most. Another
renews the idle time of what it holds every ``claim_idle / 3`` seconds, so no live
replica's work is taken over, and now and then forgets consumers long gone.

Each entry runs through :meth:`InferenceServicer.infer` (the ModelInfer code path and
load accounting), inside the replica's gate, so a drain waits for it. Its record goes
RUNNING (refused if the inference has finished already: a duplicate delivery is then
only acknowledged), then SUCCEEDED or FAILED with the status ModelInfer would have
answered, and only then is the entry acknowledged: a replica that dies before that
leaves it to another (at least once). An entry handed out more than ``max_attempts``
times (it kills every replica that runs it) fails with ABORTED instead of running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry import propagate, trace
from redis.exceptions import RedisError

from astra import telemetry
from astra._gen.astra.v1 import async_inference_service_pb2 as apb
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.broker import FAILED, RUNNING, SUCCEEDED, Consumer, Delivery, now_ms, timestamp
from astra.rpc import Backoff
from astra.server import Tasks, status_for
from node_agent.replica._servicer import InferenceFailed, InferenceServicer

_log = logging.getLogger(__name__)
#: Seconds between removals of consumers gone for good.
_FORGET_EVERY = 60.0


class _Metrics:
    """The puller's OpenTelemetry instruments (no-ops while telemetry is off)."""

    def __init__(self) -> None:
        meter = telemetry.meter("astra.replica.broker")
        self.executions = meter.create_counter(
            "astra.broker.executions", description="Async inferences run, by outcome"
        )
        self.claims = meter.create_counter(
            "astra.broker.claims", description="Entries taken over from dead replicas"
        )
        self.wait = meter.create_histogram(
            "astra.broker.queue.duration", unit="s", description="Submission to start of a run"
        )
        self.duration = meter.create_histogram(
            "astra.broker.execution.duration", unit="s", description="Time to run one entry"
        )


class Puller:
    """Pulls ``consumer``'s queues into ``servicer``, ``concurrency`` entries at most.

    Args:
        servicer: the replica's models.
        consumer: the replica's consumer in the broker.
        concurrency: entries held (and run) at once.
        replica: the replica's endpoint, recorded in the inferences it runs.
        max_attempts: deliveries after which an entry fails instead of running.
    """

    def __init__(
        self,
        servicer: InferenceServicer,
        consumer: Consumer,
        *,
        concurrency: int,
        replica: str,
        max_attempts: int = 5,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.consumer = consumer
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        #: The most entries held at once so far.
        self.peak = 0
        self._servicer = servicer
        self._broker = consumer.broker
        self._replica = replica
        self._held: dict[bytes, Delivery] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._pulling = True
        self._runs = Tasks()
        self._loops = Tasks()  # the pull loop, whose failure gets logged
        self._pull: asyncio.Task[None] | None = None
        self._metrics = _Metrics()

    @property
    def held(self) -> int:
        """Entries held now."""
        return len(self._held)

    async def run(self) -> None:
        """Pull and run until cancelled (then whatever runs is cancelled, left pending
        for another replica)."""
        self._pull = self._loops.spawn(self._pull_loop(), name="puller.pull")
        try:
            await self._upkeep_loop()
        finally:
            await self._loops.close()
            await self._runs.close()

    def stop_pulling(self) -> None:
        """Take no new entry (a drain); those held run to their end."""
        self._pulling = False
        if self._pull is not None:
            self._pull.cancel()

    # -- the loops -------------------------------------------------------------------

    async def _pull_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.consumer.claim_idle / 2
        backoff = Backoff(base=0.2, cap=5.0)
        next_claim = loop.time()
        joined = False
        while self._pulling:
            await self._room.wait()
            try:
                if not joined:
                    await self.consumer.join()
                    joined = True
                if loop.time() >= next_claim:
                    next_claim = loop.time() + interval
                    claimed = await self.consumer.claim(self.concurrency - self.held)
                    if claimed:
                        self._metrics.claims.add(len(claimed))
                        _log.info("took over %d entries left by other replicas", len(claimed))
                    self._start_all(claimed)
                block = max(0.001, next_claim - loop.time())
                self._start_all(await self.consumer.read(self.concurrency - self.held, block=block))
            except (RedisError, OSError) as exc:
                _log.warning("the broker's Redis failed (%s): retrying", exc)
                await backoff.sleep()
            else:
                backoff.reset()

    async def _upkeep_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_forget = loop.time() + _FORGET_EVERY
        while True:
            await asyncio.sleep(self.consumer.claim_idle / 3)
            try:
                if self._held:
                    lost = await self.consumer.refresh(list(self._held.values()))
                    for entry in lost:
                        _log.warning("entry %s was taken over by another replica", entry)
                if loop.time() >= next_forget:
                    next_forget = loop.time() + _FORGET_EVERY
                    for name in await self.consumer.forget_dead():
                        _log.info("forgot consumer %s (gone, nothing pending)", name)
            except (RedisError, OSError) as exc:
                _log.warning("could not renew held entries (%s): retrying", exc)

    # -- runs ------------------------------------------------------------------------

    def _start_all(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            if delivery.entry in self._held:
                continue  # already running here (its renewal came late)
            if not self._servicer.gate.enter():
                continue  # draining: left pending, another replica takes it over
            self._held[delivery.entry] = delivery
            self.peak = max(self.peak, self.held)
            if self.held >= self.concurrency:
                self._room.clear()
            self._runs.spawn(self._run(delivery), name=f"puller.run {delivery.inference_id}")

    async def _run(self, delivery: Delivery) -> None:
        attributes: dict[str, Any] = {
            "astra.inference_id": delivery.inference_id,
            "astra.model": delivery.model,
            "astra.model_version": delivery.version,
            "astra.attempts": delivery.attempts,
        }
        context = propagate.extract({"traceparent": delivery.traceparent})
        try:
            with telemetry.tracer("astra.replica.broker").start_as_current_span(
                "AsyncInference.run",
                context=context if delivery.traceparent else None,
                kind=trace.SpanKind.CONSUMER,
                attributes=attributes,
            ) as span:
                outcome = await self._execute(delivery)
                span.set_attribute("astra.outcome", outcome)
        except (RedisError, OSError) as exc:
            _log.warning("inference %s not finished (%s): left pending", delivery.inference_id, exc)
        finally:
            del self._held[delivery.entry]
            self._room.set()
            self._servicer.gate.leave()

    async def _execute(self, delivery: Delivery) -> str:
        """Run ``delivery`` and record how it ended; returns the outcome."""
        started = now_ms()
        inference = apb.Inference(
            inference_id=delivery.inference_id,
            model=delivery.model,
            version=delivery.version,
            attempts=delivery.attempts,
            replica=self._replica,
            submit_time=timestamp(delivery.submitted_ms),
            start_time=timestamp(started),
        )
        if delivery.attempts > self.max_attempts:
            outcome = self._fail(
                inference,
                grpc.StatusCode.ABORTED,
                f"gave up after {delivery.attempts - 1} attempts: every replica that ran "
                "this inference stopped before it finished",
            )
        else:
            inference.state = RUNNING
            inference.expire_time.CopyFrom(timestamp(started + int(delivery.pending_ttl * 1000)))
            if not await self._broker.put(inference, ttl=delivery.pending_ttl):
                await self.consumer.ack(delivery)  # finished already: a duplicate delivery
                return "duplicate"
            self._metrics.wait.record(max(0.0, (started - delivery.submitted_ms) / 1000))
            clock = time.perf_counter()
            outcome = await self._infer(delivery, inference)
            self._metrics.duration.record(time.perf_counter() - clock, {"outcome": outcome})
        finished = now_ms()
        inference.finish_time.CopyFrom(timestamp(finished))
        inference.expire_time.CopyFrom(timestamp(finished + int(delivery.result_ttl * 1000)))
        await self._broker.put(inference, ttl=delivery.result_ttl)
        await self.consumer.ack(delivery)
        self._metrics.executions.add(1, {"astra.model": delivery.model, "outcome": outcome})
        return outcome

    async def _infer(self, delivery: Delivery, inference: apb.Inference) -> str:
        """Run the request into ``inference`` (SUCCEEDED or FAILED); returns the outcome."""
        try:
            request = pb.ModelInferRequest.FromString(delivery.request)
        except DecodeError as exc:
            return self._fail(
                inference, grpc.StatusCode.INVALID_ARGUMENT, f"the request does not parse: {exc}"
            )
        try:
            response = await self._servicer.infer(request)
        except InferenceFailed as exc:
            return self._fail(inference, grpc.StatusCode.INTERNAL, str(exc))
        except Exception as exc:
            code = status_for(exc)
            if code is None:
                _log.error("inference %s failed", delivery.inference_id, exc_info=exc)
                return self._fail(inference, grpc.StatusCode.INTERNAL, "internal error")
            return self._fail(inference, code, str(exc))
        inference.state = SUCCEEDED
        inference.response.CopyFrom(response)
        return "succeeded"

    @staticmethod
    def _fail(inference: apb.Inference, code: grpc.StatusCode, message: str) -> str:
        inference.state = FAILED
        inference.error.code = code.value[0]
        inference.error.message = message
        return code.name.lower()
