"""Wait on a condition with a deadline: the only way tests synchronise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

T = TypeVar("T")
# What a condition returns while it is not met yet; the waiters never return it, so a
# condition typed ``X | None`` (or ``... and x``) waits for, and gives back, an ``X``.
NotYet = None | Literal[False]


def wait_until(
    condition: Callable[[], T | NotYet],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
        last = condition()
    assert last is not None
    assert last is not False
    return last


async def async_wait_until(
    condition: Callable[[], Awaitable[T | NotYet]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> T:
    deadline = time.monotonic() + timeout
    last = await condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(interval)
        last = await condition()
    assert last is not None
    assert last is not False
    return last
