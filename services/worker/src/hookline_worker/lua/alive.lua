-- Note this consumer alive for ttl_ms more, by Redis's clock (workers on machines whose
-- clocks differ still agree; ttl_ms 0 says it is gone now), and forget consumers dead
-- for longer than forget_ms. Returns Redis's time in ms.
-- KEYS: liveness
-- ARGV: consumer, ttl_ms, forget_ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
return now
