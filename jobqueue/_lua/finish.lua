-- After arq has finished a run: record its outcome, trim retention, apply a pending rerun.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] FIFO sequence
-- KEYS[4] completed zset   KEYS[5] failed zset
-- ARGV[1] queue key prefix   ARGV[2] K   ARGV[3] now (ms)   ARGV[4] job id
-- ARGV[5] outcome: completed | failed | retry | bounced | interrupted
-- ARGV[6] record JSON (completed/failed) or last error (retry)   ARGV[7] retry due time (ms)
-- ARGV[8] priority   ARGV[9] keep completed count   ARGV[10] keep completed age (ms)
-- ARGV[11] keep failed count   ARGV[12] keep failed age (ms)   ARGV[13] attempts made
-- Returns 1 when a rerun was scheduled, else 0.
local base, K, now, id, outcome = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local p = tonumber(ARGV[8])

local function drop(set, ids)
  for _, old_id in ipairs(ids) do
    redis.call('DEL', base .. 'done:' .. old_id)
    redis.call('ZREM', set, old_id)
  end
end

-- Keep at most `keep` records, none older than `age` ms (a negative age keeps any age).
-- Each call removes at most 500 per rule, so one finish stays cheap; later finishes catch up.
local function trim(set, keep, age)
  if age >= 0 then
    drop(set, redis.call('ZRANGEBYSCORE', set, '-inf', now - age, 'LIMIT', 0, 500))
  end
  local extra = redis.call('ZCARD', set) - keep
  if extra > 0 then
    drop(set, redis.call('ZRANGE', set, 0, math.min(extra, 500) - 1))
  end
end

redis.call('HDEL', KEYS[2], id)
if outcome == 'completed' or outcome == 'failed' then
  local set = outcome == 'completed' and KEYS[4] or KEYS[5]
  redis.call('DEL', base .. 'info:' .. id)
  if redis.call('EXISTS', 'arq:job:' .. id) == 0 then
    redis.call('SET', base .. 'done:' .. id, ARGV[6])
    redis.call('ZADD', set, now, id)
  end
  if outcome == 'completed' then
    trim(KEYS[4], tonumber(ARGV[9]), tonumber(ARGV[10]))
  else
    trim(KEYS[5], tonumber(ARGV[11]), tonumber(ARGV[12]))
  end
elseif outcome == 'retry' then
  redis.call('HSET', base .. 'info:' .. id, 'error', ARGV[6], 'attempts', ARGV[13], 'failed_at', now)
  if redis.call('EXISTS', 'arq:in-progress:' .. id) == 0 and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', due_score(tonumber(ARGV[7]), p), id)
  end
end

return place_rerun(KEYS[1], KEYS[3], KEYS[4], KEYS[5], base, id, now, K)
