-- Exact job counts of one queue, read atomically; nothing here grows with the number of jobs.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] completed zset   KEYS[4] failed zset
-- KEYS[5] paused flag
-- Returns {waiting, active, completed, failed, delayed, paused}
local now = redis_now()
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', now)
local delayed = redis.call('ZCOUNT', KEYS[1], '(' .. now, '(' .. PARKED)
local waiting, paused = ready, 0
if redis.call('EXISTS', KEYS[5]) == 1 then
  waiting, paused = 0, ready
end
return {waiting, redis.call('HLEN', KEYS[2]), redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), delayed, paused}
