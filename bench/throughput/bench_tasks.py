"""The no-op taskiq task of the comparison (imported by taskiq's worker)."""

from __future__ import annotations

import os

from taskiq_redis import RedisStreamBroker

# consumer_id "0": the group starts at the beginning of the stream, so jobs queued
# before the worker started are read too (the default "$" would skip them).
broker = RedisStreamBroker(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    queue_name="bench-taskiq",
    consumer_id="0",
    xread_count=int(os.environ.get("BENCH_TASKIQ_COUNT", "100")),
    xread_block=1000,
)


@broker.task(task_name="noop")
async def taskiq_noop() -> None:
    """A taskiq task that does nothing."""
