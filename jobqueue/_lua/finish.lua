-- After arq has finished runs: record their outcomes, trim retention, apply pending reruns.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] FIFO sequence
-- KEYS[4] completed zset   KEYS[5] failed zset
-- ARGV[1] queue key prefix   ARGV[2] K   ARGV[3] now (ms)
-- ARGV[4] keep completed count   ARGV[5] keep completed age (ms)
-- ARGV[6] keep failed count   ARGV[7] keep failed age (ms)
-- then six values per run: job id, outcome (completed | failed | retry | bounced | interrupted),
-- record JSON (completed/failed) or last error (retry), retry due time (ms), priority, attempts
-- Returns how many reruns were placed.
local base, K, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local function drop(set, ids)
  for _, old_id in ipairs(ids) do
    redis.call('DEL', base .. 'done:' .. old_id)
    redis.call('ZREM', set, old_id)
  end
end

-- Keep at most `keep` records, none older than `age` ms. Each call removes at most 500 per
-- rule, so one finish stays cheap; later finishes catch up.
local function trim(set, keep, age)
  drop(set, redis.call('ZRANGEBYSCORE', set, '-inf', now - age, 'LIMIT', 0, 500))
  local extra = redis.call('ZCARD', set) - keep
  if extra > 0 then
    drop(set, redis.call('ZRANGE', set, 0, math.min(extra, 500) - 1))
  end
end

local reruns, finished = 0, {}
for i = 8, #ARGV, 6 do
  local id, outcome, body = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('HDEL', KEYS[2], id)
  if outcome == 'completed' or outcome == 'failed' then
    local set = outcome == 'completed' and KEYS[4] or KEYS[5]
    redis.call('DEL', base .. 'info:' .. id)
    -- A new job with this id enqueued since arq finished this run supersedes the record.
    if redis.call('EXISTS', 'arq:job:' .. id) == 0 then
      redis.call('SET', base .. 'done:' .. id, body)
      redis.call('ZADD', set, now, id)
      finished[set] = true
    end
  elseif outcome == 'retry' then
    redis.call('HSET', base .. 'info:' .. id, 'error', body, 'attempts', ARGV[i + 5], 'failed_at', now)
    if redis.call('EXISTS', 'arq:in-progress:' .. id) == 0 and redis.call('ZSCORE', KEYS[1], id) then
      redis.call('ZADD', KEYS[1], 'XX', due_score(tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])), id)
    end
  end
  reruns = reruns + place_rerun(KEYS[1], KEYS[3], KEYS[4], KEYS[5], base, id, now, K)
end
if finished[KEYS[4]] then
  trim(KEYS[4], tonumber(ARGV[4]), tonumber(ARGV[5]))
end
if finished[KEYS[5]] then
  trim(KEYS[5], tonumber(ARGV[6]), tonumber(ARGV[7]))
end
return reruns
