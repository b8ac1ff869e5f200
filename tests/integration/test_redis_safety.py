"""A sick Redis against a real one: the safety verdict read from INFO, and streams or
groups that vanish under a running consumer (deleted, destroyed, evicted)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis
from hookline.consumer import Consumer, Write, Writes
from hookline.events import AnyEvent, WebhookReceived, encode
from hookline.keys import EVENT_FIELD, Keys
from hookline.metrics import CollectorRegistry, ConsumerMetrics
from hookline.redis_safety import RedisSafety
from hookline.streams import Entry
from support.redis_server import own_redis
from support.waiting import async_wait_until

GROUP = "safety-group"


class Seen:
    def __init__(self) -> None:
        self.jobs: list[str] = []

    async def __call__(self, event: AnyEvent, entry: Entry) -> Sequence[Write]:
        self.jobs.append(getattr(event, "job_id", ""))
        return []


async def _append(redis: aioredis.Redis, keys: Keys, n: int) -> None:
    event = WebhookReceived(delivery_id=f"d{n}", job_id=f"j{n}", event="push")
    await redis.xadd(keys.webhook_received, {EVENT_FIELD: encode(event)})


async def _vanish_then_carry_on(redis: aioredis.Redis, keys: Keys, how: str) -> None:
    seen, metrics = Seen(), ConsumerMetrics(CollectorRegistry())
    consumer: Consumer[Sequence[Write]] = Consumer(
        redis,
        keys=keys,
        group=GROUP,
        name="c1",
        streams=[keys.webhook_received],
        handler=seen,
        batch=Writes(),
        metrics=metrics,
        block=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await _append(redis, keys, 1)
        await async_wait_until(lambda: _true(seen.jobs == ["j1"]), 5, what="j1 handled")
        if how == "del":
            await redis.delete(keys.webhook_received)  # under a blocked XREADGROUP
        else:
            await redis.xgroup_destroy(keys.webhook_received, GROUP)

        async def recreated() -> bool:
            return bool(metrics.streams_recreated.labels(GROUP)._value.get() >= 1)

        await async_wait_until(recreated, 5, what="the group to be recreated")
        await _append(redis, keys, 2)
        await async_wait_until(lambda: _true("j2" in seen.jobs), 5, what="j2 handled")
        assert not task.done()
    finally:
        stop.set()
        await task


async def _true(value: bool) -> bool:
    return value


async def test_a_stream_deleted_under_a_blocked_consumer_is_recreated_and_counted(
    redis: aioredis.Redis, keys: Keys
) -> None:
    await _vanish_then_carry_on(redis, keys, "del")


async def test_a_group_destroyed_under_a_consumer_is_recreated_and_counted(
    redis: aioredis.Redis, keys: Keys
) -> None:
    await _vanish_then_carry_on(redis, keys, "destroy")


async def test_the_suite_redis_is_safe(redis: aioredis.Redis) -> None:
    safety = RedisSafety(redis)
    verdict = await safety.check()
    assert verdict is not None
    assert verdict.safe, verdict
    assert verdict.persistence == "aof"
    assert safety.hold() is None


async def test_an_evicting_or_forgetful_redis_is_unsafe_with_the_reason(tmp_path: Path) -> None:
    server = own_redis(tmp_path / "redis", appendonly=False)
    client = aioredis.Redis.from_url(server.url)
    try:
        safety = RedisSafety(client)
        verdict = await safety.check()
        assert verdict is not None
        assert not verdict.safe
        assert verdict.persistence == "none"
        assert "appendonly yes" in (safety.hold() or "")

        await client.config_set("save", "3600 1")  # RDB snapshots: safe, with a warning
        await client.config_set("maxmemory-policy", "allkeys-lru")
        verdict = await safety.check()
        assert verdict is not None
        assert verdict.persistence == "rdb"
        assert verdict.warnings
        assert "maxmemory-policy is allkeys-lru" in (safety.hold() or "")

        await client.config_set("maxmemory-policy", "noeviction")
        assert (await safety.check()) is not None
        assert safety.hold() is None

        allowed = RedisSafety(client, allow_unsafe=True)
        await client.config_set("maxmemory-policy", "volatile-lru")
        verdict = await allowed.check()
        assert verdict is not None
        assert not verdict.safe
        assert allowed.hold() is None  # the operator's opt-out
        assert allowed.report()["unsafe_allowed"] is True
    finally:
        await client.aclose()
        server.stop()
