"""Operator commands: what requeue, cancel and purge do to the jobs they name, and the
answer their sender gets. Pure: the jobs' states (read under WATCH by the caller) in,
an :class:`Answer` out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hookline.events import (
    AttemptRecord,
    FailedPurgeRequested,
    JobCancelRequested,
    JobFinished,
    JobPurged,
)
from hookline.keys import Keys
from hookline.lua import Op

from hookline_dispatcher.lifecycle.records import (
    ACTIVE,
    CANCEL_TTL_DEFAULT,
    JobState,
    Phase,
    Plan,
    end_ops,
    next_attempt,
    state_fields,
    xadd,
)

# The most failed jobs one `requeue --all` or `empty failed` handles (the answer says
# when more remain, and the command can simply be sent again).
MAX_BULK = 1000
MORE_REMAIN = " (more remain: send the command again)"


@dataclass(slots=True)
class Answer:
    """What a command does (its plan), whether it was accepted, and the answer's text."""

    plan: Plan = field(default_factory=Plan)
    ok: bool = False
    message: str = ""


@dataclass(frozen=True, slots=True)
class Known:
    """A job named by a command, as read: its state, or (without one) the phase its
    record still names (``skipped``) or None (never seen, or expired)."""

    job_id: str
    state: JobState | None
    phase: Phase | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The failed jobs a bulk command acts on, oldest first (at most MAX_BULK), and
    whether more remain."""

    states: list[JobState]
    more: bool = False


def cancel_job(keys: Keys, job: Known, command: JobCancelRequested, now: datetime) -> Answer:
    state, job_id = job.state, job.job_id
    if state is None:
        return Answer(message=unknown(job))
    if state.phase == "canceled":
        return Answer(ok=True, message=f"job {job_id} is already canceled")
    if state.phase in ("finished", "failed", "skipped"):
        return Answer(message=f"job {job_id} already ended {state.phase}: nothing to cancel")
    if state.phase == "started" and state.cancel >= state.attempt:
        return Answer(
            ok=True, message=f"job {job_id}: cancel already sent to attempt {state.attempt}"
        )
    by = command.requested_by or "an operator"
    reason = (
        f"superseded ({by.removeprefix('supersede: ')})"
        if by.startswith("supersede:")
        else f"canceled by {by}"
    )
    plan = cancel(keys, state, reason, now)
    plan.job_ids = [job_id]
    return Answer(plan, True, f"job {job_id}: {plan.note}")


def requeue_job(keys: Keys, job: Known, now: datetime) -> Answer:
    state, job_id = job.state, job.job_id
    if state is None:
        return Answer(message=unknown(job))
    if state.phase in ACTIVE:
        return Answer(
            message=f"job {job_id} is {state.phase} (attempt {state.attempt}): not requeued"
        )
    plan = requeue(keys, state, now)
    return Answer(plan, True, f"job {job_id}: {plan.note}")


def requeue_failed(keys: Keys, failed: Failed, queue: str | None, now: datetime) -> Answer:
    plan = merge([requeue(keys, s, now) for s in failed.states])
    return Answer(plan, True, f"requeued {len(failed.states)} failed job(s){_tail(failed, queue)}")


def purge_failed(
    keys: Keys, failed: Failed, command: FailedPurgeRequested, now: datetime
) -> Answer:
    plan = merge([purge(keys, s, command.requested_by, now) for s in failed.states])
    plan.job_ids = [s.job_id for s in failed.states]
    count = len(failed.states)
    return Answer(plan, True, f"purged {count} failed job(s){_tail(failed, command.queue)}")


def unknown(job: Known) -> str:
    """Why there is nothing to do for a job without a state: skipped, or never seen."""
    if job.phase == "skipped":
        return f"job {job.job_id} was skipped (no route ran a pipeline): nothing to do"
    return f"job {job.job_id} is unknown (or its record expired)"


def _tail(failed: Failed, queue: str | None) -> str:
    where = f" on queue {queue}" if queue else ""
    return where + (MORE_REMAIN if failed.more else "")


def merge(plans: list[Plan]) -> Plan:
    merged = Plan()
    for plan in plans:
        merged.ops += plan.ops
        merged.queued += plan.queued
        merged.job_ids += plan.job_ids
    return merged


def requeue(keys: Keys, state: JobState, now: datetime) -> Plan:
    """A new attempt of an ended job, with a fresh set of retries."""
    upcoming = next_attempt(state, [state.last] if state.last else [], now)
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
