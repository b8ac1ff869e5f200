"""``POST /webhook``: check the headers, read and verify the body within its limits,
then hand the delivery to :class:`~hookline_ingress.app.Delivery` (Redis or the spool)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import msgspec
from aiohttp import web
from hookline import samples
from hookline.events import WebhookReceived, encode
from hookline.ids import job_id_for_delivery
from hookline.logs import get_logger
from hookline.web import json_error, json_response
from structlog.typing import FilteringBoundLogger as Logger

from hookline_ingress import intake
from hookline_ingress.body import RETRY_AFTER, ByteBudget, Lease, joined, read_body, too_large
from hookline_ingress.intake import PayloadHead, Refusal, RequestOutcome, stored_answer
from hookline_ingress.settings import IngressSettings
from hookline_ingress.spool import SpoolError

if TYPE_CHECKING:
    from hookline_ingress.app import Delivery, IngressMetrics

INSECURE_WARNING = (
    "HOOKLINE_INGRESS_INSECURE=1: webhook signatures are NOT checked; anyone who can reach "
    "this port can queue jobs"
)


class WebhookView:
    """``POST /webhook``."""

    def __init__(
        self, settings: IngressSettings, delivery: Delivery, metrics: IngressMetrics
    ) -> None:
        self.settings = settings
        self.delivery = delivery
        self.metrics = metrics
        self.budget = ByteBudget(settings.max_bytes_in_flight)
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
            response, outcome = self._refuse(request, self.log, refusal), refusal.outcome
        else:
            log = self.log.bind(delivery_id=delivery, event=event)
            # The body stays charged to the budget until it is stored (or refused).
            async with self.budget.lease() as lease:
                response, outcome = await self._receive(request, lease, log, event, delivery)
        self.metrics.seconds.observe(time.perf_counter() - started)
        self._count(label, outcome)
        return response

    def _count(self, event: str, outcome: str) -> None:
        counter = self._counters.get((event, outcome))
        if counter is None:
            counter = self._counters[event, outcome] = self.metrics.webhooks.labels(event, outcome)
        counter.inc()

    def _refuse(self, request: web.Request, log: Logger, refusal: Refusal) -> web.Response:
        # No body, header value or signature goes into a log line: only the reason.
        log.warning("webhook_refused", status=refusal.status, error=refusal.error)
        response = json_error(refusal.status, refusal.error, refusal.detail)
        if refusal.status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER)
        if not request.content.is_eof():
            response.force_close()  # the rest of the body is never read
        return response

    async def _verified(self, request: web.Request, lease: Lease, log: Logger) -> bytes:
        """The signed body, read within its limits (raises :class:`Refusal`). The
        signature's shape is checked before the first byte of the body is read."""
        settings = self.settings
        if request.content_length is not None and request.content_length > settings.max_body:
            raise too_large(settings.max_body)
        mac = intake.expect_signature(settings.secrets, request.headers)
        chunks = await read_body(request, mac, lease, settings.max_body, settings.body_timeout)
        if mac is None:
            log.warning("webhook_signature_not_checked", warning=INSECURE_WARNING)
        else:
            mac.check()
        return joined(chunks)

    async def _receive(
        self, request: web.Request, lease: Lease, log: Logger, event: str, delivery: str
    ) -> tuple[web.Response, RequestOutcome]:
        try:
            kind = intake.media_kind(request.content_type)
            document = intake.json_payload(kind, await self._verified(request, lease, log))
            head = intake.payload_head(document)
        except Refusal as refusal:
            return self._refuse(request, log, refusal), refusal.outcome
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
        return await self._store(log, event, delivery, head, document)

    async def _store(
        self, log: Logger, event: str, delivery: str, head: PayloadHead, document: bytes
    ) -> tuple[web.Response, RequestOutcome]:
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
