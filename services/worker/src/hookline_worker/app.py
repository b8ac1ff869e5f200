"""The worker process: the worker loop plus ``/health`` and ``/metrics``; at start, a
refusal to run under the name of a worker that is still alive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from hookline import clock
from hookline.errors import ConfigError
from hookline.keys import Keys
from hookline.logs import get_logger
from hookline.metrics import CollectorRegistry
from hookline.redis_client import UNAVAILABLE, Redis, connect
from hookline.redis_safety import PROBE_DEADLINE, RedisSafety, checked, lifespan
from hookline.service import Service
from hookline.web import add_ops_routes
from redis.exceptions import ResponseError

from hookline_worker.metrics import WorkerMetrics
from hookline_worker.settings import WorkerSettings
from hookline_worker.worker import Worker

WORKER: web.AppKey[Worker] = web.AppKey("worker", Worker)
# The name check at start waits this long for Redis at most (two round trips).
START_CHECK_DEADLINE = 2 * PROBE_DEADLINE


def client_name(worker: str) -> str:
    """The Redis connection name of a worker: a live one holds a connection so named."""
    return f"hookline-worker:{worker}"


async def live_heartbeat_age(
    redis: Redis, keys: Keys, name: str, ttl: float, now: float
) -> float | None:
    """Seconds since the last heartbeat of a live worker called ``name``, else None.

    Live: its heartbeat (the score in the workers registry) is younger than ``ttl`` and,
    where CLIENT LIST is allowed, it still holds a connection to Redis, so that a worker
    killed a moment ago (and restarted under its name by ``up`` or systemd) is not
    mistaken for a live one."""
    score = await redis.zscore(keys.workers, name)
    if score is None or now - float(score) / 1000 >= ttl:
        return None
    age = max(0.0, now - float(score) / 1000)
    try:
        clients = await redis.client_list()
    except ResponseError:  # not allowed by the ACL: the heartbeat alone decides
        return age
    return age if any(c.get("name") == client_name(name) for c in clients) else None


def name_check(settings: WorkerSettings) -> Callable[[], Coroutine[Any, Any, None]]:
    """Refuse (ConfigError) to start as a worker that is already live; a Redis that
    cannot be reached does not stop the start (the worker retries like any service)."""

    async def check() -> None:
        name = settings.worker_name
        redis = connect(settings.redis_url, client_name="hookline-worker-start")
        try:
            async with asyncio.timeout(START_CHECK_DEADLINE):  # a frozen Redis never holds us
                age = await live_heartbeat_age(
                    redis, Keys(settings.prefix), name, settings.worker_ttl, clock.now()
                )
        except (*UNAVAILABLE, TimeoutError, ResponseError) as exc:  # away, frozen, or an ACL
            get_logger().warning(
                "worker_name_not_checked", name=name, error=str(exc) or type(exc).__name__
            )
            return
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await redis.aclose()
        if age is not None:
            raise ConfigError(
                "--name",
                f"a worker named {name!r} is already running (heartbeat {age:.1f}s ago); "
                "give this one another name, or stop that one first",
            )

    return check


def build(settings: WorkerSettings) -> Service[WorkerSettings]:
    app = web.Application()
    registry = CollectorRegistry()
    redis: Redis = connect(settings.redis_url, client_name=client_name(settings.worker_name))
    worker = Worker(redis, settings, WorkerMetrics(registry))
    app[WORKER] = worker
    safety = RedisSafety(redis, allow_unsafe=settings.allow_unsafe_redis, registry=registry)
    worker.health.hold = safety.hold  # takes no job from a Redis that may lose its result

    app.cleanup_ctx.append(lifespan(safety))

    async def health() -> dict[str, object]:
        await safety.check()
        ok = worker.redis_ok and safety.reachable
        return {
            "status": "ok" if ok and safety.hold() is None else "unhealthy",
            "service": "worker",
            "redis_connected": ok,
            "error": worker.health.held or worker.health.last_error,
            "name": worker.name,
            "queues": settings.queues,
            "state": worker.state,
            "concurrency": settings.concurrency,
            "busy": len(worker.running),
            "jobs_done": worker.jobs_done,
            "jobs_failed": worker.jobs_failed,
            **safety.health_fields(),
        }

    add_ops_routes(app, registry, health, ready=lambda: safety.readiness(worker.health))

    async def run(stop: asyncio.Event) -> None:
        await checked(safety, worker.run(stop))

    return Service(app, run, preflight=name_check(settings))
