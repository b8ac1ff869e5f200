"""The job view as a fold over events. Pure: an event in, the change to one view out.

Each event has a rank ``attempt * 8 + phase``; a view keeps the rank of the last event
it applied and ignores any event whose rank is not higher, or whose status change the
transition table forbids. Duplicates and stale events therefore change nothing, and
replaying every stream from the start rebuilds the same views. The rule itself runs in
Redis (``lua/apply.lua``, driven by ``store.py``); this module decides what each event
asks of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, assert_never

import msgspec
from hookline.events import (
    AnyEvent,
    FailedPurgeRequested,
    JobCancelRequested,
    JobDeferred,
    JobFinished,
    JobPurged,
    JobQueued,
    JobRequeueRequested,
    JobStarted,
    WebhookReceived,
)

from hookline_status.documents import STATUSES, JobEvent, Status

# Where in an attempt an event sits; the rank orders events within an attempt by it.
EventPhase = Literal[0, 1, 2, 3, 4, 5]
PHASE_RECEIVED: Final[EventPhase] = 0
PHASE_DEFERRED: Final[EventPhase] = 1
PHASE_QUEUED: Final[EventPhase] = 2
PHASE_STARTED: Final[EventPhase] = 3
PHASE_ENDED: Final[EventPhase] = 4
PHASE_PURGED: Final[EventPhase] = 5
PHASES_PER_ATTEMPT: Final = 8

# A purged job's view lives on for this long, then the sweep forgets it everywhere.
PURGE_TTL: Final = 0.001

FINAL_STATUSES: Final[frozenset[Status]] = frozenset({"finished", "failed", "canceled", "skipped"})
# Ends of an attempt whose run time the duration histogram observes.
TIMED_STATUSES: Final[frozenset[Status]] = frozenset({"finished", "failed"})

# Which status may follow which. Events may arrive out of order (a start before its
# queueing, a retry's start before the failure it retries), so the rank decides what is
# newer; this table only says what can never happen: nothing follows ``skipped`` (no
# route matched, so no attempt exists), and a job never goes back to ``skipped``.
TRANSITIONS: Final[dict[Status, frozenset[Status]]] = {
    "queued": frozenset(STATUSES),
    "deferred": frozenset(STATUSES) - {"skipped"},
    "started": frozenset(STATUSES) - {"skipped"},
    "finished": frozenset(STATUSES) - {"skipped"},
    "failed": frozenset(STATUSES) - {"skipped"},
    "canceled": frozenset(STATUSES) - {"skipped"},
    "skipped": frozenset(),
}

_json = msgspec.json.Encoder()


def rank(attempt: int, phase: EventPhase) -> int:
    return attempt * PHASES_PER_ATTEMPT + phase


def allowed(old: Status | None, new: Status) -> bool:
    return old is None or new in TRANSITIONS[old]


@dataclass(frozen=True, slots=True)
class ViewUpdate:
    """Apply ``fields`` (and drop ``clear``) to the view of ``job_id`` if its rank is
    higher than the view's; the view expires ``ttl`` seconds after ``at_ms`` (None:
    never). ``summary`` is the event as the job's history lists it (always recorded)."""

    job_id: str
    attempt: int
    phase: EventPhase
    status: Status
    created_ms: int
    created_at: str
    at_ms: int
    summary: str
    fields: dict[str, str] = field(default_factory=dict)
    clear: tuple[str, ...] = ()
    ttl: float | None = None
    duration: float | None = None

    @property
    def rank(self) -> int:
        return rank(self.attempt, self.phase)

    @property
    def completes(self) -> bool:
        """An attempt ended: counted once in the completions (a purge keeps the status
        and is not counted again)."""
        return self.phase == PHASE_ENDED and self.status in FINAL_STATUSES

    @property
    def measured(self) -> float | None:
        """The run time the duration histogram observes, if any."""
        timed = self.completes and self.status in TIMED_STATUSES
        return self.duration if timed else None

    @property
    def starts(self) -> bool:
        """An attempt started: its wait since it was queued is observed."""
        return self.phase == PHASE_STARTED


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _summary(source: AnyEvent, **extra: Any) -> str:
    summary = JobEvent(
        type=str(source.__struct_config__.tag),
        event_id=source.event_id,
        occurred_at=_iso(source.occurred_at),
        attempt=getattr(source, "attempt", 0),
        **extra,
    )
    return _json.encode(summary).decode()


def _repository(meta: dict[str, Any]) -> str | None:
    value = meta.get("repository")
    return value if isinstance(value, str) and value else None


def _update(event: AnyEvent, phase: EventPhase, status: Status, **rest: Any) -> ViewUpdate:
    """An update at the event's own time (its creation time too, unless given)."""
    at = event.occurred_at
    rest.setdefault("created_ms", _ms(at))
    rest.setdefault("created_at", _iso(at))
    return ViewUpdate(
        job_id=getattr(event, "job_id", ""),
        attempt=getattr(event, "attempt", 0),
        phase=phase,
        status=status,
        at_ms=_ms(at),
        **rest,
    )


def _ids(event: JobDeferred | JobQueued | JobStarted | JobFinished) -> dict[str, str]:
    return {
        "job_id": event.job_id,
        "delivery_id": event.delivery_id,
        "attempt": str(event.attempt),
    }


def _received(event: WebhookReceived) -> ViewUpdate:
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
    summary = _summary(event, event=event.event, action=event.action)
    return _update(event, PHASE_RECEIVED, "queued", summary=summary, fields=fields)


def _deferred(event: JobDeferred) -> ViewUpdate:
    not_before = _iso(event.not_before)
    return _update(
        event,
        PHASE_DEFERRED,
        "deferred",
        summary=_summary(
            event,
            queue=event.queue,
            pipeline=event.pipeline,
            not_before=not_before,
            reason=event.reason,
        ),
        fields={
            **_ids(event),
            "queue": event.queue,
            "pipeline": event.pipeline,
            "not_before": not_before,
            "reason": event.reason or "",
        },
        clear=("started_at", "ended_at", "worker", "duration", "queued_for_ms"),
    )


def _queued(event: JobQueued) -> ViewUpdate:
    created = event.created_at or event.occurred_at
    fields = {
        **_ids(event),
        "queue": event.spec.queue,
        "pipeline": event.spec.pipeline,
        "meta": _json.encode(event.meta).decode(),
        "queued_at": _iso(event.occurred_at),
        "queued_ms": str(_ms(event.occurred_at)),
        "queued_attempt": str(event.attempt),
    }
    if repository := _repository(event.meta):
        fields["repository"] = repository
    return _update(
        event,
        PHASE_QUEUED,
        "queued",
        created_ms=_ms(created),
        created_at=_iso(created),
        summary=_summary(event, queue=event.spec.queue, pipeline=event.spec.pipeline),
        fields=fields,
        clear=("started_at", "ended_at", "worker", "not_before", "duration", "queued_for_ms"),
    )


def _started(event: JobStarted) -> ViewUpdate:
    return _update(
        event,
        PHASE_STARTED,
        "started",
        summary=_summary(event, queue=event.queue, pipeline=event.pipeline, worker=event.worker),
        fields={
            **_ids(event),
            "queue": event.queue,
            "pipeline": event.pipeline,
            "worker": event.worker,
            "started_at": _iso(event.occurred_at),
        },
        clear=("ended_at", "not_before", "duration", "queued_for_ms"),
    )


def _ended_fields(event: JobFinished) -> dict[str, str]:
    fields = {
        **_ids(event),
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
    return fields


def _finished(event: JobFinished) -> ViewUpdate:
    return _update(
        event,
        PHASE_ENDED,
        event.outcome,
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
        fields=_ended_fields(event),
        clear=("not_before",),
        ttl=event.failure_ttl if event.outcome == "failed" else event.result_ttl,
        duration=event.duration,
    )


def _purged(event: JobPurged) -> ViewUpdate:
    # The operator emptied the failed jobs: the view expires at once and the sweep
    # removes it from every index; completions are not counted again.
    return _update(
        event,
        PHASE_PURGED,
        "failed",
        summary=_summary(event, queue=event.queue, requested_by=event.requested_by),
        fields={"job_id": event.job_id, "purged_at": _iso(event.occurred_at)},
        ttl=PURGE_TTL,
    )


def project(event: AnyEvent) -> ViewUpdate | None:
    """The change ``event`` makes to its job's view (None: it concerns no job view)."""
    match event:
        case WebhookReceived():
            return _received(event)
        case JobDeferred():
            return _deferred(event)
        case JobQueued():
            return _queued(event)
        case JobStarted():
            return _started(event)
        case JobFinished():
            return _finished(event)
        case JobPurged():
            return _purged(event)
        case JobRequeueRequested() | JobCancelRequested() | FailedPurgeRequested():
            return None  # operator commands: their effects arrive as events of their own
        case _:
            assert_never(event)
