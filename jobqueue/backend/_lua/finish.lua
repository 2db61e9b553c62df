-- The end of a run, only by the run that owns the job: record the outcome, trim retention, count
-- the minute's history and apply a pending rerun. A run whose ownership was taken from it (its
-- lease expired and the job was returned) changes nothing.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] FIFO sequence
-- KEYS[4] completed zset   KEYS[5] failed zset
-- ARGV[1] queue key prefix   ARGV[2] keep completed count   ARGV[3] keep completed age (ms)
-- ARGV[4] keep failed count   ARGV[5] keep failed age (ms)   ARGV[6] job id   ARGV[7] run token
-- ARGV[8] outcome: completed | failed | retry | handback | park
-- ARGV[9] completed/failed: the record JSON, holding "run": <token> (the script adds finished_at);
-- retry, park: the error (park: why it waits)   ARGV[10] retry or park delay (ms)   ARGV[11] priority
-- ARGV[12] the run's attempt   ARGV[13] for the event: completed: the result as JSON ('' when too
-- long to carry), failed/retry: the error, cut short   ARGV[14] failed: the error's type
-- Returns 1 recorded, 2 recorded and a rerun placed, 3 already recorded by this same run (a FINISH
-- sent again after its first reply was lost), -1 not the owner (nothing changed).
local base, id, token, outcome, body = ARGV[1], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local K = PRIORITY_BAND
local now = redis_now()
local info = base .. 'info:' .. id
local owner = redis.call('HGET', KEYS[2], id)
local owner_token
if owner then
  owner_token = select(2, parse_owner(owner))
end
if owner_token ~= token then
  -- Recorded already by this run? Its outcome names it: the done record or the job's info hash.
  local done = redis.call('GET', base .. 'done:' .. id)
  if redis.call('HGET', info, 'run') == token or (done and string.find(done, '"run":"' .. token .. '"', 1, true)) then
    return 3
  end
  bump(base, now, 's')
  return -1
end
redis.call('HDEL', KEYS[2], id)

local function drop(set, ids)
  for _, old_id in ipairs(ids) do
    redis.call('DEL', base .. 'done:' .. old_id, base .. 'progress:' .. old_id, base .. 'logs:' .. old_id)
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
  redis.call('DEL', 'arq:job:' .. id, 'arq:retry:' .. id, info, base .. 'cancel:' .. id)
  redis.call('SET', base .. 'done:' .. id, string.sub(body, 1, -2) .. ',"finished_at":' .. now .. '}')
  redis.call('ZADD', set, now, id)
  bump(base, now, field)
  trim(set, keep, age)
  if outcome == 'completed' then
    if ARGV[13] == '' then
      emit(base, 'completed', id, {'attempt', ARGV[12], 'result_truncated', '1'})
    else
      emit(base, 'completed', id, {'attempt', ARGV[12], 'result', ARGV[13]})
    end
  else
    emit(base, 'failed', id, {'attempt', ARGV[12], 'error', ARGV[13], 'error_type', ARGV[14]})
  end
elseif outcome == 'retry' then
  local delay = tonumber(ARGV[10])
  -- 'due': when the next attempt falls due, so that its wait is counted from then (not the enqueue)
  redis.call('HSET', info, 'error', body, 'failed_at', now, 'run', token, 'due', now + delay)
  if delay > 0 then
    redis.call('ZADD', KEYS[1], due_score(now + delay, tonumber(ARGV[11])), id)
    mark(base, now + delay)
  else
    redis.call('ZADD', KEYS[1], ready_score(KEYS[3], tonumber(ARGV[11]), K), id)
    mark(base, 0)
  end
  bump(base, now, 'r')
  emit(base, 'retrying', id, {'attempt', ARGV[12], 'error', ARGV[13], 'delay', ARGV[10]})
elseif outcome == 'park' then
  -- park: the job's work goes on elsewhere (a Batch API request). Like a handback it costs no
  -- attempt; it waits delayed, at its priority, until promoted or its recheck falls due.
  local delay = tonumber(ARGV[10])
  redis.call('HINCRBY', info, 'attempts', -1)
  redis.call('HSET', info, 'run', token)
  redis.call('ZADD', KEYS[1], due_score(now + delay, tonumber(ARGV[11])), id)
  mark(base, now + delay)
  emit(base, 'parked', id, {'attempt', ARGV[12], 'reason', ARGV[13], 'delay', ARGV[10]})
else
  -- handback: a graceful stop; the run did not happen, so it costs no attempt. The job waits again
  -- at its priority, behind the jobs already waiting there.
  redis.call('HINCRBY', info, 'attempts', -1)
  redis.call('HSET', info, 'run', token)
  redis.call('ZADD', KEYS[1], ready_score(KEYS[3], tonumber(ARGV[11]), K), id)
  mark(base, 0)
end
if place_rerun(KEYS[1], KEYS[3], KEYS[4], KEYS[5], base, id, now, K) == 1 then
  return 2
end
return 1
