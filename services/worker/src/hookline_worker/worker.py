"""The worker loop: read jobs in queue priority order, run up to K at once, record each
attempt's start and end, and acknowledge an entry only with its ``job.finished``.

Beside the loop run the lease keeper (renews the entries of running jobs, notices one
taken over), the cancel watcher (pub/sub plus a poll of the cancel markers) and the
heartbeat. Entries whose lease lapsed (their worker died) are claimed and run again as
a new attempt; past ``max_deliveries`` they end "worker lost".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from hookline.backoff import reconnect_delay
from hookline.clock import utcnow
from hookline.committer import Committer
from hookline.errors import PipelineError
from hookline.events import JobError, JobFinished, JobQueued, JobStarted, decode, encode
from hookline.keys import EVENT_FIELD, GROUP_WORKERS, Keys
from hookline.logs import get_logger
from hookline.records import CurrentJob, WorkerHeartbeat, to_hash
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.streams import (
    Entry,
    Op,
    claim_stale_entries,
    dead_letter_op,
    ensure_group,
    parse_entries,
    read_unless_stopped,
)
from redis.exceptions import ResponseError

from hookline_worker import decisions, rawredis
from hookline_worker.context import JobContext
from hookline_worker.leases import Leases
from hookline_worker.metrics import WorkerMetrics
from hookline_worker.runner import (
    RunResult,
    is_async,
    load_handler,
    run_command,
    run_handler,
)
from hookline_worker.settings import WorkerSettings

__all__ = ["Worker", "WorkerMetrics"]

CANCEL_POLL_EVERY = 0.5


@dataclass(slots=True, eq=False)
class Run:
    """One attempt in progress."""

    entry: Entry
    job: JobQueued
    attempt: int
    started_at: datetime
    clock: float
    handler: Callable[..., Any] | None = None
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # timeout | canceled | lease_lost | shutdown
    recording: bool = False  # ran to its end; its job.finished is being committed


class Worker:
    def __init__(self, redis: Redis, settings: WorkerSettings, metrics: WorkerMetrics) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.name = settings.worker_name
        self.metrics = metrics
        self.streams = [self.keys.job_queued(q) for q in settings.queues]
        self.committer = Committer(redis, GROUP_WORKERS, max_batch=1000, commit_fn=rawredis.commit)
        self.leases = Leases(redis, GROUP_WORKERS, self.name)
        self.running: dict[tuple[str, str], Run] = {}
        self.side: set[asyncio.Task[None]] = set()  # dead-letter and "worker lost" commits
        self.redis_ok = False
        self.state = "starting"
        self.jobs_done = 0
        self.jobs_failed = 0
        self.started_at = utcnow()
        self.renew_every, self.claim_every = decisions.lease_periods(settings.lease_timeout)
        self.lease_ms = int(settings.lease_timeout * 1000)
        self.artifacts = Path(settings.artifacts_dir)
        self.work_dir = Path(settings.work_dir)
        self.wake = asyncio.Event()
        self.log = get_logger(worker=self.name)
        metrics.watch_busy(lambda: len(self.running))

    # -- lifecycle -------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (or, with ``--burst``, until the queues are empty),
        then drain. Cancelled (a second signal): stop every job at once, hand them back."""
        self.committer.start()
        background = [
            asyncio.create_task(self._forever(self.heartbeat, self._heartbeat_every())),
            asyncio.create_task(self._forever(self.renew_leases, self.renew_every)),
            asyncio.create_task(self.cancel_watcher()),
            asyncio.create_task(self._wake_on(stop)),
        ]
        try:
            self.state = "running"
            await self._loop(stop)
            await self.drain()
        except asyncio.CancelledError:
            await self.abandon()
            raise
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.committer.close()
            await self.leave()
            self.log.info("worker_stopped", jobs_done=self.jobs_done)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake.set()

    def _heartbeat_every(self) -> float:
        return decisions.heartbeat_period(self.settings.worker_ttl)

    async def _forever(self, step: Callable[[], Coroutine[Any, Any, None]], every: float) -> None:
        while True:
            try:
                await step()
            except UNAVAILABLE:
                pass  # the main loop reports Redis being away
            except Exception:
                self.log.exception("background_step_failed", step=step.__name__)
            await asyncio.sleep(every)

    async def drain(self) -> None:
        """Let running jobs finish within the shutdown timeout; stop the rest and hand
        them back unacknowledged."""
        self.state = "draining"
        if self.running:
            self.log.info("draining", running=len(self.running))
            tasks = [run.task for run in self.running.values() if run.task is not None]
            await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout)
        await self.abandon()

    async def abandon(self) -> None:
        """Stop every running job now; a job that did not finish is never acknowledged:
        its entry goes back to the group for another worker."""
        self.state = "stopping"
        runs = list(self.running.values())
        for run in runs:
            self.stop_run(run, "shutdown")
        tasks = [run.task for run in runs if run.task is not None] + list(self.side)
        if tasks:
            # Stopped runs end within the kill grace; what is still committing (Redis
            # away) is given up on: unacknowledged, it is run again elsewhere.
            _, late = await asyncio.wait(tasks, timeout=self.settings.kill_grace + 5)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # Everything still pending for us did not finish (runs that ended are
        # acknowledged by now): stopped runs, and entries read but never started.
        with contextlib.suppress(*UNAVAILABLE):
            handed = await self.leases.hand_back_all(self.streams)
            if handed:
                self.log.warning("jobs_handed_back", count=handed)

    def stop_run(self, run: Run, reason: str) -> None:
        """Stop a run (once); one that already ended and is being recorded is left be."""
        if run.recording or run.stop_reason is not None or run.task is None:
            return
        run.stop_reason = reason
        run.task.cancel()

    # -- heartbeat ---------------------------------------------------------------
    async def heartbeat(self) -> None:
        """Publish who this worker is and what it does, for ``/workers`` and ``info``."""
        now_ms = int(time.time() * 1000)
        key = self.keys.worker(self.name)
        runs = list(self.running.values())
        beat = WorkerHeartbeat(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=list(self.settings.queues),
            concurrency=self.settings.concurrency,
            busy=len(runs),
            jobs_done=self.jobs_done,
            jobs_failed=self.jobs_failed,
            state=self.state,
            current_jobs=[
                CurrentJob(
                    job_id=run.job.job_id,
                    attempt=run.attempt,
                    queue=run.job.spec.queue,
                    pipeline=run.job.spec.pipeline,
                    started_at=run.started_at,
                )
                for run in runs[:100]
            ],
            started_at=self.started_at,
            last_heartbeat=now_ms,
            ttl=float(self.settings.worker_ttl),
        )
        async with self.redis.pipeline(transaction=True) as tx:
            tx.zadd(self.keys.workers, {self.name: now_ms})
            tx.delete(key)  # no field of an older shape lingers
            tx.hset(key, mapping=to_hash(beat))  # type: ignore[arg-type]
            tx.pexpire(key, int(self.settings.worker_ttl * 2000))
            await tx.execute()

    async def leave(self) -> None:
        """Deregister on a clean stop, so the worker count drops at once."""
        with contextlib.suppress(*UNAVAILABLE):
            await self.redis.zrem(self.keys.workers, self.name)
            await self.redis.delete(self.keys.worker(self.name))

    # -- leases and cancels ------------------------------------------------------
    async def renew_leases(self) -> None:
        cutoff = time.monotonic() - self.renew_every / 2
        held = [r.entry for r in self.running.values() if not r.recording and r.clock < cutoff]
        if not held:
            return
        for key in await self.leases.renew(held):
            run = self.running.get(key)
            if run is not None and not run.recording:
                self.log.warning("lease_lost", job_id=run.job.job_id, attempt=run.attempt)
                self.stop_run(run, "lease_lost")

    async def cancel_watcher(self) -> None:
        """Stop canceled jobs within a second: a pub/sub message is acted on at once, and
        the markers of running jobs are polled too (pub/sub drops messages on a
        reconnect)."""
        failures = 0
        last_poll = 0.0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.control)
                failures = 0
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=CANCEL_POLL_EVERY
                    )
                    if message is not None and message.get("type") == "message":
                        job_id = _text(message.get("data"))
                        runs = [r for r in self.running.values() if r.job.job_id == job_id]
                        await self.check_cancels(runs)
                    if time.monotonic() - last_poll >= CANCEL_POLL_EVERY:
                        last_poll = time.monotonic()
                        await self.check_cancels(list(self.running.values()))
            except UNAVAILABLE:
                failures += 1
                await asyncio.sleep(reconnect_delay(failures))
            finally:
                with contextlib.suppress(*UNAVAILABLE, RuntimeError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def check_cancels(self, runs: list[Run]) -> None:
        runs = [r for r in runs if not r.recording and r.stop_reason is None]
        if not runs:
            return
        markers = await self.redis.mget([self.keys.cancel(r.job.job_id) for r in runs])
        for run, marker in zip(runs, markers, strict=True):
            if decisions.cancel_applies(run.job.attempt, marker):
                self.log.info("job_cancel_received", job_id=run.job.job_id, attempt=run.attempt)
                self.stop_run(run, "canceled")

    # -- reading -------------------------------------------------------------------
    async def _loop(self, stop: asyncio.Event) -> None:
        failures = 0
        last_claim = 0.0
        while not stop.is_set():
            try:
                if not self.redis_ok:
                    for stream in self.streams:
                        await ensure_group(self.redis, stream, GROUP_WORKERS)
                    self.redis_ok = True
                    self.metrics.consumer.redis_up.set(1)
                    self.log.info("worker_ready", queues=self.settings.queues)
                free = self.settings.concurrency - len(self.running)
                if free <= 0:
                    await self._wait_for_wake(self.claim_every)
                    continue
                if time.monotonic() - last_claim >= self.claim_every:
                    last_claim = time.monotonic()
                    claimed = await self.claim(free)
                    if claimed:
                        await self.start_batch(claimed)
                        continue
                entries = await self.read(min(free, self.settings.batch), stop)
                if stop.is_set():
                    return  # entries read meanwhile are handed back by abandon()
                if entries:
                    await self.start_batch(entries)
                elif self.settings.burst and self._idle():
                    self.log.info("burst_done", jobs=self.jobs_done)
                    return
                elif self.settings.burst:
                    await self._wait_for_wake(0.05)
                failures = 0
            except ResponseError as exc:
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                self.log.warning("consumer_group_missing", error=str(exc))
                self.redis_ok = False  # the stream or group was deleted: recreate it
            except UNAVAILABLE as exc:
                failures += 1
                self.redis_ok = False
                self.metrics.consumer.redis_up.set(0)
                self.metrics.consumer.redis_errors.inc()
                delay = reconnect_delay(failures)
                self.log.warning("redis_unavailable", error=str(exc), retry_in=round(delay, 3))
                await self._wait_for_wake(delay)

    def _idle(self) -> bool:
        return not self.running and not self.side and self.committer.idle

    async def _wait_for_wake(self, timeout: float) -> None:
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wake.wait()

    async def read(self, count: int, stop: asyncio.Event) -> list[Entry]:
        """Non-blocking reads in priority order; when all are empty, block on all."""
        for stream in self.streams if len(self.streams) > 1 or self.settings.burst else ():
            reply = await self.redis.xreadgroup(
                GROUP_WORKERS, self.name, {stream: ">"}, count=count
            )
            if entries := parse_entries(reply):
                return entries
        if self.settings.burst:
            return []
        block = int(min(1.0, self.claim_every) * 1000)
        request = self.redis.xreadgroup(
            GROUP_WORKERS, self.name, dict.fromkeys(self.streams, ">"), count=count, block=block
        )
        # A stop does not wait for the blocking read: it is abandoned, and whatever it
        # had delivered is handed back with the rest of our pending entries.
        return await read_unless_stopped(request, stop)

    async def claim(self, count: int) -> list[Entry]:
        """Entries whose lease lapsed (their worker died, stalled or handed them back)."""
        claimed: list[Entry] = []
        for stream in self.streams:
            if count <= len(claimed):
                break
            entries = await claim_stale_entries(
                self.redis, stream, GROUP_WORKERS, self.name, self.lease_ms, count - len(claimed)
            )
            if entries:
                queue = self.keys.queue_of_stream(stream) or stream
                self.metrics.reclaimed.labels(queue).inc(len(entries))
                self.log.warning("jobs_reclaimed", queue=queue, count=len(entries))
                claimed.extend(entries)
        return claimed

    # -- starting ----------------------------------------------------------------
    async def start_batch(self, entries: list[Entry]) -> None:
        """Check each entry, then record ``job.started`` for the whole batch (skipping
        canceled jobs) in one round trip, then run each."""
        runs: list[Run] = []
        keys: list[str] = [self.keys.job_started]
        args: list[Any] = [GROUP_WORKERS, EVENT_FIELD]
        now = utcnow()
        clock = time.monotonic()
        for entry in entries:
            run = self.prepare(entry, now, clock)
            if run is None:
                continue
            job = run.job
            started = JobStarted(
                job_id=job.job_id,
                delivery_id=job.delivery_id,
                attempt=run.attempt,
                queue=job.spec.queue,
                pipeline=job.spec.pipeline,
                worker=self.name,
                occurred_at=now,
            )
            runs.append(run)
            keys += (self.keys.cancel(job.job_id), entry.stream)
            args += (job.attempt, entry.entry_id, encode(started))
        if not runs:
            return
        canceled = set(await self.leases.start(keys=keys, args=args))
        for position, run in enumerate(runs, 1):
            if position in canceled:
                self.log.info("job_skipped_canceled", job_id=run.job.job_id)
                continue
            task = asyncio.create_task(self.execute(run))
            run.task = task
            key = (run.entry.stream, run.entry.entry_id)
            self.running[key] = run
            task.add_done_callback(lambda _t, key=key: self._finished(key))  # type: ignore[misc]

    def _finished(self, key: tuple[str, str]) -> None:
        self.running.pop(key, None)
        self.wake.set()

    def prepare(self, entry: Entry, now: datetime, clock: float) -> Run | None:
        """The run of an entry, or None when the entry was set aside (poison, bad spec,
        worker lost) and is being committed as such."""
        if entry.data is None:
            self.poison(entry, "entry has no event field")
            return None
        try:
            event = decode(entry.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.poison(entry, f"undecodable: {exc}")
            return None
        if not isinstance(event, JobQueued):
            self.poison(entry, f"not a job.queued event: {event.__class__.__name__}")
            return None
        attempt = decisions.run_attempt(event.attempt, entry.deliveries)
        problem = decisions.job_id_problem(event.job_id) or decisions.spec_problem(event.spec)
        handler = None
        if problem is None and event.spec.handler is not None:
            try:
                handler = load_handler(event.spec.handler)
            except PipelineError as exc:
                problem = str(exc)
        if problem is not None:
            error = JobError(type="InvalidPipeline", message=problem, retryable=False)
            self.poison(entry, problem, self._finished_event(event, attempt, error=error))
            return None
        if decisions.worker_lost(entry.deliveries, self.settings.max_deliveries):
            self.lost(entry, event, attempt)
            return None
        return Run(entry, event, attempt, now, clock, handler)

    def poison(self, entry: Entry, reason: str, finished: JobFinished | None = None) -> None:
        """Set an entry aside in the dead-letter stream (with the job's failure, if it is
        a job) and acknowledge it; the worker carries on."""
        self.metrics.consumer.entries.labels(GROUP_WORKERS, "dead_lettered").inc()
        self.log.error("entry_dead_lettered", stream=entry.stream, id=entry.entry_id, reason=reason)
        ops: list[Op] = [dead_letter_op(self.keys, entry, GROUP_WORKERS, reason)]
        if finished is not None:
            ops.insert(0, ("XADD", self.keys.job_finished, "*", EVENT_FIELD, encode(finished)))
            self.metrics.job_done(
                finished.queue or "", finished.pipeline or "", finished.outcome, 0.0
            )
        self._side(ops, entry)

    def lost(self, entry: Entry, job: JobQueued, attempt: int) -> None:
        reason = (
            f"worker lost: delivered {entry.deliveries} times without finishing "
            f"(max_deliveries {self.settings.max_deliveries})"
        )
        error = JobError(type="WorkerLost", message=reason, retryable=False)
        finished = self._finished_event(job, attempt, error=error)

        async def commit() -> None:
            marker = await self.redis.get(self.keys.cancel(job.job_id))
            if decisions.cancel_applies(job.attempt, marker):
                await self.committer.submit([], entry)
            else:
                self.poison(entry, reason, finished)

        self._track(commit())

    def _side(self, ops: list[Op], entry: Entry) -> None:
        self._track(self.committer.submit(ops, entry))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._retrying(work))
        self.side.add(task)
        task.add_done_callback(self.side.discard)

    async def _retrying(self, work: Coroutine[Any, Any, None]) -> None:
        with contextlib.suppress(*UNAVAILABLE):  # left pending: claimed again later
            await work

    def _finished_event(
        self,
        job: JobQueued,
        attempt: int,
        *,
        outcome: str = "failed",
        result: Any = None,
        error: JobError | None = None,
        started_at: datetime | None = None,
        duration: float | None = None,
    ) -> JobFinished:
        spec = job.spec
        return JobFinished(
            job_id=job.job_id,
            delivery_id=job.delivery_id,
            attempt=attempt,
            outcome=outcome,  # type: ignore[arg-type]
            queue=spec.queue,
            pipeline=spec.pipeline,
            worker=self.name,
            result=result,
            error=error,
            started_at=started_at,
            duration=duration,
            result_ttl=spec.result_ttl,
            failure_ttl=spec.failure_ttl,
            meta=job.meta,
        )

    # -- running -------------------------------------------------------------------
    async def execute(self, run: Run) -> None:
        job = run.job
        spec = job.spec
        timer = asyncio.get_running_loop().call_later(spec.timeout, self.stop_run, run, "timeout")
        try:
            outcome = await self.run_pipeline(run)
        except asyncio.CancelledError:
            if run.stop_reason not in ("timeout", "canceled"):
                raise  # shutdown or lease lost: unacknowledged, another worker runs it
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            outcome = None
        finally:
            timer.cancel()
        run.recording = True
        duration = time.monotonic() - run.clock
        if run.stop_reason == "timeout":
            outcome = RunResult(
                False,
                error=JobError(
                    type="Timeout", message=f"{_kind(spec)} ran longer than {spec.timeout:g}s"
                ),
            )
        if run.stop_reason == "canceled" or outcome is None:
            finished = self._finished_event(
                job, run.attempt, outcome="canceled", started_at=run.started_at, duration=duration
            )
        else:
            finished = self._finished_event(
                job,
                run.attempt,
                outcome="finished" if outcome.ok else "failed",
                result=outcome.result,
                error=outcome.error,
                started_at=run.started_at,
                duration=duration,
            )
        # Not shielded: only stop_run cancels a job task, and never once it is recording.
        await self.record(run.entry, finished)
        self.metrics.job_done(spec.queue, spec.pipeline, finished.outcome, duration)
        self.jobs_done += 1
        if finished.outcome != "finished":
            self.jobs_failed += finished.outcome == "failed"
            self.log.info("job_ended", outcome=finished.outcome, duration=round(duration, 3))

    async def record(self, entry: Entry, finished: JobFinished) -> None:
        """Append ``job.finished`` and acknowledge in one transaction, retrying while
        Redis is away: the job ran, so its end must not be lost to a blip."""
        op: Op = ("XADD", self.keys.job_finished, "*", EVENT_FIELD, encode(finished))
        failures = 0
        while True:
            try:
                await self.committer.submit([op], entry)
                return
            except UNAVAILABLE as exc:
                failures += 1
                self.log.warning("record_retry", error=str(exc))
                await asyncio.sleep(reconnect_delay(failures))

    async def run_pipeline(self, run: Run) -> RunResult:
        job = run.job
        spec = job.spec
        ctx = JobContext(
            job_id=job.job_id,
            delivery_id=job.delivery_id,
            attempt=run.attempt,
            queue=spec.queue,
            pipeline=spec.pipeline,
            worker=self.name,
            meta=job.meta,
            artifacts_root=self.artifacts,
            raw_payload=job.payload,
            base_log=self.log,
        )
        if run.handler is not None:
            return await run_handler(run.handler, ctx, is_async(run.handler))
        return await run_command(spec, ctx, self.work_dir, self.settings.kill_grace)


def _kind(spec: Any) -> str:
    return "command" if spec.command else "handler"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
