"""The status HTTP API on a real socket against a real Redis: reads, filters, cursors,
histories, workers, health, metrics and the admin commands."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from hookline.events import (
    CommandAnswer,
    JobCancelRequested,
    JobRequeueRequested,
    decode,
    encode_answer,
)
from hookline.keys import EVENT_FIELD, Keys
from hookline.records import CurrentJob, WorkerHeartbeat, to_hash
from hookline.streams import parse_entries
from hookline_status.app import build
from hookline_status.settings import load
from support.http import serve
from support.jobs import PATHS, history
from support.streams import events
from support.views import project_into

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"

Client = TestClient[Any, Any]


async def project_events(redis: aioredis.Redis, keys: Keys, events: list[Any]) -> None:
    await project_into(redis, keys, events)


async def seed(redis: aioredis.Redis, keys: Keys) -> list[str]:
    """Twelve jobs on two queues, two pipelines, three repositories; ids oldest first."""
    ids = []
    for i in range(12):
        job = f"job-{i:02d}"
        ids.append(job)
        await project_events(
            redis,
            keys,
            history(
                job,
                start=i * 10,
                path=PATHS[i % len(PATHS)] if PATHS[i % len(PATHS)] != "skip" else "finish",
                queue="video" if i % 2 else "pipeline_tasks",
                pipeline="render" if i % 3 == 0 else "demo",
                repository=f"octo/r{i % 3}",
            ),
        )
    await redis.sadd(keys.queues, "pipeline_tasks", "video")
    return ids


def app_env(base_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**base_env, "HOOKLINE_COMMAND_TIMEOUT": "0.2", **extra}


@pytest.fixture
async def client(base_env: dict[str, str]) -> AsyncIterator[Client]:
    service = build(load(app_env(base_env, HOOKLINE_ADMIN_TOKEN=ADMIN)))
    async with serve(service.app) as c:
        yield c


async def get(client: Client, path: str, **headers: str) -> tuple[int, Any]:
    response = await client.get(path, headers=headers)
    return response.status, await response.json()


async def test_a_job_view_in_the_old_shape_and_404_for_unknown(
    client: Client, redis: aioredis.Redis, keys: Keys
) -> None:
    await seed(redis, keys)
    status, body = await get(client, "/jobs/job-00")
    assert status == 200
    assert body["status"] == "finished"
    assert {
        "job_id",
        "status",
        "created_at",
        "started_at",
        "ended_at",
        "result",
        "error",
        "meta",
    } <= set(body)
    status, body = await get(client, "/jobs/nope")
    assert status == 404
    assert body["error"] == "not_found"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", lambda j: True),
        ("?status=finished", lambda j: j["status"] == "finished"),
        ("?queue=video", lambda j: j["queue"] == "video"),
        ("?pipeline=render", lambda j: j["pipeline"] == "render"),
        ("?repository=octo/r1", lambda j: j["repository"] == "octo/r1"),
        (
            "?status=failed&queue=pipeline_tasks",
            lambda j: j["status"] == "failed" and j["queue"] == "pipeline_tasks",
        ),
        (
            "?queue=video&pipeline=demo&repository=octo/r2",
            lambda j: (j["queue"], j["pipeline"], j["repository"]) == ("video", "demo", "octo/r2"),
        ),
    ],
)
async def test_filters_select_exactly_the_matching_jobs(
    client: Client, redis: aioredis.Redis, keys: Keys, query: str, expected: Any
) -> None:
    await seed(redis, keys)
    _, everything = await get(client, "/jobs?limit=100")
    want = [j["job_id"] for j in everything["jobs"] if expected(j)]
    status, body = await get(client, f"/jobs{query}")
    assert status == 200
    assert [j["job_id"] for j in body["jobs"]] == want
    assert body["count"] == len(want)


async def test_cursor_pages_through_every_job_once_newest_first(
    client: Client, redis: aioredis.Redis, keys: Keys
) -> None:
    ids = await seed(redis, keys)
    seen: list[str] = []
    path = "/jobs?limit=5"
    pages = 0
    while True:
        status, body = await get(client, path)
        assert status == 200
        seen += [j["job_id"] for j in body["jobs"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        path = f"/jobs?limit=5&cursor={body['next_cursor']}"
    assert seen == ids[::-1]
    assert pages == 3


async def test_cursor_works_with_filters_and_ties(
    client: Client, redis: aioredis.Redis, keys: Keys
) -> None:
    for i in range(7):  # the same creation time: ties are broken by job id
        await project_events(redis, keys, history(f"tie-{i}", start=0, queue="video")[:2])
    seen: list[str] = []
    path = "/jobs?limit=3&queue=video"
    while path:
        _, body = await get(client, path)
        seen += [j["job_id"] for j in body["jobs"]]
        path = (
            f"/jobs?limit=3&queue=video&cursor={body['next_cursor']}" if body["next_cursor"] else ""
        )
    assert seen == sorted((f"tie-{i}" for i in range(7)), reverse=True)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("cursor=!!!", "cursor"),
        ("cursor=Zm9v", "cursor"),
        ("queue=", "queue"),
        ("pipeline=" + "p" * 201, "pipeline"),
        ("colour=red", "colour"),
        ("status=failed&status=finished", "status"),
    ],
)
async def test_bad_list_queries_are_400_naming_the_parameter(
    client: Client, query: str, parameter: str
) -> None:
    response = await client.get(f"/jobs?{query}")
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_query"
    assert parameter in body["detail"]
    assert response.headers["X-Invalid-Parameter"] == parameter


async def test_job_events_list_every_attempt_with_workers_and_errors(
    client: Client, redis: aioredis.Redis, keys: Keys
) -> None:
    events = history("j1", path="retry-then-finish")
    await project_events(redis, keys, events + events[::-1])  # duplicates, reordered
    status, body = await get(client, "/jobs/j1/events")
    assert status == 200
    types = [e["type"] for e in body["events"]]
    assert types == [
        "webhook.received",
        "job.queued",
        "job.started",
        "job.finished",
        "job.deferred",
        "job.queued",
        "job.started",
        "job.finished",
    ]
    failed = body["events"][3]
    assert failed["outcome"] == "failed"
    assert failed["worker"] == "w1"
    assert failed["error"]["type"] == "Boom"
    assert body["events"][6]["worker"] == "w2"
    assert (await client.get("/jobs/nope/events")).status == 404


async def test_read_token_guards_reads_but_not_health(base_env: dict[str, str]) -> None:
    service = build(load(app_env(base_env, HOOKLINE_READ_TOKEN=READER, HOOKLINE_ADMIN_TOKEN=ADMIN)))
    async with serve(service.app) as c:
        for path in ("/jobs", "/jobs/x", "/jobs/x/events", "/workers"):
            response = await c.get(path)
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await c.get(path, headers={"Authorization": "Bearer wrong"})).status == 403
            assert (await c.get(path, headers={"Authorization": "Basic eDp5"})).status == 403
        assert (await c.get("/jobs", headers={"Authorization": f"Bearer {READER}"})).status == 200
        assert (await c.get("/jobs", headers={"Authorization": f"Bearer {ADMIN}"})).status == 200
        assert (await c.get("/health")).status == 200


async def commands_in(redis: aioredis.Redis, keys: Keys) -> list[Any]:
    return events(await redis.xrange(keys.commands))


async def test_posts_without_an_admin_token_configured_are_refused(
    base_env: dict[str, str], redis: aioredis.Redis, keys: Keys
) -> None:
    await seed(redis, keys)
    service = build(load(app_env(base_env)))
    async with serve(service.app) as c:
        for path in ("/jobs/job-00/requeue", "/jobs/job-00/cancel", "/jobs/requeue-failed"):
            response = await c.post(path, headers={"Authorization": "Bearer anything-at-all-here"})
            assert response.status == 403
            assert (await response.json())["error"] == "admin_disabled"
    assert await commands_in(redis, keys) == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 403), ({"Authorization": ADMIN}, 403)],
)
async def test_posts_need_the_admin_token(
    client: Client, redis: aioredis.Redis, keys: Keys, headers: dict[str, str], status: int
) -> None:
    await seed(redis, keys)
    for path in ("/jobs/job-00/requeue", "/jobs/job-00/cancel", "/jobs/requeue-failed"):
        assert (await client.post(path, headers=headers)).status == status
    assert await commands_in(redis, keys) == []


AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def test_requeue_and_cancel_append_commands_and_reply_pending(
    client: Client, redis: aioredis.Redis, keys: Keys
) -> None:
    await seed(redis, keys)
    response = await client.post("/jobs/job-01/requeue", headers=AUTH)
    assert response.status == 202
    requeue = await response.json()
    assert requeue["status"] == "pending"
    response = await client.post("/jobs/job-02/cancel", headers=AUTH)
    assert response.status == 202
    response = await client.post("/jobs/requeue-failed?queue=video", headers=AUTH)
    assert response.status == 202
    appended = await commands_in(redis, keys)
    assert [type(c) for c in appended] == [
        JobRequeueRequested,
        JobCancelRequested,
        JobRequeueRequested,
    ]
    assert appended[0].job_id == "job-01"
    assert appended[0].event_id == requeue["command_id"]
    assert appended[0].requested_by.startswith("http:")
    assert appended[1].job_id == "job-02"
    assert appended[2].all_failed
    assert appended[2].queue == "video"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/jobs/nope/requeue", 404),
        ("/jobs/nope/cancel", 404),
        ("/jobs/requeue-failed?queue=bad%20queue", 400),
        ("/jobs/requeue-failed?queue=", 400),
        ("/jobs/requeue-failed?colour=red", 400),
        ("/jobs/job-00/requeue?force=1", 400),
    ],
)
async def test_bad_admin_requests_append_nothing(
    client: Client, redis: aioredis.Redis, keys: Keys, path: str, status: int
) -> None:
    await seed(redis, keys)
    response = await client.post(path, headers=AUTH)
    assert response.status == status
    assert (await response.json())["error"]
    assert await commands_in(redis, keys) == []


async def test_an_answered_command_replies_200_with_the_answer(
    client: Client, redis: aioredis.Redis, keys: Keys, redis_url: str
) -> None:
    await seed(redis, keys)

    async def answer_one() -> None:
        """Stands in for the dispatcher: read the command, push its answer."""
        reader = aioredis.Redis.from_url(redis_url)
        try:
            reply = await reader.xread({keys.commands: "0"}, block=5000, count=1)
            [entry] = parse_entries(reply)
            assert entry.data is not None
            command = decode(entry.data)
            answer = CommandAnswer(
                command_id=command.event_id, ok=True, message="requeued", job_ids=["job-00"]
            )
            await reader.lpush(keys.command_answer(command.event_id), encode_answer(answer))
        finally:
            await reader.aclose()

    service = build(
        load(
            {
                **app_env({}, HOOKLINE_ADMIN_TOKEN=ADMIN),
                "REDIS_URL": redis_url,
                "HOOKLINE_PREFIX": keys.prefix,
                "HOOKLINE_COMMAND_TIMEOUT": "5",
            }
        )
    )
    async with serve(service.app) as c:
        dispatcher = asyncio.create_task(answer_one())
        response = await c.post("/jobs/job-00/requeue", headers=AUTH)
        body = await response.json()
        await dispatcher
    assert response.status == 200
    assert body["ok"] is True
    assert body["job_ids"] == ["job-00"]


async def register_worker(
    redis: aioredis.Redis, keys: Keys, name: str, age: float, busy: int
) -> None:
    now_ms = int((time.time() - age) * 1000)
    await redis.zadd(keys.workers, {name: now_ms})
    beat = WorkerHeartbeat(
        name=name,
        host="h1",
        pid=42,
        queues=["pipeline_tasks", "video"],
        busy=busy,
        current_jobs=[CurrentJob(job_id=f"job-of-{name}", attempt=1)] if busy else [],
        jobs_done=7,
        last_heartbeat=now_ms,
    )
    await redis.hset(keys.worker(name), mapping=to_hash(beat))  # type: ignore[arg-type]


async def test_workers_with_their_state(client: Client, redis: aioredis.Redis, keys: Keys) -> None:
    await register_worker(redis, keys, "w-busy", 1, 1)
    await register_worker(redis, keys, "w-idle", 2, 0)
    await register_worker(redis, keys, "w-dead", 300, 0)
    await redis.zadd(keys.workers, {"w-no-hash": int(time.time() * 1000)})
    status, body = await get(client, "/workers")
    assert status == 200
    states = {w["name"]: w["state"] for w in body["workers"]}
    assert states == {"w-busy": "busy", "w-idle": "idle", "w-dead": "dead", "w-no-hash": "idle"}
    busy = next(w for w in body["workers"] if w["name"] == "w-busy")
    assert busy["queues"] == ["pipeline_tasks", "video"]
    assert busy["jobs_done"] == 7
    assert busy["current_jobs"][0]["job_id"] == "job-of-w-busy"
    assert busy["current_jobs"][0]["attempt"] == 1


async def test_health_keeps_the_old_shape_and_adds_detail(
    client: Client, redis: aioredis.Redis, keys: Keys
) -> None:
    await seed(redis, keys)
    await register_worker(redis, keys, "w1", 1, 0)
    status, body = await get(client, "/health")
    assert status == 200
    assert {"status", "redis_connected", "queue_available", "queue_length", "workers_count"} <= set(
        body
    )
    assert body["redis_connected"] is True
    assert body["workers_count"] == 1
    assert [q["queue"] for q in body["queues"]] == ["pipeline_tasks", "video"]
    assert body["services"]["workers"]["live"] == 1
    assert "generation" in body["services"]["status"]


async def test_unknown_paths_and_methods_answer_json(client: Client) -> None:
    status, body = await get(client, "/nope")
    assert status == 404
    assert body["error"] == "not_found"
    response = await client.delete("/jobs")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]


async def test_openapi_document_lists_every_route(client: Client) -> None:
    status, doc = await get(client, "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/events",
        "/jobs/{job_id}/requeue",
        "/jobs/{job_id}/cancel",
        "/jobs/requeue-failed",
        "/workers",
        "/health",
        "/metrics",
        "/openapi.json",
    }


# -- metrics ---------------------------------------------------------------------


METRICS = (
    "hookline_jobs",
    "hookline_jobs_completed_total",
    "hookline_job_duration_seconds_bucket",
    "hookline_job_wait_seconds_bucket",
    "hookline_queue_length",
    "hookline_queue_pending",
    "hookline_queue_lag",
    "hookline_queue_stream_entries",
    "hookline_queue_oldest_age_seconds",
    "hookline_workers",
    "hookline_dead_letter_length",
    "rq_jobs",
    "rq_workers",
)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: install Debian's prometheus package "
            "(apt-get install -y prometheus); scripts/test does this"
        )
    return path


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def test_metrics_pass_promtool_and_survive_a_restart(
    base_env: dict[str, str], redis: aioredis.Redis, keys: Keys
) -> None:
    await seed(redis, keys)
    await register_worker(redis, keys, "w1", 1, 1)
    await redis.xadd(keys.job_queued("video"), {EVENT_FIELD: b"{}"})
    await redis.xadd(keys.dead_letter, {EVENT_FIELD: b"{}"})
    texts = []
    for _ in range(2):  # two processes' worth of app: nothing is kept in memory
        service = build(load(app_env(base_env)))
        async with serve(service.app) as c:
            response = await c.get("/metrics")
            assert response.status == 200
            texts.append(await response.text())
    text = texts[0]
    for name in METRICS:
        assert f"\n{name}{{" in text or f"\n{name} " in text, name
    process = await asyncio.create_subprocess_exec(
        promtool(),
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(text.encode()), timeout=30)
    assert process.returncode == 0, output.decode()
    assert output.strip() == b"", output.decode()  # no lint warnings either
    first, second = samples(texts[0]), samples(texts[1])
    systemwide = {k: v for k, v in first.items() if k.startswith(("hookline_job", "rq_"))}
    assert systemwide == {k: second[k] for k in systemwide}
    assert (
        first[
            'hookline_jobs_completed_total{outcome="finished",pipeline="render",queue="pipeline_tasks"}'
        ]
        >= 1
    )
    assert first["hookline_dead_letter_length"] == 1
    assert first['hookline_queue_length{queue="video"}'] == 1
    assert first['hookline_queue_stream_entries{queue="video"}'] == 1
    assert first['rq_workers{name="w1",queues="pipeline_tasks,video",state="busy"}'] == 1
    assert first['hookline_workers{state="busy"}'] == 1


async def test_without_redis_reads_are_503_and_health_says_so(base_env: dict[str, str]) -> None:
    env = app_env(base_env, HOOKLINE_ADMIN_TOKEN=ADMIN, REDIS_URL="redis://127.0.0.1:1/0")
    service = build(load(env))
    async with serve(service.app) as c:
        status, body = await get(c, "/health")
        assert status == 503
        assert body["status"] == "unhealthy"
        assert body["redis_connected"] is False
        for path in ("/jobs", "/jobs/x", "/jobs/x/events", "/workers"):
            status, body = await get(c, path)
            assert status == 503, path
            assert body["error"] == "redis_unavailable"
        response = await c.post("/jobs/requeue-failed", headers=AUTH)
        assert response.status == 503
        assert (await c.get("/metrics")).status == 200
