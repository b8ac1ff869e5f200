-- Apply a batch of job view updates to one generation of the views, in order. Per
-- update: record the event in the job's history; if its rank is higher than the view's
-- and the transition allowed, update the view hash, move the job between listing
-- indexes, schedule its expiry and count its metrics (each once, however often the
-- event is delivered); then render every changed view's API document into its 'json'.
-- KEYS: generation, expiring, completed, duration, wait
-- ARGV: index_prefix, job_prefix, events_prefix, only_generation, config
-- ARGV*: updates
--
-- only_generation: '' writes regardless (a rebuild filling a generation before it is
--   current); else the writes are dropped unless it is the current generation (the
--   rebuild replays them into the new one).
-- config (JSON, from hookline_status.store): allowed {old status: [new statuses]},
--   buckets [histogram bounds], dimensions [view fields with listing indexes],
--   document [[field, kind], ...]: the API document's fields in order, from the JobView
--   Struct; kind 'text' (a JSON string, null if empty), 'raw' (stored JSON, null if
--   empty), 'count' (stored number, 0 if empty), 'object' (stored JSON, {} if empty).
-- updates: one JSON array each (hookline_status.store.LuaUpdate): job id, rank, status,
--   created_ms, created_at, ttl_ms (0: none), at_ms, summary, duration to observe ('' :
--   none), [fields to clear], [field, value, ...], completes (1: an attempt ended: count
--   it), starts (1: an attempt started: observe its wait; its queued_for_ms is set
--   when the view holds the same attempt's queueing time, queued_ms of queued_attempt).
-- A view keeps the index names it is listed in (field 'indexes', relative to
-- index_prefix, the shape of ViewKeys.index: <status>[:<dimension>=<value>]).
-- Returns 1 per update it applied, 0 per update it ignored.
local config = cjson.decode(ARGV[5])
local ALLOWED, BUCKETS, DIMS = {}, config.buckets, config.dimensions
for old, news in pairs(config.allowed) do
  ALLOWED[old] = {}
  for _, new in ipairs(news) do ALLOWED[old][new] = true end
end

local function index_names(status, values)
  local out = {}
  for _, s in ipairs({status, 'all'}) do
    out[#out + 1] = s
    for i, d in ipairs(DIMS) do
      local v = values[i]
      if v and v ~= '' then out[#out + 1] = s .. string.format(config.index_tail, d, v) end
    end
  end
  return out
end

local function as_set(names)
  local out = {}
  for _, name in ipairs(names) do out[name] = true end
  return out
end

local function observe(hash, labels, value)
  local b = 'binf'
  for i, bound in ipairs(BUCKETS) do
    if value <= bound then b = 'b' .. (i - 1); break end
  end
  redis.call('HINCRBY', hash, labels .. '\t' .. b, 1)
  redis.call('HINCRBYFLOAT', hash, labels .. '\t' .. 'sum', value)
  redis.call('HINCRBY', hash, labels .. '\t' .. 'count', 1)
end

local function render(jobkey)
  local flat = redis.call('HGETALL', jobkey)
  local v = {}
  for i = 1, #flat, 2 do v[flat[i]] = flat[i + 1] end
  local parts = {}
  for _, field in ipairs(config.document) do
    local name, kind = field[1], field[2]
    local x = v[name]
    if x == '' then x = nil end
    local out
    -- cjson writes '/' as '\/'; undo it so text reads as the same JSON Python writes
    -- (safe: cjson escapes every backslash, so an unescaped '\/' is only ever a '/').
    if kind == 'text' then out = x and (string.gsub(cjson.encode(x), '\\/', '/')) or 'null'
    elseif kind == 'count' then out = x or '0'
    elseif kind == 'object' then out = (x and x ~= 'null') and x or '{}'
    else out = x or 'null' end
    parts[#parts + 1] = cjson.encode(name) .. ':' .. out
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

local results = {}
if ARGV[4] ~= '' and (redis.call('GET', KEYS[1]) or '0') ~= ARGV[4] then return results end
local prefix, dirty = ARGV[1], {}
for n = 6, #ARGV do
  local u = cjson.decode(ARGV[n])
  local job, rank, status = u[1], u[2], u[3]
  local created, created_at, ttl, at = u[4], u[5], u[6], u[7]
  local summary, duration, clear, pairs_ = u[8], u[9], u[10], u[11]
  local completes, starts = u[12] == 1, u[13] == 1
  local jobkey = ARGV[2] .. job
  redis.call('ZADD', ARGV[3] .. job, at, summary)
  local cur = redis.call('HMGET', jobkey, 'rank', 'status', 'indexes', 'created_ms',
    'expires_ms', 'queued_ms', 'queued_attempt', unpack(DIMS))
  local old = cur[2]
  local before = cur[3] and cjson.decode(cur[3]) or {}
  -- The fields the rest needs, as they are after this event (no second read).
  local now = {queued_ms = cur[6], queued_attempt = cur[7]}
  for i, d in ipairs(DIMS) do now[d] = cur[7 + i] end
  local applied = tonumber(cur[1] or '-1') < rank and (not old or ALLOWED[old][status])
  local rescore = not cur[4] or created < tonumber(cur[4])
  local set, after = {}, before
  if applied then
    local drop = {}
    for _, name in ipairs(clear) do
      drop[#drop + 1] = name
      now[name] = nil
    end
    if ttl == 0 and cur[5] then drop[#drop + 1] = 'expires_ms' end
    if #drop > 0 then redis.call('HDEL', jobkey, unpack(drop)) end
    for i = 1, #pairs_, 2 do
      set[#set + 1] = pairs_[i]
      set[#set + 1] = pairs_[i + 1]
      now[pairs_[i]] = pairs_[i + 1]
    end
    local values = {}
    for i, d in ipairs(DIMS) do values[i] = now[d] end
    after = index_names(status, values)
    for _, x in ipairs({'rank', rank, 'status', status, 'indexes', cjson.encode(after)}) do
      set[#set + 1] = x
    end
    if ttl > 0 then
      set[#set + 1] = 'expires_ms'
      set[#set + 1] = at + ttl
      redis.call('ZADD', KEYS[2], at + ttl, job)
    elseif cur[5] then
      redis.call('ZREM', KEYS[2], job)
    end
  end
  if rescore then
    for _, x in ipairs({'created_ms', created, 'created_at', created_at}) do
      set[#set + 1] = x
    end
  end
  if #set > 0 then redis.call('HSET', jobkey, unpack(set)) end
  if applied or rescore then
    local score = rescore and created or cur[4]
    local was, is = as_set(before), as_set(after)
    for name in pairs(was) do
      if not is[name] then redis.call('ZREM', prefix .. name, job) end
    end
    for name in pairs(is) do
      if rescore or not was[name] then redis.call('ZADD', prefix .. name, score, job) end
    end
    dirty[jobkey] = true
  end
  if applied then
    local q, p = now.queue or '', now.pipeline or ''
    if completes then
      redis.call('HINCRBY', KEYS[3], q .. '\t' .. p .. '\t' .. status, 1)
      if duration ~= '' then observe(KEYS[4], q .. '\t' .. p, tonumber(duration)) end
    end
    if starts and now.queued_ms then
      local wait = at - tonumber(now.queued_ms)
      if wait >= 0 then observe(KEYS[5], q, wait / 1000) end
      if wait >= 0 and now.queued_attempt == now.attempt then
        redis.call('HSET', jobkey, 'queued_for_ms', wait)
      end
    end
  end
  results[#results + 1] = applied and 1 or 0
end
-- Once per job per call, however many of its events the call applied.
for jobkey in pairs(dirty) do redis.call('HSET', jobkey, 'json', render(jobkey)) end
return results
