"""Status's batch for the consumer runtime: the view updates of a batch of entries,
applied in stream-id order with as few Lua calls as possible, to the views generation
current at commit time (once no rebuild is switching generations)."""

from __future__ import annotations

import asyncio

from hookline.consumer import Write
from hookline.keys import Keys
from hookline.metrics import Counter
from hookline.redis_client import Redis
from hookline.streams import Entry

from hookline_status.maintenance import StreamId, in_causal_order, parse_id
from hookline_status.projection import ViewUpdate
from hookline_status.store import apply_ops

SWITCH_POLL = 0.02


class ViewBatch:
    def __init__(self, redis: Redis, keys: Keys, applied: Counter) -> None:
        self.redis = redis
        self.keys = keys
        self.applied = applied
        self._updates: list[tuple[StreamId, ViewUpdate]] = []

    def add(self, entry: Entry, result: ViewUpdate | None) -> None:
        if result is not None:
            self._updates.append((parse_id(entry.entry_id), result))

    def clear(self) -> None:
        self._updates = []

    async def take(self) -> list[Write]:
        updates, self._updates = self._updates, []
        if not updates:
            return []
        ops = apply_ops(self.keys, await self._generation(), in_causal_order(updates))
        count = len(updates)
        writes = [Write(op) for op in ops]
        if writes:
            writes[-1] = Write(writes[-1].op, then=lambda _: self.applied.inc(count))
        return writes

    async def _generation(self) -> int:
        """The current generation, once no rebuild is catching it up."""
        while True:
            current, switching = await self.redis.mget(
                self.keys.views_generation, self.keys.views_switching
            )
            if not switching:
                return int(current) if current else 0
            await asyncio.sleep(SWITCH_POLL)
