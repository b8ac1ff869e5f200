"""Job views in Redis, written by ``lua/apply.lua`` so the rank check and every write
are one step, and removed when they expire by ``lua/sweep.lua``.

The scripts take their rules from here: the transition table, the histogram buckets,
the indexed dimensions and the API document's layout (derived from
:class:`~hookline_status.documents.JobView`), so none of them is written twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import msgspec
from hookline import clock
from hookline.keys import Keys
from hookline.lua import Op, Script
from hookline.metrics import DURATION_BUCKETS
from hookline.redis_client import Redis
from hookline.text import text
from msgspec import inspect as mi

from hookline_status.documents import JobView
from hookline_status.projection import TRANSITIONS, ViewUpdate
from hookline_status.query import DIMENSIONS
from hookline_status.view_keys import INDEX_TAIL, ViewKeys, view_keys

APPLY = Script.load("hookline_status", "apply")
SWEEP = Script.load("hookline_status", "sweep")

# Updates per Lua call: big enough to amortise the call, small enough not to stall Redis.
BATCH = 200

# How the apply script writes a stored field into the document (see lua/apply.lua).
Kind = Literal["text", "raw", "count", "object"]


def _kind(annotation: Any) -> Kind:
    info = mi.type_info(annotation)
    members = info.types if isinstance(info, mi.UnionType) else (info,)
    optional = any(isinstance(m, mi.NoneType) for m in members)
    members = tuple(m for m in members if not isinstance(m, mi.NoneType))
    if all(isinstance(m, mi.StrType | mi.LiteralType | mi.DateTimeType) for m in members):
        return "text"
    if isinstance(members[0], mi.DictType):
        return "object"
    if isinstance(members[0], mi.IntType) and not optional:
        return "count"
    return "raw"


def document_layout() -> list[tuple[str, Kind]]:
    """The job document's fields in order, each with how its stored value is written."""
    return [(f.encode_name, _kind(f.type)) for f in msgspec.structs.fields(JobView)]


@cache
def _config() -> bytes:
    return msgspec.json.encode(
        {
            "allowed": {old: sorted(new) for old, new in TRANSITIONS.items()},
            "buckets": list(DURATION_BUCKETS),
            "dimensions": list(DIMENSIONS),
            "index_tail": INDEX_TAIL,
            "document": document_layout(),
        }
    )


class LuaUpdate(msgspec.Struct, array_like=True):
    """One update as the apply script reads it (an array: positions documented there)."""

    job_id: str
    rank: int
    status: str
    created_ms: int
    created_at: str
    ttl_ms: int
    at_ms: int
    summary: str
    duration: str
    clear: tuple[str, ...]
    pairs: list[str]
    completes: int
    starts: int


_encode = msgspec.json.Encoder().encode


def _lua(update: ViewUpdate) -> bytes:
    measured = update.measured
    return _encode(
        LuaUpdate(
            job_id=update.job_id,
            rank=update.rank,
            status=update.status,
            created_ms=update.created_ms,
            created_at=update.created_at,
            ttl_ms=int(update.ttl * 1000) if update.ttl else 0,
            at_ms=update.at_ms,
            summary=update.summary,
            duration=repr(measured) if measured is not None else "",
            clear=update.clear,
            pairs=[part for pair in update.fields.items() for part in pair],
            completes=int(update.completes),
            starts=int(update.starts),
        )
    )


def _apply_arguments(
    keys: Keys, generation: int, updates: Sequence[ViewUpdate], guard: bool
) -> list[dict[str, Any]]:
    views = view_keys(keys, generation)
    return [
        {
            "generation": keys.views_generation,
            "expiring": views.expiring,
            "completed": views.metric_completed,
            "duration": views.metric_duration,
            "wait": views.metric_wait,
            "index_prefix": views.index_prefix,
            "job_prefix": views.job(""),
            "events_prefix": views.job_events(""),
            "only_generation": generation if guard else "",
            "config": _config(),
            "updates": [_lua(u) for u in updates[start : start + BATCH]],
        }
        for start in range(0, len(updates), BATCH)
    ]


def apply_ops(
    keys: Keys, generation: int, updates: Sequence[ViewUpdate], guard: bool = True
) -> list[Op]:
    """The script calls that apply ``updates`` to ``generation`` in order (one per
    ``BATCH``), to commit in a transaction. Guarded, they do nothing once ``generation``
    is no longer current; unguarded (a rebuild filling a new generation) they write
    regardless."""
    return [APPLY.command(**a) for a in _apply_arguments(keys, generation, updates, guard)]


async def apply_updates(
    redis: Redis, keys: Keys, generation: int, updates: Sequence[ViewUpdate], guard: bool = True
) -> list[int]:
    """Apply ``updates`` now, call by call; 1 per update applied, 0 per one ignored."""
    results: list[int] = []
    for arguments in _apply_arguments(keys, generation, updates, guard):
        results.extend(int(r) for r in await APPLY(redis, **arguments))
    return results


async def sweep_expired(
    redis: Redis, views: ViewKeys, now_ms: int | None = None, limit: int = 500
) -> int:
    """Delete up to ``limit`` expired views; the number deleted."""
    removed: int = await SWEEP(
        redis,
        expiring=views.expiring,
        now_ms=now_ms if now_ms is not None else clock.now_ms(),
        index_prefix=views.index_prefix,
        job_prefix=views.job(""),
        events_prefix=views.job_events(""),
        limit=limit,
    )
    return removed


@dataclass
class Stored:
    """Everything one generation holds (for tests, and for checking a rebuild against
    the live projection): views without their rendered document, which is apart."""

    views: dict[str, dict[str, str]] = field(default_factory=dict)
    rendered: dict[str, bytes] = field(default_factory=dict)
    histories: dict[str, set[tuple[int, str]]] = field(default_factory=dict)
    indexes: dict[str, set[str]] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    duration: dict[str, float] = field(default_factory=dict)
    wait: dict[str, float] = field(default_factory=dict)
    expiring: dict[str, int] = field(default_factory=dict)


async def _read_key(redis: Redis, views: ViewKeys, key: str, into: Stored) -> None:
    job_head, events_head, index_head = views.job(""), views.job_events(""), views.index_prefix
    if key.startswith(job_head):
        raw: Any = await redis.hgetall(key)
        view = {text(k): v for k, v in raw.items()}
        job_id = key[len(job_head) :]
        if "json" in view:
            into.rendered[job_id] = view.pop("json")
        into.views[job_id] = {k: text(v) for k, v in view.items()}
    elif key.startswith(events_head):
        members: Any = await redis.zrange(key, 0, -1, withscores=True)
        into.histories[key[len(events_head) :]] = {(int(s), text(m)) for m, s in members}
    elif key.startswith(index_head):
        into.indexes[key[len(index_head) :]] = {text(m) for m in await redis.zrange(key, 0, -1)}


async def snapshot(redis: Redis, views: ViewKeys) -> Stored:
    """Everything one generation holds."""
    stored = Stored()
    async for raw_key in redis.scan_iter(match=views.pattern, count=1000):
        await _read_key(redis, views, text(raw_key), stored)
    completed: Any = await redis.hgetall(views.metric_completed)
    stored.completed = {text(name): int(value) for name, value in completed.items()}
    for key, target in ((views.metric_duration, stored.duration), (views.metric_wait, stored.wait)):
        histogram: Any = await redis.hgetall(key)
        target.update({text(name): float(value) for name, value in histogram.items()})
    expiring: Any = await redis.zrange(views.expiring, 0, -1, withscores=True)
    stored.expiring = {text(m): int(s) for m, s in expiring}
    return stored
