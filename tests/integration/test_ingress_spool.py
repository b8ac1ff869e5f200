"""Redis down or slow: ingress spools to disk, answers 202, and replays in order later."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from hookline.embedded_redis import EmbeddedRedis, find_redis_server
from hookline.events import WebhookReceived, encode
from hookline.ids import job_id_for_delivery
from hookline.keys import Keys
from hookline.logs import get_logger
from hookline_ingress.app import REPLAY, SAFETY, SPOOL, create_app
from hookline_ingress.settings import load
from structlog.typing import FilteringBoundLogger
from support.http import serve
from support.payloads import payload, signed_headers
from support.redis_server import own_redis
from support.streams import events
from support.tcp_proxy import TcpProxy
from support.waiting import async_wait_until

SECRET = "test-secret-0123456789"
PUSH = payload("push", "with-new-branch.payload.json")


def debug_command_args() -> list[str]:
    """Redis 7 turns DEBUG off by default; older servers have no such switch."""
    version = subprocess.run(
        [find_redis_server(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"v=(\d+)\.", version)
    return ["--enable-debug-command", "yes"] if found and int(found.group(1)) >= 7 else []


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = own_redis(tmp_path / "redis", extra_args=debug_command_args())
    yield server
    server.stop()


@pytest.fixture
async def direct(private_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(private_redis.url)
    yield client
    await client.aclose()


@pytest.fixture
async def client(
    private_redis: EmbeddedRedis, prefix: str, tmp_path: Path
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = load(
        {
            "REDIS_URL": private_redis.url,
            "HOOKLINE_PREFIX": prefix,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "HOOKLINE_INGRESS_REDIS_TIMEOUT": "300ms",
            "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
        }
    )
    async with serve(create_app(settings)) as client:
        yield client


async def post(client: TestClient[Any, Any], delivery: str) -> tuple[int, dict[str, Any]]:
    reply = await client.post(
        "/webhook", data=PUSH, headers=signed_headers(SECRET, PUSH, "push", delivery=delivery)
    )
    return reply.status, await reply.json()


async def delivered(direct: aioredis.Redis, keys: Keys) -> list[str]:
    received = events(await direct.xrange(keys.webhook_received))
    return [e.delivery_id for e in received if isinstance(e, WebhookReceived)]


async def test_while_redis_is_down_webhooks_are_spooled_then_replayed_in_order(
    client: TestClient[Any, Any], private_redis: EmbeddedRedis, direct: aioredis.Redis, keys: Keys
) -> None:
    private_redis.stop()
    ids = [f"down-{n}" for n in range(6)]
    for delivery in ids:
        status, answer = await post(client, delivery)
        assert status == 202, answer
        assert answer["job_id"] == job_id_for_delivery(delivery)
        assert answer["outcome"] == "spooled"
        assert "Redis is unavailable" in answer["message"]
    # a redelivery while spooled answers the same job and is not spooled twice
    status, again = await post(client, ids[0])
    assert (status, again["job_id"]) == (202, job_id_for_delivery(ids[0]))
    assert again["outcome"] == "duplicate"
    assert client.app is not None
    assert client.app[SPOOL].depth == len(ids)
    health = await client.get("/health")
    assert health.status == 200
    body = await health.json()
    assert {k: body[k] for k in ("status", "redis_connected", "spool_entries", "spool_bytes")} == {
        "status": "degraded",
        "redis_connected": False,
        "spool_entries": len(ids),
        "spool_bytes": client.app[SPOOL].size,
    }
    assert body["problems"]
    assert body["problems"][0].startswith("Redis unreachable")
    metrics = await (await client.get("/metrics")).text()
    assert 'hookline_webhooks_total{event="push",outcome="spooled"} 6.0' in metrics
    assert 'hookline_webhooks_total{event="push",outcome="duplicate"} 1.0' in metrics
    assert "hookline_ingress_spool_entries 6.0" in metrics

    private_redis.start()
    await async_wait_until(
        lambda: _equals(delivered(direct, keys), ids), timeout=20, what="the spool replay"
    )
    # the stream can show the last entry a moment before the spool lets go of it
    await async_wait_until(lambda: _spool_empty(client), timeout=10, what="an empty spool")
    health_after = await (await client.get("/health")).json()
    assert health_after["status"] == "ok"
    # the markers were set by the replay: a later redelivery is still a duplicate
    status, _ = await post(client, ids[2])
    assert status == 202
    assert await delivered(direct, keys) == ids


async def test_webhooks_arriving_while_the_spool_drains_keep_their_place(
    client: TestClient[Any, Any], private_redis: EmbeddedRedis, direct: aioredis.Redis, keys: Keys
) -> None:
    private_redis.stop()
    await post(client, "first")
    private_redis.start()
    await post(client, "second")  # spooled behind "first" while the spool is not empty
    await async_wait_until(
        lambda: _equals(delivered(direct, keys), ["first", "second"]), timeout=20, what="replay"
    )


async def test_a_slow_redis_is_cut_off_by_the_deadline_and_dedupe_still_holds(
    client: TestClient[Any, Any], direct: aioredis.Redis, keys: Keys
) -> None:
    """Redis blocked for 2 s: the request gives up after 300 ms and spools; Redis later
    runs the original script too, and the replay finds the marker: one entry in all."""
    sleeper = asyncio.create_task(direct.execute_command("DEBUG", "SLEEP", "2"))  # type: ignore[no-untyped-call]
    await async_wait_until(lambda: _is_blocked(client), timeout=5, what="redis to block")
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, answer = await post(client, "slow-1")
    assert status == 202, answer
    assert loop.time() - started < 1.5
    await sleeper
    await async_wait_until(lambda: _spool_empty(client), timeout=20, what="the spool replay")
    assert await delivered(direct, keys) == ["slow-1"]


async def _equals(got: Any, expected: list[str]) -> bool:
    return bool(await got == expected)


async def _spool_empty(client: TestClient[Any, Any]) -> bool:
    assert client.app is not None
    depth: int = client.app[SPOOL].depth
    return depth == 0


async def _is_blocked(client: TestClient[Any, Any]) -> bool:
    body = await (await client.get("/health")).json()
    return body["redis_connected"] is False


async def test_a_redis_refusing_writes_is_treated_as_down(
    client: TestClient[Any, Any], direct: aioredis.Redis, keys: Keys
) -> None:
    """Out of memory under noeviction: Redis answers but refuses the write. The webhook
    is spooled (202), and appended once Redis takes writes again."""
    await direct.config_set("maxmemory", "1")
    try:
        status, answer = await post(client, "oom-1")
        assert status == 202, answer
        assert client.app is not None
        assert client.app[SPOOL].depth == 1
        assert await direct.xlen(keys.webhook_received) == 0
    finally:
        await direct.config_set("maxmemory", "0")
    await async_wait_until(lambda: _spool_empty(client), timeout=20, what="the spool replay")
    assert await delivered(direct, keys) == ["oom-1"]


async def test_a_redis_that_lost_its_scripts_gets_the_script_again(
    client: TestClient[Any, Any], direct: aioredis.Redis, keys: Keys
) -> None:
    """A restarted or failed-over Redis has no script cache: NOSCRIPT is not an outage."""
    assert (await post(client, "before-flush"))[0] == 202
    await direct.script_flush()
    replies = await asyncio.gather(*(post(client, f"after-flush-{n}") for n in range(5)))
    assert {status for status, _ in replies} == {202}
    assert client.app is not None
    assert client.app[SPOOL].depth == 0
    assert sorted(await delivered(direct, keys)) == sorted(
        ["before-flush", *(f"after-flush-{n}" for n in range(5))]
    )


async def test_when_neither_redis_nor_the_spool_can_take_it_the_answer_is_503(
    private_redis: EmbeddedRedis, prefix: str, tmp_path: Path
) -> None:
    """A full disk (the spool file is /dev/full): the one case answered with a 5xx, so
    that GitHub shows the delivery failed and it can be redelivered."""
    spool_dir = tmp_path / "full-spool"
    (spool_dir / "r1").mkdir(parents=True)
    (spool_dir / "r1" / "webhooks.spool").symlink_to("/dev/full")
    settings = load(
        {
            "REDIS_URL": private_redis.url,
            "HOOKLINE_PREFIX": prefix,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "HOOKLINE_INGRESS_SPOOL_DIR": str(spool_dir),
            "HOOKLINE_INGRESS_REPLICA": "r1",
        }
    )
    private_redis.stop()
    async with serve(create_app(settings)) as client:
        status, answer = await post(client, "nowhere-1")
        assert status == 503
        assert answer["error"] == "unavailable"
        assert client.app is not None
        assert client.app[SPOOL].depth == 0
        metrics = await (await client.get("/metrics")).text()
        assert 'hookline_webhooks_total{event="push",outcome="unavailable"} 1.0' in metrics


async def test_acceptance_order_holds_across_the_spool_boundary_while_redis_flaps(
    private_redis: EmbeddedRedis, direct: aioredis.Redis, prefix: str, keys: Keys, tmp_path: Path
) -> None:
    """300 deliveries accepted one after another (each while the earlier ones are still
    in flight) while the link to Redis is cut and restored every few deliveries: some
    are appended live, some spooled and replayed, yet ``webhook.received`` holds them
    in exactly the order they were accepted."""
    proxy = TcpProxy(private_redis.port)
    settings = load(
        {
            "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
            "HOOKLINE_PREFIX": prefix,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "HOOKLINE_INGRESS_REDIS_TIMEOUT": "200ms",
            "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
        }
    )
    app = create_app(settings)
    ids = [f"flap-{n:03d}" for n in range(300)]
    try:
        async with serve(app) as client:
            delivery = app[REPLAY].delivery
            # Redis must be verified safe before anything is appended live (else all spools).
            await app[SAFETY].check()
            assert app[SAFETY].hold() is None
            log = cast(FilteringBoundLogger, get_logger().bind())
            accepted = []
            for n, delivery_id in enumerate(ids):
                event = WebhookReceived(
                    delivery_id=delivery_id,
                    job_id=job_id_for_delivery(delivery_id),
                    event="push",
                    payload=msgspec.Raw(PUSH),
                )
                entry = delivery.entry(delivery_id, event.job_id, encode(event))
                accepted.append(asyncio.create_task(delivery.deliver(entry, log)))
                if n % 25 == 10:
                    proxy.drop()
                elif n % 25 == 13 or n == len(ids) - 1:
                    proxy.restore()
                if n % 3 == 0:
                    await asyncio.sleep(0.001)  # pacing: deliveries overlap the flaps
            outcomes = await asyncio.gather(*accepted)  # the link is up again by now
            assert {"accepted", "spooled"} <= set(outcomes)
            await async_wait_until(
                lambda: _spool_empty(client), timeout=30, what="the spool replay"
            )
            assert await delivered(direct, keys) == ids
    finally:
        proxy.cut()
