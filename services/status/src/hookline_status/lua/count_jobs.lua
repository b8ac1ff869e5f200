-- Jobs in each listing index, leaving out views whose time to live has passed but that
-- the periodic sweep has not removed yet (a purged job expires at once), so counts agree
-- with the listings at every instant. From the generation current at this instant.
-- KEYS: generation
-- ARGV: views_root, expiring_part, job_part, now_ms, budget
-- ARGV*: index_parts
-- *_part: a key's own part (ViewKeys("")), added to root + generation; budget: the most
-- due views to look at. Returns one count per index, in order.
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
