"""What every service's ``main`` does: settings, logging, a bound port, a clean stop.

A service is an aiohttp app (``/health``, ``/metrics`` and whatever else it serves) plus
an optional long-running ``run(stop)`` coroutine (a consumer loop). SIGTERM or SIGINT
sets ``stop`` and lets ``run`` finish what it holds; a second signal cancels it. An
optional ``preflight`` runs first and may refuse the start (one line, exit status 2).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web

from hookline.config import BaseSettings
from hookline.errors import ConfigError
from hookline.logs import configure_logging, get_logger
from hookline.private import keep_secrets
from hookline.redact import redact_url
from hookline.redis_target import HOME, resolve
from hookline.web import bind_socket

S = TypeVar("S", bound=BaseSettings)

EXIT_CONFIG = 2

Run = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
# Checks that need the event loop (Redis) before serving; raises ConfigError to refuse.
Preflight = Callable[[], Coroutine[Any, Any, None]]


def plain_runner(app: web.Application) -> web.AppRunner:
    return web.AppRunner(app, access_log=None, handle_signals=False)


@dataclass
class Service(Generic[S]):
    app: web.Application
    run: Run | None = None
    preflight: Preflight | None = None
    # Builds the runner (a service with its own HTTP server below the app passes one).
    runner: Callable[[web.Application], web.AppRunner] = plain_runner


def fail(message: str) -> int:
    """Print one clear line on stderr; the exit status for bad configuration."""
    print(f"hookline: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def run_service(
    name: str,
    load: Callable[[Mapping[str, str]], S],
    build: Callable[[S], Service[S]],
    listen: Callable[[S], tuple[str, int, str]],
    env: Mapping[str, str] | None = None,
    *,
    any_port_if_taken: bool = False,
) -> int:
    """Load settings, bind the port, then serve until stopped; 2 on bad config.

    ``any_port_if_taken``: the port is only a default (nobody asked for it), so when it
    cannot be bound a free one is taken instead, and logged. Without ``REDIS_URL``, a
    service started by hand beside a running ``hookline up`` joins that system (its
    Redis and key prefix), as the operator commands do."""
    environ = os.environ if env is None else env
    try:
        target = resolve(environ, HOME)
        if target.prefix is not None:
            environ = target.apply(environ)
        settings = load(environ)
        if env is None or env is os.environ:
            keep_secrets()  # read once: now off the environment and out of /proc's reach
        host, port, setting = listen(settings)
        sock, refused = _bind(host, port, setting, any_port_if_taken) if port else (None, None)
    except ConfigError as exc:
        return fail(str(exc))
    configure_logging(name, settings.log_level, settings.log_format)
    if target.prefix is not None:
        get_logger().info("joined_hookline_up", redis=str(target))
    if sock is not None and refused is not None:
        get_logger().warning(
            "default_port_taken",
            wanted=port,
            port=sock.getsockname()[1],
            reason=refused.problem,
            hint=f"set {setting} or --port to choose one",
        )
    try:
        service = build(settings)
    except ConfigError as exc:  # a resource the settings name cannot be used
        if sock is not None:
            sock.close()
        return fail(str(exc))
    return _run_loop(serve(service, sock, redis=redact_url(settings.redis_url)))


def _bind(
    host: str, port: int, setting: str, any_port_if_taken: bool
) -> tuple[socket.socket, ConfigError | None]:
    """The bound socket, and why the wanted port was refused when a free one was taken."""
    try:
        return bind_socket(host, port, setting), None
    except ConfigError as exc:
        if not any_port_if_taken:
            raise
        return bind_socket(host, 0, setting), exc


def _run_loop(main: Awaitable[int]) -> int:
    try:
        import uvloop

        return uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)  # type: ignore[arg-type]


async def serve(service: Service[S], sock: socket.socket | None, **started: Any) -> int:
    """Serve until a signal; ``started`` goes into the ``service_started`` log line."""
    loop = asyncio.get_running_loop()
    log = get_logger()
    if service.preflight is not None:
        try:
            await service.preflight()
        except ConfigError as exc:
            if sock is not None:
                sock.close()
            return fail(str(exc))
    stop = asyncio.Event()
    signals = 0
    task: asyncio.Task[None] | None = None

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        log.info("signal_received", signal=signal.Signals(signum).name, count=signals)
        stop.set()
        if signals > 1 and task is not None:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    runner = service.runner(service.app)
    await runner.setup()
    try:
        if sock is not None:
            await web.SockSite(runner, sock, shutdown_timeout=5.0).start()
        port = sock.getsockname()[1] if sock is not None else None
        log.info("service_started", pid=os.getpid(), port=port, **started)
        if service.run is not None:
            task = asyncio.create_task(service.run(stop), name="service-run")
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            try:
                await task
            except asyncio.CancelledError:
                log.warning("stopped_at_once")
        else:
            await stop.wait()
    finally:
        await runner.cleanup()
        log.info("service_stopped")
    return 0
