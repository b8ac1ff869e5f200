"""The event schema: every fact hookline records, declared once.

Each event is a frozen msgspec Struct in one tagged union (tag field ``type``) with a
schema version ``v``. Add fields only with defaults; a breaking change adds a new
class and upcasts the old one at decode time, so handlers see one shape.
"""

from __future__ import annotations

import re
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


# A handler is named by import path, ``package.module:function`` (checked by the
# dispatcher's config and by the worker before it imports anything).
HANDLER_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class CommandRun(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="command"):
    """Run ``argv`` (already filled from the event) as a subprocess, no shell."""

    argv: list[str]


class HandlerRun(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="handler"):
    """Call the Python callable at ``path`` (``package.module:function``)."""

    path: str


# What a pipeline runs. A new kind of pipeline is one more Struct here (with its tag),
# one runner in the worker and one branch of the dispatcher's config.
Run = CommandRun | HandlerRun


def run_of(command: list[str] | None, handler: str | None) -> Run:
    """The run of a pipeline given as a ``command`` or a ``handler``: exactly one of them
    (the rule of the config file, and of the old JobSpec shape on the wire)."""
    if command is not None and handler is None:
        return CommandRun(argv=command)
    if handler is not None and command is None:
        return HandlerRun(path=handler)
    raise ValueError(
        "needs exactly one of `command` (an argv list) or `handler` ('module:function')"
    )


class JobSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a job runs (``run``; None: nothing, which the worker refuses) and under which
    policy; resolved by the dispatcher from its routes.

    Entries written before ``run`` existed carry ``command`` / ``handler`` instead; they
    are upcast here, at decode time, so every reader sees ``run`` only. The two old
    fields are never written again (None, omitted)."""

    pipeline: str
    queue: str = DEFAULT_QUEUE
    run: Run | None = None
    timeout: float = 1800.0
    env: dict[str, str] = msgspec.field(default_factory=dict)
    retries: int = 3
    backoff: Backoff = msgspec.field(default_factory=Backoff)
    no_retry_on: list[str] = msgspec.field(default_factory=list)
    result_ttl: float = 86400.0
    failure_ttl: float = 604800.0
    not_before: datetime | None = None
    old_command: list[str] | None = msgspec.field(default=None, name="command")
    old_handler: str | None = msgspec.field(default=None, name="handler")

    def __post_init__(self) -> None:
        if self.old_command is not None or self.old_handler is not None:
            try:
                run = run_of(self.old_command, self.old_handler)
            except ValueError:  # both: kept, so that the worker fails the job saying why
                return
            msgspec.structs.force_setattr(self, "run", run)
            msgspec.structs.force_setattr(self, "old_command", None)
            msgspec.structs.force_setattr(self, "old_handler", None)


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
