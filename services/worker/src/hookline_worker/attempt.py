"""One attempt of a job: its events, running it through its runner under the job's
timeout, and recording its end (``job.finished`` + XACK in one transaction)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from hookline import clock
from hookline.committer import Committer
from hookline.events import JobError, JobFinished, JobQueued, JobStarted, Outcome, encode
from hookline.keys import EVENT_FIELD, Keys
from hookline.redis_client import UNAVAILABLE
from hookline.retry import retry_forever
from hookline.streams import Entry, Op

from hookline_worker.context import JobContext
from hookline_worker.metrics import WorkerMetrics
from hookline_worker.runners import Runner, RunResult

# Why a running attempt was stopped: only a timeout and a cancel end it (recorded);
# a lost lease or a shutdown leaves its entry unacknowledged for another worker.
StopReason = Literal["timeout", "canceled", "lease_lost", "shutdown"]


@dataclass(slots=True, eq=False)
class Attempt:
    """One attempt in progress."""

    entry: Entry
    job: JobQueued
    attempt: int
    started_at: datetime
    clock: float  # monotonic time it began
    runner: Runner
    task: asyncio.Task[None] | None = None
    stop_reason: StopReason | None = None
    recording: bool = False  # ran to its end; its job.finished is being committed

    @property
    def key(self) -> tuple[str, str]:
        return self.entry.stream, self.entry.entry_id

    @property
    def stoppable(self) -> bool:
        return not self.recording and self.stop_reason is None and self.task is not None

    def stop(self, reason: StopReason) -> None:
        """Stop it (once); one that already ended and is being recorded is left be."""
        if self.stoppable:
            self.stop_reason = reason
            assert self.task is not None
            self.task.cancel()


def started_event(attempt: Attempt, worker: str) -> JobStarted:
    job = attempt.job
    return JobStarted(
        job_id=job.job_id,
        delivery_id=job.delivery_id,
        attempt=attempt.attempt,
        queue=job.spec.queue,
        pipeline=job.spec.pipeline,
        worker=worker,
        occurred_at=attempt.started_at,
    )


def finished_event(
    job: JobQueued,
    attempt: int,
    worker: str,
    *,
    outcome: Outcome = "failed",
    result: Any = None,
    error: JobError | None = None,
    started_at: datetime | None = None,
    duration: float | None = None,
    occurred_at: datetime,
) -> JobFinished:
    spec = job.spec
    return JobFinished(
        occurred_at=occurred_at,
        job_id=job.job_id,
        delivery_id=job.delivery_id,
        attempt=attempt,
        outcome=outcome,
        queue=spec.queue,
        pipeline=spec.pipeline,
        worker=worker,
        result=result,
        error=error,
        started_at=started_at,
        duration=duration,
        result_ttl=spec.result_ttl,
        failure_ttl=spec.failure_ttl,
        meta=job.meta,
    )


def ended_event(
    attempt: Attempt, worker: str, outcome: RunResult | None, duration: float, now: datetime
) -> JobFinished:
    """The ``job.finished`` of an attempt that ran to its end at ``now``, timed out or was
    canceled (``outcome`` None)."""
    spec = attempt.job.spec
    if attempt.stop_reason == "timeout":
        message = f"{attempt.runner.kind} ran longer than {spec.timeout:g}s"
        outcome = RunResult(False, error=JobError(type="Timeout", message=message))
    if attempt.stop_reason == "canceled" or outcome is None:
        return finished_event(
            attempt.job,
            attempt.attempt,
            worker,
            outcome="canceled",
            started_at=attempt.started_at,
            duration=duration,
            occurred_at=now,
        )
    return finished_event(
        attempt.job,
        attempt.attempt,
        worker,
        outcome="finished" if outcome.ok else "failed",
        result=outcome.result,
        error=outcome.error,
        started_at=attempt.started_at,
        duration=duration,
        occurred_at=now,
    )


class Attempts:
    """Runs attempts for one worker, records how each ended and counts them."""

    def __init__(
        self,
        *,
        worker: str,
        keys: Keys,
        committer: Committer,
        metrics: WorkerMetrics,
        artifacts: Path,
        log: Any,
        monotonic: Callable[[], float] = clock.monotonic,
        utcnow: Callable[[], datetime] = clock.utcnow,
    ) -> None:
        self.worker = worker
        self.keys = keys
        self.committer = committer
        self.metrics = metrics
        self.artifacts = artifacts
        self.log = log
        self.monotonic = monotonic
        self.utcnow = utcnow
        self.done = 0
        self.failed = 0

    async def execute(self, attempt: Attempt) -> None:
        """Run the attempt; record its end unless it was stopped for a shutdown or a lost
        lease (then it raises CancelledError, its entry left unacknowledged)."""
        spec = attempt.job.spec
        loop = asyncio.get_running_loop()
        timer = loop.call_later(spec.timeout, attempt.stop, "timeout")
        outcome: RunResult | None
        try:
            outcome = await attempt.runner(self.context(attempt))
        except asyncio.CancelledError:
            if attempt.stop_reason not in ("timeout", "canceled"):
                raise  # shutdown or lease lost: unacknowledged, another worker runs it
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            outcome = None
        finally:
            timer.cancel()
        attempt.recording = True
        duration = self.monotonic() - attempt.clock
        finished = ended_event(attempt, self.worker, outcome, duration, self.utcnow())
        # Not shielded: only Attempt.stop cancels a job task, and never once recording.
        await self.record(attempt.entry, finished)
        self.metrics.job_done(spec.queue, spec.pipeline, finished.outcome, duration)
        self.done += 1
        if finished.outcome != "finished":
            self.failed += finished.outcome == "failed"
            self.log.info("job_ended", outcome=finished.outcome, duration=round(duration, 3))

    async def record(self, entry: Entry, finished: JobFinished) -> None:
        """Append ``job.finished`` and acknowledge in one transaction, retrying while
        Redis is away: the job ran, so its end must not be lost to a blip."""
        op: Op = ("XADD", self.keys.job_finished, "*", EVENT_FIELD, encode(finished))
        try:  # the usual case, without the cost of setting up the retry loop per job
            await self.committer.submit([op], entry)
        except UNAVAILABLE:
            await self._record_retrying(op, entry)

    async def _record_retrying(self, op: Op, entry: Entry) -> None:
        written = asyncio.Event()

        async def write() -> None:
            await self.committer.submit([op], entry)
            written.set()

        await retry_forever(write, stop=written, what="record")

    def context(self, attempt: Attempt) -> JobContext:
        job = attempt.job
        return JobContext(
            job_id=job.job_id,
            delivery_id=job.delivery_id,
            attempt=attempt.attempt,
            queue=job.spec.queue,
            pipeline=job.spec.pipeline,
            worker=self.worker,
            meta=job.meta,
            artifacts_root=self.artifacts,
            raw_payload=job.payload,
            base_log=self.log,
        )
