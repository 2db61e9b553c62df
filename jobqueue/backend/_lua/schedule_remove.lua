-- Remove a recurring schedule; jobs it already enqueued stay.
-- KEYS[1] schedule hash   KEYS[2] set of schedule ids   ARGV[1] schedule id   ARGV[2] prefix of the due zsets
-- Returns 1 when the schedule existed, else 0.
local queue = redis.call('HGET', KEYS[1], 'queue')
redis.call('SREM', KEYS[2], ARGV[1])
if not queue then
  return 0
end
redis.call('ZREM', ARGV[2] .. queue, ARGV[1])
redis.call('DEL', KEYS[1])
return 1
