-- Hand back the entries this consumer still owns: idle far past any lease, so the next
-- claim pass of any live worker takes them (the delivery count is left as it is).
-- Returns how many were handed back.
-- KEYS: stream
-- ARGV: group, consumer, idle_ms
-- ARGV*: ids
local n = 0
for i = 4, #ARGV do
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #mine > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
