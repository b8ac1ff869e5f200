"""The worker process: the worker loop plus ``/health`` and ``/metrics``."""

from __future__ import annotations

import asyncio

from aiohttp import web
from hookline.metrics import CollectorRegistry
from hookline.redis_client import Redis, connect, lifespan
from hookline.service import Service
from hookline.web import add_ops_routes

from hookline_worker.metrics import WorkerMetrics
from hookline_worker.settings import WorkerSettings
from hookline_worker.worker import Worker

WORKER: web.AppKey[Worker] = web.AppKey("worker", Worker)


def build(settings: WorkerSettings) -> Service[WorkerSettings]:
    app = web.Application()
    registry = CollectorRegistry()
    redis: Redis = connect(
        settings.redis_url, client_name=f"hookline-worker:{settings.worker_name}"
    )
    worker = Worker(redis, settings, WorkerMetrics(registry))
    app[WORKER] = worker

    app.cleanup_ctx.append(lifespan(redis))

    async def health() -> dict[str, object]:
        ok = worker.redis_ok
        return {
            "status": "ok" if ok else "unhealthy",
            "service": "worker",
            "redis_connected": ok,
            "name": worker.name,
            "queues": settings.queues,
            "state": worker.state,
            "concurrency": settings.concurrency,
            "busy": len(worker.running),
            "jobs_done": worker.jobs_done,
            "jobs_failed": worker.jobs_failed,
        }

    add_ops_routes(app, registry, health)

    async def run(stop: asyncio.Event) -> None:
        await worker.run(stop)

    return Service(app, run)
