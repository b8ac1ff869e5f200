"""Operator commands against a real Redis and a running dispatcher loop: every command
is carried out once, answers what it did, and follows the cancel protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import pytest
import redis.asyncio as aioredis
from hookline.commands import send_command
from hookline.events import (
    FailedPurgeRequested,
    JobCancelRequested,
    JobFinished,
    JobPurged,
    JobQueued,
    JobRequeueRequested,
    JobStarted,
    encode,
)
from hookline.keys import EVENT_FIELD, Keys
from hookline.text import text
from support.dispatching import Harness, make_harness
from support.waiting import async_wait_until


@pytest.fixture
async def h(redis: aioredis.Redis, keys: Keys) -> AsyncIterator[Harness]:
    """A harness whose dispatcher loop runs in the background, as in the service."""
    harness = make_harness(redis, keys)
    stop = asyncio.Event()
    task = asyncio.create_task(harness.consumer.run(stop))
    yield harness
    stop.set()
    await asyncio.wait_for(task, 10)


async def phase(h: Harness, job_id: str) -> str | None:
    raw = await h.redis.hget(h.keys.dispatcher_job(job_id), "phase")
    return text(raw) if raw else None


async def queued_job(h: Harness, delivery: str, event: str = "push") -> JobQueued:
    name = "with-new-branch.payload.json" if event == "push" else "opened.payload.json"
    job_id = await h.webhook(event, name, delivery)
    queue = "builds" if event == "push" else "pipeline_tasks"

    async def found() -> JobQueued | None:
        return next((q for q in await h.queued(queue) if q.job_id == job_id), None)

    return await async_wait_until(found, what="the job to be queued")


async def failed_job(h: Harness, delivery: str, event: str = "push") -> JobQueued:
    """A job whose only attempt failed for good (Timeout is not retried by `build`,
    ValueError is not retryable at all)."""
    job = await queued_job(h, delivery, event)
    await h.finish(job, error="Timeout" if event == "push" else "Fatal")
    if event != "push":
        # the `fixed` pipeline retries once: fail that attempt too
        await async_wait_until(lambda: phase(h, job.job_id), what="a record")
        await async_wait_until(
            lambda: _is(phase(h, job.job_id), "deferred"), what="the retry to be deferred"
        )
        h.clock.now += 60
        await h.dispatcher.move_due()
        second = (await h.queued("pipeline_tasks"))[-1]
        await h.finish(second, error="Fatal")
    await async_wait_until(lambda: _is(phase(h, job.job_id), "failed"), what="failed for good")
    return job


async def _is(value: Awaitable[str | None], expected: str) -> bool:
    return (await value) == expected


async def ends(h: Harness, job_id: str) -> list[JobFinished]:
    return [
        e
        for e in await h.events(h.keys.job_finished)
        if isinstance(e, JobFinished) and e.job_id == job_id
    ]


async def test_cancel_of_a_queued_job_ends_it_and_tells_the_workers(h: Harness) -> None:
    job = await queued_job(h, "c-1")
    pubsub = h.redis.pubsub()
    await pubsub.subscribe(h.keys.control)
    answer = await send_command(h.redis, h.keys, JobCancelRequested(job_id=job.job_id))
    assert answer is not None
    assert answer.ok
    assert answer.job_ids == [job.job_id]
    [end] = await ends(h, job.job_id)
    assert (end.outcome, end.attempt) == ("canceled", 1)
    assert await h.redis.get(h.keys.cancel(job.job_id)) == b"1"
    assert 0 < await h.redis.ttl(h.keys.cancel(job.job_id)) <= 7 * 86400

    async def published() -> object:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        return message and message["data"] == job.job_id.encode()

    await async_wait_until(published, what="the control message")
    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py's PubSub.aclose

    again = await send_command(h.redis, h.keys, JobCancelRequested(job_id=job.job_id))
    assert again is not None
    assert again.ok
    assert "already canceled" in again.message
    assert len(await ends(h, job.job_id)) == 1


async def test_cancel_of_a_started_job_is_left_to_its_worker(h: Harness) -> None:
    job = await queued_job(h, "c-2")
    started = JobStarted(
        job_id=job.job_id,
        delivery_id=job.delivery_id,
        attempt=1,
        queue="builds",
        pipeline="build",
        worker="w9",
    )
    await h.append(h.keys.job_started, started)
    await async_wait_until(lambda: _is(phase(h, job.job_id), "started"), what="started")
    answer = await send_command(h.redis, h.keys, JobCancelRequested(job_id=job.job_id))
    assert answer is not None
    assert answer.ok
    assert "w9" in answer.message
    assert await h.redis.get(h.keys.cancel(job.job_id)) == b"1"
    assert await ends(h, job.job_id) == []
    # the worker stops the pipeline and records the end; a failure meanwhile is final
    await h.finish(job, error="Killed")
    await async_wait_until(lambda: _is(phase(h, job.job_id), "failed"), what="failed")
    assert await h.redis.zcard(h.keys.delayed) == 0


@pytest.mark.parametrize("job_id", ["no-such-job", ""])
async def test_cancel_of_an_unknown_job_is_refused(h: Harness, job_id: str) -> None:
    answer = await send_command(h.redis, h.keys, JobCancelRequested(job_id=job_id))
    assert answer is not None
    assert not answer.ok
    assert "unknown" in answer.message
    assert await h.redis.xlen(h.keys.job_finished) == 0


async def test_requeue_makes_a_new_attempt_of_a_failed_job(h: Harness) -> None:
    job = await failed_job(h, "q-1")
    assert await h.redis.zscore(h.keys.dispatcher_failed, job.job_id) is not None
    answer = await send_command(h.redis, h.keys, JobRequeueRequested(job_id=job.job_id))
    assert answer is not None
    assert answer.ok, answer.message
    again = (await h.queued())[-1]
    assert (again.job_id, again.attempt) == (job.job_id, 2)
    assert [r.error.type for r in again.history if r.error] == ["Timeout"]
    assert await h.redis.zscore(h.keys.dispatcher_failed, job.job_id) is None
    # requeueing it again while it is queued changes nothing
    twice = await send_command(h.redis, h.keys, JobRequeueRequested(job_id=job.job_id))
    assert twice is not None
    assert not twice.ok
    assert "queued" in twice.message
    assert len(await h.queued()) == 2


async def test_requeue_all_takes_every_failed_job_of_one_queue(h: Harness) -> None:
    builds = [await failed_job(h, f"a-{i}") for i in range(2)]
    other = await failed_job(h, "a-pr", event="pull_request")
    command = JobRequeueRequested(all_failed=True, queue="builds")
    answer = await send_command(h.redis, h.keys, command)
    assert answer is not None
    assert answer.ok
    assert sorted(answer.job_ids) == sorted(j.job_id for j in builds)
    assert "requeued 2 failed job(s) on queue builds" in answer.message
    assert await phase(h, other.job_id) == "failed"
    answer = await send_command(h.redis, h.keys, JobRequeueRequested(all_failed=True))
    assert answer is not None
    assert answer.job_ids == [other.job_id]


async def test_a_requeue_naming_a_job_and_all_is_refused(h: Harness) -> None:
    command = JobRequeueRequested(job_id="x", all_failed=True)
    answer = await send_command(h.redis, h.keys, command)
    assert answer is not None
    assert not answer.ok
    assert await h.redis.exists(h.keys.job_queued("builds")) == 0


async def test_purge_forgets_the_failed_jobs_and_says_so(h: Harness) -> None:
    jobs = [await failed_job(h, f"p-{i}") for i in range(2)]
    answer = await send_command(h.redis, h.keys, FailedPurgeRequested(requested_by="ops"))
    assert answer is not None
    assert answer.ok
    assert sorted(answer.job_ids) == sorted(j.job_id for j in jobs)
    purged = [e for e in await h.events(h.keys.job_finished) if isinstance(e, JobPurged)]
    assert sorted(p.job_id for p in purged) == sorted(j.job_id for j in jobs)
    assert await h.redis.zcard(h.keys.dispatcher_failed) == 0
    for job in jobs:
        assert not await h.redis.exists(h.keys.dispatcher_job(job.job_id))
    answer = await send_command(h.redis, h.keys, FailedPurgeRequested())
    assert answer is not None
    assert answer.job_ids == []


async def test_a_redelivered_command_is_not_carried_out_twice(h: Harness) -> None:
    job = await failed_job(h, "r-1")
    command = JobRequeueRequested(job_id=job.job_id)
    for _ in range(2):  # the same command (same id) appended twice, as a replay would
        await h.redis.xadd(h.keys.commands, {EVENT_FIELD: encode(command)})
    answers = h.keys.command_answer(command.event_id)
    await async_wait_until(lambda: h.redis.llen(answers), what="answers")
    await async_wait_until(lambda: _llen_is(h, answers, 2), what="both deliveries to be answered")
    assert [q.attempt for q in await h.queued() if q.job_id == job.job_id] == [1, 2]


async def _llen_is(h: Harness, key: str, n: int) -> bool:
    return int(await h.redis.llen(key)) == n


async def test_an_undecodable_command_is_dead_lettered_and_the_loop_goes_on(h: Harness) -> None:
    await h.redis.xadd(h.keys.commands, {EVENT_FIELD: b'{"type":"job.cancel_requested"}'})
    job = await queued_job(h, "u-1")
    answer = await send_command(h.redis, h.keys, JobCancelRequested(job_id=job.job_id))
    assert answer is not None
    assert answer.ok
    assert await h.redis.xlen(h.keys.dead_letter) == 1


async def test_a_skipped_job_has_nothing_to_cancel_or_requeue(h: Harness) -> None:
    job_id = await h.webhook("star", "created.payload.json", "skip-1")
    await async_wait_until(lambda: _is(phase(h, job_id), "skipped"), what="skipped")
    for command in (JobCancelRequested(job_id=job_id), JobRequeueRequested(job_id=job_id)):
        answer = await send_command(h.redis, h.keys, command)
        assert answer is not None
        assert not answer.ok
        assert "was skipped" in answer.message
