"""The event schema: every fact hookline records, declared once.

Each event is a frozen msgspec Struct in one tagged union (tag field ``type``) with a
schema version ``v``. Add fields only with defaults; a breaking change adds a new
class and upcasts the old one at decode time, so handlers see one shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from hookline.clock import utcnow
from hookline.ids import new_event_id
from hookline.keys import DEFAULT_QUEUE

Outcome = Literal["finished", "failed", "canceled", "skipped"]
Meta = dict[str, str | int | bool | None]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event: its own id, when it happened, and a schema version."""

    v: int = 1
    event_id: str = msgspec.field(default_factory=new_event_id)
    occurred_at: datetime = msgspec.field(default_factory=utcnow)


class JobError(msgspec.Struct, frozen=True, kw_only=True):
    """Why an attempt failed: the error's type, message and the tail of its traceback."""

    type: str
    message: str
    traceback: str | None = None
    retryable: bool = True


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Delay between attempts: ``exponential`` (full jitter) from ``base`` up to ``cap``,
    or ``fixed`` at ``base``."""

    kind: Literal["exponential", "fixed"] = "exponential"
    base: float = 5.0
    cap: float = 600.0


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a job runs and under which policy; resolved by the dispatcher from its routes."""

    pipeline: str
    queue: str = DEFAULT_QUEUE
    command: list[str] | None = None
    handler: str | None = None
    timeout: float = 1800.0
    env: dict[str, str] = msgspec.field(default_factory=dict)
    retries: int = 3
    backoff: Backoff = msgspec.field(default_factory=Backoff)
    no_retry_on: list[str] = msgspec.field(default_factory=list)
    result_ttl: float = 86400.0
    failure_ttl: float = 604800.0
    not_before: datetime | None = None


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True):
    """How one earlier attempt of a job ended, carried forward on the next attempt."""

    attempt: int
    outcome: Outcome
    error: JobError | None = None
    worker: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration: float | None = None
    reason: str | None = None


class WebhookReceived(Event, frozen=True, kw_only=True, tag="webhook.received"):
    """Ingress accepted one GitHub delivery (written once per delivery id)."""

    delivery_id: str
    job_id: str
    event: str
    action: str | None = None
    repository: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"{}")


class JobQueued(Event, frozen=True, kw_only=True, tag="job.queued"):
    """Attempt ``attempt`` of a job is ready for a worker on ``spec.queue``."""

    job_id: str
    delivery_id: str
    attempt: int = 1
    spec: JobSpec
    meta: Meta = msgspec.field(default_factory=dict)
    payload: msgspec.Raw = msgspec.Raw(b"{}")
    created_at: datetime | None = None
    history: list[AttemptRecord] = msgspec.field(default_factory=list)


class JobStarted(Event, frozen=True, kw_only=True, tag="job.started"):
    """A worker began running attempt ``attempt`` of a job."""

    job_id: str
    delivery_id: str
    attempt: int
    queue: str
    pipeline: str
    worker: str


class JobFinished(Event, frozen=True, kw_only=True, tag="job.finished"):
    """Attempt ``attempt`` of a job ended; ``skipped`` means no route matched."""

    job_id: str
    delivery_id: str
    attempt: int
    outcome: Outcome
    queue: str | None = None
    pipeline: str | None = None
    worker: str | None = None
    result: Any = None
    error: JobError | None = None
    reason: str | None = None
    started_at: datetime | None = None
    duration: float | None = None
    result_ttl: float = 86400.0
    failure_ttl: float = 604800.0
    meta: Meta = msgspec.field(default_factory=dict)


class JobDeferred(Event, frozen=True, kw_only=True, tag="job.deferred"):
    """Attempt ``attempt`` of a job waits until ``not_before`` (a retry or a delay)."""

    job_id: str
    delivery_id: str
    attempt: int
    queue: str
    pipeline: str
    not_before: datetime
    reason: str | None = None


class JobPurged(Event, frozen=True, kw_only=True, tag="job.purged"):
    """An operator purged this failed job: every record of it may be forgotten."""

    job_id: str
    delivery_id: str
    attempt: int
    queue: str | None = None
    requested_by: str | None = None


class JobRequeueRequested(Event, frozen=True, kw_only=True, tag="job.requeue_requested"):
    """An operator asks for a new attempt of one job (``job_id``), or of every failed job
    (``all_failed``, optionally only on ``queue``)."""

    job_id: str | None = None
    all_failed: bool = False
    queue: str | None = None
    requested_by: str | None = None


class JobCancelRequested(Event, frozen=True, kw_only=True, tag="job.cancel_requested"):
    """An operator asks to cancel a queued, deferred or running job."""

    job_id: str
    requested_by: str | None = None


class FailedPurgeRequested(Event, frozen=True, kw_only=True, tag="failed.purge_requested"):
    """An operator asks to forget every failed job (optionally only on ``queue``)."""

    queue: str | None = None
    requested_by: str | None = None


Command = JobRequeueRequested | JobCancelRequested | FailedPurgeRequested

AnyEvent = (
    WebhookReceived
    | JobQueued
    | JobStarted
    | JobFinished
    | JobDeferred
    | JobPurged
    | JobRequeueRequested
    | JobCancelRequested
    | FailedPurgeRequested
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes) -> AnyEvent:
    """Decode one stream entry; raises ``msgspec.DecodeError`` (incl. validation errors)."""
    return _decoder.decode(data)


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """An entry a consumer could not handle, kept with the reason it was set aside."""

    source_stream: str
    source_id: str
    group: str
    reason: str
    data: str
    occurred_at: datetime = msgspec.field(default_factory=utcnow)
    job_id: str | None = None


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return _encoder.encode(letter)


class CommandAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What the dispatcher did with a command (``command_id`` is the command's event id)."""

    command_id: str
    ok: bool
    message: str
    job_ids: list[str] = msgspec.field(default_factory=list)


_answer_decoder = msgspec.json.Decoder(CommandAnswer)


def encode_answer(answer: CommandAnswer) -> bytes:
    return _encoder.encode(answer)


def decode_answer(data: bytes) -> CommandAnswer:
    return _answer_decoder.decode(data)
