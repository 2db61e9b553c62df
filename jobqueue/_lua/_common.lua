-- Shared by the scripts below (prepended to each): time, placement of a job in arq's queue zset,
-- and the per-minute history.
-- A ready job is scored seq - (11 - p) * K + p / 16: far in the past, one band per priority,
-- FIFO within a band; a delayed job at its due time + p / 16. Scores are formatted explicitly:
-- Lua's own number-to-string keeps 14 digits and would drop the priority fraction.
-- Every time a script compares or stores comes from Redis (TIME), never from a host's clock.
local PRIORITY_BAND = {{PRIORITY_BAND}}  -- K, filled in from jobqueue.constants at load
local METRICS_TTL_MS = {{METRICS_TTL_MS}}
-- A running job stays in the queue zset, parked at PARKED + its lease's expiry: arq never picks it
-- (it is far in the future), it still counts for arq's burst mode, and expired leases are found by
-- one range query. Delayed jobs are scored below PARKED.
local PARKED = {{PARKED}}

local function lease_score(expiry)
  return string.format('%.0f', PARKED + expiry)
end

local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ready_score(seq, p, K)
  return string.format('%.4f', redis.call('INCR', seq) - (11 - p) * K + p / 16)
end

local function due_score(due, p)
  return string.format('%.4f', due + p / 16)
end

-- One hash per queue and minute: completed (c), failed (f), retried (r), stale finishes (s).
local function bump(base, now, field)
  local key = base .. 'm:' .. math.floor(now / 60000)
  redis.call('HINCRBY', key, field, 1)
  redis.call('PEXPIRE', key, METRICS_TTL_MS)
end

local function place_job(queue, seq, completed, failed, base, id, job, p, due, now, K)
  local score
  if due > now then
    score = due_score(due, p)
  else
    score = ready_score(seq, p, K)
  end
  redis.call('SET', 'arq:job:' .. id, job)
  redis.call('ZADD', queue, score, id)
  -- A new job starts with fresh attempts and no pending rerun; a finished run's record goes (its
  -- done key and its place in completed/failed go together).
  redis.call('DEL', base .. 'info:' .. id, 'arq:retry:' .. id, base .. 'rerun:' .. id)
  if redis.call('DEL', base .. 'done:' .. id) > 0 then
    redis.call('ZREM', completed, id)
    redis.call('ZREM', failed, id)
  end
end

-- A rerun recorded while the job was active replaces whatever is queued, with fresh attempts.
local function place_rerun(queue, seq, completed, failed, base, id, now, K)
  local rerun = redis.call('GET', base .. 'rerun:' .. id)
  if not rerun then
    return 0
  end
  local job = cjson.decode(rerun)
  place_job(queue, seq, completed, failed, base, id, rerun, tonumber(job['a'][2]), tonumber(job['d'] or 0), now, K)
  return 1
end

-- The owner of a run: "<worker id>|<token>|<start ms>|<queue score before the start>".
local function parse_owner(value)
  return string.match(value, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
end

-- A run that will not report back (its lease expired): the job goes back to where it waited,
-- or a rerun recorded meanwhile replaces it. The attempt the run cost stays counted.
local function return_run(queue, active, seq, completed, failed, base, id, now, K)
  local owner = redis.call('HGET', active, id)
  redis.call('HDEL', active, id)
  redis.call('DEL', 'arq:in-progress:' .. id)
  if owner and redis.call('EXISTS', 'arq:job:' .. id) == 1 then
    local _, _, _, score = parse_owner(owner)
    redis.call('ZADD', queue, score, id)
  else
    redis.call('ZREM', queue, id)
  end
  place_rerun(queue, seq, completed, failed, base, id, now, K)
end

-- START: a worker that arq gave a job asks to own its run (start.lua; claim.lua runs it inside
-- arq's claim). The job gets an owner and a lease, and is parked in arq's queue zset at PARKED +
-- the lease's expiry, where no worker can claim it again, whatever becomes of arq's in-progress
-- key. Returns {1, attempt, now}: run it; {4, attempts made, now}: every attempt was used by runs
-- that never reported back, fail it; {0}: the job is gone or owned; {2}: paused; {3, ms}: not due.
local function start_run(queue, active, paused, base, id, worker, token, lease, allowed)
  local score = redis.call('ZSCORE', queue, id)
  if not score or tonumber(score) >= PARKED then
    return {0}
  end
  if redis.call('EXISTS', paused) == 1 then
    return {2}
  end
  local now = redis_now()
  if tonumber(score) > now then
    return {3, math.ceil(tonumber(score) - now)}
  end
  redis.call('ZADD', queue, 'XX', lease_score(now + lease), id)
  redis.call('HSET', active, id, worker .. '|' .. token .. '|' .. now .. '|' .. score)
  local info = base .. 'info:' .. id
  local made = tonumber(redis.call('HGET', info, 'attempts') or '0')
  if made >= allowed then
    return {4, made, now}
  end
  return {1, redis.call('HINCRBY', info, 'attempts', 1), now}
end
