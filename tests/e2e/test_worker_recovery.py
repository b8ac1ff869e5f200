"""A kill -9'd worker's job, across real processes: its reclaimed run is a first-class
attempt (retried, dead-lettered, requeueable) and it runs again within seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from hookline.events import DeadLetter
from hookline.keys import EVENT_FIELD, Keys
from support.payloads import append_webhook
from support.processes import ServiceProcess, http_json
from support.waiting import wait_until

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
    wait_until(
        lambda: view(status, job_id).get("status") == "failed",
        timeout=30,
        what="the job to fail for good",
    )
    # Run 1 died with its worker; it counts against the 2 retries: runs 2 and 3 ran.
    assert runs_of(env) == ["1 doomed", "2 survivor", "3 survivor"]
    shown = view(status, job_id)
    assert shown["attempt"] == 3
    letters = [
        msgspec.json.decode(fields[EVENT_FIELD], type=DeadLetter)
        for _, fields in client.xrange(keys.dead_letter)
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
