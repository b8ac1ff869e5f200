-- An attempt ended (outcome finished or canceled): record it, with the attempt's
-- summary, and let the record expire in ttl_ms, if that attempt is the job's current
-- one and has not ended yet. Returns 1 when recorded, 0 when stale.
-- KEYS: record
-- ARGV: attempt, outcome, summary, ttl_ms
local record, attempt, outcome, summary, ttl_ms = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', record, 'attempt') ~= attempt then return 0 end
local phase = redis.call('HGET', record, 'phase')
if phase ~= 'queued' and phase ~= 'started' then return 0 end
redis.call('HSET', record, 'phase', outcome, 'member', '', 'last', summary)
redis.call('PEXPIRE', record, ttl_ms)
return 1
