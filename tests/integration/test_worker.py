"""The worker loop in-process against a real Redis: pipelines, timeouts, poison entries,
cancels, priorities, leases and the hand-back on shutdown."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from hookline.events import CommandRun, HandlerRun, JobFinished, JobSpec
from hookline.keys import DEFAULT_QUEUE, EVENT_FIELD, GROUP_WORKERS, Keys
from hookline.metrics import CollectorRegistry, render
from hookline.records import WorkerHeartbeat, from_hash
from hookline.redis_client import connect
from hookline_worker.metrics import WorkerMetrics
from hookline_worker.settings import load
from hookline_worker.worker import Worker
from support.waiting import async_wait_until
from support.worker_jobs import dead_letters, finished, handler_spec, pending, queue_job, started

Running = tuple[Worker, asyncio.Event, "asyncio.Task[None]", CollectorRegistry]
StartWorker = Callable[..., "asyncio.Future[Running]"]


@pytest.fixture
async def start_worker(
    redis_url: str, prefix: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process workers; each is stopped (and its client closed) afterwards."""
    running: list[Running] = []

    async def start(**env: str) -> Running:
        settings = load(
            {
                "REDIS_URL": redis_url,
                "HOOKLINE_PREFIX": prefix,
                "HOOKLINE_WORK_DIR": str(tmp_path / "work"),
                "HOOKLINE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
                "HOOKLINE_WORKER_NAME": f"w{len(running) + 1}",
                "HOOKLINE_WORKER_KILL_GRACE": "0.5",
                **env,
            }
        )
        registry = CollectorRegistry()
        worker = Worker(
            connect(redis_url, client_name="test-worker"), settings, WorkerMetrics(registry)
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        running.append((worker, stop, task, registry))
        return worker, stop, task, registry

    yield start
    for worker, stop, task, _ in running:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.redis.aclose()


async def wait_finished(
    redis: aioredis.Redis, keys: Keys, job_id: str, timeout: float = 10.0
) -> JobFinished:
    async def done() -> list[JobFinished]:
        return (await finished(redis, keys)).get(job_id, [])

    events = await async_wait_until(done, timeout, what=f"job.finished of {job_id}")
    return events[-1]


async def test_handler_results_errors_and_limits(
    start_worker: Any, redis: aioredis.Redis, keys: Keys
) -> None:
    await start_worker(HOOKLINE_WORKER_CONCURRENCY="4")
    ok = await queue_job(redis, keys, handler_spec("echo"))
    aok = await queue_job(redis, keys, handler_spec("async_echo"))
    bad = await queue_job(redis, keys, handler_spec("boom"))
    big = await queue_job(redis, keys, handler_spec("huge"))
    odd = await queue_job(redis, keys, handler_spec("not_json"))
    assert (await wait_finished(redis, keys, ok)).result["job_id"] == ok
    assert (await wait_finished(redis, keys, aok)).result == {"job_id": aok, "attempt": 1}
    failed = await wait_finished(redis, keys, bad)
    assert failed.outcome == "failed"
    assert failed.error is not None
    assert (failed.error.type, failed.error.retryable) == ("ValueError", True)
    assert "boom in" in failed.error.message
    assert "Traceback" in (failed.error.traceback or "")
    too_big = await wait_finished(redis, keys, big)
    assert too_big.error is not None
    assert (too_big.error.type, too_big.error.retryable) == ("ResultTooLarge", False)
    not_json = await wait_finished(redis, keys, odd)
    assert not_json.error is not None
    assert (not_json.error.type, not_json.error.retryable) == ("ResultNotSerializable", False)
    assert await pending(redis, keys) == 0


async def test_command_result_env_failure_and_cleanup(
    start_worker: Any, redis: aioredis.Redis, keys: Keys, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "must-not-leak")
    await start_worker(HOOKLINE_WORKER_CONCURRENCY="3")
    script = (
        "import json, os, pathlib;"
        "print('some log line');"
        "print(json.dumps({'job': os.environ['HOOKLINE_JOB_ID'],"
        " 'repo': os.environ.get('HOOKLINE_META_REPOSITORY'),"
        " 'extra': os.environ.get('EXTRA'),"
        " 'secret': os.environ.get('GITHUB_WEBHOOK_SECRET'),"
        " 'redis': os.environ.get('REDIS_URL'),"
        " 'cwd': os.getcwd(),"
        " 'payload': pathlib.Path(os.environ['HOOKLINE_PAYLOAD_FILE']).read_text()}))"
    )
    spec = JobSpec(
        pipeline="py", run=CommandRun(argv=[sys.executable, "-c", script]), env={"EXTRA": "x y"}
    )
    good = await queue_job(redis, keys, spec, meta={"repository": "octo/cat"})
    failing = JobSpec(
        pipeline="sh",
        run=CommandRun(argv=["sh", "-c", "echo working; echo 'it broke' >&2; exit 3"]),
    )
    bad = await queue_job(redis, keys, failing)
    # A background process left behind must not keep the job (or its pipes) open.
    stray = JobSpec(pipeline="stray", run=CommandRun(argv=["sh", "-c", "sleep 60 & echo done"]))
    left = await queue_job(redis, keys, stray)

    result = (await wait_finished(redis, keys, good)).result
    assert result["job"] == good
    assert result["repo"] == "octo/cat"
    assert result["extra"] == "x y"
    assert result["secret"] is None
    assert result["redis"] is None
    assert result["payload"] == "{}"
    assert Path(result["cwd"]).parent == tmp_path / "work" / "w1"  # the worker's own folder
    assert not Path(result["cwd"]).exists()  # noqa: ASYNC240 - scratch folder removed

    error = (await wait_finished(redis, keys, bad)).error
    assert error is not None
    assert error.type == "CommandFailed"
    assert error.message == "exit status 3: it broke"
    assert "it broke" in (error.traceback or "")
    assert (await wait_finished(redis, keys, left, timeout=5)).result == {"exit_code": 0}


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (
            JobSpec(
                pipeline="cmd",
                run=CommandRun(argv=["sh", "-c", "trap '' TERM; sleep 30"]),
                timeout=0.5,
            ),
            "command",
        ),
        (handler_spec("spin", timeout=0.5), "handler"),
        (handler_spec("async_wait_for_file", timeout=0.5), "handler"),
    ],
    ids=["command-ignoring-sigterm", "sync-handler", "async-handler"],
)
async def test_timeout_fails_the_job_and_frees_the_slot(
    start_worker: Any, redis: aioredis.Redis, keys: Keys, tmp_path: Path, spec: JobSpec, kind: str
) -> None:
    await start_worker(HOOKLINE_WORKER_CONCURRENCY="1")
    meta = {"wait_file": str(tmp_path / "never")}
    slow = await queue_job(redis, keys, spec, meta=meta)
    after = await queue_job(redis, keys, handler_spec("echo"))
    timed_out = await wait_finished(redis, keys, slow)
    assert timed_out.outcome == "failed"
    assert timed_out.error is not None
    assert timed_out.error.type == "Timeout"
    assert timed_out.error.retryable is True
    assert timed_out.error.message == f"{kind} ran longer than 0.5s"
    assert (await wait_finished(redis, keys, after)).outcome == "finished"


async def test_poison_entries_are_dead_lettered_and_the_worker_carries_on(
    start_worker: Any, redis: aioredis.Redis, keys: Keys
) -> None:
    stream = keys.job_queued(DEFAULT_QUEUE)
    await redis.xadd(stream, {EVENT_FIELD: b"{not json"})
    await redis.xadd(stream, {b"other": b"field"})
    await redis.xadd(stream, {EVENT_FIELD: b'{"type": "job.started", "job_id": 1}'})
    unknown = await queue_job(redis, keys, JobSpec(pipeline="ghost"))
    missing = await queue_job(
        redis, keys, JobSpec(pipeline="gone", run=HandlerRun(path="nowhere.mod:fn"))
    )
    # The old shape of a spec (before ``run``) with both a command and a handler.
    await redis.xadd(stream, {EVENT_FIELD: _old_shape(b'"command":["x"],"handler":"a:b"')})
    both = "old-shape"
    sneaky = await queue_job(redis, keys, handler_spec("echo"), job_id="../../etc")
    fine = await queue_job(redis, keys, handler_spec("echo"))
    await start_worker()
    assert (await wait_finished(redis, keys, fine)).outcome == "finished"

    letters = await async_wait_until(
        lambda: _at_least(dead_letters(redis, keys), 7), what="7 dead letters"
    )
    reasons = " | ".join(letter.reason for letter in letters)
    assert "undecodable" in reasons
    assert "unknown pipeline 'ghost'" in reasons
    assert "cannot import handler 'nowhere.mod:fn'" in reasons
    assert "needs exactly one of `command`" in reasons
    assert "job id '../../etc'" in reasons
    ended = await finished(redis, keys)
    for job_id in (unknown, missing, both, sneaky):
        (event,) = ended[job_id]
        assert event.outcome == "failed"
        assert event.error is not None
        assert (event.error.type, event.error.retryable) == ("InvalidPipeline", False)
    assert set((await started(redis, keys)).keys()) == {fine}  # none of them started
    assert await pending(redis, keys) == 0


def _old_shape(spec_fields: bytes, job_id: str = "old-shape") -> bytes:
    """A ``job.queued`` entry as written before JobSpec had ``run`` (command/handler)."""
    return (
        b'{"type":"job.queued","v":1,"job_id":"%s","delivery_id":"d-%s","attempt":1,'
        b'"spec":{"pipeline":"old","queue":"pipeline_tasks",%s,"timeout":60.0}}'
        % (job_id.encode(), job_id.encode(), spec_fields)
    )


async def test_entries_of_the_old_spec_shape_still_run(
    start_worker: Any, redis: aioredis.Redis, keys: Keys
) -> None:
    stream = keys.job_queued(DEFAULT_QUEUE)
    handler = b'"command":null,"handler":"support.worker_pipelines:echo"'
    await redis.xadd(stream, {EVENT_FIELD: _old_shape(handler, "old-handler")})
    command = b'"command":["sh","-c","echo \'{\\"ran\\": 1}\'"],"handler":null'
    await redis.xadd(stream, {EVENT_FIELD: _old_shape(command, "old-command")})
    await start_worker(HOOKLINE_WORKER_CONCURRENCY="2")
    by_handler = await wait_finished(redis, keys, "old-handler")
    assert (by_handler.outcome, by_handler.result["job_id"]) == ("finished", "old-handler")
    by_command = await wait_finished(redis, keys, "old-command")
    assert (by_command.outcome, by_command.result) == ("finished", {"ran": 1})


async def test_an_entry_nested_past_the_recursion_limit_is_dead_lettered(
    start_worker: Any, redis: aioredis.Redis, keys: Keys
) -> None:
    """Decoding it raises RecursionError: set aside like any undecodable entry, never a
    crash of the worker (that would bring it back to every worker, forever)."""
    stream = keys.job_queued(DEFAULT_QUEUE)
    deep = b'{"type":"job.queued","payload":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    await redis.xadd(stream, {EVENT_FIELD: deep})
    fine = await queue_job(redis, keys, handler_spec("echo"))
    worker, _, task, _ = await start_worker()
    assert (await wait_finished(redis, keys, fine)).outcome == "finished"
    [letter] = await dead_letters(redis, keys)
    assert "RecursionError" in letter.reason
    assert not task.done()
    assert worker.redis_ok
    assert await pending(redis, keys) == 0


async def _at_least(letters: Any, n: int) -> Any:
    found = await letters
    return found if len(found) >= n else None


async def test_queues_are_read_in_priority_order(
    start_worker: Any, redis: aioredis.Redis, keys: Keys
) -> None:
    low = [await queue_job(redis, keys, handler_spec("echo", queue="low")) for _ in range(3)]
    high = [await queue_job(redis, keys, handler_spec("echo", queue="high")) for _ in range(3)]
    await start_worker(
        HOOKLINE_WORKER_QUEUES="high,low", HOOKLINE_WORKER_BATCH="1", HOOKLINE_WORKER_BURST="1"
    )
    for job_id in low:
        await wait_finished(redis, keys, job_id)
    order = [job_id for job_id in (await started(redis, keys))]
    assert order == high + low


async def test_concurrency_runs_k_jobs_at_once(
    start_worker: Any, redis: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    meta = {"wait_file": str(gate)}
    jobs = [
        await queue_job(redis, keys, handler_spec("wait_for_file"), meta=meta) for _ in range(4)
    ]
    worker, *_ = await start_worker(HOOKLINE_WORKER_CONCURRENCY="3")
    await async_wait_until(lambda: _true(len(worker.running) == 3), what="3 running jobs")
    assert len(await started(redis, keys)) == 3
    gate.touch()
    for job_id in jobs:
        assert (await wait_finished(redis, keys, job_id)).outcome == "finished"


async def _true(value: bool) -> bool:
    return value


async def test_cancel_stops_a_running_job_within_a_second(
    start_worker: Any, redis: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    worker, *_ = await start_worker(HOOKLINE_WORKER_CONCURRENCY="2")
    meta = {"wait_file": str(tmp_path / "never")}
    by_pubsub = await queue_job(redis, keys, handler_spec("async_wait_for_file"), meta=meta)
    by_poll = await queue_job(
        redis, keys, JobSpec(pipeline="cmd", run=CommandRun(argv=["sleep", "30"])), meta=meta
    )
    await async_wait_until(lambda: _true(len(worker.running) == 2), what="2 running jobs")
    loop = asyncio.get_running_loop()
    begun = loop.time()
    await redis.set(keys.cancel(by_pubsub), 1)
    await redis.publish(keys.control, by_pubsub)
    await redis.set(keys.cancel(by_poll), 1)  # no message: the poll must find it
    for job_id in (by_pubsub, by_poll):
        event = await wait_finished(redis, keys, job_id, timeout=3)
        assert event.outcome == "canceled"
    assert loop.time() - begun < 1.5
    assert await pending(redis, keys) == 0


async def test_canceled_entry_is_acknowledged_without_running(
    start_worker: Any, redis: aioredis.Redis, keys: Keys
) -> None:
    canceled = await queue_job(redis, keys, handler_spec("echo"), attempt=2)
    later = await queue_job(redis, keys, handler_spec("echo"), attempt=3)
    await redis.set(keys.cancel(canceled), 2)
    await redis.set(keys.cancel(later), 2)  # a newer attempt than the cancel still runs
    await start_worker(HOOKLINE_WORKER_BURST="1")
    assert (await wait_finished(redis, keys, later)).outcome == "finished"
    await async_wait_until(lambda: _pending_is(redis, keys, 0), what="nothing pending")
    assert canceled not in await finished(redis, keys)
    assert canceled not in await started(redis, keys)


async def _pending_is(redis: aioredis.Redis, keys: Keys, n: int) -> bool:
    return await pending(redis, keys) == n


async def _read_as_ghost(redis: aioredis.Redis, keys: Keys, times: int = 1) -> None:
    """Deliver the queued entries to a consumer that then dies (never acknowledges)."""
    stream = keys.job_queued(DEFAULT_QUEUE)
    await redis.xgroup_create(stream, GROUP_WORKERS, id="0", mkstream=True)
    await redis.xreadgroup(GROUP_WORKERS, "ghost", {stream: ">"})
    for _ in range(times - 1):
        await redis.xreadgroup(GROUP_WORKERS, "ghost", {stream: "0"})


async def test_lapsed_lease_is_reclaimed_as_a_new_attempt(
    start_worker: Any, redis: aioredis.Redis, keys: Keys
) -> None:
    job_id = await queue_job(redis, keys, handler_spec("echo"))
    await _read_as_ghost(redis, keys)
    _, _, _, registry = await start_worker(HOOKLINE_WORKER_LEASE_TIMEOUT="0.5")
    event = await wait_finished(redis, keys, job_id)
    assert (event.outcome, event.attempt, event.result["attempt"]) == ("finished", 2, 2)
    assert [s.attempt for s in (await started(redis, keys))[job_id]] == [2]
    assert b'hookline_jobs_reclaimed_total{queue="pipeline_tasks"} 1.0' in render(registry)


async def test_past_max_deliveries_the_job_ends_worker_lost(
    start_worker: Any, redis: aioredis.Redis, keys: Keys
) -> None:
    job_id = await queue_job(redis, keys, handler_spec("echo"))
    await _read_as_ghost(redis, keys, times=3)
    await start_worker(HOOKLINE_WORKER_LEASE_TIMEOUT="0.5", HOOKLINE_WORKER_MAX_DELIVERIES="3")
    event = await wait_finished(redis, keys, job_id)
    assert (event.outcome, event.attempt) == ("failed", 4)
    assert event.error is not None
    assert (event.error.type, event.error.retryable) == ("WorkerLost", False)
    letters = await dead_letters(redis, keys)
    assert len(letters) == 1
    assert letters[0].reason.startswith("worker lost: delivered 4 times")
    assert job_id not in await started(redis, keys)
    assert await pending(redis, keys) == 0


async def test_running_job_keeps_its_lease(
    start_worker: Any, redis: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """A job running far longer than the lease timeout is not taken by another worker."""
    gate = tmp_path / "gate"
    job_id = await queue_job(
        redis, keys, handler_spec("wait_for_file"), meta={"wait_file": str(gate)}
    )
    first, *_ = await start_worker(HOOKLINE_WORKER_LEASE_TIMEOUT="0.4")
    await async_wait_until(lambda: _true(len(first.running) == 1), what="the job to start")
    second, *_ = await start_worker(HOOKLINE_WORKER_LEASE_TIMEOUT="0.4")
    # Five lease timeouts with a live rival looking for lapsed leases every 0.1 s.
    await asyncio.sleep(2.0)
    assert second.jobs_done == 0
    assert not second.running
    gate.touch()
    event = await wait_finished(redis, keys, job_id)
    assert (event.attempt, event.worker) == (1, "w1")
    assert [s.attempt for s in (await started(redis, keys))[job_id]] == [1]


async def test_shutdown_lets_short_jobs_finish_and_hands_back_long_ones(
    start_worker: Any, redis: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    short = await queue_job(redis, keys, handler_spec("async_echo"))
    stuck = await queue_job(
        redis, keys, handler_spec("wait_for_file"), meta={"wait_file": str(gate)}
    )
    worker, stop, task, _ = await start_worker(
        HOOKLINE_WORKER_CONCURRENCY="2", HOOKLINE_WORKER_SHUTDOWN_TIMEOUT="0.5"
    )
    await wait_finished(redis, keys, short)
    await async_wait_until(lambda: _true(len(worker.running) == 1), what="the stuck job")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert stuck not in await finished(redis, keys)  # never acknowledged unfinished
    assert await pending(redis, keys) == 1
    # Handed back: another worker takes it at once, well before a 30 s lease lapses.
    gate.touch()
    await start_worker(HOOKLINE_WORKER_NAME="w9")
    event = await wait_finished(redis, keys, stuck, timeout=10)
    assert (event.outcome, event.attempt, event.worker) == ("finished", 2, "w9")


async def test_heartbeat_describes_the_worker_and_its_jobs(
    start_worker: Any, redis: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job_id = await queue_job(
        redis, keys, handler_spec("wait_for_file"), meta={"wait_file": str(gate)}
    )
    _, stop, task, _ = await start_worker(
        HOOKLINE_WORKER_TTL="0.6", HOOKLINE_WORKER_CONCURRENCY="2"
    )

    async def beat() -> dict[bytes, bytes] | None:
        found = cast(dict[bytes, bytes], await redis.hgetall(keys.worker("w1")))
        return found if found.get(b"busy") == b"1" else None

    fields = await async_wait_until(beat, what="a heartbeat with the running job")
    record = from_hash(WorkerHeartbeat, fields)
    assert (record.name, record.queues, record.pid) == ("w1", [DEFAULT_QUEUE], os.getpid())
    assert None not in (record.host, record.started_at, record.last_heartbeat)
    assert (record.state, record.concurrency, record.jobs_done) == ("running", 2, 0)
    [current] = record.current_jobs
    assert (current.job_id, current.attempt, current.queue) == (job_id, 1, DEFAULT_QUEUE)
    assert await redis.zscore(keys.workers, "w1") is not None
    gate.touch()
    await wait_finished(redis, keys, job_id)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert not await redis.exists(keys.worker("w1"))  # a clean stop deregisters
    assert await redis.zscore(keys.workers, "w1") is None


async def test_worker_recreates_a_deleted_stream_and_group(
    start_worker: Any, redis: aioredis.Redis, keys: Keys
) -> None:
    worker, _, task, registry = await start_worker()
    await async_wait_until(lambda: _true(worker.redis_ok), what="the worker to be ready")

    def recreated() -> float:
        value = registry.get_sample_value(
            "hookline_streams_recreated_total", {"group": GROUP_WORKERS}
        )
        return value or 0.0

    await redis.delete(keys.job_queued(DEFAULT_QUEUE))  # under a blocked XREADGROUP
    await async_wait_until(lambda: _true(recreated() >= 1), what="the stream to be recreated")
    job_id = await queue_job(redis, keys, handler_spec("echo"))
    assert (await wait_finished(redis, keys, job_id)).outcome == "finished"
    await redis.xgroup_destroy(keys.job_queued(DEFAULT_QUEUE), GROUP_WORKERS)
    await async_wait_until(lambda: _true(recreated() >= 2), what="the group to be recreated")
    job_id = await queue_job(redis, keys, handler_spec("echo"))
    assert (await wait_finished(redis, keys, job_id)).outcome == "finished"
    assert not task.done()


async def test_a_nul_byte_in_an_environment_value_fails_the_job_at_once_naming_it(
    start_worker: Any, redis: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """A payload field that becomes an environment value cannot hold a NUL byte: the job
    fails on its first run (not retried), its scratch files are gone."""
    spec = JobSpec(pipeline="cmd", run=CommandRun(argv=[sys.executable, "-c", "print(1)"]))
    job_id = await queue_job(redis, keys, spec, meta={"branch": "main\x00$(evil)"})
    await start_worker()
    event = await wait_finished(redis, keys, job_id)
    assert (event.outcome, event.attempt) == ("failed", 1)
    assert event.error is not None
    assert (event.error.type, event.error.retryable) == ("InvalidEnvironment", False)
    assert "HOOKLINE_META_BRANCH" in event.error.message
    assert "NUL" in event.error.message
    assert await pending(redis, keys) == 0
    work = tmp_path / "work"
    assert not work.exists() or not [p for p in work.rglob("*") if p.is_file()]


async def test_a_starting_worker_sweeps_the_scratch_files_of_workers_that_are_gone(
    start_worker: Any, redis: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """Scratch folders left by a kill -9'd worker go when the next worker starts; those
    of a worker still alive (sharing the work dir) stay."""
    work = tmp_path / "work"
    for owner in ("killed", "alive"):
        scratch = work / owner / "job-1.1"
        scratch.mkdir(parents=True)
        (scratch / "big.bin").write_bytes(b"x" * 1000)
        (work / owner / "job-1.1.payload.json").write_text("{}")
    await redis.zadd(keys.worker_liveness, {"killed": 1, "alive": 2**52})
    await start_worker()

    async def swept() -> bool:
        return not (work / "killed").exists()

    await async_wait_until(swept, what="the dead worker's scratch to be swept")
    assert (work / "alive" / "job-1.1" / "big.bin").exists()
    assert (work / "alive" / "job-1.1.payload.json").exists()
