"""The heartbeat: who this worker is and what it runs, rewritten every few seconds for
``GET /workers`` and ``hookline info``; removed on a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from hookline import clock
from hookline.keys import Keys
from hookline.logs import get_logger
from hookline.records import CurrentJob, WorkerHeartbeat, to_hash
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.retry import periodically

from hookline_worker import decisions
from hookline_worker.attempt import Attempt
from hookline_worker.settings import WorkerSettings

WorkerState = Literal["starting", "running", "draining", "stopping"]
MAX_CURRENT_JOBS = 100


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the worker is doing at one moment."""

    state: WorkerState
    attempts: Collection[Attempt]
    jobs_done: int
    jobs_failed: int


def heartbeat_record(
    settings: WorkerSettings, name: str, started_at: datetime, now: Snapshot, now_ms: int
) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        name=name,
        host=socket.gethostname(),
        pid=os.getpid(),
        queues=list(settings.queues),
        concurrency=settings.concurrency,
        busy=len(now.attempts),
        jobs_done=now.jobs_done,
        jobs_failed=now.jobs_failed,
        state=now.state,
        current_jobs=[
            CurrentJob(
                job_id=a.job.job_id,
                attempt=a.attempt,
                queue=a.job.spec.queue,
                pipeline=a.job.spec.pipeline,
                started_at=a.started_at,
            )
            for a in list(now.attempts)[:MAX_CURRENT_JOBS]
        ],
        started_at=started_at,
        last_heartbeat=now_ms,
        ttl=float(settings.worker_ttl),
    )


class Heartbeat:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: WorkerSettings,
        snapshot: Callable[[], Snapshot],
        *,
        now_ms: Callable[[], int] = clock.now_ms,
        utcnow: Callable[[], datetime] = clock.utcnow,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.name = settings.worker_name
        self.snapshot = snapshot
        self.now_ms = now_ms
        self.started_at = utcnow()
        self.every = decisions.heartbeat_period(settings.worker_ttl)
        self.log = get_logger(worker=self.name)

    async def run(self, stop: asyncio.Event) -> None:
        await periodically(self.beat, every=self.every, stop=stop, what="heartbeat", log=self.log)

    async def beat(self) -> None:
        """Publish the heartbeat (the registry's score is its time)."""
        now_ms = self.now_ms()
        record = heartbeat_record(
            self.settings, self.name, self.started_at, self.snapshot(), now_ms
        )
        key = self.keys.worker(self.name)
        async with self.redis.pipeline(transaction=True) as tx:
            tx.zadd(self.keys.workers, {self.name: now_ms})
            tx.delete(key)  # no field of an older shape lingers
            tx.hset(key, mapping=to_hash(record))  # type: ignore[arg-type]
            tx.pexpire(key, int(self.settings.worker_ttl * 2000))
            await tx.execute()

    async def leave(self) -> None:
        """Deregister on a clean stop, so the worker count drops at once."""
        with contextlib.suppress(*UNAVAILABLE):
            await self.redis.zrem(self.keys.workers, self.name)
            await self.redis.delete(self.keys.worker(self.name))
