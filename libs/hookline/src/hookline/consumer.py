"""The one consumer runtime: a consumer in a consumer group, composed from a handler and
a batch.

Read entries with XREADGROUP, decode each (or set it aside, see :mod:`hookline.streams`),
ask the handler what it makes of the event, let the batch turn the results into
writes, and commit the writes with the entries' XACK in one MULTI/EXEC, so a
redelivered entry is harmless. Each write may carry what to do with its reply once
committed (metrics, logs). Entries left pending by a dead consumer are claimed after
``claim_idle`` seconds. Nothing here is subclassed: a service passes its handler, and a
batch when it writes something other than a list of :class:`Write`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import structlog
from redis.exceptions import ResponseError

from hookline import clock
from hookline.events import AnyEvent
from hookline.keys import Keys
from hookline.logs import get_logger
from hookline.lua import Op
from hookline.metrics import ConsumerMetrics
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.retry import Health, retry_forever
from hookline.streams import (
    Acks,
    Entry,
    Poison,
    claim_stale_entries,
    commit,
    dead_letter_op,
    decode_entry,
    ensure_group,
    parse_entries,
    read_unless_stopped,
    vanished,
)

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class Write:
    """One command of the commit transaction, and what to do with its reply once the
    transaction is in Redis (never run when it failed)."""

    op: Op
    then: Callable[[Any], None] | None = None


class Batch(Protocol[R_contra]):
    """Turns what the handler made of each entry of a batch into the commit's writes."""

    def add(self, entry: Entry, result: R_contra) -> None: ...

    async def take(self) -> list[Write]:
        """The writes of everything added since the last take (and forget them)."""
        ...

    def clear(self) -> None:
        """Forget everything added (the batch failed; its entries stay pending)."""
        ...


class Writes:
    """The plain batch: each entry's writes, in order."""

    def __init__(self) -> None:
        self._writes: list[Write] = []

    def add(self, entry: Entry, result: Sequence[Write]) -> None:
        self._writes.extend(result)

    async def take(self) -> list[Write]:
        writes, self._writes = self._writes, []
        return writes

    def clear(self) -> None:
        self._writes = []


Handler = Callable[[AnyEvent, Entry], Awaitable[R]]
Streams = Sequence[str] | Callable[[], Awaitable[list[str]]]


class Consumer(Generic[R]):
    """A consumer over one or more streams. ``streams`` is a fixed list or an async
    callable giving the current list (queues appear at run time)."""

    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keys,
        group: str,
        name: str,
        streams: Streams,
        handler: Handler[R],
        batch: Batch[R],
        metrics: ConsumerMetrics,
        count: int = 200,
        block: float = 1.0,
        claim_idle: float = 30.0,
        claim_every: float = 5.0,
        max_deliveries: int = 5,
        on_idle: Callable[[], Awaitable[Sequence[Op]]] | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.group = group
        self.name = name
        self._streams = streams
        self.handler = handler
        self.batch = batch
        self.metrics = metrics
        self.count = count
        self.block_ms = max(1, int(block * 1000))
        self.claim_idle_ms = int(claim_idle * 1000)
        self.claim_every = claim_every
        self.max_deliveries = max_deliveries
        self.on_idle = on_idle
        self.state = Health(on_change=self._health_changed)
        self._known: set[str] = set()
        self._acks = Acks(group)
        self._set_aside: list[Write] = []
        self._backlog = True  # after (re)connecting, our own pending entries come first
        self._last_claim = 0.0
        self._log = get_logger(group=group, consumer=name)

    def _health_changed(self, ok: bool) -> None:
        self.metrics.redis_up.set(1 if ok else 0)
        if not ok:
            self._backlog = True
            self.metrics.redis_errors.inc()

    async def streams(self) -> list[str]:
        streams = self._streams
        current = list(streams) if isinstance(streams, Sequence) else await streams()
        for stream in current:
            if stream not in self._known:
                await ensure_group(self.redis, stream, self.group)
                self._known.add(stream)
        return current

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is always finished first."""
        await retry_forever(
            lambda: self.step(stop), stop=stop, what=f"consumer:{self.group}", health=self.state
        )

    async def step(self, stop: asyncio.Event) -> None:
        """One read (after a claim of stale entries, when due) and its commit; a stream
        or group that vanished meanwhile is recreated on the next step."""
        try:
            await self._step(stop)
        except ResponseError as exc:
            if not vanished(exc):
                raise
            self.metrics.streams_recreated.labels(self.group).inc()
            self._log.error("stream_or_group_vanished", error=str(exc), action="recreating")
            self._known.clear()
            self._backlog = True

    async def _step(self, stop: asyncio.Event) -> None:
        streams = await self.streams()
        if clock.monotonic() - self._last_claim >= self.claim_every:
            self._last_claim = clock.monotonic()
            await self.claim_stale(streams)
        entries = await self._read(streams, stop)
        if self._backlog and not entries:
            self._backlog = False
        elif entries:
            await self.process(entries)
        elif self.on_idle is not None:
            await commit(self.redis, await self.on_idle())

    async def _read(self, streams: list[str], stop: asyncio.Event) -> list[Entry]:
        start = "0" if self._backlog else ">"
        request = self.redis.xreadgroup(
            self.group,
            self.name,
            dict.fromkeys(streams, start),
            count=self.count,
            block=None if self._backlog else self.block_ms,
        )
        if self._backlog:
            return parse_entries(await request)
        # A blocking read is abandoned on stop: anything it had delivered stays pending
        # for us and is read first on the next start.
        return await read_unless_stopped(request, stop)

    async def process(self, entries: list[Entry]) -> None:
        """Handle a batch and commit its writes with its acknowledgements."""
        try:
            for entry in entries:
                await self.handle_one(entry)
            await self.flush()
        except BaseException:
            # Nothing of a failed batch is kept: its entries stay pending and are read
            # again (our own backlog first), so they must not be acknowledged later.
            self._acks, self._set_aside = Acks(self.group), []
            self.batch.clear()
            raise
        self.state.handled += len(entries)

    async def handle_one(self, entry: Entry) -> None:
        """Add what ``entry`` makes to the batch, set it aside, or (the handler failed)
        leave it pending so that it is tried again."""
        if entry.data is None:  # trimmed while pending: nothing left to do but ack
            self.metrics.entries.labels(self.group, "missing").inc()
            self._acks.add(entry)
            return
        event = decode_entry(entry, self.max_deliveries)
        if isinstance(event, Poison):
            self._set_aside_entry(entry, event)
            return
        ids = {k: v for k in ("delivery_id", "job_id") if (v := getattr(event, k, None))}
        with structlog.contextvars.bound_contextvars(**ids):
            try:
                result = await self.handler(event, entry)
            except UNAVAILABLE:
                raise
            except Exception as exc:  # the per-message boundary
                self.metrics.entries.labels(self.group, "error").inc()
                self._log.exception("handler_failed", stream=entry.stream, id=entry.entry_id)
                if entry.deliveries >= self.max_deliveries:
                    reason = f"handler failed {entry.deliveries} times: {type(exc).__name__}: {exc}"
                    self._set_aside_entry(entry, Poison(reason, "handler_failed"))
                return
        self.metrics.entries.labels(self.group, "ok").inc()
        self.batch.add(entry, result)
        self._acks.add(entry)

    def _set_aside_entry(self, entry: Entry, poison: Poison) -> None:
        self.metrics.entries.labels(self.group, "dead_lettered").inc()
        self._log.error(
            "entry_dead_lettered", stream=entry.stream, id=entry.entry_id, reason=poison.reason
        )
        self._set_aside.append(Write(dead_letter_op(self.keys, entry, self.group, poison.reason)))
        self._acks.add(entry)

    async def flush(self) -> None:
        """Commit the writes and acknowledgements of everything handled so far (handlers
        that must read what earlier entries of the batch wrote call this first)."""
        writes = [*self._set_aside, *await self.batch.take()]
        acks, self._acks, self._set_aside = self._acks, Acks(self.group), []
        if not writes and not acks:
            return
        replies = await asyncio.shield(commit(self.redis, [w.op for w in writes], acks))
        for write, reply in zip(writes, replies, strict=True):
            if write.then is not None:
                write.then(reply)

    async def claim_stale(self, streams: list[str]) -> None:
        """Take over entries idle longer than ``claim_idle`` (their consumer died or keeps
        failing); past ``max_deliveries`` they are dead-lettered instead of run again."""
        for stream in streams:
            entries = await claim_stale_entries(
                self.redis, stream, self.group, self.name, self.claim_idle_ms, self.count
            )
            if entries:
                self._log.info("claimed_stale_entries", stream=stream, count=len(entries))
                await self.process(entries)
