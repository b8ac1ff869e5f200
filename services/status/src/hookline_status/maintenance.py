"""Keeping the projection and the streams in shape: expiry, retention, rebuild.

``rebuild`` replays every stream from the start into a fresh generation of keys and
then points readers and the live projection at it in one step; ``trim_streams`` drops
entries older than the retention, but never one a consumer group has not read yet.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hookline import clock
from hookline.keys import EVENT_FIELD, Keys
from hookline.logs import get_logger
from hookline.redis_client import Redis
from hookline.streams import Poison, decode_data
from hookline.text import text
from redis.exceptions import ResponseError

from hookline_status.projection import ViewUpdate, project
from hookline_status.queues import known_queues
from hookline_status.store import apply_updates
from hookline_status.view_keys import ViewKeys, generation, view_keys

StreamId = tuple[int, int]

# Longest the live projection waits for a rebuild's final catch-up (if the rebuild dies
# meanwhile, the hold lapses on its own).
SWITCH_HOLD = 120.0


def parse_id(entry_id: str | bytes) -> StreamId:
    ms, _, seq = text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def format_id(entry: StreamId) -> str:
    return f"{entry[0]}-{entry[1]}"


def next_id(entry: StreamId) -> StreamId:
    return entry[0], entry[1] + 1


def trim_floor(cutoff: StreamId, groups: list[tuple[StreamId, StreamId | None]]) -> StreamId:
    """The lowest id to keep: the retention cutoff, lowered to the first entry that any
    group has not read (after its last-delivered id) or not acknowledged (its oldest
    pending id). ``groups`` holds ``(last_delivered, oldest_pending)`` per group."""
    floor = cutoff
    for last_delivered, oldest_pending in groups:
        floor = min(floor, next_id(last_delivered))
        if oldest_pending is not None:
            floor = min(floor, oldest_pending)
    return floor


async def _groups(redis: Redis, stream: str) -> list[tuple[StreamId, StreamId | None]] | None:
    try:
        infos = await redis.xinfo_groups(stream)
    except ResponseError:
        return None  # no such stream
    out: list[tuple[StreamId, StreamId | None]] = []
    for info in infos:
        last = parse_id(text(info.get("last-delivered-id") or "0-0"))
        oldest: StreamId | None = None
        if int(info.get("pending") or 0):
            summary = await redis.xpending(stream, text(info["name"]))
            if summary and summary.get("min"):
                oldest = parse_id(text(summary["min"]))
        out.append((last, oldest))
    return out


async def trim_streams(
    redis: Redis, keys: Keys, retention: float, now_ms: int | None = None
) -> dict[str, int]:
    """Trim every event stream (and the command stream) to ``retention`` seconds, never
    past what a consumer group still has to read. Streams no group reads are left alone.
    Returns the entries removed per stream."""
    now = now_ms if now_ms is not None else clock.now_ms()
    cutoff = (max(0, now - int(retention * 1000)), 0)
    removed: dict[str, int] = {}
    for stream in [*keys.all_streams(await known_queues(redis, keys)), keys.commands]:
        groups = await _groups(redis, stream)
        if not groups:
            continue
        floor = trim_floor(cutoff, groups)
        count = int(await redis.xtrim(stream, minid=format_id(floor), approximate=False))
        if count:
            removed[stream] = count
    return removed


@dataclass
class Replay:
    """Where a replay got to in each stream, and how much it applied."""

    positions: dict[str, StreamId] = field(default_factory=dict)
    entries: int = 0
    applied: int = 0
    undecodable: int = 0


async def _read_stream(
    redis: Redis, stream: str, after: StreamId, until_ms: int, chunk: int
) -> AsyncIterator[tuple[StreamId, bytes | None]]:
    low = f"({format_id(after)}" if after != (0, 0) else "-"
    while True:
        batch: Any = await redis.xrange(stream, min=low, max=str(until_ms), count=chunk)
        for entry_id, fields in batch:
            # No fields: the entry is gone; fields without hookline's: poison.
            yield parse_id(entry_id), fields.get(EVENT_FIELD, b"") if fields else None
        if len(batch) < chunk:
            return
        low = f"({text(batch[-1][0])}"


async def replay(
    redis: Redis, keys: Keys, target: int, streams: list[str], state: Replay, chunk: int = 1000
) -> Replay:
    """Apply every entry after ``state.positions`` to generation ``target``, merged
    across streams in id order (the order they were appended), the same order the live
    projection uses. Only entries older than Redis's clock at the start are read: every
    one of those is already appended, so no stream is read further than another."""
    seconds, micros = await redis.time()
    until_ms = int(seconds) * 1000 + int(micros) // 1000 - 1
    readers = [
        _read_stream(redis, s, state.positions.get(s, (0, 0)), until_ms, chunk) for s in streams
    ]
    heap: list[tuple[StreamId, int, bytes | None]] = []

    async def advance(i: int) -> None:
        try:
            entry_id, data = await readers[i].__anext__()
        except StopAsyncIteration:
            return
        heapq.heappush(heap, (entry_id, i, data))

    for i in range(len(readers)):
        await advance(i)
    pending: list[ViewUpdate] = []
    same_ms: list[tuple[StreamId, ViewUpdate]] = []
    while heap:
        entry_id, i, data = heapq.heappop(heap)
        state.positions[streams[i]] = entry_id
        state.entries += 1
        await advance(i)
        if same_ms and same_ms[0][0][0] != entry_id[0]:
            pending += in_causal_order(same_ms)
            same_ms = []
        if data is None:
            continue
        event = decode_data(data)
        if isinstance(event, Poison):
            state.undecodable += 1
            continue
        update = project(event)
        if update is not None:
            same_ms.append((entry_id, update))
        if len(pending) >= chunk:
            state.applied += await _apply(redis, keys, target, pending)
            pending = []
    pending += in_causal_order(same_ms)
    if pending:
        state.applied += await _apply(redis, keys, target, pending)
    return state


def in_causal_order(updates: list[tuple[StreamId, ViewUpdate]]) -> list[ViewUpdate]:
    """Updates in the order to apply them: by the millisecond of their entry id, then by
    rank. Sequence numbers count per stream, so two streams' entries of the same
    millisecond have no order of their own; a job's events within one millisecond are
    put in the order they can only have happened in (received, queued, started, ended,
    then the next attempt)."""
    ordered = sorted(updates, key=lambda item: (item[0][0], item[1].rank, item[0][1]))
    return [update for _, update in ordered]


async def _apply(redis: Redis, keys: Keys, target: int, updates: list[ViewUpdate]) -> int:
    return sum(await apply_updates(redis, keys, target, updates, guard=False))


class RebuildBusy(RuntimeError):
    """Another rebuild holds the lock: one rebuild at a time."""


@dataclass(frozen=True)
class RebuildReport:
    old_generation: int
    new_generation: int
    entries: int
    applied: int
    undecodable: int
    seconds: float


async def delete_generation(redis: Redis, views: ViewKeys) -> int:
    deleted = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=views.pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(await redis.unlink(*batch))
            batch = []
    if batch:
        deleted += int(await redis.unlink(*batch))
    return deleted


async def rebuild(redis: Redis, keys: Keys, lock_ttl: float = 3600.0) -> RebuildReport:
    """Replay every stream into a fresh generation, switch readers and the live
    projection to it atomically, catch up what arrived meanwhile, drop the old one."""
    log = get_logger()
    token = str(time.time())
    if not await redis.set(keys.views_rebuild_lock, token, nx=True, ex=int(lock_ttl)):
        raise RebuildBusy("another rebuild is running (lock " + keys.views_rebuild_lock + ")")
    started = time.monotonic()
    try:
        old = await generation(redis, keys)
        new = int(await redis.incr(keys.views_next_generation))
        if new <= old:
            new = old + 1
            await redis.set(keys.views_next_generation, new)
        await delete_generation(redis, view_keys(keys, new))  # leftovers of an interrupted rebuild
        streams = keys.all_streams(await known_queues(redis, keys))
        state = await replay(redis, keys, new, streams, Replay())
        log.info("rebuild_replayed", generation=new, entries=state.entries)
        # Switch, and hold the live projection while we replay what it applied to the
        # old generation since our replay read the streams: it then carries on in the new
        # generation with entries newer than all we applied, so the order stays the same.
        async with redis.pipeline(transaction=True) as tx:
            tx.set(keys.views_generation, new)
            tx.set(keys.views_switching, new, ex=int(SWITCH_HOLD))
            await tx.execute()
        try:
            streams = keys.all_streams(await known_queues(redis, keys))
            await replay(redis, keys, new, streams, state)
        finally:
            await redis.delete(keys.views_switching)
        await delete_generation(redis, view_keys(keys, old))
        return RebuildReport(
            old, new, state.entries, state.applied, state.undecodable, time.monotonic() - started
        )
    finally:
        if await redis.get(keys.views_rebuild_lock) == token.encode():
            await redis.delete(keys.views_rebuild_lock)
