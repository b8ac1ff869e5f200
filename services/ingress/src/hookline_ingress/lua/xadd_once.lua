-- Append to a stream at most once per marker key (one GitHub delivery, one entry).
-- Returns {1, entry id} when appended, {0, marker value} when the marker existed.
-- KEYS: marker, stream
-- ARGV: value, ttl_ms, field, data
local marker, stream = KEYS[1], KEYS[2]
local value, ttl_ms, field, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local existing = redis.call('GET', marker)
if existing then return {0, existing} end
redis.call('SET', marker, value, 'PX', ttl_ms)
local id = redis.call('XADD', stream, '*', field, data)
return {1, id}
