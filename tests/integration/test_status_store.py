"""The projection's Lua script and its Python twin agree, event for event."""

from __future__ import annotations

import json
import math
import random

import pytest
import redis.asyncio as aioredis
from hookline.events import AnyEvent
from hookline.keys import Keys
from hookline_status.projection import Model, project, render
from hookline_status.store import apply_ops, snapshot, sweep_expired
from support.jobs import PATHS, at, history


def model_of(events: list[AnyEvent]) -> Model:
    model = Model()
    for event in events:
        if (update := project(event)) is not None:
            model.apply(update)
    return model


async def apply_to_redis(
    redis: aioredis.Redis, keys: Keys, events: list[AnyEvent], per_call: int
) -> list[int]:
    updates = [u for e in events if (u := project(e)) is not None]
    results: list[int] = []
    for start in range(0, len(updates), per_call):
        for op in apply_ops(keys, 0, updates[start : start + per_call]):
            results.extend(await redis.execute_command(*op))
    return results


def close(a: dict[str, float], b: dict[str, float]) -> bool:
    return set(a) == set(b) and all(math.isclose(a[k], b[k], rel_tol=1e-9) for k in a)


async def assert_same(redis: aioredis.Redis, keys: Keys, model: Model) -> None:
    stored, indexes = await snapshot(redis, keys.views(0))
    assert stored.views == model.views
    assert set(stored.rendered) == set(stored.views)
    for job_id, document in stored.rendered.items():
        assert json.loads(document) == render(stored.views[job_id])
    assert stored.histories == model.histories
    assert indexes == model.indexes()
    assert stored.completed == model.completed
    assert close(stored.duration, model.duration)
    assert close(stored.wait, model.wait)
    expiring = await redis.zrange(keys.views(0).expiring, 0, -1, withscores=True)
    assert {m.decode(): int(s) for m, s in expiring} == model.expiring()


def jobs_mix() -> list[AnyEvent]:
    events: list[AnyEvent] = []
    for i, path in enumerate(PATHS * 2):
        events += history(
            f"job{i}",
            start=i * 3,
            queue="pipeline_tasks" if i % 2 else "video",
            pipeline="demo" if i % 3 else "render",
            repository=f"octo/r{i % 4}",
            path=path,
        )
    return events


ORDERS = {
    "appended": lambda events, rng: events,
    "every-event-twice": lambda events, rng: [e for event in events for e in (event, event)],
    "shuffled": lambda events, rng: rng.sample(events, len(events)),
    "reversed": lambda events, rng: events[::-1],
    "shuffled-with-duplicates": lambda events, rng: rng.sample(events * 2, len(events) * 2),
}


@pytest.mark.parametrize("order", sorted(ORDERS))
@pytest.mark.parametrize("per_call", [1, 7, 500])
async def test_lua_and_python_agree_on_the_same_sequence(
    redis: aioredis.Redis, keys: Keys, order: str, per_call: int
) -> None:
    events = ORDERS[order](jobs_mix(), random.Random(f"{order}{per_call}"))
    results = await apply_to_redis(redis, keys, events, per_call)
    model = Model()
    expected = [model.apply(u) for e in events if (u := project(e)) is not None]
    assert results == [int(x) for x in expected]
    await assert_same(redis, keys, model)


async def test_duplicates_count_metrics_once(redis: aioredis.Redis, keys: Keys) -> None:
    events = history("j1", path="finish")
    await apply_to_redis(redis, keys, events, 50)
    await apply_to_redis(redis, keys, events, 50)
    stored, _ = await snapshot(redis, keys.views(0))
    assert stored.completed == {"pipeline_tasks\tdemo\tfinished": 1}
    assert stored.duration["pipeline_tasks\tdemo\tcount"] == 1


async def test_expiry_removes_the_view_from_every_index(redis: aioredis.Redis, keys: Keys) -> None:
    events = history("short", path="finish", result_ttl=60) + history("long", path="fail", start=1)
    await apply_to_redis(redis, keys, events, 100)
    model = model_of(events)
    now_ms = int(at(3600).timestamp() * 1000)  # an hour on: 'short' is due, 'long' is not
    assert await sweep_expired(redis, keys.views(0), now_ms) == 1
    assert model.sweep(now_ms) == 1
    await assert_same(redis, keys, model)
    stored, indexes = await snapshot(redis, keys.views(0))
    assert "short" not in stored.views
    assert all("short" not in members for members in indexes.values())
    assert "long" in indexes["failed:queue=pipeline_tasks"]


async def test_a_requeued_view_is_not_swept(redis: aioredis.Redis, keys: Keys) -> None:
    from hookline.events import JobQueued, JobSpec

    events = history("j1", path="finish", result_ttl=60)
    again = JobQueued(
        job_id="j1",
        delivery_id="d-j1",
        attempt=2,
        spec=JobSpec(pipeline="demo"),
        occurred_at=at(30),
    )
    await apply_to_redis(redis, keys, [*events, again], 100)
    assert await sweep_expired(redis, keys.views(0), int(at(3600).timestamp() * 1000)) == 0
    stored, _ = await snapshot(redis, keys.views(0))
    assert stored.views["j1"]["status"] == "queued"


async def test_writes_to_a_generation_no_longer_current_are_dropped(
    redis: aioredis.Redis, keys: Keys
) -> None:
    await redis.set(keys.views_generation, 3)
    updates = [u for e in history("j1") if (u := project(e)) is not None]
    for op in apply_ops(keys, 2, updates):
        assert await redis.execute_command(*op) == []
    assert not await redis.exists(keys.views(2).job("j1"))
    for op in apply_ops(keys, 2, updates, guard=False):
        await redis.execute_command(*op)
    assert await redis.exists(keys.views(2).job("j1"))
