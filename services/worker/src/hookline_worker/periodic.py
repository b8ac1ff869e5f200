"""A background step repeated every few seconds for as long as the worker runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hookline.redis_client import UNAVAILABLE
from hookline.retry import retry_forever


async def periodically(
    step: Callable[[], Awaitable[None]], *, every: float, stop: asyncio.Event, what: str, log: Any
) -> None:
    """``step()`` every ``every`` seconds until ``stop``, through ``retry_forever`` (Redis
    away: back off); any other failure is logged and the next call comes as usual."""

    async def once() -> float:
        try:
            await step()
        except UNAVAILABLE:
            raise
        except Exception:
            log.exception("background_step_failed", step=what)
        return every

    await retry_forever(once, stop=stop, what=what)
