-- The due-job mover: pop every due member and append its event, in one step, so that
-- several dispatchers running it at once never queue an attempt twice. A member's
-- delayed data is "<stream>\n<job id>\n<encoded event>"; it is appended only if the
-- job's record (record_prefix .. job id) still names that member.
-- Returns stream, pipeline, stream, pipeline... one pair per moved attempt.
-- KEYS: delayed, delayed_events
-- ARGV: now_ms, limit, record_prefix, field
local delayed, delayed_events = KEYS[1], KEYS[2]
local now_ms, limit, record_prefix, field = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now_ms, 'LIMIT', 0, limit)
local moved = {}
for _, member in ipairs(due) do
  local data = redis.call('HGET', delayed_events, member)
  redis.call('ZREM', delayed, member)
  redis.call('HDEL', delayed_events, member)
  if data then
    local a = string.find(data, '\n', 1, true)
    local b = string.find(data, '\n', a + 1, true)
    local stream = string.sub(data, 1, a - 1)
    local record = record_prefix .. string.sub(data, a + 1, b - 1)
    if redis.call('HGET', record, 'member') == member then
      redis.call('XADD', stream, '*', field, string.sub(data, b + 1))
      redis.call('HSET', record, 'phase', 'queued', 'member', '')
      moved[#moved + 1] = stream
      moved[#moved + 1] = redis.call('HGET', record, 'pipeline') or ''
    end
  end
end
return moved
