"""Consumer-group primitives every stream reader uses (the consumer runtime and the
worker alike): read, decode or set aside, claim stale entries, commit with the ack.

The rule for poison is here once: an entry is checked against ``max_deliveries``
before anything decodes it, and any failure to decode it — whatever the exception —
sets it aside in the dead-letter stream with the reason, so no entry can crash a
consumer or come back forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from hookline.events import AnyEvent, DeadLetter, decode, encode_dead_letter
from hookline.keys import EVENT_FIELD, Keys
from hookline.lua import Op, ensure_loaded
from hookline.redis_client import Redis
from hookline.text import text

__all__ = [
    "Acks",
    "Entry",
    "Op",
    "Poison",
    "claim_entries",
    "claim_stale_entries",
    "commit",
    "dead_letter_op",
    "decode_data",
    "decode_entry",
    "ensure_group",
    "parse_entries",
    "pending_of",
    "read_unless_stopped",
    "vanished",
]


@dataclass(slots=True)
class Entry:
    """One stream entry as read; ``data`` is None where the entry was deleted (trimmed)."""

    stream: str
    entry_id: str
    data: bytes | None
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class Poison:
    """Why an entry is set aside instead of handled."""

    reason: str
    kind: str  # metric label: undecodable | redelivered


def decode_entry(entry: Entry, max_deliveries: int) -> AnyEvent | Poison:
    """The event in ``entry``, or why it must be dead-lettered. Never raises: a payload
    nested deep enough to exhaust the recursion limit is as undecodable as bad JSON."""
    if entry.deliveries > max_deliveries:
        return Poison(
            f"delivered {entry.deliveries} times without being acknowledged", "redelivered"
        )
    return decode_data(entry.data or b"")


def decode_data(data: bytes) -> AnyEvent | Poison:
    """The event ``data`` holds, or why it cannot be one; never raises."""
    try:
        return decode(data)
    except Exception as exc:  # any failure (RecursionError too) means the same: set aside
        return Poison(f"undecodable: {type(exc).__name__}: {exc}"[:500], "undecodable")


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
        entries.extend(_entries_of(text(stream_raw), items))
    return entries


def _entries_of(stream: str, items: Any) -> list[Entry]:
    """``data`` None only where the entry itself is gone (XCLAIM of a trimmed id returns
    no fields); an entry without hookline's field is poison (empty data, set aside)."""
    return [
        Entry(stream, text(entry_id), fields.get(EVENT_FIELD, b"") if fields else None)
        for entry_id, fields in items
    ]


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


def vanished(exc: ResponseError) -> bool:
    """Whether a reply means the stream or its group is gone (deleted, destroyed or
    evicted): recreate the group and carry on, never a crash."""
    message = str(exc)
    return message.startswith(("NOGROUP", "UNBLOCKED")) or "no longer exists" in message


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
    await ensure_loaded(redis, ops)
    async with redis.pipeline(transaction=True) as tx:
        for op in ops:
            tx.execute_command(*op)
        if acks is not None:
            for stream, ids in acks.items():
                if ids:
                    tx.xack(stream, acks.group, *ids)
        replies: list[Any] = await tx.execute()
    return replies[: len(ops)]


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
    counts = {text(p["message_id"]): int(p["times_delivered"]) for p in pending or ()}
    return await claim_entries(redis, stream, group, consumer, idle_ms, counts)


async def pending_of(redis: Redis, stream: str, group: str, consumer: str) -> dict[str, int]:
    """The ids pending for ``consumer`` (all of them), each with its delivery count."""
    pending = await redis.xpending_range(
        stream, group, min="-", max="+", count=1_000_000, consumername=consumer
    )
    return {text(p["message_id"]): int(p["times_delivered"]) for p in pending or ()}


async def claim_entries(
    redis: Redis, stream: str, group: str, consumer: str, idle_ms: int, counts: dict[str, int]
) -> list[Entry]:
    """XCLAIM the ids of ``counts`` (id -> deliveries so far) idle for ``idle_ms`` or
    longer; each claimed entry carries its delivery count, this claim included."""
    if not counts:
        return []
    claimed = await redis.xclaim(stream, group, consumer, idle_ms, list(counts))
    entries = _entries_of(stream, claimed)
    for entry in entries:
        entry.deliveries = counts.get(entry.entry_id, 1) + 1
    return entries
