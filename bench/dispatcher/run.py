"""Dispatcher throughput: webhooks routed (batched Lua writes), failures turned into
scheduled retries (read-decide-commit under WATCH, one entry at a time), and due
retries queued by the mover. Prints a markdown table.

    flock /tmp/hookline-bench.lock uv run python bench/dispatcher/run.py [--jobs N]

Uses REDIS_URL if set, else starts its own redis-server (AOF on, as `hookline up`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import msgspec
import redis.asyncio as aioredis
from hookline.embedded_redis import EmbeddedRedis
from hookline.events import JobError, JobFinished, WebhookReceived, encode
from hookline.ids import job_id_for_delivery, new_event_id
from hookline.keys import EVENT_FIELD, GROUP_DISPATCHER, Keys
from hookline.logs import configure_logging
from hookline.metrics import CollectorRegistry, ConsumerMetrics
from hookline.redis_client import connect
from hookline.samples import SAMPLES
from hookline.streams import parse_entries
from hookline_dispatcher.configfile import parse_config
from hookline_dispatcher.dispatcher import Dispatcher, DispatcherMetrics
from hookline_dispatcher.loop import DispatcherConsumer, dispatcher_consumer

PAYLOAD = SAMPLES / "push" / "with-new-branch.payload.json"
CONFIG = parse_config(
    '[pipelines.p]\nhandler = "m:f"\nretries = 3\n'
    'backoff = { kind = "fixed", base = "1s" }\n'
    '[[routes]]\nevents = ["push"]\nbranches = ["*"]\npipeline = "p"\n'
)


async def drain(redis: aioredis.Redis, consumer: DispatcherConsumer, count: int) -> None:
    streams = await consumer.streams()
    while True:
        reply = await redis.xreadgroup(
            GROUP_DISPATCHER, "bench", dict.fromkeys(streams, ">"), count=count
        )
        entries = parse_entries(reply)
        if not entries:
            return
        await consumer.process(entries)


async def bench(url: str, jobs: int) -> list[tuple[str, int, float]]:
    redis = connect(url, client_name="bench-dispatcher")  # loads the Lua scripts
    keys = Keys(f"bench{new_event_id()[:8]}")
    registry = CollectorRegistry()
    clock = [time.time()]
    dispatcher = Dispatcher(
        redis, keys, CONFIG, DispatcherMetrics(registry), 86400, clock=lambda: clock[0]
    )
    consumer = dispatcher_consumer(dispatcher, name="bench", metrics=ConsumerMetrics(registry))
    body = PAYLOAD.read_bytes()
    action = json.loads(body).get("action")
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(jobs):
            delivery = f"bench-{i}"
            event = WebhookReceived(
                delivery_id=delivery,
                job_id=job_id_for_delivery(delivery),
                event="push",
                action=action,
                payload=msgspec.Raw(body),
            )
            pipe.xadd(keys.webhook_received, {EVENT_FIELD: encode(event)})
        await pipe.execute()
    results = []

    start = time.perf_counter()
    await drain(redis, consumer, 200)
    results.append(("webhooks routed and queued", jobs, time.perf_counter() - start))
    assert await redis.xlen(keys.job_queued("pipeline_tasks")) == jobs

    async def append_ends(attempt: int, outcome: str) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(jobs):
                delivery = f"bench-{i}"
                finished = JobFinished(
                    job_id=job_id_for_delivery(delivery),
                    delivery_id=delivery,
                    attempt=attempt,
                    outcome=outcome,  # type: ignore[arg-type]
                    error=JobError(type="RuntimeError", message="bench")
                    if outcome == "failed"
                    else None,
                )
                pipe.xadd(keys.job_finished, {EVENT_FIELD: encode(finished)})
            await pipe.execute()

    await append_ends(1, "failed")
    start = time.perf_counter()
    await drain(redis, consumer, 200)
    results.append(("failures turned into scheduled retries", jobs, time.perf_counter() - start))
    assert await redis.zcard(keys.delayed) == jobs

    clock[0] += 10
    start = time.perf_counter()
    while await dispatcher.move_due(500):
        pass
    results.append(("due retries queued by the mover", jobs, time.perf_counter() - start))
    assert await redis.xlen(keys.job_queued("pipeline_tasks")) == 2 * jobs

    await append_ends(2, "finished")
    start = time.perf_counter()
    await drain(redis, consumer, 200)
    results.append(("successful ends recorded", jobs, time.perf_counter() - start))
    phase = await redis.hget(keys.dispatcher_job(job_id_for_delivery("bench-0")), "phase")
    assert phase == b"finished"
    await redis.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    configure_logging("dispatcher", "warning", "json")
    url = os.environ.get("REDIS_URL")
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        if not url:
            server = EmbeddedRedis(Path(tmp)).start()
            url = server.url
        try:
            results = asyncio.run(bench(url, args.jobs))
        finally:
            if server is not None:
                server.stop()
    first = results[0][1] / results[0][2]
    print(
        f"Dispatcher, one process, {args.jobs} jobs, push payload of {PAYLOAD.stat().st_size} B\n"
    )
    print("| step | entries | seconds | entries/s | vs routing |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, count, seconds in results:
        rate = count / seconds
        print(f"| {name} | {count} | {seconds:.2f} | {rate:,.0f} | {rate / first:.2f}x |")


if __name__ == "__main__":
    main()
