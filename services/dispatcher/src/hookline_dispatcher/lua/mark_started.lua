-- A worker started a run of the job's queued entry: note it (and the worker) if it is
-- the current attempt and still queued, or a later run of the same entry (the worker
-- numbers a reclaimed run queued + deliveries - 1: its earlier run's worker died, lost
-- its lease or handed it back). The superseded run is kept in `lost` as
-- "<attempt> <worker>\n". Older runs and duplicates are stale and change nothing.
-- Returns 1 when noted, 0 when stale.
-- KEYS: record
-- ARGV: attempt, worker
local record, attempt, worker = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local current = tonumber(redis.call('HGET', record, 'attempt'))
if not current or not attempt then return 0 end
local phase = redis.call('HGET', record, 'phase')
if phase ~= 'queued' and phase ~= 'started' then return 0 end
if attempt < current or (attempt == current and phase == 'started') then return 0 end
if phase == 'started' then
  local lost = redis.call('HGET', record, 'lost') or ''
  local before = redis.call('HGET', record, 'worker') or ''
  redis.call('HSET', record, 'lost', lost .. current .. ' ' .. before .. '\n')
end
redis.call('HSET', record, 'phase', 'started', 'attempt', attempt, 'worker', worker)
return 1
