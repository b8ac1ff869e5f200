"""The job view as a fold over events. Pure: an event in, the change to one view out.

Each event has a rank ``attempt * 8 + phase``; a view keeps the rank of the last event
it applied and ignores any event whose rank is not higher. Duplicates and stale events
(an older attempt, a start after its end) therefore change nothing, and replaying every
stream from the start rebuilds the same views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec
from hookline.events import (
    AnyEvent,
    JobDeferred,
    JobFinished,
    JobQueued,
    JobStarted,
    WebhookReceived,
)

PHASE_RECEIVED: Final = 0
PHASE_DEFERRED: Final = 1
PHASE_QUEUED: Final = 2
PHASE_STARTED: Final = 3
PHASE_ENDED: Final = 4

STATUSES: Final = ("queued", "started", "finished", "failed", "deferred", "canceled", "skipped")
FINAL_STATUSES: Final = frozenset({"finished", "failed", "canceled", "skipped"})

_json = msgspec.json.Encoder()


def rank(attempt: int, phase: int) -> int:
    return attempt * 8 + phase


@dataclass(frozen=True, slots=True)
class ViewUpdate:
    """Apply ``fields`` (and drop ``clear``) to the view of ``job_id`` if ``rank`` is
    higher than the view's; ``ttl`` seconds from now the view expires (None: never)."""

    job_id: str
    rank: int
    status: str
    created_ms: int
    fields: dict[str, str] = field(default_factory=dict)
    clear: tuple[str, ...] = ()
    ttl: float | None = None


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def project(event: AnyEvent) -> ViewUpdate | None:
    """The change ``event`` makes to its job's view."""
    match event:
        case WebhookReceived():
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(0, PHASE_RECEIVED),
                status="queued",
                created_ms=_ms(event.occurred_at),
                fields={
                    "job_id": event.job_id,
                    "delivery_id": event.delivery_id,
                    "created_at": _iso(event.occurred_at),
                    "attempt": "0",
                    "meta": _json.encode(
                        {
                            "event": event.event,
                            "action": event.action,
                            "repository": event.repository,
                        }
                    ).decode(),
                },
            )
        case JobDeferred():
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(event.attempt, PHASE_DEFERRED),
                status="deferred",
                created_ms=_ms(event.occurred_at),
                fields={
                    "job_id": event.job_id,
                    "delivery_id": event.delivery_id,
                    "attempt": str(event.attempt),
                    "queue": event.queue,
                    "pipeline": event.pipeline,
                    "not_before": _iso(event.not_before),
                    "reason": event.reason or "",
                },
                clear=("started_at", "ended_at", "worker"),
            )
        case JobQueued():
            created = event.created_at or event.occurred_at
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(event.attempt, PHASE_QUEUED),
                status="queued",
                created_ms=_ms(created),
                fields={
                    "job_id": event.job_id,
                    "delivery_id": event.delivery_id,
                    "created_at": _iso(created),
                    "attempt": str(event.attempt),
                    "queue": event.spec.queue,
                    "pipeline": event.spec.pipeline,
                    "meta": _json.encode(event.meta).decode(),
                    "queued_at": _iso(event.occurred_at),
                },
                clear=("started_at", "ended_at", "worker", "not_before"),
            )
        case JobStarted():
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(event.attempt, PHASE_STARTED),
                status="started",
                created_ms=_ms(event.occurred_at),
                fields={
                    "job_id": event.job_id,
                    "delivery_id": event.delivery_id,
                    "attempt": str(event.attempt),
                    "queue": event.queue,
                    "pipeline": event.pipeline,
                    "worker": event.worker,
                    "started_at": _iso(event.occurred_at),
                },
                clear=("ended_at", "not_before"),
            )
        case JobFinished():
            fields = {
                "job_id": event.job_id,
                "delivery_id": event.delivery_id,
                "attempt": str(event.attempt),
                "ended_at": _iso(event.occurred_at),
                "result": _json.encode(event.result).decode(),
                "error": _json.encode(event.error).decode(),
                "reason": event.reason or "",
            }
            for name in ("queue", "pipeline", "worker"):
                if (value := getattr(event, name)) is not None:
                    fields[name] = value
            if event.started_at is not None:
                fields["started_at"] = _iso(event.started_at)
            if event.meta:
                fields["meta"] = _json.encode(event.meta).decode()
            if event.duration is not None:
                fields["duration"] = repr(event.duration)
            ttl = event.failure_ttl if event.outcome == "failed" else event.result_ttl
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(event.attempt, PHASE_ENDED),
                status=event.outcome,
                created_ms=_ms(event.occurred_at),
                fields=fields,
                clear=("not_before",),
                ttl=ttl,
            )
    return None


_decoder = msgspec.json.Decoder()


def render(view: dict[str, str]) -> dict[str, Any]:
    """A stored view as the API returns it (the old ``GET /jobs/<id>`` shape, plus more)."""

    def loads(name: str) -> Any:
        raw = view.get(name)
        return _decoder.decode(raw) if raw else None

    def text(name: str) -> str | None:
        return view.get(name) or None

    return {
        "job_id": view.get("job_id"),
        "status": view.get("status"),
        "created_at": text("created_at"),
        "started_at": text("started_at"),
        "ended_at": text("ended_at"),
        "result": loads("result"),
        "error": loads("error"),
        "meta": loads("meta") or {},
        "attempt": int(view.get("attempt") or 0),
        "queue": text("queue"),
        "pipeline": text("pipeline"),
        "worker": text("worker"),
        "not_before": text("not_before"),
        "reason": text("reason"),
        "delivery_id": text("delivery_id"),
    }


def apply(view: dict[str, str], update: ViewUpdate) -> dict[str, str]:
    """The view after ``update``: the same rule the store's Lua script applies in Redis."""
    if int(view.get("rank", "-1")) >= update.rank:
        return view
    new = {k: v for k, v in view.items() if k not in update.clear}
    new.update(update.fields)
    new.setdefault("created_ms", str(update.created_ms))
    new["rank"] = str(update.rank)
    new["status"] = update.status
    return new


def fold(events: list[AnyEvent]) -> dict[str, dict[str, str]]:
    """Every job's view after ``events``, in the order given."""
    views: dict[str, dict[str, str]] = {}
    for event in events:
        update = project(event)
        if update is not None:
            views[update.job_id] = apply(views.get(update.job_id, {}), update)
    return views
