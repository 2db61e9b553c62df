-- Shared by the scripts below (prepended to each): time, placement of a job in the queue zset,
-- and the per-minute history.
-- A ready job is scored seq - (11 - p) * K + p / 16: far in the past, one band per priority,
-- FIFO within a band; a delayed job at its due time + p / 16. Scores are formatted explicitly:
-- Lua's own number-to-string keeps 14 digits and would drop the priority fraction.
-- Every time a script compares or stores comes from Redis (TIME), never from a host's clock.
local PRIORITY_BAND = {{PRIORITY_BAND}}  -- K, filled in from jobqueue.constants at load
local METRICS_TTL_MS = {{METRICS_TTL_MS}}
-- A running job stays in the queue zset, parked at PARKED + its lease's expiry: no claim picks it
-- (it is far in the future), and expired leases are found by one range query. Delayed jobs are
-- scored below PARKED.
local PARKED = {{PARKED}}
-- Events: about this many are kept in each queue's stream (0: none are written).
local EVENTS_MAXLEN = {{EVENTS_MAXLEN}}

-- Append one event to the queue's stream, in the step that makes the transition it reports.
-- `fields` holds more field/value pairs (attempt, error, ...). The entry id is Redis' own time.
local function emit(base, name, id, fields)
  if EVENTS_MAXLEN <= 0 then
    return
  end
  local command = {'XADD', base .. 'events', 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', name, 'job', id}
  for _, value in ipairs(fields or {}) do
    command[#command + 1] = value
  end
  redis.call(unpack(command))
end

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

-- The priority a queue score carries in its fraction (ready and delayed scores alike).
local function score_priority(score, default_p)
  local p = math.floor((tonumber(score) % 1) * 16 + 0.5)
  if p < 1 or p > 10 then
    return default_p
  end
  return p
end

-- Wake the queue's idle workers (they block on this zset): score 0 when a job is ready now, else
-- the time the earliest delayed job falls due (LT keeps the earliest of several).
local function mark(base, at)
  redis.call('ZADD', base .. 'marker', 'LT', at, 'm')
end

-- One hash per queue and minute: completed (c), failed (f), retried (r), stale finishes (s).
local function bump(base, now, field)
  local key = base .. 'm:' .. math.floor(now / 60000)
  redis.call('HINCRBY', key, field, 1)
  redis.call('PEXPIRE', key, METRICS_TTL_MS)
end

-- `quiet`: the caller wakes the workers itself (once for a whole bulk enqueue).
local function place_job(queue, seq, completed, failed, base, id, job, p, due, now, K, quiet)
  local score
  if due > now then
    score = due_score(due, p)
  else
    score = ready_score(seq, p, K)
  end
  redis.call('SET', 'arq:job:' .. id, job)
  redis.call('ZADD', queue, score, id)
  if due > now then
    if not quiet then
      mark(base, due)
    end
    emit(base, 'added', id, {'priority', p, 'due', string.format('%d', due)})
  else
    if not quiet then
      mark(base, 0)
    end
    emit(base, 'added', id, {'priority', p})
  end
  -- A new job starts with fresh attempts, progress and logs, and no pending rerun; a finished run's
  -- record goes (its done key and its place in completed/failed go together).
  redis.call('DEL', base .. 'info:' .. id, 'arq:retry:' .. id, base .. 'rerun:' .. id, base .. 'progress:' .. id,
    base .. 'logs:' .. id, base .. 'cancel:' .. id)
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

-- A run that will not report back (its lease expired): the job goes back to the queue at its
-- priority, behind the jobs already waiting there, or a rerun recorded meanwhile replaces it. The
-- attempt the run cost stays counted.
local function return_run(queue, active, seq, completed, failed, base, id, now, K, default_p)
  local owner = redis.call('HGET', active, id)
  redis.call('HDEL', active, id)
  emit(base, 'stalled', id, {'attempt', redis.call('HGET', base .. 'info:' .. id, 'attempts') or '0'})
  if owner and redis.call('EXISTS', 'arq:job:' .. id) == 1 then
    local _, _, _, score = parse_owner(owner)
    redis.call('ZADD', queue, ready_score(seq, score_priority(score, default_p), K), id)
    mark(base, 0)
  else
    redis.call('ZREM', queue, id)
  end
  place_rerun(queue, seq, completed, failed, base, id, now, K)
end
