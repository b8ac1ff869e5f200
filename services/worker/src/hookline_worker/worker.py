"""The worker loop: read jobs in queue priority order, run up to K at once, record each
attempt's start and end, and acknowledge an entry only with its ``job.finished``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from pathlib import Path

import msgspec
import structlog
from hookline.backoff import reconnect_delay
from hookline.committer import Committer
from hookline.consumer import (
    Entry,
    Op,
    dead_letter_op,
    ensure_group,
    parse_entries,
    sleep_unless,
)
from hookline.events import JobFinished, JobQueued, JobStarted, decode, encode, utcnow
from hookline.keys import EVENT_FIELD, GROUP_WORKERS, Keys
from hookline.logs import get_logger
from hookline.metrics import (
    DURATION_BUCKETS,
    CollectorRegistry,
    ConsumerMetrics,
    Counter,
    Gauge,
    Histogram,
)
from hookline.redis_client import UNAVAILABLE, Redis

from hookline_worker.context import JobContext
from hookline_worker.runner import RunResult, run_command, run_handler
from hookline_worker.settings import WorkerSettings

HEARTBEAT_EVERY = 5.0


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumer = ConsumerMetrics(registry)
        self.jobs = Counter(
            "hookline_jobs_total",
            "Job attempts run by this worker, by outcome.",
            ["queue", "pipeline", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "hookline_job_duration_seconds",
            "Time to run one job attempt.",
            ["queue", "pipeline"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.busy = Gauge(
            "hookline_worker_busy",
            "Jobs this worker is running now.",
            registry=registry,
        )


class Worker:
    def __init__(self, redis: Redis, settings: WorkerSettings, metrics: WorkerMetrics) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.name = settings.worker_name
        self.metrics = metrics
        self.streams = [self.keys.job_queued(q) for q in settings.queues]
        self.committer = Committer(redis, GROUP_WORKERS)
        self.running: set[asyncio.Task[None]] = set()
        self.redis_ok = False
        self.jobs_done = 0
        self.started_at = utcnow().isoformat()
        self.log = get_logger(worker=self.name)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (or, with ``--burst``, until the queues are empty)."""
        self.committer.start()
        beat = asyncio.create_task(self.heartbeat_loop(), name="heartbeat")
        try:
            await self._loop(stop)
        except asyncio.CancelledError:
            await self.abandon()
            raise
        finally:
            beat.cancel()
        await self.drain()
        await self.leave()

    async def heartbeat_loop(self) -> None:
        while True:
            with contextlib.suppress(*UNAVAILABLE):
                await self.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY)

    async def heartbeat(self) -> None:
        """Publish who this worker is and what it does, for ``/workers`` and ``info``."""
        now_ms = int(time.time() * 1000)
        key = self.keys.worker(self.name)
        async with self.redis.pipeline(transaction=True) as tx:
            tx.zadd(self.keys.workers, {self.name: now_ms})
            tx.hset(
                key,
                mapping={
                    "name": self.name,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "queues": ",".join(self.settings.queues),
                    "busy": len(self.running),
                    "jobs_done": self.jobs_done,
                    "started_at": self.started_at,
                    "last_heartbeat": now_ms,
                },
            )
            tx.pexpire(key, int(self.settings.worker_ttl * 2000))
            await tx.execute()

    async def leave(self) -> None:
        """Deregister on a clean stop, so the worker count drops at once."""
        with contextlib.suppress(*UNAVAILABLE):
            await self.redis.zrem(self.keys.workers, self.name)
            await self.redis.delete(self.keys.worker(self.name))

    async def _loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                if not self.redis_ok:
                    for stream in self.streams:
                        await ensure_group(self.redis, stream, GROUP_WORKERS)
                    self.redis_ok = True
                    self.metrics.consumer.redis_up.set(1)
                free = self.settings.concurrency - len(self.running)
                if free <= 0:
                    await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                entries = await self.read(min(free, self.settings.batch), stop)
                if not entries:
                    if self.settings.burst and not self.running and self.committer.idle:
                        self.log.info("burst_done", jobs=self.jobs_done)
                        return
                    if self.running:
                        await asyncio.wait(self.running, timeout=0.05)
                    continue
                await self.start_batch(entries)
                failures = 0
            except UNAVAILABLE as exc:
                failures += 1
                self.redis_ok = False
                self.metrics.consumer.redis_up.set(0)
                self.metrics.consumer.redis_errors.inc()
                delay = reconnect_delay(failures)
                self.log.warning("redis_unavailable", error=str(exc), retry_in=delay)
                await sleep_unless(stop, delay)

    async def abandon(self) -> None:
        """Stop at once: cancel running jobs; their entries stay unacknowledged."""
        for task in self.running:
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
        await self.committer.close()

    async def drain(self) -> None:
        """Let running jobs finish within the shutdown timeout; cancel the rest, which
        stay unacknowledged for another worker."""
        if self.running:
            self.log.info("draining", running=len(self.running))
            await asyncio.wait(self.running, timeout=self.settings.shutdown_timeout)
        await self.abandon()

    async def read(self, count: int, stop: asyncio.Event) -> list[Entry]:
        """Non-blocking reads in priority order; when all are empty, block on all."""
        if len(self.streams) > 1:
            for stream in self.streams:
                reply = await self.redis.xreadgroup(
                    GROUP_WORKERS, self.name, {stream: ">"}, count=count
                )
                if entries := parse_entries(reply):
                    return entries
        block = None if self.settings.burst and not self.running else 1000
        if self.settings.burst and not self.running and len(self.streams) > 1:
            return []
        reply = await self.redis.xreadgroup(
            GROUP_WORKERS, self.name, dict.fromkeys(self.streams, ">"), count=count, block=block
        )
        return parse_entries(reply)

    async def start_batch(self, entries: list[Entry]) -> None:
        """Record ``job.started`` for the whole batch in one round trip, then run each."""
        runnable: list[tuple[Entry, JobQueued]] = []
        started_ops: list[Op] = []
        for entry in entries:
            job = self.decode_job(entry)
            if job is None:
                continue
            runnable.append((entry, job))
            started = JobStarted(
                job_id=job.job_id,
                delivery_id=job.delivery_id,
                attempt=job.attempt,
                queue=job.spec.queue,
                pipeline=job.spec.pipeline,
                worker=self.name,
            )
            started_ops.append(("XADD", self.keys.job_started, "*", EVENT_FIELD, encode(started)))
        if started_ops:
            async with self.redis.pipeline(transaction=False) as pipe:
                for op in started_ops:
                    pipe.execute_command(*op)
                await pipe.execute()
        for entry, job in runnable:
            task = asyncio.create_task(self.execute(entry, job))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    def decode_job(self, entry: Entry) -> JobQueued | None:
        """The job of an entry; anything else is dead-lettered and acknowledged."""
        reason: str | None = None
        job = None
        if entry.data is None:
            reason = "entry has no event"
        else:
            try:
                event = decode(entry.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                reason = f"undecodable: {exc}"
            else:
                if isinstance(event, JobQueued):
                    job = event
                else:
                    reason = f"not a job.queued event: {type(event).__name__}"
        if job is None:
            self.metrics.consumer.entries.labels(GROUP_WORKERS, "dead_lettered").inc()
            self.log.error(
                "entry_dead_lettered", stream=entry.stream, id=entry.entry_id, reason=reason
            )
            task = asyncio.create_task(
                self.committer.submit(
                    [dead_letter_op(self.keys, entry, GROUP_WORKERS, str(reason))], entry
                )
            )
            self.running.add(task)  # type: ignore[arg-type]
            task.add_done_callback(self.running.discard)  # type: ignore[arg-type]
        return job

    async def execute(self, entry: Entry, job: JobQueued) -> None:
        spec = job.spec
        with structlog.contextvars.bound_contextvars(
            job_id=job.job_id, delivery_id=job.delivery_id
        ):
            started_at = utcnow()
            clock = time.perf_counter()
            self.metrics.busy.inc()
            try:
                outcome = await self.run_pipeline(job)
            finally:
                self.metrics.busy.dec()
            duration = time.perf_counter() - clock
            finished = JobFinished(
                job_id=job.job_id,
                delivery_id=job.delivery_id,
                attempt=job.attempt,
                outcome="finished" if outcome.ok else "failed",
                queue=spec.queue,
                pipeline=spec.pipeline,
                worker=self.name,
                result=outcome.result,
                error=outcome.error,
                started_at=started_at,
                duration=duration,
                result_ttl=spec.result_ttl,
                failure_ttl=spec.failure_ttl,
                meta=job.meta,
            )
            await self.record(entry, finished)
            self.metrics.jobs.labels(spec.queue, spec.pipeline, finished.outcome).inc()
            self.metrics.duration.labels(spec.queue, spec.pipeline).observe(duration)
            self.jobs_done += 1

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

    async def run_pipeline(self, job: JobQueued) -> RunResult:
        spec = job.spec
        ctx = JobContext(
            job_id=job.job_id,
            delivery_id=job.delivery_id,
            attempt=job.attempt,
            queue=spec.queue,
            pipeline=spec.pipeline,
            worker=self.name,
            meta=job.meta,
            artifacts_dir=Path(self.settings.artifacts_dir) / job.job_id,
            raw_payload=bytes(job.payload),
            log=self.log,
        )
        if spec.command:
            return await run_command(spec, ctx, Path(self.settings.work_dir))
        if spec.handler:
            return await run_handler(spec, ctx)
        from hookline.events import JobError

        return RunResult(
            False,
            error=JobError(
                type="InvalidPipeline",
                message=f"pipeline {spec.pipeline!r} has no command or handler",
                retryable=False,
            ),
        )
