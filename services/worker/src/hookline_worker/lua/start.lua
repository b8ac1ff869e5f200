-- Start one job: if its cancel marker covers the queued attempt, acknowledge the entry
-- and write nothing (the canceller recorded the outcome) and return 1; else append its
-- job.started and return 0.
-- KEYS: started, cancel, stream
-- ARGV: group, field, queued_attempt, entry_id, event
local marker = tonumber(redis.call('GET', KEYS[2]) or '')
if marker and marker >= tonumber(ARGV[3]) then
  redis.call('XACK', KEYS[3], ARGV[1], ARGV[4])
  return 1
end
redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[5])
return 0
