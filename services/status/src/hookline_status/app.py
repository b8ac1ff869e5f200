"""The status process: the projection consumer, the HTTP API and system metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiohttp import web
from hookline.consumer import Consumer, Entry, Op
from hookline.events import AnyEvent, JobFinished
from hookline.keys import GROUP_STATUS, Keys
from hookline.metrics import (
    CONTENT_TYPE_LATEST,
    DURATION_BUCKETS,
    CollectorRegistry,
    ConsumerMetrics,
    Gauge,
    Histogram,
    render,
)
from hookline.queues import known_queues, queue_stats
from hookline.redis_client import UNAVAILABLE, connect, lifespan
from hookline.service import Service
from hookline.web import json_response, use_json_errors

from hookline_status.api import KEYS, REDIS, SETTINGS, add_routes, health_body
from hookline_status.projection import STATUSES, project
from hookline_status.settings import StatusSettings
from hookline_status.store import apply_op, count_by_status, sweep_expired


class StatusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumer = ConsumerMetrics(registry)
        self.jobs = Gauge(
            "hookline_jobs", "Jobs by status (from the projection).", ["status"], registry=registry
        )
        self.queue_length = Gauge(
            "hookline_queue_length",
            "Jobs waiting for a worker, per queue.",
            ["queue"],
            registry=registry,
        )
        self.duration = Histogram(
            "hookline_job_duration_seconds",
            "Run time of job attempts seen by this status process.",
            ["queue", "pipeline"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )


def build(settings: StatusSettings) -> Service[StatusSettings]:
    app = web.Application()
    registry = CollectorRegistry()
    metrics = StatusMetrics(registry)
    keys = Keys(settings.prefix)
    redis = connect(settings.redis_url, client_name="hookline-status")
    app[SETTINGS] = settings
    app[REDIS] = redis
    app[KEYS] = keys

    async def handle(event: AnyEvent, entry: Entry) -> Sequence[Op]:
        update = project(event)
        if update is None:
            return []
        if isinstance(event, JobFinished) and event.duration is not None:
            metrics.duration.labels(event.queue or "", event.pipeline or "").observe(event.duration)
        return [apply_op(keys, update)]

    async def streams() -> list[str]:
        return keys.all_streams(await known_queues(redis, keys))

    last_sweep = 0.0

    async def on_idle() -> list[Op]:
        nonlocal last_sweep
        if time.monotonic() - last_sweep > 10:
            last_sweep = time.monotonic()
            await sweep_expired(redis, keys, STATUSES)
        return []

    consumer = Consumer(
        redis,
        keys=keys,
        group=GROUP_STATUS,
        name=settings.consumer_name,
        streams=streams,
        handler=handle,
        metrics=metrics.consumer,
        count=500,
        on_idle=on_idle,
    )

    app.cleanup_ctx.append(lifespan(redis))
    add_routes(app)
    use_json_errors(app)

    async def health(_: web.Request) -> web.Response:
        body = await health_body(app, consumer.state.redis_ok)
        return json_response(body, status=200 if body["redis_connected"] else 503)

    async def metrics_view(_: web.Request) -> web.Response:
        try:
            for status, count in (await count_by_status(redis, keys, STATUSES)).items():
                metrics.jobs.labels(status).set(count)
            for queue in await known_queues(redis, keys):
                stats = await queue_stats(redis, keys, queue)
                metrics.queue_length.labels(queue).set(stats.waiting)
        except UNAVAILABLE:
            metrics.consumer.redis_up.set(0)
        response = web.Response(body=render(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_view)
    return Service(app, consumer.run)
