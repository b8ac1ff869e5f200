"""A kill -9'd worker's job, across real processes: its reclaimed run is a first-class
attempt (retried, dead-lettered, requeueable) and it runs again within seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from hookline.events import DeadLetter, JobFinished
from hookline.keys import EVENT_FIELD, Keys
from support.payloads import append_webhook
from support.processes import ServiceProcess, http_json
from support.streams import entries
from support.waiting import async_wait_until, wait_until
from support.worker_jobs import finished, handler_spec, queue_job, started
from support.worker_processes import start_worker, wait_file, worker_env

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).resolve().parents[1]
STALL_CONFIG = """
[pipelines.stall]
handler = "support.e2e_pipelines:stall_then_fail"
retries = 2
backoff = { kind = "fixed", base = "0.1s" }

[[routes]]
events = ["push"]
pipeline = "stall"
"""


def system_env(base_env: dict[str, str], tmp_path: Path, config: str) -> dict[str, str]:
    path = tmp_path / "hookline.toml"
    path.write_text(config)
    runs = tmp_path / "runs.d"
    runs.mkdir()
    return {
        **base_env,
        "HOOKLINE_CONFIG": str(path),
        "HOOKLINE_TEST_RUNS": str(runs),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }


def view(status: ServiceProcess, job_id: str) -> dict[str, Any]:
    code, body = http_json(f"{status.url}/jobs/{job_id}")
    return body if code == 200 else {}


def runs_of(env: dict[str, str]) -> list[str]:
    path = Path(env["HOOKLINE_TEST_RUNS"]) / "runs"
    return path.read_text().splitlines() if path.exists() else []


def test_a_run_reclaimed_after_kill_9_is_retried_dead_lettered_and_requeueable(
    tmp_path: Path,
    base_env: dict[str, str],
    services: list[ServiceProcess],
    redis_url: str,
    keys: Keys,
) -> None:
    env = system_env(base_env, tmp_path, STALL_CONFIG)
    worker_env = {**env, "HOOKLINE_WORKER_LEASE_TIMEOUT": "2s"}
    status = ServiceProcess("status", env, tmp_path / "logs").start()
    services.append(status)
    services.append(ServiceProcess("dispatcher", env, tmp_path / "logs").start())
    doomed = ServiceProcess("worker", worker_env, tmp_path / "logs", args=["--name", "doomed"])
    services.append(doomed.start())
    client = redis.Redis.from_url(redis_url)
    job_id = append_webhook(client, keys, "push", "with-new-branch.payload.json", "crash-1")
    wait_until(lambda: runs_of(env) == ["1 doomed"], timeout=20, what="run 1 to start")
    survivor = ServiceProcess("worker", worker_env, tmp_path / "logs", args=["--name", "survivor"])
    services.append(survivor.start())

    doomed.kill()
    (Path(env["HOOKLINE_TEST_RUNS"]) / "gate").touch()
    # Attempt 3's failure: between an attempt's failure and its retry being scheduled
    # the view may show "failed" for a moment (a README known limitation).
    wait_until(
        lambda: (v := view(status, job_id)).get("status") == "failed" and v.get("attempt") == 3,
        timeout=30,
        what="the job to fail for good",
    )
    # Run 1 died with its worker; it counts against the 2 retries: runs 2 and 3 ran.
    assert runs_of(env) == ["1 doomed", "2 survivor", "3 survivor"]
    shown = view(status, job_id)
    assert shown["attempt"] == 3
    letters = [
        msgspec.json.decode(fields[EVENT_FIELD], type=DeadLetter)
        for _, fields in entries(client.xrange(keys.dead_letter))
    ]
    [letter] = [d for d in letters if d.job_id == job_id]
    assert "failed 3 times, no retries left" in letter.reason
    history = json.loads(letter.data)["attempts"]
    assert [(a["attempt"], a["error"]["type"]) for a in history] == [
        (1, "RunLost"),
        (2, "RuntimeError"),
        (3, "RuntimeError"),
    ]
    record = client.hgetall(keys.dispatcher_job(job_id))
    assert record[b"phase"] == b"failed"
    assert client.pttl(keys.dispatcher_job(job_id)) > 0
    assert client.zscore(keys.dispatcher_failed, job_id) is not None

    done = subprocess.run(
        [sys.executable, "-m", "hookline.cli", "requeue", job_id],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "attempt 4 queued" in done.stdout + done.stderr
    wait_until(
        lambda: (v := view(status, job_id)).get("status") == "failed" and v.get("attempt") == 6,
        timeout=30,
        what="the requeued job's fresh retries to run and fail",
    )
    assert runs_of(env)[3:] == ["4 survivor", "5 survivor", "6 survivor"]
    client.close()


RECOVERY_GOAL = 5.0  # seconds, whatever the job's length or lease (issue 12): printed
# Timing never decides a result: with a 120 s lease, a job that runs again well before
# the lease could lapse was brought back by liveness, whatever the machine's load.
BEFORE_THE_LEASE = 60.0


async def test_a_killed_workers_long_job_runs_again_within_seconds_whatever_its_lease(
    services: list[ServiceProcess],
    base_env: dict[str, str],
    tmp_path: Path,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    """The job would run for a minute and its lease is two: only the dead worker's
    lapsed liveness can bring it back this fast."""
    env = {**worker_env(base_env), "HOOKLINE_WORKER_LEASE_TIMEOUT": "120s"}
    doomed = start_worker(services, env, tmp_path, "--name", "doomed")
    start_worker(services, env, tmp_path, "--name", "survivor")
    gate, began = tmp_path / "gate", tmp_path / "began"
    meta = {"wait_file": str(gate), "started_file": str(began)}
    job_id = await queue_job(redis, keys, handler_spec("wait_for_file", timeout=60.0), meta=meta)
    assert await wait_file(began) == "1 doomed\n"

    doomed.kill()
    killed_at = time.monotonic()

    async def ran_again() -> bool:
        return began.read_text() == "2 survivor\n"

    await async_wait_until(
        ran_again,
        BEFORE_THE_LEASE,
        what="the job to run again on the survivor",
        interval=0.05,
    )
    recovered_in = time.monotonic() - killed_at
    print(f"\nkill -9 recovery: the job ran again {recovered_in:.2f}s after the kill")
    assert recovered_in < BEFORE_THE_LEASE, recovered_in  # the goal is printed, not timed
    gate.touch()
    done = await async_wait_until(
        lambda: _finished_of(redis, keys, job_id), 15, what="the job to finish"
    )
    assert (done.attempt, done.worker) == (2, "survivor")


async def test_a_worker_restarted_under_its_own_name_runs_its_predecessors_job_at_once(
    services: list[ServiceProcess],
    base_env: dict[str, str],
    tmp_path: Path,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    """As ``hookline up`` does after a kill -9: the new process has the dead one's name,
    so that name's liveness never lapses; the new process takes its predecessor's
    pending job itself, at start, instead of leaving it to the two-minute lease."""
    env = {**worker_env(base_env), "HOOKLINE_WORKER_LEASE_TIMEOUT": "120s"}
    first = start_worker(services, env, tmp_path, "--name", "w1")
    gate, began = tmp_path / "gate", tmp_path / "began"
    meta = {"wait_file": str(gate), "started_file": str(began)}
    job_id = await queue_job(redis, keys, handler_spec("wait_for_file", timeout=60.0), meta=meta)
    assert await wait_file(began) == "1 w1\n"
    first.kill()
    killed_at = time.monotonic()
    start_worker(services, env, tmp_path, "--name", "w1")  # at once, as up restarts it

    async def ran_again() -> bool:
        return began.read_text() == "2 w1\n"

    await async_wait_until(ran_again, BEFORE_THE_LEASE, what="the job to run again", interval=0.05)
    recovered_in = time.monotonic() - killed_at
    print(f"\nrestart under the same name: the job ran again {recovered_in:.2f}s after the kill")
    assert recovered_in < BEFORE_THE_LEASE, recovered_in  # the goal is printed, not timed
    gate.touch()
    done = await async_wait_until(
        lambda: _finished_of(redis, keys, job_id), 15, what="the job to finish"
    )
    assert (done.attempt, done.worker, done.outcome) == (2, "w1", "finished")


async def test_a_live_workers_long_job_is_never_taken_over(
    services: list[ServiceProcess],
    base_env: dict[str, str],
    tmp_path: Path,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    """With a liveness TTL of 0.5 s, a job running for many TTLs beside another live
    worker still ends on its own worker as its only run."""
    ttl = 0.5
    env = {
        **worker_env(base_env),
        "HOOKLINE_WORKER_LIVENESS_TTL": str(ttl),
        "HOOKLINE_WORKER_LEASE_TIMEOUT": "120s",
    }
    start_worker(services, env, tmp_path, "--name", "runner")
    start_worker(services, env, tmp_path, "--name", "bystander")
    gate, began = tmp_path / "gate", tmp_path / "began"
    meta = {"wait_file": str(gate), "started_file": str(began)}
    job_id = await queue_job(redis, keys, handler_spec("wait_for_file", timeout=60.0), meta=meta)
    first = (await wait_file(began)).split()[1]
    since = await redis.zscore(keys.worker_liveness, first)
    assert since is not None

    async def refreshed_for_many_ttls() -> bool:
        score = await redis.zscore(keys.worker_liveness, first)
        return score is not None and score >= since + 8 * ttl * 1000

    await async_wait_until(refreshed_for_many_ttls, 20, what="eight liveness TTLs to pass")
    gate.touch()
    done = await async_wait_until(
        lambda: _finished_of(redis, keys, job_id), 15, what="the job to finish"
    )
    assert (done.attempt, done.worker) == (1, first)
    assert [(s.attempt, s.worker) for s in (await started(redis, keys))[job_id]] == [(1, first)]


async def _finished_of(redis: aioredis.Redis, keys: Keys, job_id: str) -> JobFinished | None:
    ends = (await finished(redis, keys)).get(job_id)
    return ends[0] if ends else None
