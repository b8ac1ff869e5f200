"""Queue figures read straight from the streams and the workers' consumer group."""

from __future__ import annotations

from hookline import clock
from hookline.keys import DEFAULT_QUEUE, GROUP_WORKERS, Keys
from hookline.redis_client import Redis
from hookline.text import text
from redis.exceptions import ResponseError

from hookline_status.documents import QueueStats

# Most entries read to count a group's lag on a Redis that does not report it (< 7).
LAG_SCAN: int = 100_000


def _id_ms(entry_id: bytes | str) -> int:
    return int(text(entry_id).split("-", 1)[0])


async def known_queues(redis: Redis, keys: Keys) -> list[str]:
    """Every queue a job was ever queued on, with the default queue always first."""
    members = {text(m) for m in await redis.smembers(keys.queues)}
    members.discard(DEFAULT_QUEUE)
    return [DEFAULT_QUEUE, *sorted(members)]


def _stats(queue: str, entries: int, waiting: int, pending: int, age: float) -> QueueStats:
    return QueueStats(
        queue=queue,
        length=waiting,  # what a user means by a queue's length: jobs waiting for a worker
        waiting=waiting,
        pending=pending,
        stream_entries=entries,
        oldest_age_seconds=round(age, 3),
    )


async def queue_stats(redis: Redis, keys: Keys, queue: str) -> QueueStats:
    stream = keys.job_queued(queue)
    entries = int(await redis.xlen(stream))
    if entries == 0:
        return _stats(queue, 0, 0, 0, 0.0)
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        groups = []
    group = next((g for g in groups if text(g.get("name") or "") == GROUP_WORKERS), None)
    if group is None:
        waiting, pending, last = entries, 0, "0-0"
    else:
        pending = int(group.get("pending") or 0)
        last = text(group.get("last-delivered-id") or "0-0")
        lag = group.get("lag")
        waiting = int(lag) if lag is not None else await count_after(redis, stream, last)
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
    return _stats(queue, entries, waiting, pending, age)


async def count_after(redis: Redis, stream: str, last: str, most: int = LAG_SCAN) -> int:
    """Entries after ``last``, ``most`` at most (for Redis < 7, which does not report a
    group's lag)."""
    entries = await redis.xrange(stream, min=f"({last}", count=most)
    return len(entries or ())


async def all_queue_stats(redis: Redis, keys: Keys) -> list[QueueStats]:
    return [await queue_stats(redis, keys, q) for q in await known_queues(redis, keys)]
