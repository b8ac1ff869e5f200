"""The one reconnect loop: run a step until stopped, backing off with jitter while Redis
is away, and tell a health record how it went."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hookline import clock
from hookline.backoff import reconnect_delay
from hookline.logs import get_logger
from hookline.redis_client import UNAVAILABLE


@dataclass
class Health:
    """What ``/health`` reports about a loop that talks to Redis."""

    redis_ok: bool = False
    last_error: str | None = None
    handled: int = 0
    started_at: float = field(default_factory=clock.now)
    on_change: Callable[[bool], None] | None = None
    # Asked before each step: a reason means "do not step now" (an unsafe Redis).
    hold: Callable[[], str | None] | None = None
    held: str | None = None

    def up(self) -> None:
        if not self.redis_ok:
            self.redis_ok, self.last_error = True, None
            if self.on_change is not None:
                self.on_change(True)

    def down(self, exc: BaseException) -> None:
        self.redis_ok = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.on_change is not None:
            self.on_change(False)


# How often a held loop asks again whether it may step.
HOLD_POLL = 0.25


def _held(health: Health) -> bool:
    """Whether ``health.hold`` says to wait; logged once when a hold starts or ends."""
    reason = health.hold() if health.hold is not None else None
    if reason != health.held:
        log = get_logger()
        if reason is None:
            log.info("loop_resumed", was_held=health.held)
        else:
            log.warning("loop_held", reason=reason)
        health.held = reason
    return reason is not None


async def sleep_unless(stop: asyncio.Event, delay: float) -> None:
    """Sleep ``delay`` seconds, or less if ``stop`` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        return


async def retry_forever(
    step: Callable[[], Awaitable[float | None]],
    *,
    stop: asyncio.Event,
    what: str,
    health: Health | None = None,
    errors: tuple[type[BaseException], ...] = UNAVAILABLE,
) -> None:
    """Call ``step`` until ``stop`` is set. ``step`` returns how long to wait before the
    next call (None: call again at once). While Redis is unreachable (``step`` raises one
    of ``errors``), wait with capped, jittered exponential backoff, log it once per
    failure, and mark ``health`` down."""
    log = get_logger(loop=what)
    failures = 0
    while not stop.is_set():
        if health is not None and _held(health):
            await sleep_unless(stop, HOLD_POLL)
            continue
        try:
            pause = await step()
        except errors as exc:
            failures += 1
            if health is not None:
                health.down(exc)
            delay = reconnect_delay(failures)
            log.warning("redis_unavailable", error=str(exc), retry_in=round(delay, 3))
            await sleep_unless(stop, delay)
            continue
        failures = 0
        if health is not None:
            health.up()
        if pause:
            await sleep_unless(stop, pause)


async def periodically(
    step: Callable[[], Awaitable[None]], *, every: float, stop: asyncio.Event, what: str, log: Any
) -> None:
    """``step()`` every ``every`` seconds until ``stop``, through :func:`retry_forever`
    (Redis away: back off); any other failure is logged and the next call comes as usual,
    so a background task never dies silently."""

    async def once() -> float:
        try:
            await step()
        except UNAVAILABLE:
            raise
        except Exception:
            log.exception("background_step_failed", step=what)
        return every

    await retry_forever(once, stop=stop, what=what)
