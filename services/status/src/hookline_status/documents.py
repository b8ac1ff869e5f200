"""The status API's documents, declared once as Structs: the OpenAPI schemas are derived
from them (``openapi.py``), the replies are encoded from them, and the apply script
renders each job's document in the field order and shapes of :class:`JobView`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from hookline.events import JobError
from hookline.records import Count, Seconds, WorkerView

Status = Literal["queued", "started", "finished", "failed", "deferred", "canceled", "skipped"]
STATUSES: Final[tuple[Status, ...]] = (
    "queued",
    "started",
    "finished",
    "failed",
    "deferred",
    "canceled",
    "skipped",
)
ListStatus = Literal["all", Status]
LIST_STATUSES: Final[tuple[ListStatus, ...]] = ("all", *STATUSES)
Moment = Annotated[datetime, msgspec.Meta(tz=True)]


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /jobs/<id>``: one job's view (the old rq-style shape, plus more)."""

    job_id: str
    status: Status
    created_at: Moment | None
    started_at: Moment | None
    ended_at: Moment | None
    result: Annotated[Any, msgspec.Meta(description="what the pipeline returned (any JSON)")]
    error: JobError | None
    meta: dict[str, Any]
    attempt: Count
    queue: str | None
    pipeline: str | None
    repository: str | None
    worker: str | None
    not_before: Moment | None
    reason: str | None
    delivery_id: str | None
    duration: Seconds | None
    queued_for_ms: (
        Annotated[
            int,
            msgspec.Meta(
                ge=0,
                description="how long the current attempt waited between being queued and "
                "started (null until it started)",
            ),
        ]
        | None
    )


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /jobs``: one page of jobs, newest first."""

    count: Count
    jobs: list[JobView]
    next_cursor: Annotated[
        str | None, msgspec.Meta(description="pass as cursor for the next page (null: none)")
    ]


class JobEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One event in a job's history, as the projection records it (fields that do not
    apply to the event's type are left out)."""

    type: str
    event_id: str
    occurred_at: str
    attempt: Count
    outcome: str | None = None
    queue: str | None = None
    pipeline: str | None = None
    worker: str | None = None
    not_before: str | None = None
    error: JobError | None = None
    reason: str | None = None
    duration: float | None = None
    event: str | None = None
    action: str | None = None
    requested_by: str | None = None


class JobHistory(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /jobs/<id>/events``: every event of one job, oldest first."""

    job_id: str
    count: Count
    events: list[JobEvent]


class WorkerList(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /workers``."""

    count: Count
    workers: list[WorkerView]


class QueueStats(msgspec.Struct, frozen=True, kw_only=True):
    """One queue's figures, read straight from its stream and the workers' group."""

    queue: str
    length: Annotated[int, msgspec.Meta(ge=0, description="jobs waiting for a worker")]
    waiting: Annotated[
        int, msgspec.Meta(ge=0, description="the same as length (kept for older clients)")
    ]
    pending: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="delivered to a worker, not yet acknowledged: running, or held by "
            "a worker that died until another claims it",
        ),
    ]
    stream_entries: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="entries the queue's stream retains, handled ones not yet trimmed "
            "too (not a count of jobs)",
        ),
    ]
    oldest_age_seconds: Seconds


class Backlog(msgspec.Struct, frozen=True, kw_only=True):
    """A consumer group's entries delivered and not acknowledged, and not yet read."""

    pending: Count
    lag: Count


class SystemInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What ``hookline info`` shows and ``GET /health`` sums up."""

    queues: list[QueueStats]
    workers: list[WorkerView]
    jobs: dict[str, int]
    backlog: dict[str, Backlog]
    generation: int


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /health``: the old rq-style shape, plus per-queue and per-service detail."""

    status: Literal["ok", "degraded", "unhealthy"]
    redis_connected: bool
    queue_available: bool
    queue_length: Annotated[
        int, msgspec.Meta(ge=0, description="jobs waiting on the default queue for a worker")
    ]
    workers_count: Count
    queues: list[QueueStats]
    services: dict[str, dict[str, Any]]
    problems: Annotated[
        list[str],
        msgspec.Meta(description="what is wrong, in words: Redis unreachable or unsafe"),
    ] = []
    redis_safety: Annotated[
        dict[str, Any],
        msgspec.Meta(
            description="persistence, eviction policy, and whether HOOKLINE_ALLOW_UNSAFE_REDIS "
            "lets the services run on an unsafe Redis"
        ),
    ] = {}


class CommandDone(msgspec.Struct, frozen=True, kw_only=True):
    """The dispatcher carried an admin command out (or refused it)."""

    command_id: str
    ok: bool
    message: str
    job_ids: list[str]


class CommandPending(msgspec.Struct, frozen=True, kw_only=True):
    """An admin command appended that the dispatcher has not answered yet."""

    command_id: str
    status: Literal["pending"] = "pending"


class Error(msgspec.Struct, frozen=True, kw_only=True):
    """Every error reply."""

    error: str
    detail: str


DOCUMENTS: Final = (
    JobView,
    JobPage,
    JobHistory,
    WorkerList,
    Health,
    CommandDone,
    CommandPending,
    Error,
)
