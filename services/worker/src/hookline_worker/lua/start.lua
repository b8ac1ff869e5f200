-- Start a batch of jobs in one step: per job, if its cancel marker covers the queued
-- attempt, acknowledge its entry and write nothing (the canceller recorded the
-- outcome); else append its job.started. Returns the 1-based positions of the
-- canceled jobs.
-- job_keys holds per job its cancel marker and its queue stream; job_args per job
-- the queued attempt, the entry id and the encoded job.started.
-- KEYS: started
-- KEYS*: job_keys
-- ARGV: group, field
-- ARGV*: job_args
local canceled = {}
for i = 1, (#KEYS - 1) / 2 do
  local marker = tonumber(redis.call('GET', KEYS[2 * i]) or '')
  if marker and marker >= tonumber(ARGV[3 * i]) then
    redis.call('XACK', KEYS[2 * i + 1], ARGV[1], ARGV[3 * i + 1])
    canceled[#canceled + 1] = i
  else
    redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[3 * i + 2])
  end
end
return canceled
