"""schemathesis drives the live status service from its own OpenAPI document and
checks every reply against it: the document must describe what the service does."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hookline.keys import Keys
from hookline.records import CurrentJob, WorkerHeartbeat, to_hash
from support.jobs import PATHS, history
from support.processes import ServiceProcess
from support.views import project_into

ADMIN = "admin-token-0123456789"


async def seed(redis_url: str, keys: Keys) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        for i, path in enumerate(PATHS):
            await project_into(client, keys, history(f"job-{i}", start=i, path=path))
        # A busy worker, so /workers is checked against the schema derived from its type.
        beat = WorkerHeartbeat(
            name="w1",
            host="box",
            pid=7,
            queues=["pipeline_tasks"],
            busy=1,
            current_jobs=[
                CurrentJob(job_id="job-5", attempt=1, started_at=history("x")[0].occurred_at)
            ],
            started_at=history("x")[0].occurred_at,
        )
        await client.zadd(keys.workers, {"w1": int(time.time() * 1000)})
        await client.hset(keys.worker("w1"), mapping=to_hash(beat))  # type: ignore[arg-type]
    finally:
        await client.aclose()


@pytest.mark.e2e
def test_schemathesis_finds_no_failures(
    base_env: dict[str, str],
    keys: Keys,
    redis_url: str,
    services: list[ServiceProcess],
    tmp_path: Path,
) -> None:
    asyncio.run(seed(redis_url, keys))
    env = {**base_env, "HOOKLINE_ADMIN_TOKEN": ADMIN, "HOOKLINE_COMMAND_TIMEOUT": "0.05"}
    status = ServiceProcess("status", env, tmp_path)
    services.append(status)
    status.start()
    binary = Path(sys.executable).with_name("schemathesis")
    command = [str(binary) if binary.exists() else shutil.which("schemathesis") or "schemathesis"]
    result = subprocess.run(
        [
            *command,
            "run",
            f"{status.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--header",
            f"Authorization: Bearer {ADMIN}",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
        cwd=tmp_path,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "No issues found" in result.stdout or " passed" in result.stdout, report
