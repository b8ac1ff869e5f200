"""The job view as a fold over events. Pure: an event in, the change to one view out.

Each event has a rank ``attempt * 8 + phase``; a view keeps the rank of the last event
it applied and ignores any event whose rank is not higher, or whose status change the
transition table forbids. Duplicates and stale events therefore change nothing, and
replaying every stream from the start rebuilds the same views. :class:`Model` is the
in-memory twin of the store's Lua script (same rule, same indexes, same metrics).
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
    JobPurged,
    JobQueued,
    JobStarted,
    WebhookReceived,
)
from hookline.metrics import DURATION_BUCKETS
from hookline.views import STATUSES, index_names, render

__all__ = ["STATUSES", "Model", "ViewUpdate", "apply", "fold", "project", "render"]

PHASE_RECEIVED: Final = 0
PHASE_DEFERRED: Final = 1
PHASE_QUEUED: Final = 2
PHASE_STARTED: Final = 3
PHASE_ENDED: Final = 4
PHASE_PURGED: Final = 5

# A purged job's view lives on for this long, then the sweep forgets it everywhere.
PURGE_TTL: Final = 0.001

FINAL_STATUSES: Final = ("finished", "failed", "canceled", "skipped")

# Which status may follow which. Events may arrive out of order (a start before its
# queueing, a retry's start before the failure it retries), so the rank decides what is
# newer; this table only says what can never happen: nothing follows ``skipped`` (no
# route matched, so no attempt exists), and a job never goes back to ``skipped``.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "queued": frozenset(STATUSES),
    "deferred": frozenset(STATUSES) - {"skipped"},
    "started": frozenset(STATUSES) - {"skipped"},
    "finished": frozenset(STATUSES) - {"skipped"},
    "failed": frozenset(STATUSES) - {"skipped"},
    "canceled": frozenset(STATUSES) - {"skipped"},
    "skipped": frozenset(),
}

_json = msgspec.json.Encoder()


def rank(attempt: int, phase: int) -> int:
    return attempt * 8 + phase


def allowed(old: str | None, new: str) -> bool:
    return old is None or new in TRANSITIONS.get(old, frozenset())


@dataclass(frozen=True, slots=True)
class ViewUpdate:
    """Apply ``fields`` (and drop ``clear``) to the view of ``job_id`` if ``rank`` is
    higher than the view's; the view expires ``ttl`` seconds after ``at_ms`` (None:
    never). ``summary`` is the event as the job's history lists it (always recorded)."""

    job_id: str
    rank: int
    status: str
    created_ms: int
    created_at: str
    at_ms: int
    summary: str
    fields: dict[str, str] = field(default_factory=dict)
    clear: tuple[str, ...] = ()
    ttl: float | None = None
    duration: float | None = None


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _summary(source: AnyEvent, **extra: Any) -> str:
    body: dict[str, Any] = {
        "type": source.__struct_config__.tag,
        "event_id": source.event_id,
        "occurred_at": _iso(source.occurred_at),
        "attempt": getattr(source, "attempt", 0),
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return _json.encode(body).decode()


def _repository(meta: dict[str, Any]) -> str | None:
    value = meta.get("repository")
    return value if isinstance(value, str) and value else None


def project(event: AnyEvent) -> ViewUpdate | None:
    """The change ``event`` makes to its job's view (None: it concerns no job view)."""
    match event:
        case WebhookReceived():
            fields = {
                "job_id": event.job_id,
                "delivery_id": event.delivery_id,
                "attempt": "0",
                "meta": _json.encode(
                    {"event": event.event, "action": event.action, "repository": event.repository}
                ).decode(),
            }
            if event.repository:
                fields["repository"] = event.repository
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(0, PHASE_RECEIVED),
                status="queued",
                created_ms=_ms(event.occurred_at),
                created_at=_iso(event.occurred_at),
                at_ms=_ms(event.occurred_at),
                summary=_summary(event, event=event.event, action=event.action),
                fields=fields,
            )
        case JobDeferred():
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(event.attempt, PHASE_DEFERRED),
                status="deferred",
                created_ms=_ms(event.occurred_at),
                created_at=_iso(event.occurred_at),
                at_ms=_ms(event.occurred_at),
                summary=_summary(
                    event,
                    queue=event.queue,
                    pipeline=event.pipeline,
                    not_before=_iso(event.not_before),
                    reason=event.reason,
                ),
                fields={
                    "job_id": event.job_id,
                    "delivery_id": event.delivery_id,
                    "attempt": str(event.attempt),
                    "queue": event.queue,
                    "pipeline": event.pipeline,
                    "not_before": _iso(event.not_before),
                    "reason": event.reason or "",
                },
                clear=("started_at", "ended_at", "worker", "duration"),
            )
        case JobQueued():
            created = event.created_at or event.occurred_at
            fields = {
                "job_id": event.job_id,
                "delivery_id": event.delivery_id,
                "attempt": str(event.attempt),
                "queue": event.spec.queue,
                "pipeline": event.spec.pipeline,
                "meta": _json.encode(event.meta).decode(),
                "queued_at": _iso(event.occurred_at),
                "queued_ms": str(_ms(event.occurred_at)),
            }
            if repository := _repository(event.meta):
                fields["repository"] = repository
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(event.attempt, PHASE_QUEUED),
                status="queued",
                created_ms=_ms(created),
                created_at=_iso(created),
                at_ms=_ms(event.occurred_at),
                summary=_summary(event, queue=event.spec.queue, pipeline=event.spec.pipeline),
                fields=fields,
                clear=("started_at", "ended_at", "worker", "not_before", "duration"),
            )
        case JobStarted():
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(event.attempt, PHASE_STARTED),
                status="started",
                created_ms=_ms(event.occurred_at),
                created_at=_iso(event.occurred_at),
                at_ms=_ms(event.occurred_at),
                summary=_summary(
                    event, queue=event.queue, pipeline=event.pipeline, worker=event.worker
                ),
                fields={
                    "job_id": event.job_id,
                    "delivery_id": event.delivery_id,
                    "attempt": str(event.attempt),
                    "queue": event.queue,
                    "pipeline": event.pipeline,
                    "worker": event.worker,
                    "started_at": _iso(event.occurred_at),
                },
                clear=("ended_at", "not_before", "duration"),
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
                if value := getattr(event, name):
                    fields[name] = value
            if event.started_at is not None:
                fields["started_at"] = _iso(event.started_at)
            if event.meta:
                fields["meta"] = _json.encode(event.meta).decode()
                if repository := _repository(event.meta):
                    fields["repository"] = repository
            if event.duration is not None:
                fields["duration"] = repr(event.duration)
            ttl = event.failure_ttl if event.outcome == "failed" else event.result_ttl
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(event.attempt, PHASE_ENDED),
                status=event.outcome,
                created_ms=_ms(event.occurred_at),
                created_at=_iso(event.occurred_at),
                at_ms=_ms(event.occurred_at),
                summary=_summary(
                    event,
                    outcome=event.outcome,
                    queue=event.queue,
                    pipeline=event.pipeline,
                    worker=event.worker,
                    error=event.error,
                    reason=event.reason,
                    duration=event.duration,
                ),
                fields=fields,
                clear=("not_before",),
                ttl=ttl,
                duration=event.duration,
            )
        case JobPurged():
            # The operator emptied the failed jobs: the view expires at once and the
            # sweep removes it from every index; completions are not counted again.
            return ViewUpdate(
                job_id=event.job_id,
                rank=rank(event.attempt, PHASE_PURGED),
                status="failed",
                created_ms=_ms(event.occurred_at),
                created_at=_iso(event.occurred_at),
                at_ms=_ms(event.occurred_at),
                summary=_summary(event, queue=event.queue, requested_by=event.requested_by),
                fields={"job_id": event.job_id, "purged_at": _iso(event.occurred_at)},
                ttl=PURGE_TTL,
            )
    return None


def apply(view: dict[str, str], update: ViewUpdate) -> dict[str, str]:
    """The view after ``update``: the same rule the store's Lua script applies in Redis.

    The view changes only if the update's rank is higher and the transition allowed;
    its creation time is the earliest any of its events claims, whatever their order."""
    new = view
    if int(view.get("rank", "-1")) < update.rank and allowed(view.get("status"), update.status):
        new = {k: v for k, v in view.items() if k not in update.clear}
        new.update(update.fields)
        new["rank"] = str(update.rank)
        new["status"] = update.status
        if update.ttl:
            new["expires_ms"] = str(update.at_ms + int(update.ttl * 1000))
        else:
            new.pop("expires_ms", None)
    created = new.get("created_ms")
    if created is None or update.created_ms < int(created):
        new = {**new, "created_ms": str(update.created_ms), "created_at": update.created_at}
    return new


def bucket(value: float) -> str:
    """The histogram field suffix of ``value``: ``b<i>`` of the first bucket holding it."""
    for i, bound in enumerate(DURATION_BUCKETS):
        if value <= bound:
            return f"b{i}"
    return "binf"


@dataclass
class Model:
    """Everything the Lua script keeps in Redis, in memory: views, indexes, histories,
    the expiry schedule and the metrics. Used by tests as the twin of the store."""

    views: dict[str, dict[str, str]] = field(default_factory=dict)
    histories: dict[str, set[tuple[int, str]]] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    duration: dict[str, float] = field(default_factory=dict)
    wait: dict[str, float] = field(default_factory=dict)
    # Only filled from Redis: the API document the Lua script keeps in each view.
    rendered: dict[str, str] = field(default_factory=dict)

    def apply(self, update: ViewUpdate) -> bool:
        """Apply one update; True if the view's status changed (metrics counted)."""
        self.histories.setdefault(update.job_id, set()).add((update.at_ms, update.summary))
        old = self.views.get(update.job_id, {})
        new = apply(old, update)
        self.views[update.job_id] = new
        if new.get("rank") == old.get("rank"):
            return False
        queue, pipeline = new.get("queue", ""), new.get("pipeline", "")
        if update.status in FINAL_STATUSES and update.rank % 8 == PHASE_ENDED:
            name = f"{queue}\t{pipeline}\t{update.status}"
            self.completed[name] = self.completed.get(name, 0) + 1
            if update.duration is not None and update.status in ("finished", "failed"):
                _observe(self.duration, f"{queue}\t{pipeline}", update.duration)
        if update.status == "started" and new.get("queued_ms"):
            wait = (update.at_ms - int(new["queued_ms"])) / 1000
            if wait >= 0:
                _observe(self.wait, queue, wait)
        return True

    def sweep(self, now_ms: int) -> int:
        due = [
            j
            for j, v in self.views.items()
            if v.get("expires_ms") and int(v["expires_ms"]) <= now_ms
        ]
        for job_id in due:
            del self.views[job_id]
            self.histories.pop(job_id, None)
        return len(due)

    def indexes(self) -> dict[str, set[str]]:
        """Index name (relative to the index prefix) -> job ids."""
        out: dict[str, set[str]] = {}
        for job_id, view in self.views.items():
            for name in index_names(view):
                out.setdefault(name, set()).add(job_id)
        return out

    def expiring(self) -> dict[str, int]:
        return {j: int(v["expires_ms"]) for j, v in self.views.items() if v.get("expires_ms")}


def _observe(histogram: dict[str, float], labels: str, value: float) -> None:
    for name, amount in ((bucket(value), 1.0), ("sum", value), ("count", 1.0)):
        key = f"{labels}\t{name}"
        histogram[key] = histogram.get(key, 0.0) + amount


def fold(events: list[AnyEvent]) -> dict[str, dict[str, str]]:
    """Every job's view after ``events``, in the order given."""
    model = Model()
    for event in events:
        update = project(event)
        if update is not None:
            model.apply(update)
    return model.views
