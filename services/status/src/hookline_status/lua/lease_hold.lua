-- Take the metrics lease when nobody holds it, or extend it when we do.
-- KEYS: lease
-- ARGV: token, ttl_ms
-- Returns 1 when we hold it now, else 0.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
