"""Reading the status projection: job views, job histories, workers and queues.

The status service writes the projection; its HTTP API and the ``hookline`` operator
CLI both read it through these functions, so they always show the same thing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from redis.exceptions import ResponseError

from hookline.keys import GROUP_DISPATCHER, GROUP_STATUS, GROUP_WORKERS, Keys, ViewKeys
from hookline.queues import QueueStats, known_queues, queue_stats
from hookline.redis_client import Redis

STATUSES: Final = ("queued", "started", "finished", "failed", "deferred", "canceled", "skipped")
LIST_STATUSES: Final = ("all", *STATUSES)
# View fields with a listing index of their own (``GET /jobs?queue=...``).
DIMENSIONS: Final = ("queue", "pipeline", "repository")
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100
# Most index entries one listing request looks at before it hands back a cursor.
SCAN_BUDGET: Final = 5000
MAX_FILTER_LENGTH: Final = 200

_decoder = msgspec.json.Decoder()


def index_suffix(status: str, dimension: str = "", value: str = "") -> str:
    """An index name relative to :attr:`ViewKeys.index_prefix` (same shape as
    :meth:`ViewKeys.index`, and as the store's Lua script builds it)."""
    return f"{status}:{dimension}={value}" if dimension else status


def index_names(view: Mapping[str, str]) -> list[str]:
    """Every listing index a view belongs to, relative to the index prefix."""
    names = []
    for status in (view["status"], "all"):
        names.append(index_suffix(status))
        for dimension in DIMENSIONS:
            if value := view.get(dimension):
                names.append(index_suffix(status, dimension, value))
    return names


def render(view: Mapping[str, str]) -> dict[str, Any]:
    """A stored view as the API returns it (the old ``GET /jobs/<id>`` shape, plus more)."""

    def loads(name: str) -> Any:
        raw = view.get(name)
        return _decoder.decode(raw) if raw else None

    def text(name: str) -> str | None:
        return view.get(name) or None

    duration = view.get("duration")
    return {
        "job_id": view.get("job_id"),
        "status": view.get("status"),
        "created_at": text("created_at"),
        "started_at": text("started_at"),
        "ended_at": text("ended_at"),
        "result": loads("result"),
        "error": loads("error"),
        "meta": loads("meta") or {},
        "attempt": int(view.get("attempt") or 0),
        "queue": text("queue"),
        "pipeline": text("pipeline"),
        "repository": text("repository"),
        "worker": text("worker"),
        "not_before": text("not_before"),
        "reason": text("reason"),
        "delivery_id": text("delivery_id"),
        "duration": float(duration) if duration else None,
    }


class QueryError(ValueError):
    """A bad listing parameter; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


CURSOR_PATTERN: Final = r"^[0-9]{1,16}:.+$"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the last job's creation time (ms) and id, as ``<ms>:<id>``.

    Any text of that shape is a valid position (the next page starts after it)."""

    score: int
    job_id: str

    def encode(self) -> str:
        return f"{self.score}:{self.job_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        score, _, job_id = text.partition(":")
        if not job_id or not score.isascii() or not score.isdigit() or len(score) > 16:
            raise QueryError(
                "cursor", f"cursor must be a next_cursor this API handed out; got {text!r}"
            )
        return cls(int(score), job_id)


@dataclass(frozen=True, slots=True)
class JobQuery:
    status: str = "all"
    limit: int = DEFAULT_LIMIT
    queue: str | None = None
    pipeline: str | None = None
    repository: str | None = None
    cursor: Cursor | None = None

    @property
    def filters(self) -> list[tuple[str, str]]:
        return [(d, v) for d in DIMENSIONS if (v := getattr(self, d)) is not None]


QUERY_PARAMETERS: Final = frozenset({"status", "limit", "cursor", *DIMENSIONS})


def parse_job_query(query: Mapping[str, str]) -> JobQuery:
    """Validate ``GET /jobs`` parameters; :class:`QueryError` names the bad one."""
    unknown = sorted(set(query) - QUERY_PARAMETERS)
    if unknown:
        allowed = ", ".join(sorted(QUERY_PARAMETERS))
        raise QueryError(unknown[0], f"unknown parameter {unknown[0]!r}; use {allowed}")
    status = query.get("status", "all")
    if status not in LIST_STATUSES:
        raise QueryError(
            "status", f"status must be one of {', '.join(LIST_STATUSES)}; got {status!r}"
        )
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    bad_limit = f"limit must be a whole number from 1 to {MAX_LIMIT}; got {raw_limit!r}"
    if not raw_limit.isascii() or not raw_limit.isdigit():
        raise QueryError("limit", bad_limit)
    limit = int(raw_limit)
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError("limit", bad_limit)
    filters: dict[str, str] = {}
    for dimension in DIMENSIONS:
        value = query.get(dimension)
        if value is None:
            continue
        if not value or len(value) > MAX_FILTER_LENGTH:
            raise QueryError(
                dimension, f"{dimension} must be 1-{MAX_FILTER_LENGTH} characters; got {value!r}"
            )
        filters[dimension] = value
    cursor = Cursor.decode(query["cursor"]) if "cursor" in query else None
    return JobQuery(status=status, limit=limit, cursor=cursor, **filters)


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[dict[str, Any]]
    next_cursor: str | None


async def generation(redis: Redis, keys: Keys) -> int:
    raw = await redis.get(keys.views_generation)
    return int(raw) if raw else 0


async def current_views(redis: Redis, keys: Keys) -> ViewKeys:
    """The keys of the generation readers use now (a rebuild switches it atomically)."""
    return keys.views(await generation(redis, keys))


def _text(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _live(view: Mapping[str, str], now_ms: int) -> bool:
    """False once a view's time to live has passed (the sweep removes it soon after)."""
    expires = view.get("expires_ms")
    return not expires or int(expires) > now_ms


async def read_view(redis: Redis, keys: Keys, job_id: str) -> dict[str, str] | None:
    """The stored fields of one job's view, or None if unknown or expired."""
    views = await current_views(redis, keys)
    raw = await redis.hgetall(views.job(job_id))
    if not raw:
        return None
    view = _text(raw)
    return view if _live(view, _now_ms()) else None


async def get_job(redis: Redis, keys: Keys, job_id: str) -> dict[str, Any] | None:
    view = await read_view(redis, keys, job_id)
    return render(view) if view is not None else None


async def job_history(redis: Redis, keys: Keys, job_id: str) -> list[dict[str, Any]] | None:
    """Every event recorded for a job, oldest first (None if the job is unknown)."""
    views = await current_views(redis, keys)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(views.job(job_id), "expires_ms")
        pipe.exists(views.job(job_id))
        pipe.zrange(views.job_events(job_id), 0, -1)
        expires, exists, members = await pipe.execute()
    if not exists or (expires and int(expires) <= _now_ms()):
        return None
    return [_decoder.decode(m) for m in members]


async def list_jobs(redis: Redis, keys: Keys, query: JobQuery) -> Page:
    """Newest first, ``query.limit`` at most, from ``query.cursor`` on."""
    views = await current_views(redis, keys)
    filters = query.filters
    first = filters[0] if filters else ("", "")
    index = views.index(query.status, *first)
    rest = filters[1:]
    now_ms = _now_ms()
    high: str | int = "+inf" if query.cursor is None else query.cursor.score
    offset, scanned = 0, 0
    found: list[tuple[dict[str, str], int]] = []
    last_seen: Cursor | None = None
    chunk = query.limit + 1
    while len(found) <= query.limit and scanned < SCAN_BUDGET:
        batch = await redis.zrevrangebyscore(
            index, high, "-inf", start=offset, num=chunk, withscores=True
        )
        if not batch:
            last_seen = None
            break
        offset += len(batch)
        candidates = []
        for member, score in batch:
            job_id, created = member.decode(), int(score)
            if query.cursor and created == query.cursor.score and job_id >= query.cursor.job_id:
                continue
            candidates.append((job_id, created))
        scanned += len(batch)
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, _ in candidates:
                pipe.hgetall(views.job(job_id))
            raws = await pipe.execute() if candidates else []
        for (job_id, created), raw in zip(candidates, raws, strict=True):
            last_seen = Cursor(created, job_id)
            if not raw:
                continue
            view = _text(raw)
            if not _live(view, now_ms) or any(view.get(d) != v for d, v in rest):
                continue
            found.append((view, created))
            if len(found) > query.limit:
                break
        chunk = min(max(chunk * 2, 64), 1000)
    if len(found) > query.limit:
        found = found[: query.limit]
        view, created = found[-1]
        next_cursor: str | None = Cursor(created, view["job_id"]).encode()
    elif scanned >= SCAN_BUDGET and last_seen is not None:
        next_cursor = last_seen.encode()  # more may match further on: let the caller go on
    else:
        next_cursor = None
    return Page([render(v) for v, _ in found], next_cursor)


async def count_jobs(
    redis: Redis, keys: Keys, queues: list[str] | None = None
) -> dict[tuple[str, str], int]:
    """Jobs per ``(status, queue)``; queue ``""`` is every queue together."""
    views = await current_views(redis, keys)
    wanted = [(s, "") for s in STATUSES]
    wanted += [(s, q) for q in queues or [] for s in STATUSES]
    async with redis.pipeline(transaction=False) as pipe:
        for status, queue in wanted:
            pipe.zcard(views.index(status, "queue", queue) if queue else views.index(status))
        counts = await pipe.execute()
    return {key: int(n) for key, n in zip(wanted, counts, strict=True)}


def _field(raw: Mapping[bytes, bytes], name: str) -> str | None:
    value = raw.get(name.encode())
    return value.decode(errors="replace") if value is not None else None


def _int(text: str | None) -> int:
    try:
        return int(float(text)) if text else 0
    except ValueError:
        return 0


async def list_workers(redis: Redis, keys: Keys, ttl: float) -> list[dict[str, Any]]:
    """Every registered worker with its state: ``busy``, ``idle`` or ``dead`` (no heartbeat
    for ``ttl`` seconds). Fields a worker did not publish are None."""
    members = await redis.zrange(keys.workers, 0, -1, withscores=True)
    if not members:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name, _ in members:
            pipe.hgetall(keys.worker(name.decode()))
        raws = await pipe.execute()
    now = time.time()
    workers = []
    for (name_raw, score), raw in zip(members, raws, strict=True):
        beat = float(score) / 1000
        busy = _int(_field(raw, "busy"))
        alive = now - beat < ttl
        current = _field(raw, "current_jobs") or _field(raw, "current_job") or ""
        workers.append(
            {
                "name": name_raw.decode(),
                "host": _field(raw, "host"),
                "pid": _int(_field(raw, "pid")) or None,
                "queues": [q for q in (_field(raw, "queues") or "").split(",") if q],
                "state": ("busy" if busy else "idle") if alive else "dead",
                "busy": busy,
                "current_jobs": [j for j in current.split(",") if j],
                "jobs_done": _int(_field(raw, "jobs_done")),
                "last_heartbeat": _iso_ms(int(score)),
                "heartbeat_age_seconds": round(max(0.0, now - beat), 3),
            }
        )
    return workers


def _iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def queue_body(stats: QueueStats) -> dict[str, Any]:
    return {
        "queue": stats.queue,
        "length": stats.length,
        "waiting": stats.waiting,
        "pending": stats.pending,
        "oldest_age_seconds": round(stats.oldest_age, 3),
    }


async def all_queue_stats(redis: Redis, keys: Keys) -> list[QueueStats]:
    return [await queue_stats(redis, keys, q) for q in await known_queues(redis, keys)]


async def group_backlog(redis: Redis, stream: str, group: str) -> dict[str, int] | None:
    """``{pending, lag}`` of one consumer group on one stream (None: no such group)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    for info in groups:
        name = info.get("name")
        if (name.decode() if isinstance(name, bytes) else name) != group:
            continue
        last = info.get("last-delivered-id") or b"0-0"
        last = last.decode() if isinstance(last, bytes) else str(last)
        lag = info.get("lag")
        if lag is None:
            lag = len(await redis.xrange(stream, min=f"({last}", count=SCAN_BUDGET))
        return {"pending": int(info.get("pending") or 0), "lag": int(lag)}
    return None


async def system_info(redis: Redis, keys: Keys, worker_ttl: float) -> dict[str, Any]:
    """What ``hookline info`` and ``GET /health`` show: queues, workers, jobs by status,
    and each service's backlog on the streams it reads."""
    queues = await all_queue_stats(redis, keys)
    workers = await list_workers(redis, keys, worker_ttl)
    counts = await count_jobs(redis, keys)
    backlog: dict[str, dict[str, int]] = {}
    for service, group, stream in (
        ("dispatcher", GROUP_DISPATCHER, keys.webhook_received),
        ("status", GROUP_STATUS, keys.job_finished),
    ):
        found = await group_backlog(redis, stream, group)
        if found is not None:
            backlog[service] = found
    backlog["workers"] = {
        "pending": sum(q.pending for q in queues),
        "lag": sum(q.waiting for q in queues),
    }
    return {
        "queues": [queue_body(q) for q in queues],
        "workers": workers,
        "jobs": {status: counts[(status, "")] for status in STATUSES},
        "backlog": backlog,
        "generation": await generation(redis, keys),
    }


def _now_ms() -> int:
    return int(time.time() * 1000)


__all__ = [
    "DEFAULT_LIMIT",
    "DIMENSIONS",
    "GROUP_WORKERS",
    "LIST_STATUSES",
    "MAX_LIMIT",
    "STATUSES",
    "Cursor",
    "JobQuery",
    "Page",
    "QueryError",
    "count_jobs",
    "get_job",
    "index_names",
    "job_history",
    "list_jobs",
    "list_workers",
    "parse_job_query",
    "render",
    "system_info",
]
