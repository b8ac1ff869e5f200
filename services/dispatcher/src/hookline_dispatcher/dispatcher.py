"""The dispatcher's decisions as stream writes: route each webhook into a queued job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

import msgspec
from hookline.consumer import Entry, Op
from hookline.events import (
    AnyEvent,
    Event,
    FailedPurgeRequested,
    JobCancelRequested,
    JobDeferred,
    JobFinished,
    JobQueued,
    JobRequeueRequested,
    JobStarted,
    WebhookReceived,
    encode,
)
from hookline.github import extract_meta
from hookline.keys import EVENT_FIELD, Keys
from hookline.logs import get_logger
from hookline.metrics import CollectorRegistry, Counter
from hookline.redis_client import XADD_ONCE

from hookline_dispatcher.config import RoutingConfig
from hookline_dispatcher.routing import Routed, route

_payload_decoder = msgspec.json.Decoder(dict[str, Any])


class DispatcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dispatched = Counter(
            "hookline_jobs_dispatched_total",
            "Jobs queued by the dispatcher, by pipeline and queue.",
            ["pipeline", "queue"],
            registry=registry,
        )
        self.skipped = Counter(
            "hookline_webhooks_skipped_total",
            "Deliveries that matched no route.",
            ["reason"],
            registry=registry,
        )


class Dispatcher:
    """Handles ``webhook.received`` (and later ``job.finished``, ``commands``) entries."""

    def __init__(
        self, keys: Keys, config: RoutingConfig, metrics: DispatcherMetrics, marker_ttl: float
    ) -> None:
        self.keys = keys
        self.config = config
        self.metrics = metrics
        self.marker_ttl_ms = int(marker_ttl * 1000)
        self.log = get_logger()

    @property
    def streams(self) -> list[str]:
        return [self.keys.webhook_received]

    async def handle(self, event: AnyEvent, entry: Entry) -> Sequence[Op]:
        match event:
            case WebhookReceived():
                return self.on_webhook(event)
            case (
                JobQueued()
                | JobStarted()
                | JobFinished()
                | JobDeferred()
                | JobRequeueRequested()
                | JobCancelRequested()
                | FailedPurgeRequested()
            ):
                return []
            case _:
                assert_never(event)

    def on_webhook(self, received: WebhookReceived) -> list[Op]:
        payload = _payload_decoder.decode(received.payload)
        meta = extract_meta(
            received.event, payload, delivery_id=received.delivery_id, job_id=received.job_id
        )
        decision = route(meta, self.config)
        if isinstance(decision, Routed):
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
            self.metrics.dispatched.labels(spec.pipeline, spec.queue).inc()
            self.log.info("job_dispatched", pipeline=spec.pipeline, queue=spec.queue)
            return [
                self.append_once(
                    self.keys.dispatched(received.job_id, 1),
                    self.keys.job_queued(spec.queue),
                    queued,
                ),
                ("SADD", self.keys.queues, spec.queue),
            ]
        skipped = JobFinished(
            job_id=received.job_id,
            delivery_id=received.delivery_id,
            attempt=0,
            outcome="skipped",
            reason=decision.reason,
            meta=meta,
        )
        self.metrics.skipped.labels("no_route").inc()
        self.log.info("webhook_skipped", reason=decision.reason)
        return [
            self.append_once(
                self.keys.dispatched(received.job_id, 0), self.keys.job_finished, skipped
            )
        ]

    def append_once(self, marker: str, stream: str, event: Event) -> Op:
        """XADD ``event`` unless ``marker`` shows it was already appended (two
        dispatchers racing on one claimed entry, or a replay)."""
        job_id = getattr(event, "job_id", "")
        return (
            "EVAL",
            XADD_ONCE,
            2,
            marker,
            stream,
            job_id,
            self.marker_ttl_ms,
            EVENT_FIELD,
            encode(event),
        )
