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

from hookline.consumer import Write
from hookline.events import (
    AnyEvent,
    Command,
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
from hookline.keys import EVENT_FIELD, GROUP_DISPATCHER, Keys
from hookline.logs import get_logger
from hookline.metrics import CollectorRegistry, Counter, Gauge
from hookline.redis_client import Redis
from hookline.streams import Entry, Op
from hookline.text import text
from redis.asyncio.client import Pipeline as RedisPipeline
from redis.exceptions import WatchError

from hookline_dispatcher import reads
from hookline_dispatcher.config import RoutingConfig
from hookline_dispatcher.lifecycle.attempts import on_finished
from hookline_dispatcher.lifecycle.records import Plan, encode_record, record_of
from hookline_dispatcher.lifecycle.webhooks import NewJob, plan_new_job
from hookline_dispatcher.scripts import MARK_ENDED, MARK_STARTED, MOVE_DUE, NEW_JOB

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
                return [self.on_webhook(event)]
            case JobStarted():
                record = self.keys.dispatcher_job(event.job_id)
                return [
                    Write(
                        MARK_STARTED.command(
                            record=record, attempt=event.attempt, worker=event.worker
                        )
                    )
                ]
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

    def on_webhook(self, received: WebhookReceived) -> Write:
        """The new_job script call; its effect (metrics, a log line) runs once it has
        written (its reply is true: not a duplicate)."""
        job = plan_new_job(self.keys, received, self.config, self.now(), self.marker_ttl_ms)

        def then(reply: Any) -> None:
            if reply:
                self._written(job)

        return Write(new_job_command(self.keys, job), then=then)

    def _written(self, job: NewJob) -> None:
        match job.mode:
            case "skip":
                assert job.skipped is not None
                self.metrics.skipped.labels(job.skipped.kind).inc()
                self.log.info("webhook_skipped", reason=job.skipped.reason)
            case "defer":
                assert job.spec is not None
                spec = job.spec
                self.log.info(
                    "job_delayed", pipeline=spec.pipeline, not_before=str(spec.not_before)
                )
            case "queue":
                assert job.spec is not None
                spec = job.spec
                self.metrics.dispatched.labels(spec.pipeline, spec.queue).inc()
                self.log.info("job_dispatched", pipeline=spec.pipeline, queue=spec.queue)
            case _:
                assert_never(job.mode)

    # -- job events ------------------------------------------------------------------------

    def mark_ended(self, finished: JobFinished) -> Op:
        """A finished or canceled attempt needs no read: Lua records it if current."""
        ttl = finished.failure_ttl if finished.outcome == "canceled" else finished.result_ttl
        return MARK_ENDED.command(
            record=self.keys.dispatcher_job(finished.job_id),
            attempt=finished.attempt,
            outcome=finished.outcome,
            summary=encode_record(record_of(finished)),
            ttl_ms=max(1, int(ttl * 1000)),
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

    def _finished(
        self, event: JobFinished, entry: Entry
    ) -> Callable[[RedisPipeline], Awaitable[Plan]]:
        async def decide(pipe: RedisPipeline) -> Plan:
            state = await reads.load(pipe, self.keys, event.job_id)
            return on_finished(
                self.keys, state, event, (entry.stream, entry.entry_id), self.now(), self.rand
            )

        return decide

    # -- operator commands -----------------------------------------------------------------

    async def on_command(self, command: Command, entry: Entry) -> None:
        answer_key = self.keys.command_answer(command.event_id)
        accepted: list[bool] = []

        async def decide(pipe: RedisPipeline) -> Plan:
            answer = await reads.answer(pipe, self.keys, command, self.now())
            reply = CommandAnswer(
                command_id=command.event_id,
                ok=answer.ok,
                message=answer.message,
                job_ids=answer.plan.job_ids,
            )
            plan = answer.plan
            plan.ops += [
                ("LPUSH", answer_key, encode_answer(reply)),
                ("EXPIRE", answer_key, ANSWER_TTL),
            ]
            plan.note = answer.message
            accepted[:] = [answer.ok]
            return plan

        await self.transact(entry, reads.watched(command), decide)
        tag = str(command.__struct_config__.tag)
        self.metrics.commands.labels(tag, "true" if all(accepted) else "false").inc()

    # -- the due-job mover -------------------------------------------------------------

    async def move_due(self, limit: int = 500) -> int:
        """Append every due attempt's job.queued; returns how many moved."""
        moved: list[bytes] = await MOVE_DUE(
            self.redis,
            delayed=self.keys.delayed,
            delayed_events=self.keys.delayed_events,
            now_ms=int(self.clock() * 1000),
            limit=limit,
            record_prefix=self.keys.dispatcher_job(""),
            field=EVENT_FIELD,
        )
        for stream, pipeline in zip(moved[::2], moved[1::2], strict=True):
            queue = self.keys.queue_of_stream(text(stream)) or ""
            self.metrics.dispatched.labels(text(pipeline), queue).inc()
        if moved:
            self.log.info("due_jobs_queued", count=len(moved) // 2)
        return len(moved) // 2


def new_job_command(keys: Keys, job: NewJob) -> Op:
    """The new_job script call that writes ``job`` unless it is recorded already."""
    delayed, supersede = job.delayed, job.supersede
    return NEW_JOB.command(
        record=keys.dispatcher_job(job.job_id),
        stream=job.stream,
        queues=keys.queues,
        delayed=keys.delayed,
        delayed_events=keys.delayed_events,
        # Without a slot the script touches no slot key: any key of the hash tag will do.
        slot=supersede.slot if supersede else keys.commands,
        commands=keys.commands,
        mode=job.mode,
        event=encode(job.event),
        queue=job.queue,
        record_ttl_ms=job.record_ttl_ms,
        member=delayed.member if delayed else "",
        due_ms=delayed.due_ms if delayed else 0,
        delayed_data=delayed.data if delayed else b"",
        slot_value=supersede.value if supersede else "",
        slot_ttl_ms=supersede.ttl_ms if supersede else 0,
        cancel=encode(supersede.cancel) if supersede else b"",
        field=EVENT_FIELD,
        fields=job.fields,
    )
