-- Make one delayed job due now, at its own priority, behind the jobs already waiting at it.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] FIFO sequence
-- ARGV[1] job id   ARGV[2] now (ms)   ARGV[3] K   ARGV[4] default priority
-- Returns 1 promoted, 0 no such job in the queue, -1 the job is not delayed (waiting or active)
local id, now, K = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local score = redis.call('ZSCORE', KEYS[1], id)
if not score then
  return 0
end
score = tonumber(score)
if score <= now or redis.call('HEXISTS', KEYS[2], id) == 1 or redis.call('EXISTS', 'arq:in-progress:' .. id) == 1 then
  return -1
end
local p = math.floor((score % 1) * 16 + 0.5)
if p < 1 or p > 10 then
  p = tonumber(ARGV[4])
end
redis.call('ZADD', KEYS[1], 'XX', ready_score(KEYS[3], p, K), id)
return 1
