"""The dispatcher's record of each job and the decisions it takes on it. Pure: a job's
state and an event in, the Redis writes (and the answer) out.

The record lives in a hash of the dispatcher's own (``keys.dispatcher_job``), written
only in the transaction that appends the event it reflects. ``phase`` is one of
queued, deferred, started, finished, failed, canceled, skipped.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from hookline.events import (
    AttemptRecord,
    DeadLetter,
    Event,
    JobDeferred,
    JobFinished,
    JobPurged,
    JobQueued,
    JobSpec,
    encode,
    encode_dead_letter,
)
from hookline.keys import EVENT_FIELD, GROUP_DISPATCHER, Keys

from hookline_dispatcher.policy import GiveUp, decide_retry

Op = tuple[object, ...]

ACTIVE = frozenset({"queued", "deferred", "started"})
ENDED = frozenset({"finished", "failed", "canceled"})
CANCEL_TTL_DEFAULT = 86400.0
HISTORY_TRACEBACK = 4000  # characters of each earlier attempt's traceback kept

_queued_decoder = msgspec.json.Decoder(JobQueued)
_record_decoder = msgspec.json.Decoder(AttemptRecord)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class JobState:
    """One job as the dispatcher knows it (decoded from its hash)."""

    job_id: str
    phase: str
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
        text = {k.decode(): v for k, v in raw.items()}
        last = text.get("last")
        return cls(
            job_id=job_id,
            phase=text["phase"].decode(),
            attempt=int(text["attempt"]),
            first_attempt=int(text.get("first", b"1")),
            queued=_queued_decoder.decode(text["template"]),
            member=text.get("member", b"").decode(),
            worker=text.get("worker", b"").decode(),
            cancel=int(text.get("cancel", b"0") or 0),
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


def state_fields(queued: JobQueued, phase: str, first_attempt: int, **extra: str) -> list[object]:
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


def ttl_ms(spec: JobSpec, outcome: str) -> int:
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


def end_ops(keys: Keys, state: JobState, outcome: str, record: AttemptRecord) -> list[Op]:
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


# -- worker events ---------------------------------------------------------------------


def on_finished(
    keys: Keys,
    state: JobState | None,
    finished: JobFinished,
    source: tuple[str, str],
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> Plan:
    """A worker (or this dispatcher) ended an attempt: record it, schedule the retry,
    or move the job to the dead-letter stream with its whole history."""
    if finished.outcome == "skipped":
        return Plan()
    if state is None or state.attempt != finished.attempt or state.phase in ENDED:
        return Plan()  # stale (an older attempt, a duplicate) or unknown: nothing to do
    record = record_of(finished)
    if finished.outcome != "failed":
        return Plan(end_ops(keys, state, finished.outcome, record), note=finished.outcome)
    decision = decide_retry(
        state.spec,
        finished.attempt,
        state.first_attempt,
        finished.error,
        canceling=state.cancel >= finished.attempt,
        rand=rand,
    )
    if isinstance(decision, GiveUp):
        return give_up(keys, state, record, decision.reason, source, now)
    not_before = datetime.fromtimestamp(now.timestamp() + decision.delay, UTC)
    # The attempt's job.queued is appended when due, and says so.
    upcoming = next_attempt(state, record, not_before)
    plan = defer_ops(keys, upcoming, not_before, decision.reason, state.first_attempt, now)
    plan.retried = state.spec.pipeline
    plan.note = f"retry scheduled in {decision.delay:.3f}s"
    return plan


def defer_ops(
    keys: Keys,
    upcoming: JobQueued,
    not_before: datetime,
    reason: str,
    first_attempt: int,
    now: datetime,
) -> Plan:
    """Keep ``upcoming`` in the delayed set until ``not_before``; status shows deferred."""
    member = member_of(upcoming.job_id, upcoming.attempt)
    stream = keys.job_queued(upcoming.spec.queue)
    deferred = JobDeferred(
        job_id=upcoming.job_id,
        delivery_id=upcoming.delivery_id,
        attempt=upcoming.attempt,
        queue=upcoming.spec.queue,
        pipeline=upcoming.spec.pipeline,
        not_before=not_before,
        reason=reason,
        occurred_at=now,
    )
    key = keys.dispatcher_job(upcoming.job_id)
    return Plan(
        [
            ("HSET", key, *state_fields(upcoming, "deferred", first_attempt, member=member)),
            ("PERSIST", key),
            ("ZADD", keys.delayed, ms(not_before), member),
            ("HSET", keys.delayed_events, member, delayed_data(stream, upcoming.job_id, upcoming)),
            ("SADD", keys.queues, upcoming.spec.queue),
            xadd(keys.job_deferred, deferred),
        ]
    )


class JobHistory(msgspec.Struct, frozen=True, kw_only=True):
    """A dead job as kept in the dead-letter stream: what it ran and how each attempt ended."""

    job_id: str
    delivery_id: str
    pipeline: str
    queue: str
    reason: str
    spec: JobSpec
    meta: dict[str, str | int | bool | None]
    created_at: datetime | None
    attempts: list[AttemptRecord]


def give_up(
    keys: Keys,
    state: JobState,
    record: AttemptRecord,
    reason: str,
    source: tuple[str, str],
    now: datetime,
) -> Plan:
    history = JobHistory(
        job_id=state.job_id,
        delivery_id=state.queued.delivery_id,
        pipeline=state.spec.pipeline,
        queue=state.spec.queue,
        reason=reason,
        spec=state.spec,
        meta=state.queued.meta,
        created_at=state.queued.created_at,
        attempts=[*state.queued.history, record],
    )
    letter = DeadLetter(
        source_stream=source[0],
        source_id=source[1],
        group=GROUP_DISPATCHER,
        reason=f"job {state.job_id} failed for good: {reason}",
        data=_encoder.encode(history).decode(),
        occurred_at=now,
        job_id=state.job_id,
    )
    ops = [
        *end_ops(keys, state, "failed", record),
        ("ZADD", keys.dispatcher_failed, ms(now), state.job_id),
        ("XADD", keys.dead_letter, "*", EVENT_FIELD, encode_dead_letter(letter)),
    ]
    return Plan(ops, note=f"failed for good: {reason}", dead=True)


# -- operator commands -------------------------------------------------------------------


def requeue(keys: Keys, state: JobState, now: datetime) -> Plan:
    """A new attempt of an ended job, with a fresh set of retries."""
    upcoming = next_attempt(state, state.last, now)
    key = keys.dispatcher_job(state.job_id)
    plan = Plan(
        [
            ("HSET", key, *state_fields(upcoming, "queued", upcoming.attempt)),
            ("HDEL", key, "last", "cancel"),
            ("PERSIST", key),
            ("ZREM", keys.dispatcher_failed, state.job_id),
            ("SADD", keys.queues, upcoming.spec.queue),
            xadd(keys.job_queued(upcoming.spec.queue), upcoming),
        ],
        note=f"attempt {upcoming.attempt} queued on {upcoming.spec.queue}",
    )
    plan.queued.append(upcoming)
    plan.job_ids.append(state.job_id)
    return plan


def cancel(keys: Keys, state: JobState, reason: str, now: datetime) -> Plan:
    """The cancel protocol: the cancel key and a control message for every cancel; a
    queued or deferred attempt also ends ``canceled`` here, a started one ends when its
    worker stops it."""
    spec = state.spec
    seconds = int(spec.failure_ttl) or int(CANCEL_TTL_DEFAULT)
    ops: list[Op] = [
        ("SET", keys.cancel(state.job_id), state.attempt, "EX", max(1, seconds)),
        ("PUBLISH", keys.control, state.job_id),
    ]
    key = keys.dispatcher_job(state.job_id)
    if state.phase == "started":
        ops.append(("HSET", key, "cancel", state.attempt))
        where = f" on worker {state.worker}" if state.worker else ""
        return Plan(ops, note=f"cancel sent to attempt {state.attempt}{where}")
    if state.phase == "deferred" and state.member:
        ops += [("ZREM", keys.delayed, state.member), ("HDEL", keys.delayed_events, state.member)]
    finished = JobFinished(
        job_id=state.job_id,
        delivery_id=state.queued.delivery_id,
        attempt=state.attempt,
        outcome="canceled",
        queue=spec.queue,
        pipeline=spec.pipeline,
        reason=reason,
        result_ttl=spec.result_ttl,
        failure_ttl=spec.failure_ttl,
        meta=state.queued.meta,
        occurred_at=now,
    )
    record = AttemptRecord(attempt=state.attempt, outcome="canceled", ended_at=now, reason=reason)
    ops += [*end_ops(keys, state, "canceled", record), xadd(keys.job_finished, finished)]
    return Plan(ops, note=f"{state.phase} attempt {state.attempt} canceled")


def purge(keys: Keys, state: JobState, requested_by: str | None, now: datetime) -> Plan:
    purged = JobPurged(
        job_id=state.job_id,
        delivery_id=state.queued.delivery_id,
        attempt=state.attempt,
        queue=state.spec.queue,
        requested_by=requested_by,
        occurred_at=now,
    )
    return Plan(
        [
            ("DEL", keys.dispatcher_job(state.job_id)),
            ("ZREM", keys.dispatcher_failed, state.job_id),
            xadd(keys.job_finished, purged),
        ]
    )
