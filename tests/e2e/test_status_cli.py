"""The operator CLI run as a real program: info, jobs, job, status --rebuild."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hookline.events import CommandRun, JobPurged, JobSpec, encode
from hookline.keys import EVENT_FIELD, Keys
from hookline.records import CurrentJob, WorkerHeartbeat, to_hash
from support.jobs import PATHS, history
from support.processes import ServiceProcess, http_json
from support.views import project_into
from support.waiting import wait_until
from support.worker_jobs import queue_job

pytestmark = pytest.mark.e2e


def hookline(
    env: dict[str, str], *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookline.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


async def _seed(redis_url: str, keys: Keys, to_streams: bool) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        for i, path in enumerate(PATHS):
            events = history(
                f"job-{i}", start=i, path=path, queue="video" if i % 2 else "pipeline_tasks"
            )
            await project_into(client, keys, events)
            if to_streams:
                for e in events:
                    kind = e.__struct_config__.tag
                    stream = {
                        "webhook.received": keys.webhook_received,
                        "job.started": keys.job_started,
                        "job.finished": keys.job_finished,
                        "job.deferred": keys.job_deferred,
                    }.get(str(kind)) or keys.job_queued(e.spec.queue)  # type: ignore[union-attr]
                    await client.xadd(stream, {EVENT_FIELD: encode(e)})
        await client.sadd(keys.queues, "pipeline_tasks", "video")
        now = int(time.time() * 1000)
        await client.zadd(keys.workers, {"w1": now})
        beat = WorkerHeartbeat(
            name="w1",
            host="box",
            queues=["video"],
            busy=1,
            current_jobs=[CurrentJob(job_id="job-5", attempt=2, queue="video")],
        )
        await client.hset(keys.worker("w1"), mapping=to_hash(beat))  # type: ignore[arg-type]
    finally:
        await client.aclose()


def seed(redis_url: str, keys: Keys, to_streams: bool = False) -> None:
    asyncio.run(_seed(redis_url, keys, to_streams))


def test_info_shows_queues_workers_and_jobs(
    base_env: dict[str, str], redis_url: str, keys: Keys
) -> None:
    seed(redis_url, keys)
    result = hookline(base_env, "info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pipeline_tasks" in out
    assert "video" in out
    assert "w1" in out
    assert "busy" in out
    assert "job-5 (attempt 2)" in out
    assert "finished" in out
    data = json.loads(hookline(base_env, "info", "--json").stdout)
    assert data["jobs"]["finished"] == 2
    [current] = data["workers"][0]["current_jobs"]
    assert (current["job_id"], current["attempt"], current["queue"]) == ("job-5", 2, "video")


def test_info_interval_refreshes_until_interrupted(
    base_env: dict[str, str], redis_url: str, keys: Keys
) -> None:
    seed(redis_url, keys)
    process = subprocess.Popen(
        [sys.executable, "-m", "hookline.cli", "info", "--interval", "0.1", "--json"],
        env={**os.environ, **base_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        second = json.loads(process.stdout.readline())
        assert first["jobs"] == second["jobs"]
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors


def test_info_refreshes_in_place_on_a_terminal(
    base_env: dict[str, str], redis_url: str, keys: Keys
) -> None:
    """Under a pseudo-terminal the screen is cleared before each refresh, like rq info."""
    import pty

    seed(redis_url, keys)
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec the CLI with the pty as its terminal
        os.environ.update(base_env)
        os.execv(
            sys.executable, [sys.executable, "-m", "hookline.cli", "info", "--interval", "0.1"]
        )
    output = b""
    deadline = time.monotonic() + 20
    try:
        while output.count(b"\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
            output += os.read(fd, 65536)
    finally:
        os.kill(pid, signal.SIGINT)
        os.waitpid(pid, 0)
        os.close(fd)
    assert output.count(b"\x1b[H\x1b[2J") >= 2
    assert b"queues" in output


def test_jobs_lists_filters_and_pages(base_env: dict[str, str], redis_url: str, keys: Keys) -> None:
    seed(redis_url, keys)
    result = hookline(base_env, "jobs", "--status", "finished")
    assert result.returncode == 0, result.stderr
    assert "job-0" in result.stdout
    assert "job-2" in result.stdout
    assert "job-1 " not in result.stdout
    page = json.loads(hookline(base_env, "jobs", "--limit", "2", "--json").stdout)
    assert [j["job_id"] for j in page["jobs"]] == ["job-5", "job-4"]
    rest = json.loads(
        hookline(
            base_env, "jobs", "--limit", "100", "--cursor", page["next_cursor"], "--json"
        ).stdout
    )
    assert [j["job_id"] for j in rest["jobs"]] == ["job-3", "job-2", "job-1", "job-0"]
    video = json.loads(hookline(base_env, "jobs", "--queue", "video", "--json").stdout)
    assert {j["queue"] for j in video["jobs"]} == {"video"}


def test_job_shows_a_view_and_its_events(
    base_env: dict[str, str], redis_url: str, keys: Keys
) -> None:
    seed(redis_url, keys)
    result = hookline(base_env, "job", "job-2", "--events")
    assert result.returncode == 0, result.stderr
    assert "finished" in result.stdout
    assert "job.deferred" in result.stdout
    assert "Boom" in result.stdout
    data = json.loads(hookline(base_env, "job", "job-2", "--events", "--json").stdout)
    assert data["status"] == "finished"
    assert [e["worker"] for e in data["events"] if e["type"] == "job.started"] == ["w1", "w2"]
    assert "events" not in json.loads(hookline(base_env, "job", "job-2", "--json").stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "--limit", "0"], "--limit"),
        (["jobs", "--status", "bogus"], "--status"),
        (["jobs", "--cursor", "nonsense"], "--cursor"),
        (["info", "--interval", "0"], "--interval"),
    ],
)
def test_bad_flags_fail_with_a_clear_message(
    base_env: dict[str, str], args: list[str], message: str
) -> None:
    result = hookline(base_env, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_job_and_unreachable_redis_fail_clearly(base_env: dict[str, str]) -> None:
    result = hookline(base_env, "job", "nope")
    assert result.returncode == 1
    assert "no job with id 'nope'" in result.stderr
    down = {**base_env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = hookline(down, "info")
    assert result.returncode == 1
    assert "cannot reach Redis" in result.stderr
    assert "Traceback" not in result.stderr
    result = hookline({**base_env, "HOOKLINE_WORKER_TTL": "soon"}, "info")
    assert result.returncode == 2
    assert "HOOKLINE_WORKER_TTL" in result.stderr


def test_status_rebuild_switches_to_an_equal_generation(
    base_env: dict[str, str], redis_url: str, keys: Keys
) -> None:
    seed(redis_url, keys, to_streams=True)
    before = json.loads(hookline(base_env, "jobs", "--limit", "100", "--json").stdout)
    result = hookline(base_env, "status", "--rebuild")
    assert result.returncode == 0, result.stderr
    assert "rebuilt generation 1 (was 0)" in result.stdout
    after = json.loads(hookline(base_env, "jobs", "--limit", "100", "--json").stdout)
    assert after == before
    info: dict[str, Any] = json.loads(hookline(base_env, "info", "--json").stdout)
    assert info["generation"] == 1


def test_status_rebuild_refuses_bad_config(base_env: dict[str, str]) -> None:
    result = hookline({**base_env, "HOOKLINE_RETENTION": "forever"}, "status", "--rebuild")
    assert result.returncode == 2
    assert "HOOKLINE_RETENTION" in result.stderr


GATED = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.05)\n"


def test_a_live_workers_jobs_read_back_through_the_api_and_info(
    base_env: dict[str, str],
    redis_url: str,
    keys: Keys,
    services: list[ServiceProcess],
    tmp_path: Path,
) -> None:
    """A real worker runs a command that waits on a file; its heartbeat shows the job as
    an object in ``GET /workers`` and ``info --json``, and by id in ``info``. The queue's
    length is what waits for a worker, not what the stream retains."""
    gate = tmp_path / "gate"
    env = {**base_env, "HOOKLINE_WORKER_TTL": "1.5", "HOOKLINE_WORKER_NAME": "live-w"}
    status = ServiceProcess("status", env, tmp_path).start()
    services.append(status)
    services.append(ServiceProcess("worker", env, tmp_path, args=["--concurrency", "1"]).start())
    spec = JobSpec(pipeline="gated", run=CommandRun(argv=[sys.executable, "-c", GATED, str(gate)]))
    first, second = asyncio.run(_queue(redis_url, keys, spec, count=2))

    def running() -> dict[str, Any] | None:
        code, body = http_json(f"{status.url}/workers")
        found = [w for w in body["workers"] if w["current_jobs"]] if code == 200 else []
        return found[0] if found else None

    worker = wait_until(running, timeout=30, what="a heartbeat naming the running job")
    [current] = worker["current_jobs"]
    assert (current["job_id"], current["attempt"]) == (first, 1)
    assert (current["queue"], current["pipeline"]) == ("pipeline_tasks", "gated")
    assert (worker["name"], worker["state"], worker["concurrency"]) == ("live-w", "busy", 1)

    result = hookline(env, "info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    [live] = info["workers"]
    assert [(j["job_id"], j["attempt"]) for j in live["current_jobs"]] == [(first, 1)]
    queue = info["queues"][0]
    assert (queue["length"], queue["pending"], queue["stream_entries"]) == (1, 1, 2)
    text = hookline(env, "info").stdout
    assert first in text
    assert '"job_id' not in text
    assert http_json(f"{status.url}/health")[1]["queue_length"] == 1

    gate.touch()
    done = wait_until(
        lambda: (
            (v := http_json(f"{status.url}/jobs/{second}")[1]).get("status") == "finished" and v
        ),
        timeout=30,
        what="both jobs to finish",
    )
    assert done
    queue = json.loads(hookline(env, "info", "--json").stdout)["queues"][0]
    assert (queue["length"], queue["pending"], queue["stream_entries"]) == (0, 0, 2)


async def _queue(redis_url: str, keys: Keys, spec: JobSpec, count: int) -> list[str]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return [await queue_job(client, keys, spec) for _ in range(count)]
    finally:
        await client.aclose()


def test_info_counts_are_right_at_once_after_a_purge(
    base_env: dict[str, str],
    redis_url: str,
    keys: Keys,
    services: list[ServiceProcess],
    tmp_path: Path,
) -> None:
    """Purged views expire at once; the periodic sweep that removes them from the
    indexes may be far off, and the counts must not wait for it."""
    env = {**base_env, "HOOKLINE_STATUS_SWEEP_EVERY": "3600"}
    asyncio.run(_seed_failed(redis_url, keys, ["f-1", "f-2", "f-3"]))
    services.append(ServiceProcess("status", env, tmp_path).start())
    assert json.loads(hookline(env, "info", "--json").stdout)["jobs"]["failed"] == 3
    asyncio.run(_purge(redis_url, keys, ["f-1", "f-2"]))
    wait_until(
        lambda: hookline(env, "job", "f-2").returncode == 1,
        timeout=20,
        what="the status service to project the purge",
    )
    info = json.loads(hookline(env, "info", "--json").stdout)
    assert info["jobs"]["failed"] == 1
    assert re.search(r"^\s+failed\s+1$", hookline(env, "info").stdout, re.MULTILINE)


async def _seed_failed(redis_url: str, keys: Keys, job_ids: list[str]) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        for job_id in job_ids:
            await project_into(client, keys, history(job_id, path="fail"))
    finally:
        await client.aclose()


async def _purge(redis_url: str, keys: Keys, job_ids: list[str]) -> None:
    """What the dispatcher appends for ``hookline empty failed``."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        for job_id in job_ids:
            purged = JobPurged(job_id=job_id, delivery_id=f"d-{job_id}", attempt=1)
            await client.xadd(keys.job_finished, {EVENT_FIELD: encode(purged)})
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "args",
    # One of each path: the views (info, jobs, job), the commands (requeue, cancel,
    # empty) and the rebuild.
    [["info", "--json"], ["job", "job-1"], ["cancel", "job-1"], ["status", "--rebuild"]],
)
def test_an_unreachable_redis_is_named_without_its_password(
    base_env: dict[str, str], args: list[str]
) -> None:
    down = {**base_env, "REDIS_URL": "redis://ops:s3cr3t-pw@127.0.0.1:1/0"}
    result = hookline(down, *args)
    assert result.returncode == 1
    assert "s3cr3t" not in result.stdout + result.stderr
    assert result.stderr.startswith(
        "hookline: error: cannot reach Redis at redis://ops:***@127.0.0.1:1/0"
    )
    assert result.stderr.count("\n") == 1
    if args[0] != "status":
        assert "(from REDIS_URL)" in result.stderr


def test_every_operator_command_names_the_redis_it_reads(
    base_env: dict[str, str], redis_url: str, keys: Keys
) -> None:
    seed(redis_url, keys)
    for args in (["info"], ["jobs"], ["job", "job-1"]):
        result = hookline(base_env, *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == f"redis {redis_url} (from REDIS_URL)"


def test_version_names_every_installed_hookline_package() -> None:
    from importlib import metadata

    result = hookline({}, "--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in (
        "hookline",
        "hookline-ingress",
        "hookline-dispatcher",
        "hookline-worker",
        "hookline-status",
    ):
        assert f"{name} {metadata.version(name)}" in lines
