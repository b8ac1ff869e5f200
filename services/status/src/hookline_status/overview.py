"""The system at a glance: workers, queues, jobs by status and each consumer's backlog,
as ``hookline info`` and ``GET /health`` show them."""

from __future__ import annotations

from typing import Any

from hookline import clock
from hookline.keys import GROUP_DISPATCHER, GROUP_STATUS, Keys
from hookline.records import WorkerHeartbeat, WorkerView, from_hash, worker_view
from hookline.redis_client import Redis
from hookline.text import text
from redis.exceptions import ResponseError

from hookline_status.documents import STATUSES, Backlog, SystemInfo
from hookline_status.queues import all_queue_stats, count_after
from hookline_status.reads import SCAN_BUDGET, count_jobs
from hookline_status.view_keys import generation


async def read_workers(redis: Redis, keys: Keys, ttl: float) -> list[WorkerView]:
    """Every registered worker with its state: ``busy``, ``idle`` or ``dead`` (no heartbeat
    for ``ttl`` seconds). Fields a worker did not publish are None (or empty)."""
    members: Any = await redis.zrange(keys.workers, 0, -1, withscores=True)
    if not members:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name, _ in members:
            pipe.hgetall(keys.worker(text(name)))
        raws = await pipe.execute()
    now = clock.now()
    return [
        worker_view(text(name), int(score), from_hash(WorkerHeartbeat, raw), now, ttl)
        for (name, score), raw in zip(members, raws, strict=True)
    ]


async def group_backlog(redis: Redis, stream: str, group: str) -> Backlog | None:
    """One consumer group's backlog on one stream (None: no such group)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    for info in groups:
        if text(info.get("name")) != group:
            continue
        lag = info.get("lag")
        if lag is None:
            last = text(info.get("last-delivered-id") or "0-0")
            lag = await count_after(redis, stream, last, SCAN_BUDGET)
        return Backlog(pending=int(info.get("pending") or 0), lag=int(lag))
    return None


async def system_info(redis: Redis, keys: Keys, worker_ttl: float) -> SystemInfo:
    """Queues, workers, jobs by status, and each service's backlog on what it reads."""
    queues = await all_queue_stats(redis, keys)
    workers = await read_workers(redis, keys, worker_ttl)
    counts = await count_jobs(redis, keys)
    backlog: dict[str, Backlog] = {}
    for service, group, stream in (
        ("dispatcher", GROUP_DISPATCHER, keys.webhook_received),
        ("status", GROUP_STATUS, keys.job_finished),
    ):
        found = await group_backlog(redis, stream, group)
        if found is not None:
            backlog[service] = found
    backlog["workers"] = Backlog(
        pending=sum(q.pending for q in queues), lag=sum(q.waiting for q in queues)
    )
    return SystemInfo(
        queues=queues,
        workers=workers,
        jobs={status: counts[(status, "")] for status in STATUSES},
        backlog=backlog,
        generation=await generation(redis, keys),
    )
