"""Rebuild equals live; retention never trims what a consumer group has not read."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis.asyncio as aioredis
from hookline.events import AnyEvent, encode
from hookline.keys import EVENT_FIELD, GROUP_DISPATCHER, GROUP_STATUS, Keys
from hookline.text import text
from hookline_status.api import REDIS
from hookline_status.app import build
from hookline_status.maintenance import RebuildBusy, rebuild, trim_streams
from hookline_status.settings import load
from hookline_status.store import Stored, snapshot
from hookline_status.view_keys import generation, view_keys
from support.jobs import PATHS, history
from support.streams import entries
from support.views import fold
from support.waiting import async_wait_until

# A generation no rebuild reaches in these tests: the reference, applied in order.
REFERENCE = 99


def stream_of(keys: Keys, event: AnyEvent) -> str:
    kind = event.__struct_config__.tag
    if kind == "job.queued":
        return keys.job_queued(event.spec.queue)  # type: ignore[union-attr]
    return {
        "webhook.received": keys.webhook_received,
        "job.started": keys.job_started,
        "job.finished": keys.job_finished,
        "job.deferred": keys.job_deferred,
    }[str(kind)]


async def append(redis: aioredis.Redis, keys: Keys, events: list[AnyEvent]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            if event.__struct_config__.tag == "job.queued":
                pipe.sadd(keys.queues, event.spec.queue)  # type: ignore[union-attr]
            pipe.xadd(stream_of(keys, event), {EVENT_FIELD: encode(event)})
        await pipe.execute()


def all_events(count: int, offset: int = 0) -> list[AnyEvent]:
    events: list[AnyEvent] = []
    for i in range(offset, offset + count):
        events += history(
            f"job{i}",
            start=i,
            path=PATHS[i % len(PATHS)],
            queue="video" if i % 2 else "pipeline_tasks",
        )
    return events


def same(a: Stored, b: Stored) -> None:
    assert a.views == b.views
    assert a.histories == b.histories
    assert a.completed == b.completed
    for x, y in ((a.duration, b.duration), (a.wait, b.wait)):
        assert set(x) == set(y)
        assert all(math.isclose(x[k], y[k]) for k in x)


async def live_status(
    base_env: dict[str, str],
) -> tuple[asyncio.Task[None], asyncio.Event, object]:
    """The status service's real consumer loop, in this process."""
    service = build(load(base_env))
    stop = asyncio.Event()
    assert service.run is not None
    run = service.run

    async def run_then_close() -> None:
        try:
            await run(stop)
        finally:
            await service.app[REDIS].aclose()

    return asyncio.create_task(run_then_close()), stop, service


async def test_a_rebuilt_projection_equals_the_live_one(
    base_env: dict[str, str], redis: aioredis.Redis, keys: Keys
) -> None:
    events = all_events(30)
    await append(redis, keys, events)
    task, stop, _ = await live_status(base_env)
    expected_entries = len(events)

    async def caught_up() -> bool:
        info = await redis.xinfo_groups(keys.job_finished)
        if not all(int(g["pending"]) == 0 for g in info):
            return False
        return await redis.exists(view_keys(keys, 0).job("job29")) == 1

    try:
        await async_wait_until(caught_up, timeout=20, what="the live projection to catch up")
        await async_wait_until(
            lambda: _handled(redis, keys, expected_entries),
            timeout=20,
            what="every entry acknowledged",
        )
        live = await snapshot(redis, view_keys(keys, 0))
        report = await rebuild(redis, keys)
        assert (report.old_generation, report.new_generation) == (0, 1)
        assert report.entries == expected_entries
        assert await generation(redis, keys) == 1
        rebuilt = await snapshot(redis, view_keys(keys, 1))
        same(live, rebuilt)
        assert live.indexes == rebuilt.indexes
        assert await redis.exists(view_keys(keys, 0).job("job0")) == 0  # the old generation is gone
        # The live projection carries on in the new generation.
        more = all_events(3, offset=100)
        await append(redis, keys, more)
        await async_wait_until(
            lambda: redis.exists(view_keys(keys, 1).job("job102")),
            timeout=20,
            what="live writes to gen 1",
        )
    finally:
        stop.set()
        await task
    model = await fold(redis, keys, events + more, REFERENCE)  # the order they were appended
    final = await snapshot(redis, view_keys(keys, 1))
    assert final.views == model.views


async def _handled(redis: aioredis.Redis, keys: Keys, expected: int) -> bool:
    total = 0
    for stream in keys.all_streams(["pipeline_tasks", "video"]):
        if not await redis.exists(stream):
            continue
        groups = await redis.xinfo_groups(stream)
        for g in groups:
            if g["name"] == GROUP_STATUS.encode():
                if int(g["pending"]):
                    return False
                last = g["last-delivered-id"]
                total += len(entries(await redis.xrange(stream, max=last)))
    return total == expected


async def test_rebuild_while_events_keep_arriving_loses_nothing(
    base_env: dict[str, str], redis: aioredis.Redis, keys: Keys
) -> None:
    first, second = all_events(40), all_events(40, offset=40)
    await append(redis, keys, first)
    task, stop, _ = await live_status(base_env)
    try:
        writer = asyncio.create_task(append_slowly(redis, keys, second))
        await rebuild(redis, keys)
        await writer
        await async_wait_until(
            lambda: _handled(redis, keys, len(first) + len(second)), timeout=30, what="all handled"
        )
    finally:
        stop.set()
        await task
    model = await fold(redis, keys, first + second, REFERENCE)
    final = await snapshot(redis, view_keys(keys, await generation(redis, keys)))
    assert final.views == model.views
    assert final.histories == model.histories


async def append_slowly(redis: aioredis.Redis, keys: Keys, events: list[AnyEvent]) -> None:
    for start in range(0, len(events), 10):
        await append(redis, keys, events[start : start + 10])
        await asyncio.sleep(0)  # let the rebuild and the live projection interleave


async def test_two_rebuilds_at_once_are_refused(redis: aioredis.Redis, keys: Keys) -> None:
    await redis.set(keys.views_rebuild_lock, "someone")
    with pytest.raises(RebuildBusy):
        await rebuild(redis, keys)
    assert await generation(redis, keys) == 0


async def test_retention_trims_old_entries_only_once_every_group_read_them(
    redis: aioredis.Redis, keys: Keys
) -> None:
    stream = keys.webhook_received
    ids = [
        text(await redis.xadd(stream, {EVENT_FIELD: b"x"}, id=f"{1000 + i}-0")) for i in range(10)
    ]
    await redis.xgroup_create(stream, GROUP_STATUS, id="0")
    await redis.xgroup_create(stream, GROUP_DISPATCHER, id="0")
    # status read and acknowledged everything; the dispatcher read six, acked four
    await redis.xreadgroup(GROUP_STATUS, "s", {stream: ">"})
    await redis.xack(stream, GROUP_STATUS, *ids)
    await redis.xreadgroup(GROUP_DISPATCHER, "d", {stream: ">"}, count=6)
    await redis.xack(stream, GROUP_DISPATCHER, *ids[:4])
    far_future = 10_000_000_000_000
    removed = await trim_streams(redis, keys, retention=60, now_ms=far_future)
    assert removed == {stream: 4}
    left = [e.decode() for e, _ in entries(await redis.xrange(stream))]
    assert left == ids[4:]  # pending (5, 6) and unread (7-10) entries stay
    await redis.xack(stream, GROUP_DISPATCHER, *ids[4:6])
    await redis.xreadgroup(GROUP_DISPATCHER, "d", {stream: ">"})
    await redis.xack(stream, GROUP_DISPATCHER, *ids[6:])
    assert await trim_streams(redis, keys, retention=60, now_ms=far_future) == {stream: 6}


async def test_retention_keeps_entries_younger_than_the_retention(
    redis: aioredis.Redis, keys: Keys
) -> None:
    stream = keys.job_started
    for i in range(5):
        await redis.xadd(stream, {EVENT_FIELD: b"x"}, id=f"{1_000_000 + i * 1000}-0")
    await redis.xgroup_create(stream, GROUP_STATUS, id="$")  # has read everything
    removed = await trim_streams(redis, keys, retention=2.5, now_ms=1_000_000 + 4000 + 500)
    # cutoff = 4500 - 2500 = 2000 ms after the first: entries at 0 and 1000 go
    assert removed == {stream: 2}
    assert await redis.xlen(keys.webhook_received) == 0  # streams nobody reads: untouched


async def test_the_live_projection_applies_events_in_the_order_they_happened(
    base_env: dict[str, str], redis: aioredis.Redis, keys: Keys
) -> None:
    """Entries of different streams appended in the same millisecond carry unrelated
    sequence numbers; the projection must still apply a job's events in causal order."""
    first, second = all_events(40), all_events(40, offset=40)
    await append(redis, keys, first)
    task, stop, _ = await live_status(base_env)
    try:
        await append_slowly(redis, keys, second)
        await async_wait_until(
            lambda: _handled(redis, keys, len(first) + len(second)), timeout=30, what="all handled"
        )
    finally:
        stop.set()
        await task
    model = await fold(redis, keys, first + second, REFERENCE)
    final = await snapshot(redis, view_keys(keys, 0))
    assert [j for j in model.views if final.views.get(j) != model.views[j]] == []
    assert final.completed == model.completed


async def test_a_bad_entry_is_set_aside_and_the_projection_carries_on(
    base_env: dict[str, str], redis: aioredis.Redis, keys: Keys
) -> None:
    events = history("good", path="finish")
    await append(redis, keys, events[:2])
    await redis.xadd(keys.job_started, {EVENT_FIELD: b'{"type": "job.started", "job_id": 3}'})
    await redis.xadd(keys.job_finished, {b"other": b"no event field"})
    await append(redis, keys, events[2:])
    task, stop, _ = await live_status(base_env)
    try:
        await async_wait_until(
            lambda: redis.hget(view_keys(keys, 0).job("good"), "status"),
            timeout=20,
            what="the view",
        )
        await async_wait_until(
            lambda: _handled(redis, keys, len(events) + 2), timeout=20, what="all acknowledged"
        )
    finally:
        stop.set()
        await task
    assert await redis.hget(view_keys(keys, 0).job("good"), "status") == b"finished"
    # Both are poison, the entry without hookline's field too: set aside, not skipped.
    assert await redis.xlen(keys.dead_letter) == 2
    report = await rebuild(redis, keys)
    assert report.undecodable == 2
    rebuilt = await snapshot(redis, view_keys(keys, 1))
    assert rebuilt.views["good"]["status"] == "finished"
