"""Drive a dispatcher step by step against a real Redis, with a clock the test moves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import redis.asyncio as aioredis
from hookline.events import (
    AnyEvent,
    Event,
    JobError,
    JobFinished,
    JobQueued,
    JobStarted,
    WebhookReceived,
    encode,
)
from hookline.ids import job_id_for_delivery
from hookline.keys import EVENT_FIELD, GROUP_DISPATCHER, Keys
from hookline.metrics import CollectorRegistry, ConsumerMetrics
from hookline.streams import parse_entries
from hookline_dispatcher.config import RoutingConfig
from hookline_dispatcher.configfile import parse_config
from hookline_dispatcher.dispatcher import Dispatcher, DispatcherMetrics
from hookline_dispatcher.loop import DispatcherConsumer, dispatcher_consumer

from support.payloads import payload
from support.streams import events

TOML = """
[pipelines.build]
handler = "pipelines:build"
queue = "builds"
retries = 2
backoff = { kind = "exponential", base = "10s", cap = "1m" }
no_retry_on = ["Timeout"]

[pipelines.fixed]
handler = "pipelines:build"
retries = 1
backoff = { kind = "fixed", base = "30s" }

[pipelines.later]
handler = "pipelines:build"
delay = "5m"

[[routes]]
events = ["pull_request"]
actions = ["closed"]
repositories = ["Codertocat/*"]
pipeline = "later"

[[routes]]
events = ["push"]
pipeline = "build"
supersede = true

[[routes]]
events = ["pull_request"]
pipeline = "fixed"
"""
CONFIG = parse_config(TOML)
NO_SUPERSEDE = parse_config(TOML.replace("supersede = true", ""))


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    redis: aioredis.Redis
    keys: Keys
    clock: Clock
    dispatcher: Dispatcher
    consumer: DispatcherConsumer
    registry: CollectorRegistry

    async def pump(self) -> None:
        """Handle everything in the dispatcher's streams, as the loop would."""
        streams = await self.consumer.streams()
        while True:
            reply = await self.redis.xreadgroup(
                GROUP_DISPATCHER, "test", dict.fromkeys(streams, ">"), count=50
            )
            entries = parse_entries(reply)
            if not entries:
                return
            await self.consumer.process(entries)

    async def append(self, stream: str, event: Event) -> None:
        await self.redis.xadd(stream, {EVENT_FIELD: encode(event)})

    async def webhook(
        self, event: str, name: str, delivery: str, at: datetime | None = None
    ) -> str:
        body = payload(event, name)
        job_id = job_id_for_delivery(delivery)
        data = json.loads(body)
        received = WebhookReceived(
            delivery_id=delivery,
            job_id=job_id,
            event=event,
            action=data.get("action"),
            payload=msgspec.Raw(body),
            occurred_at=at or datetime.fromtimestamp(self.clock.now, UTC),
        )
        await self.append(self.keys.webhook_received, received)
        return job_id

    async def events(self, stream: str) -> list[AnyEvent]:
        return events(await self.redis.xrange(stream))

    async def queued(self, queue: str = "builds") -> list[JobQueued]:
        return [
            e for e in await self.events(self.keys.job_queued(queue)) if isinstance(e, JobQueued)
        ]

    async def finish(
        self,
        job: JobQueued,
        outcome: str = "failed",
        error: str = "Boom",
        *,
        attempt: int | None = None,
        worker: str = "w1",
    ) -> None:
        """A run of ``job`` starts and ends; ``attempt`` numbers a reclaimed run (a
        worker numbers the n-th delivery of the queued entry ``job.attempt + n - 1``)."""
        await self.start(job, attempt=attempt, worker=worker)
        await self.append(
            self.keys.job_finished,
            JobFinished(
                job_id=job.job_id,
                delivery_id=job.delivery_id,
                attempt=job.attempt if attempt is None else attempt,
                outcome=outcome,  # type: ignore[arg-type]
                queue=job.spec.queue,
                pipeline=job.spec.pipeline,
                worker=worker,
                error=JobError(type=error, message="it broke") if outcome == "failed" else None,
            ),
        )

    async def start(
        self, job: JobQueued, *, attempt: int | None = None, worker: str = "w1"
    ) -> None:
        """A run of ``job`` starts (and, unless it ends, is lost with its worker)."""
        await self.append(
            self.keys.job_started,
            JobStarted(
                job_id=job.job_id,
                delivery_id=job.delivery_id,
                attempt=job.attempt if attempt is None else attempt,
                queue=job.spec.queue,
                pipeline=job.spec.pipeline,
                worker=worker,
            ),
        )

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def make_harness(redis: aioredis.Redis, keys: Keys, config: RoutingConfig = CONFIG) -> Harness:
    clock = Clock()
    registry = CollectorRegistry()
    dispatcher = Dispatcher(
        redis, keys, config, DispatcherMetrics(registry), 86400, clock=clock, rand=lambda: 0.5
    )
    consumer = dispatcher_consumer(dispatcher, name="test", metrics=ConsumerMetrics(registry))
    return Harness(redis, keys, clock, dispatcher, consumer, registry)
