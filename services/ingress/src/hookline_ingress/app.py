"""The ingress HTTP app: verify, dedupe and append each GitHub delivery, or spool it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import msgspec
from aiohttp import web
from hookline import samples
from hookline.events import WebhookReceived, encode
from hookline.ids import job_id_for_delivery
from hookline.keys import Keys
from hookline.logs import get_logger
from hookline.metrics import DURATION_BUCKETS, CollectorRegistry, Counter, Gauge, Histogram
from hookline.redis_client import UNAVAILABLE, Redis, connect, lifespan
from hookline.retry import retry_forever, sleep_unless
from hookline.web import add_ops_routes, json_error, json_response
from structlog.typing import FilteringBoundLogger as Logger

from hookline_ingress import intake
from hookline_ingress.appender import REFUSED, Appender
from hookline_ingress.intake import Outcome, Refusal, Stored, stored_answer
from hookline_ingress.settings import IngressSettings
from hookline_ingress.spool import Spool, SpoolEntry, SpoolError
from hookline_ingress.spoolroot import SpoolRoot, replica_name

SETTINGS: web.AppKey[IngressSettings] = web.AppKey("settings", IngressSettings)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
SPOOL: web.AppKey[Spool] = web.AppKey("spool", Spool)
SPOOL_ROOT: web.AppKey[SpoolRoot] = web.AppKey("spool_root", SpoolRoot)
METRICS: web.AppKey[IngressMetrics] = web.AppKey("metrics", object)  # type: ignore[arg-type]
REPLAY: web.AppKey[Replayer] = web.AppKey("replay", object)  # type: ignore[arg-type]

# Redis did not take the append: unreachable, past the deadline, or refusing writes.
CANNOT_APPEND = (*UNAVAILABLE, TimeoutError, *REFUSED)

# GitHub's headers are short; these caps refuse (400) a request whose header lines or
# header count are far beyond anything GitHub or a proxy in front of it sends.
MAX_HEADER_LINE = 8190
MAX_HEADERS = 64

INSECURE_WARNING = (
    "HOOKLINE_INGRESS_INSECURE=1: webhook signatures are NOT checked; anyone who can reach "
    "this port can queue jobs"
)


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
    """Appends accepted webhooks: straight to Redis while the spool is empty, else (or
    when Redis does not answer within the deadline) to the spool, behind what waits
    there, so the stream keeps arrival order."""

    def __init__(self, settings: IngressSettings, redis: Redis, spool: Spool) -> None:
        self.redis = redis
        self.spool = spool
        self.keys = Keys(settings.prefix)
        self.deadline = float(settings.redis_timeout)
        self.ttl_ms = int(settings.dedupe_ttl * 1000)
        self.wake = asyncio.Event()
        self.appender = Appender(redis, self.ttl_ms, self.deadline)

    async def append(self, entry: SpoolEntry) -> bool:
        """One atomic dedupe-and-append in Redis; True when appended, False for a
        duplicate. Raises ``CANNOT_APPEND`` errors when Redis does not take it in time."""
        return await self.appender.append(entry)

    async def deliver(self, entry: SpoolEntry, log: Logger) -> Stored:
        if self.spool.holds(entry.delivery_id):
            return "duplicate"
        if not self.spool.depth:
            try:
                return "accepted" if await self.append(entry) else "duplicate"
            except CANNOT_APPEND as exc:
                log.warning("redis_unavailable_spooling", error=type(exc).__name__)
        spooled = await self.spool.append(entry)
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
        },
    )
    spool_root = open_spool_root(settings)
    assert spool_root.own is not None
    spool = spool_root.own
    registry = CollectorRegistry()
    # No socket timeout: every call is bounded by one asyncio deadline of its own
    # (HOOKLINE_INGRESS_REDIS_TIMEOUT), which also covers connecting and the pool.
    redis = connect(settings.redis_url, client_name="hookline-ingress")
    delivery = Delivery(settings, redis, spool)
    app[SETTINGS] = settings
    app[SPOOL] = spool
    app[SPOOL_ROOT] = spool_root
    app[REDIS] = redis
    app[METRICS] = IngressMetrics(registry, spool)
    app[REPLAY] = Replayer(delivery)
    app.cleanup_ctx.append(lifespan(redis))
    app.cleanup_ctx.append(_background)
    app.router.add_post("/webhook", WebhookView(settings, delivery, app[METRICS]).handle)
    add_ops_routes(app, registry, lambda: health(app))
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
    not answer or anything waits in the spool."""
    try:
        async with asyncio.timeout(app[SETTINGS].redis_timeout):
            await app[REDIS].ping()
        connected = True
    except (*UNAVAILABLE, TimeoutError):
        connected = False
    spool = app[SPOOL]
    return {
        "status": "ok" if connected and not spool.depth else "degraded",
        "redis_connected": connected,
        "spool_entries": spool.depth,
        "spool_bytes": spool.size,
    }


class WebhookView:
    """``POST /webhook``."""

    def __init__(
        self, settings: IngressSettings, delivery: Delivery, metrics: IngressMetrics
    ) -> None:
        self.settings = settings
        self.delivery = delivery
        self.metrics = metrics
        self.allowed = frozenset(settings.events)
        self.labels = frozenset(samples.events()) | self.allowed
        self.status_base = settings.status_url.rstrip("/") + "/jobs/"
        # A concrete logger once (not a lazy proxy that binds on every call), bound per
        # request to the delivery id below: the hot path stays cheap.
        self.log = cast(Logger, get_logger().bind())
        self._counters: dict[tuple[str, str], Any] = {}

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        event = request.headers.get("X-GitHub-Event", "").strip()
        delivery = request.headers.get("X-GitHub-Delivery", "").strip()
        label = intake.metric_event(event, self.labels)
        try:
            intake.check_headers(event, delivery)
        except Refusal as refusal:
            # The delivery id is missing or malformed: not something to log.
            response, outcome = self._refuse(self.log, refusal), refusal.outcome
        else:
            log = self.log.bind(delivery_id=delivery, event=event)
            response, outcome = await self._receive(request, log, event, delivery)
        self.metrics.seconds.observe(time.perf_counter() - started)
        self._count(label, outcome)
        return response

    def _count(self, event: str, outcome: str) -> None:
        counter = self._counters.get((event, outcome))
        if counter is None:
            counter = self._counters[event, outcome] = self.metrics.webhooks.labels(event, outcome)
        counter.inc()

    def _refuse(self, log: Logger, refusal: Refusal) -> web.Response:
        # No body, header value or signature goes into a log line: only the reason.
        log.warning("webhook_refused", status=refusal.status, error=refusal.error)
        response = json_error(refusal.status, refusal.error, refusal.detail)
        if refusal.status in (408, 413):
            response.force_close()  # the rest of the body is never read
        return response

    async def _receive(
        self, request: web.Request, log: Logger, event: str, delivery: str
    ) -> tuple[web.Response, Outcome]:
        settings = self.settings
        try:
            kind = intake.media_kind(request.content_type)
            if request.content_length is not None and request.content_length > settings.max_body:
                raise _too_large(settings.max_body)
            body = await self._read(request)
            if settings.insecure:
                log.warning("webhook_signature_not_checked", warning=INSECURE_WARNING)
            intake.check_signature(settings.secrets, body, request.headers)
            document = intake.json_payload(kind, body)
            head = intake.payload_head(document)
        except Refusal as refusal:
            return self._refuse(log, refusal), refusal.outcome
        if event == "ping":
            log.info("webhook_ping", hook_id=head.hook_id)
            return json_response(
                {"message": "pong", "outcome": "ping", "delivery_id": delivery, "zen": head.zen}
            ), "ignored"
        if self.allowed and event not in self.allowed:
            log.info("webhook_ignored", reason="event_not_allowed")
            return json_response(
                {
                    "message": "ignored",
                    "outcome": "ignored",
                    "detail": f"event {event} is not in HOOKLINE_INGRESS_EVENTS",
                },
                status=202,
            ), "ignored"
        job_id = job_id_for_delivery(delivery)
        repo = head.repository
        received = WebhookReceived(
            delivery_id=delivery,
            job_id=job_id,
            event=event,
            action=head.action,
            repository=repo.full_name if repo else None,
            payload=msgspec.Raw(document),
        )
        try:
            outcome = await self.delivery.deliver(
                self.delivery.entry(delivery, job_id, encode(received)), log
            )
        except SpoolError as exc:
            log.error("webhook_not_persisted", error=str(exc))
            return json_error(
                503, "unavailable", "Redis is unreachable and the spool cannot be written"
            ), "unavailable"
        log.info("webhook_" + outcome, job_id=job_id)
        target = (repo.html_url if repo and repo.html_url else None) or "repository"
        return json_response(
            stored_answer(outcome, target, job_id, self.status_base + job_id), status=202
        ), outcome

    async def _read(self, request: web.Request) -> bytes:
        """The whole body, within the size limit (chunked bodies too: reading stops as
        soon as the limit is passed) and the body deadline."""
        try:
            if request.content.is_eof():  # already all here: no deadline to arm
                return await request.read()
            async with asyncio.timeout(self.settings.body_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(self.settings.max_body) from None
        except TimeoutError:
            raise Refusal(
                408, "body_timeout", "the body did not arrive within the body deadline"
            ) from None


def _too_large(limit: int) -> Refusal:
    return Refusal(413, "payload_too_large", f"the body exceeds {limit} bytes")
