"""Coalesce many small write+ack transactions into one MULTI/EXEC.

Jobs finish one at a time; committing each alone costs a round trip per job. The
committer takes everything submitted while the previous transaction was in flight
and commits it together, so latency stays one round trip when idle and throughput
grows with load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hookline.redis_client import Redis
from hookline.streams import Acks, Entry, Op, commit

CommitFn = Callable[[Redis, Sequence[Op], Acks], Awaitable[list[Any]]]


class Committer:
    def __init__(
        self, redis: Redis, group: str, max_batch: int = 500, commit_fn: CommitFn = commit
    ) -> None:
        self.redis = redis
        self.group = group
        self.max_batch = max_batch
        self.commit_fn = commit_fn
        self._items: list[tuple[Sequence[Op], Entry | None, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="committer")

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._items:
            await self._flush()

    async def submit(self, ops: Sequence[Op], ack: Entry | None = None) -> None:
        """Commit ``ops`` and acknowledge ``ack``; returns once they are in Redis.
        Raises what the transaction raised (e.g. Redis unavailable)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append((ops, ack, future))
        self._wake.set()
        if self._task is None:
            await self._flush()
        await future

    @property
    def idle(self) -> bool:
        return not self._items

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._items:
                await self._flush()

    async def _flush(self) -> None:
        batch, self._items = self._items[: self.max_batch], self._items[self.max_batch :]
        ops: list[Op] = []
        acks = Acks(self.group)
        for item_ops, entry, _ in batch:
            ops.extend(item_ops)
            if entry is not None:
                acks.add(entry)
        try:
            await self.commit_fn(self.redis, ops, acks)
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, _, future in batch:
            if not future.done():
                future.set_result(None)
