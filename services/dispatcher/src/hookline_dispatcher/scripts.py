"""The dispatcher's Lua scripts: checks and writes that must be one step.

Every key they touch lives in the prefix's hash tag, so they stay valid on a Redis
Cluster; keys derived inside a script (a job's record, a queue stream) share that slot.
"""

from __future__ import annotations

# A new job from a webhook: record it and append its first event, unless a record of
# it exists (a redelivered entry, or two dispatchers racing on a claimed entry).
# With a supersede slot, the older of this job and the slot's job gets a cancel command.
#   KEYS: 1 job record  2 stream to append to  3 queues set  4 delayed set
#         5 delayed events  6 supersede slot  7 commands stream
#   ARGV: 1 mode (queue|defer|skip)  2 encoded event  3 queue  4 record ttl ms (0: none)
#         5 delayed member  6 due ms  7 delayed data  8 slot value "<ms> <job id>" or ""
#         9 slot ttl ms  10 cancel command with @@JOB@@ for the victim  11 event field
#         12 n, then n field/value pairs of the record
# Returns 0 for a duplicate, 1 when written, 2 when written and a job was superseded.
NEW_JOB = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[12])
redis.call('HSET', KEYS[1], unpack(ARGV, 13, 12 + 2 * n))
if ARGV[4] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('XADD', KEYS[2], '*', ARGV[11], ARGV[2])
if ARGV[1] ~= 'skip' then redis.call('SADD', KEYS[3], ARGV[3]) end
if ARGV[1] == 'defer' then
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5])
  redis.call('HSET', KEYS[5], ARGV[5], ARGV[7])
end
if ARGV[8] == '' then return 1 end
local space = string.find(ARGV[8], ' ', 1, true)
local mine_ms = tonumber(string.sub(ARGV[8], 1, space - 1))
local mine = string.sub(ARGV[8], space + 1)
local current = redis.call('GET', KEYS[6])
local victim = nil
if not current then
  redis.call('SET', KEYS[6], ARGV[8], 'PX', ARGV[9])
else
  local at = string.find(current, ' ', 1, true)
  local their_ms = tonumber(string.sub(current, 1, at - 1))
  local theirs = string.sub(current, at + 1)
  if theirs ~= mine then
    if their_ms <= mine_ms then
      victim = theirs
      redis.call('SET', KEYS[6], ARGV[8], 'PX', ARGV[9])
    else
      victim = mine
    end
  end
end
if not victim then return 1 end
local template = ARGV[10]
local hole = string.find(template, '@@JOB@@', 1, true)
local command = string.sub(template, 1, hole - 1) .. victim .. string.sub(template, hole + 7)
redis.call('XADD', KEYS[7], '*', ARGV[11], command)
return 2
"""

# The due-job mover: pop every due member and append its event, in one step, so that
# several dispatchers running it at once never queue an attempt twice.
#   KEYS: 1 delayed set  2 delayed events
#   ARGV: 1 now (ms)  2 most to move  3 job record key prefix  4 event field
# Returns stream, pipeline, stream, pipeline... one pair per moved attempt.
MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local moved = {}
for _, member in ipairs(due) do
  local data = redis.call('HGET', KEYS[2], member)
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
  if data then
    local a = string.find(data, '\\n', 1, true)
    local b = string.find(data, '\\n', a + 1, true)
    local stream = string.sub(data, 1, a - 1)
    local job = string.sub(data, a + 1, b - 1)
    local record = ARGV[3] .. job
    if redis.call('HGET', record, 'member') == member then
      redis.call('XADD', stream, '*', ARGV[4], string.sub(data, b + 1))
      redis.call('HSET', record, 'phase', 'queued', 'member', '')
      moved[#moved + 1] = stream
      moved[#moved + 1] = redis.call('HGET', record, 'pipeline') or ''
    end
  end
end
return moved
"""

# A worker started attempt ARGV[1]: note it (and the worker, ARGV[2]) if that attempt is
# the job's current one and still queued; anything else is stale and changes nothing.
#   KEYS: 1 job record
MARK_STARTED = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'phase') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'phase', 'started', 'worker', ARGV[2])
return 1
"""

# Attempt ARGV[1] ended ARGV[2] (finished or canceled): record it, with the attempt's
# summary ARGV[3], and let the record expire in ARGV[4] ms, if that attempt is the job's
# current one and has not ended yet.
#   KEYS: 1 job record
MARK_ENDED = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
local phase = redis.call('HGET', KEYS[1], 'phase')
if phase ~= 'queued' and phase ~= 'started' then return 0 end
redis.call('HSET', KEYS[1], 'phase', ARGV[2], 'member', '', 'last', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
