"""Dedupe-and-append in Redis, coalesced: the webhooks that arrive while one round trip is
in flight go together in the next one (a pipeline of ``xadd_once`` scripts, each atomic
on its own). Idle, a webhook costs one round trip; under load, the round trips and
their per-call client cost are shared, which is what keeps ingress near a bare XADD.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hookline.keys import EVENT_FIELD
from hookline.lua import Script
from hookline.redis_client import Redis
from redis.exceptions import NoScriptError, ResponseError

from hookline_ingress.spool import SpoolEntry

# Redis answered, but cannot take the write now (out of memory under noeviction, a
# read-only replica after a failover, still loading): for ingress that is the same as
# "unreachable": the webhook goes to the spool.
REFUSED = (ResponseError,)

XADD_ONCE = Script.load("hookline_ingress", "xadd_once")

Pending = tuple[SpoolEntry, "asyncio.Future[bool]"]


class Appender:
    def __init__(self, redis: Redis, ttl_ms: int, deadline: float, max_batch: int = 128) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.deadline = deadline
        self.max_batch = max_batch
        self._pending: list[Pending] = []
        self._task: asyncio.Task[None] | None = None
        # Entries failed by a batch whose callers have not yet woken to see it: until
        # they have (and spooled them), nothing new may be appended ahead of them.
        self.failing = 0

    async def append(self, entry: SpoolEntry) -> bool:
        """True when appended, False when the delivery was already there. Raises a
        Redis connection error, ``ResponseError`` or ``TimeoutError`` (the deadline)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="ingress-appender")
        try:
            async with asyncio.timeout(self.deadline):
                return await future
        finally:
            if future.done() and not future.cancelled() and future.exception() is not None:
                self.failing -= 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._pending:
                # An entry whose caller gave up at its deadline (and spooled it) is
                # still sent: what follows it must not reach the stream before it (the
                # replay of the spooled copy is then a duplicate, dropped by the dedupe).
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    async with asyncio.timeout(self.deadline):
                        replies = await self._run([entry for entry, _ in batch])
                except Exception as exc:
                    # Everything queued behind a failed batch fails with it: sent later,
                    # it would land ahead of the failed ones, which go to the spool.
                    failed, self._pending = [*batch, *self._pending], []
                    for _, future in failed:
                        if not future.done():
                            future.set_exception(exc)
                            self.failing += 1
                    continue
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # its caller gave up at the deadline
                        continue
                    if isinstance(reply, BaseException):
                        future.set_exception(reply)
                        self.failing += 1
                    else:
                        future.set_result(bool(reply[0]))
        except asyncio.CancelledError:
            for _, future in self._pending:
                future.cancel()
            raise
        finally:
            self._task = None

    async def _run(self, entries: list[SpoolEntry]) -> list[Any]:
        replies = await self._pipeline(entries)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # a restarted or failed-over Redis: load the script, run those again
            await XADD_ONCE.load_into(self.redis)
            again = await self._pipeline([entries[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, entries: list[SpoolEntry]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for e in entries:
            op = XADD_ONCE.command(
                marker=e.marker,
                stream=e.stream,
                value=e.job_id,
                ttl_ms=self.ttl_ms,
                field=EVENT_FIELD,
                data=e.data,
            )
            pipe.execute_command(*op)
        return list(await pipe.execute(raise_on_error=False))
