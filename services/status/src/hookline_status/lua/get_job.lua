-- One job's API document, from the views generation current at this instant; false if
-- the job is unknown or its view's time to live has passed.
-- KEYS: generation
-- ARGV: views_root, job_part, now_ms
-- job_part: the job key's own part (ViewKeys("").job(id)), added to root + generation.
local key = ARGV[1] .. (redis.call('GET', KEYS[1]) or '0') .. ARGV[2]
local v = redis.call('HMGET', key, 'json', 'expires_ms')
if v[2] and tonumber(v[2]) <= tonumber(ARGV[3]) then return false end
return v[1] or false
