"""Reading the status projection: job views, job histories, workers and queues.

The status service writes the projection; its HTTP API and the ``hookline`` operator
CLI both read it through these functions, so they always show the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from redis.exceptions import ResponseError

from hookline import clock
from hookline.clock import now_ms
from hookline.keys import GROUP_DISPATCHER, GROUP_STATUS, Keys, ViewKeys
from hookline.queues import QueueStats, known_queues, queue_stats
from hookline.records import WorkerHeartbeat, WorkerView, from_hash, worker_view
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
_json = msgspec.json.Encoder()


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


# One job's API document, from the generation current at that instant.
# KEYS[1] generation; ARGV: views root, the job key's own part, now (ms)
GET_JOB = """
local key = ARGV[1] .. (redis.call('GET', KEYS[1]) or '0') .. ARGV[2]
local v = redis.call('HMGET', key, 'json', 'expires_ms')
if v[2] and tonumber(v[2]) <= tonumber(ARGV[3]) then return false end
if v[1] then return v[1] end
if redis.call('EXISTS', key) == 1 then return redis.call('HGETALL', key) end
return false
"""

# A page of a listing index, newest first, after a cursor, filtered, skipping expired
# views. KEYS[1] generation; ARGV: views root, index's own part, job key's own part
# (empty id), max score ('+inf' or the cursor's), cursor id ('' : none), limit, now (ms),
# budget (most index entries to look at), then filter field/value pairs.
# Returns {found..., last score, last id, exhausted} where each found job is
# {document or '', score, id}.
LIST_JOBS = """
local root = ARGV[1] .. (redis.call('GET', KEYS[1]) or '0')
local index, jobpart = root .. ARGV[2], root .. ARGV[3]
local max, after, limit = ARGV[4], ARGV[5], tonumber(ARGV[6])
local now, budget = tonumber(ARGV[7]), tonumber(ARGV[8])
local fields = {'json', 'expires_ms'}
local wanted = {}
for i = 9, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  wanted[#wanted + 1] = ARGV[i + 1]
end
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local out = {}
local found, scanned, offset = 0, 0, 0
local last_score, last_id = '', ''
local exhausted = 0
local chunk = limit + 1
while found <= limit and scanned < budget do
  local batch = redis.call('ZREVRANGEBYSCORE', index, max, '-inf', 'WITHSCORES',
    'LIMIT', offset, chunk)
  if #batch == 0 then exhausted = 1; break end
  offset = offset + #batch / 2
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    if after == '' or score ~= max or before(id, after) then
      scanned = scanned + 1
      last_score, last_id = score, id
      local v = redis.call('HMGET', jobpart .. id, unpack(fields))
      local ok = (v[1] or redis.call('EXISTS', jobpart .. id) == 1)
        and not (v[2] and tonumber(v[2]) <= now)
      for f = 1, #wanted do
        if v[2 + f] ~= wanted[f] then ok = false end
      end
      if ok then
        out[#out + 1] = v[1] or ''
        out[#out + 1] = score
        out[#out + 1] = id
        found = found + 1
        if found > limit then break end
      end
    end
  end
  chunk = math.min(chunk * 2, 1000)
end
out[#out + 1] = last_score
out[#out + 1] = last_id
out[#out + 1] = exhausted
return out
"""

_NO_VIEW = ViewKeys("")


async def get_job_document(redis: Redis, keys: Keys, job_id: str) -> bytes | None:
    """One job's view as the API's JSON document (None if unknown or expired), read and
    handed on without decoding."""
    reply = await redis.eval(
        GET_JOB, 1, keys.views_generation, keys.views_root, _NO_VIEW.job(job_id), now_ms()
    )
    if reply is None:
        return None
    if isinstance(reply, bytes):
        return reply
    flat = [x.decode() for x in reply]  # a view written before documents were kept
    return _json.encode(render(dict(zip(flat[::2], flat[1::2], strict=True))))


async def read_view(redis: Redis, keys: Keys, job_id: str) -> dict[str, str] | None:
    """The stored fields of one job's view, or None if unknown or expired."""
    views = await current_views(redis, keys)
    raw: Any = await redis.hgetall(views.job(job_id))
    if not raw:
        return None
    view = _text(raw)
    return view if _live(view, now_ms()) else None


async def get_job(redis: Redis, keys: Keys, job_id: str) -> dict[str, Any] | None:
    document = await get_job_document(redis, keys, job_id)
    return _decoder.decode(document) if document is not None else None


async def job_history(redis: Redis, keys: Keys, job_id: str) -> list[dict[str, Any]] | None:
    """Every event recorded for a job, oldest first (None if the job is unknown)."""
    views = await current_views(redis, keys)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(views.job(job_id), "expires_ms")
        pipe.exists(views.job(job_id))
        pipe.zrange(views.job_events(job_id), 0, -1)
        expires, exists, members = await pipe.execute()
    if not exists or (expires and int(expires) <= now_ms()):
        return None
    return [_decoder.decode(m) for m in members]


@dataclass(frozen=True, slots=True)
class RawPage:
    """A page of jobs as JSON documents, ready to join into a reply."""

    documents: list[bytes]
    next_cursor: str | None


async def list_job_documents(redis: Redis, keys: Keys, query: JobQuery) -> RawPage:
    """Newest first, ``query.limit`` at most, from ``query.cursor`` on; one round trip."""
    filters = query.filters
    first = filters[0] if filters else ("", "")
    args: list[Any] = [
        keys.views_root,
        _NO_VIEW.index(query.status, *first),
        _NO_VIEW.job(""),
        "+inf" if query.cursor is None else str(query.cursor.score),
        "" if query.cursor is None else query.cursor.job_id,
        query.limit,
        now_ms(),
        SCAN_BUDGET,
    ]
    for dimension, value in filters[1:]:
        args.extend((dimension, value))
    reply = await redis.eval(LIST_JOBS, 1, keys.views_generation, *args)
    *found, last_score, last_id, exhausted = reply
    documents: list[bytes] = []
    cursors: list[Cursor] = []
    for i in range(0, len(found), 3):
        document, score, job_id = found[i : i + 3]
        if not document:  # a view written before documents were kept
            fallback = await get_job_document(redis, keys, job_id.decode())
            if fallback is None:
                continue
            document = fallback
        documents.append(document)
        cursors.append(Cursor(int(float(score)), job_id.decode()))
    if len(documents) > query.limit:
        documents = documents[: query.limit]
        next_cursor: str | None = cursors[query.limit - 1].encode()
    elif not int(exhausted) and last_id:
        # the budget ran out before the page filled: more may match further on
        next_cursor = Cursor(int(float(last_score)), last_id.decode()).encode()
    else:
        next_cursor = None
    return RawPage(documents, next_cursor)


async def list_jobs(redis: Redis, keys: Keys, query: JobQuery) -> Page:
    """Newest first, ``query.limit`` at most, from ``query.cursor`` on."""
    page = await list_job_documents(redis, keys, query)
    return Page([_decoder.decode(d) for d in page.documents], page.next_cursor)


# Jobs in each listing index, leaving out views whose time to live has passed but that
# the status service's periodic sweep has not removed yet (a purged job expires at once),
# so counts agree with the listings at every instant.
# KEYS[1] generation; ARGV: views root, expiring's own part, job key's own part (empty
# id), now (ms), budget (most due views to look at), then each index's own part.
COUNT_JOBS = """
local root = ARGV[1] .. (redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', root .. ARGV[2], '-inf', now,
  'LIMIT', 0, tonumber(ARGV[5]))
local gone = {}
for _, job in ipairs(due) do
  local key = root .. ARGV[3] .. job
  local expires = redis.call('HGET', key, 'expires_ms')
  if (expires and tonumber(expires) <= now) or (not expires and redis.call('EXISTS', key) == 0)
  then gone[#gone + 1] = job end
end
local out = {}
for i = 6, #ARGV do
  local index = root .. ARGV[i]
  local n = redis.call('ZCARD', index)
  if n > 0 then
    for _, job in ipairs(gone) do
      if redis.call('ZSCORE', index, job) then n = n - 1 end
    end
  end
  out[#out + 1] = n
end
return out
"""


async def count_jobs(
    redis: Redis, keys: Keys, queues: list[str] | None = None
) -> dict[tuple[str, str], int]:
    """Live jobs per ``(status, queue)``; queue ``""`` is every queue together."""
    wanted = [(s, "") for s in STATUSES]
    wanted += [(s, q) for q in queues or [] for s in STATUSES]
    indexes = [_NO_VIEW.index(s, "queue", q) if q else _NO_VIEW.index(s) for s, q in wanted]
    counts = await redis.eval(
        COUNT_JOBS,
        1,
        keys.views_generation,
        keys.views_root,
        _NO_VIEW.expiring,
        _NO_VIEW.job(""),
        now_ms(),
        SCAN_BUDGET,
        *indexes,
    )
    return {key: int(n) for key, n in zip(wanted, counts, strict=True)}


async def read_workers(redis: Redis, keys: Keys, ttl: float) -> list[WorkerView]:
    """Every registered worker with its state: ``busy``, ``idle`` or ``dead`` (no heartbeat
    for ``ttl`` seconds). Fields a worker did not publish are None (or empty)."""
    members: Any = await redis.zrange(keys.workers, 0, -1, withscores=True)
    if not members:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name, _ in members:
            pipe.hgetall(keys.worker(name.decode()))
        raws = await pipe.execute()
    now = clock.now()
    return [
        worker_view(name.decode(), int(score), from_hash(WorkerHeartbeat, raw), now, ttl)
        for (name, score), raw in zip(members, raws, strict=True)
    ]


async def list_workers(redis: Redis, keys: Keys, ttl: float) -> list[dict[str, Any]]:
    """:func:`read_workers` as JSON-ready mappings (the ``GET /workers`` items)."""
    workers: list[dict[str, Any]] = msgspec.to_builtins(await read_workers(redis, keys, ttl))
    return workers


def queue_body(stats: QueueStats) -> dict[str, Any]:
    return {
        "queue": stats.queue,
        "length": stats.length,
        "waiting": stats.waiting,
        "pending": stats.pending,
        "stream_entries": stats.stream_entries,
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
            entries: Any = await redis.xrange(stream, min=f"({last}", count=SCAN_BUDGET)
            lag = len(entries)
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


__all__ = [
    "DEFAULT_LIMIT",
    "DIMENSIONS",
    "LIST_STATUSES",
    "MAX_LIMIT",
    "STATUSES",
    "Cursor",
    "JobQuery",
    "Page",
    "QueryError",
    "count_jobs",
    "get_job",
    "get_job_document",
    "index_names",
    "job_history",
    "list_job_documents",
    "list_jobs",
    "list_workers",
    "parse_job_query",
    "read_workers",
    "render",
    "system_info",
]
