"""Job views in Redis, written by Lua so the rank check and every write are one step.

One call applies a whole batch of updates: per event it records the event in the
job's history, and if the event is newer (and the transition allowed) updates the view
hash, moves the job between listing indexes, schedules its expiry and counts the
metrics, each exactly once however often the event is delivered. ``Model`` in
``projection.py`` is the Python twin of this script; tests keep the two in lockstep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from hookline import clock
from hookline.keys import Keys, ViewKeys
from hookline.metrics import DURATION_BUCKETS
from hookline.redis_client import Redis
from hookline.streams import Op
from hookline.views import DIMENSIONS

from hookline_status.projection import FINAL_STATUSES, TRANSITIONS, Model, ViewUpdate


def _lua_set(names: Sequence[str]) -> str:
    return "{" + ", ".join(f"[{n!r}] = true" for n in names) + "}"


_TABLES = (
    "local FINAL = "
    + _lua_set(FINAL_STATUSES)
    + "\nlocal ALLOWED = {"
    + ", ".join(f"[{old!r}] = {_lua_set(sorted(new))}" for old, new in TRANSITIONS.items())
    + "}\nlocal BUCKETS = {"
    + ", ".join(repr(b) for b in DURATION_BUCKETS)
    + "}\nlocal DIMS = {"
    + ", ".join(repr(d) for d in DIMENSIONS)
    + "}\n"
)

# Index names, the same shape as ViewKeys.index: <prefix><status>[:<dimension>=<value>]
_INDEXES = """
local function indexes(prefix, status, values)
  local out = {}
  for _, s in ipairs({status, 'all'}) do
    out[prefix .. s] = true
    for i, d in ipairs(DIMS) do
      local v = values[i]
      if v and v ~= '' then out[prefix .. s .. ':' .. d .. '=' .. v] = true end
    end
  end
  return out
end
"""

# KEYS: generation, expiring, completed, duration, wait, then (job hash, job events)
# per update. ARGV: index prefix, number of updates, the generation these keys belong to
# ('' : write regardless; a rebuild fills a generation before it is current: the live
# projection's writes to a generation that is no longer current are dropped, since the
# rebuild replays them into the new one), then per update one JSON array: [job id,
# rank, status, created_ms, created_at, ttl_ms (0: none), at_ms, summary, duration
# ('' : none), [fields to clear], [field, value, field, value, ...]].
APPLY = (
    _TABLES
    + _INDEXES
    + """
local function observe(hash, labels, value)
  local b = 'binf'
  for i, bound in ipairs(BUCKETS) do
    if value <= bound then b = 'b' .. (i - 1); break end
  end
  redis.call('HINCRBY', hash, labels .. '\\t' .. b, 1)
  redis.call('HINCRBYFLOAT', hash, labels .. '\\tsum', value)
  redis.call('HINCRBY', hash, labels .. '\\tcount', 1)
end

-- The view as the API returns it (the same document as hookline.views.render), kept
-- in the hash so that reads hand it out without decoding anything.
local function render_view(jobkey)
  local flat = redis.call('HGETALL', jobkey)
  local v = {}
  for i = 1, #flat, 2 do v[flat[i]] = flat[i + 1] end
  local function text(name)
    local x = v[name]
    if x == nil or x == '' then return 'null' end
    return cjson.encode(x)
  end
  local function raw(name, default)
    local x = v[name]
    if x == nil or x == '' then return default end
    return x
  end
  local parts = {}
  for _, name in ipairs({'job_id', 'status', 'created_at', 'started_at', 'ended_at'}) do
    parts[#parts + 1] = '"' .. name .. '":' .. text(name)
  end
  parts[#parts + 1] = '"result":' .. raw('result', 'null')
  parts[#parts + 1] = '"error":' .. raw('error', 'null')
  local meta = raw('meta', '{}')
  if meta == 'null' then meta = '{}' end
  parts[#parts + 1] = '"meta":' .. meta
  parts[#parts + 1] = '"attempt":' .. raw('attempt', '0')
  for _, name in ipairs({'queue', 'pipeline', 'repository', 'worker', 'not_before', 'reason',
                         'delivery_id'}) do
    parts[#parts + 1] = '"' .. name .. '":' .. text(name)
  end
  parts[#parts + 1] = '"duration":' .. raw('duration', 'null')
  return '{' .. table.concat(parts, ',') .. '}'
end

local prefix = ARGV[1]
local results = {}
local dirty = {}
if ARGV[3] ~= '' and (redis.call('GET', KEYS[1]) or '0') ~= ARGV[3] then return results end
local k = 6
for n = 1, tonumber(ARGV[2]) do
  local jobkey, evkey = KEYS[k], KEYS[k + 1]
  k = k + 2
  -- one JSON array per update: far cheaper to send than one argument per value
  local u = cjson.decode(ARGV[3 + n])
  local job, rank, status = u[1], u[2], u[3]
  local created, created_at = u[4], u[5]
  local ttl, at = u[6], u[7]
  local summary, duration = u[8], u[9]
  local clear, pairs_ = u[10], u[11]

  redis.call('ZADD', evkey, at, summary)
  local cur = redis.call('HMGET', jobkey, 'rank', 'status', 'queue', 'pipeline',
    'repository', 'created_ms', 'queued_ms', 'expires_ms')
  local old = cur[2]
  -- The fields the rest needs, as they are after this event (no second read).
  local now = {queue = cur[3], pipeline = cur[4], repository = cur[5], queued_ms = cur[7]}
  local applied = 0
  local rescore = not cur[6] or created < tonumber(cur[6])
  local set = {}
  if tonumber(cur[1] or '-1') < rank and (not old or ALLOWED[old][status]) then
    applied = 1
    local drop = {}
    for _, name in ipairs(clear) do
      drop[#drop + 1] = name
      now[name] = nil
    end
    if ttl == 0 and cur[8] then drop[#drop + 1] = 'expires_ms' end
    if #drop > 0 then redis.call('HDEL', jobkey, unpack(drop)) end
    for i = 1, #pairs_, 2 do
      set[#set + 1] = pairs_[i]
      set[#set + 1] = pairs_[i + 1]
      now[pairs_[i]] = pairs_[i + 1]
    end
    set[#set + 1] = 'rank'
    set[#set + 1] = rank
    set[#set + 1] = 'status'
    set[#set + 1] = status
    if ttl > 0 then
      set[#set + 1] = 'expires_ms'
      set[#set + 1] = at + ttl
      redis.call('ZADD', KEYS[2], at + ttl, job)
    elseif cur[8] then
      redis.call('ZREM', KEYS[2], job)
    end
  end
  if rescore then
    set[#set + 1] = 'created_ms'
    set[#set + 1] = created
    set[#set + 1] = 'created_at'
    set[#set + 1] = created_at
  end
  if #set > 0 then redis.call('HSET', jobkey, unpack(set)) end
  if applied == 1 or rescore then
    local score = created
    if not rescore then score = cur[6] end
    local after = indexes(prefix, applied == 1 and status or old,
      {now.queue, now.pipeline, now.repository})
    local before = {}
    if old then before = indexes(prefix, old, {cur[3], cur[4], cur[5]}) end
    if applied == 1 then
      for name in pairs(before) do
        if not after[name] then redis.call('ZREM', name, job) end
      end
    end
    for name in pairs(after) do
      if rescore or not before[name] then redis.call('ZADD', name, score, job) end
    end
    if applied == 1 then
      local q, p = now.queue or '', now.pipeline or ''
      -- completions count at the end of an attempt only (a purge keeps the status)
      if FINAL[status] and rank % 8 == 4 then
        redis.call('HINCRBY', KEYS[3], q .. '\\t' .. p .. '\\t' .. status, 1)
        if duration ~= '' and (status == 'finished' or status == 'failed') then
          observe(KEYS[4], q .. '\\t' .. p, tonumber(duration))
        end
      end
      if status == 'started' and now.queued_ms then
        local wait = (at - tonumber(now.queued_ms)) / 1000
        if wait >= 0 then observe(KEYS[5], q, wait) end
      end
    end
    dirty[jobkey] = true
  end
  results[n] = applied
end
-- Once per job per call, however many of its events the call applied.
for jobkey in pairs(dirty) do redis.call('HSET', jobkey, 'json', render_view(jobkey)) end
return results
"""
)

# Delete views whose time has come, with their histories and index entries.
# KEYS[1] expiring; ARGV: now_ms, index prefix, job key prefix, events key prefix, limit
SWEEP = (
    _TABLES
    + _INDEXES
    + """
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
local removed = 0
for _, job in ipairs(due) do
  local jobkey = ARGV[3] .. job
  local v = redis.call('HMGET', jobkey, 'status', 'queue', 'pipeline', 'repository', 'expires_ms')
  if v[5] and tonumber(v[5]) > now then
    redis.call('ZADD', KEYS[1], v[5], job)
  else
    if v[1] then
      for name in pairs(indexes(ARGV[2], v[1], {v[2], v[3], v[4]})) do
        redis.call('ZREM', name, job)
      end
    end
    redis.call('DEL', jobkey, ARGV[4] .. job)
    redis.call('ZREM', KEYS[1], job)
    removed = removed + 1
  end
end
return removed
"""
)

_encode = msgspec.json.Encoder().encode

# Updates per Lua call: big enough to amortise the call, small enough not to stall Redis.
BATCH = 200


def apply_ops(
    keys: Keys, generation: int, updates: Sequence[ViewUpdate], guard: bool = True
) -> list[Op]:
    """The EVAL calls that apply ``updates`` to ``generation`` in order (one call per
    ``BATCH``). Guarded, they do nothing once ``generation`` is no longer current;
    unguarded (a rebuild filling a new generation) they write regardless."""
    views = keys.views(generation)
    ops: list[Op] = []
    for start in range(0, len(updates), BATCH):
        chunk = updates[start : start + BATCH]
        names: list[str] = [
            keys.views_generation,
            views.expiring,
            views.metric_completed,
            views.metric_duration,
            views.metric_wait,
        ]
        args: list[Any] = [views.index_prefix, len(chunk), generation if guard else ""]
        for update in chunk:
            names.extend((views.job(update.job_id), views.job_events(update.job_id)))
            pairs: list[str] = []
            for name, value in update.fields.items():
                pairs.extend((name, value))
            args.append(
                _encode(
                    (
                        update.job_id,
                        update.rank,
                        update.status,
                        update.created_ms,
                        update.created_at,
                        int(update.ttl * 1000) if update.ttl else 0,
                        update.at_ms,
                        update.summary,
                        repr(update.duration) if update.duration is not None else "",
                        update.clear,
                        pairs,
                    )
                )
            )
        ops.append(("EVAL", APPLY, len(names), *names, *args))
    return ops


async def sweep_expired(
    redis: Redis, views: ViewKeys, now_ms: int | None = None, limit: int = 500
) -> int:
    """Delete up to ``limit`` expired views; the number deleted."""
    removed: int = await redis.eval(
        SWEEP,
        1,
        views.expiring,
        now_ms if now_ms is not None else clock.now_ms(),
        views.index_prefix,
        views.job(""),
        views.job_events(""),
        limit,
    )
    return removed


def _s(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def snapshot(redis: Redis, views: ViewKeys) -> tuple[Model, dict[str, set[str]]]:
    """Everything one generation holds, as a :class:`Model` plus its indexes (for tests
    and for checking a rebuild against the live projection)."""
    model = Model()
    indexes: dict[str, set[str]] = {}
    job_head, events_head, index_head = views.job(""), views.job_events(""), views.index_prefix
    async for raw_key in redis.scan_iter(match=views.pattern, count=1000):
        key = _s(raw_key)
        if key.startswith(job_head):
            view = {_s(k): _s(v) for k, v in (await redis.hgetall(key)).items()}
            job_id = key[len(job_head) :]
            if "json" in view:
                model.rendered[job_id] = view.pop("json")
            model.views[job_id] = view
        elif key.startswith(events_head):
            members: Any = await redis.zrange(key, 0, -1, withscores=True)
            model.histories[key[len(events_head) :]] = {(int(s), _s(m)) for m, s in members}
        elif key.startswith(index_head):
            indexes[key[len(index_head) :]] = {_s(m) for m in await redis.zrange(key, 0, -1)}
    completed: Any = await redis.hgetall(views.metric_completed)
    model.completed = {_s(name): int(value) for name, value in completed.items()}
    for key, target in ((views.metric_duration, model.duration), (views.metric_wait, model.wait)):
        stored: Any = await redis.hgetall(key)
        for name, value in stored.items():
            target[_s(name)] = float(value)
    return model, indexes
