-- Claim, for this consumer, up to count entries still pending for consumers whose
-- liveness lapsed (by Redis's clock): a killed worker's jobs, taken over at once
-- rather than once their lease lapses. A consumer never noted alive is left to the
-- lease. Atomic, so two live workers never both claim one entry. Each claim counts a
-- delivery. Returns {ids and their delivery counts before this claim (flat), the
-- claimed entries}.
-- KEYS: liveness, stream
-- ARGV: group, consumer, count
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = tonumber(ARGV[3])
local counts, claimed = {}, {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)) do
  if left <= 0 then break end
  if name ~= ARGV[2] then
    local pending = redis.call('XPENDING', KEYS[2], ARGV[1], '-', '+', left, name)
    if #pending > 0 then
      local ids = {}
      for i, p in ipairs(pending) do
        ids[i] = p[1]
        counts[#counts + 1] = p[1]
        counts[#counts + 1] = p[4]
      end
      for _, entry in ipairs(redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, unpack(ids))) do
        claimed[#claimed + 1] = entry
      end
      left = left - #pending
    end
  end
end
return {counts, claimed}
