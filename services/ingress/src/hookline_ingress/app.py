"""The ingress HTTP app: verify, dedupe and append each GitHub delivery."""

from __future__ import annotations

import time

import msgspec
import structlog
from aiohttp import web
from hookline import signing
from hookline.events import WebhookReceived, encode
from hookline.ids import job_id_for_delivery
from hookline.keys import EVENT_FIELD, Keys
from hookline.logs import get_logger
from hookline.metrics import DURATION_BUCKETS, CollectorRegistry, Counter, Histogram
from hookline.redis_client import UNAVAILABLE, XADD_ONCE, Redis, connect, lifespan
from hookline.web import add_ops_routes, json_error, json_response

from hookline_ingress.settings import IngressSettings

SETTINGS: web.AppKey[IngressSettings] = web.AppKey("settings", IngressSettings)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
METRICS: web.AppKey[IngressMetrics] = web.AppKey("metrics", object)  # type: ignore[arg-type]


class Repository(msgspec.Struct):
    full_name: str | None = None
    html_url: str | None = None


class PayloadHead(msgspec.Struct):
    """The few fields ingress reads; the rest of the payload passes through untouched."""

    action: str | None = None
    repository: Repository | None = None


_head_decoder = msgspec.json.Decoder(PayloadHead)


class IngressMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
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


def create_app(settings: IngressSettings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body)
    registry = CollectorRegistry()
    app[SETTINGS] = settings
    app[METRICS] = IngressMetrics(registry)
    redis = connect(
        settings.redis_url, client_name="hookline-ingress", socket_timeout=settings.redis_timeout
    )
    app[REDIS] = redis
    app.cleanup_ctx.append(lifespan(redis))
    app.router.add_post("/webhook", receive_webhook)
    add_ops_routes(app, registry, lambda: health(app))
    return app


async def health(app: web.Application) -> dict[str, object]:
    try:
        await app[REDIS].ping()
        connected = True
    except UNAVAILABLE:
        connected = False
    return {"status": "ok" if connected else "unhealthy", "redis_connected": connected}


async def receive_webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    metrics = request.app[METRICS]
    try:
        response, event, outcome = await _receive(request)
    finally:
        metrics.seconds.observe(time.perf_counter() - started)
    metrics.webhooks.labels(event, outcome).inc()
    return response


async def _receive(request: web.Request) -> tuple[web.Response, str, str]:
    settings = request.app[SETTINGS]
    event = request.headers.get("X-GitHub-Event", "").strip()
    delivery = request.headers.get("X-GitHub-Delivery", "").strip()
    if not event or not delivery:
        missing = "X-GitHub-Event" if not event else "X-GitHub-Delivery"
        return (
            json_error(400, "missing_header", f"{missing} header is required"),
            "unknown",
            ("rejected_input"),
        )
    with structlog.contextvars.bound_contextvars(delivery_id=delivery, event=event):
        log = get_logger()
        if request.content_length is not None and request.content_length > settings.max_body:
            log.warning("webhook_too_large", size=request.content_length)
            return _too_large(settings.max_body), "unknown", "rejected_input"
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("webhook_too_large")
            return _too_large(settings.max_body), "unknown", "rejected_input"
        if not signing.verify(settings.secrets, body, request.headers.get("X-Hub-Signature-256")):
            log.warning("webhook_bad_signature")
            return (
                json_error(
                    401,
                    "invalid_signature",
                    "X-Hub-Signature-256 is missing or does not match the body",
                ),
                "unknown",
                "rejected_signature",
            )
        try:
            head = _head_decoder.decode(body)
        except msgspec.ValidationError as exc:
            return (
                json_error(422, "invalid_payload", f"payload is not a GitHub event: {exc}"),
                (event),
                "rejected_input",
            )
        except msgspec.DecodeError:
            return (
                json_error(400, "invalid_json", "the body is not valid JSON"),
                event,
                ("rejected_input"),
            )
        job_id = job_id_for_delivery(delivery)
        repo = head.repository
        received = WebhookReceived(
            delivery_id=delivery,
            job_id=job_id,
            event=event,
            action=head.action,
            repository=repo.full_name if repo else None,
            payload=msgspec.Raw(body),
        )
        keys = Keys(settings.prefix)
        appended, _ = await request.app[REDIS].eval(
            XADD_ONCE,
            2,
            keys.delivery(delivery),
            keys.webhook_received,
            job_id,
            int(settings.dedupe_ttl * 1000),
            EVENT_FIELD,
            encode(received),
        )
        outcome = "accepted" if appended else "duplicate"
        log.info("webhook_" + outcome, job_id=job_id)
        target = (repo.html_url if repo and repo.html_url else None) or "repository"
        return (
            json_response(
                {
                    "message": f"Pipeline triggered for {target}",
                    "job_id": job_id,
                    "status_url": f"{settings.status_url.rstrip('/')}/jobs/{job_id}",
                },
                status=202,
            ),
            event,
            outcome,
        )


def _too_large(limit: int) -> web.Response:
    return json_error(413, "payload_too_large", f"the body exceeds {limit} bytes")
