"""The read API: ``GET /jobs/<id>``, ``GET /jobs``, ``GET /health``."""

from __future__ import annotations

from aiohttp import web
from hookline.keys import DEFAULT_QUEUE, Keys
from hookline.queues import live_workers, queue_stats
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.web import json_error, json_response

from hookline_status.projection import STATUSES, render
from hookline_status.settings import StatusSettings
from hookline_status.store import get_view, list_views

SETTINGS: web.AppKey[StatusSettings] = web.AppKey("settings", StatusSettings)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
KEYS: web.AppKey[Keys] = web.AppKey("keys", Keys)

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
LIST_STATUSES = ("all", *STATUSES)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{job_id}", get_job)


async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    try:
        view = await get_view(request.app[REDIS], request.app[KEYS], job_id)
    except UNAVAILABLE:
        return _redis_down()
    if view is None:
        return json_error(404, "not_found", f"no job with id {job_id!r}")
    return json_response(render(view))


def parse_list_query(query: dict[str, str]) -> tuple[str, int] | tuple[str, str]:
    """``(status, limit)``, or ``("error", message)`` naming the bad parameter."""
    status = query.get("status", "all")
    if status not in LIST_STATUSES:
        return "error", f"status must be one of {', '.join(LIST_STATUSES)}; got {status!r}"
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw_limit)
    except ValueError:
        return "error", f"limit must be a whole number from 1 to {MAX_LIMIT}; got {raw_limit!r}"
    if not 1 <= limit <= MAX_LIMIT:
        return "error", f"limit must be a whole number from 1 to {MAX_LIMIT}; got {raw_limit!r}"
    return status, limit


async def list_jobs(request: web.Request) -> web.Response:
    parsed = parse_list_query(dict(request.query))
    if parsed[0] == "error":
        return json_error(400, "invalid_query", str(parsed[1]))
    status, limit = parsed
    assert isinstance(limit, int)
    try:
        views = await list_views(request.app[REDIS], request.app[KEYS], status, limit)
    except UNAVAILABLE:
        return _redis_down()
    jobs = [render(v) for v in views]
    return json_response({"count": len(jobs), "jobs": jobs})


async def health_body(app: web.Application, consumer_ok: bool) -> dict[str, object]:
    redis, keys = app[REDIS], app[KEYS]
    try:
        await redis.ping()
        stats = await queue_stats(redis, keys, DEFAULT_QUEUE)
        workers = await live_workers(redis, keys, app[SETTINGS].worker_ttl)
    except UNAVAILABLE:
        return {
            "status": "unhealthy",
            "redis_connected": False,
            "queue_available": False,
            "queue_length": 0,
            "workers_count": 0,
        }
    return {
        "status": "ok" if consumer_ok else "degraded",
        "redis_connected": True,
        "queue_available": True,
        "queue_length": stats.waiting,
        "workers_count": len(workers),
    }


def _redis_down() -> web.Response:
    return json_error(503, "redis_unavailable", "the job store cannot be reached; try again")
