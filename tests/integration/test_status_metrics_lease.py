"""The metrics lease against a real Redis: one holder at a time, renewal, takeover once
it lapses, release on a clean stop; and status apps that export the system metrics
only while they hold it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from hookline.keys import Keys
from hookline_status.app import build
from hookline_status.metrics_lease import MetricsLease
from hookline_status.settings import load
from hookline_status.system_metrics import Snapshot, SnapshotCollector
from prometheus_client import CollectorRegistry, generate_latest
from support.http import serve
from support.prometheus import exported_names
from support.waiting import async_wait_until

LEADER = "hookline_status_metrics_leader"


def system_names() -> set[str]:
    """Every metric name a status replica reads from Redis (empty snapshot: names only)."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(Snapshot()))
    return exported_names(generate_latest(registry).decode())


async def test_one_holder_at_a_time_and_another_takes_over_once_it_lapses(
    redis: aioredis.Redis, keys: Keys
) -> None:
    first = MetricsLease(redis, keys.metrics_leader, "first", ttl=0.4)
    second = MetricsLease(redis, keys.metrics_leader, "second", ttl=0.4)
    assert await first.try_hold()
    assert not await second.try_hold()
    assert await first.try_hold()  # renewed, not refused by its own key
    assert await redis.get(keys.metrics_leader) == b"first"
    assert 0 < await redis.pttl(keys.metrics_leader) <= 400
    assert first.held()
    assert not second.held()
    # The first stops renewing (its process died): the second takes the lease once the
    # key lapses, and by then the first's own clock says it no longer holds it.
    assert await async_wait_until(second.try_hold, 5, what="the second to take over")
    assert not first.held()
    assert not await first.try_hold()
    assert await redis.get(keys.metrics_leader) == b"second"


async def test_held_only_until_ttl_after_the_last_successful_call(
    redis: aioredis.Redis, keys: Keys
) -> None:
    now = [100.0]
    lease = MetricsLease(redis, keys.metrics_leader, "me", ttl=5, clock=lambda: now[0])
    assert not lease.held()
    assert await lease.try_hold()
    now[0] = 104.9
    assert lease.held()
    now[0] = 105.0  # no renewal reached Redis since: assume another replica may hold it
    assert not lease.held()


async def test_release_gives_up_only_our_own_lease(redis: aioredis.Redis, keys: Keys) -> None:
    mine = MetricsLease(redis, keys.metrics_leader, "mine", ttl=30)
    other = MetricsLease(redis, keys.metrics_leader, "other", ttl=30)
    assert await mine.try_hold()
    await other.release()
    assert await redis.get(keys.metrics_leader) == b"mine"
    await mine.release()
    assert not mine.held()
    assert await redis.exists(keys.metrics_leader) == 0
    assert await other.try_hold()


async def test_keep_holds_the_lease_until_stopped_then_releases_it(
    redis: aioredis.Redis, keys: Keys
) -> None:
    ttl = 0.3
    lease = MetricsLease(redis, keys.metrics_leader, "keeper", ttl=ttl)
    stop = asyncio.Event()
    task = asyncio.create_task(lease.keep(stop, every=0.05))
    loop = asyncio.get_running_loop()
    try:

        async def taken() -> bool:
            return lease.held()

        await async_wait_until(taken, 5, what="the lease taken")
        since = loop.time()

        async def held_three_ttls() -> bool:
            if not lease.held() or await redis.get(keys.metrics_leader) != b"keeper":
                raise AssertionError("the lease lapsed while its keeper ran")
            return loop.time() - since > 3 * ttl

        await async_wait_until(held_three_ttls, 5, what="renewals past the ttl")
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert not lease.held()
    assert await redis.exists(keys.metrics_leader) == 0


async def scrape(client: TestClient[Any, Any]) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


def leader_value(text: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(LEADER + " ")]
    return float(line.split()[1])


async def test_only_the_lease_holder_exports_the_metrics_read_from_redis(
    base_env: dict[str, str], redis: aioredis.Redis, keys: Keys
) -> None:
    env = {
        **base_env,
        "HOOKLINE_STATUS_METRICS_LEASE_TTL": "2s",
        "HOOKLINE_STATUS_METRICS_LEASE_RENEW": "200ms",
    }
    system = system_names()
    assert {"hookline_jobs", "hookline_workers", "rq_workers", "hookline_queue_lag"} <= system
    async with contextlib.AsyncExitStack() as stack:
        leading = await stack.enter_async_context(contextlib.AsyncExitStack())
        first = await leading.enter_async_context(serve(build(load(env)).app))
        text = await scrape(first)
        assert leader_value(text) == 1
        assert system <= exported_names(text)
        second = await stack.enter_async_context(serve(build(load(env)).app))
        text = await scrape(second)
        assert leader_value(text) == 0
        assert not system & exported_names(text)
        assert "hookline_redis_up" in exported_names(text)  # its own metrics stay
        assert leader_value(await scrape(first)) == 1
        # The leader stops cleanly and gives the lease up: the next scrape takes it.
        await leading.aclose()
        text = await scrape(second)
        assert leader_value(text) == 1
        assert system <= exported_names(text)
