"""A job as the dispatcher records it, and the writes every decision is made of. Pure.

The record lives in a hash of the dispatcher's own (``keys.dispatcher_job``), written
only in the transaction that appends the event it reflects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast, get_args

import msgspec
from hookline.events import (
    AttemptRecord,
    Event,
    JobError,
    JobFinished,
    JobQueued,
    JobSpec,
    encode,
)
from hookline.keys import EVENT_FIELD, Keys
from hookline.lua import Op
from hookline.text import text

# Where a job's current attempt stands (the record's ``phase`` field).
Phase = Literal["queued", "deferred", "started", "finished", "failed", "canceled", "skipped"]
# How an attempt ended for good, as the record says.
Ended = Literal["finished", "failed", "canceled"]

PHASES: frozenset[str] = frozenset(get_args(Phase))
ACTIVE: frozenset[Phase] = frozenset({"queued", "deferred", "started"})
# The phases in which a run of the queued entry may end.
RUNNABLE: frozenset[Phase] = frozenset({"queued", "started"})
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


def lost_runs(value: Any) -> dict[int, str]:
    """The record's ``lost`` field: runs superseded by a reclaimed run, as
    ``"<attempt> <worker>\n"`` lines (mark_started.lua writes them)."""
    runs: dict[int, str] = {}
    for line in text(value).splitlines():
        attempt, _, worker = line.partition(" ")
        if attempt.isdigit():
            runs[int(attempt)] = worker
    return runs


@dataclass(frozen=True, slots=True)
class JobState:
    """One job as the dispatcher knows it (decoded from its hash). ``attempt`` is the
    highest run seen of the queued entry (``queued.attempt``): a worker numbers a
    reclaimed run past the attempt that was queued."""

    job_id: str
    phase: Phase
    attempt: int
    first_attempt: int
    queued: JobQueued
    member: str = ""
    worker: str = ""
    cancel: int = 0
    last: AttemptRecord | None = None
    lost: Mapping[int, str] = field(default_factory=dict)

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
            lost=lost_runs(fields.get("lost", b"")),
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
        "queued": queued.attempt,
        "lost": "",
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
        (
            "HSET",
            key,
            "phase",
            outcome,
            "attempt",
            state.attempt,
            "member",
            "",
            "last",
            _encoder.encode(record),
        ),
        ("PEXPIRE", key, ttl_ms(state.spec, outcome)),
    ]


def lost_records(state: JobState, ended: int) -> list[AttemptRecord]:
    """Every run of the queued entry up to the highest seen, other than run ``ended``:
    runs that never ended (their worker died, lost its lease or handed them back), as
    failed attempts in the job's history."""
    records = []
    for attempt in range(state.queued.attempt, max(state.attempt, ended) + 1):
        if attempt == ended:
            continue
        worker = state.lost.get(attempt) or (state.worker if attempt == state.attempt else "")
        message = (
            f"run {attempt} never ended: its worker died, lost its lease or shut down, "
            "and the job ran again"
        )
        records.append(
            AttemptRecord(
                attempt=attempt,
                outcome="failed",
                error=JobError(type="RunLost", message=message),
                worker=worker or None,
                reason="run lost",
            )
        )
    return records


def next_attempt(state: JobState, extra: Iterable[AttemptRecord], now: datetime) -> JobQueued:
    """The job.queued of the attempt after the state's current one, its history
    carrying ``extra`` too."""
    history = [*state.queued.history, *extra]
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
