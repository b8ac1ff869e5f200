"""aiohttp pieces every service shares: JSON replies, ``/health``, ``/metrics``, serving."""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from hookline.errors import ConfigError
from hookline.metrics import CONTENT_TYPE_LATEST, CollectorRegistry, render
from hookline.redis_client import UNAVAILABLE

_json = msgspec.json.Encoder()

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
# ``/readyz``'s body; its ``ready`` says 200 or 503.
ReadyCheck = Callable[[], Awaitable[dict[str, Any]]]
# The body of ``/metrics`` (Prometheus text), for a service that exports more than its
# registry at some scrapes (the status service's metrics leader).
MetricsBody = Callable[[], Awaitable[bytes]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# An app whose API document says which methods each path has sets this, so a 405's
# ``Allow`` header lists the documented methods, not every route that matches the path.
ALLOWED_METHODS: web.AppKey[Callable[[str], list[str]]] = web.AppKey("allowed_methods")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_json.encode(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def json_error(status: int, error: str, detail: str) -> web.Response:
    """The error shape of every endpoint: ``{"error": ..., "detail": ...}``."""
    return json_response({"error": error, "detail": detail}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own answers (unknown path, wrong method, body too large) in the JSON error
    shape every client expects; Redis out of reach is a 503, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        response = json_error(405, "method_not_allowed", f"{request.method} is not allowed here")
        documented = request.app.get(ALLOWED_METHODS)
        methods = documented(request.path) if documented else sorted(exc.allowed_methods)
        response.headers["Allow"] = ",".join(methods)
        return response
    except web.HTTPNotFound:
        return json_error(404, "not_found", f"no such endpoint: {request.path}")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        name = {413: "payload_too_large"}.get(exc.status, "http_error")
        return json_error(exc.status, name, exc.reason)
    except UNAVAILABLE:
        return json_error(503, "redis_unavailable", "Redis cannot be reached; try again")


def use_json_errors(app: web.Application) -> None:
    if json_errors not in app.middlewares:
        app.middlewares.append(json_errors)


def add_ops_routes(
    app: web.Application,
    registry: CollectorRegistry,
    health: HealthCheck,
    metrics: MetricsBody | None = None,
    ready: ReadyCheck | None = None,
) -> None:
    """``GET /health`` (503 unless status is ``ok`` or ``degraded``), ``GET /livez`` (200
    while the process serves: it never touches Redis), ``GET /readyz`` (503 unless
    ``ready`` says the service can do its work now) and ``GET /metrics`` (``registry``
    rendered, unless ``metrics`` gives the body)."""
    app[REGISTRY] = registry
    use_json_errors(app)

    async def health_view(_: web.Request) -> web.Response:
        body = await health()
        ok = body.get("status") in ("ok", "degraded")
        return json_response(body, status=200 if ok else 503)

    async def live_view(_: web.Request) -> web.Response:
        return json_response({"status": "live"})

    async def ready_view(_: web.Request) -> web.Response:
        body = await ready() if ready is not None else {"ready": True, "problems": []}
        return json_response(body, status=200 if body.get("ready") else 503)

    async def metrics_view(_: web.Request) -> web.Response:
        response = web.Response(body=await metrics() if metrics else render(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/health", health_view)
    app.router.add_get("/livez", live_view)
    app.router.add_get("/readyz", ready_view)
    app.router.add_get("/metrics", metrics_view)


def bind_socket(host: str, port: int, setting: str) -> socket.socket:
    """Bind the listening socket before anything else starts, so a taken port is one
    clear error naming the setting instead of a traceback after start-up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(setting, f"port {port} on {host} is already in use") from None
        raise ConfigError(setting, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock
