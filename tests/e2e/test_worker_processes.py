"""Workers as real processes: kill -9 mid-job, SIGTERM drains, a second signal stops at
once, ``--burst`` exits 0, bad flags exit 2."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hookline.events import JobFinished
from hookline.keys import DEFAULT_QUEUE, GROUP_WORKERS, Keys
from hookline.streams import parse_entries
from support.processes import ServiceProcess, http_json
from support.waiting import async_wait_until, wait_until
from support.worker_jobs import finished, handler_spec, pending, queue_job, started
from support.worker_processes import start_worker, wait_file, worker_env

pytestmark = pytest.mark.e2e

DEFAULT_PORT = 9103


async def wait_exit(proc: ServiceProcess, timeout: float) -> int:
    assert proc.process is not None

    async def exited() -> bool:
        return proc.process is not None and proc.process.poll() is not None

    await async_wait_until(exited, timeout, what="the worker to exit", interval=0.05)
    return proc.process.returncode


async def test_kill_9_mid_job_another_worker_finishes_it(
    services: list[ServiceProcess],
    base_env: dict[str, str],
    tmp_path: Path,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    lease = 2.0
    env = worker_env(base_env, HOOKLINE_WORKER_LEASE_TIMEOUT=str(lease))
    status = ServiceProcess("status", base_env, tmp_path / "logs")
    services.append(status.start())
    doomed = start_worker(services, env, tmp_path, "--name", "doomed")
    gate, began = tmp_path / "gate", tmp_path / "began"
    meta = {"wait_file": str(gate), "started_file": str(began)}
    job_id = await queue_job(redis, keys, handler_spec("wait_for_file"), meta=meta)
    assert await wait_file(began) == "1 doomed\n"
    start_worker(services, env, tmp_path, "--name", "survivor")

    doomed.kill()
    killed_at = time.monotonic()
    gate.touch()

    async def view() -> dict[str, object] | None:
        code, body = http_json(f"{status.url}/jobs/{job_id}")
        return body if code == 200 and body.get("status") == "finished" else None

    shown = await async_wait_until(view, lease * 1.25 + 10, what="the job to finish")
    recovered_in = time.monotonic() - killed_at
    assert recovered_in < lease * 1.25 + 3, recovered_in
    assert (shown["attempt"], shown["worker"]) == (2, "survivor")
    runs = [(s.attempt, s.worker) for s in (await started(redis, keys))[job_id]]
    assert runs == [(1, "doomed"), (2, "survivor")]
    (done,) = (await finished(redis, keys))[job_id]
    assert (done.outcome, done.attempt, done.result) == (
        "finished",
        2,
        {"attempt": 2, "worker": "survivor"},
    )
    assert await pending(redis, keys) == 0


async def test_sigterm_stops_reading_and_lets_the_running_job_finish(
    services: list[ServiceProcess],
    base_env: dict[str, str],
    tmp_path: Path,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    worker = start_worker(services, worker_env(base_env), tmp_path, "--shutdown-timeout", "30")
    gate, began = tmp_path / "gate", tmp_path / "began"
    meta = {"wait_file": str(gate), "started_file": str(began)}
    running = await queue_job(redis, keys, handler_spec("wait_for_file"), meta=meta)
    await wait_file(began)
    worker.signal(signal.SIGTERM)
    await async_wait_until(lambda: _logged(worker, "draining"), what="the worker to drain")
    later = await queue_job(redis, keys, handler_spec("echo"))
    gate.touch()
    assert await wait_exit(worker, 15) == 0
    ended = await finished(redis, keys)
    assert [e.outcome for e in ended[running]] == ["finished"]
    assert later not in ended  # not read after the signal
    assert await pending(redis, keys) == 0
    stream = keys.job_queued(DEFAULT_QUEUE)
    undelivered = await redis.xreadgroup(GROUP_WORKERS, "probe", {stream: ">"})
    assert len(parse_entries(undelivered)) == 1  # the later job is still there for the next worker
    assert not await redis.exists(keys.worker("worker"))


async def _logged(proc: ServiceProcess, event: str) -> bool:
    return f'"event": "{event}"' in proc.logs() or f'"event":"{event}"' in proc.logs()


async def test_second_signal_stops_at_once_and_hands_the_job_back(
    services: list[ServiceProcess],
    base_env: dict[str, str],
    tmp_path: Path,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    env = worker_env(base_env)  # default 30 s lease: the hand-back must not wait for it
    first = start_worker(services, env, tmp_path, "--name", "first", "--shutdown-timeout", "60")
    gate, began = tmp_path / "gate", tmp_path / "began"
    meta = {"wait_file": str(gate), "started_file": str(began)}
    job_id = await queue_job(redis, keys, handler_spec("wait_for_file"), meta=meta)
    await wait_file(began)
    first.signal(signal.SIGTERM)
    await async_wait_until(lambda: _logged(first, "draining"), what="the worker to drain")
    first.signal(signal.SIGINT)
    assert await wait_exit(first, 5) == 0
    assert job_id not in await finished(redis, keys)  # never acknowledged unfinished
    assert await pending(redis, keys) == 1

    gate.touch()
    start_worker(services, env, tmp_path, "--name", "second")

    async def done() -> list[JobFinished] | None:
        return (await finished(redis, keys)).get(job_id)

    (event,) = await async_wait_until(done, 10, what="the handed-back job to finish")
    assert (event.outcome, event.attempt, event.worker) == ("finished", 2, "second")


async def test_burst_drains_every_listed_queue_then_exits_zero(
    base_env: dict[str, str], tmp_path: Path, redis: aioredis.Redis, keys: Keys
) -> None:
    jobs = [
        await queue_job(redis, keys, handler_spec("echo", queue=queue))
        for queue in ("high", "low", "low", "high", DEFAULT_QUEUE)
    ]
    env = {**os.environ, **worker_env(base_env), "HOOKLINE_WORKER_PORT": "0"}
    argv = [sys.executable, "-m", "hookline.cli", "worker", "--burst"]
    argv += ["--queues", f"high,low,{DEFAULT_QUEUE}", "--concurrency", "2"]
    done = await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:]
    ended = await finished(redis, keys)
    assert all(ended[job_id][0].outcome == "finished" for job_id in jobs)


async def test_bad_worker_flag_exits_2_naming_the_setting(
    base_env: dict[str, str], redis: aioredis.Redis, keys: Keys
) -> None:
    await queue_job(redis, keys, handler_spec("echo"))
    env = {**os.environ, **worker_env(base_env)}
    argv = [sys.executable, "-m", "hookline.cli", "worker", "--concurrency", "0"]
    done = await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert done.stderr == "hookline: error: HOOKLINE_WORKER_CONCURRENCY: must be at least 1\n"
    # Nothing was read: the job still waits for a worker.
    stream = keys.job_queued(DEFAULT_QUEUE)
    groups = await redis.xinfo_groups(stream)
    assert not [g for g in groups if g["name"] == GROUP_WORKERS.encode()]
    assert await redis.xlen(stream) == 1


async def test_a_worker_beside_a_taken_default_port_takes_a_free_one(
    services: list[ServiceProcess], base_env: dict[str, str], tmp_path: Path
) -> None:
    """Nobody chose the port: 9103 taken (as beside `hookline up`), a free one is used."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("0.0.0.0", DEFAULT_PORT))
        holder.listen()
    except OSError:  # already taken by something else: just as good for this test
        pass
    try:
        proc = ServiceProcess("worker", worker_env(base_env), tmp_path / "logs")
        del proc.env["HOOKLINE_WORKER_PORT"]
        services.append(proc)
        proc.start(wait=False)

        def fallback_port() -> int:
            for line in proc.logs().splitlines():
                if '"default_port_taken"' in line:
                    record = json.loads(line)
                    assert record["wanted"] == DEFAULT_PORT
                    return int(record["port"])
            assert proc.process is not None
            assert proc.process.poll() is None, proc.logs()
            return 0

        proc.port = await asyncio.to_thread(wait_until, fallback_port, 20, what="a free port")
        assert proc.port != DEFAULT_PORT
        await asyncio.to_thread(proc.wait_healthy)
    finally:
        holder.close()


@pytest.mark.parametrize("how", ["flag", "env"])
async def test_a_chosen_port_that_is_taken_exits_2_in_one_line(
    base_env: dict[str, str], how: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **worker_env(base_env), "HOOKLINE_WORKER_HOST": "127.0.0.1"}
        argv = [sys.executable, "-m", "hookline.cli", "worker"]
        if how == "flag":
            argv += ["--port", str(port)]
        else:
            env["HOOKLINE_WORKER_PORT"] = str(port)
        done = await asyncio.to_thread(
            subprocess.run, argv, env=env, capture_output=True, text=True, timeout=30, check=False
        )
    assert done.returncode == 2
    assert done.stderr == (
        f"hookline: error: HOOKLINE_WORKER_PORT: port {port} on 127.0.0.1 is already in use\n"
    )


async def test_a_second_worker_under_a_live_name_is_refused(
    services: list[ServiceProcess],
    base_env: dict[str, str],
    tmp_path: Path,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    env = worker_env(base_env)
    first = start_worker(services, env, tmp_path, "--name", "twin")

    async def registered() -> bool:
        return await redis.zscore(keys.workers, "twin") is not None

    await async_wait_until(registered, 10, what="the first worker's heartbeat")
    argv = [sys.executable, "-m", "hookline.cli", "worker", "--name", "twin", "--port", "0"]
    done = await asyncio.to_thread(
        subprocess.run,
        argv,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("hookline: error: --name: a worker named 'twin' is already")
    assert await registered()  # the refused one did not deregister the live one

    # Killed a moment ago, its heartbeat still fresh: a restart under its name is fine.
    first.kill()
    start_worker(services, env, tmp_path, "--name", "twin")
