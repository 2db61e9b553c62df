-- A worker that arq gave a job asks to own its run. The job gets an owner and a lease, and is
-- parked in arq's queue zset at PARKED + the lease's expiry, where no worker can claim it again,
-- whatever becomes of arq's in-progress key.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] paused flag
-- ARGV[1] queue key prefix   ARGV[2] job id   ARGV[3] worker id   ARGV[4] run token
-- ARGV[5] lease (ms)   ARGV[6] attempts allowed
-- Returns {1, attempt, now}: run it; {4, attempts made, now}: every attempt was used by runs that
-- never reported back, fail it; {0}: the job is gone or owned; {2}: paused; {3, ms}: not due yet.
local base, id, lease = ARGV[1], ARGV[2], tonumber(ARGV[5])
local score = redis.call('ZSCORE', KEYS[1], id)
if not score or tonumber(score) >= PARKED then
  return {0}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {2}
end
local now = redis_now()
if tonumber(score) > now then
  return {3, math.ceil(tonumber(score) - now)}
end
redis.call('ZADD', KEYS[1], 'XX', lease_score(now + lease), id)
redis.call('HSET', KEYS[2], id, ARGV[3] .. '|' .. ARGV[4] .. '|' .. now .. '|' .. score)
local info = base .. 'info:' .. id
local made = tonumber(redis.call('HGET', info, 'attempts') or '0')
if made >= tonumber(ARGV[6]) then
  return {4, made, now}
end
return {1, redis.call('HINCRBY', info, 'attempts', 1), now}
