-- Make one delayed job due now, at its own priority, behind the jobs already waiting at it.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] FIFO sequence
-- ARGV[1] job id   ARGV[2] default priority   ARGV[3] queue key prefix
-- Returns 1 promoted, 0 no such job in the queue, -1 the job is not delayed (waiting or running)
local id = ARGV[1]
local score = redis.call('ZSCORE', KEYS[1], id)
if not score then
  return 0
end
score = tonumber(score)
-- Delayed jobs are scored between now and PARKED (running ones are parked above it).
if score <= redis_now() or score >= PARKED or redis.call('HEXISTS', KEYS[2], id) == 1 then
  return -1
end
redis.call('ZADD', KEYS[1], 'XX', ready_score(KEYS[3], score_priority(score, tonumber(ARGV[2])), PRIORITY_BAND), id)
redis.call('HSET', ARGV[3] .. 'info:' .. id, 'due', redis_now())  -- due now, not at its delay's end
mark(ARGV[3], 0)
return 1
