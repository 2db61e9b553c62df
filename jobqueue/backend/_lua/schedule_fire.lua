-- Fire one slot of a recurring schedule: claim it and enqueue its job in one step, so each slot
-- is enqueued exactly once however many workers try it at the same moment.
-- KEYS[1] schedule hash   KEYS[2] due zset of the queue
-- ARGV[1] schedule id   ARGV[2] revision the caller read   ARGV[3] the slot (ms), the caller read as next
-- ARGV[4] the slot after it (ms, -1: none)   ARGV[5] queue key prefix ("jq:<queue>:")
-- ARGV[6] job id ('' : the job could not be built; skip the slot and record ARGV[9])
-- ARGV[7] arq job JSON without its closing "et" part (added here, in Redis time)
-- ARGV[8] priority   ARGV[9] error text
-- The claim holds when the schedule is unchanged (same revision) and its next slot is still ARGV[3]
-- and is due by Redis's clock (TIME, the same for every host).
-- Returns {1 claimed / 0 not, 1 job created / 0 job id already queued / -1 skipped}
local now = redis_now()
local id, slot = ARGV[1], ARGV[3]
local cur = redis.call('HMGET', KEYS[1], 'rev', 'next', 'limit')
if not cur[2] then
  redis.call('ZREM', KEYS[2], id)  -- removed or finished meanwhile
  return {0, 0}
end
if cur[1] ~= ARGV[2] or cur[2] ~= slot or tonumber(slot) > now then
  return {0, 0}
end

local code, fired = -1, 0
if ARGV[6] ~= '' then
  local base, job_id = ARGV[5], ARGV[6]
  -- Slot job ids are unique per slot: an existing job key means this slot's job is queued already.
  if redis.call('EXISTS', 'arq:job:' .. job_id) == 0 then
    local job = ARGV[7] .. ',"et":' .. now .. '}'
    place_job(base .. 'queue', base .. 'seq', base .. 'completed', base .. 'failed', base, job_id, job,
      tonumber(ARGV[8]), 0, now, PRIORITY_BAND)
    code = 1
  else
    code = 0
  end
  fired = redis.call('HINCRBY', KEYS[1], 'fired', 1)
  redis.call('HSET', KEYS[1], 'last', slot)
  redis.call('HDEL', KEYS[1], 'error')
else
  fired = tonumber(redis.call('HGET', KEYS[1], 'fired') or '0')
  redis.call('HSET', KEYS[1], 'error', ARGV[9])
end

local limit = tonumber(cur[3] or '0')
if tonumber(ARGV[4]) < 0 or (limit > 0 and fired >= limit) then
  redis.call('HDEL', KEYS[1], 'next')
  redis.call('ZREM', KEYS[2], id)
else
  redis.call('HSET', KEYS[1], 'next', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], id)
end
return {1, code}
