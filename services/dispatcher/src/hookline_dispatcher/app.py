"""The dispatcher process: its consumer loop plus ``/health`` and ``/metrics``."""

from __future__ import annotations

from aiohttp import web
from hookline.consumer import Consumer
from hookline.keys import GROUP_DISPATCHER, Keys
from hookline.metrics import CollectorRegistry, ConsumerMetrics
from hookline.redis_client import Redis, connect, lifespan
from hookline.service import Service
from hookline.web import add_ops_routes

from hookline_dispatcher.config import DEFAULT_CONFIG, RoutingConfig
from hookline_dispatcher.dispatcher import Dispatcher, DispatcherMetrics
from hookline_dispatcher.settings import DispatcherSettings

REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
CONSUMER: web.AppKey[Consumer] = web.AppKey("consumer", Consumer)


def build(
    settings: DispatcherSettings, config: RoutingConfig = DEFAULT_CONFIG
) -> Service[DispatcherSettings]:
    app = web.Application()
    registry = CollectorRegistry()
    keys = Keys(settings.prefix)
    redis = connect(settings.redis_url, client_name="hookline-dispatcher")
    dispatcher = Dispatcher(keys, config, DispatcherMetrics(registry), settings.marker_ttl)
    consumer = Consumer(
        redis,
        keys=keys,
        group=GROUP_DISPATCHER,
        name=settings.consumer_name,
        streams=dispatcher.streams,
        handler=dispatcher.handle,
        metrics=ConsumerMetrics(registry),
        claim_idle=settings.claim_idle,
    )
    app[REDIS] = redis
    app[CONSUMER] = consumer

    app.cleanup_ctx.append(lifespan(redis))

    async def health() -> dict[str, object]:
        ok = consumer.state.redis_ok
        return {
            "status": "ok" if ok else "unhealthy",
            "service": "dispatcher",
            "redis_connected": ok,
            "error": consumer.state.last_error,
        }

    add_ops_routes(app, registry, health)
    return Service(app, consumer.run)
