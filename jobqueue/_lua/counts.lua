-- Exact job counts of one queue, read atomically.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] completed zset   KEYS[4] failed zset
-- KEYS[5] paused flag
-- ARGV[1] now (ms)
-- Returns {waiting, active, completed, failed, delayed, paused}
local now = tonumber(ARGV[1])
local active_ids = redis.call('HKEYS', KEYS[2])
local active_ready = 0
for _, id in ipairs(active_ids) do
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now then
    active_ready = active_ready + 1
  end
end
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', now) - active_ready
local delayed = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local waiting, paused = ready, 0
if redis.call('EXISTS', KEYS[5]) == 1 then
  waiting, paused = 0, ready
end
return {waiting, #active_ids, redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), delayed, paused}
