"""A run reclaimed after a worker crash, a lapsed lease or a shutdown hand-back is a
first-class attempt for the dispatcher: it counts against the retries, its failure
retries or dead-letters the job, and the job can be requeued after it. Driven step by
step against a real Redis (the worker numbers the n-th run of a queued entry
``queued attempt + n - 1``; tests/e2e/test_worker_processes.py does it with real
processes)."""

from __future__ import annotations

import json

import msgspec
import pytest
import redis.asyncio as aioredis
from hookline.events import CommandAnswer, DeadLetter, JobRequeueRequested
from hookline.keys import EVENT_FIELD, Keys
from hookline.text import text
from support.dispatching import Harness, make_harness
from support.streams import entries


@pytest.fixture
def h(redis: aioredis.Redis, keys: Keys) -> Harness:
    return make_harness(redis, keys)


async def record(h: Harness, job_id: str) -> dict[str, str]:
    raw = await h.redis.hgetall(h.keys.dispatcher_job(job_id))
    return {text(k): text(v) for k, v in raw.items() if k != b"template"}


async def requeue(h: Harness, job_id: str) -> CommandAnswer:
    command = JobRequeueRequested(job_id=job_id, requested_by="test")
    await h.append(h.keys.commands, command)
    await h.pump()
    raw = await h.redis.lpop(h.keys.command_answer(command.event_id))
    assert isinstance(raw, bytes)
    return msgspec.json.decode(raw, type=CommandAnswer)


async def test_a_reclaimed_run_counts_against_the_retries_and_its_last_failure_dead_letters(
    h: Harness,
) -> None:
    await h.webhook("push", "with-new-branch.payload.json", "d-crash")  # build: retries 2
    await h.pump()
    [first] = await h.queued()
    await h.start(first, worker="doomed")  # run 1 dies with its worker
    await h.finish(first, attempt=2, worker="survivor")  # reclaimed: run 2 fails
    await h.pump()
    assert (await record(h, first.job_id))["phase"] == "deferred"
    assert h.metric("hookline_retries_scheduled_total", pipeline="build") == 1
    h.clock.now += 60
    assert await h.dispatcher.move_due() == 1
    third = (await h.queued())[-1]
    assert third.attempt == 3
    assert [(r.attempt, r.outcome, r.worker) for r in third.history] == [
        (1, "failed", "doomed"),
        (2, "failed", "survivor"),
    ]
    assert third.history[0].error is not None
    assert third.history[0].error.type == "RunLost"

    await h.finish(third, error="Boom3")  # the last retry fails: dead-lettered
    await h.pump()
    fields = await record(h, first.job_id)
    assert fields["phase"] == "failed"
    assert await h.redis.pttl(h.keys.dispatcher_job(first.job_id)) > 0
    [(_, entry)] = entries(await h.redis.xrange(h.keys.dead_letter))
    letter = msgspec.json.decode(entry[EVENT_FIELD], type=DeadLetter)
    assert "failed 3 times, no retries left" in letter.reason
    history = json.loads(letter.data)
    assert [a["attempt"] for a in history["attempts"]] == [1, 2, 3]
    assert h.metric("hookline_dead_letter_total") == 1

    answer = await requeue(h, first.job_id)
    assert answer.ok, answer.message
    assert (await h.queued())[-1].attempt == 4


async def test_a_job_whose_reclaimed_run_fails_for_good_is_dead_lettered_and_requeueable(
    h: Harness,
) -> None:
    await h.webhook("push", "with-new-branch.payload.json", "d-lost")
    await h.pump()
    [job] = await h.queued()
    await h.start(job, worker="a")
    await h.start(job, attempt=2, worker="b")
    await h.finish(job, "failed", "Timeout", attempt=3, worker="c")  # Timeout: not retried
    await h.pump()
    fields = await record(h, job.job_id)
    assert (fields["phase"], fields["attempt"]) == ("failed", "3")
    assert await h.redis.xlen(h.keys.dead_letter) == 1
    assert await h.redis.zscore(h.keys.dispatcher_failed, job.job_id) is not None
    answer = await requeue(h, job.job_id)
    assert answer.ok, answer.message
    assert (await h.queued())[-1].attempt == 4


async def test_a_reclaimed_run_that_finishes_ends_the_job_with_its_ttl(h: Harness) -> None:
    await h.webhook("push", "with-new-branch.payload.json", "d-ok")
    await h.pump()
    [job] = await h.queued()
    await h.start(job, worker="doomed")
    await h.pump()
    await h.finish(job, "finished", attempt=2, worker="survivor")
    await h.pump()
    fields = await record(h, job.job_id)
    assert (fields["phase"], fields["attempt"], fields["worker"]) == ("finished", "2", "survivor")
    assert await h.redis.pttl(h.keys.dispatcher_job(job.job_id)) > 0


async def test_a_lost_runs_late_events_after_the_job_moved_on_change_nothing(
    h: Harness,
) -> None:
    """A stalled run's events arriving after its job's entry was retried are stale."""
    await h.webhook("push", "with-new-branch.payload.json", "d-late")
    await h.pump()
    [job] = await h.queued()
    await h.finish(job, attempt=2, worker="survivor")  # run 2 fails: retry 3 deferred
    await h.pump()
    await h.finish(job, "finished", attempt=1, worker="stalled")  # run 1's late end
    await h.pump()
    fields = await record(h, job.job_id)
    assert (fields["phase"], fields["attempt"]) == ("deferred", "3")
