"""The one consumer runtime against a real Redis: writes and acks in one transaction,
effects only after the commit, poison of any kind set aside, failed batches kept pending."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from hookline.consumer import Consumer, Write, Writes
from hookline.events import AnyEvent, WebhookReceived, encode
from hookline.keys import EVENT_FIELD, Keys
from hookline.metrics import CollectorRegistry, ConsumerMetrics
from hookline.streams import Entry
from hookline.text import text
from redis.exceptions import ConnectionError as RedisConnectionError

GROUP = "test-group"


def received(n: int) -> bytes:
    return encode(WebhookReceived(delivery_id=f"d{n}", job_id=f"j{n}", event="push"))


class Recorder:
    """A handler that writes one SET per event and notes the replies it was given."""

    def __init__(self, keys: Keys, fail_on: set[str] | None = None) -> None:
        self.keys = keys
        self.fail_on = fail_on or set()
        self.replies: list[Any] = []

    async def __call__(self, event: AnyEvent, entry: Entry) -> Sequence[Write]:
        job = getattr(event, "job_id", "")
        if job in self.fail_on:
            raise RuntimeError(f"cannot handle {job}")
        return [Write(("SET", f"{self.keys.base}:done:{job}", entry.entry_id), self.replies.append)]


def consumer(
    redis: aioredis.Redis, keys: Keys, handler: Recorder, **options: Any
) -> Consumer[Sequence[Write]]:
    return Consumer(
        redis,
        keys=keys,
        group=GROUP,
        name="c1",
        streams=[keys.webhook_received],
        handler=handler,
        batch=Writes(),
        metrics=ConsumerMetrics(CollectorRegistry()),
        **options,
    )


async def pending(redis: aioredis.Redis, keys: Keys) -> int:
    info: Any = await redis.xpending(keys.webhook_received, GROUP)
    return int(info["pending"])


async def dead_letters(redis: aioredis.Redis, keys: Keys) -> list[dict[str, Any]]:
    entries: Any = await redis.xrange(keys.dead_letter)
    return [msgspec.json.decode(fields[EVENT_FIELD]) for _, fields in entries]


async def read_once(c: Consumer[Sequence[Write]]) -> None:
    """One step with nothing else pending: our backlog (empty), then the new entries."""
    stop = asyncio.Event()
    await c.step(stop)
    await c.step(stop)


async def test_writes_and_acks_commit_together_and_effects_see_the_replies(
    redis: aioredis.Redis, keys: Keys
) -> None:
    handler = Recorder(keys)
    c = consumer(redis, keys, handler)
    await c.streams()
    for n in range(3):
        await redis.xadd(keys.webhook_received, {EVENT_FIELD: received(n)})
    await read_once(c)
    assert [await redis.exists(f"{keys.base}:done:j{n}") for n in range(3)] == [1, 1, 1]
    assert await pending(redis, keys) == 0
    assert handler.replies == [True, True, True]


@pytest.mark.parametrize(
    "poison",
    [
        b"{not json",
        b'{"type": "no.such.event"}',
        b"[" * 100_000 + b"]" * 100_000,  # deep enough to exhaust any recursion limit
        b'{"type": "webhook.received", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"",
    ],
    ids=["bad-json", "unknown-type", "deep-array", "deep-payload", "empty"],
)
async def test_any_undecodable_entry_is_set_aside_and_the_next_is_handled(
    redis: aioredis.Redis, keys: Keys, poison: bytes
) -> None:
    handler = Recorder(keys)
    c = consumer(redis, keys, handler)
    await c.streams()
    bad = await redis.xadd(keys.webhook_received, {EVENT_FIELD: poison})
    await redis.xadd(keys.webhook_received, {EVENT_FIELD: received(1)})
    await read_once(c)
    assert await redis.exists(f"{keys.base}:done:j1") == 1
    assert await pending(redis, keys) == 0
    (letter,) = await dead_letters(redis, keys)
    assert letter["source_id"] == text(bad)
    assert letter["reason"].startswith("undecodable")


async def test_a_failing_handler_leaves_its_entry_pending_then_sets_it_aside(
    redis: aioredis.Redis, keys: Keys
) -> None:
    handler = Recorder(keys, fail_on={"j1"})
    c = consumer(redis, keys, handler, claim_idle=0.0, claim_every=0.0, max_deliveries=2)
    await c.streams()
    await redis.xadd(keys.webhook_received, {EVENT_FIELD: received(1)})
    await redis.xadd(keys.webhook_received, {EVENT_FIELD: received(2)})
    await read_once(c)
    assert await redis.exists(f"{keys.base}:done:j2") == 1
    assert await pending(redis, keys) == 1  # j1: kept, to be tried again
    assert await dead_letters(redis, keys) == []
    # Claimed again (its second delivery, the last allowed): it fails and is set aside.
    await c.claim_stale([keys.webhook_received])
    assert await pending(redis, keys) == 0
    (letter,) = await dead_letters(redis, keys)
    assert "handler failed 2 times" in letter["reason"]


async def test_an_entry_past_max_deliveries_is_set_aside_before_it_is_decoded(
    redis: aioredis.Redis, keys: Keys
) -> None:
    handler = Recorder(keys)
    c = consumer(redis, keys, handler, max_deliveries=1)
    await c.streams()
    entry_id = await redis.xadd(keys.webhook_received, {EVENT_FIELD: received(1)})
    await c.handle_one(Entry(keys.webhook_received, text(entry_id), received(1), 2))
    await c.flush()
    assert await redis.exists(f"{keys.base}:done:j1") == 0
    (letter,) = await dead_letters(redis, keys)
    assert letter["reason"].startswith("delivered 2 times")


async def test_a_batch_that_fails_keeps_nothing_and_is_handled_once_later(
    redis: aioredis.Redis, keys: Keys
) -> None:
    calls = 0

    class LosesRedis(Recorder):
        async def __call__(self, event: AnyEvent, entry: Entry) -> Sequence[Write]:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RedisConnectionError("gone")
            return await super().__call__(event, entry)

    handler = LosesRedis(keys)
    c = consumer(redis, keys, handler)
    await c.streams()
    for n in range(3):
        await redis.xadd(keys.webhook_received, {EVENT_FIELD: received(n)})
    stop = asyncio.Event()
    await c.step(stop)  # the (empty) backlog
    with pytest.raises(RedisConnectionError):
        await c.step(stop)
    assert await pending(redis, keys) == 3  # nothing of the failed batch acknowledged
    assert await redis.exists(f"{keys.base}:done:j0") == 0
    c.state.down(RedisConnectionError("gone"))  # as the retry loop does: backlog first
    await c.step(stop)
    assert await pending(redis, keys) == 0
    assert handler.replies == [True, True, True]
