-- Remove jobs of one state older than a grace period; returns the removed ids.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] completed zset   KEYS[4] failed zset
-- ARGV[1] queue key prefix   ARGV[2] now (ms)   ARGV[3] grace (ms)   ARGV[4] limit (0 = no limit)
-- ARGV[5] state: completed | failed | waiting | delayed
local base, now, grace, limit, state = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local cutoff = now - grace
local removed = {}
local function full()
  return limit > 0 and #removed >= limit
end

if state == 'completed' or state == 'failed' then
  local set = state == 'completed' and KEYS[3] or KEYS[4]
  local ids = redis.call('ZRANGEBYSCORE', set, '-inf', cutoff, 'LIMIT', 0, limit > 0 and limit or -1)
  for _, id in ipairs(ids) do
    redis.call('DEL', base .. 'done:' .. id)
    redis.call('ZREM', set, id)
    removed[#removed + 1] = id
  end
  return removed
end

local ids
if state == 'waiting' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
else
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
end
for _, id in ipairs(ids) do
  if full() then
    break
  end
  if redis.call('HEXISTS', KEYS[2], id) == 0 and redis.call('EXISTS', 'arq:in-progress:' .. id) == 0 then
    local raw = redis.call('GET', 'arq:job:' .. id)
    local enqueued = raw and tonumber(cjson.decode(raw)['et']) or 0
    if enqueued <= cutoff then
      redis.call('DEL', 'arq:job:' .. id, 'arq:retry:' .. id, base .. 'info:' .. id, base .. 'rerun:' .. id)
      redis.call('ZREM', KEYS[1], id)
      removed[#removed + 1] = id
    end
  end
end
return removed
