-- Shared by the scripts below (prepended to each): how a job is placed in arq's queue zset.
-- A ready job is scored seq - (11 - p) * K + p / 16: far in the past, one band per priority,
-- FIFO within a band; a delayed job at its due time + p / 16. Scores are formatted explicitly:
-- Lua's own number-to-string keeps 14 digits and would drop the priority fraction.
local PRIORITY_BAND = {{PRIORITY_BAND}}  -- K, filled in from jobqueue.constants at load

local function ready_score(seq, p, K)
  return string.format('%.4f', redis.call('INCR', seq) - (11 - p) * K + p / 16)
end

local function due_score(due, p)
  return string.format('%.4f', due + p / 16)
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
  -- A finished run's record goes: its done key and its place in completed/failed go together.
  if redis.call('DEL', base .. 'done:' .. id, base .. 'info:' .. id, 'arq:retry:' .. id) > 0 then
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
  redis.call('DEL', base .. 'rerun:' .. id)
  local job = cjson.decode(rerun)
  place_job(queue, seq, completed, failed, base, id, rerun, tonumber(job['a'][2]), tonumber(job['d'] or 0), now, K)
  return 1
end

