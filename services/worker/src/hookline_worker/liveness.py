"""A worker's own short-lived liveness, and the rescue of a dead worker's jobs.

Each worker notes itself alive in ``keys.worker_liveness`` (scored by the time until
which it is, by Redis's clock) every ``liveness_ttl / 3`` seconds. Live workers look
for consumers whose liveness lapsed about once a second and claim their pending
entries at once, whatever the job's length or lease (as Sidekiq Pro's super_fetch
recovers a process's jobs once its heartbeat is gone). The lease stays for the worker
that is alive but stalled: its entries are claimed once idle past the lease timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hookline.keys import EVENT_FIELD, Keys
from hookline.lua import Script
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.retry import periodically
from hookline.streams import Entry
from hookline.text import text

ALIVE = Script.load("hookline_worker", "alive")
RESCUE = Script.load("hookline_worker", "rescue")

# A dead consumer is forgotten this long after its liveness lapsed (by then its
# entries were rescued, or claimed once their lease lapsed).
FORGET_MS = 3_600_000


def liveness_periods(ttl: float) -> tuple[float, float]:
    """How often to note ourselves alive (three times per TTL: one late refresh never
    makes a live worker look dead) and to look for dead ones (at least every second)."""
    return max(0.05, ttl / 3), max(0.05, min(1.0, ttl / 3))


class Liveness:
    def __init__(self, redis: Redis, keys: Keys, name: str, ttl: float, *, log: Any) -> None:
        self.redis = redis
        self.key = keys.worker_liveness
        self.name = name
        self.ttl_ms = int(ttl * 1000)
        self.every, self.rescue_every = liveness_periods(ttl)
        self.log = log

    async def beat(self) -> None:
        await ALIVE(
            self.redis,
            liveness=self.key,
            consumer=self.name,
            ttl_ms=self.ttl_ms,
            forget_ms=FORGET_MS,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await periodically(self.beat, every=self.every, stop=stop, what="liveness", log=self.log)

    async def leave(self) -> None:
        """Say we are gone: whatever is still pending for us is rescued at once."""
        with contextlib.suppress(*UNAVAILABLE):
            await ALIVE(
                self.redis, liveness=self.key, consumer=self.name, ttl_ms=0, forget_ms=FORGET_MS
            )

    async def gone(self, names: list[str]) -> set[str]:
        """Which of ``names`` are not alive now, by Redis's clock (this worker, just
        starting, counts as gone: whatever its name left behind is a past run's)."""
        if not names:
            return set()
        seconds, micros = await self.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        scores = await self.redis.zmscore(self.key, names)
        return {
            name
            for name, score in zip(names, scores, strict=True)
            if name == self.name or score is None or score < now_ms
        }

    async def rescue(self, stream: str, group: str, count: int) -> list[Entry]:
        """Claim up to ``count`` entries of ``stream`` pending for dead consumers, each
        with its delivery count (this claim included)."""
        counts_raw, claimed = await RESCUE(
            self.redis,
            liveness=self.key,
            stream=stream,
            group=group,
            consumer=self.name,
            count=count,
        )
        counts = {text(counts_raw[i]): int(counts_raw[i + 1]) for i in range(0, len(counts_raw), 2)}
        entries = []
        for entry_id, fields in claimed:
            values = dict(zip(fields[::2], fields[1::2], strict=True)) if fields else {}
            entry = Entry(stream, text(entry_id), values.get(EVENT_FIELD))
            entry.deliveries = counts.get(entry.entry_id, 1) + 1
            entries.append(entry)
        return entries
