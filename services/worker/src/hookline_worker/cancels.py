"""The cancel watcher: stops canceled jobs within a second. A pub/sub message on the
control channel is acted on at once, and the cancel markers of running jobs are polled
too (pub/sub drops messages across a reconnect)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from typing import Any

from hookline import clock
from hookline.keys import Keys
from hookline.logs import get_logger
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.retry import retry_forever
from hookline.text import text

from hookline_worker import decisions
from hookline_worker.attempt import Attempt

POLL_EVERY = 0.5


class CancelWatcher:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        attempts: Callable[[], Collection[Attempt]],
        *,
        log: Any = None,
        monotonic: Callable[[], float] = clock.monotonic,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.attempts = attempts
        self.monotonic = monotonic
        self.log = log if log is not None else get_logger()
        self.last_poll = float("-inf")

    async def run(self, stop: asyncio.Event) -> None:
        await retry_forever(lambda: self.listen(stop), stop=stop, what="cancel_watcher")

    async def listen(self, stop: asyncio.Event) -> None:
        """One subscription, until ``stop`` (or Redis goes away: the caller resubscribes)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.keys.control)
            while not stop.is_set():
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=POLL_EVERY
                )
                if message is not None and message.get("type") == "message":
                    job_id = text(message.get("data"))
                    await self.check([a for a in self.attempts() if a.job.job_id == job_id])
                if self.monotonic() - self.last_poll >= POLL_EVERY:
                    self.last_poll = self.monotonic()
                    await self.check(list(self.attempts()))
        finally:
            with contextlib.suppress(*UNAVAILABLE, RuntimeError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def check(self, attempts: list[Attempt]) -> None:
        """Stop those of ``attempts`` whose cancel marker covers them."""
        attempts = [a for a in attempts if a.stoppable]
        if not attempts:
            return
        markers = await self.redis.mget([self.keys.cancel(a.job.job_id) for a in attempts])
        for attempt, marker in zip(attempts, markers, strict=True):
            if decisions.cancel_applies(attempt.job.attempt, marker):
                self.log.info(
                    "job_cancel_received", job_id=attempt.job.job_id, attempt=attempt.attempt
                )
                attempt.stop("canceled")
