-- The end of a run, only by the run that owns the job: record the outcome, trim retention, count
-- the minute's history and apply a pending rerun. A run whose ownership was taken from it (its
-- lease expired and the job was returned) changes nothing.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] FIFO sequence
-- KEYS[4] completed zset   KEYS[5] failed zset
-- ARGV[1] queue key prefix   ARGV[2] keep completed count   ARGV[3] keep completed age (ms)
-- ARGV[4] keep failed count   ARGV[5] keep failed age (ms)   ARGV[6] job id   ARGV[7] run token
-- ARGV[8] outcome: completed | failed | retry | handback
-- ARGV[9] completed/failed: the record JSON (the script adds finished_at); retry: the error
-- ARGV[10] retry delay (ms)   ARGV[11] priority
-- Returns 1 recorded, 2 recorded and a rerun placed, -1 not the owner (nothing changed).
local base, id, token, outcome, body = ARGV[1], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local K = PRIORITY_BAND
local now = redis_now()
local owner = redis.call('HGET', KEYS[2], id)
if not owner then
  bump(base, now, 's')
  return -1
end
local _, owner_token, _, score = parse_owner(owner)
if owner_token ~= token then
  bump(base, now, 's')
  return -1
end
redis.call('HDEL', KEYS[2], id)
-- This worker's arq claim on the job ends here (arq's own DEL of it is then not sent).
redis.call('DEL', 'arq:in-progress:' .. id)
local info = base .. 'info:' .. id

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

if outcome == 'completed' or outcome == 'failed' then
  local set, keep, age, field = KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]), 'c'
  if outcome == 'failed' then
    set, keep, age, field = KEYS[5], tonumber(ARGV[4]), tonumber(ARGV[5]), 'f'
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', 'arq:job:' .. id, 'arq:retry:' .. id, info)
  redis.call('SET', base .. 'done:' .. id, string.sub(body, 1, -2) .. ',"finished_at":' .. now .. '}')
  redis.call('ZADD', set, now, id)
  bump(base, now, field)
  trim(set, keep, age)
elseif outcome == 'retry' then
  redis.call('HSET', info, 'error', body, 'failed_at', now)
  redis.call('ZADD', KEYS[1], due_score(now + tonumber(ARGV[10]), tonumber(ARGV[11])), id)
  bump(base, now, 'r')
else
  -- handback: a graceful stop; the run did not happen, so it costs no attempt.
  redis.call('HINCRBY', info, 'attempts', -1)
  redis.call('ZADD', KEYS[1], score, id)
end
if place_rerun(KEYS[1], KEYS[3], KEYS[4], KEYS[5], base, id, now, K) == 1 then
  return 2
end
return 1
