"""The consumer-group loop every stream reader shares.

Read a batch with XREADGROUP, decode each entry, ask the handler what to write, then
write it and XACK in one MULTI/EXEC, so a redelivered entry is harmless. Entries that
cannot be decoded (or keep failing) go to the dead-letter stream; one bad entry never
stops the loop. Entries left pending by a dead consumer are claimed after
``claim_idle`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from redis.exceptions import ResponseError

from hookline.backoff import reconnect_delay
from hookline.events import AnyEvent, DeadLetter, decode, encode_dead_letter
from hookline.keys import EVENT_FIELD, Keys
from hookline.logs import get_logger
from hookline.metrics import ConsumerMetrics
from hookline.redis_client import UNAVAILABLE, Redis

# A Redis command to run inside the commit transaction, e.g. ("XADD", stream, "*", ...).
Op = tuple[Any, ...]


@dataclass(slots=True)
class Entry:
    """One stream entry as read; ``data`` is None where the entry was deleted (trimmed)."""

    stream: str
    entry_id: str
    data: bytes | None
    deliveries: int = 1


Handler = Callable[[AnyEvent, Entry], Awaitable[Sequence[Op]]]


def dead_letter_op(keys: Keys, entry: Entry, group: str, reason: str) -> Op:
    """The write that sets an entry aside in the dead-letter stream with its reason."""
    raw = entry.data or b""
    letter = DeadLetter(
        source_stream=entry.stream,
        source_id=entry.entry_id,
        group=group,
        reason=reason,
        data=raw.decode("utf-8", "backslashreplace"),
    )
    return ("XADD", keys.dead_letter, "*", EVENT_FIELD, encode_dead_letter(letter))


def parse_entries(reply: Any) -> list[Entry]:
    """Flatten an XREADGROUP/XCLAIM reply ``[[stream, [[id, fields], ...]], ...]``."""
    entries: list[Entry] = []
    for stream_raw, items in reply or ():
        stream = stream_raw.decode() if isinstance(stream_raw, bytes) else stream_raw
        entries.extend(_entries_of(stream, items))
    return entries


def _entries_of(stream: str, items: Any) -> list[Entry]:
    out = []
    for entry_id, fields in items:
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        data = fields.get(EVENT_FIELD) if fields else None
        out.append(Entry(stream, eid, data))
    return out


async def read_unless_stopped(request: Awaitable[Any], stop: asyncio.Event) -> list[Entry]:
    """Await a blocking XREADGROUP unless ``stop`` is set first; then the read is
    abandoned (an empty list), and what it had delivered stays pending for this consumer."""
    read = asyncio.ensure_future(request)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not read.done():
        read.cancel()
        await asyncio.gather(read, return_exceptions=True)
        return []
    return parse_entries(read.result())


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the group at the start of the stream (creating the stream too); an existing
    group is left as it is."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Acks(dict[str, list[str]]):
    """Entry ids to acknowledge, per stream, for one consumer group."""

    def __init__(self, group: str) -> None:
        super().__init__()
        self.group = group

    def add(self, entry: Entry) -> None:
        self.setdefault(entry.stream, []).append(entry.entry_id)


async def commit(redis: Redis, ops: Sequence[Op], acks: Acks | None = None) -> list[Any]:
    """Apply ``ops`` and acknowledge ``acks`` atomically (MULTI/EXEC); returns the replies
    of ``ops``."""
    if not ops and not acks:
        return []
    async with redis.pipeline(transaction=True) as tx:
        for op in ops:
            tx.execute_command(*op)
        for stream, ids in (acks or {}).items():
            if ids:
                tx.xack(stream, acks.group, *ids)  # type: ignore[union-attr]
        replies: list[Any] = await tx.execute()
    return replies[: len(ops)]


@dataclass
class ConsumerState:
    """What ``/health`` reports about a consumer."""

    redis_ok: bool = False
    last_error: str | None = None
    handled: int = 0
    started_at: float = field(default_factory=time.time)


class Consumer:
    """A consumer in a consumer group over one or more streams.

    ``streams`` is either a fixed list or an async callable returning the current list
    (status and dispatcher follow queues that appear at run time).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keys,
        group: str,
        name: str,
        streams: Sequence[str] | Callable[[], Awaitable[list[str]]],
        handler: Handler,
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
        self.metrics = metrics
        self.count = count
        self.block_ms = max(1, int(block * 1000))
        self.claim_idle_ms = int(claim_idle * 1000)
        self.claim_every = claim_every
        self.max_deliveries = max_deliveries
        self.on_idle = on_idle
        self.state = ConsumerState()
        self._known: set[str] = set()
        self._log = get_logger(group=group, consumer=name)

    async def streams(self) -> list[str]:
        current = (
            list(self._streams) if isinstance(self._streams, Sequence) else (await self._streams())
        )
        for stream in current:
            if stream not in self._known:
                await ensure_group(self.redis, stream, self.group)
                self._known.add(stream)
        return current

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is always finished first."""
        failures = 0
        backlog = True  # after (re)connecting, our own pending entries come first
        last_claim = 0.0
        while not stop.is_set():
            try:
                streams = await self.streams()
                if time.monotonic() - last_claim >= self.claim_every:
                    last_claim = time.monotonic()
                    await self.claim_stale(streams)
                entries = await self._read(streams, backlog, stop)
                if backlog and not entries:
                    backlog = False
                    continue
                if entries:
                    await self.process(entries)
                elif self.on_idle is not None:
                    await commit(self.redis, await self.on_idle())
                failures = 0
                self._mark_ok()
            except UNAVAILABLE as exc:
                failures += 1
                backlog = True
                self._mark_down(exc)
                delay = reconnect_delay(failures)
                self._log.warning("redis_unavailable", error=str(exc), retry_in=round(delay, 3))
                await sleep_unless(stop, delay)

    def _mark_ok(self) -> None:
        if not self.state.redis_ok:
            self.state.redis_ok = True
            self.state.last_error = None
            self.metrics.redis_up.set(1)

    def _mark_down(self, exc: BaseException) -> None:
        self.state.redis_ok = False
        self.state.last_error = f"{type(exc).__name__}: {exc}"
        self.metrics.redis_up.set(0)
        self.metrics.redis_errors.inc()

    async def _read(self, streams: list[str], backlog: bool, stop: asyncio.Event) -> list[Entry]:
        start = "0" if backlog else ">"
        request = self.redis.xreadgroup(
            self.group,
            self.name,
            dict.fromkeys(streams, start),
            count=self.count,
            block=None if backlog else self.block_ms,
        )
        if backlog:
            return parse_entries(await request)
        # A blocking read is abandoned on stop: anything it had delivered stays pending
        # for us and is read first on the next start.
        return await read_unless_stopped(request, stop)

    async def process(self, entries: list[Entry]) -> None:
        """Handle a batch and commit its writes with its acknowledgements."""
        ops: list[Op] = []
        acks = Acks(self.group)
        for entry in entries:
            result = await self.handle_one(entry)
            if result is None:
                continue
            ops.extend(result)
            acks.add(entry)
        await asyncio.shield(commit(self.redis, ops, acks))
        self.state.handled += len(entries)

    async def handle_one(self, entry: Entry) -> list[Op] | None:
        """The writes for one entry, or None to leave it pending (it will be retried)."""
        if entry.data is None:
            self.metrics.entries.labels(self.group, "missing").inc()
            return []
        if entry.deliveries > self.max_deliveries:
            self.metrics.entries.labels(self.group, "dead_lettered").inc()
            reason = f"delivered {entry.deliveries} times without being acknowledged"
            return [dead_letter_op(self.keys, entry, self.group, reason)]
        try:
            event = decode(entry.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.metrics.entries.labels(self.group, "dead_lettered").inc()
            self._log.error(
                "entry_undecodable", stream=entry.stream, id=entry.entry_id, error=str(exc)
            )
            return [dead_letter_op(self.keys, entry, self.group, f"undecodable: {exc}")]
        ids = {k: v for k in ("delivery_id", "job_id") if (v := getattr(event, k, None))}
        with structlog.contextvars.bound_contextvars(**ids):
            try:
                ops = list(await self.handler(event, entry))
            except UNAVAILABLE:
                raise
            except Exception as exc:  # the per-message boundary
                self.metrics.entries.labels(self.group, "error").inc()
                self._log.exception("handler_failed", stream=entry.stream, id=entry.entry_id)
                if entry.deliveries >= self.max_deliveries:
                    reason = f"handler failed {entry.deliveries} times: {type(exc).__name__}: {exc}"
                    return [dead_letter_op(self.keys, entry, self.group, reason)]
                return None
        self.metrics.entries.labels(self.group, "ok").inc()
        return ops

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


async def claim_stale_entries(
    redis: Redis, stream: str, group: str, consumer: str, idle_ms: int, count: int
) -> list[Entry]:
    """Claim up to ``count`` entries of ``stream`` idle for ``idle_ms`` or longer, each
    with its delivery count (this claim included). XCLAIM's own idle check makes two
    claimers racing for one entry harmless: only one gets it. Claimed ids whose entry
    was trimmed come back with ``data`` None on Redis 6.2 (acknowledge them); Redis 7
    drops them from the pending list itself. An id missing from the reply was claimed
    first by another consumer and is left to it."""
    pending = await redis.xpending_range(stream, group, min="-", max="+", count=count, idle=idle_ms)
    if not pending:
        return []
    counts = {_s(p["message_id"]): int(p["times_delivered"]) for p in pending}
    claimed = await redis.xclaim(stream, group, consumer, idle_ms, list(counts))
    entries = _entries_of(stream, claimed)
    for entry in entries:
        entry.deliveries = counts.get(entry.entry_id, 1) + 1
    return entries


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def sleep_unless(stop: asyncio.Event, delay: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        return
