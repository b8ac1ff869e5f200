-- A run of the job's queued entry ended (outcome finished or canceled): record it, with
-- the run's summary, and let the record expire in ttl_ms, if the job has not ended yet.
-- Any run of the current entry counts (a reclaimed run numbered past the queued
-- attempt, or a stalled earlier run of it that ended first); the record's attempt
-- becomes the highest run seen, so a requeue numbers past every run. A run of an older
-- entry is stale. Returns 1 when recorded, 0 when stale.
-- KEYS: record
-- ARGV: attempt, outcome, summary, ttl_ms
local record, attempt, outcome, summary, ttl_ms = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local current = tonumber(redis.call('HGET', record, 'attempt'))
if not current or not attempt then return 0 end
-- Records written before `queued` existed name the queued attempt as `attempt`.
local queued = tonumber(redis.call('HGET', record, 'queued')) or current
if attempt < queued then return 0 end
local phase = redis.call('HGET', record, 'phase')
if phase ~= 'queued' and phase ~= 'started' then return 0 end
redis.call('HSET', record, 'phase', outcome, 'member', '', 'last', summary,
  'attempt', math.max(current, attempt))
redis.call('PEXPIRE', record, ttl_ms)
return 1
