"""The dispatcher's decisions as stream writes: route webhooks into jobs, follow each
job's attempts (retry or dead-letter), and carry out operator commands.

A new webhook needs no read: one Lua script records the job and appends its first event
unless it was recorded already, so webhooks are committed in batches. Everything else
reads the job's record first, under WATCH, and commits its writes with the entry's
XACK in one MULTI/EXEC; a concurrent change (another replica, the due-job mover)
makes it read and decide again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, assert_never

import msgspec
from hookline.consumer import Write
from hookline.events import (
    AnyEvent,
    CommandAnswer,
    FailedPurgeRequested,
    JobCancelRequested,
    JobDeferred,
    JobFinished,
    JobPurged,
    JobQueued,
    JobRequeueRequested,
    JobStarted,
    WebhookReceived,
    encode,
    encode_answer,
)
from hookline.github import extract_meta
from hookline.keys import EVENT_FIELD, GROUP_DISPATCHER, Keys
from hookline.logs import get_logger
from hookline.metrics import CollectorRegistry, Counter, Gauge
from hookline.redis_client import Redis
from hookline.streams import Entry, Op
from redis.asyncio.client import Pipeline as RedisPipeline
from redis.exceptions import WatchError

from hookline_dispatcher import lifecycle
from hookline_dispatcher.config import RoutingConfig
from hookline_dispatcher.lifecycle import JobState, Plan
from hookline_dispatcher.operator import Operator
from hookline_dispatcher.routing import Routed, Skipped, route, supersede_slot
from hookline_dispatcher.scripts import MARK_ENDED, MARK_STARTED, MOVE_DUE, NEW_JOB

_payload_decoder = msgspec.json.Decoder(dict[str, Any])

# How long a command's answer waits for its sender (who BLPOPs it) before it expires.
ANSWER_TTL = 300
# Read-decide-commit rounds for one entry before it is left pending for later.
MAX_ROUNDS = 50


class Conflict(Exception):
    """An entry's job kept changing under it; the entry stays pending."""


class DispatcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dispatched = Counter(
            "hookline_jobs_dispatched_total",
            "Job attempts queued by the dispatcher, by pipeline and queue.",
            ["pipeline", "queue"],
            registry=registry,
        )
        self.skipped = Counter(
            "hookline_webhooks_skipped_total",
            "Deliveries that ran no pipeline, by reason (no_route, deleted_ref, draft).",
            ["reason"],
            registry=registry,
        )
        self.retries = Counter(
            "hookline_retries_scheduled_total",
            "Failed attempts scheduled to run again after a backoff, by pipeline.",
            ["pipeline"],
            registry=registry,
        )
        self.deferred = Gauge(
            "hookline_deferred_jobs",
            "Attempts waiting in the delayed set (retries and delayed jobs).",
            registry=registry,
        )
        self.dead = Counter(
            "hookline_dead_letter_total",
            "Jobs that failed for good and went to the dead-letter stream.",
            registry=registry,
        )
        self.commands = Counter(
            "hookline_commands_total",
            "Operator commands carried out, by type and whether they were accepted.",
            ["command", "ok"],
            registry=registry,
        )


class Dispatcher:
    """Handles ``webhook.received``, ``job.started``, ``job.finished`` and ``commands``."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        config: RoutingConfig,
        metrics: DispatcherMetrics,
        marker_ttl: float,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.config = config
        self.metrics = metrics
        self.marker_ttl_ms = int(marker_ttl * 1000)
        self.clock = clock
        self.rand = rand
        self.log = get_logger()
        self.operator = Operator(keys)
        # Set by the consumer: commits what its batch holds before a record is read.
        self.before_read: Callable[[], Awaitable[None]] | None = None

    @property
    def streams(self) -> list[str]:
        k = self.keys
        return [k.webhook_received, k.job_started, k.job_finished, k.commands]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def handle(self, event: AnyEvent, entry: Entry) -> Sequence[Write]:
        match event:
            case WebhookReceived():
                return self.on_webhook(event)
            case JobStarted():
                record = self.keys.dispatcher_job(event.job_id)
                return [Write(("EVAL", MARK_STARTED, 1, record, event.attempt, event.worker))]
            case JobFinished() if event.outcome in ("finished", "canceled"):
                return [Write(self.mark_ended(event))]
            case JobFinished():
                if event.outcome == "failed":
                    await self.transact(entry, [event.job_id], self._finished(event, entry))
                return []
            case JobRequeueRequested() | JobCancelRequested() | FailedPurgeRequested():
                await self.on_command(event, entry)
                return []
            case JobQueued() | JobDeferred() | JobPurged():
                return []
            case _:
                assert_never(event)

    # -- webhooks ------------------------------------------------------------------------

    def on_webhook(self, received: WebhookReceived) -> list[Write]:
        try:
            payload = _payload_decoder.decode(received.payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            payload = None
        meta = extract_meta(
            received.event,
            payload or {},
            delivery_id=received.delivery_id,
            job_id=received.job_id,
        )
        decision: Routed | Skipped = (
            route(meta, self.config, received.occurred_at)
            if payload is not None
            else Skipped("the payload is not a JSON object: nothing to route", "bad_payload")
        )
        keys = self.keys
        record = keys.dispatcher_job(received.job_id)
        if not isinstance(decision, Routed):
            skipped = JobFinished(
                job_id=received.job_id,
                delivery_id=received.delivery_id,
                attempt=0,
                outcome="skipped",
                reason=decision.reason,
                meta=meta,
            )
            kind, reason = decision.kind, decision.reason

            def skipped_effect() -> None:
                self.metrics.skipped.labels(kind).inc()
                self.log.info("webhook_skipped", reason=reason)

            fields = ["phase", "skipped", "attempt", 0]
            return [
                self._new_job(
                    record,
                    keys.job_finished,
                    "skip",
                    skipped,
                    "",
                    self.marker_ttl_ms,
                    fields,
                    effect=skipped_effect,
                )
            ]
        spec = decision.spec
        queued = JobQueued(
            job_id=received.job_id,
            delivery_id=received.delivery_id,
            attempt=1,
            spec=spec,
            meta=meta,
            payload=received.payload,
            created_at=received.occurred_at,
        )
        slot: tuple[str, str, int, bytes] | None = None
        if decision.route.supersede:
            cancel = JobCancelRequested(
                job_id="@@JOB@@", requested_by=f"supersede: newer job {received.job_id}"
            )
            slot = (
                keys.supersede_slot(supersede_slot(decision.index, meta)),
                f"{lifecycle.ms(received.occurred_at)} {received.job_id}",
                lifecycle.ttl_ms(spec, "failed"),
                encode(cancel),
            )
        if spec.not_before is not None and spec.not_before.timestamp() > self.clock():
            upcoming = msgspec.structs.replace(queued, occurred_at=spec.not_before)
            member = lifecycle.member_of(received.job_id, 1)
            deferred = JobDeferred(
                job_id=received.job_id,
                delivery_id=received.delivery_id,
                attempt=1,
                queue=spec.queue,
                pipeline=spec.pipeline,
                not_before=spec.not_before,
                reason="delayed by its route",
            )
            fields = lifecycle.state_fields(upcoming, "deferred", 1, member=member)
            stream = keys.job_queued(spec.queue)
            data = lifecycle.delayed_data(stream, received.job_id, upcoming)

            def delayed_effect() -> None:
                self.log.info("job_delayed", pipeline=spec.pipeline, not_before=str(not_before))

            not_before = spec.not_before
            return [
                self._new_job(
                    record,
                    keys.job_deferred,
                    "defer",
                    deferred,
                    spec.queue,
                    0,
                    fields,
                    delayed=(member, lifecycle.ms(spec.not_before), data),
                    slot=slot,
                    effect=delayed_effect,
                )
            ]

        def queued_effect() -> None:
            self.metrics.dispatched.labels(spec.pipeline, spec.queue).inc()
            self.log.info("job_dispatched", pipeline=spec.pipeline, queue=spec.queue)

        fields = lifecycle.state_fields(queued, "queued", 1)
        return [
            self._new_job(
                record,
                keys.job_queued(spec.queue),
                "queue",
                queued,
                spec.queue,
                0,
                fields,
                slot=slot,
                effect=queued_effect,
            )
        ]

    def _new_job(
        self,
        record: str,
        stream: str,
        mode: str,
        event: JobQueued | JobDeferred | JobFinished,
        queue: str,
        record_ttl_ms: int,
        fields: list[object],
        *,
        delayed: tuple[str, int, bytes] | None = None,
        slot: tuple[str, str, int, bytes] | None = None,
        effect: Callable[[], None] | None = None,
    ) -> Write:
        """The NEW_JOB script call; ``effect`` (metrics, logs) runs once it has written
        (its reply is true: not a duplicate)."""
        keys = self.keys
        member, due, data = delayed or ("", 0, b"")
        slot_key, slot_value, slot_ttl, cancel = slot or (keys.commands, "", 0, b"")
        op: Op = (
            "EVAL",
            NEW_JOB,
            7,
            record,
            stream,
            keys.queues,
            keys.delayed,
            keys.delayed_events,
            slot_key,
            keys.commands,
            mode,
            encode(event),
            queue,
            record_ttl_ms,
            member,
            due,
            data,
            slot_value,
            slot_ttl,
            cancel,
            EVENT_FIELD,
            len(fields) // 2,
            *fields,
        )
        if effect is None:
            return Write(op)

        def then(reply: Any) -> None:
            if reply:
                effect()

        return Write(op, then=then)

    # -- job events ------------------------------------------------------------------------

    def mark_ended(self, finished: JobFinished) -> Op:
        """A finished or canceled attempt needs no read: Lua records it if current."""
        record = lifecycle.record_of(finished)
        ttl = finished.failure_ttl if finished.outcome == "canceled" else finished.result_ttl
        return (
            "EVAL",
            MARK_ENDED,
            1,
            self.keys.dispatcher_job(finished.job_id),
            finished.attempt,
            finished.outcome,
            lifecycle.encode_record(record),
            max(1, int(ttl * 1000)),
        )

    async def transact(
        self,
        entry: Entry,
        job_ids: list[str],
        decide: Callable[[RedisPipeline], Awaitable[Plan]],
        watch: Sequence[str] = (),
    ) -> Plan:
        """Run ``decide`` over the watched records and commit its plan with the XACK of
        ``entry``; decide again whenever a watched key changed meanwhile."""
        keys = [self.keys.dispatcher_job(j) for j in job_ids] + list(watch)
        if self.before_read is not None:
            await self.before_read()
        for _ in range(MAX_ROUNDS):
            async with self.redis.pipeline(transaction=True) as pipe:
                if keys:
                    await pipe.watch(*keys)
                plan = await decide(pipe)
                pipe.multi()  # type: ignore[no-untyped-call]
                for op in plan.ops:
                    pipe.execute_command(*op)
                pipe.xack(entry.stream, GROUP_DISPATCHER, entry.entry_id)
                try:
                    await pipe.execute()
                except WatchError:
                    continue
            self._count(plan)
            if plan.note:
                self.log.info("job_event_handled", result=plan.note)
            return plan
        raise Conflict(f"gave up after {MAX_ROUNDS} conflicting rounds")

    def _count(self, plan: Plan) -> None:
        if plan.retried is not None:
            self.metrics.retries.labels(plan.retried).inc()
        if plan.dead:
            self.metrics.dead.inc()
        for queued in plan.queued:
            self.metrics.dispatched.labels(queued.spec.pipeline, queued.spec.queue).inc()

    async def load(self, pipe: RedisPipeline, job_id: str) -> JobState | None:
        raw = await pipe.hgetall(self.keys.dispatcher_job(job_id))
        return JobState.load(job_id, raw)

    def _finished(
        self, event: JobFinished, entry: Entry
    ) -> Callable[[RedisPipeline], Awaitable[Plan]]:
        async def decide(pipe: RedisPipeline) -> Plan:
            state = await self.load(pipe, event.job_id)
            return lifecycle.on_finished(
                self.keys, state, event, (entry.stream, entry.entry_id), self.now(), self.rand
            )

        return decide

    # -- operator commands -----------------------------------------------------------------

    async def on_command(
        self, command: JobRequeueRequested | JobCancelRequested | FailedPurgeRequested, entry: Entry
    ) -> None:
        answer_key = self.keys.command_answer(command.event_id)
        accepted: list[bool] = []

        def answered(plan: Plan, ok: bool, message: str) -> Plan:
            answer = CommandAnswer(
                command_id=command.event_id, ok=ok, message=message, job_ids=plan.job_ids
            )
            plan.ops += [
                ("LPUSH", answer_key, encode_answer(answer)),
                ("EXPIRE", answer_key, ANSWER_TTL),
            ]
            plan.note = message
            accepted[:] = [ok]
            return plan

        async def decide(pipe: RedisPipeline) -> Plan:
            plan, ok, message = await self.operator.plan(pipe, command, self.now())
            return answered(plan, ok, message)

        job_ids = [command.job_id] if isinstance(command, JobCancelRequested) else []
        if isinstance(command, JobRequeueRequested) and command.job_id:
            job_ids = [command.job_id]
        await self.transact(entry, job_ids, decide)
        tag = str(command.__struct_config__.tag)
        self.metrics.commands.labels(tag, "true" if all(accepted) else "false").inc()

    # -- the due-job mover -------------------------------------------------------------

    async def move_due(self, limit: int = 500) -> int:
        """Append every due attempt's job.queued; returns how many moved."""
        moved: list[bytes] = await self.redis.eval(
            MOVE_DUE,
            2,
            self.keys.delayed,
            self.keys.delayed_events,
            int(self.clock() * 1000),
            limit,
            self.keys.dispatcher_job(""),
            EVENT_FIELD,
        )
        for stream, pipeline in zip(moved[::2], moved[1::2], strict=True):
            queue = self.keys.queue_of_stream(stream.decode()) or ""
            self.metrics.dispatched.labels(pipeline.decode(), queue).inc()
        if moved:
            self.log.info("due_jobs_queued", count=len(moved) // 2)
        return len(moved) // 2
