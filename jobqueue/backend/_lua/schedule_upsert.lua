-- Create or replace a recurring schedule (jobqueue.schedules), by id, in one step.
-- KEYS[1] schedule hash   KEYS[2] set of schedule ids   KEYS[3] due zset of the schedule's queue
-- ARGV[1] schedule id   ARGV[2] queue   ARGV[3] pattern (queue and slot rule)   ARGV[4] definition JSON
-- ARGV[5] first slot of the pattern from now, ms (-1: none)   ARGV[6] limit (0: none)
-- ARGV[7] end, ms (0: none)   ARGV[8] prefix of the due zsets (to leave the old queue's zset)
-- An unchanged pattern keeps its next slot and fire count: calling this at every start of a
-- service changes nothing. A new pattern takes ARGV[5]. Every call bumps the revision, so a worker
-- holding the old definition fails its claim and reads the new one.
-- Returns {created (0/1), next slot kept (0/1), next slot ms (-1: the schedule is finished)}
local now = string.format('%d', redis_now())
local id = ARGV[1]
local old = redis.call('HMGET', KEYS[1], 'queue', 'pattern', 'next', 'fired')
local nxt, kept = ARGV[5], 0
if old[2] == ARGV[3] and old[3] then
  nxt, kept = old[3], 1
end
if old[1] then
  redis.call('ZREM', ARGV[8] .. old[1], id)
end
local limit, stop = tonumber(ARGV[6]), tonumber(ARGV[7])
if tonumber(nxt) < 0 or (limit > 0 and tonumber(old[4] or '0') >= limit) or (stop > 0 and tonumber(nxt) > stop) then
  nxt = '-1'
  redis.call('HDEL', KEYS[1], 'next')
else
  redis.call('HSET', KEYS[1], 'next', nxt)
  redis.call('ZADD', KEYS[3], nxt, id)
end
redis.call('HSET', KEYS[1], 'queue', ARGV[2], 'pattern', ARGV[3], 'spec', ARGV[4], 'limit', ARGV[6], 'updated', now)
redis.call('HSETNX', KEYS[1], 'created', now)
redis.call('HSETNX', KEYS[1], 'fired', 0)
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('SADD', KEYS[2], id)
return {old[1] and 0 or 1, kept, nxt}
