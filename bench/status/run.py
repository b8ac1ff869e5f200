"""Status benchmark: the read API on a projection of 100,000 jobs, and the projection's
apply rate.

    flock /tmp/hookline-bench.lock uv run python bench/status/run.py [--jobs 100000]

1. Fills a private Redis with the events of ``--jobs`` jobs (received, queued,
   started, finished: four events each) through the projection's batched Lua calls:
   the raw apply rate (events/s).
2. Appends the events of ``--backlog`` more jobs to the streams and starts a status
   process on them: the rate at which one status process catches up (events/s), the
   figure that matters for keeping up with the workers.
3. Runs wrk (Debian's ``wrk``) at 32 connections against ``GET /jobs/<id>`` (random
   ids among the 100,000) and ``GET /jobs?limit=50``: requests/s and p99.

Prints a markdown table with each figure against its goal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TypedDict

import redis.asyncio as aioredis
from hookline.clock import utcnow
from hookline.embedded_redis import EmbeddedRedis, free_port
from hookline.events import (
    AnyEvent,
    JobFinished,
    JobQueued,
    JobSpec,
    JobStarted,
    Meta,
    WebhookReceived,
    encode,
)
from hookline.keys import EVENT_FIELD, GROUP_STATUS, Keys
from hookline_status.projection import project
from hookline_status.store import apply_ops

PREFIX = "bench"
GOAL_P99_MS = 10.0
GOAL_EVENTS = 10_000.0


class Ids(TypedDict):
    job_id: str
    delivery_id: str


def job_events(i: int) -> list[AnyEvent]:
    job, delivery = f"job-{i:07d}", f"delivery-{i}"
    ids: Ids = {"job_id": job, "delivery_id": delivery}
    queue = "pipeline_tasks" if i % 4 else "video"
    pipeline = "render" if i % 3 else "demo"
    repository = f"octo/repo{i % 50}"
    meta: Meta = {"repository": repository, "sha": "0" * 40, "branch": "main"}
    now = utcnow()
    return [
        WebhookReceived(**ids, event="push", repository=repository, occurred_at=now),
        JobQueued(**ids, attempt=1, spec=JobSpec(pipeline=pipeline, queue=queue), meta=meta),
        JobStarted(**ids, attempt=1, queue=queue, pipeline=pipeline, worker=f"w{i % 8}"),
        JobFinished(
            **ids,
            attempt=1,
            outcome="failed" if i % 10 == 0 else "finished",
            queue=queue,
            pipeline=pipeline,
            worker=f"w{i % 8}",
            result={"artifact": f"/artifacts/{job}.mp4"},
            duration=random.uniform(0.5, 90),
            meta=meta,
        ),
    ]


async def fill(redis: aioredis.Redis, keys: Keys, jobs: int) -> float:
    """Apply every job's events through the Lua script; events per second."""
    batch = 2000
    started = time.perf_counter()
    applied = 0
    for start in range(0, jobs, batch // 4):
        updates = [
            u
            for i in range(start, min(jobs, start + batch // 4))
            for e in job_events(i)
            if (u := project(e))
        ]
        async with redis.pipeline(transaction=False) as pipe:
            for op in apply_ops(keys, 0, updates):
                pipe.execute_command(*op)
            await pipe.execute()
        applied += len(updates)
    return applied / (time.perf_counter() - started)


def stream_of(keys: Keys, event: AnyEvent) -> str:
    match event:
        case WebhookReceived():
            return keys.webhook_received
        case JobQueued():
            return keys.job_queued(event.spec.queue)
        case JobStarted():
            return keys.job_started
        case _:
            return keys.job_finished


async def append_backlog(redis: aioredis.Redis, keys: Keys, first: int, jobs: int) -> int:
    count = 0
    await redis.sadd(keys.queues, "pipeline_tasks", "video")
    for start in range(first, first + jobs, 500):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(first + jobs, start + 500)):
                for event in job_events(i):
                    pipe.xadd(stream_of(keys, event), {EVENT_FIELD: encode(event)})
                    count += 1
            await pipe.execute()
    return count


async def unread(redis: aioredis.Redis, keys: Keys) -> int:
    """Entries the status group has not acknowledged yet (read or not)."""
    left = 0
    for stream in keys.all_streams(["pipeline_tasks", "video"]):
        try:
            groups = await redis.xinfo_groups(stream)
        except Exception:
            return -1
        group = next((g for g in groups if g["name"] == GROUP_STATUS.encode()), None)
        if group is None:
            return -1
        lag = group.get("lag")
        if lag is None:  # Redis < 7: is anything left after the last delivered entry?
            last = group["last-delivered-id"].decode()
            lag = len(await redis.xrange(stream, min=f"({last}", count=1) or [])
        left += int(group["pending"]) + int(lag)
    return left


def start_status(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REDIS_URL": url,
        "HOOKLINE_PREFIX": PREFIX,
        "HOOKLINE_STATUS_PORT": str(port),
        "HOOKLINE_STATUS_HOST": "127.0.0.1",
        "HOOKLINE_LOG_LEVEL": "warning",
        "HOOKLINE_LOG_FORMAT": "json",
        # The bench's Redis runs without persistence (a throwaway data set, measured
        # for speed): the explicit opt-out of the Redis safety check.
        "HOOKLINE_ALLOW_UNSAFE_REDIS": "1",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hookline_status"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wrk(url: str, seconds: int, script: Path | None) -> tuple[float, float]:
    """(requests/s, p99 ms) of one wrk run at 32 connections."""
    command = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        print(f"warning: {non2xx.group(1)} error responses from {url}", file=sys.stderr)
    return rate, p99


async def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("status process exited")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit("status process did not come up")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--backlog", type=int, default=25_000, help="jobs for the catch-up run")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="hookline-bench-status-"))
    server = EmbeddedRedis(tmp / "redis", appendonly=False).start()
    keys = Keys(PREFIX)
    redis = aioredis.Redis.from_url(server.url)
    status: subprocess.Popen[bytes] | None = None
    try:
        print(f"filling a projection of {args.jobs} jobs ...", file=sys.stderr)
        lua_rate = await fill(redis, keys, args.jobs)

        print(f"appending {args.backlog} jobs' events to the streams ...", file=sys.stderr)
        events = await append_backlog(redis, keys, args.jobs, args.backlog)
        port = free_port()
        started = time.perf_counter()
        status = start_status(server.url, port, tmp / "status.log")
        await wait_healthy(port, status)
        while await unread(redis, keys) != 0:  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.1)
        consumer_rate = events / (time.perf_counter() - started)

        script = tmp / "ids.lua"
        path = f"string.format('/jobs/job-%07d', math.random(0, {args.jobs - 1}))"
        script.write_text(
            f"math.randomseed(os.time())\nrequest = function() return wrk.format(nil, {path}) end\n"
        )
        base = f"http://127.0.0.1:{port}"
        wrk(f"{base}/jobs/job-0000001", 2, None)  # warm up
        one_rate, one_p99 = wrk(base, args.seconds, script)
        list_rate, list_p99 = wrk(f"{base}/jobs?limit=50", args.seconds, None)
    finally:
        if status is not None and status.poll() is None:
            status.send_signal(signal.SIGTERM)
            status.wait(timeout=30)
        await redis.aclose()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    total = args.jobs + args.backlog
    goal = f"< {GOAL_P99_MS:.0f} ms"
    rows = [
        ("`GET /jobs/<id>` requests/s", f"{one_rate:,.0f}", "", ""),
        ("`GET /jobs/<id>` p99", f"{one_p99:.2f} ms", goal, f"{one_p99 / GOAL_P99_MS:.2f}"),
        ("`GET /jobs?limit=50` requests/s", f"{list_rate:,.0f}", "", ""),
        ("`GET /jobs?limit=50` p99", f"{list_p99:.2f} ms", goal, f"{list_p99 / GOAL_P99_MS:.2f}"),
        (
            "projection apply, batched Lua (events/s)",
            f"{lua_rate:,.0f}",
            f">= {GOAL_EVENTS:,.0f}",
            f"{lua_rate / GOAL_EVENTS:.2f}",
        ),
        (
            f"one status process catching up on {events:,} events (events/s)",
            f"{consumer_rate:,.0f}",
            f">= {GOAL_EVENTS:,.0f}",
            f"{consumer_rate / GOAL_EVENTS:.2f}",
        ),
    ]
    print()
    print(f"Projection of {total:,} jobs; wrk -t2 -c32 -d{args.seconds}s; one status process.")
    print()
    print("| measure | result | goal | result / goal |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    asyncio.run(main())
