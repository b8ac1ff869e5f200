"""The ingress HTTP app: verify, dedupe and append each GitHub delivery, or spool it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

from aiohttp import web
from hookline.keys import Keys
from hookline.logs import get_logger
from hookline.metrics import DURATION_BUCKETS, CollectorRegistry, Counter, Gauge, Histogram
from hookline.redis_client import UNAVAILABLE, Redis, connect
from hookline.redis_safety import RedisSafety, lifespan
from hookline.retry import retry_forever, sleep_unless
from hookline.web import add_ops_routes
from structlog.typing import FilteringBoundLogger as Logger

from hookline_ingress.appender import REFUSED, Appender
from hookline_ingress.intake import Stored
from hookline_ingress.settings import IngressSettings
from hookline_ingress.spool import Spool, SpoolEntry, SpoolError
from hookline_ingress.spoolroot import SpoolRoot, replica_name
from hookline_ingress.webhook import INSECURE_WARNING, WebhookView

SETTINGS: web.AppKey[IngressSettings] = web.AppKey("settings", IngressSettings)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
SPOOL: web.AppKey[Spool] = web.AppKey("spool", Spool)
SPOOL_ROOT: web.AppKey[SpoolRoot] = web.AppKey("spool_root", SpoolRoot)
METRICS: web.AppKey[IngressMetrics] = web.AppKey("metrics", object)  # type: ignore[arg-type]
REPLAY: web.AppKey[Replayer] = web.AppKey("replay", object)  # type: ignore[arg-type]
SAFETY: web.AppKey[RedisSafety] = web.AppKey("safety", RedisSafety)


class UnsafeRedis(Exception):
    """Redis is not verified safe (it may evict or forget what it is given): spool."""


# Redis did not take the append: unreachable, past the deadline, or refusing writes.
CANNOT_APPEND = (*UNAVAILABLE, TimeoutError, *REFUSED, UnsafeRedis)

# GitHub's headers are short; these caps refuse (400) a request whose header lines or
# header count are far beyond anything GitHub or a proxy in front of it sends.
MAX_HEADER_LINE = 8190
MAX_HEADERS = 64


class IngressMetrics:
    def __init__(self, registry: CollectorRegistry, spool: Spool) -> None:
        self.webhooks = Counter(
            "hookline_webhooks_total",
            "Webhook deliveries by GitHub event and outcome.",
            ["event", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "hookline_webhook_request_seconds",
            "Time to answer POST /webhook.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.spool_entries = Gauge(
            "hookline_ingress_spool_entries",
            "Webhooks in the local spool, waiting for Redis.",
            registry=registry,
        )
        self.spool_entries.set_function(lambda: spool.depth)


class Delivery:
    """Appends accepted webhooks in the order they were accepted: straight to Redis
    while nothing waits in the spool, else (or when Redis does not take it within the
    deadline) to the spool, behind everything accepted before it. Once one delivery is
    diverted to the spool, every later one follows it there until the spool is empty,
    and the spool is written in acceptance order, so the stream keeps that order across
    the boundary."""

    def __init__(
        self, settings: IngressSettings, redis: Redis, spool: Spool, safety: RedisSafety
    ) -> None:
        self.redis = redis
        self.safety = safety
        self.spool = spool
        self.keys = Keys(settings.prefix)
        self.deadline = float(settings.redis_timeout)
        self.ttl_ms = int(settings.dedupe_ttl * 1000)
        self.wake = asyncio.Event()
        self.appender = Appender(redis, self.ttl_ms, self.deadline)
        # Deliveries on their way to the spool, not yet in it: none may go live meanwhile.
        self._diverting = 0
        # Settles once the delivery accepted last is stored (live or spooled).
        self._last: asyncio.Future[None] | None = None

    async def append(self, entry: SpoolEntry) -> bool:
        """One atomic dedupe-and-append in Redis; True when appended, False for a
        duplicate. Raises ``CANNOT_APPEND`` errors when Redis does not take it in time,
        or may not be given it: never a 202 for a webhook that an unsafe Redis may lose
        (live and replayed alike wait in the spool until Redis is verified safe)."""
        if (reason := self.safety.hold()) is not None:
            raise UnsafeRedis(reason)
        return await self.appender.append(entry)

    async def deliver(self, entry: SpoolEntry, log: Logger) -> Stored:
        before, mine = self._last, asyncio.get_running_loop().create_future()
        self._last = mine
        try:
            return await self._deliver(entry, log, before)
        finally:
            mine.set_result(None)
            if self._last is mine:
                self._last = None

    async def _deliver(
        self, entry: SpoolEntry, log: Logger, before: asyncio.Future[None] | None
    ) -> Stored:
        if self.spool.holds(entry.delivery_id):
            return "duplicate"
        if not (self.spool.depth or self._diverting or self.appender.failing):
            try:
                return "accepted" if await self.append(entry) else "duplicate"
            except CANNOT_APPEND as exc:
                log.warning("redis_unavailable_spooling", error=type(exc).__name__)
        self._diverting += 1
        try:
            if before is not None:
                await asyncio.shield(before)  # behind what was accepted earlier
            spooled = await self.spool.append(entry)
        finally:
            self._diverting -= 1
        self.wake.set()
        return "spooled" if spooled else "duplicate"

    def entry(self, delivery: str, job_id: str, event: bytes) -> SpoolEntry:
        return SpoolEntry(
            delivery_id=delivery,
            job_id=job_id,
            marker=self.keys.delivery(delivery),
            stream=self.keys.webhook_received,
            data=event,
            spooled_at=time.time(),
        )


class Replayer:
    """Background task: replays the spool into Redis once Redis answers, backing off
    with jitter while it does not."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.log = get_logger(component="spool_replay")

    async def _push(self, entry: SpoolEntry) -> None:
        appended = await self.delivery.append(entry)
        self.log.info(
            "webhook_replayed" if appended else "webhook_replayed_duplicate",
            delivery_id=entry.delivery_id,
            job_id=entry.job_id,
            spooled_for=round(time.time() - entry.spooled_at, 3),
        )

    async def run(self, stop: asyncio.Event) -> None:
        await retry_forever(
            self._round, stop=stop, what="spool_replay", errors=(*CANNOT_APPEND, SpoolError)
        )

    async def _round(self) -> None:
        """Wait until the spool holds something, then replay it all (raising, to back
        off, while Redis cannot take it or the spool cannot be read)."""
        spool = self.delivery.spool
        if not spool.depth:
            await self.delivery.wake.wait()
        self.delivery.wake.clear()
        try:
            done = await spool.replay(self._push)
        except SpoolError as exc:
            self.log.error("spool_replay_failed", error=str(exc), entries=spool.depth)
            raise
        if done:
            self.log.info("spool_drained", entries=done)


def open_spool_root(settings: IngressSettings) -> SpoolRoot:
    """This replica's spool under the shared root: ``HOOKLINE_INGRESS_REPLICA``, else the
    host name (and the next free slot when another process on this host holds it)."""
    if settings.replica:
        root = SpoolRoot(settings.spool_dir, settings.replica, explicit=True)
    else:
        root = SpoolRoot(settings.spool_dir, replica_name(socket.gethostname()), explicit=False)
    root.open_own()
    return root


async def adopt_orphans(
    root: SpoolRoot, delivery: Delivery, interval: float, stop: asyncio.Event
) -> None:
    """At start and every ``interval``: take in the spools of replicas that are gone.
    Stopped by ``stop`` between rounds, never half way through one (an adoption is
    disk work of its own thread, which a cancellation would not stop)."""
    log = get_logger(component="spool_adopt")
    while not stop.is_set():
        try:
            if await root.adopt():
                delivery.wake.set()
        except (OSError, SpoolError) as exc:
            log.error("spool_adopt_failed", error=str(exc))
        await sleep_unless(stop, interval)


def create_app(settings: IngressSettings) -> web.Application:
    """Build the app; opens (and locks) this replica's spool directory, so a second
    process that must have the same one fails here with a ConfigError."""
    app = web.Application(
        client_max_size=settings.max_body,
        handler_args={
            "max_line_size": MAX_HEADER_LINE,
            "max_field_size": MAX_HEADER_LINE,
            "max_headers": MAX_HEADERS,
            # aiohttp closes a connection whose next request's headers have not all
            # arrived this long after it opened or after its last answer: the header
            # deadline (a slowloris's sockets are closed by it).
            "keepalive_timeout": float(settings.header_timeout),
        },
    )
    spool_root = open_spool_root(settings)
    assert spool_root.own is not None
    spool = spool_root.own
    registry = CollectorRegistry()
    # No socket timeout: every call is bounded by one asyncio deadline of its own
    # (HOOKLINE_INGRESS_REDIS_TIMEOUT), which also covers connecting and the pool.
    redis = connect(settings.redis_url, client_name="hookline-ingress")
    safety = RedisSafety(redis, allow_unsafe=settings.allow_unsafe_redis, registry=registry)
    delivery = Delivery(settings, redis, spool, safety)
    app[SETTINGS] = settings
    app[SPOOL] = spool
    app[SPOOL_ROOT] = spool_root
    app[REDIS] = redis
    app[METRICS] = IngressMetrics(registry, spool)
    app[REPLAY] = Replayer(delivery)
    app[SAFETY] = safety
    app.cleanup_ctx.append(lifespan(safety))
    app.cleanup_ctx.append(_background)
    app.router.add_post("/webhook", WebhookView(settings, delivery, app[METRICS]).handle)
    add_ops_routes(app, registry, lambda: health(app), ready=lambda: readiness(app))
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.insecure:
        get_logger().warning("insecure_mode", warning=INSECURE_WARNING)
    replay = app[REPLAY]
    if app[SPOOL].depth:
        replay.delivery.wake.set()
    get_logger().info("spool_opened", directory=str(app[SPOOL].directory))
    stop = asyncio.Event()
    adopting = asyncio.create_task(
        adopt_orphans(app[SPOOL_ROOT], replay.delivery, settings.spool_adopt_interval, stop),
        name="spool-adopt",
    )
    task = asyncio.create_task(replay.run(stop), name="spool-replay")
    yield
    stop.set()
    await adopting
    task.cancel()  # a replay round under way stops here: what it did not append stays
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await replay.delivery.appender.close()
    app[SPOOL].close()


async def health(app: web.Application) -> dict[str, object]:
    """``degraded`` (still 200: webhooks are accepted into the spool) while Redis does
    not answer or anything waits in the spool; ``unhealthy`` (503) while Redis answers
    but is unsafe (everything is spooled until it is fixed). Within a second."""
    safety = app[SAFETY]
    await safety.check()
    connected = safety.reachable
    unsafe = safety.verdict is not None and safety.hold() is not None
    spool = app[SPOOL]
    return {
        "status": "unhealthy" if unsafe else "ok" if connected and not spool.depth else "degraded",
        "redis_connected": connected,
        "spool_entries": spool.depth,
        "spool_bytes": spool.size,
        **safety.health_fields(),
    }


async def readiness(app: web.Application) -> dict[str, object]:
    """Ready whatever Redis does: taking the ingress out of rotation during an outage
    would turn spooled deliveries into refused ones. Says whether it spools, and why."""
    safety = app[SAFETY]
    await safety.check()
    problems = safety.problems() if not safety.reachable or safety.hold() else []
    return {"ready": True, "spooling": bool(problems or app[SPOOL].depth), "problems": problems}
