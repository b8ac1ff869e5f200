"""The dispatcher process: its consumer loop, the due-job mover, ``/health`` and
``/metrics``."""

from __future__ import annotations

import asyncio

from aiohttp import web
from hookline.keys import Keys
from hookline.metrics import CollectorRegistry, ConsumerMetrics
from hookline.redis_client import Redis, connect
from hookline.redis_safety import RedisSafety, checked, lifespan
from hookline.retry import retry_forever
from hookline.service import Service
from hookline.web import add_ops_routes

from hookline_dispatcher.config import RoutingConfig
from hookline_dispatcher.dispatcher import Dispatcher, DispatcherMetrics
from hookline_dispatcher.loop import DispatcherConsumer, dispatcher_consumer
from hookline_dispatcher.settings import DispatcherSettings

REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
CONSUMER: web.AppKey[DispatcherConsumer] = web.AppKey("consumer")

MOVE_BATCH = 500


def build(
    settings: DispatcherSettings, config: RoutingConfig | None = None
) -> Service[DispatcherSettings]:
    app = web.Application()
    registry = CollectorRegistry()
    keys = Keys(settings.prefix)
    redis = connect(settings.redis_url, client_name="hookline-dispatcher")
    metrics = DispatcherMetrics(registry)
    dispatcher = Dispatcher(redis, keys, config or settings.routing, metrics, settings.marker_ttl)
    consumer = dispatcher_consumer(
        dispatcher,
        name=settings.consumer_name,
        metrics=ConsumerMetrics(registry),
        claim_idle=settings.claim_idle,
    )
    app[REDIS] = redis
    app[CONSUMER] = consumer
    safety = RedisSafety(redis, allow_unsafe=settings.allow_unsafe_redis, registry=registry)
    consumer.state.hold = safety.hold  # no consuming from a Redis that may lose what we write

    app.cleanup_ctx.append(lifespan(safety))

    async def move_due() -> float:
        """Queue due attempts; a full batch means more may be due, so keep moving until
        one comes back short, then wait a ``tick``. Any number of dispatchers may run it."""
        moved = MOVE_BATCH
        while moved >= MOVE_BATCH:
            moved = await dispatcher.move_due(MOVE_BATCH)
        metrics.deferred.set(await redis.zcard(keys.delayed))
        return float(settings.tick)

    async def move_loop(stop: asyncio.Event) -> None:
        await retry_forever(move_due, stop=stop, what="move_due")

    async def run(stop: asyncio.Event) -> None:
        await checked(safety, asyncio.gather(consumer.run(stop), move_loop(stop)))

    async def health() -> dict[str, object]:
        await safety.check()
        ok = consumer.state.redis_ok and safety.reachable
        return {
            "status": "ok" if ok and safety.hold() is None else "unhealthy",
            "service": "dispatcher",
            "redis_connected": ok,
            "error": consumer.state.held or consumer.state.last_error,
            "config": settings.config_path or "built-in default",
            "routes": len(dispatcher.config.routes),
            **safety.health_fields(),
        }

    add_ops_routes(app, registry, health, ready=lambda: safety.readiness(consumer.state))
    return Service(app, run)
