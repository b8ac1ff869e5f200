-- A page of one listing index, newest first, after a cursor, filtered, skipping views
-- whose time to live has passed, from the views generation current at this instant.
-- KEYS: generation
-- ARGV: views_root, index_part, job_part, max_score, after_id, limit, now_ms, budget
-- ARGV*: filters
-- index_part / job_part: the index's and the job key's own parts (ViewKeys("")), added
--   to root + generation; job_part ends where the job id goes.
-- max_score: '+inf', or the cursor's score; after_id: the cursor's job id ('' : none).
-- budget: the most index entries to look at; filters: field, value, field, value, ...
-- Returns {document, score, id, ...found, last score, last id, exhausted (0/1)}.
local root = ARGV[1] .. (redis.call('GET', KEYS[1]) or '0')
local index, jobpart = root .. ARGV[2], root .. ARGV[3]
local max, after, limit = ARGV[4], ARGV[5], tonumber(ARGV[6])
local now, budget = tonumber(ARGV[7]), tonumber(ARGV[8])
local fields = {'json', 'expires_ms'}
local wanted = {}
for i = 9, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  wanted[#wanted + 1] = ARGV[i + 1]
end
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local out = {}
local found, scanned, offset = 0, 0, 0
local last_score, last_id = '', ''
local exhausted = 0
local chunk = limit + 1
while found <= limit and scanned < budget do
  local batch = redis.call('ZREVRANGEBYSCORE', index, max, '-inf', 'WITHSCORES',
    'LIMIT', offset, chunk)
  if #batch == 0 then exhausted = 1; break end
  offset = offset + #batch / 2
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    if after == '' or score ~= max or before(id, after) then
      scanned = scanned + 1
      last_score, last_id = score, id
      local v = redis.call('HMGET', jobpart .. id, unpack(fields))
      local ok = v[1] and not (v[2] and tonumber(v[2]) <= now)
      for f = 1, #wanted do
        if v[2 + f] ~= wanted[f] then ok = false end
      end
      if ok then
        out[#out + 1] = v[1]
        out[#out + 1] = score
        out[#out + 1] = id
        found = found + 1
        if found > limit then break end
      end
    end
  end
  chunk = math.min(chunk * 2, 1000)
end
out[#out + 1] = last_score
out[#out + 1] = last_id
out[#out + 1] = exhausted
return out
