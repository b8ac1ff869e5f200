"""Job views in Redis: a hash per job, a sorted set per status (and ``all``) by creation
time. Views are written by one Lua script so the rank check and the write are atomic
across any number of status replicas."""

from __future__ import annotations

import time
from typing import Any

from hookline.consumer import Op
from hookline.keys import Keys
from hookline.redis_client import Redis

from hookline_status.projection import ViewUpdate

# KEYS[1] job hash  KEYS[2] "all" index  KEYS[3] expiry index
# ARGV: rank, status, created_ms, ttl_ms (0: keep), index prefix, job id, now_ms,
#       number of fields to clear, those names..., then field/value pairs
APPLY = """
local rank = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
if current >= rank then return 0 end
local old = redis.call('HGET', KEYS[1], 'status')
local status = ARGV[2]
local job = ARGV[6]
local nclear = tonumber(ARGV[8])
for i = 9, 8 + nclear do redis.call('HDEL', KEYS[1], ARGV[i]) end
local pairs_start = 9 + nclear
if #ARGV >= pairs_start then
  redis.call('HSET', KEYS[1], unpack(ARGV, pairs_start))
end
redis.call('HSETNX', KEYS[1], 'created_ms', ARGV[3])
local created = redis.call('HGET', KEYS[1], 'created_ms')
redis.call('HSET', KEYS[1], 'rank', rank, 'status', status)
if old and old ~= status then redis.call('ZREM', ARGV[5] .. old, job) end
redis.call('ZADD', ARGV[5] .. status, created, job)
redis.call('ZADD', KEYS[2], created, job)
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[3], tonumber(ARGV[7]) + ttl, job)
else
  redis.call('PERSIST', KEYS[1])
  redis.call('ZREM', KEYS[3], job)
end
return 1
"""

# Remove expired views from every index. KEYS[1] expiry index; ARGV: now_ms, prefix,
# statuses...
SWEEP = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, job in ipairs(due) do
  for i = 3, #ARGV do redis.call('ZREM', ARGV[2] .. ARGV[i], job) end
  redis.call('ZREM', ARGV[2] .. 'all', job)
  redis.call('ZREM', KEYS[1], job)
end
return #due
"""


def expiry_index(keys: Keys) -> str:
    return keys.jobs_index("expiring")


def apply_op(keys: Keys, update: ViewUpdate, now_ms: int | None = None) -> Op:
    ttl_ms = int(update.ttl * 1000) if update.ttl else 0
    args: list[Any] = [
        update.rank,
        update.status,
        update.created_ms,
        ttl_ms,
        keys.jobs_index(""),
        update.job_id,
        now_ms if now_ms is not None else int(time.time() * 1000),
        len(update.clear),
        *update.clear,
    ]
    for name, value in update.fields.items():
        args.extend((name, value))
    return (
        "EVAL",
        APPLY,
        3,
        keys.job(update.job_id),
        keys.jobs_index("all"),
        expiry_index(keys),
        *args,
    )


def _text(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


async def get_view(redis: Redis, keys: Keys, job_id: str) -> dict[str, str] | None:
    raw = await redis.hgetall(keys.job(job_id))
    return _text(raw) if raw else None


async def list_views(redis: Redis, keys: Keys, status: str, limit: int) -> list[dict[str, str]]:
    """Newest first. Ids whose view has expired are dropped from the index on the way."""
    index = keys.jobs_index(status)
    ids = await redis.zrevrange(index, 0, limit - 1)
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(keys.job(job_id.decode()))
        raws = await pipe.execute()
    views = [_text(raw) for raw in raws if raw]
    gone = [job_id for job_id, raw in zip(ids, raws, strict=True) if not raw]
    if gone:
        await redis.zrem(index, *gone)
    return views


async def sweep_expired(redis: Redis, keys: Keys, statuses: tuple[str, ...]) -> int:
    removed: int = await redis.eval(
        SWEEP, 1, expiry_index(keys), int(time.time() * 1000), keys.jobs_index(""), *statuses
    )
    return removed


async def count_by_status(redis: Redis, keys: Keys, statuses: tuple[str, ...]) -> dict[str, int]:
    async with redis.pipeline(transaction=False) as pipe:
        for status in statuses:
            pipe.zcard(keys.jobs_index(status))
        counts = await pipe.execute()
    return dict(zip(statuses, (int(c) for c in counts), strict=True))
