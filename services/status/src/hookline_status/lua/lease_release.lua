-- Give the metrics lease up if it is still ours (a clean stop: another replica takes it
-- at once).
-- KEYS: lease
-- ARGV: token
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
