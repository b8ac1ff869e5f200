"""Event histories of jobs, for projection tests: every path a job can take."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict

from hookline.events import (
    AnyEvent,
    JobDeferred,
    JobError,
    JobFinished,
    JobPurged,
    JobQueued,
    JobSpec,
    JobStarted,
    Meta,
    WebhookReceived,
)


class Ids(TypedDict):
    """The two ids every event of one job carries, spread into each with ``**``."""

    job_id: str
    delivery_id: str


# Relative to now: views expire against the wall clock, so a fixed date would expire.
T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def history(
    job: str,
    *,
    start: float = 0.0,
    queue: str = "pipeline_tasks",
    pipeline: str = "demo",
    repository: str = "octo/repo",
    path: str = "retry-then-finish",
    result_ttl: float = 86400.0,
    failure_ttl: float = 604800.0,
) -> list[AnyEvent]:
    """The events of one job in the order they are appended. ``path`` is one of
    finish, fail, retry-then-finish, cancel, skip, running."""
    ids: Ids = {"job_id": job, "delivery_id": f"d-{job}"}
    meta: Meta = {"repository": repository, "sha": "abc"}
    spec = JobSpec(pipeline=pipeline, queue=queue)
    t = start
    received = WebhookReceived(**ids, event="push", repository=repository, occurred_at=at(t))
    if path == "skip":
        return [
            received,
            JobFinished(
                **ids, attempt=0, outcome="skipped", reason="no route", occurred_at=at(t + 1)
            ),
        ]
    events: list[AnyEvent] = [received]
    attempts = 2 if path == "retry-then-finish" else 1
    for attempt in range(1, attempts + 1):
        base = t + 1 + (attempt - 1) * 20
        if attempt > 1:
            events.append(
                JobDeferred(
                    **ids,
                    attempt=attempt,
                    queue=queue,
                    pipeline=pipeline,
                    not_before=at(base),
                    reason="retry",
                    occurred_at=at(base - 5),
                )
            )
        events.append(
            JobQueued(
                **ids, attempt=attempt, spec=spec, meta=meta, occurred_at=at(base), created_at=at(t)
            )
        )
        if path == "cancel":
            events.append(
                JobFinished(
                    **ids,
                    attempt=attempt,
                    outcome="canceled",
                    queue=queue,
                    pipeline=pipeline,
                    reason="operator",
                    occurred_at=at(base + 0.5),
                )
            )
            return events
        events.append(
            JobStarted(
                **ids,
                attempt=attempt,
                queue=queue,
                pipeline=pipeline,
                worker=f"w{attempt}",
                occurred_at=at(base + 0.25 * attempt),
            )
        )
        if path == "running":
            return events
        failed = path == "fail" or (path == "retry-then-finish" and attempt < attempts)
        events.append(
            JobFinished(
                **ids,
                attempt=attempt,
                outcome="failed" if failed else "finished",
                queue=queue,
                pipeline=pipeline,
                worker=f"w{attempt}",
                error=JobError(type="Boom", message="exit 1") if failed else None,
                result=None if failed else {"artifact": f"{job}.mp4"},
                started_at=at(base + 0.25 * attempt),
                duration=1.5 * attempt,
                meta=meta,
                result_ttl=result_ttl,
                failure_ttl=failure_ttl,
                occurred_at=at(base + 0.25 * attempt + 1.5 * attempt),
            )
        )
    return events


PATHS = ("finish", "fail", "retry-then-finish", "cancel", "skip", "running")


# One job that fails once, is retried and finishes: the events by name.
IDS: Ids = {"job_id": "j1", "delivery_id": "d1"}


RECEIVED = WebhookReceived(**IDS, event="push", repository="o/r", occurred_at=at(0))
QUEUED_1 = JobQueued(
    **IDS, attempt=1, spec=JobSpec(pipeline="demo"), occurred_at=at(1), created_at=at(0)
)
STARTED_1 = JobStarted(
    **IDS, attempt=1, queue="pipeline_tasks", pipeline="demo", worker="w1", occurred_at=at(2)
)
FAILED_1 = JobFinished(
    **IDS,
    attempt=1,
    outcome="failed",
    worker="w1",
    error=JobError(type="Boom", message="no"),
    occurred_at=at(3),
)
DEFERRED_2 = JobDeferred(
    **IDS,
    attempt=2,
    queue="pipeline_tasks",
    pipeline="demo",
    not_before=at(10),
    occurred_at=at(3.5),
)
QUEUED_2 = JobQueued(**IDS, attempt=2, spec=JobSpec(pipeline="demo"), occurred_at=at(10))
STARTED_2 = JobStarted(
    **IDS, attempt=2, queue="pipeline_tasks", pipeline="demo", worker="w2", occurred_at=at(11)
)
FINISHED_2 = JobFinished(
    **IDS,
    attempt=2,
    outcome="finished",
    worker="w2",
    result={"ok": True},
    started_at=at(11),
    occurred_at=at(12),
)
SKIPPED = JobFinished(**IDS, attempt=0, outcome="skipped", reason="no route", occurred_at=at(1))


PURGED = JobPurged(**IDS, attempt=1, queue="pipeline_tasks", occurred_at=at(20))
HISTORY: list[AnyEvent] = [
    RECEIVED,
    QUEUED_1,
    STARTED_1,
    FAILED_1,
    DEFERRED_2,
    QUEUED_2,
    STARTED_2,
    FINISHED_2,
]
