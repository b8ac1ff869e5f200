"""Queue jobs straight onto ``job.queued.<queue>`` and read what workers wrote back."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import redis.asyncio as aioredis
from hookline.events import (
    DeadLetter,
    HandlerRun,
    JobFinished,
    JobQueued,
    JobSpec,
    JobStarted,
    encode,
)
from hookline.keys import DEFAULT_QUEUE, EVENT_FIELD, Keys

from support.streams import entries, events


def handler_spec(name: str, **fields: Any) -> JobSpec:
    return JobSpec(pipeline=name, run=HandlerRun(path=f"support.worker_pipelines:{name}"), **fields)


async def queue_job(
    redis: aioredis.Redis,
    keys: Keys,
    spec: JobSpec,
    *,
    job_id: str | None = None,
    meta: dict[str, Any] | None = None,
    attempt: int = 1,
    payload: bytes = b"{}",
) -> str:
    job_id = job_id or uuid.uuid4().hex
    event = JobQueued(
        job_id=job_id,
        delivery_id=f"d-{job_id}",
        attempt=attempt,
        spec=spec,
        meta=meta or {},
        payload=msgspec.Raw(payload),
    )
    await redis.xadd(keys.job_queued(spec.queue), {EVENT_FIELD: encode(event)})
    return job_id


async def finished(redis: aioredis.Redis, keys: Keys) -> dict[str, list[JobFinished]]:
    out: dict[str, list[JobFinished]] = {}
    for event in events(await redis.xrange(keys.job_finished)):
        assert isinstance(event, JobFinished)
        out.setdefault(event.job_id, []).append(event)
    return out


async def started(redis: aioredis.Redis, keys: Keys) -> dict[str, list[JobStarted]]:
    out: dict[str, list[JobStarted]] = {}
    for event in events(await redis.xrange(keys.job_started)):
        assert isinstance(event, JobStarted)
        out.setdefault(event.job_id, []).append(event)
    return out


async def dead_letters(redis: aioredis.Redis, keys: Keys) -> list[DeadLetter]:
    return [
        msgspec.json.decode(fields[EVENT_FIELD], type=DeadLetter)
        for _, fields in entries(await redis.xrange(keys.dead_letter))
    ]


async def pending(redis: aioredis.Redis, keys: Keys, queue: str = DEFAULT_QUEUE) -> int:
    try:
        summary = await redis.xpending(keys.job_queued(queue), "workers")
    except aioredis.ResponseError:
        return 0
    return int(summary["pending"])
