"""What becomes of an entry read from a queue: an attempt to run, an entry set aside
(poison, or a job that cannot run), or a job whose workers kept dying ("worker lost").
Pure: the worker loop does the writing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from hookline.errors import PipelineError
from hookline.events import JobError, JobFinished, JobQueued, JobSpec
from hookline.streams import Entry, Poison, decode_entry

from hookline_worker import decisions
from hookline_worker.attempt import Attempt, finished_event
from hookline_worker.runners import Runner


@dataclass(frozen=True, slots=True)
class SetAside:
    """Dead-letter the entry (with its job's failure, when it is a job) and ack it."""

    reason: str
    finished: JobFinished | None = None


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """Delivered past ``max_deliveries`` without finishing: the job ends failed (unless
    it was canceled meanwhile) and the entry is set aside."""

    job: JobQueued
    reason: str
    finished: JobFinished


Intake = Attempt | SetAside | WorkerLost


def admit(
    entry: Entry,
    *,
    worker: str,
    max_deliveries: int,
    runner_for: Callable[[JobSpec], Runner],
    now: datetime,
    clock: float,
) -> Intake:
    """The delivery count is checked before anything decodes the entry: one delivery
    past the limit is still decoded (to record its job as worker lost), past that it is
    set aside unread, so an entry whose decoding kills the worker cannot come back
    forever. Any failure to decode sets it aside."""
    if entry.data is None:
        return SetAside("the entry was trimmed from its stream before it ran")
    event = decode_entry(entry, max_deliveries + 1)
    if isinstance(event, Poison):
        return SetAside(event.reason)
    if not isinstance(event, JobQueued):
        return SetAside(f"not a job.queued event: {event.__class__.__name__}")
    attempt = decisions.run_attempt(event.attempt, entry.deliveries)
    problem = decisions.job_id_problem(event.job_id) or decisions.spec_problem(event.spec)
    if problem is None:
        try:
            runner = runner_for(event.spec)
        except PipelineError as exc:
            problem = str(exc)
    if problem is not None:
        error = JobError(type="InvalidPipeline", message=problem, retryable=False)
        ended = finished_event(event, attempt, worker, error=error, occurred_at=now)
        return SetAside(problem, ended)
    if decisions.worker_lost(entry.deliveries, max_deliveries):
        reason = (
            f"worker lost: delivered {entry.deliveries} times without finishing "
            f"(max_deliveries {max_deliveries})"
        )
        error = JobError(type="WorkerLost", message=reason, retryable=False)
        ended = finished_event(event, attempt, worker, error=error, occurred_at=now)
        return WorkerLost(event, reason, ended)
    return Attempt(entry, event, attempt, now, clock, runner)
