"""The one place hookline reads the wall clock; code that must be testable across time
takes ``now`` as a parameter and defaults to these."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (what events carry)."""
    return datetime.now(UTC)


def now() -> float:
    """Now, in seconds since the epoch."""
    return time.time()


def monotonic() -> float:
    """Seconds on a clock that never goes back (for intervals, not dates)."""
    return time.monotonic()


def now_ms() -> int:
    """Now, in whole milliseconds since the epoch (what views and stream ids use)."""
    return int(time.time() * 1000)
