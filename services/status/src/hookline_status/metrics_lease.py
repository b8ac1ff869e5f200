"""Which status replica exports the system metrics read from Redis: the one that holds
a short lease in Redis (its own token, set with NX and PX, renewed), so that ``sum()``
over every replica's series is the truth and not N times it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable

from hookline.logs import get_logger
from hookline.lua import Script
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.retry import periodically
from redis.exceptions import RedisError

HOLD = Script.load("hookline_status", "lease_hold")
RELEASE = Script.load("hookline_status", "lease_release")

# Errors of a lease call that a later call may not meet: log them, keep trying.
LEASE_ERRORS = (*UNAVAILABLE, RedisError)


class MetricsLease:
    """One replica's view of the lease. It counts as held until ``ttl`` after the start
    of its last successful call (the key expires in Redis no earlier than that), so two
    replicas never both believe they hold it, whatever the network does."""

    def __init__(
        self,
        redis: Redis,
        key: str,
        token: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.key = key
        self.token = token
        self.ttl = ttl
        self.clock = clock
        self.held_until = -math.inf

    def held(self) -> bool:
        return self.clock() < self.held_until

    async def try_hold(self) -> bool:
        """Take or renew the lease; whether this replica holds it now."""
        was = self.held()
        began = self.clock()
        got = await HOLD(
            self.redis, lease=self.key, token=self.token, ttl_ms=max(1, int(self.ttl * 1000))
        )
        self.held_until = began + self.ttl if int(got) == 1 else -math.inf
        if self.held() != was:
            log = get_logger()
            if was:
                log.warning("metrics_leader_lost", lease=self.key, token=self.token)
            else:
                log.info("metrics_leader_acquired", lease=self.key, token=self.token)
        return self.held()

    async def release(self) -> None:
        """Give the lease up if it is ours."""
        self.held_until = -math.inf
        await RELEASE(self.redis, lease=self.key, token=self.token)

    async def keep(self, stop: asyncio.Event, every: float) -> None:
        """Take or renew the lease every ``every`` seconds until stopped, then give it
        up. A failed call leaves the lease to lapse on its own at ``held_until``."""

        async def hold() -> None:
            await self.try_hold()

        await periodically(hold, every=every, stop=stop, what="metrics_lease", log=get_logger())
        with contextlib.suppress(*LEASE_ERRORS):
            await self.release()
