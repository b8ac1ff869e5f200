"""The HTTP API: job views and histories, workers, health, and the admin commands.

Reads are open unless ``HOOKLINE_READ_TOKEN`` is set; the admin endpoints append a
command for the dispatcher and need ``Authorization: Bearer <HOOKLINE_ADMIN_TOKEN>``
(every POST is refused while no admin token is configured).
"""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Any

import msgspec
from aiohttp import web
from hookline.commands import send_command
from hookline.events import Command, JobCancelRequested, JobRequeueRequested
from hookline.keys import Keys, check_name
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.redis_safety import PROBE_DEADLINE, RedisSafety
from hookline.web import ALLOWED_METHODS, json_error, json_response

from hookline_status.documents import (
    CommandDone,
    CommandPending,
    Health,
    JobHistory,
    SystemInfo,
    WorkerList,
)
from hookline_status.openapi import allowed_methods, document
from hookline_status.overview import read_workers, system_info
from hookline_status.query import QueryError, parse_job_query
from hookline_status.reads import get_job_document, job_history, list_job_documents, read_view
from hookline_status.settings import StatusSettings

SETTINGS: web.AppKey[StatusSettings] = web.AppKey("settings", StatusSettings)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
KEYS: web.AppKey[Keys] = web.AppKey("keys", Keys)

_json = msgspec.json.Encoder()
# /health reads the system's figures within this, after the safety probe: under 1 s.
HEALTH_READ_DEADLINE = 0.8 * PROBE_DEADLINE
_SAFE_HEADER = re.compile(r"[!-~]{1,100}")


def add_routes(app: web.Application) -> None:
    app[ALLOWED_METHODS] = allowed_methods
    app.router.add_get("/jobs", list_jobs_view)
    app.router.add_post("/jobs/requeue-failed", requeue_failed)
    app.router.add_get("/jobs/{job_id}", get_job_view)
    app.router.add_get("/jobs/{job_id}/events", job_events_view)
    app.router.add_post("/jobs/{job_id}/requeue", requeue_job)
    app.router.add_post("/jobs/{job_id}/cancel", cancel_job)
    app.router.add_get("/workers", workers_view)
    app.router.add_get("/openapi.json", openapi_view)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _matches(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def check_read(request: web.Request) -> web.Response | None:
    """None if the request may read; else the 401/403 reply."""
    settings = request.app[SETTINGS]
    if not settings.read_token:
        return None
    token = _bearer(request)
    if token is None:
        return _unauthorized("reading needs Authorization: Bearer <HOOKLINE_READ_TOKEN>")
    if _matches(token, settings.read_token) or _matches(token, settings.admin_token):
        return None
    return json_error(403, "forbidden", "the bearer token is not valid for reading")


def check_admin(request: web.Request) -> web.Response | None:
    settings = request.app[SETTINGS]
    if not settings.admin_token:
        return json_error(
            403, "admin_disabled", "admin endpoints are off: set HOOKLINE_ADMIN_TOKEN to enable"
        )
    token = _bearer(request)
    if token is None:
        return _unauthorized("this needs Authorization: Bearer <HOOKLINE_ADMIN_TOKEN>")
    if not _matches(token, settings.admin_token):
        return json_error(403, "forbidden", "the bearer token is not the admin token")
    return None


def _unauthorized(detail: str) -> web.Response:
    response = json_error(401, "unauthorized", detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="hookline"'
    return response


def _bad_query(exc: QueryError) -> web.Response:
    response = json_error(400, "invalid_query", str(exc))
    if _SAFE_HEADER.fullmatch(exc.parameter):
        response.headers["X-Invalid-Parameter"] = exc.parameter
    return response


def _no_query(request: web.Request, allowed: frozenset[str] = frozenset()) -> QueryError | None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        return QueryError(unknown[0], f"unknown parameter {unknown[0]!r}")
    for name in allowed:
        if len(request.query.getall(name, [])) > 1:
            return QueryError(name, f"{name} given more than once")
    return None


async def get_job_view(request: web.Request) -> web.Response:
    if (denied := check_read(request)) is not None:
        return denied
    if (bad := _no_query(request)) is not None:
        return _bad_query(bad)
    job_id = request.match_info["job_id"]
    document = await get_job_document(request.app[REDIS], request.app[KEYS], job_id)
    if document is None:
        return json_error(404, "not_found", f"no job with id {job_id!r}")
    return web.Response(body=document, content_type="application/json")


async def job_events_view(request: web.Request) -> web.Response:
    if (denied := check_read(request)) is not None:
        return denied
    if (bad := _no_query(request)) is not None:
        return _bad_query(bad)
    job_id = request.match_info["job_id"]
    events = await job_history(request.app[REDIS], request.app[KEYS], job_id)
    if events is None:
        return json_error(404, "not_found", f"no job with id {job_id!r}")
    return json_response(JobHistory(job_id=job_id, count=len(events), events=events))


async def list_jobs_view(request: web.Request) -> web.Response:
    if (denied := check_read(request)) is not None:
        return denied
    repeated = [name for name in request.query if len(request.query.getall(name)) > 1]
    try:
        if repeated:
            raise QueryError(repeated[0], f"{repeated[0]} given more than once")
        query = parse_job_query(dict(request.query))
    except QueryError as exc:
        return _bad_query(exc)
    page = await list_job_documents(request.app[REDIS], request.app[KEYS], query)
    body = b"".join(
        (
            b'{"count":%d,"jobs":[' % len(page.documents),
            b",".join(page.documents),
            b'],"next_cursor":',
            _json.encode(page.next_cursor),
            b"}",
        )
    )
    return web.Response(body=body, content_type="application/json")


async def workers_view(request: web.Request) -> web.Response:
    if (denied := check_read(request)) is not None:
        return denied
    if (bad := _no_query(request)) is not None:
        return _bad_query(bad)
    settings = request.app[SETTINGS]
    workers = await read_workers(request.app[REDIS], request.app[KEYS], settings.worker_ttl)
    return json_response(WorkerList(count=len(workers), workers=workers))


async def openapi_view(request: web.Request) -> web.Response:
    return json_response(document())


async def _command(request: web.Request, command: Command) -> web.Response:
    timeout = request.app[SETTINGS].command_timeout
    answer = await send_command(request.app[REDIS], request.app[KEYS], command, timeout=timeout)
    if answer is None:
        return json_response(CommandPending(command_id=command.event_id), status=202)
    return json_response(
        CommandDone(
            command_id=answer.command_id,
            ok=answer.ok,
            message=answer.message,
            job_ids=answer.job_ids,
        )
    )


def _requester(request: web.Request) -> str:
    return f"http:{request.remote or 'unknown'}"


async def _known_job(request: web.Request) -> tuple[str, web.Response | None]:
    job_id = request.match_info["job_id"]
    if await read_view(request.app[REDIS], request.app[KEYS], job_id) is None:
        return job_id, json_error(404, "not_found", f"no job with id {job_id!r}")
    return job_id, None


async def requeue_job(request: web.Request) -> web.Response:
    return await _job_command(request, JobRequeueRequested)


async def cancel_job(request: web.Request) -> web.Response:
    return await _job_command(request, JobCancelRequested)


async def _job_command(
    request: web.Request, command: type[JobRequeueRequested] | type[JobCancelRequested]
) -> web.Response:
    """An admin command about one known job: checked, appended, answered."""
    if (denied := check_admin(request)) is not None:
        return denied
    if (bad := _no_query(request)) is not None:
        return _bad_query(bad)
    job_id, missing = await _known_job(request)
    if missing is not None:
        return missing
    return await _command(request, command(job_id=job_id, requested_by=_requester(request)))


async def requeue_failed(request: web.Request) -> web.Response:
    if (denied := check_admin(request)) is not None:
        return denied
    if (bad := _no_query(request, frozenset({"queue"}))) is not None:
        return _bad_query(bad)
    queue = request.query.get("queue")
    if queue is not None:
        try:
            check_name("queue", queue)
        except ValueError as exc:
            return _bad_query(QueryError("queue", str(exc)))
    command = JobRequeueRequested(all_failed=True, queue=queue, requested_by=_requester(request))
    return await _command(request, command)


async def health_body(
    app: web.Application, consumer_ok: bool, consumer: dict[str, Any], safety: RedisSafety
) -> dict[str, Any]:
    """The old ``/health`` shape, plus per-queue and per-service detail, and what is
    wrong with Redis; answered within a second whatever Redis does."""
    redis, keys = app[REDIS], app[KEYS]
    await safety.check()
    info: SystemInfo | None = None
    if safety.reachable:
        try:
            async with asyncio.timeout(HEALTH_READ_DEADLINE):
                info = await system_info(redis, keys, app[SETTINGS].worker_ttl)
        except (*UNAVAILABLE, TimeoutError):
            info = None
    if info is None:
        health = Health(
            status="unhealthy",
            redis_connected=False,
            queue_available=False,
            queue_length=0,
            workers_count=0,
            queues=[],
            services={"status": {**consumer, "ok": False}},
        )
    else:
        health = _healthy(info, consumer_ok, consumer)
    if safety.hold() is not None:
        health = msgspec.structs.replace(health, status="unhealthy")
    health = msgspec.structs.replace(
        health, problems=safety.problems(), redis_safety=safety.report()
    )
    body: dict[str, Any] = msgspec.to_builtins(health)
    return body


def _healthy(info: SystemInfo, consumer_ok: bool, consumer: dict[str, Any]) -> Health:
    live = [w for w in info.workers if w.state != "dead"]
    backlog = {name: msgspec.structs.asdict(b) for name, b in info.backlog.items()}
    services: dict[str, dict[str, Any]] = {
        "status": {
            **consumer,
            **backlog.get("status", {}),
            "ok": consumer_ok,
            "generation": info.generation,
        },
        "workers": {
            "live": len(live),
            "busy": sum(1 for w in live if w.state == "busy"),
            "dead": len(info.workers) - len(live),
            **backlog.get("workers", {}),
        },
    }
    if "dispatcher" in backlog:
        services["dispatcher"] = backlog["dispatcher"]
    return Health(
        status="ok" if consumer_ok else "degraded",
        redis_connected=True,
        queue_available=True,
        queue_length=info.queues[0].waiting,
        workers_count=len(live),
        queues=info.queues,
        services=services,
    )
