"""Queue and worker figures read straight from the streams and the worker registry."""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import ResponseError

from hookline import clock
from hookline.keys import DEFAULT_QUEUE, GROUP_WORKERS, Keys
from hookline.redis_client import Redis


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    stream_entries: int  # entries the stream retains, handled ones not yet trimmed too
    waiting: int  # jobs not yet delivered to any worker (the group's lag)
    pending: int  # delivered, not acknowledged: running or held by a dead worker
    oldest_age: float  # seconds since the oldest waiting or pending entry was queued

    @property
    def length(self) -> int:
        """The queue's length as a user means it: jobs waiting for a worker to take them
        (running ones are ``pending``, finished ones are merely retained)."""
        return self.waiting


def _id_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


async def known_queues(redis: Redis, keys: Keys) -> list[str]:
    """Every queue a job was ever queued on, with the default queue always first."""
    members = {_str(m) for m in await redis.smembers(keys.queues)}
    members.discard(DEFAULT_QUEUE)
    return [DEFAULT_QUEUE, *sorted(members)]


async def queue_stats(redis: Redis, keys: Keys, queue: str) -> QueueStats:
    stream = keys.job_queued(queue)
    entries = int(await redis.xlen(stream))
    if entries == 0:
        return QueueStats(queue, 0, 0, 0, 0.0)
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        groups = []
    group = next((g for g in groups if _name(g) == GROUP_WORKERS), None)
    if group is None:
        waiting, pending, last = entries, 0, "0-0"
    else:
        pending = int(group.get("pending") or 0)
        last = _str(group.get("last-delivered-id") or "0-0")
        lag = group.get("lag")
        waiting = int(lag) if lag is not None else await _count_after(redis, stream, last)
    now_ms = clock.now_ms()
    oldest: list[int] = []
    if waiting:
        first = await redis.xrange(stream, min=f"({last}", count=1)
        if first and (first_id := first[0][0]) is not None:
            oldest.append(_id_ms(first_id))
    if pending:
        summary = await redis.xpending(stream, GROUP_WORKERS)
        if summary and (smallest := summary.get("min")):
            oldest.append(_id_ms(smallest))
    age = max(0.0, (now_ms - min(oldest)) / 1000) if oldest else 0.0
    return QueueStats(queue, entries, waiting, pending, age)


async def _count_after(redis: Redis, stream: str, last: str) -> int:
    """Entries after ``last`` (for Redis < 7, which does not report a group's lag)."""
    entries = await redis.xrange(stream, min=f"({last}", count=100_000)
    return len(entries or ())


def _name(group: dict[str, object]) -> str:
    return _str(group.get("name") or "")


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def live_workers(redis: Redis, keys: Keys, ttl: float) -> list[str]:
    """Names of workers whose last heartbeat is younger than ``ttl`` seconds."""
    since = int((clock.now() - ttl) * 1000)
    return [_str(m) for m in await redis.zrangebyscore(keys.workers, since, "+inf")]
