-- A worker started an attempt: note it (and the worker) if that attempt is the job's
-- current one and still queued; anything else is stale and changes nothing.
-- Returns 1 when noted, 0 when stale.
-- KEYS: record
-- ARGV: attempt, worker
local record, attempt, worker = KEYS[1], ARGV[1], ARGV[2]
if redis.call('HGET', record, 'attempt') ~= attempt then return 0 end
if redis.call('HGET', record, 'phase') ~= 'queued' then return 0 end
redis.call('HSET', record, 'phase', 'started', 'worker', worker)
return 1
