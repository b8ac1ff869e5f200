"""The dispatcher against a real Redis: routing into queues, retries with backoff, the
due-job mover, delayed jobs, dead letters and supersede. Driven step by step (read a
batch, process it) with a clock the test moves, so nothing waits on real time."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import msgspec
import pytest
import redis.asyncio as aioredis
from hookline.events import DeadLetter, JobDeferred, JobError, JobFinished, WebhookReceived
from hookline.keys import EVENT_FIELD, GROUP_DISPATCHER, Keys
from support.dispatching import NO_SUPERSEDE, Harness, make_harness
from support.streams import entries


@pytest.fixture
def h(redis: aioredis.Redis, keys: Keys) -> Harness:
    return make_harness(redis, keys)


async def test_a_push_is_queued_once_however_often_its_entry_is_delivered(h: Harness) -> None:
    job_id = await h.webhook("push", "with-new-branch.payload.json", "d-1")
    await h.webhook("push", "with-new-branch.payload.json", "d-1")  # a replayed entry
    await h.pump()
    await h.webhook("push", "with-new-branch.payload.json", "d-1")  # after the first batch
    await h.pump()
    queued = await h.queued()
    assert [(q.job_id, q.attempt) for q in queued] == [(job_id, 1)]
    assert queued[0].spec.pipeline == "build"
    assert queued[0].meta["branch"] == "master"
    assert h.metric("hookline_jobs_dispatched_total", pipeline="build", queue="builds") == 1
    assert await h.redis.sismember(h.keys.queues, "builds")


async def test_an_unrouted_delivery_ends_skipped_with_its_reason(h: Harness) -> None:
    job_id = await h.webhook("star", "created.payload.json", "d-star")
    await h.pump()
    [skipped] = await h.events(h.keys.job_finished)
    assert isinstance(skipped, JobFinished)
    assert (skipped.job_id, skipped.outcome) == (job_id, "skipped")
    assert "no route matches star.created" in (skipped.reason or "")
    assert h.metric("hookline_webhooks_skipped_total", reason="no_route") == 1


async def test_a_failed_attempt_is_retried_after_its_backoff(h: Harness) -> None:
    await h.webhook("push", "with-new-branch.payload.json", "d-2")
    await h.pump()
    [first] = await h.queued()
    await h.finish(first)
    await h.pump()

    [deferred] = await h.events(h.keys.job_deferred)
    assert isinstance(deferred, JobDeferred)
    assert deferred.attempt == 2
    # exponential full jitter, retry 1: uniform in [0, 10s]; the test's rand gives 0.5
    assert deferred.not_before.timestamp() == pytest.approx(h.clock.now + 5.0)
    assert "retry 1 of 2 after Boom" in (deferred.reason or "")
    assert await h.redis.zcard(h.keys.delayed) == 1
    assert h.metric("hookline_retries_scheduled_total", pipeline="build") == 1

    assert await h.dispatcher.move_due() == 0  # not due yet
    h.clock.now += 5.0
    assert await h.dispatcher.move_due() == 1
    assert await h.dispatcher.move_due() == 0
    second = (await h.queued())[-1]
    assert (second.job_id, second.attempt) == (first.job_id, 2)
    assert [(r.attempt, r.outcome, r.error.type if r.error else None) for r in second.history] == [
        (1, "failed", "Boom")
    ]
    assert await h.redis.zcard(h.keys.delayed) == 0
    assert await h.redis.hlen(h.keys.delayed_events) == 0


async def test_a_job_out_of_retries_goes_to_the_dead_letter_stream_with_its_history(
    h: Harness,
) -> None:
    await h.webhook("push", "with-new-branch.payload.json", "d-3")
    await h.pump()
    for attempt in (1, 2, 3):
        job = (await h.queued())[-1]
        assert job.attempt == attempt
        await h.finish(job, error=f"Boom{attempt}")
        await h.pump()
        h.clock.now += 60
        await h.dispatcher.move_due()
    assert len(await h.queued()) == 3
    [entry] = entries(await h.redis.xrange(h.keys.dead_letter))
    letter = msgspec.json.decode(entry[1][EVENT_FIELD], type=DeadLetter)
    assert letter.job_id == job.job_id
    assert letter.group == GROUP_DISPATCHER
    assert "no retries left" in letter.reason
    history = json.loads(letter.data)
    assert [a["error"]["type"] for a in history["attempts"]] == ["Boom1", "Boom2", "Boom3"]
    assert history["pipeline"] == "build"
    assert await h.redis.zscore(h.keys.dispatcher_failed, job.job_id) is not None
    assert h.metric("hookline_dead_letter_total") == 1


@pytest.mark.parametrize(("error", "retryable"), [("Timeout", True), ("ValueError", False)])
async def test_errors_declared_not_retryable_fail_at_once(
    h: Harness, error: str, retryable: bool
) -> None:
    await h.webhook("push", "with-new-branch.payload.json", "d-4")
    await h.pump()
    [job] = await h.queued()
    finished = JobFinished(
        job_id=job.job_id,
        delivery_id=job.delivery_id,
        attempt=1,
        outcome="failed",
        error=JobError(type=error, message="no", retryable=retryable),
    )
    await h.append(h.keys.job_finished, finished)
    await h.pump()
    assert await h.redis.zcard(h.keys.delayed) == 0
    assert await h.redis.xlen(h.keys.dead_letter) == 1


async def test_fixed_backoff_waits_the_same_every_time(h: Harness) -> None:
    await h.webhook("pull_request", "opened.payload.json", "d-5")
    await h.pump()
    [job] = await h.queued("pipeline_tasks")
    await h.finish(job)
    await h.pump()
    [deferred] = await h.events(h.keys.job_deferred)
    assert isinstance(deferred, JobDeferred)
    assert deferred.not_before.timestamp() == pytest.approx(h.clock.now + 30)


async def test_a_delayed_route_defers_the_first_attempt_until_due(h: Harness) -> None:
    job_id = await h.webhook("pull_request", "closed.payload.json", "d-later")
    await h.pump()
    assert await h.queued("pipeline_tasks") == []
    [deferred] = await h.events(h.keys.job_deferred)
    assert isinstance(deferred, JobDeferred)
    assert (deferred.job_id, deferred.attempt) == (job_id, 1)
    assert deferred.not_before.timestamp() == pytest.approx(h.clock.now + 300)
    h.clock.now += 299
    assert await h.dispatcher.move_due() == 0
    h.clock.now += 1
    assert await h.dispatcher.move_due() == 1
    [job] = await h.queued("pipeline_tasks")
    assert (job.job_id, job.attempt, job.spec.pipeline) == (job_id, 1, "later")
    assert job.occurred_at.timestamp() == pytest.approx(h.clock.now)


async def test_a_branch_deletion_is_skipped_whatever_the_routes(h: Harness) -> None:
    job_id = await h.webhook("push", "payload.json", "d-6")
    await h.pump()
    [skipped] = await h.events(h.keys.job_finished)
    assert isinstance(skipped, JobFinished)
    assert skipped.outcome == "skipped"
    assert skipped.job_id == job_id
    assert h.metric("hookline_webhooks_skipped_total", reason="deleted_ref") == 1


async def test_stale_and_unknown_worker_events_change_nothing(h: Harness) -> None:
    await h.webhook("push", "with-new-branch.payload.json", "d-7")
    await h.pump()
    [job] = await h.queued()
    await h.finish(job, outcome="finished")
    await h.pump()
    await h.finish(job)  # a duplicate end, failed this time: already finished
    ghost = msgspec.structs.replace(job, job_id="nobody", attempt=1)
    await h.finish(ghost)
    await h.pump()
    assert await h.redis.zcard(h.keys.delayed) == 0
    assert await h.redis.xlen(h.keys.dead_letter) == 0
    pending = await h.redis.xpending(h.keys.job_finished, GROUP_DISPATCHER)
    assert pending["pending"] == 0


async def test_two_movers_at_once_queue_each_due_attempt_once(
    redis: aioredis.Redis, keys: Keys
) -> None:
    one, two = make_harness(redis, keys, NO_SUPERSEDE), make_harness(redis, keys, NO_SUPERSEDE)
    for i in range(40):
        await one.webhook("push", "with-new-branch.payload.json", f"m-{i}")
    await one.pump()
    for job in await one.queued():
        await one.finish(job)
    await one.pump()
    assert await redis.zcard(keys.delayed) == 40
    one.clock.now = two.clock.now = one.clock.now + 60
    moved = await asyncio.gather(
        *(h.dispatcher.move_due(limit=3) for h in (one, two) for _ in range(20))
    )
    assert sum(moved) == 40
    attempts = [(q.job_id, q.attempt) for q in await one.queued() if q.attempt == 2]
    assert len(attempts) == len(set(attempts)) == 40


async def test_a_newer_push_supersedes_the_older_job_of_its_branch(h: Harness) -> None:
    older = await h.webhook("push", "with-new-branch.payload.json", "s-1")
    await h.pump()
    h.clock.now += 1
    newer = await h.webhook("push", "with-new-branch.payload.json", "s-2")
    await h.pump()
    ends = [e for e in await h.events(h.keys.job_finished) if isinstance(e, JobFinished)]
    assert [(e.job_id, e.outcome) for e in ends] == [(older, "canceled")]
    assert "superseded" in (ends[0].reason or "")
    assert newer in (ends[0].reason or "")
    assert await h.redis.get(h.keys.cancel(older)) == b"1"
    # a late delivery of an even older push is itself superseded at once
    stale = await h.webhook(
        "push", "with-new-branch.payload.json", "s-0", at=datetime.fromtimestamp(1, UTC)
    )
    await h.pump()
    ends = [e for e in await h.events(h.keys.job_finished) if isinstance(e, JobFinished)]
    assert [(e.job_id, e.outcome) for e in ends] == [(older, "canceled"), (stale, "canceled")]
    live = {q.job_id for q in await h.queued()} - {older, stale}
    assert live == {newer}


async def test_a_superseded_retry_waiting_in_the_delayed_set_is_canceled(h: Harness) -> None:
    await h.webhook("push", "with-new-branch.payload.json", "r-1")
    await h.pump()
    [first] = await h.queued()
    await h.finish(first)
    await h.pump()
    assert await h.redis.zcard(h.keys.delayed) == 1
    h.clock.now += 1
    await h.webhook("push", "with-new-branch.payload.json", "r-2")
    await h.pump()
    assert await h.redis.zcard(h.keys.delayed) == 0
    ends = [e for e in await h.events(h.keys.job_finished) if isinstance(e, JobFinished)]
    assert (ends[-1].job_id, ends[-1].attempt, ends[-1].outcome) == (first.job_id, 2, "canceled")
    h.clock.now += 3600
    assert await h.dispatcher.move_due() == 0


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"null"])
async def test_a_webhook_whose_payload_is_not_an_object_ends_skipped(
    h: Harness, body: bytes
) -> None:
    received = WebhookReceived(
        delivery_id="bad", job_id="bad-job", event="push", payload=msgspec.Raw(body)
    )
    await h.append(h.keys.webhook_received, received)
    await h.pump()
    [skipped] = await h.events(h.keys.job_finished)
    assert isinstance(skipped, JobFinished)
    assert skipped.outcome == "skipped"
    assert "not a JSON object" in (skipped.reason or "")
    assert await h.queued() == []
    pending = await h.redis.xpending(h.keys.webhook_received, GROUP_DISPATCHER)
    assert pending["pending"] == 0


async def test_an_undecodable_webhook_entry_is_dead_lettered(h: Harness) -> None:
    received = WebhookReceived(
        delivery_id="bad", job_id="bad-job", event="push", payload=msgspec.Raw(b"{not json")
    )
    await h.append(h.keys.webhook_received, received)
    await h.pump()
    assert await h.redis.xlen(h.keys.dead_letter) == 1
    assert await h.queued() == []
    assert await h.redis.xlen(h.keys.job_finished) == 0
