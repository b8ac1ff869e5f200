"""The worker loop: read jobs in queue priority order, run up to K at once, record each
attempt's start and end, and acknowledge an entry only with its ``job.finished``.

Beside the loop run the lease keeper (renews the entries of running jobs, notices one
taken over), the cancel watcher and the heartbeat. Entries whose lease lapsed (their
worker died) are claimed and run again as a new attempt; past ``max_deliveries`` they
end "worker lost". One attempt's life is in :mod:`hookline_worker.attempt`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, assert_never

from hookline import clock
from hookline.committer import Committer
from hookline.events import JobSpec, encode
from hookline.keys import EVENT_FIELD, GROUP_WORKERS, Keys
from hookline.logs import get_logger
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.retry import Health, retry_forever
from hookline.streams import (
    Entry,
    Op,
    claim_entries,
    claim_stale_entries,
    dead_letter_op,
    ensure_group,
    parse_entries,
    pending_of,
    read_unless_stopped,
    vanished,
)
from redis.exceptions import ResponseError

from hookline_worker import decisions, rawredis
from hookline_worker.attempt import Attempt, Attempts, started_event
from hookline_worker.cancels import CancelWatcher
from hookline_worker.heartbeat import Heartbeat, Snapshot, WorkerState
from hookline_worker.intake import SetAside, WorkerLost, admit
from hookline_worker.leases import LeaseKeeper, Leases, Starting
from hookline_worker.liveness import Liveness
from hookline_worker.metrics import WorkerMetrics
from hookline_worker.runners import Runner, runner_for
from hookline_worker.runners.command import scratch_owners, sweep_scratch
from hookline_worker.runners.run_as import RunAs
from hookline_worker.settings import WorkerSettings

__all__ = ["Worker", "WorkerMetrics"]


class Worker:
    def __init__(
        self,
        redis: Redis,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
        *,
        utcnow: Callable[[], datetime] = clock.utcnow,
        monotonic: Callable[[], float] = clock.monotonic,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.name = settings.worker_name
        self.metrics = metrics
        self.utcnow = utcnow
        self.monotonic = monotonic
        self.log = get_logger(worker=self.name)
        self.streams = [self.keys.job_queued(q) for q in settings.queues]
        self.committer = Committer(redis, GROUP_WORKERS, max_batch=1000, commit_fn=rawredis.commit)
        self.running: dict[tuple[str, str], Attempt] = {}
        self.side: set[asyncio.Task[None]] = set()  # dead-letter and "worker lost" commits
        self.state: WorkerState = "starting"
        self.health = Health(on_change=self._redis_changed)
        self.groups_ready = False
        renew_every, self.claim_every = decisions.lease_periods(settings.lease_timeout)
        self.last_claim = float("-inf")
        self.lease_ms = int(settings.lease_timeout * 1000)
        self.work_dir = Path(settings.work_dir)
        self.run_as = RunAs.named(settings.run_as) if settings.run_as else None
        self.wake = asyncio.Event()  # a job ended, or stop
        self.ended = asyncio.Event()  # the loop is to end: a stop, or a burst ran dry
        self.leases = Leases(redis, GROUP_WORKERS, self.name, self.keys.job_started)
        self.attempts = Attempts(
            worker=self.name,
            keys=self.keys,
            committer=self.committer,
            metrics=metrics,
            artifacts=Path(settings.artifacts_dir),
            log=self.log,
            monotonic=monotonic,
            utcnow=utcnow,
        )
        self.heartbeat = Heartbeat(redis, self.keys, settings, self.snapshot, utcnow=utcnow)
        self.liveness = Liveness(redis, self.keys, self.name, settings.liveness_ttl, log=self.log)
        self.last_rescue = float("-inf")
        self.inheritance: dict[str, dict[str, int]] = {}  # stream -> id -> deliveries
        self.inheritance_read = False
        self.swept = False
        self.cancels = CancelWatcher(
            redis, self.keys, self.running.values, log=self.log, monotonic=monotonic
        )
        self.keeper = LeaseKeeper(
            self.leases, self.running.values, renew_every, log=self.log, monotonic=monotonic
        )
        metrics.watch_busy(lambda: len(self.running))

    @property
    def redis_ok(self) -> bool:
        return self.health.redis_ok

    @property
    def jobs_done(self) -> int:
        return self.attempts.done

    @property
    def jobs_failed(self) -> int:
        return self.attempts.failed

    def snapshot(self) -> Snapshot:
        return Snapshot(self.state, list(self.running.values()), self.jobs_done, self.jobs_failed)

    def _redis_changed(self, up: bool) -> None:
        self.metrics.consumer.redis_up.set(1 if up else 0)
        if not up:
            self.metrics.consumer.redis_errors.inc()
            self.groups_ready = False

    # -- lifecycle -------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (or, with ``--burst``, until the queues are empty),
        then drain. Cancelled (a second signal): stop every job at once, hand them back."""
        self.committer.start()
        halt = asyncio.Event()
        background = [
            asyncio.create_task(self.heartbeat.run(halt)),
            asyncio.create_task(self.liveness.run(halt)),
            asyncio.create_task(self.keeper.run(halt)),
            asyncio.create_task(self.cancels.run(halt)),
            asyncio.create_task(self._end_on(stop)),
        ]
        try:
            self.state = "running"
            await retry_forever(
                lambda: self._step(stop), stop=self.ended, what="worker", health=self.health
            )
            await self.drain()
        except asyncio.CancelledError:
            await self.abandon()
            raise
        finally:
            halt.set()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.committer.close()
            await self.heartbeat.leave()
            await self.liveness.leave()
            self.log.info("worker_stopped", jobs_done=self.jobs_done)

    async def _end_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.ended.set()
        self.wake.set()

    async def drain(self) -> None:
        """Let running jobs finish within the shutdown timeout; stop the rest and hand
        them back unacknowledged."""
        self.state = "draining"
        if self.running:
            self.log.info("draining", running=len(self.running))
            tasks = [a.task for a in self.running.values() if a.task is not None]
            await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout)
        await self.abandon()

    async def abandon(self) -> None:
        """Stop every running job now; a job that did not finish is never acknowledged:
        its entry goes back to the group for another worker."""
        self.state = "stopping"
        attempts = list(self.running.values())
        for attempt in attempts:
            attempt.stop("shutdown")
        tasks = [a.task for a in attempts if a.task is not None] + list(self.side)
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

    # -- reading -------------------------------------------------------------------
    async def _step(self, stop: asyncio.Event) -> None:
        """One turn of the loop: claim lapsed entries when due, else read new ones, and
        start them. Redis going away is :func:`retry_forever`'s to handle."""
        if stop.is_set():
            self.ended.set()  # entries read meanwhile are handed back by abandon()
            return
        try:
            await self._ensure_groups()
            free = self.settings.concurrency - len(self.running)
            if free <= 0:
                await self._wait_for_wake(self.claim_every)
            elif not await self._claim_due(free):
                await self._read_and_start(min(free, self.settings.batch), stop)
        except ResponseError as exc:
            if not vanished(exc):
                raise
            self.metrics.consumer.streams_recreated.labels(GROUP_WORKERS).inc()
            self.log.error("stream_or_group_vanished", error=str(exc), action="recreating")
            self.groups_ready = False  # the stream or group was deleted: recreate it

    async def _ensure_groups(self) -> None:
        if not self.groups_ready:
            await self.liveness.beat()  # alive before anything is read: never rescued
            if not self.swept:
                await self._sweep()
            for stream in self.streams:
                await ensure_group(self.redis, stream, GROUP_WORKERS)
            if not self.inheritance_read:
                await self._read_inheritance()
            self.groups_ready = True
            self.log.info("worker_ready", queues=self.settings.queues)

    async def _sweep(self) -> None:
        """Once, at start: remove the scratch files of workers that are gone (a kill -9
        leaves them); those of live workers sharing the work dir stay."""
        owners = await asyncio.to_thread(scratch_owners, self.work_dir)
        gone = await self.liveness.gone(owners)
        swept = await asyncio.to_thread(sweep_scratch, self.work_dir, owners, gone.__contains__)
        self.swept = True
        if swept:
            self.log.info("scratch_swept", workers=swept)

    async def _read_inheritance(self) -> None:
        """Once, at start: what is pending under this worker's name is a predecessor's
        (a live worker of this name would have refused this start): a process killed and
        restarted under its name, as ``hookline up`` does. Its liveness never lapsed, so
        nobody rescues those entries: this worker takes them itself, before reading."""
        for stream in self.streams:
            if pending := await pending_of(self.redis, stream, GROUP_WORKERS, self.name):
                self.inheritance[stream] = pending
                self.log.warning("jobs_inherited", stream=stream, count=len(pending))
        self.inheritance_read = True

    async def _inherit(self, count: int) -> list[Entry]:
        taken: list[Entry] = []
        for stream, pending in self.inheritance.items():
            ids = dict(list(pending.items())[: count - len(taken)])
            for entry_id in ids:
                del pending[entry_id]
            taken += await claim_entries(self.redis, stream, GROUP_WORKERS, self.name, 0, ids)
        self.inheritance = {s: p for s, p in self.inheritance.items() if p}
        return taken

    async def _claim_due(self, free: int) -> bool:
        """Take up a predecessor's entries, rescue dead workers' entries, then claim
        lapsed ones, each when it is time to; whether any were started."""
        now = self.monotonic()
        claimed: list[Entry] = await self._inherit(free) if self.inheritance else []
        if not claimed and now - self.last_rescue >= self.liveness.rescue_every:
            self.last_rescue = now
            claimed = await self.rescue(free)
        if not claimed and now - self.last_claim >= self.claim_every:
            self.last_claim = now
            claimed = await self.claim(free)
        if claimed:
            await self.start_batch(claimed)
        return bool(claimed)

    async def _read_and_start(self, count: int, stop: asyncio.Event) -> None:
        entries = await self.read(count, stop)
        if stop.is_set():
            return
        if entries:
            await self.start_batch(entries)
        elif self.settings.burst and self._idle():
            self.log.info("burst_done", jobs=self.jobs_done)
            self.ended.set()
        elif self.settings.burst:
            await self._wait_for_wake(0.05)

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
        block = int(min(1.0, self.claim_every, self.liveness.rescue_every) * 1000)
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

    async def rescue(self, count: int) -> list[Entry]:
        """Entries still pending for workers that are gone (their liveness lapsed)."""
        rescued: list[Entry] = []
        for stream in self.streams:
            if count <= len(rescued):
                break
            entries = await self.liveness.rescue(stream, GROUP_WORKERS, count - len(rescued))
            if entries:
                queue = self.keys.queue_of_stream(stream) or stream
                self.metrics.reclaimed.labels(queue).inc(len(entries))
                self.log.warning("jobs_rescued", queue=queue, count=len(entries))
                rescued.extend(entries)
        return rescued

    # -- starting ----------------------------------------------------------------
    async def start_batch(self, entries: list[Entry]) -> None:
        """Admit each entry, then record ``job.started`` for the whole batch (skipping
        canceled jobs) in one round trip, then run each."""
        admitted: list[Attempt] = []
        now, began = self.utcnow(), self.monotonic()
        for entry in entries:
            intake = admit(
                entry,
                worker=self.name,
                max_deliveries=self.settings.max_deliveries,
                runner_for=self._runner_for,
                now=now,
                clock=began,
            )
            match intake:
                case Attempt():
                    admitted.append(intake)
                case WorkerLost():
                    self._track(self.lost(entry, intake))
                case SetAside():
                    self.set_aside(entry, intake)
                case _:
                    assert_never(intake)
        if not admitted:
            return
        starting = [
            Starting(
                a.entry,
                a.job.attempt,
                self.keys.cancel(a.job.job_id),
                encode(started_event(a, self.name)),
            )
            for a in admitted
        ]
        canceled = await self.leases.start(starting)
        for attempt, was_canceled in zip(admitted, canceled, strict=True):
            if was_canceled:
                self.log.info("job_skipped_canceled", job_id=attempt.job.job_id)
            else:
                self._launch(attempt)

    def _runner_for(self, spec: JobSpec) -> Runner:
        return runner_for(spec, self.work_dir, self.settings.kill_grace, self.run_as)

    def _launch(self, attempt: Attempt) -> None:
        task = asyncio.create_task(self.attempts.execute(attempt))
        attempt.task = task
        key = attempt.key
        self.running[key] = attempt
        task.add_done_callback(lambda _t: self._finished(key))

    def _finished(self, key: tuple[str, str]) -> None:
        self.running.pop(key, None)
        self.wake.set()

    def set_aside(self, entry: Entry, aside: SetAside) -> None:
        """Dead-letter an entry (with the job's failure, if it is a job) and acknowledge
        it; the worker carries on."""
        self.metrics.consumer.entries.labels(GROUP_WORKERS, "dead_lettered").inc()
        self.log.error(
            "entry_dead_lettered", stream=entry.stream, id=entry.entry_id, reason=aside.reason
        )
        ops: list[Op] = [dead_letter_op(self.keys, entry, GROUP_WORKERS, aside.reason)]
        if (finished := aside.finished) is not None:
            ops.insert(0, ("XADD", self.keys.job_finished, "*", EVENT_FIELD, encode(finished)))
            self.metrics.job_done(
                finished.queue or "", finished.pipeline or "", finished.outcome, 0.0
            )
        self._track(self.committer.submit(ops, entry))

    async def lost(self, entry: Entry, lost: WorkerLost) -> None:
        """A job canceled meanwhile is only acknowledged; else it ends "worker lost"."""
        marker = await self.redis.get(self.keys.cancel(lost.job.job_id))
        if decisions.cancel_applies(lost.job.attempt, marker):
            await self.committer.submit([], entry)
        else:
            self.set_aside(entry, SetAside(lost.reason, lost.finished))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._unless_unavailable(work))
        self.side.add(task)
        task.add_done_callback(self.side.discard)

    @staticmethod
    async def _unless_unavailable(work: Coroutine[Any, Any, None]) -> None:
        with contextlib.suppress(*UNAVAILABLE):  # left pending: claimed again later
            await work
