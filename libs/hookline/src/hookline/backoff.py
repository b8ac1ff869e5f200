"""Backoff delays: pure functions, so retries and reconnects are testable without time."""

from __future__ import annotations

import random
from collections.abc import Callable


def full_jitter(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))].

    ``attempt`` counts from 1. Full jitter spreads a thundering herd evenly (see AWS's
    "Exponential Backoff and Jitter").
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(cap, base * (2 ** min(attempt - 1, 62)))
    return float(ceiling * rand())


def reconnect_delay(failures: int, rand: Callable[[], float] = random.random) -> float:
    """How long a consumer waits before its next try after ``failures`` Redis errors in a
    row: full jitter from 50 ms up to 5 s, never zero so a dead Redis is not hammered."""
    return 0.05 + full_jitter(max(failures, 1), 0.1, 5.0, rand)


def restart_delay(failures: int, base: float = 1.0, cap: float = 60.0) -> float:
    """How long ``hookline up`` waits before restarting a service that died ``failures``
    times in a row without staying up: ``base``, doubling, capped at ``cap`` (no jitter:
    one machine, one supervisor, and the operator reads the figure)."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    return float(min(cap, base * (2 ** min(failures - 1, 62))))
