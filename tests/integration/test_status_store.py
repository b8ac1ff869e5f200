"""The projection's rule, as the apply and sweep scripts carry it out in Redis: ranks,
transitions, indexes, expiry, metrics and the rendered documents."""

from __future__ import annotations

import json
import random
from datetime import datetime

import msgspec
import pytest
import redis.asyncio as aioredis
from hookline.events import AnyEvent, JobPurged, JobQueued, JobSpec
from hookline.keys import Keys
from hookline_status.documents import JobView
from hookline_status.projection import project
from hookline_status.store import APPLY, apply_ops, snapshot, sweep_expired
from hookline_status.view_keys import view_keys
from support.jobs import (
    DEFERRED_2,
    FAILED_1,
    FINISHED_2,
    HISTORY,
    PATHS,
    QUEUED_1,
    QUEUED_2,
    RECEIVED,
    SKIPPED,
    STARTED_1,
    STARTED_2,
    at,
    history,
)
from support.views import fold, project_into

_strict = msgspec.json.Decoder(JobView)


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ([RECEIVED], "queued"),
        ([RECEIVED, QUEUED_1], "queued"),
        ([RECEIVED, QUEUED_1, STARTED_1], "started"),
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1], "failed"),
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, DEFERRED_2], "deferred"),
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, DEFERRED_2, QUEUED_2, STARTED_2], "started"),
        (HISTORY, "finished"),
        ([RECEIVED, SKIPPED], "skipped"),
        # stale and duplicate events change nothing
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, STARTED_1], "failed"),
        ([RECEIVED, FINISHED_2, QUEUED_1, STARTED_1, FAILED_1], "finished"),
        ([SKIPPED, RECEIVED], "skipped"),
        # nothing follows a skipped job
        ([RECEIVED, SKIPPED, QUEUED_1], "skipped"),
    ],
)
async def test_status_follows_the_highest_attempt_and_phase(
    redis: aioredis.Redis, keys: Keys, events: list[AnyEvent], status: str
) -> None:
    stored = await fold(redis, keys, events, 0)
    assert stored.views["j1"]["status"] == status
    assert _strict.decode(stored.rendered["j1"]).status == status


@pytest.mark.parametrize("seed", range(8))
async def test_any_arrival_order_ends_in_the_same_final_state(
    redis: aioredis.Redis, keys: Keys, seed: int
) -> None:
    shuffled = random.Random(seed).sample(HISTORY, len(HISTORY))
    view = _strict.decode((await fold(redis, keys, shuffled, 0)).rendered["j1"])
    assert (view.status, view.attempt, view.result) == ("finished", 2, {"ok": True})
    assert view.created_at == at(0)


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


@pytest.mark.parametrize("per_call", [1, 7, 500])
async def test_every_event_twice_changes_nothing(
    redis: aioredis.Redis, keys: Keys, per_call: int
) -> None:
    events = jobs_mix()
    once = await fold(redis, keys, events, 1)
    twice = [e for event in events for e in (event, event)]
    applied = await project_into(redis, keys, twice, 2, per_call=per_call, guard=False)
    assert applied == [1, 0] * len(events)
    assert await snapshot(redis, view_keys(keys, 2)) == once


async def test_every_document_reads_as_a_job_view(redis: aioredis.Redis, keys: Keys) -> None:
    stored = await fold(redis, keys, jobs_mix(), 0)
    assert set(stored.rendered) == set(stored.views)
    for job_id, document in stored.rendered.items():
        view = _strict.decode(document)
        assert (view.job_id, view.status) == (job_id, stored.views[job_id]["status"])
    finished = _strict.decode((await fold(redis, keys, HISTORY, 1)).rendered["j1"])
    assert (finished.started_at, finished.ended_at) == (at(11), at(12))
    assert (finished.error, finished.worker, finished.queue) == (None, "w2", "pipeline_tasks")


async def test_a_view_is_listed_in_its_status_and_dimension_indexes(
    redis: aioredis.Redis, keys: Keys
) -> None:
    events = history("j", path="fail", queue="video", pipeline="render", repository="o/r")
    stored = await fold(redis, keys, events, 0)
    assert {name for name, jobs in stored.indexes.items() if "j" in jobs} == {
        f"{status}{tail}"
        for status in ("failed", "all")
        for tail in ("", ":queue=video", ":pipeline=render", ":repository=o/r")
    }
    # and the names are the ones readers ask for
    views = view_keys(keys, 0)
    assert await redis.zscore(views.index("failed", "queue", "video"), "j") is not None


async def test_outcomes_durations_and_waits_count_once(redis: aioredis.Redis, keys: Keys) -> None:
    events = [e for path in PATHS for e in history(path, path=path)]
    stored = await fold(redis, keys, events * 2, 0)  # everything delivered twice
    assert stored.completed == {
        "pipeline_tasks\tdemo\tfinished": 2,
        "pipeline_tasks\tdemo\tfailed": 2,
        "pipeline_tasks\tdemo\tcanceled": 1,
        "\t\tskipped": 1,
    }
    assert stored.duration["pipeline_tasks\tdemo\tcount"] == 4
    assert stored.wait["pipeline_tasks\tcount"] == 5  # every start, retries included


async def test_history_keeps_stale_and_reordered_events_once(
    redis: aioredis.Redis, keys: Keys
) -> None:
    stored = await fold(redis, keys, [*HISTORY, *reversed(HISTORY)], 0)
    assert len(stored.histories["j1"]) == len(HISTORY)


@pytest.mark.parametrize(("path", "ttl"), [("finish", 60.0), ("fail", 120.0)])
async def test_ended_views_expire_after_their_pipelines_ttl(
    redis: aioredis.Redis, keys: Keys, path: str, ttl: float
) -> None:
    events = (
        history("j", path=path, result_ttl=ttl)
        if path == "finish"
        else history("j", path=path, failure_ttl=ttl)
    )
    stored = await fold(redis, keys, events, 0)
    ended = int(datetime.fromisoformat(stored.views["j"]["ended_at"]).timestamp() * 1000)
    assert stored.expiring == {"j": ended + int(ttl * 1000)}
    assert stored.views["j"]["expires_ms"] == str(ended + int(ttl * 1000))


async def test_a_purged_failed_job_expires_at_once_without_counting_again(
    redis: aioredis.Redis, keys: Keys
) -> None:
    purge = JobPurged(job_id="j1", delivery_id="d1", attempt=1, occurred_at=at(20))
    stored = await fold(redis, keys, [RECEIVED, QUEUED_1, STARTED_1, FAILED_1, purge, purge], 0)
    assert sum(stored.completed.values()) == 1
    assert stored.views["j1"]["status"] == "failed"
    assert int(stored.views["j1"]["expires_ms"]) <= int(at(20).timestamp() * 1000) + 1
    assert await sweep_expired(redis, view_keys(keys, 0), int(at(21).timestamp() * 1000)) == 1
    after = await snapshot(redis, view_keys(keys, 0))
    assert "j1" not in after.views
    assert all("j1" not in m for m in after.indexes.values())


async def test_expiry_removes_the_view_from_every_index(redis: aioredis.Redis, keys: Keys) -> None:
    events = history("short", path="finish", result_ttl=60) + history("long", path="fail", start=1)
    await fold(redis, keys, events, 0)
    now_ms = int(at(3600).timestamp() * 1000)  # an hour on: 'short' is due, 'long' is not
    assert await sweep_expired(redis, view_keys(keys, 0), now_ms) == 1
    stored = await snapshot(redis, view_keys(keys, 0))
    assert set(stored.views) == set(stored.histories) == {"long"}
    assert all("short" not in members for members in stored.indexes.values())
    assert "long" in stored.indexes["failed:queue=pipeline_tasks"]
    assert set(stored.expiring) == {"long"}


async def test_a_requeued_view_is_not_swept(redis: aioredis.Redis, keys: Keys) -> None:
    again = JobQueued(
        job_id="j1",
        delivery_id="d-j1",
        attempt=2,
        spec=JobSpec(pipeline="demo"),
        occurred_at=at(30),
    )
    await fold(redis, keys, [*history("j1", path="finish", result_ttl=60), again], 0)
    assert await sweep_expired(redis, view_keys(keys, 0), int(at(3600).timestamp() * 1000)) == 0
    stored = await snapshot(redis, view_keys(keys, 0))
    assert stored.views["j1"]["status"] == "queued"
    assert "expires_ms" not in stored.views["j1"]


async def test_writes_to_a_generation_no_longer_current_are_dropped(
    redis: aioredis.Redis, keys: Keys
) -> None:
    await redis.set(keys.views_generation, 3)
    assert await project_into(redis, keys, history("j1"), 2) == []
    assert not await redis.exists(view_keys(keys, 2).job("j1"))
    await project_into(redis, keys, history("j1"), 2, guard=False)
    assert await redis.exists(view_keys(keys, 2).job("j1"))


async def test_apply_ops_commit_in_a_transaction(redis: aioredis.Redis, keys: Keys) -> None:
    updates = [u for e in history("j1") if (u := project(e)) is not None]
    await redis.script_load(APPLY.source)  # a plain client: it does not load scripts itself
    async with redis.pipeline(transaction=True) as tx:
        for op in apply_ops(keys, 0, updates):
            tx.execute_command(*op)
        (applied,) = await tx.execute()
    assert applied == [1] * len(updates)


@pytest.mark.parametrize(
    ("events", "queued_for_ms"),
    [
        ([RECEIVED, QUEUED_1], None),  # null until started
        ([RECEIVED, QUEUED_1, STARTED_1], 1000),
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1], 1000),  # kept once the attempt ends
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, DEFERRED_2], None),  # a new attempt
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, DEFERRED_2, QUEUED_2], None),
        (HISTORY, 1000),  # attempt 2: queued at 10 s, started at 11 s
        ([RECEIVED, STARTED_1, QUEUED_1], None),  # its own queueing not seen before the start
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, STARTED_2], None),  # not attempt 1's wait
    ],
)
async def test_queued_for_ms_is_the_current_attempts_wait(
    redis: aioredis.Redis, keys: Keys, events: list[AnyEvent], queued_for_ms: int | None
) -> None:
    stored = await fold(redis, keys, events, 0)
    assert _strict.decode(stored.rendered["j1"]).queued_for_ms == queued_for_ms


@pytest.mark.parametrize("repository", ["octo/repo", "back\\slash/and\\/both", "/lead/"])
async def test_text_with_slashes_renders_as_plain_json(
    redis: aioredis.Redis, keys: Keys, repository: str
) -> None:
    """cjson escapes '/' as '\\/'; the document reads the same as JSON Python writes."""
    stored = await fold(redis, keys, history("j", path="finish", repository=repository), 0)
    document = stored.rendered["j"]
    assert _strict.decode(document).repository == repository
    assert json.dumps(repository).encode() in document
