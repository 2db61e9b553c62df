-- Remove one job that is not active, whatever its other state.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] completed zset   KEYS[4] failed zset
-- ARGV[1] queue key prefix   ARGV[2] job id
-- Returns 1 removed, 0 not found, -1 active (not removed)
local base, id = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[2], id) == 1 then
  return -1
end
local found = redis.call('ZREM', KEYS[1], id) + redis.call('ZREM', KEYS[3], id) + redis.call('ZREM', KEYS[4], id)
found = found + redis.call('DEL', 'arq:job:' .. id, 'arq:retry:' .. id, base .. 'done:' .. id, base .. 'info:' .. id,
  base .. 'rerun:' .. id)
-- Progress and logs go with the job, but alone they do not make a job that was found.
redis.call('DEL', base .. 'progress:' .. id, base .. 'logs:' .. id, base .. 'cancel:' .. id)
if found > 0 then
  emit(base, 'removed', id)
  return 1
end
return 0
