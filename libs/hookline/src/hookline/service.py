"""What every service's ``main`` does: settings, logging, a bound port, a clean stop.

A service is an aiohttp app (``/health``, ``/metrics`` and whatever else it serves) plus
an optional long-running ``run(stop)`` coroutine (a consumer loop). SIGTERM or SIGINT
sets ``stop`` and lets ``run`` finish what it holds; a second signal cancels it.
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
from hookline.web import bind_socket

S = TypeVar("S", bound=BaseSettings)

EXIT_CONFIG = 2

Run = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class Service(Generic[S]):
    app: web.Application
    run: Run | None = None


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
) -> int:
    """Load settings, bind the port, then serve until stopped; 2 on bad config."""
    try:
        settings = load(os.environ if env is None else env)
        host, port, setting = listen(settings)
        sock = bind_socket(host, port, setting) if port else None
    except ConfigError as exc:
        return fail(str(exc))
    configure_logging(name, settings.log_level, settings.log_format)
    try:
        service = build(settings)
    except ConfigError as exc:  # a resource the settings name cannot be used
        if sock is not None:
            sock.close()
        return fail(str(exc))
    return _run_loop(serve(service, sock))


def _run_loop(main: Awaitable[int]) -> int:
    try:
        import uvloop

        return uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)  # type: ignore[arg-type]


async def serve(service: Service[S], sock: socket.socket | None) -> int:
    loop = asyncio.get_running_loop()
    log = get_logger()
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
    runner = web.AppRunner(service.app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        if sock is not None:
            await web.SockSite(runner, sock, shutdown_timeout=5.0).start()
        log.info("service_started", pid=os.getpid())
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
