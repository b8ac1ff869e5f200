-- Delete job views whose time to live has passed, with their histories and their
-- entries in every listing index (the names the view keeps in its 'indexes' field).
-- KEYS: expiring
-- ARGV: now_ms, index_prefix, job_prefix, events_prefix, limit
-- Returns the number of views deleted.
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
local removed = 0
for _, job in ipairs(due) do
  local jobkey = ARGV[3] .. job
  local v = redis.call('HMGET', jobkey, 'indexes', 'expires_ms')
  if v[2] and tonumber(v[2]) > now then
    redis.call('ZADD', KEYS[1], v[2], job)
  else
    for _, name in ipairs(v[1] and cjson.decode(v[1]) or {}) do
      redis.call('ZREM', ARGV[2] .. name, job)
    end
    redis.call('DEL', jobkey, ARGV[4] .. job)
    redis.call('ZREM', KEYS[1], job)
    removed = removed + 1
  end
end
return removed
