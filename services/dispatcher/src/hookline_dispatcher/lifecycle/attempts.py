"""What the end of an attempt does to its job: record it, schedule the retry, or move
the job to the dead-letter stream with its whole history. Pure."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import msgspec
from hookline.events import (
    AttemptRecord,
    DeadLetter,
    JobDeferred,
    JobFinished,
    JobQueued,
    JobSpec,
    encode_dead_letter,
)
from hookline.keys import EVENT_FIELD, GROUP_DISPATCHER, Keys

from hookline_dispatcher.lifecycle.records import (
    RUNNABLE,
    JobState,
    Plan,
    delayed_data,
    end_ops,
    lost_records,
    member_of,
    ms,
    next_attempt,
    record_of,
    state_fields,
    xadd,
)
from hookline_dispatcher.policy import GiveUp, decide_retry

_encoder = msgspec.json.Encoder()


def on_finished(
    keys: Keys,
    state: JobState | None,
    finished: JobFinished,
    source: tuple[str, str],
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> Plan:
    """A worker (or this dispatcher) ended a run of the job's queued entry: record it,
    schedule the retry, or move the job to the dead-letter stream with its whole history.

    Every run of the entry is an attempt: a run reclaimed after its worker died, lost
    its lease or handed it back is numbered past the queued attempt, and the runs that
    never ended count against the retries and appear in the history as ``RunLost``.
    """
    if finished.outcome == "skipped":
        return Plan()
    if state is None or state.phase not in RUNNABLE or finished.attempt < state.queued.attempt:
        return Plan()  # stale (an older entry's run, a duplicate) or unknown: nothing to do
    lost = lost_records(state, finished.attempt)
    state = replace(state, attempt=max(state.attempt, finished.attempt))
    record = record_of(finished)
    if finished.outcome != "failed":
        return Plan(end_ops(keys, state, finished.outcome, record), note=finished.outcome)
    decision = decide_retry(
        state.spec,
        state.attempt,
        state.first_attempt,
        finished.error,
        canceling=state.cancel >= state.queued.attempt,
        rand=rand,
    )
    history = sorted([*lost, record], key=lambda r: r.attempt)
    if isinstance(decision, GiveUp):
        return give_up(keys, state, record, decision.reason, source, now, history)
    not_before = datetime.fromtimestamp(now.timestamp() + decision.delay, UTC)
    # The attempt's job.queued is appended when due, and says so.
    upcoming = next_attempt(state, history, not_before)
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
    runs: list[AttemptRecord] | None = None,
) -> Plan:
    """Dead-letter the job whose run ended as ``record``; ``runs`` are its current
    entry's runs (``record`` and the runs lost before it), in attempt order."""
    history = JobHistory(
        job_id=state.job_id,
        delivery_id=state.queued.delivery_id,
        pipeline=state.spec.pipeline,
        queue=state.spec.queue,
        reason=reason,
        spec=state.spec,
        meta=state.queued.meta,
        created_at=state.queued.created_at,
        attempts=[*state.queued.history, *(runs or [record])],
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
