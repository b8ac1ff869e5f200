-- A new job from a webhook: record it and append its first event, unless a record of
-- it exists (a redelivered entry, or two dispatchers racing on a claimed entry).
-- mode is queue, defer or skip: skip only records and appends; defer also keeps the
-- attempt (delayed_data) in the delayed set until due_ms. With a supersede slot
-- (slot_value "<ms> <job id>", else ""), the older of this job and the slot's job gets
-- a cancel command: cancel is an encoded JobCancelRequested whose job_id is set to it.
-- record_ttl_ms 0 means the record does not expire.
-- Returns 0 for a duplicate, 1 when written, 2 when written and a job was superseded.
-- KEYS: record, stream, queues, delayed, delayed_events, slot, commands
-- ARGV: mode, event, queue, record_ttl_ms, member, due_ms, delayed_data
-- ARGV: slot_value, slot_ttl_ms, cancel, field
-- ARGV*: fields
local record, stream, queues, delayed, delayed_events, slot, commands =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local mode, event, queue, record_ttl_ms, member, due_ms, delayed_data =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local slot_value, slot_ttl_ms, cancel, field = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local FIELDS = 12

if redis.call('EXISTS', record) == 1 then return 0 end
redis.call('HSET', record, unpack(ARGV, FIELDS))
if record_ttl_ms ~= '0' then redis.call('PEXPIRE', record, record_ttl_ms) end
redis.call('XADD', stream, '*', field, event)
if mode ~= 'skip' then redis.call('SADD', queues, queue) end
if mode == 'defer' then
  redis.call('ZADD', delayed, due_ms, member)
  redis.call('HSET', delayed_events, member, delayed_data)
end
if slot_value == '' then return 1 end

local function split(value)
  local space = string.find(value, ' ', 1, true)
  return tonumber(string.sub(value, 1, space - 1)), string.sub(value, space + 1)
end

local mine_ms, mine = split(slot_value)
local current = redis.call('GET', slot)
local victim = nil
if not current then
  redis.call('SET', slot, slot_value, 'PX', slot_ttl_ms)
else
  local their_ms, theirs = split(current)
  if theirs ~= mine then
    if their_ms <= mine_ms then
      victim = theirs
      redis.call('SET', slot, slot_value, 'PX', slot_ttl_ms)
    else
      victim = mine
    end
  end
end
if not victim then return 1 end
local command = cjson.decode(cancel)
command['job_id'] = victim
redis.call('XADD', commands, '*', field, cjson.encode(command))
return 2
