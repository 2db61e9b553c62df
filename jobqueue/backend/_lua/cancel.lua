-- Cancel one job (cancel_job). A waiting, delayed or paused job ends failed here, with error type
-- JobCancelled; for a running one a flag is left for the worker that owns the run, which cancels
-- its handler within about a second and records the same outcome with FINISH. A rerun recorded
-- for the job is dropped either way: the job ends cancelled.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] completed zset   KEYS[4] failed zset
-- ARGV[1] queue key prefix   ARGV[2] job id   ARGV[3] the reason
-- ARGV[4] the arq job JSON the caller read ('' : it read the job running)
-- ARGV[5] the failed record JSON, without its closing finished_at (for a job that is not running)
-- ARGV[6] how long the flag of a running job lives (ms)   ARGV[7] attempts made
-- Returns 1 ended failed, 2 running: its worker was asked, 0 no such job, -1 finished already,
-- -2 the job changed since the caller read it (read it again)
local base, id, reason = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', KEYS[2], id) == 1 then
  redis.call('SET', base .. 'cancel:' .. id, reason, 'PX', tonumber(ARGV[6]))
  redis.call('DEL', base .. 'rerun:' .. id)
  emit(base, 'cancelled', id, {'reason', reason, 'running', '1'})
  return 2
end
local job = redis.call('GET', 'arq:job:' .. id)
if not job then
  if redis.call('ZSCORE', KEYS[3], id) or redis.call('ZSCORE', KEYS[4], id) then
    return -1
  end
  return 0
end
if job ~= ARGV[4] or not redis.call('ZSCORE', KEYS[1], id) then
  return -2
end
local now = redis_now()
redis.call('ZREM', KEYS[1], id)
redis.call('DEL', 'arq:job:' .. id, 'arq:retry:' .. id, base .. 'info:' .. id, base .. 'rerun:' .. id,
  base .. 'cancel:' .. id)
redis.call('SET', base .. 'done:' .. id, ARGV[5] .. ',"finished_at":' .. now .. '}')
redis.call('ZADD', KEYS[4], now, id)
bump(base, now, 'f')
emit(base, 'cancelled', id, {'reason', reason, 'running', '0'})
emit(base, 'failed', id, {'attempt', ARGV[7], 'error', 'JobCancelled: ' .. reason, 'error_type', 'JobCancelled'})
return 1
