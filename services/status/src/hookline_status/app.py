"""The status process: the projection consumer, stream upkeep, the HTTP API and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from hookline import clock
from hookline.consumer import Consumer
from hookline.events import AnyEvent
from hookline.keys import GROUP_STATUS, Keys
from hookline.logs import get_logger
from hookline.metrics import (
    CollectorRegistry,
    ConsumerMetrics,
    Counter,
    Gauge,
    render,
)
from hookline.redis_client import UNAVAILABLE, Redis, connect
from hookline.redis_safety import RedisSafety, checked, lifespan
from hookline.retry import periodically
from hookline.service import Service
from hookline.streams import Entry
from hookline.web import add_ops_routes

from hookline_status.api import KEYS, REDIS, SETTINGS, add_routes, health_body
from hookline_status.maintenance import trim_streams
from hookline_status.metrics_lease import LEASE_ERRORS, MetricsLease
from hookline_status.projection import ViewUpdate, project
from hookline_status.queues import known_queues
from hookline_status.settings import StatusSettings
from hookline_status.store import sweep_expired
from hookline_status.system_metrics import SnapshotCollector, read_snapshot
from hookline_status.view_batch import ViewBatch
from hookline_status.view_keys import current_views


async def upkeep(redis: Redis, keys: Keys, settings: StatusSettings, stop: asyncio.Event) -> None:
    """Sweep expired views and trim the streams, every so often, until stopped."""
    log = get_logger()
    last_trim = 0.0

    async def sweep_and_trim() -> None:
        nonlocal last_trim
        views = await current_views(redis, keys)
        swept = True
        while swept and not stop.is_set():  # a batch at a time until none are left
            swept = bool(await sweep_expired(redis, views))
        if clock.monotonic() - last_trim >= settings.trim_every:
            last_trim = clock.monotonic()
            removed = await trim_streams(redis, keys, settings.retention)
            if removed:
                log.info("streams_trimmed", removed=removed)

    await periodically(
        sweep_and_trim, every=settings.sweep_every, stop=stop, what="upkeep", log=log
    )


def keep_lease(lease: MetricsLease, every: float) -> Callable[[object], AsyncIterator[None]]:
    """An aiohttp ``cleanup_ctx`` that holds the metrics lease while the app serves
    (``/metrics`` is served by the app, so the lease lives and ends with it)."""

    async def ctx(_: object) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(lease.keep(stop, every))
        yield
        stop.set()
        # A Redis that does not answer must not hold the stop: the lease lapses anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, timeout=max(1.0, lease.ttl))

    return ctx


def build(settings: StatusSettings) -> Service[StatusSettings]:
    app = web.Application()
    registry = CollectorRegistry()
    consumer_metrics = ConsumerMetrics(registry)
    applied = Counter(
        "hookline_status_updates_total",
        "Job view updates this status process sent to Redis.",
        registry=registry,
    )
    leader = Gauge(
        "hookline_status_metrics_leader",
        "1 on the one status replica that exports the system metrics read from Redis "
        "(it holds the metrics lease), 0 on the others.",
        registry=registry,
    )
    keys = Keys(settings.prefix)
    redis = connect(settings.redis_url, client_name="hookline-status")
    lease = MetricsLease(
        redis,
        keys.metrics_leader,
        f"{settings.consumer_name}-{uuid.uuid4().hex[:8]}",
        settings.metrics_lease_ttl,
    )
    app[SETTINGS] = settings
    app[REDIS] = redis
    app[KEYS] = keys

    async def handle(event: AnyEvent, entry: Entry) -> ViewUpdate | None:
        return project(event)

    async def streams() -> list[str]:
        return keys.all_streams(await known_queues(redis, keys))

    consumer: Consumer[ViewUpdate | None] = Consumer(
        redis,
        keys=keys,
        group=GROUP_STATUS,
        name=settings.consumer_name,
        streams=streams,
        handler=handle,
        metrics=consumer_metrics,
        count=200,  # per stream: bounds how long one commit holds Redis (reads wait)
        batch=ViewBatch(redis, keys, applied),
    )

    safety = RedisSafety(redis, allow_unsafe=settings.allow_unsafe_redis, registry=registry)
    consumer.state.hold = safety.hold  # no projecting from a Redis that may evict views

    async def run(stop: asyncio.Event) -> None:
        maintenance = asyncio.create_task(upkeep(redis, keys, settings, stop))
        try:
            await checked(safety, consumer.run(stop))
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await maintenance

    app.cleanup_ctx.append(lifespan(safety))
    app.cleanup_ctx.append(keep_lease(lease, settings.metrics_lease_renew))
    add_routes(app)

    async def health() -> dict[str, Any]:
        state = consumer.state
        detail = {
            "consumer": consumer.name,
            "handled": state.handled,
            "last_error": state.held or state.last_error,
            "uptime_seconds": round(time.time() - state.started_at, 1),
        }
        return await health_body(app, state.redis_ok, detail, safety)

    async def leading() -> bool:
        """Whether this replica holds the metrics lease, taking it when it is free (a
        scrape need not wait for the next renewal to find the lease lapsed)."""
        if lease.held():
            return True
        try:
            return await lease.try_hold()
        except LEASE_ERRORS as exc:
            if isinstance(exc, UNAVAILABLE):
                consumer_metrics.redis_up.set(0)
            return False

    async def metrics() -> bytes:
        # Only the lease holder exports what it reads from Redis: every replica reads
        # the same numbers, so with each exporting them sum() would count them N times.
        is_leader = await leading()
        leader.set(1 if is_leader else 0)
        if not is_leader:
            return render(registry)
        try:
            snap = await read_snapshot(redis, keys, settings.worker_ttl)
        except UNAVAILABLE:
            consumer_metrics.redis_up.set(0)
            return render(registry)
        system = CollectorRegistry()
        system.register(SnapshotCollector(snap))
        return render(registry) + render(system)

    add_ops_routes(app, registry, health, metrics, ready=lambda: safety.readiness(consumer.state))
    return Service(app, run)
