"""A real worker, started with relative work and artifacts dirs, gives its pipelines
absolute paths that exist: a command writes ``$HOOKLINE_JOB_ARTIFACTS/out.txt`` and reads
``$HOOKLINE_PAYLOAD_FILE`` from inside its scratch folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hookline.events import CommandRun, JobFinished, JobSpec
from hookline.keys import Keys
from support.processes import ServiceProcess
from support.waiting import async_wait_until
from support.worker_jobs import finished, handler_spec, queue_job

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).resolve().parents[1]
# Runs in the scratch folder: copies the payload into the artifacts folder (which must
# already exist) and reports, as its result, every path it was given and where it ran.
SCRIPT = (
    'cat "$HOOKLINE_PAYLOAD_FILE" > "$HOOKLINE_JOB_ARTIFACTS/out.txt" && '
    'printf \'{"artifacts": "%s", "work": "%s", "payload": "%s", "pwd": "%s"}\\n\' '
    '"$HOOKLINE_JOB_ARTIFACTS" "$HOOKLINE_WORK_DIR" "$HOOKLINE_PAYLOAD_FILE" "$PWD"'
)


@pytest.fixture
def worker(
    services: list[ServiceProcess], base_env: dict[str, str], tmp_path: Path
) -> ServiceProcess:
    """A worker whose dirs are relative to the folder it starts in (the test's cwd)."""
    env = {
        **base_env,
        "HOOKLINE_WORK_DIR": "scratch",
        "HOOKLINE_ARTIFACTS_DIR": "kept",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    proc = ServiceProcess("worker", env, tmp_path / "logs")
    services.append(proc)
    return proc.start()


async def ended(redis: aioredis.Redis, keys: Keys, job_id: str) -> JobFinished:
    async def one() -> JobFinished | None:
        events = (await finished(redis, keys)).get(job_id)
        return events[0] if events else None

    return await async_wait_until(one, 20, what=f"job {job_id} to end")


async def test_a_command_writes_its_artifact_and_reads_its_payload_by_absolute_paths(
    worker: ServiceProcess, redis: aioredis.Redis, keys: Keys
) -> None:
    started_in = Path.cwd()
    payload = b'{"name": "octo", "zen": "Keep it logically awesome."}'
    spec = JobSpec(pipeline="copy", run=CommandRun(argv=["sh", "-c", SCRIPT]))
    job_id = await queue_job(redis, keys, spec, payload=payload)

    done = await ended(redis, keys, job_id)

    assert done.outcome == "finished", done.error
    artifacts = started_in / "kept" / job_id
    assert (artifacts / "out.txt").read_bytes() == payload
    assert done.worker is not None
    own = started_in / "scratch" / done.worker  # each worker's scratch in its own folder
    scratch = own / f"{job_id}.1"
    assert done.result == {
        "artifacts": str(artifacts),
        "work": str(scratch),
        "payload": str(own / f"{job_id}.1.payload.json"),
        "pwd": str(scratch),
    }
    assert not scratch.exists()  # the scratch folder and payload go, the artifact stays


async def test_a_handler_sees_the_same_absolute_artifacts_folder(
    worker: ServiceProcess, redis: aioredis.Redis, keys: Keys
) -> None:
    started_in = Path.cwd()
    job_id = await queue_job(redis, keys, handler_spec("keep_artifact"), payload=b'{"name":"x"}')

    done = await ended(redis, keys, job_id)

    assert done.outcome == "finished", done.error
    artifacts = started_in / "kept" / job_id
    assert done.result == {"artifacts_dir": str(artifacts), "artifact": str(artifacts / "out.txt")}
    assert (artifacts / "out.txt").read_text() == "x"
