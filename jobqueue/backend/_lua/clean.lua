-- One bounded batch of a clean or a drain: looks at no more than ARGV[6] jobs, so no call blocks
-- Redis for long; the caller repeats it until done or its limit is reached.
-- KEYS[1] queue zset   KEYS[2] completed zset   KEYS[3] failed zset
-- ARGV[1] queue key prefix   ARGV[2] grace (ms)   ARGV[3] most to remove in this call
-- ARGV[4] state: completed | failed | waiting | delayed   ARGV[5] offset (jobs kept by earlier calls)
-- ARGV[6] batch size
-- Returns {more (0/1), jobs looked at and kept, removed ids...}
local base, grace, most, state = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local offset, batch = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = redis_now()
local cutoff = now - grace
local out = {0, 0}

if state == 'completed' or state == 'failed' then
  local set = state == 'completed' and KEYS[2] or KEYS[3]
  local n = math.min(most, batch)
  local ids = redis.call('ZRANGEBYSCORE', set, '-inf', cutoff, 'LIMIT', 0, n)
  for _, id in ipairs(ids) do
    redis.call('DEL', base .. 'done:' .. id, base .. 'progress:' .. id, base .. 'logs:' .. id)
    redis.call('ZREM', set, id)
    out[#out + 1] = id
  end
  if #ids == n then
    out[1] = 1
  end
  return out
end

local ids
if state == 'waiting' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', offset, batch)
else
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '(' .. PARKED, 'LIMIT', offset, batch)
end
local kept = 0
for _, id in ipairs(ids) do
  if #out - 2 >= most then
    out[1], out[2] = 1, kept
    return out
  end
  local old = true
  if grace > 0 then
    local raw = redis.call('GET', 'arq:job:' .. id)
    local ok, job = pcall(cjson.decode, raw or '{}')
    old = ok and type(job) == 'table' and (tonumber(job['et']) or 0) <= cutoff
  end
  if old then
    redis.call('DEL', 'arq:job:' .. id, 'arq:retry:' .. id, base .. 'info:' .. id, base .. 'rerun:' .. id,
      base .. 'progress:' .. id, base .. 'logs:' .. id, base .. 'cancel:' .. id)
    redis.call('ZREM', KEYS[1], id)
    emit(base, 'removed', id)
    out[#out + 1] = id
  else
    kept = kept + 1
  end
end
out[2] = kept
if #ids == batch then
  out[1] = 1
end
return out
