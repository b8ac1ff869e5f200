-- Renew the leases this consumer still owns (reset their idle time, no delivery
-- counted); return the ids another consumer has taken over or that are no longer
-- pending, so their runs can stop.
-- KEYS: stream
-- ARGV: group, consumer
-- ARGV*: ids
local lost = {}
for i = 3, #ARGV do
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #mine == 0 then
    lost[#lost + 1] = ARGV[i]
  else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  end
end
return lost
