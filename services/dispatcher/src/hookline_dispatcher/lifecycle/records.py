"""A job as the dispatcher records it, and the writes every decision is made of. Pure.

The record lives in a hash of the dispatcher's own (``keys.dispatcher_job``), written
only in the transaction that appends the event it reflects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast, get_args

import msgspec
from hookline.events import AttemptRecord, Event, JobFinished, JobQueued, JobSpec, encode
from hookline.keys import EVENT_FIELD, Keys
from hookline.text import text

Op = tuple[object, ...]

# Where a job's current attempt stands (the record's ``phase`` field).
Phase = Literal["queued", "deferred", "started", "finished", "failed", "canceled", "skipped"]
# How an attempt ended for good, as the record says.
Ended = Literal["finished", "failed", "canceled"]

PHASES: frozenset[str] = frozenset(get_args(Phase))
ACTIVE: frozenset[Phase] = frozenset({"queued", "deferred", "started"})
ENDED: frozenset[Phase] = frozenset({"finished", "failed", "canceled"})
CANCEL_TTL_DEFAULT = 86400.0
HISTORY_TRACEBACK = 4000  # characters of each earlier attempt's traceback kept

_queued_decoder = msgspec.json.Decoder(JobQueued)
_record_decoder = msgspec.json.Decoder(AttemptRecord)
_encoder = msgspec.json.Encoder()


def phase_of(value: Any) -> Phase:
    """A record's ``phase`` field (bytes from Redis) as a :data:`Phase`."""
    phase = text(value)
    if phase not in PHASES:
        raise ValueError(f"unknown job phase {phase!r}")
    return cast(Phase, phase)


@dataclass(frozen=True, slots=True)
class JobState:
    """One job as the dispatcher knows it (decoded from its hash)."""

    job_id: str
    phase: Phase
    attempt: int
    first_attempt: int
    queued: JobQueued
    member: str = ""
    worker: str = ""
    cancel: int = 0
    last: AttemptRecord | None = None

    @classmethod
    def load(cls, job_id: str, raw: Mapping[Any, Any]) -> JobState | None:
        if not raw or b"template" not in raw:
            return None
        fields = {text(k): v for k, v in raw.items()}
        last = fields.get("last")
        return cls(
            job_id=job_id,
            phase=phase_of(fields["phase"]),
            attempt=int(fields["attempt"]),
            first_attempt=int(fields.get("first", b"1")),
            queued=_queued_decoder.decode(fields["template"]),
            member=text(fields.get("member", b"")),
            worker=text(fields.get("worker", b"")),
            cancel=int(fields.get("cancel", b"0") or 0),
            last=_record_decoder.decode(last) if last else None,
        )

    @property
    def spec(self) -> JobSpec:
        return self.queued.spec


@dataclass(slots=True)
class Plan:
    """Writes to commit (with the entry's XACK) and what they did, for logs and metrics."""

    ops: list[Op] = field(default_factory=list)
    note: str = ""
    retried: str | None = None  # pipeline of a scheduled retry
    dead: bool = False
    queued: list[JobQueued] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)


def xadd(stream: str, event: Event) -> Op:
    return ("XADD", stream, "*", EVENT_FIELD, encode(event))


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def member_of(job_id: str, attempt: int) -> str:
    return f"{job_id}:{attempt}"


def delayed_data(stream: str, job_id: str, event: Event) -> bytes:
    """What the due-job mover appends: ``<stream>\\n<job id>\\n<encoded event>``."""
    return f"{stream}\n{job_id}\n".encode() + encode(event)


def state_fields(queued: JobQueued, phase: Phase, first_attempt: int, **extra: str) -> list[object]:
    """HSET arguments recording ``queued`` as the job's current attempt."""
    values: dict[str, object] = {
        "phase": phase,
        "attempt": queued.attempt,
        "first": first_attempt,
        "queue": queued.spec.queue,
        "pipeline": queued.spec.pipeline,
        "template": encode(queued),
        "member": "",
        "worker": "",
        **extra,
    }
    return [item for pair in values.items() for item in pair]


def ttl_ms(spec: JobSpec, outcome: Ended) -> int:
    seconds = spec.failure_ttl if outcome in ("failed", "canceled") else spec.result_ttl
    return max(1, int(seconds * 1000))


def record_of(finished: JobFinished) -> AttemptRecord:
    """The summary of an ended attempt carried on later attempts (its traceback's tail
    only, so a job with many retries stays small)."""
    error = finished.error
    if error is not None and error.traceback and len(error.traceback) > HISTORY_TRACEBACK:
        error = msgspec.structs.replace(error, traceback=error.traceback[-HISTORY_TRACEBACK:])
    return AttemptRecord(
        attempt=finished.attempt,
        outcome=finished.outcome,
        error=error,
        worker=finished.worker,
        started_at=finished.started_at,
        ended_at=finished.occurred_at,
        duration=finished.duration,
        reason=finished.reason,
    )


def encode_record(record: AttemptRecord) -> bytes:
    return _encoder.encode(record)


def end_ops(keys: Keys, state: JobState, outcome: Ended, record: AttemptRecord) -> list[Op]:
    """Record that the job's current attempt ended for good."""
    key = keys.dispatcher_job(state.job_id)
    return [
        ("HSET", key, "phase", outcome, "member", "", "last", _encoder.encode(record)),
        ("PEXPIRE", key, ttl_ms(state.spec, outcome)),
    ]


def next_attempt(state: JobState, extra: AttemptRecord | None, now: datetime) -> JobQueued:
    """The job.queued of the attempt after the state's current one."""
    history = list(state.queued.history)
    if extra is not None:
        history.append(extra)
    return JobQueued(
        job_id=state.job_id,
        delivery_id=state.queued.delivery_id,
        attempt=state.attempt + 1,
        spec=msgspec.structs.replace(state.spec, not_before=None),
        meta=state.queued.meta,
        payload=state.queued.payload,
        created_at=state.queued.created_at,
        history=history,
        occurred_at=now,
    )
